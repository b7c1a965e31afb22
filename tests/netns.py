"""A network namespace for a test (Linux, root): its own loopback, the extra addresses the test
gives it (on that loopback: nothing routes out of the namespace, so no packet leaves it),
and its own /etc/hosts, which ``ip netns exec`` mounts from /etc/netns/NAME/hosts. Commands
run inside it with ``run`` and ``start``; ``close`` removes the namespace and the files."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

_ETC_NETNS = Path("/etc/netns")
_numbers = itertools.count()


class Namespace:
    def __init__(self, addresses: tuple[str, ...], hosts: dict[str, str]) -> None:
        self.name = f"digest-test-{os.getpid()}-{next(_numbers)}"
        self._made_etc_netns = not _ETC_NETNS.exists()
        self._etc = _ETC_NETNS / self.name
        self._started: list[subprocess.Popen[str]] = []
        _ip("netns", "add", self.name)
        try:
            self._etc.mkdir(parents=True)
            lines = ["127.0.0.1 localhost", "::1 localhost"]
            lines += [f"{address} {name}" for name, address in hosts.items()]
            (self._etc / "hosts").write_text("\n".join(lines) + "\n", encoding="utf-8")
            self.run("ip", "link", "set", "lo", "up")
            for address in addresses:
                self.run("ip", "address", "add", address, "dev", "lo")
        except BaseException:
            self.close()
            raise

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace; it must succeed unless ``check=False``."""
        options.setdefault("check", True)
        options.setdefault("timeout", 120)
        return subprocess.run(self.command(*args), capture_output=True, text=True, **options)

    def start(self, *args: str, **options: Any) -> subprocess.Popen[str]:
        """Start a command inside the namespace; ``close`` ends it."""
        process = subprocess.Popen(
            self.command(*args), stdout=subprocess.PIPE, text=True, **options
        )
        self._started.append(process)
        return process

    def close(self) -> None:
        for process in self._started:
            if process.poll() is None:
                process.terminate()
            process.communicate(timeout=10)
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)
        shutil.rmtree(self._etc, ignore_errors=True)
        if self._made_etc_netns and _ETC_NETNS.exists() and not any(_ETC_NETNS.iterdir()):
            _ETC_NETNS.rmdir()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, text=True, check=True)

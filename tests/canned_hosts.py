"""HTTP servers that give canned answers, for tests that run them inside a network namespace
(tests/netns.py): ``python tests/canned_hosts.py SPEC LOG``. SPEC is a JSON file,
``{"host:port": {"/path": [status, {header: value}, body]}}`` (an IPv6 host in brackets);
each request is appended to LOG as "host:port path", and "ready" is printed once every
server listens. It serves until it is terminated."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Routes = dict[str, list[Any]]


def _handler(where: str, routes: Routes, log: Path, lock: threading.Lock) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            with lock, log.open("a", encoding="utf-8") as out:
                out.write(f"{where} {self.path}\n")
            status, headers, body = routes.get(self.path, [404, {}, "not found"])
            data = body.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def main(spec_path: str, log_path: str) -> None:
    spec: dict[str, Routes] = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    log, lock = Path(log_path), threading.Lock()
    servers = []
    for where, routes in spec.items():
        host, _, port = where.rpartition(":")
        kind = _Server6 if host.startswith("[") else _Server
        address = (host.strip("[]"), int(port))
        servers.append(kind(address, _handler(where, routes, log, lock)))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)  # noqa: T201  (the test waits for this line)
    threading.Event().wait()


if __name__ == "__main__":
    main(*sys.argv[1:])

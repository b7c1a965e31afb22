"""A loopback host that accepts connections, reads each request and never answers: a dead
article site, for the collect tests and benchmarks/pages.py. It listens on 127.0.0.0/8 only."""

from __future__ import annotations

import contextlib
import socket
import threading


class SilentHost:
    """Listens on ``address`` (a loopback one); the first ``garble_first`` requests get a line
    that is not HTTP, the others no answer at all."""

    def __init__(self, address: str = "127.0.0.2", *, garble_first: int = 0) -> None:
        self.garble_first = garble_first
        self._listener = socket.create_server((address, 0))
        self.address, self.port = address, self._listener.getsockname()[1]
        self.requests: list[bytes] = []  # the request line of each request it read
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.address}:{self.port}/{path.lstrip('/')}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._held.append(connection)
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data and (chunk := connection.recv(4096)):
                data += chunk
        with self._lock:
            if data:
                self.requests.append(data.split(b"\r\n", 1)[0])
            is_garbled = len(self.requests) <= self.garble_first
        if is_garbled:
            with contextlib.suppress(OSError):
                connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    def hang_up(self) -> None:
        """Drop the connections held so far and forget the requests seen."""
        for connection in self._held:
            connection.close()
        self._held.clear()
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        self._listener.close()
        self.hang_up()

"""A TCP proxy on loopback that can stop passing bytes: a server that accepts
connections and then never answers (a hung S3 gateway, a half-dead load
balancer). Without a backend it is a black hole from the start."""

from __future__ import annotations

import contextlib
import socket
import threading


class StallProxy:
    def __init__(self, backend: tuple[str, int] | None = None) -> None:
        self.backend = backend
        self.hold = threading.Event()  # set: keep every connection open, pass nothing
        self.requests = 0  # connections that sent at least one byte
        self._lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self._lsock.getsockname()[1]
        self._socks: list[socket.socket] = [self._lsock]
        self._closed = False
        if backend is None:
            self.hold.set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._lsock.accept()
            except OSError:
                return
            self._socks.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        up: socket.socket | None = None
        if self.backend is not None:
            up = socket.create_connection(self.backend)
            self._socks.append(up)
            threading.Thread(target=self._pump, args=(up, conn, False), daemon=True).start()
        self._pump(conn, up, True)

    def _pump(self, src: socket.socket, dst: socket.socket | None, counts: bool) -> None:
        first = True
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                if dst is not None and not self.hold.is_set():
                    dst.close()
                return
            if counts and first:
                self.requests += 1
                first = False
            if self.hold.is_set() or dst is None:
                self.hold.wait()
                continue  # swallowed: the peer waits for an answer that never comes
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._closed = True
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()

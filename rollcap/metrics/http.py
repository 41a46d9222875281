"""GET /metrics on a "host:port" the operator chose (off by default).

A small threading HTTP server of our own rather than
prometheus_client.start_http_server: it reports bind errors to the caller,
closes cleanly at exit, answers only /metrics, and honours Accept for
OpenMetrics like the client's own handler.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _MetricsRequest(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics is served here")
            return
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(self.server.registry)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds would flood the journal


class MetricsServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        """Bind now (OSError when the address is taken or not local); serve on start()."""
        cls = _V6Server if ":" in host else _Server
        self._httpd = cls((host, port), _MetricsRequest)
        self._httpd.registry = registry
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

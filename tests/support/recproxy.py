"""An HTTP proxy on loopback in front of SeaweedFS that records every request's
headers, and can answer a request itself or change a response's headers: to
prove what rollcap sends where SeaweedFS lacks a feature (SSE-KMS), and to play
a server that ignores a setting or does not implement conditional writes.

Requests pass unchanged (the Host header too, so SigV4 signatures still
verify); bodies need a Content-Length (botocore sends one for our uploads with
s3_checksums = "when_required")."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str  # with the query
    headers: dict[str, str]  # lower-case names

    @property
    def op(self) -> str:
        """The S3 operation, as far as the tests need it."""
        q = self.path.split("?", 1)[1] if "?" in self.path else ""
        params = {p.split("=", 1)[0] for p in q.split("&") if p}
        if self.method == "POST" and "uploads" in params:
            return "CreateMultipartUpload"
        if self.method == "POST" and "uploadId" in params:
            return "CompleteMultipartUpload"
        if self.method == "PUT" and "partNumber" in params:
            return "UploadPart"
        if self.method == "PUT" and not params:
            return "PutObject"
        return f"{self.method} {','.join(sorted(params))}"


# (status, headers, body) answered instead of the server's
Answer = tuple[int, dict[str, str], bytes]


@dataclass
class RecordingProxy:
    backend: tuple[str, int]
    requests: list[Request] = field(default_factory=list)
    #: answer a request without asking the server (None: pass it on)
    answer: Callable[[Request], Answer | None] | None = None
    #: change the response headers (lower-case names) of a request
    rewrite: Callable[[Request, dict[str, str]], None] | None = None

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue for botocore

            def log_message(self, *_a: object) -> None:
                pass

            def _any(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                assert "chunked" not in headers.get("transfer-encoding", ""), headers
                body = self.rfile.read(int(headers.get("content-length", "0") or 0))
                req = Request(self.command, self.path, headers)
                with proxy._lock:
                    proxy.requests.append(req)
                given = proxy.answer(req) if proxy.answer else None
                if given is not None:
                    status, rh, rbody = given
                    self._send(status, {**rh, "content-length": str(len(rbody))}, rbody)
                    return
                up = http.client.HTTPConnection(*proxy.backend, timeout=120)
                try:
                    up.putrequest(self.command, self.path, skip_host=True,
                                  skip_accept_encoding=True)  # fmt: skip
                    for k, v in self.headers.items():
                        if k.lower() != "expect":  # we already said 100 Continue
                            up.putheader(k, v)
                    up.endheaders(body if body else None)
                    resp = up.getresponse()
                    rbody = resp.read()
                    rh = {k.lower(): v for k, v in resp.getheaders()}
                finally:
                    up.close()
                if proxy.rewrite is not None:
                    proxy.rewrite(req, rh)
                rh.pop("transfer-encoding", None)
                if self.command != "HEAD":
                    rh["content-length"] = str(len(rbody))
                self._send(resp.status, rh, rbody)

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response_only(status)
                for k, v in headers.items():
                    if k not in ("connection", "keep-alive"):
                        self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ops(self, name: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.op == name]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

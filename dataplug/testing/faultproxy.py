"""A small fault-injecting HTTP reverse proxy for tests (part of the conformance kit), put in front of an S3
endpoint such as the moto server.

Every request is forwarded to the upstream server, except that on every ``every``-th request (starting with
request number ``first``, ``every`` by default) the proxy injects its ``mode``'s fault:

- ``"503"``: answers ``503 SlowDown`` itself (S3's throttling answer) without forwarding;
- ``"reset"``: resets the connection (TCP RST) after reading the request;
- ``"truncate"``: sends the headers with the full ``Content-Length``, then half the body, then closes;
- ``"stall"``: sends the headers and half the body, then sleeps ``stall_seconds`` before closing.

``truncate`` and ``stall`` count only responses with a body of 2 bytes or more, so each k-th one is cut.
With ``spare`` (the default), a request that was just faulted passes on its next attempt (same method, target
and ``Range``), so a test's outcome never depends on a retry landing on another k-th slot by scheduling luck;
``spare=False`` with ``every=1`` faults every attempt, to test giving up. ``mode=None`` forwards everything.
Every request is logged in ``requests``.

The proxy runs on 127.0.0.1 on threads, with bounded socket timeouts, and stops by itself after
``lifetime`` seconds if nobody stops it first.
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MODES = ("503", "reset", "truncate", "stall")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "trailer", "upgrade"}
_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>faultproxy</RequestId></Error>"
)


@dataclass
class Request:
    """One request as the proxy saw it, and the fault it got (None when forwarded intact)."""

    method: str
    target: str
    headers: dict[str, str]
    fault: str | None = None


class _Served:
    """What both test servers share: serving on a daemon thread, stopping by themselves after ``lifetime``
    seconds, and the context manager."""

    _server: socketserver.BaseServer | None
    lifetime: float

    def start(self) -> Any:
        raise NotImplementedError

    def _serve(self, server: socketserver.BaseServer, name: str) -> None:
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name=name).start()
        timer = threading.Timer(self.lifetime, self.stop)
        timer.daemon = True
        timer.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class FaultProxy(_Served):
    """The proxy's settings, counters and log; :meth:`start` serves it, :meth:`stop` ends it."""

    upstream: str
    mode: str | None = None
    every: int = 4
    first: int = 4
    spare: bool = True
    stall_seconds: float = 3.0
    lifetime: float = 600.0
    socket_timeout: float = 30.0
    requests: list[Request] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    _count: int = 0
    _spared: set[tuple[str, str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socketserver.ThreadingTCPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_mode(self, mode: str | None, every: int = 4, first: int | None = None, spare: bool = True) -> None:
        """Switch faults (``mode`` in :data:`MODES`, or None) and reset the counters and the log."""
        assert mode is None or mode in MODES, mode
        with self._lock:
            self.mode, self.every, self.first, self.spare = mode, every, every if first is None else first, spare
            self._count = 0
            self._spared.clear()
            self.requests.clear()
            self.faults.clear()

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve_connection(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.daemon_threads = True
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        self._serve(server, "faultproxy")
        return self

    # -- one connection: requests until the client closes or a fault closes it ---------------------------

    def _serve_connection(self, sock: socket.socket) -> None:
        sock.settimeout(self.socket_timeout)
        rfile = sock.makefile("rb")
        try:
            while self._serve_one(sock, rfile):
                pass
        except (OSError, ValueError):
            pass
        finally:
            rfile.close()
            sock.close()

    def _serve_one(self, sock: socket.socket, rfile) -> bool:
        line = rfile.readline(65537)
        if not line.strip():
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers = http.client.parse_headers(rfile)
        if headers.get("Expect", "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            del headers["Expect"]
        body = _read_request_body(rfile, headers)
        request = Request(method, target, dict(headers.items()))
        key = (method, target, headers.get("Range", ""))
        with self._lock:
            self.requests.append(request)
        if self._fault_now(request, key, before=True):
            if request.fault == "503":
                _send_response(sock, 503, "Slow Down", [("Content-Type", "application/xml")], _SLOWDOWN, method)
                return True
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        status, reason, resp_headers, resp_body = self._forward(method, target, headers, body)
        if method != "HEAD" and len(resp_body) >= 2 and self._fault_now(request, key, before=False):
            _send_head(sock, status, reason, resp_headers, len(resp_body))
            sock.sendall(resp_body[: len(resp_body) // 2])
            if request.fault == "stall":
                time.sleep(self.stall_seconds)
            sock.shutdown(socket.SHUT_RDWR)
            return False
        _send_response(sock, status, reason, resp_headers, resp_body, method)
        return headers.get("Connection", "").lower() != "close"

    def _fault_now(self, request: Request, key: tuple[str, str, str], before: bool) -> bool:
        """Count the request toward this mode's k-th and decide; faults are injected before or after forwarding."""
        with self._lock:
            if self.mode is None or (self.mode in ("503", "reset")) != before:
                return False
            if key in self._spared:
                self._spared.discard(key)
                return False
            self._count += 1
            if self._count < self.first or (self._count - self.first) % self.every:
                return False
            if self.spare:
                self._spared.add(key)
            request.fault = self.mode
            self.faults[self.mode] = self.faults.get(self.mode, 0) + 1
            return True

    def _forward(self, method: str, target: str, headers, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=self.socket_timeout)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            if method == "HEAD" and resp.getheader("Content-Length") is not None:
                kept.append(("Content-Length", resp.getheader("Content-Length")))
            return resp.status, resp.reason, kept, data
        finally:
            conn.close()


def _read_request_body(rfile, headers) -> bytes:
    """The request body as sent (chunked bodies are kept chunked, with their framing, to forward as they are)."""
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        raw = bytearray()
        while True:
            size_line = rfile.readline(65537)
            raw += size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:
                    trailer = rfile.readline(65537)
                    raw += trailer
                    if trailer in (b"\r\n", b"\n", b""):
                        return bytes(raw)
            raw += rfile.read(size + 2)
    length = int(headers.get("Content-Length") or 0)
    return rfile.read(length) if length else b""


def _send_head(sock: socket.socket, status: int, reason: str, headers: list[tuple[str, str]], length: int | None) -> None:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def _send_response(sock: socket.socket, status: int, reason: str, headers: list[tuple[str, str]], body: bytes, method: str) -> None:
    """A complete response; HEAD answers carry the upstream's Content-Length (in ``headers``) and no body."""
    bodiless = method == "HEAD" or status in (204, 304) or 100 <= status < 200
    _send_head(sock, status, reason, headers, None if bodiless else len(body))
    if not bodiless and body:
        sock.sendall(body)


#: Behaviours of :class:`HostileHTTPServer`.
HTTP_MODES = ("ok", "no-range", "ignore-range", "stall", "no-identity")


@dataclass
class HostileHTTPServer(_Served):
    """A web server on 127.0.0.1 serving ``files`` (path -> bytes) the way unhelpful servers do.

    - ``"ok"``: honours ``Range`` (206), sends an ``ETag``;
    - ``"no-range"``: like ``python -m http.server``: every GET is ``200`` with the whole file;
    - ``"ignore-range"``: every GET is ``200`` claiming ``claimed_size`` bytes and streams zeros until the
      client hangs up (a server that ignores ``Range`` in front of a huge object);
    - ``"stall"``: honours ``Range`` but, after the headers and half the body, sends nothing more for
      ``stall_seconds``;
    - ``"no-identity"``: honours ``Range`` with neither ``ETag`` nor ``Last-Modified``.

    ``sent`` counts the body bytes written and ``gets`` lists the GET requests' ``Range`` headers, so a test can bound what a client
    downloaded. Stops by itself after ``lifetime`` seconds.
    """

    files: dict[str, bytes]
    mode: str = "ok"
    claimed_size: int = 3 * 2**30
    stall_seconds: float = 30.0
    lifetime: float = 600.0
    sent: int = 0
    gets: list[str | None] = field(default_factory=list)
    _server: socketserver.ThreadingTCPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{path.lstrip('/')}"

    def start(self) -> HostileHTTPServer:
        import http.server

        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                owner._answer(self, body=False)

            def do_GET(self) -> None:
                owner._answer(self, body=True)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._serve(server, "hostile-http")
        return self

    def _write(self, handler: Any, data: bytes) -> None:
        handler.wfile.write(data)
        with self._lock:
            self.sent += len(data)

    def _answer(self, handler: Any, body: bool) -> None:
        data = self.files.get(handler.path.lstrip("/"))
        if data is None:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if body:
            with self._lock:
                self.gets.append(handler.headers.get("Range"))
        identity = [] if self.mode == "no-identity" else [("ETag", f'"{zlib.crc32(data):08x}-{len(data)}"')]
        wanted = handler.headers.get("Range")
        if not body or wanted is None or self.mode == "no-range":
            handler.send_response(200)
            for name, value in identity:
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            if body:
                self._write(handler, data)
            return
        if self.mode == "ignore-range":
            handler.send_response(200)
            handler.send_header("Content-Length", str(self.claimed_size))
            handler.end_headers()
            zeros = bytes(2**20)
            try:
                for _ in range(0, self.claimed_size, len(zeros)):
                    self._write(handler, zeros)
            except OSError:
                pass  # the client hung up, as it should
            handler.close_connection = True
            return
        start, _, end = wanted.removeprefix("bytes=").partition("-")
        a, b = int(start), min(int(end) + 1 if end else len(data), len(data))
        part = data[a:b]
        handler.send_response(206)
        for name, value in identity:
            handler.send_header(name, value)
        handler.send_header("Content-Range", f"bytes {a}-{b - 1}/{len(data)}")
        handler.send_header("Content-Length", str(len(part)))
        handler.end_headers()
        if self.mode == "stall":
            self._write(handler, part[: len(part) // 2])
            handler.wfile.flush()
            time.sleep(self.stall_seconds)
            handler.close_connection = True
            return
        self._write(handler, part)

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

Latency and bandwidth, alongside the faults (:meth:`FaultProxy.set_latency`, or the fields at start):

- ``first_byte``: no response's headers leave before this many seconds after its request arrived;
- ``bandwidth``: each connection's response bodies are paced to at most this many bytes per second, so
  concurrent connections each get the full rate, as on S3 (:data:`S3_FIRST_BYTE`, :data:`S3_BANDWIDTH`).

moto copies the whole object on every GET, whatever the range, so a ranged read of a large object costs
what the object's size does (``python benchmarks/latency_bed.py`` prints it). With ``cache_bytes`` the
proxy answers plain ranged GETs (one ``bytes=a-b`` or ``bytes=a-`` range, starting inside the object, no
condition other than ``If-Match``) from its own copy of the object, keyed by path, ``versionId`` and ETag:
each such request is first validated by a HEAD to the upstream issued no earlier than ``revalidate`` seconds
before the request arrived (concurrent requests share one HEAD), and its ``If-Match`` is compared with
the fresh ETag. Every other request, and every request whose validation fails or whose condition does not
hold, is forwarded, so the upstream itself answers 404, 412 and 416. ``revalidate=0`` (the default) gives
answers no staler than the request. A positive value lets a benchmark's requests share validations (moto
spends milliseconds of CPU per HEAD): a write through the proxy still takes effect at once, a write that
bypasses it within ``revalidate`` seconds.

The proxy runs on 127.0.0.1 on threads, with bounded socket timeouts, and stops by itself after
``lifetime`` seconds if nobody stops it first. ``python -m dataplug.testing.faultproxy UPSTREAM ...`` runs
one in its own process (so it does not share the GIL with the client it serves) and prints its endpoint.
"""

from __future__ import annotations

import argparse
import http.client
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

MODES = ("503", "reset", "truncate", "stall")
#: Seconds to the first byte of an S3 Standard GET: AWS's performance guidelines give 100-200 ms for
#: small objects and tens of milliseconds for the first byte; this is the figure the latency bed uses.
S3_FIRST_BYTE = 0.030
#: Bytes per second of one S3 connection (AWS's guidelines: 85-90 MB/s per request).
S3_BANDWIDTH = 90e6
#: Bytes sent between two pacing checks when ``bandwidth`` is set.
PACE_CHUNK = 64 * 1024
#: Conditions the cache does not evaluate: a request carrying one is forwarded.
_FORWARDED_CONDITIONS = ("if-none-match", "if-modified-since", "if-unmodified-since")
#: Query parameters a cached GET may carry (anything else, e.g. ``partNumber``, is forwarded).
_CACHEABLE_QUERY = {"versionId", "x-id"}
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "trailer", "upgrade"}
_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>faultproxy</RequestId></Error>"
)


class Headers(dict):
    """A request's headers by name, whatever case the client sent them in (obstore sends ``range``,
    botocore ``Range``)."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__((str(k).lower(), v) for k, v in dict(items).items())

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


@dataclass
class Request:
    """One request as the proxy saw it, and the fault it got (None when forwarded intact)."""

    method: str
    target: str
    headers: Headers
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
    first_byte: float = 0.0
    bandwidth: float | None = None
    cache_bytes: int = 0
    revalidate: float = 0.0
    requests: list[Request] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    _count: int = 0
    _spared: set[tuple[str, str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socketserver.ThreadingTCPServer | None = None
    _cache: _ObjectCache | None = None

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
            self.cache_hits = 0

    def set_latency(self, first_byte: float = 0.0, bandwidth: float | None = None) -> None:
        """Delay every response's headers to ``first_byte`` seconds after its request, and pace each
        connection's bodies to ``bandwidth`` bytes per second (None: unpaced); faults are left as they are."""
        assert first_byte >= 0 and (bandwidth is None or bandwidth > 0), (first_byte, bandwidth)
        self.first_byte, self.bandwidth = first_byte, bandwidth

    def start(self) -> FaultProxy:
        proxy = self
        self._cache = _ObjectCache(self, self.cache_bytes) if self.cache_bytes > 0 else None

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve_connection(self.request)

        class Server(socketserver.ThreadingTCPServer):
            request_queue_size = 1024  # hundreds of clients connect at once; the default backlog (5) drops SYNs

        server = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.daemon_threads = True
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        self._serve(server, "faultproxy")
        return self

    # -- one connection: requests until the client closes or a fault closes it ---------------------------

    def _serve_connection(self, sock: socket.socket) -> None:
        sock.settimeout(self.socket_timeout)
        # a paced body leaves in chunks: without NODELAY each chunk's last segment waits for the client's delayed ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        arrived = time.monotonic()
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers = http.client.parse_headers(rfile)
        if headers.get("Expect", "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            del headers["Expect"]
        body = _read_request_body(rfile, headers)
        request = Request(method, target, Headers(headers.items()))
        key = (method, target, headers.get("Range", ""))
        with self._lock:
            self.requests.append(request)
        if self._fault_now(request, key, before=True):
            if request.fault == "503":
                self._wait_first_byte(arrived)
                self._respond(sock, method, 503, "Slow Down", [("Content-Type", "application/xml")], _SLOWDOWN)
                return True
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        answer = self._cache.answer(method, target, headers, arrived) if self._cache is not None else None
        if answer is not None:
            with self._lock:
                self.cache_hits += 1
        status, reason, resp_headers, resp_body = answer or self._forward(method, target, headers.items(), body)
        if self._cache is not None and method in ("PUT", "POST", "DELETE"):
            self._cache.forget(target.partition("?")[0])
        self._wait_first_byte(arrived)
        if method != "HEAD" and len(resp_body) >= 2 and self._fault_now(request, key, before=False):
            _send_head(sock, status, reason, resp_headers, len(resp_body))
            self._send_body(sock, resp_body[: len(resp_body) // 2])
            if request.fault == "stall":
                time.sleep(self.stall_seconds)
            sock.shutdown(socket.SHUT_RDWR)
            return False
        self._respond(sock, method, status, reason, resp_headers, resp_body)
        return headers.get("Connection", "").lower() != "close"

    def _respond(self, sock: socket.socket, method: str, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """A complete response; HEAD answers carry the upstream's Content-Length (in ``headers``) and no body."""
        bodiless = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        _send_head(sock, status, reason, headers, None if bodiless else len(body))
        if not bodiless and body:
            self._send_body(sock, body)

    def _wait_first_byte(self, arrived: float) -> None:
        """Sleep until ``first_byte`` seconds after the request arrived (the time spent upstream counts)."""
        late = arrived + self.first_byte - time.monotonic()
        if late > 0:
            time.sleep(late)

    def _send_body(self, sock: socket.socket, body: bytes) -> None:
        """Send ``body``, paced to ``bandwidth`` bytes per second on this connection when one is set."""
        bandwidth = self.bandwidth
        if not bandwidth:
            sock.sendall(body)
            return
        view, started = memoryview(body), time.monotonic()
        for offset in range(0, len(view), PACE_CHUNK):
            chunk = view[offset : offset + PACE_CHUNK]
            ahead = started + (offset + len(chunk)) / bandwidth - time.monotonic()
            if ahead > 0:  # a chunk leaves once the rate allows all of it, so the last byte is not early
                time.sleep(ahead)
            sock.sendall(chunk)

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

    def _forward(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send the request upstream as it is: the response's status, reason, end-to-end headers and body."""
        upstream = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=self.socket_timeout)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
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


class _Validation:
    """The last HEAD of one object (path and version) and the one in flight, shared by concurrent requests."""

    def __init__(self) -> None:
        self.issued = -float("inf")
        self.result: tuple[int, dict[str, str], list[tuple[str, str]]] | None = None
        self.running = False


class _ObjectCache:
    """Whole objects the proxy fetched once, serving ranged GETs the way S3 does (see the module docstring)."""

    def __init__(self, proxy: FaultProxy, budget: int) -> None:
        self.proxy, self.budget = proxy, budget
        self.objects: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self.size = 0
        self.validations: dict[tuple[str, str], _Validation] = {}
        self.filling: dict[tuple[str, str, str], threading.Lock] = {}
        self.changed = threading.Condition()

    def forget(self, path: str) -> None:
        """After a write through the proxy: the next read of ``path`` (any version) is validated afresh."""
        with self.changed:
            for key in [key for key in self.validations if key[0] == path]:
                del self.validations[key]  # a HEAD in flight finishes for the requests already waiting on it

    def answer(self, method: str, target: str, headers, arrived: float) -> tuple[int, str, list[tuple[str, str]], bytes] | None:
        """The response to a cacheable ranged GET, or None to forward the request."""
        wanted = _RANGE.fullmatch(headers.get("Range", "").strip())
        if method != "GET" or wanted is None or any(name in headers for name in _FORWARDED_CONDITIONS):
            return None
        path, _, query = target.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        if not set(params) <= _CACHEABLE_QUERY:
            return None
        version = params.get("versionId", "")
        auth = [(k, v) for k, v in headers.items() if k.lower() not in ("range", "if-match", "content-length", "transfer-encoding")]
        status, head, kept = self._validate(path, version, auth, arrived)
        etag, size = head.get("etag", ""), int(head.get("content-length") or -1)
        condition = headers.get("If-Match")
        if status != 200 or not etag or (condition is not None and condition.strip() not in ("*", etag)):
            return None
        start = int(wanted.group(1))
        end = min(int(wanted.group(2)) if wanted.group(2) else size - 1, size - 1)
        if start >= size or end < start:
            return None
        data = self._object(path, version, etag, size, auth)
        if data is None:
            return None
        return 206, "Partial Content", [*kept, ("Content-Range", f"bytes {start}-{end}/{size}")], data[start : end + 1]

    def _validate(self, path: str, version: str, auth: list[tuple[str, str]], arrived: float) -> tuple[int, dict[str, str], list[tuple[str, str]]]:
        """The object's HEAD, from a request issued no earlier than ``revalidate`` seconds before ``arrived``."""
        with self.changed:
            flight = self.validations.setdefault((path, version), _Validation())
            while True:
                if flight.result is not None and flight.issued >= arrived - self.proxy.revalidate:
                    return flight.result
                if not flight.running:
                    flight.running, issued = True, time.monotonic()
                    break
                self.changed.wait()
        result: tuple[int, dict[str, str], list[tuple[str, str]]] = (0, {}, [])
        try:
            query = f"?{urlencode({'versionId': version})}" if version else ""
            status, _, kept, _ = self.proxy._forward("HEAD", path + query, auth)
            # S3 sends no whole-object checksum with a range: clients would check the range against it
            answer = [(k, v) for k, v in kept if k.lower() != "content-length" and not k.lower().startswith("x-amz-checksum")]
            result = (status, {k.lower(): v for k, v in kept}, answer)
        except (OSError, http.client.HTTPException):
            pass
        finally:
            with self.changed:
                flight.running, flight.issued, flight.result = False, issued, result
                self.changed.notify_all()
        return result

    def _object(self, path: str, version: str, etag: str, size: int, auth: list[tuple[str, str]]) -> bytes | None:
        """The object's bytes with this ETag, fetched whole once (pinned with ``If-Match``); None if it
        does not fit the budget or changed meanwhile."""
        key = (path, version, etag)
        with self.changed:
            if key in self.objects:
                self.objects.move_to_end(key)
                return self.objects[key]
            if size > self.budget:
                return None
            fill = self.filling.setdefault(key, threading.Lock())
        with fill:
            try:
                return self._fill(key, size, auth)
            finally:
                with self.changed:
                    self.filling.pop(key, None)

    def _fill(self, key: tuple[str, str, str], size: int, auth: list[tuple[str, str]]) -> bytes | None:
        path, version, etag = key
        with self.changed:
            if key in self.objects:
                return self.objects[key]
        query = f"?{urlencode({'versionId': version})}" if version else ""
        try:
            status, _, kept, data = self.proxy._forward("GET", path + query, [*auth, ("If-Match", etag)])
        except (OSError, http.client.HTTPException):
            return None
        if status != 200 or {k.lower(): v for k, v in kept}.get("etag") != etag or len(data) != size:
            return None
        with self.changed:
            while self.objects and self.size + size > self.budget:
                self.size -= len(self.objects.popitem(last=False)[1])
            self.objects[key] = data
            self.size += size
        return data


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


#: Behaviours of :class:`HostileHTTPServer`.
HTTP_MODES = ("ok", "no-range", "ignore-range", "stall", "no-identity")


@dataclass
class HostileHTTPServer(_Served):
    """A web server on 127.0.0.1 serving ``files`` (path -> bytes) the way unhelpful servers do.

    - ``"ok"``: honours ``Range`` (206) and ``If-Match`` (412 when the ``ETag`` differs), sends an ``ETag``;
    - ``"ignore-if-match"``: like ``"ok"``, but answers whatever ``If-Match`` says;
    - ``"no-range"``: like ``python -m http.server``: every GET is ``200`` with the whole file;
    - ``"ignore-range"``: every GET is ``200`` claiming ``claimed_size`` bytes and streams zeros until the
      client hangs up (a server that ignores ``Range`` in front of a huge object);
    - ``"stall"``: honours ``Range`` but, after the headers and half the body, sends nothing more for
      ``stall_seconds``;
    - ``"no-identity"``: honours ``Range`` with neither ``ETag`` nor ``Last-Modified``.

    ``sent`` counts the body bytes written, ``gets`` lists the GET requests' ``Range`` headers, so a test can bound what a client
    downloaded, and ``requests`` every request's method and headers. Stops by itself after ``lifetime`` seconds.
    """

    files: dict[str, bytes]
    mode: str = "ok"
    claimed_size: int = 3 * 2**30
    stall_seconds: float = 30.0
    lifetime: float = 600.0
    sent: int = 0
    gets: list[str | None] = field(default_factory=list)
    requests: list[tuple[str, Headers]] = field(default_factory=list)
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
        with self._lock:
            self.requests.append((handler.command, Headers(handler.headers.items())))
        data = self.files.get(handler.path.lstrip("/"))
        etag = f'"{zlib.crc32(data):08x}-{len(data)}"' if data is not None else None
        condition = handler.headers.get("If-Match")
        if data is None or (condition is not None and condition != etag and self.mode != "ignore-if-match"):
            handler.send_response(404 if data is None else 412)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if body:
            with self._lock:
                self.gets.append(handler.headers.get("Range"))
        identity = [] if self.mode == "no-identity" else [("ETag", etag)]
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


def main(argv: list[str] | None = None) -> None:
    """Run a :class:`FaultProxy` in this process until stdin closes (or ``--lifetime`` passes): its endpoint
    is printed on the first line of stdout."""
    parser = argparse.ArgumentParser(description="A latency, bandwidth and fault proxy in front of an S3 endpoint.")
    parser.add_argument("upstream", help="the endpoint to forward to, e.g. http://127.0.0.1:5000")
    parser.add_argument("--first-byte", type=float, default=S3_FIRST_BYTE, help="seconds to each response's first byte")
    parser.add_argument("--bandwidth", type=float, default=S3_BANDWIDTH, help="bytes per second per connection (0: unpaced)")
    parser.add_argument("--cache-mb", type=int, default=0, help="serve ranged GETs from a copy of each object, up to this many MB")
    parser.add_argument("--revalidate", type=float, default=0.0, help="seconds a HEAD validation may be older than a request")
    parser.add_argument("--lifetime", type=float, default=3600.0)
    args = parser.parse_args(argv)
    proxy = FaultProxy(
        args.upstream,
        first_byte=args.first_byte,
        bandwidth=args.bandwidth or None,
        cache_bytes=args.cache_mb * 10**6,
        revalidate=args.revalidate,
        lifetime=args.lifetime,
    )
    with proxy:
        print(proxy.endpoint, flush=True)
        closed = threading.Thread(target=sys.stdin.read, daemon=True)
        closed.start()
        closed.join(args.lifetime)


if __name__ == "__main__":
    main()

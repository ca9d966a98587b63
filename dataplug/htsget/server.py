"""An htsget 1.3 server over a folder or bucket of BGZF BAM and VCF objects (``dataplug serve ROOT``).

``GET /reads/<id>`` answers with the ticket of ``<ROOT>/<id>.bam`` and ``GET /variants/<id>`` with that of
``<ROOT>/<id>.vcf.gz`` (query ``referenceName``, ``start``, ``end``, ``format``, ``class=header``);
``/reads/service-info`` and ``/variants/service-info`` describe the service (GA4GH service-info). Each object
is opened (and indexed, the first time) on its first request and kept open; one replaced since (its
partition refuses a stale index) is opened, and indexed, again. Ticket body ranges name the
object's own URL when ROOT is HTTP(S), else this server's ``/data/<id>.<ext>``, which serves the object's
bytes with ``Range`` (206, ``Content-Range``; 416 past the end) under a strong ``ETag`` that the ticket's
``If-Match`` header pins: a client never concatenates bytes of an object replaced after its ticket.

Built on ``aiohttp.web``: aiohttp is already installed with dataplug (through s3fs and fsspec's HTTP
store), so the server adds no dependency; dataplug's blocking reads run on worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

import dataplug
from dataplug.cloudobject import CloudObject
from dataplug.errors import AccessDeniedError, DataplugError, InvalidFormatError, ObjectNotFoundError, StaleIndexError
from dataplug.htsget.tickets import HtsgetError, UnsupportedFormatError, ticket
from dataplug.storage import ObjectInfo, StorageObject

#: The endpoints: (htsget data type, object name extension, dataplug format).
ENDPOINTS = {"reads": ("reads", ".bam", "BAM"), "variants": ("variants", ".vcf.gz", "VCF")}
#: The ticket's media type (htsget 1.3, "Protocol essentials").
TICKET_MEDIA_TYPE = "application/vnd.ga4gh.htsget.v1.3.0+json"
#: Bytes read from the object per step while a ``/data`` response streams.
STREAM_PIECE = 8 * 2**20
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def etag(info: ObjectInfo) -> str:
    """The strong ETag ``/data`` gives an object: a digest of its size and identity, so it changes with them."""
    return '"' + hashlib.sha256(f"{info.size}:{info.identity}".encode()).hexdigest()[:32] + '"'


def _error(kind: str, status: int, message: str) -> web.Response:
    return web.json_response({"htsget": {"error": kind, "message": message}}, status=status, content_type=TICKET_MEDIA_TYPE)


class HtsgetServer:
    """The server's state: ROOT, its storage options and the objects opened so far."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None, index_location: str | None = None) -> None:
        self.root = root.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.index_location = index_location
        self.public = self.root.startswith(("http://", "https://"))
        self._objects: dict[str, CloudObject] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def object_url(self, name: str) -> str:
        """``<ROOT>/<name>``; an id that would leave ROOT (``..``, an absolute path) is :class:`HtsgetError`."""
        parts = name.split("/")
        if not name or name.startswith("/") or "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
            raise HtsgetError(None, f"{name!r} is not an id under the server's root")
        return f"{self.root}/{name}"

    async def open(self, url: str, data_format: str, fresh: bool = False) -> CloudObject:
        """The opened (indexed) object at ``url``, kept for later requests; ``fresh`` opens it again."""
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            if fresh or url not in self._objects:
                replaced = self._objects.pop(url, None)
                if replaced is not None:
                    replaced.close()  # its kept reader's file or session
                self._objects[url] = await asyncio.to_thread(
                    dataplug.open, url, self.storage_options, format=data_format, index_location=self.index_location, progress=False
                )
            return self._objects[url]

    async def ticket(self, request: web.Request) -> web.Response:
        """``GET /reads/<id>``, ``GET /variants/<id>``: the ticket, or the protocol's JSON error."""
        endpoint = request.match_info["endpoint"]
        datatype, ext, data_format = ENDPOINTS[endpoint]
        try:
            query = _query(request, data_format)
            name = request.match_info["id"]
            url = self.object_url(name + ext)
            headers: dict[str, str] = {}
            target = None if self.public else f"{request.scheme}://{request.host}/data/{quote(name + ext)}"
            for attempt in (0, 1):
                co = await self.open(url, data_format, fresh=attempt > 0)
                if target is not None:
                    headers = {"If-Match": etag(co.index().object_info)}
                try:
                    body = await asyncio.to_thread(ticket, co, **query, url=target, headers=headers)
                    break
                except StaleIndexError:
                    if attempt:
                        raise
            return web.json_response(body, content_type=TICKET_MEDIA_TYPE)
        except HtsgetError as exc:
            return _error(exc.error, exc.status, exc.cause)
        except ObjectNotFoundError as exc:
            return _error("NotFound", 404, f"no {datatype} object {request.match_info['id']!r} ({exc.cause})")
        except AccessDeniedError as exc:
            return _error("PermissionDenied", 403, exc.cause)
        except InvalidFormatError as exc:
            return _error("UnsupportedFormat", 400, str(exc))
        except DataplugError as exc:
            return _error("InternalError", 500, str(exc))

    async def service_info(self, request: web.Request) -> web.Response:
        """``GET /reads/service-info``, ``GET /variants/service-info``: GA4GH service-info for htsget 1.3."""
        endpoint = request.match_info["endpoint"]
        datatype, _, data_format = ENDPOINTS[endpoint]
        return web.json_response(
            {
                "id": f"org.dataplug.htsget.{datatype}",
                "name": f"dataplug htsget ({datatype})",
                "type": {"group": "org.ga4gh", "artifact": "htsget", "version": "1.3.0"},
                "description": f"htsget tickets for the BGZF {data_format} objects of {self.root}, from dataplug's indexes",
                "organization": {"name": "dataplug", "url": "https://pypi.org/project/dataplug/"},
                "version": dataplug.__version__,
                "htsget": {"datatype": datatype, "formats": [data_format], "fieldsParametersEffective": False, "tagsParametersEffective": False},
            }
        )

    async def data(self, request: web.Request) -> web.StreamResponse:
        """The bytes of ``<ROOT>/<name>`` (a ``.bam`` or ``.vcf.gz``), honouring ``Range`` and ``If-Match``."""
        name = request.match_info["name"]
        try:
            if not name.endswith(tuple(ext for _, ext, _ in ENDPOINTS.values())):  # a reader's probe for <url>.gzi, say
                return _error("NotFound", 404, f"{name!r}: the server serves .bam and .vcf.gz objects only")
            obj = StorageObject(self.object_url(name), self.storage_options)
            info = await asyncio.to_thread(obj.info)
        except HtsgetError as exc:
            return _error(exc.error, exc.status, exc.cause)
        except ObjectNotFoundError as exc:
            return _error("NotFound", 404, exc.cause)
        except AccessDeniedError as exc:
            return _error("PermissionDenied", 403, exc.cause)
        tag = etag(info)
        headers = {"ETag": tag, "Accept-Ranges": "bytes"}
        wanted = request.headers.get("If-Match")
        if wanted is not None and wanted.strip() not in ("*", tag):
            return web.Response(status=412, headers=headers, text="the object changed: its ETag is no longer the one asked for")
        span = _range(request.headers.get("Range"), info.size)
        if span is None:
            headers["Content-Range"] = f"bytes */{info.size}"
            return web.Response(status=416, headers=headers)
        start, end, partial = span
        if partial:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
        response = web.StreamResponse(status=206 if partial else 200, headers=headers)
        response.content_type = "application/octet-stream"
        response.content_length = end - start
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        for at in range(start, end, STREAM_PIECE):
            await response.write(await asyncio.to_thread(obj.read_range, at, min(at + STREAM_PIECE, end), info))
        await response.write_eof()
        return response


def _range(header: str | None, size: int) -> tuple[int, int, bool] | None:
    """``[start, end)`` of a single ``bytes=`` range against an object of ``size`` bytes and whether it is
    one (206): the whole object when there is no header or one this server ignores (several ranges, another
    unit: RFC 9110 lets it); None when the range cannot be satisfied (416)."""
    found = _RANGE.fullmatch(header.strip()) if header else None
    if found is None or found.group(1) == found.group(2) == "":
        return 0, size, False
    first, last = found.group(1), found.group(2)
    if first == "":
        return (max(size - int(last), 0), size, True) if int(last) > 0 and size > 0 else None
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        return None
    return start, end, True


def _query(request: web.Request, data_format: str) -> dict[str, Any]:
    """The :func:`~dataplug.htsget.ticket` arguments of a request's query (htsget 1.3 "Query parameters")."""
    q = request.query
    asked = q.get("format", data_format)
    if asked.upper() != data_format:
        raise UnsupportedFormatError(None, f"this server serves {data_format}, not {asked}")
    if "referenceMD5" in q:
        raise HtsgetError(None, "referenceMD5 is not supported here: name the reference with referenceName")
    data_class = q.get("class")
    if data_class not in (None, "header"):
        raise HtsgetError(None, f"class must be 'header' when given, not {data_class!r}")
    out: dict[str, Any] = {"reference_name": q.get("referenceName"), "header_only": data_class == "header"}
    for key in ("start", "end"):
        if key in q:
            if not q[key].isdigit():
                raise HtsgetError(None, f"{key} must be an unsigned integer, not {q[key]!r}")
            out[key] = int(q[key])
    return out


@web.middleware
async def _cors(request: web.Request, handler: Any) -> web.StreamResponse:
    """CORS as htsget asks: the request's ``Origin`` echoed; a preflight for GET accepted."""
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD"
        response.headers["Access-Control-Max-Age"] = str(30 * 24 * 3600)
        if "Access-Control-Request-Headers" in request.headers:
            response.headers["Access-Control-Allow-Headers"] = request.headers["Access-Control-Request-Headers"]
    else:
        response = await handler(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
    return response


async def _preflight(request: web.Request) -> web.Response:
    """OPTIONS: answered by :func:`_cors` before it gets here."""
    return web.Response(status=204)


def make_app(root: str, storage_options: dict[str, Any] | None = None, index_location: str | None = None) -> web.Application:
    """The server's ``aiohttp`` application over ``root`` (a folder, bucket or HTTP(S) prefix)."""
    server = HtsgetServer(root, storage_options, index_location)
    app = web.Application(middlewares=[_cors])
    endpoints = "{endpoint:reads|variants}"
    app.router.add_get(f"/{endpoints}/service-info", server.service_info)
    app.router.add_get(f"/{endpoints}/{{id:.+}}", server.ticket)
    app.router.add_get("/data/{name:.+}", server.data)
    app.router.add_route("OPTIONS", "/{tail:.*}", _preflight)
    return app


def serve(
    root: str, host: str = "127.0.0.1", port: int = 8000, storage_options: dict[str, Any] | None = None, index_location: str | None = None
) -> None:
    """Serve htsget over ``root`` on ``host:port`` until interrupted (``dataplug serve ROOT``)."""
    web.run_app(make_app(root, storage_options, index_location), host=host, port=port, print=lambda text: print(text.splitlines()[0], flush=True))

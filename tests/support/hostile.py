"""Hostile and misbehaving servers, as FixtureSite handlers (reusable by any test suite).

Each factory returns a handler ``(BaseHTTPRequestHandler) -> None`` for ``site.add(path, handler=...)``,
or installs routes itself (``install_*``). Handlers that keep state (``Conditional``, ``Lying``) expose
it as attributes so a test can change the resource between polls.

    site.add("/feed.xml", handler=hostile.retry_after(429, "120"))
    cond = hostile.Conditional(feed_bytes, etag='"v1"'); site.add("/feed.xml", handler=cond)
    hostile.install_redirect_chain(site, "/old.xml", [301, 308], "/feed.xml")

Inventory: ``Conditional`` (ETag/Last-Modified, 304), ``Lying`` (validators that lie), ``status`` (404,
410, 5xx ...), ``retry_after`` + ``http_date`` (429/503, delta-seconds or HTTP-date), ``redirect``,
``install_redirect_chain`` (301/302/307/308), ``install_redirect_loop``, ``gzip_bomb``, ``deflate_body``,
``endless_body``, ``slow_drip``, ``stall``, ``huge_headers``, ``wrong_content_type``, ``misdeclared_charset``,
``big_feed`` (50 MiB), ``gzip_bomb_file`` (a ``.xml.gz`` sitemap), ``huge_sitemap``, and documents: ``many_entries_feed`` (100,000 entries), ``entity_expansion_feed``,
``invalid_utf8_feed``, ``rss_document``/``rss_items``, ``page_html``.
"""

from __future__ import annotations

import gzip
import io
import time
import zlib
from collections.abc import Callable
from email.utils import format_datetime
from datetime import datetime
from http.server import BaseHTTPRequestHandler

Handler = Callable[[BaseHTTPRequestHandler], None]
RSS = "application/rss+xml; charset=utf-8"


def _send(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD" and body:
        h.wfile.write(body)


def _gone(h: BaseHTTPRequestHandler) -> None:
    h.close_connection = True


# --- conditional GET -------------------------------------------------------------------------------
class Conditional:
    """ETag / Last-Modified done right: 304 when the client's validator matches the current one.
    Change ``body``/``etag``/``last_modified`` between polls; ``requests`` records the validators sent."""

    def __init__(self, body: bytes, *, etag: str | None = '"v1"', last_modified: str | None = None,
                 content_type: str = RSS, extra_headers: dict[str, str] | None = None):
        self.body = body
        self.etag = etag
        self.last_modified = last_modified
        self.content_type = content_type
        self.extra_headers = extra_headers or {}
        self.requests: list[dict[str, str | None]] = []

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        inm, ims = h.headers.get("If-None-Match"), h.headers.get("If-Modified-Since")
        self.requests.append({"if_none_match": inm, "if_modified_since": ims})
        validators = {k: v for k, v in (("ETag", self.etag), ("Last-Modified", self.last_modified)) if v}
        if (inm and self.etag and inm == self.etag) or (not inm and ims and ims == self.last_modified):
            _send(h, 304, b"", validators | self.extra_headers)
            return
        _send(h, 200, self.body, {"Content-Type": self.content_type} | validators | self.extra_headers)


class Lying(Conditional):
    """Validators that lie. ``mode="static-etag"``: the ETag never changes although the body does (and a
    matching If-None-Match gets 304); ``mode="always-304"``: any conditional request gets 304, with the
    *current* ETag (which differs from the one the client sent once the body changed)."""

    def __init__(self, body: bytes, *, mode: str = "static-etag", **kw):
        super().__init__(body, **kw)
        self.mode = mode

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        inm, ims = h.headers.get("If-None-Match"), h.headers.get("If-Modified-Since")
        self.requests.append({"if_none_match": inm, "if_modified_since": ims})
        validators = {k: v for k, v in (("ETag", self.etag), ("Last-Modified", self.last_modified)) if v}
        if (self.mode == "always-304" and (inm or ims)) or (self.mode == "static-etag" and inm == self.etag):
            _send(h, 304, b"", validators)
            return
        _send(h, 200, self.body, {"Content-Type": self.content_type} | validators)


# --- status codes -----------------------------------------------------------------------------------
def status(code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    def handler(h: BaseHTTPRequestHandler) -> None:
        _send(h, code, body, {"Content-Type": "text/plain"} | (headers or {}))
    return handler


def retry_after(code: int, value: str) -> Handler:
    """429/503 with ``Retry-After: value`` (delta-seconds like ``"120"`` or an HTTP-date)."""
    return status(code, b"slow down", {"Retry-After": value})


def http_date(dt: datetime) -> str:
    return format_datetime(dt, usegmt=True)


# --- redirects -------------------------------------------------------------------------------------------
def redirect(to: str, code: int = 301) -> Handler:
    return status(code, b"", {"Location": to})


def install_redirect_chain(site, start: str, codes: list[int], final: str) -> list[str]:
    """start -(codes[0])-> start/1 -(codes[1])-> ... -> final. Returns the paths of the chain."""
    paths = [start] + [f"{start}.hop{i}" for i in range(1, len(codes))]
    for i, code in enumerate(codes):
        target = paths[i + 1] if i + 1 < len(paths) else final
        site.add(paths[i], handler=redirect(target, code))
    return paths


def install_redirect_loop(site, a: str = "/loop-a", b: str = "/loop-b", code: int = 302) -> str:
    site.add(a, handler=redirect(b, code))
    site.add(b, handler=redirect(a, code))
    return a


# --- bodies that hurt ----------------------------------------------------------------------------------
def gzip_bomb(decompressed_bytes: int = 64 * 1024 * 1024, content_type: str = RSS) -> Handler:
    """A small gzip body that inflates to ``decompressed_bytes`` of zeros after an RSS prologue."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        gz.write(b'<?xml version="1.0"?><rss version="2.0"><channel><title>')
        block = b"\0" * (1024 * 1024)
        for _ in range(decompressed_bytes // len(block)):
            gz.write(block)
    payload = buf.getvalue()

    def handler(h: BaseHTTPRequestHandler) -> None:
        _send(h, 200, payload, {"Content-Type": content_type, "Content-Encoding": "gzip"})
    return handler


SITEMAP_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
                b'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">')


def gzip_bomb_file(decompressed_bytes: int = 64 * 1024 * 1024) -> Handler:
    """A ``.xml.gz`` sitemap *file* (``application/x-gzip``, no Content-Encoding) that inflates to
    ``decompressed_bytes``: a urlset prologue, then zeros."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        gz.write(SITEMAP_HEAD + b"<url><loc>")
        block = b"\0" * (1024 * 1024)
        for _ in range(decompressed_bytes // len(block)):
            gz.write(block)
    payload = buf.getvalue()

    def handler(h: BaseHTTPRequestHandler) -> None:
        _send(h, 200, payload, {"Content-Type": "application/x-gzip"})
    return handler


def huge_sitemap(total_bytes: int, base: str = "http://127.0.0.1/s", when: datetime | None = None) -> Handler:
    """A well-formed news sitemap of about ``total_bytes``: ``<url>`` entries dated ``when`` (default: now),
    generated while sending."""
    def handler(h: BaseHTTPRequestHandler) -> None:
        date = (when or datetime.now().astimezone()).isoformat().encode()
        tail = b"</urlset>"
        item = (b"<url><loc>" + base.encode() + b"/%09d</loc><news:news><news:publication><news:name>Huge"
                b"</news:name><news:language>en</news:language></news:publication><news:publication_date>"
                + date + b"</news:publication_date><news:title>Entry</news:title></news:news></url>")
        n = max(0, (total_bytes - len(SITEMAP_HEAD) - len(tail)) // len(item % 0))
        h.send_response(200)
        h.send_header("Content-Type", "application/xml")
        h.send_header("Content-Length", str(len(SITEMAP_HEAD) + n * len(item % 0) + len(tail)))
        h.end_headers()
        try:
            h.wfile.write(SITEMAP_HEAD)
            for i in range(n):
                h.wfile.write(item % i)
            h.wfile.write(tail)
        except OSError:
            pass
        _gone(h)
    return handler


def deflate_body(body: bytes, content_type: str = RSS, raw: bool = False) -> Handler:
    """``Content-Encoding: deflate`` done either way servers do it (zlib-wrapped, or raw when ``raw``)."""
    if raw:
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        payload = c.compress(body) + c.flush()
    else:
        payload = zlib.compress(body)

    def handler(h: BaseHTTPRequestHandler) -> None:
        _send(h, 200, payload, {"Content-Type": content_type, "Content-Encoding": "deflate"})
    return handler


def endless_body(content_type: str = RSS, chunk: bytes = b"<item><title>again</title></item>" * 100) -> Handler:
    """Headers without a length, then the same chunk until the client hangs up."""
    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel><title>endless</title>')
        try:
            while True:
                h.wfile.write(chunk)
        except OSError:
            pass
        _gone(h)
    return handler


def slow_drip(body: bytes, delay_s: float = 0.5, step: int = 1, content_type: str = RSS) -> Handler:
    """A correct Content-Length, then ``step`` bytes every ``delay_s`` seconds (beats every read timeout)."""
    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        try:
            for i in range(0, len(body), step):
                h.wfile.write(body[i:i + step])
                h.wfile.flush()
                time.sleep(delay_s)
        except OSError:
            pass
        _gone(h)
    return handler


def stall(seconds: float) -> Handler:
    """Accept the request, then say nothing for ``seconds`` (read timeout)."""
    def handler(h: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        _gone(h)
    return handler


def huge_headers(total_bytes: int = 1024 * 1024) -> Handler:
    """A response whose header block is ``total_bytes`` long (many big X- headers)."""
    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", RSS)
        value = "x" * 8000
        for i in range(total_bytes // 8000 + 1):
            h.send_header(f"X-Filler-{i}", value)
        h.send_header("Content-Length", "0")
        try:
            h.end_headers()
        except OSError:
            pass
        _gone(h)
    return handler


def wrong_content_type(body: bytes, content_type: str = "image/png") -> Handler:
    return status(200, body, {"Content-Type": content_type})


# --- documents ---------------------------------------------------------------------------------------------
def rss_items(n: int, base: str = "http://127.0.0.1/a", *, guid: bool = True) -> bytes:
    """``n`` minimal items, as one bytes run (for building big feeds fast)."""
    if guid:
        return b"".join(b"<item><title>t%d</title><link>%s/%d</link><guid>g%d</guid></item>" % (i, base.encode(), i, i)
                        for i in range(n))
    return b"".join(b"<item><title>t%d</title><link>%s/%d</link></item>" % (i, base.encode(), i) for i in range(n))


def rss_document(items: bytes, title: bytes = b"hostile", encoding: str = "utf-8") -> bytes:
    return (b'<?xml version="1.0" encoding="' + encoding.encode() + b'"?><rss version="2.0"><channel><title>'
            + title + b"</title><link>http://127.0.0.1/</link><description>d</description>" + items
            + b"</channel></rss>")


def many_entries_feed(n: int = 100_000, base: str = "http://127.0.0.1/a") -> bytes:
    return rss_document(rss_items(n, base))


def big_feed(total_bytes: int = 50 * 1024 * 1024, content_type: str = RSS) -> Handler:
    """A well-formed feed of ``total_bytes`` (padded items), generated while sending (little server memory)."""
    head = rss_document(b"").split(b"</channel>")[0]
    tail = b"</channel></rss>"
    pad = b"x" * 4000
    item = b"<item><title>big</title><link>http://127.0.0.1/big</link><description>" + pad + b"</description></item>"

    def handler(h: BaseHTTPRequestHandler) -> None:
        n = max(0, (total_bytes - len(head) - len(tail)) // len(item))
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(head) + n * len(item) + len(tail)))
        h.end_headers()
        try:
            h.wfile.write(head)
            for _ in range(n):
                h.wfile.write(item)
            h.wfile.write(tail)
        except OSError:
            pass
        _gone(h)
    return handler


def entity_expansion_feed(levels: int = 9) -> bytes:
    """A "billion laughs" RSS document: nested internal entities expanding to 10**levels copies."""
    ents = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, levels + 1)
    ]
    return (f'<?xml version="1.0"?>\n<!DOCTYPE rss [{"".join(ents)}]>\n<rss version="2.0"><channel>'
            f"<title>&lol{levels};</title><link>http://127.0.0.1/</link><description>d</description>"
            "<item><title>only</title><link>http://127.0.0.1/only</link><guid>only</guid></item>"
            "</channel></rss>").encode()


def invalid_utf8_feed(base: str = "http://127.0.0.1/a") -> bytes:
    """Declared UTF-8, with bytes that are not (a Latin-1 é and a stray continuation byte) in a title."""
    return rss_document(
        b"<item><title>caf\xe9 \x80 au lait</title><link>" + base.encode() + b"/1</link><guid>u1</guid></item>"
        b"<item><title>second</title><link>" + base.encode() + b"/2</link><guid>u2</guid></item>"
    )


def misdeclared_charset(text: str, *, actual: str, declared: str, content_type: str = "text/html") -> Handler:
    """``text`` encoded in ``actual`` but served as ``Content-Type: <content_type>; charset=<declared>``."""
    return status(200, text.encode(actual), {"Content-Type": f"{content_type}; charset={declared}"})


def page_html(title: str, text: str, *, charset_meta: str | None = "utf-8") -> str:
    meta = f'<meta charset="{charset_meta}">' if charset_meta else ""
    return (f"<!doctype html><html><head>{meta}<title>{title}</title></head>"
            f"<body><article><h1>{title}</h1><p>{text}</p></article></body></html>")

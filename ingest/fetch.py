"""The one HTTP fetcher of the poller: feeds, robots.txt and article pages.

One ``httpx.AsyncClient`` whose transport connects only through ``GuardedBackend`` (SSRF guard), with
no proxies from the environment. For each request the fetcher:

* follows redirects itself, one hop at a time (each hop is a new, vetted connection target), up to
  ``max_redirects``, refusing loops; the hops are kept so the caller can tell 301/308 from 302/307;
* waits for the per-host limiter (``HostLimiter``) before every hop;
* bounds every hop by the connect and read timeouts and by ``total_timeout_s`` (body included);
* reads the body only for 2xx answers, decoding gzip/deflate itself and refusing it past
  ``max_bytes`` *decoded* bytes (``BoundedDecoder``); with ``gzip_files``, a body that is itself a gzip
  file (a sitemap's ``.xml.gz``, whatever its content type) is inflated too, within the same cap.

Failures come out as ``FetchError`` with an ``error_class`` from ``ERROR_CLASSES``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urljoin

import certifi
import httpcore
import httpx

from ingest.decode import ACCEPT_ENCODING, BodyTooLarge, BoundedDecoder, UnsupportedEncoding
from ingest.limits import Deadline, HostLimiter
from ingest.netguard import AddressBlocked, GuardedBackend, ResolutionFailed, Resolver
from ingest.schedule import parse_retry_after
from ingest.sitemap import GZIP_MAGIC
from ingest.urls import HTTP_SCHEMES, host_of
from newsflow.settings import Settings

REDIRECTS = (301, 302, 303, 307, 308)
PERMANENT_REDIRECTS = (301, 308)

# error_class -> what it means; the poller's scheduling treats them per ``ingest.schedule.ERROR_KINDS``.
ERROR_CLASSES = {
    "not_found": "404: kept, polled again with backoff",
    "gone": "410: the feed is retired and reported",
    "rate_limited": "429: Retry-After honoured",
    "unavailable": "503: Retry-After honoured",
    "server_error": "other 5xx",
    "client_error": "other 4xx (401, 403, ...)",
    "timeout": "connect, read or total timeout",
    "dns": "the host name does not resolve",
    "tls": "TLS handshake or certificate failure",
    "connect": "connection refused or reset",
    "network": "the connection broke during the exchange",
    "protocol": "malformed HTTP (huge headers, bad chunking, redirect without Location)",
    "blocked": "SSRF guard: the host resolves to a private/loopback/reserved address",
    "redirect_loop": "a redirect leads back to a URL already visited",
    "too_many_redirects": "more redirects than max_redirects",
    "too_large": "the body exceeds its byte cap after decompression",
    "bad_encoding": "unsupported or corrupt Content-Encoding",
    "bad_content_type": "the content type is not a feed (or not a page)",
    "bad_url": "not an http(s) URL",
    "parse": "feedparser could not read the document (bozo)",
}


class Deferred(Exception):
    """The host's turn came after the caller's deadline: nothing was sent; try again in a later batch."""


class FetchError(Exception):
    def __init__(self, error_class: str, message: str, *, url: str, hops: list[Hop] | None = None):
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message
        self.url = url
        self.hops = hops or []


@dataclass(frozen=True)
class Hop:
    url: str
    status: int
    location: str


@dataclass
class Response:
    """One fetched resource after redirects, with sentence-like predicates (STYLE #7)."""

    url: str
    final_url: str
    status: int
    headers: httpx.Headers
    body: bytes = b""
    hops: list[Hop] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def is_ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_modified(self) -> bool:
        return self.status != 304

    @property
    def is_gone(self) -> bool:
        return self.status == 410

    @property
    def is_rate_limited(self) -> bool:
        return self.status in (429, 503)

    def retry_delay(self, now: datetime) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"), now)

    @property
    def redirected_permanently(self) -> bool:
        """True when there were redirects and every one of them was permanent (301/308)."""
        return bool(self.hops) and all(h.status in PERMANENT_REDIRECTS for h in self.hops)

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def _transport(settings: Settings, backend: GuardedBackend) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its connection pool rebuilt on the guarded network backend."""
    # The fetcher's own limiter bounds requests in flight; the pool only needs room for them. Few idle
    # keep-alive connections: httpcore scans its whole pool on every request, and most feeds are on
    # hosts that see one request per cycle (a feed's pages reuse its connection right away).
    limits = httpx.Limits(
        max_connections=settings.fetch_concurrency + 8,
        max_keepalive_connections=max(4, settings.fetch_concurrency // 4),
        keepalive_expiry=15.0,
    )
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(  # noqa: SLF001 - httpx has no network_backend argument
        ssl_context=ssl.create_default_context(cafile=certifi.where()),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport


class Fetcher:
    def __init__(self, settings: Settings, *, resolver: Resolver | None = None, limiter: HostLimiter | None = None,
                 backend: GuardedBackend | None = None):
        self.settings = settings
        self.backend = backend or GuardedBackend(resolver, allow_loopback=settings.allow_private_addresses)
        self.limiter = limiter or HostLimiter(
            concurrency=settings.host_concurrency, rate_per_s=settings.host_rate_per_s,
            total=settings.fetch_concurrency,
        )
        self.client = httpx.AsyncClient(
            transport=_transport(settings, self.backend),
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_s, read=settings.read_timeout_s,
                write=settings.read_timeout_s, pool=settings.total_timeout_s,
            ),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def get(self, url: str, *, max_bytes: int, headers: dict[str, str] | None = None,
                  what: str = "body", deadline: Deadline | None = None, gzip_files: bool = False) -> Response:
        """GET ``url`` following redirects; the body is read for 2xx answers only (and inflated when it is a
        gzip file and ``gzip_files``). Raises FetchError, or Deferred when the per-host limiter lets the
        first request go only after ``deadline``."""
        hops: list[Hop] = []
        visited = {url}
        current = url
        started = time.monotonic()
        for _ in range(self.settings.max_redirects + 1):
            status, resp_headers, body = await self._hop(current, headers or {}, max_bytes, what, hops,
                                                         None if hops else deadline, gzip_files)
            location = resp_headers.get("location")
            if status in REDIRECTS:
                if not location:
                    raise FetchError("protocol", f"{status} without Location", url=current, hops=hops)
                target = urljoin(current, location.strip())
                hops.append(Hop(current, status, target))
                if target in visited:
                    raise FetchError("redirect_loop", f"{current} redirects back to {target}", url=url, hops=hops)
                visited.add(target)
                current = target
                continue
            return Response(url, current, status, resp_headers, body, hops, time.monotonic() - started)
        raise FetchError("too_many_redirects", f"more than {self.settings.max_redirects} redirects",
                         url=url, hops=hops)

    async def _hop(self, url: str, headers: dict[str, str], max_bytes: int, what: str,
                   hops: list[Hop], deadline: Deadline | None,
                   gzip_files: bool = False) -> tuple[int, httpx.Headers, bytes]:
        try:
            scheme = httpx.URL(url).scheme
        except httpx.InvalidURL as exc:
            raise FetchError("bad_url", str(exc), url=url, hops=hops) from exc
        if scheme not in HTTP_SCHEMES:
            raise FetchError("bad_url", f"scheme {scheme!r} is not fetched", url=url, hops=hops)
        async with self.limiter.slot(host_of(url)):
            if deadline is not None and deadline.passed():
                raise Deferred(url)
            try:
                async with asyncio.timeout(self.settings.total_timeout_s):
                    request = self.client.build_request("GET", url, headers=headers)
                    response = await self.client.send(request, stream=True)
                    try:
                        body = b""
                        if 200 <= response.status_code < 300:
                            body = await _read_capped(response, max_bytes, what, gzip_files)
                        return response.status_code, response.headers, body
                    finally:
                        await response.aclose()
            except FetchError:
                raise
            except TimeoutError as exc:
                raise FetchError("timeout", f"no complete answer within {self.settings.total_timeout_s:g}s "
                                 "(total timeout)", url=url, hops=hops) from exc
            except Exception as exc:  # noqa: BLE001 - every failure is classified, none is swallowed
                error_class, message = classify(exc)
                raise FetchError(error_class, message, url=url, hops=hops) from exc


async def _read_capped(response: httpx.Response, max_bytes: int, what: str, gzip_files: bool = False) -> bytes:
    length = response.headers.get("content-length")
    encoding = response.headers.get("content-encoding")
    if length and length.isdigit() and not encoding and int(length) > max_bytes:
        raise BodyTooLarge(max_bytes, what)
    decoder = BoundedDecoder(encoding, max_bytes, what)
    async for raw in response.aiter_raw():
        decoder.feed(raw)
    body = decoder.finish()
    if gzip_files and body.startswith(GZIP_MAGIC):
        file = BoundedDecoder("gzip", max_bytes, what)
        file.feed(body)
        body = file.finish()
    return body


def classify(exc: BaseException) -> tuple[str, str]:
    """(error_class, message) for an exception raised while fetching."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, AddressBlocked):
        return "blocked", text
    if isinstance(exc, ResolutionFailed):
        return "dns", text
    if isinstance(exc, BodyTooLarge):
        return "too_large", text
    if isinstance(exc, UnsupportedEncoding):
        return "bad_encoding", text
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", f"{type(exc).__name__}: {text}"
    if isinstance(exc, httpx.ConnectError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ssl.SSLError) or "SSL" in text or "CERTIFICATE" in text.upper():
            return "tls", text
        return "connect", text
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.DecodingError)):
        return "protocol", text
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return "bad_url", text
    if isinstance(exc, (httpx.NetworkError, httpx.TransportError, OSError)):
        return "network", f"{type(exc).__name__}: {text}"
    if isinstance(exc, ssl.SSLError):
        return "tls", text
    raise exc

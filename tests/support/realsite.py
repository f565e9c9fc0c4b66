"""A local web of real publishers: the corpus pages served on their own host names, behind local feeds.

Third-party pages are read from ``tests.conftest.CORPUS`` at run time (never copied into the repo):

* ``pages/*.html`` + ``pages/expectations.json`` (trafilatura's evaluation pages; 11 have no URL and
  get a made-up one on ``nourl.example``);
* ``news-metadata/pages/*.html.gz`` + ``news-metadata/index.json`` (fundus' publisher pages, with the
  expected title and publishing date in the ``.json`` beside each page).

``PublisherWeb`` is one ``ThreadingHTTPServer`` on 127.0.0.1 that routes by the ``Host`` header, so
every page is served at ``http://<its real host>:<port><its real path and query>``. Host names reach
it through the poller's ``StubResolver`` (``resolver_table``): no real DNS, no real publisher.

* **Bodies** are the page's own bytes, with absolute links to any corpus host (``https://host``,
  ``http://host``, ``//host``) rewritten to ``http://host:<port>`` at the byte level, so legacy
  charsets survive and a ``<link rel=canonical>`` stays on the same host as in the wild.
* **Headers** as real servers send them: ``text/html; charset=<declared>`` when the page declares a
  charset in a ``<meta>``, plain ``text/html`` otherwise; half of the news-metadata pages go out
  gzip-encoded when the request accepts gzip.
* **Routing** is tolerant as real servers are: the exact path and query, else the same without
  tracking parameters (``utm_*``, ``ref``, ...), else the path with or without its trailing slash.
  Anything else is a 404, and so is ``/robots.txt`` except on the one host given real rules.
* **Counting**: every request per (host, path), and per page (whichever variant reached it): the
  "fetches per page" of the report.

``build_feeds`` puts every page in at least one RSS 2.0 or Atom feed on ``FEED_HOST``, some pages in
two or three, each listing under another link variant (``?ref=rss``, ``utm_*``, a trailing slash, an
upper-case host). ``norm_url`` maps any of those URLs (or a canonical link) back to its page.

It also serves a Google News sitemap source on ``FEED_HOST``: an index (``SITEMAP_INDEX``) of two news
sitemaps dated now, one a gzip file (``.xml.gz``, ``application/x-gzip``), and of one dated years ago that
is not even served (a poller reading only recent sitemaps never asks for it). ``SITEMAP_ONLY`` news pages
are listed only there (taken out of the feeds); ``SITEMAP_ALSO`` more are listed there and, under another
link, in a feed. Entries carry the page's title and publishing date as news:title and
news:publication_date, and the run's time as lastmod.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit, urlunsplit
from xml.sax.saxutils import escape, quoteattr

from tests.support.feeds import news_sitemap, sitemap_index

FEED_HOST = "feeds.newsflow.test"
NOURL_HOST = "nourl.example"
ROBOTS_HOST = "www.bbc.com"  # the one host with real robots.txt rules (3 corpus pages, all under /news/)
DISALLOWED_PATH = "/private/members-briefing-on-licence-fee"  # only reachable through a feed; never fetched
ALLOWED_PATH = "/private/public/open-letter-from-the-editor"  # allowed by the longer Allow rule
ROBOTS_TXT = b"""# robots.txt of a real-looking publisher
User-agent: GPTBot
Disallow: /

User-agent: *
Disallow: /private/
Allow: /private/public/
Disallow: /search
Disallow: /*?print=

Sitemap: https://www.bbc.com/sitemaps/https-index-com-news.xml
"""
# Query parameters that real servers ignore when routing (analytics, referrers).
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "at_", "wt_")
_TRACKING_KEYS = {"ref", "ref_src", "fbclid", "gclid", "msclkid", "source", "src", "ico", "r", "cmp", "xtor", "ocid"}
_SAFE = b"/:@!$'()*+,;-._~"  # never percent-encoded in a route key (plus ASCII letters and digits)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_:.-]+)", re.I)
# An absolute or protocol-relative link at the start of a URL (not inside another URL's path).
_LINK = re.compile(rb"(?<![\w/.:+-])((?:https?:)?//)([A-Za-z0-9.-]+)(:\d+)?(?=[/\"'?#\s<>)\\,;]|$)", re.I)

SITEMAP_INDEX = "sitemaps/news-index.xml"
SITEMAP_CHILDREN = ("sitemaps/news-1.xml.gz", "sitemaps/news-2.xml")
SITEMAP_OLD_CHILD = "sitemaps/news-2019.xml"  # listed with an old lastmod: never fetched, never served
SITEMAP_ONLY = 24  # news pages listed only by the news sitemap
SITEMAP_ALSO = 12  # news pages listed by a feed and, under another link, by the news sitemap
SITEMAP_PUBLICATION = "Newsflow test wire"
FEED_NAMES = ("rss/world.xml", "rss/europe.xml", "rss/business.xml", "rss/culture.xml",
              "atom/latest.xml", "atom/regional.xml", "atom/opinion.xml", "atom/archive.xml")
VARIANTS = ("ref", "utm", "slash", "upper")


# --- URLs ------------------------------------------------------------------------------------------------
def is_tracking(key: str) -> bool:
    k = key.lower()
    return k.startswith(_TRACKING_PREFIXES) or k in _TRACKING_KEYS


def _q(part: str) -> str:
    """One spelling of a path or query part, whatever the client percent-encoded."""
    return quote_from_bytes(unquote_to_bytes(part), safe=_SAFE + b"=&")


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, as servers (and httpx) resolve ``/a/./b/../c``."""
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/".join(out) or "/"


def route_key(path: str, query: str) -> str:
    return _q(remove_dot_segments(path or "/")) + ("?" + _q(query) if query else "")


def loose_key(path: str, query: str) -> str:
    """The key real servers effectively route on: no tracking parameters, no trailing slash."""
    kept = [p for p in query.split("&") if p and not is_tracking(p.split("=", 1)[0])]
    return route_key(remove_dot_segments(path or "/").rstrip("/") or "/", "&".join(kept))


def norm_url(url: str) -> str:
    """Identity of a URL for matching documents and dead letters to pages: host (lowercase, no port,
    no scheme) + loose path and query. ``https://www.x.de/a/?utm_source=y`` == ``http://WWW.X.DE:81/a``."""
    parts = urlsplit(url.strip())
    return (parts.hostname or "").lower().rstrip(".") + loose_key(parts.path, parts.query)


def variant(url: str, kind: str) -> str:
    """A link variant feeds really use for the same article."""
    parts = urlsplit(url)
    if kind == "ref":
        return urlunsplit(parts._replace(query=(parts.query + "&" if parts.query else "") + "ref=rss"))
    if kind == "utm":
        extra = "utm_source=rss&utm_medium=feed"
        return urlunsplit(parts._replace(query=(parts.query + "&" if parts.query else "") + extra))
    if kind == "slash":
        path = parts.path or "/"
        path = path.rstrip("/") if path.endswith("/") and path != "/" else path + "/"
        return urlunsplit(parts._replace(path=path))
    if kind == "upper":
        return urlunsplit(parts._replace(netloc=parts.netloc.upper()))
    raise ValueError(kind)


def slash_variant_possible(url: str) -> bool:
    return (urlsplit(url).path or "/") != "/"


# --- the corpus ------------------------------------------------------------------------------------------
@dataclass
class CorpusPage:
    id: str  # "pages/<file>" or "news-metadata/<file>"; fake pages: "fake/<name>"
    url: str  # as in the wild (https://host/path?query#fragment), or made up when the corpus has none
    body: bytes  # the page's own bytes, decompressed
    made_up_url: bool = False
    title: str | None = None  # news-metadata: the expected title
    published: datetime | None = None  # news-metadata: the expected publishing date
    expect: dict | None = None  # pages/: {"with": [...], "without": [...]}
    gzip: bool = False  # served gzip-encoded to clients that accept it
    robots_disallowed: bool = False

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    @property
    def key(self) -> str:
        return norm_url(self.url)

    @property
    def declared_charset(self) -> str | None:
        m = _META_CHARSET.search(self.body[:50_000])
        return m.group(1).decode("ascii").lower() if m else None


def _published(value: str | None) -> datetime | None:
    if not value:
        return None
    d = datetime.fromisoformat(value)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def load_corpus(corpus: Path) -> list[CorpusPage]:
    pages: list[CorpusPage] = []
    expectations = json.loads((corpus / "pages" / "expectations.json").read_text(encoding="utf-8"))
    for name, exp in sorted(expectations.items()):
        url = (exp["url"] or "").strip() or f"http://{NOURL_HOST}/{name}"  # one URL has a trailing blank
        pages.append(CorpusPage(f"pages/{name}", url, (corpus / "pages" / name).read_bytes(),
                                made_up_url=exp["url"] is None,
                                expect={"with": exp["with"], "without": exp["without"]}))
    meta_dir = corpus / "news-metadata"
    for i, row in enumerate(json.loads((meta_dir / "index.json").read_text(encoding="utf-8"))):
        expected = json.loads((meta_dir / row["expected"]).read_text(encoding="utf-8"))
        pages.append(CorpusPage(f"news-metadata/{Path(row['page']).name}", row["url"].strip(),
                                gzip.decompress((meta_dir / row["page"]).read_bytes()),
                                title=expected.get("title"), published=_published(expected.get("publishing_date")),
                                gzip=i % 2 == 0))
    return pages


def fake_pages() -> list[CorpusPage]:
    """Two pages of our own on ``ROBOTS_HOST``, only reachable through a feed: one robots.txt disallows,
    one that only the longer ``Allow`` rule allows (RFC 9309: the longest match wins)."""
    def article(title: str, seed: str) -> bytes:
        paras = "".join(
            f"<p>{seed} paragraph {i}: the editor explains at length how the licence fee is collected, which "
            f"programmes it pays for, why the board reviewed the figures in committee, and what listeners "
            f"wrote in their letters over the last {i + 2} months about the changes announced in spring.</p>"
            for i in range(6))
        return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>"
                f"<body><header><nav><a href=\"/\">Home</a></nav></header><article><h1>{title}</h1>{paras}"
                f"</article><footer>Copyright</footer></body></html>").encode()
    return [
        CorpusPage("fake/robots-disallowed", f"https://{ROBOTS_HOST}{DISALLOWED_PATH}",
                   article("Members briefing on the licence fee", "Members"), robots_disallowed=True),
        CorpusPage("fake/robots-allowed-longest-match", f"https://{ROBOTS_HOST}{ALLOWED_PATH}",
                   article("An open letter from the editor", "Open letter")),
    ]


# --- the server --------------------------------------------------------------------------------------------
@dataclass
class Fetch:
    host: str
    target: str
    status: int
    page: str | None
    gzip: bool = False


@dataclass
class FeedDoc:
    path: str
    content_type: str
    body: bytes
    links: list[tuple[str, str]] = field(default_factory=list)  # (page id, link as listed)


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 256  # the poller opens up to fetch_concurrency connections at once (default: 5)

    def handle_error(self, request, client_address) -> None:
        """A client closing a keep-alive connection is normal; anything else is printed as usual."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class PublisherWeb:
    def __init__(self, pages: list[CorpusPage]):
        self.pages = {p.id: p for p in pages}
        self.hosts = {p.host for p in pages}
        self.exact: dict[tuple[str, str], str] = {}
        self.loose: dict[tuple[str, str], str] = {}
        for p in pages:
            parts = urlsplit(p.url)
            self.exact[(p.host, route_key(parts.path, parts.query))] = p.id
            self.loose.setdefault((p.host, loose_key(parts.path, parts.query)), p.id)
        self.robots: dict[str, bytes] = {ROBOTS_HOST: ROBOTS_TXT}
        self.feeds: dict[str, FeedDoc] = {}
        self.fetches: list[Fetch] = []
        self.requests: Counter[tuple[str, str]] = Counter()  # (host, path) -> requests
        self.page_fetches: Counter[str] = Counter()  # page id -> bodies served (any variant)
        self._bodies: dict[tuple[str, bool], bytes] = {}
        self._lock = threading.Lock()
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                web._serve(self)

            do_HEAD = do_GET

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._link_re = _LINK
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="publisher-web")

    # --- life --------------------------------------------------------------------------------------
    def start(self) -> PublisherWeb:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def resolver_table(self) -> dict[str, str]:
        """Every host this web serves -> 127.0.0.1 (for ``ingest.netguard.StubResolver``)."""
        return {h: "127.0.0.1" for h in self.hosts | {FEED_HOST}}

    # --- URLs on this server -------------------------------------------------------------------------
    def local(self, url: str) -> str:
        """``https://host/path?q#f`` -> ``http://host:<port>/path?q#f``."""
        parts = urlsplit(url)
        return urlunsplit(("http", f"{parts.hostname}:{self.port}", parts.path or "/", parts.query, parts.fragment))

    def feed_url(self, path: str) -> str:
        return f"http://{FEED_HOST}:{self.port}/{path}"

    def add_feed(self, doc: FeedDoc) -> str:
        self.feeds["/" + doc.path] = doc
        return self.feed_url(doc.path)

    # --- bodies --------------------------------------------------------------------------------------------
    def rewrite(self, body: bytes) -> bytes:
        """Absolute links to any corpus host -> this server, bytes in, bytes out (legacy charsets survive)."""
        port = str(self.port).encode()

        def sub(m: re.Match) -> bytes:
            host = m.group(2).lower().rstrip(b".")
            if host.decode("ascii", "replace") not in self.hosts:
                return m.group(0)
            return b"http://" + host + b":" + port

        return self._link_re.sub(sub, body)

    def body(self, page: CorpusPage, gzipped: bool) -> bytes:
        key = (page.id, gzipped)
        cached = self._bodies.get(key)
        if cached is None:
            plain = self._bodies.get((page.id, False)) or self.rewrite(self.header_only_charset(page))
            cached = gzip.compress(plain, compresslevel=6, mtime=0) if gzipped else plain
            with self._lock:
                self._bodies[(page.id, False)] = plain
                self._bodies[key] = cached
        return cached

    @staticmethod
    def header_only_charset(page: CorpusPage) -> bytes:
        """A page in a legacy charset is served with its charset named only in the HTTP header (its
        ``<meta>`` declaration renamed away), as many servers do: only the poller's charset, sent along
        in ``RawArticle.charset``, can then read it right."""
        if page.declared_charset in (None, "utf-8", "utf8"):
            return page.body
        return _META_CHARSET.sub(lambda m: m.group(0).replace(m.group(1), b"x-undeclared"), page.body, count=1)

    def lookup(self, host: str, target: str) -> str | None:
        parts = urlsplit(target)
        return (self.exact.get((host, route_key(parts.path, parts.query)))
                or self.loose.get((host, loose_key(parts.path, parts.query))))

    # --- serving ----------------------------------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        host = (h.headers.get("Host") or "").rsplit(":", 1)[0].lower().rstrip(".")
        target = h.path
        path = urlsplit(target).path
        page_id = None
        gzipped = False
        headers: dict[str, str] = {}
        if host == FEED_HOST and path in self.feeds:
            doc = self.feeds[path]
            status, body, headers = 200, doc.body, {"Content-Type": doc.content_type}
        elif path == "/robots.txt":
            robots = self.robots.get(host)
            status, body = (200, robots) if robots is not None else (404, b"not found")
            headers = {"Content-Type": "text/plain"}
        elif (page_id := self.lookup(host, target)) is not None:
            page = self.pages[page_id]
            gzipped = page.gzip and "gzip" in (h.headers.get("Accept-Encoding") or "")
            status, body = 200, self.body(page, gzipped)
            charset = page.declared_charset
            headers = {"Content-Type": f"text/html; charset={charset}" if charset else "text/html"}
            if gzipped:
                headers["Content-Encoding"] = "gzip"
                headers["Vary"] = "Accept-Encoding"
        else:
            status, body, headers = 404, b"<html><body>Not found</body></html>", {"Content-Type": "text/html"}
        with self._lock:
            self.fetches.append(Fetch(host, target, status, page_id, gzipped))
            self.requests[(host, path)] += 1
            if page_id is not None:
                self.page_fetches[page_id] += 1
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            try:
                h.wfile.write(body)
            except OSError:
                pass


# --- feeds --------------------------------------------------------------------------------------------------
@dataclass
class Listing:
    page: CorpusPage
    link: str  # as the feed lists it (local, maybe a variant)
    guid: str
    permalink_guid: bool


def _stable_guid(page: CorpusPage) -> str:
    return "tag:newsflow.test,2026:" + hashlib.sha256(page.id.encode()).hexdigest()[:20]


def plan_listings(pages: list[CorpusPage], web: PublisherWeb, *, seed: int = 20260101,
                  shared_share: float = 0.2) -> dict[str, list[Listing]]:
    """Feed path -> its listings. Every page in one feed under its own link; ``shared_share`` of the pages
    also in one or two more feeds, each time under another variant of the link."""
    rng = random.Random(seed)
    plan: dict[str, list[Listing]] = {name: [] for name in FEED_NAMES}
    for page in pages:
        feeds = rng.sample(FEED_NAMES, 3)
        extra = 0
        if rng.random() < shared_share and not page.robots_disallowed:
            extra = rng.choice((1, 1, 2))
        kinds = [k for k in VARIANTS if k != "slash" or slash_variant_possible(page.url)]
        rng.shuffle(kinds)
        for i, feed in enumerate(feeds[:1 + extra]):
            link = web.local(page.url) if i == 0 else variant(web.local(page.url), kinds[i - 1])
            permalink = feed.startswith("rss/") and FEED_NAMES.index(feed) % 2 == 0
            plan[feed].append(Listing(page, link, link if permalink else _stable_guid(page), permalink))
    for listings in plan.values():
        rng.shuffle(listings)
    return plan


def rss_feed(title: str, listings: Iterable[Listing], *, site: str) -> bytes:
    items = []
    for li in listings:
        p = li.page
        parts = ["<item>"]
        if p.title:
            parts.append(f"<title>{escape(p.title)}</title>")
        parts.append(f"<link>{escape(li.link)}</link>")
        permalink = quoteattr("true" if li.permalink_guid else "false")
        parts.append(f"<guid isPermaLink={permalink}>{escape(li.guid)}</guid>")
        if p.published:
            parts.append(f"<pubDate>{format_datetime(p.published.astimezone(UTC), usegmt=True)}</pubDate>")
        parts.append("</item>")
        items.append("".join(parts))
    return ('<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>{escape(title)}</title><link>{escape(site)}</link><description>{escape(title)}</description>"
            f"<ttl>60</ttl>{''.join(items)}</channel></rss>").encode("utf-8")


def atom_feed(title: str, listings: Iterable[Listing], *, self_url: str, updated: datetime) -> bytes:
    entries = []
    for li in listings:
        p = li.page
        parts = ["<entry>", f"<id>{escape(li.guid)}</id>"]
        if p.title:
            parts.append(f'<title type="text">{escape(p.title)}</title>')
        parts.append(f'<link rel="alternate" type="text/html" href={quoteattr(li.link)}/>')
        if p.published:
            when = p.published.isoformat()
            parts.append(f"<published>{when}</published><updated>{when}</updated>")
        parts.append("</entry>")
        entries.append("".join(parts))
    return ('<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>{escape(title)}</title><id>{escape(self_url)}</id>"
            f'<link rel="self" href={quoteattr(self_url)}/><updated>{updated.isoformat()}</updated>'
            f"{''.join(entries)}</feed>").encode("utf-8")


def plan_sitemap(plan: dict[str, list[Listing]], pages: list[CorpusPage], web: PublisherWeb, *,
                 seed: int) -> list[Listing]:
    """The news sitemap's listings: ``SITEMAP_ONLY`` news pages (a title and a date) taken out of every
    feed of ``plan``, and ``SITEMAP_ALSO`` more listed under their ``utm`` variant as well."""
    rng = random.Random(seed + 1)
    news = [p for p in pages if p.title and p.published and not p.robots_disallowed]
    chosen = rng.sample(news, SITEMAP_ONLY + SITEMAP_ALSO)
    only = {p.id for p in chosen[:SITEMAP_ONLY]}
    for name, listings in plan.items():
        plan[name] = [li for li in listings if li.page.id not in only]
    return [Listing(p, web.local(p.url) if p.id in only else variant(web.local(p.url), "utm"), "", False)
            for p in chosen]


def install_sitemap(listings: list[Listing], web: PublisherWeb, *, now: datetime) -> str:
    """The index and its news sitemaps on ``web``; returns the index URL."""
    half = (len(listings) + 1) // 2
    for path, part in zip(SITEMAP_CHILDREN, (listings[:half], listings[half:])):
        xml = news_sitemap([{"loc": li.link, "title": li.page.title, "published": li.page.published, "lastmod": now}
                            for li in part], publication=SITEMAP_PUBLICATION, language=None)
        gzipped = path.endswith(".gz")
        doc = FeedDoc(path, "application/x-gzip" if gzipped else "application/xml; charset=utf-8",
                      gzip.compress(xml, mtime=0) if gzipped else xml)
        doc.links = [(li.page.id, li.link) for li in part]
        web.add_feed(doc)
    index = sitemap_index([(web.feed_url(p), now) for p in SITEMAP_CHILDREN]
                          + [(web.feed_url(SITEMAP_OLD_CHILD), datetime(2019, 1, 1, tzinfo=UTC))])
    return web.add_feed(FeedDoc(SITEMAP_INDEX, "application/xml; charset=utf-8", index))


def build_feeds(pages: list[CorpusPage], web: PublisherWeb, *, seed: int = 20260101,
                now: datetime | None = None) -> dict[str, list[Listing]]:
    """Plan the listings, render the feeds and the news sitemap and install them on ``web``. Returns source
    URL (each feed's, the sitemap index's) -> listings."""
    out: dict[str, list[Listing]] = {}
    updated = datetime(2026, 1, 1, tzinfo=UTC)
    plan = plan_listings(pages, web, seed=seed)
    sitemap = plan_sitemap(plan, pages, web, seed=seed)
    out[install_sitemap(sitemap, web, now=now or datetime.now(UTC))] = sitemap
    for name, listings in plan.items():
        title = "Newsflow test wire: " + name.split("/")[1].removesuffix(".xml")
        if name.startswith("rss/"):
            doc = FeedDoc(name, "application/rss+xml; charset=utf-8",
                          rss_feed(title, listings, site=f"http://{FEED_HOST}:{web.port}/"))
        else:
            doc = FeedDoc(name, "application/atom+xml; charset=utf-8",
                          atom_feed(title, listings, self_url=web.feed_url(name), updated=updated))
        doc.links = [(li.page.id, li.link) for li in listings]
        out[web.add_feed(doc)] = listings
    return out

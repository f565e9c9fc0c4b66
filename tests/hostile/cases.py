"""The hostile-input cases: what a misbehaving server sends to the poller's feed poll and to its
article fetcher, and what Newsflow must make of it.

Each ``Case`` builds two fresh handlers (``tests.support.hostile`` style: ``(handler) -> None``), one
served as a feed and one as an article page, and says how each must end:

* ``feed_errors``: the error classes (``ingest.fetch.ERROR_CLASSES``) the feed's health may record;
  empty means the feed must be read (the input is odd, not harmful); ``feed_may_read`` lets a case
  end either way (an entity-expansion feed may be refused, or read without expanding anything).
* ``page_refused``: the page must not reach ``articles.raw``; otherwise it must (the processor
  then deals with it, see test_hostile_processor.py).
"""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.support import hostile
from tests.support.feeds import news_sitemap, sitemap_index
from tests.support.hostile import _send, page_html
from tests.support.site import FixtureSite

MiB = 1024 * 1024
HTML = "text/html; charset=utf-8"
Handler = Callable[[BaseHTTPRequestHandler], None]

# A name the stub resolver maps to a private address (tests/chaos/guard/sitecustomize.py).
PRIVATE_HOST = "intranet.test"
PRIVATE_ADDRESS = "10.0.0.1"
STUB_HOSTS = {PRIVATE_HOST: PRIVATE_ADDRESS}


def body(data: bytes, content_type: str, headers: dict[str, str] | None = None) -> Handler:
    def handler(h: BaseHTTPRequestHandler) -> None:
        _send(h, 200, data, {"Content-Type": content_type} | (headers or {}))
    return handler


def gzip_bomb_page(decompressed: int) -> Handler:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        gz.write(b"<html><body><p>")
        block = b"A" * MiB
        for _ in range(decompressed // MiB):
            gz.write(block)
    payload = buf.getvalue()
    return body(payload, HTML, {"Content-Encoding": "gzip"})


def big_page(total: int) -> Handler:
    """A well-formed HTML page of ``total`` bytes, generated while sending."""
    para = b"<p>" + b"words " * 650 + b"</p>"

    def handler(h: BaseHTTPRequestHandler) -> None:
        head, tail = b"<html><body><article>", b"</article></body></html>"
        n = (total - len(head) - len(tail)) // len(para)
        h.send_response(200)
        h.send_header("Content-Type", HTML)
        h.send_header("Content-Length", str(len(head) + n * len(para) + len(tail)))
        h.end_headers()
        try:
            h.wfile.write(head)
            for _ in range(n):
                h.wfile.write(para)
            h.wfile.write(tail)
        except OSError:
            pass
        h.close_connection = True
    return handler


Install = Callable[[FixtureSite, str], None]  # puts the hostile resource at a path of the site


def serve(make: Callable[[], Handler]) -> Install:
    def install(site: FixtureSite, path: str) -> None:
        site.add(path, handler=make())
    return install


def redirect_to_private(site: FixtureSite, path: str) -> None:
    """A 302 to a host name that resolves (stub) to 10.0.0.1: the guard must refuse before connecting."""
    port = site.server.server_address[1]
    site.add(path, handler=hostile.redirect(f"http://{PRIVATE_HOST}:{port}/internal/admin", 302))


def redirect_loop(site: FixtureSite, path: str) -> None:
    """path -> a -> b -> c -> a, with 302, 301 and 307."""
    a, b, c = f"{path}-a", f"{path}-b", f"{path}-c"
    site.add(path, handler=hostile.redirect(a, 302))
    site.add(a, handler=hostile.redirect(b, 302))
    site.add(b, handler=hostile.redirect(c, 301))
    site.add(c, handler=hostile.redirect(a, 307))


def sitemap_index_loop(site: FixtureSite, path: str) -> None:
    """An index listing itself and a second index, which lists the first again and a news sitemap: the
    loop is cut, every sitemap read once, the one recent entry read."""
    now = datetime.now(UTC)
    site.add(path, sitemap_index([site.url(path), site.url(f"{path}-b")]), content_type="application/xml")
    site.add(f"{path}-b", sitemap_index([site.url(path), site.url(f"{path}-news.xml.gz")]),
             content_type="application/xml")
    site.add(f"{path}-news.xml.gz", gzip.compress(news_sitemap([{"loc": site.url(f"{path}-article"),
                                                                  "published": now, "title": "Loop"}])),
             content_type="application/x-gzip")
    site.add(f"{path}-article", page_html("Loop article", "A sitemap index loop cannot stop this. " * 20),
             content_type=HTML)


LATIN1_PAGE = page_html("Café société", "Le café de la société est fermé: à bientôt, señor Müller. " * 20,
                        charset_meta="utf-8").encode("latin-1")  # declares UTF-8, is Latin-1
UTF8_AS_LATIN1_PAGE = page_html("Łódź naïve façade", "Zażółć gęślą jaźń — “quoted” text. " * 20,
                                charset_meta=None).encode("utf-8")  # served as iso-8859-1 below
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def pathological_table_page(cells: int = 100_000) -> bytes:
    """One table row of 100,000 cells (2.2 MB): trafilatura takes minutes over it (quadratic)."""
    return (b"<html><head><title>Slow table</title></head><body><table><tr>"
            + b"<td>cell text here</td>" * cells + b"</tr></table></body></html>")


def entity_expansion_page(levels: int = 9) -> bytes:
    ents = "".join(['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">'
                                              for i in range(1, levels + 1)])
    return (f'<?xml version="1.0"?><!DOCTYPE html [{ents}]><html xmlns="http://www.w3.org/1999/xhtml">'
            f"<head><title>&l{levels};</title></head><body><article><p>&l{levels};</p>"
            + "<p>Some real words in the article body. </p>" * 30 + "</article></body></html>").encode()


@dataclass(frozen=True)
class Case:
    name: str
    feed: Install
    page: Install
    feed_errors: frozenset[str]  # empty: the feed must be read
    page_refused: bool
    note: str = ""
    feed_may_read: bool = False

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-")


RSS = hostile.RSS
CASES = [
    Case("gzip bomb", serve(lambda: hostile.gzip_bomb(256 * MiB)), serve(lambda: gzip_bomb_page(256 * MiB)),
         frozenset({"too_large"}), True, "256 MiB of zeros in ~250 KiB of gzip"),
    Case("endless body", serve(hostile.endless_body), serve(lambda: hostile.endless_body(content_type=HTML)),
         frozenset({"too_large", "timeout"}), True, "no Content-Length, never ends"),
    Case("slow drip", serve(lambda: hostile.slow_drip(hostile.rss_document(hostile.rss_items(20)), delay_s=0.2)),
         serve(lambda: hostile.slow_drip(page_html("Drip", "slow " * 400).encode(), delay_s=0.2, content_type=HTML)),
         frozenset({"timeout"}), True, "1 byte every 0.2 s: beats every read timeout, not the total one"),
    Case("silent server", serve(lambda: hostile.stall(60)), serve(lambda: hostile.stall(60)),
         frozenset({"timeout"}), True, "accepts the request, then says nothing"),
    Case("redirect loop", redirect_loop, redirect_loop, frozenset({"redirect_loop", "too_many_redirects"}), True,
         "x -> a -> b -> c -> a (302, 302, 301, 307)"),
    Case("redirect to a private address", redirect_to_private, redirect_to_private, frozenset({"blocked"}), True,
         f"302 to {PRIVATE_HOST}, which the stub resolver maps to {PRIVATE_ADDRESS}"),
    Case("huge headers", serve(lambda: hostile.huge_headers(1 * MiB)), serve(lambda: hostile.huge_headers(1 * MiB)),
         frozenset({"protocol", "network"}), True, "1 MiB of response headers"),
    Case("wrong content-type", serve(lambda: body(PNG, "image/png")), serve(lambda: body(PNG, "image/png")),
         frozenset({"bad_content_type", "parse"}), True, "a PNG where a feed / a page is expected"),
    Case("invalid UTF-8", serve(lambda: body(hostile.invalid_utf8_feed("/iu"), RSS)),
         serve(lambda: body(LATIN1_PAGE, HTML)), frozenset(), False, "declares UTF-8, carries Latin-1 bytes"),
    Case("mis-declared charset",
         serve(lambda: body(hostile.rss_document(
             "<item><title>Łódź naïve — “x”</title><link>/md</link><guid>md</guid></item>".encode("utf-8"),
             encoding="iso-8859-1"), "application/rss+xml; charset=iso-8859-1")),
         serve(lambda: body(UTF8_AS_LATIN1_PAGE, "text/html; charset=iso-8859-1")), frozenset(), False,
         "UTF-8 bytes declared (HTTP and XML) as ISO-8859-1"),
    Case("XML entity expansion", serve(lambda: body(hostile.entity_expansion_feed(), RSS)),
         serve(lambda: body(entity_expansion_page(), "application/xhtml+xml")), frozenset({"parse"}), False,
         "billion laughs: 10^9 expansions declared in the DTD", feed_may_read=True),
    Case("50 MiB feed", serve(lambda: hostile.big_feed(50 * MiB)), serve(lambda: big_page(50 * MiB)),
         frozenset({"too_large"}), True, "well-formed, 50 MiB (feed cap 10 MiB, page cap 5 MiB)"),
    Case("100,000-entry feed", serve(lambda: body(hostile.many_entries_feed(100_000, "/many"), RSS)),
         serve(lambda: body(page_html("Many", "An ordinary page. " * 50).encode(), HTML)), frozenset(), False,
         "4.6 MB, 100,000 items: read up to max_entries_per_feed"),
    Case("sitemap gzip bomb", serve(lambda: hostile.gzip_bomb_file(256 * MiB)),
         serve(lambda: body(page_html("Bomb", "An ordinary page. " * 50).encode(), HTML)),
         frozenset({"too_large"}), False, "a .xml.gz sitemap file (no Content-Encoding) inflating to 256 MiB"),
    Case("50 MiB sitemap", serve(lambda: hostile.huge_sitemap(50 * MiB)),
         serve(lambda: body(page_html("Huge", "An ordinary page. " * 50).encode(), HTML)),
         frozenset({"too_large"}), False, "a well-formed news sitemap of 50 MiB, every entry recent"),
    Case("sitemap index loop", sitemap_index_loop,
         serve(lambda: body(page_html("Loop", "An ordinary page. " * 50).encode(), HTML)),
         frozenset(), False, "index -> itself and index b -> index again and a news sitemap"),
    Case("garbage sitemap", serve(lambda: body(b"<urlset>" + bytes(range(256)) * 400, "application/xml")),
         serve(lambda: body(page_html("Garbage", "An ordinary page. " * 50).encode(), HTML)),
         frozenset({"parse"}), False, "a <urlset> root followed by 100 KiB of binary"),
    Case("pathologically slow extraction", serve(lambda: body(hostile.many_entries_feed(3, "/slowx"), RSS)),
         serve(lambda: body(pathological_table_page(), HTML)), frozenset(), False,
         "one table row of 100,000 cells: minutes in trafilatura, the processor must time out"),
]

"""A generated news site on 127.0.0.1 for the fault-injection scenarios and the end-to-end bench.

``Newsroom(n_articles, n_feeds)`` serves ``n_feeds`` RSS feeds at ``/feeds/<f>.xml`` whose entries
point at ``n_articles`` small, distinct article pages ``/a/<f>/<i>.html``. Every page is generated on
the fly from its number (no files), so 10,000 articles cost nothing to prepare.

The server counts every request per path and keeps the time of the first response, so a test can
tell which pages were fetched twice, and the bench can tell when an entry was first polled.
Entries can be "changed" (new title and <updated> date) to model a publisher editing a story, and
feeds can be made to grow at a fixed rate (``publish``) for the latency bench.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter
from email.utils import format_datetime
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

_WORDS = (
    "harbour council vote lighthouse frost orchard market river bridge school budget mayor storm rail "
    "station festival museum library hospital farmers ferry tunnel election district housing water "
    "energy wind solar grid teachers nurses police court judge appeal museum gallery theatre choir "
    "football stadium marathon cyclists road repairs flood defence coast erosion fishing quota harvest "
    "wheat barley vineyard tourism hotel airport runway noise residents petition survey report study "
    "university students research grant museum archive bakery brewery factory jobs wages strike union"
).split()
_EPOCH = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def article_text(i: int, paragraphs: int = 4, words: int = 45) -> list[str]:
    rnd = random.Random(i)
    return [
        " ".join(rnd.choice(_WORDS) for _ in range(words)).capitalize() + f", said the report numbered {i}-{p}."
        for p in range(paragraphs)
    ]


def article_page(i: int, title: str) -> bytes:
    paras = "".join(f"<p>{escape(t)}</p>" for t in article_text(i))
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title></head><body>"
        "<nav><a href=\"/\">Home</a> <a href=\"/news\">News</a></nav>"
        f"<article><h1>{escape(title)}</h1>{paras}</article>"
        "<footer>Subscribe to our newsletter</footer></body></html>"
    ).encode("utf-8")


class Newsroom:
    """See the module docstring. Thread-safe; start() / stop()."""

    def __init__(self, n_articles: int, n_feeds: int, *, host: str = "127.0.0.1", delay_s: float = 0.0,
                 published: int | None = None):
        self.n_articles = n_articles
        self.n_feeds = n_feeds
        self.delay_s = delay_s
        self.fetches: Counter[str] = Counter()
        self.first_served: dict[str, float] = {}  # page path -> monotonic time a feed first listed it
        self.first_fetched: dict[str, float] = {}  # path -> monotonic time it was first requested
        self.edits: dict[int, int] = {}  # article number -> edit count
        self.published = n_articles if published is None else published  # entries 0..published-1 are listed
        self._lock = threading.Lock()
        room = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK
            # add ~40 ms to every keep-alive response.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                with room._lock:
                    room.fetches[path] += 1
                    room.first_fetched.setdefault(path, time.monotonic())
                body, ctype = room.render(path)
                if room.delay_s:
                    time.sleep(room.delay_s)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request, client_address):
                # a client killed mid-request (kill -9 of the poller) is part of the scenario
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self.server = Server((host, 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, name="newsroom", daemon=True)

    # --- addressing ----------------------------------------------------------------------
    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def feed_of(self, i: int) -> int:
        return i % self.n_feeds

    def page_path(self, i: int) -> str:
        return f"/a/{self.feed_of(i)}/{i}.html"

    def page_url(self, i: int) -> str:
        return self.base + self.page_path(i)

    def feed_urls(self) -> list[str]:
        return [f"{self.base}/feeds/{f}.xml" for f in range(self.n_feeds)]

    def expected_urls(self, upto: int | None = None) -> set[str]:
        """Canonical URLs of every published article (the pages carry no tracking parameters)."""
        return {self.page_url(i) for i in range(self.published if upto is None else upto)}

    def write_feeds_file(self, path) -> None:
        path.write_text("feeds:\n" + "".join(f"  - url: {u}\n" for u in self.feed_urls()), encoding="utf-8")

    def total_fetches(self) -> int:
        with self._lock:
            return sum(self.fetches.values())

    def page_fetches(self) -> Counter[str]:
        with self._lock:
            return Counter({p: n for p, n in self.fetches.items() if p.startswith("/a/")})

    # --- content ---------------------------------------------------------------------------
    def title(self, i: int) -> str:
        edits = self.edits.get(i, 0)
        return f"Story {i}: council news" + (f" (updated {edits})" if edits else "")

    def edit(self, numbers) -> None:
        """A publisher edits these entries: new title and a newer <updated>/<pubDate>."""
        with self._lock:
            for i in numbers:
                self.edits[i] = self.edits.get(i, 0) + 1

    def publish(self, upto: int) -> None:
        with self._lock:
            self.published = max(self.published, min(upto, self.n_articles))

    def render(self, path: str) -> tuple[bytes | None, str]:
        if path.startswith("/feeds/") and path.endswith(".xml"):
            try:
                f = int(path[len("/feeds/"):-len(".xml")])
            except ValueError:
                return None, ""
            if not 0 <= f < self.n_feeds:
                return None, ""
            return self._feed(f), "application/rss+xml; charset=utf-8"
        if path.startswith("/a/") and path.endswith(".html"):
            try:
                f, i = (int(x) for x in path[len("/a/"):-len(".html")].split("/"))
            except ValueError:
                return None, ""
            if not (0 <= i < self.published and self.feed_of(i) == f):
                return None, ""
            return article_page(i, self.title(i)), "text/html; charset=utf-8"
        return None, ""

    def _feed(self, f: int) -> bytes:
        now = time.monotonic()
        with self._lock:
            published = self.published
            numbers = list(range(f, published, self.n_feeds))
            for i in numbers:
                self.first_served.setdefault(self.page_path(i), now)
            edits = dict(self.edits)
        items = []
        for i in reversed(numbers):  # newest first, like real feeds
            when = _EPOCH + timedelta(minutes=i) + timedelta(hours=edits.get(i, 0))
            items.append(
                f"<item><title>{escape(self.title(i))}</title><link>{self.page_url(i)}</link>"
                f"<guid isPermaLink=\"false\">newsroom-{i}</guid><pubDate>{format_datetime(when)}</pubDate>"
                f"<description>Summary of story {i}.</description></item>"
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>Newsroom feed {f}</title><link>{self.base}/</link><description>fixture</description>"
            + "".join(items) + "</channel></rss>"
        ).encode("utf-8")

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> Newsroom:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

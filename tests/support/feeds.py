"""Builders for small RSS/Atom documents used as test fixtures."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import datetime
from xml.sax.saxutils import escape


def rss(title: str, items: list[dict], *, link: str = "http://127.0.0.1/", extra_channel: str = "") -> bytes:
    """``items``: dicts with link, title and optionally guid, published (datetime), author, summary."""
    parts = []
    for it in items:
        pub = it.get("published")
        parts.append(
            "<item>"
            f"<title>{escape(it.get('title', ''))}</title>"
            f"<link>{escape(it['link'])}</link>"
            + (f"<guid>{escape(it['guid'])}</guid>" if it.get("guid") else "")
            + (f"<pubDate>{format_datetime(pub)}</pubDate>" if isinstance(pub, datetime) else "")
            + (f"<author>{escape(it['author'])}</author>" if it.get("author") else "")
            + (f"<description>{escape(it['summary'])}</description>" if it.get("summary") else "")
            + "</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>{escape(link)}</link><description>fixture</description>"
        f"{extra_channel}{''.join(parts)}</channel></rss>"
    ).encode("utf-8")


SITEMAP_NS = ('xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
              'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9" '
              'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"')


def news_sitemap(entries: list[dict], *, publication: str = "Fixture News", language: str | None = "en") -> bytes:
    """A Google News sitemap. ``entries``: dicts with loc and optionally title, published (datetime: a
    news:news block), lastmod (datetime), keywords, image, language (overrides ``language``; None: none)."""
    urls = []
    for e in entries:
        parts = [f"<url><loc>{escape(e['loc'])}</loc>"]
        if isinstance(e.get("lastmod"), datetime):
            parts.append(f"<lastmod>{e['lastmod'].isoformat()}</lastmod>")
        if isinstance(e.get("published"), datetime):
            parts.append(
                "<news:news><news:publication>"
                f"<news:name>{escape(publication)}</news:name>"
                + (f"<news:language>{escape(lang)}</news:language>" if (lang := e.get("language", language)) else "")
                + "</news:publication>"
                f"<news:publication_date>{e['published'].isoformat()}</news:publication_date>"
                + (f"<news:title>{escape(e['title'])}</news:title>" if e.get("title") else "")
                + (f"<news:keywords>{escape(e['keywords'])}</news:keywords>" if e.get("keywords") else "")
                + "</news:news>")
        if e.get("image"):
            parts.append(f"<image:image><image:loc>{escape(e['image'])}</image:loc></image:image>")
        urls.append("".join(parts) + "</url>")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {SITEMAP_NS}>{"".join(urls)}</urlset>'.encode()


def sitemap_index(children: list[str | tuple[str, datetime]]) -> bytes:
    """A sitemap index; a child is a URL, or (URL, lastmod)."""
    parts = []
    for c in children:
        loc, lastmod = (c, None) if isinstance(c, str) else c
        parts.append(f"<sitemap><loc>{escape(loc)}</loc>"
                     + (f"<lastmod>{lastmod.isoformat()}</lastmod>" if lastmod else "") + "</sitemap>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{"".join(parts)}</sitemapindex>'
            ).encode()

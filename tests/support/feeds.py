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

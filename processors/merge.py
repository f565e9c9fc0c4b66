"""Feed entry + page metadata -> one set of metadata, with the source of every field. Pure.

The rules (also in the README, "Processing"); ``provenance.fields[name]`` records the winner:

=============  ======================================================================================
field          rule (first usable wins)
=============  ======================================================================================
title          page title, unless it is empty or just the site's name (site name, feed title or
               host); a trailing `` | Site`` / `` - Site`` naming the site is cut off. Else the
               feed entry's title.
published_at   feed ``published``, unless missing or later than the processing time; else the
               page's date (htmldate as trafilatura runs it, with the time of day from
               ``article:published_time``/JSON-LD when they name the same day), unless in the
               future; else the feed's ``updated`` unless in the future; else none. Offsets are
               kept as given.
author         page author from structured markup (meta tags, JSON-LD); else the feed entry's
               author (``By``, e-mail addresses and the site's own name removed); else the page's
               byline heuristics. Generic values (``admin``, ``staff``, the site name) never win;
               a list of more than three ``;``-separated items keeps only a leading person name.
description    page meta/Open Graph description; else the feed summary (markup stripped).
site_name      page site name (``og:site_name``, JSON-LD publisher, ...); else the feed title.
image          page ``og:image``/JSON-LD image; else the feed entry's image.
categories     page categories from structured markup (``article:section``, JSON-LD ``articleSection``).
tags           page tags (``article:tag``, meta keywords) together with the feed entry's tags.
canonical_url  as the poller determined it (``RawArticle.canonical_url``, the article's identity:
               the page's declared canonical on the same site, else the final URL); the source
               is recorded as ``page``, ``fetched`` or ``link``.
=============  ======================================================================================

Expensive page fields (date, byline) are computed only when the rule reaches them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from ingest.urls import bare_host
from newsflow.schema import FeedEntry
from processors.clean import clean_field, clean_list, strip_html
from processors.extract import PageMeta

_SEPARATORS = r"\s+[|\-–—:·•»]\s+"
_EMAIL = re.compile(r"\(?\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b\)?")
_BY = re.compile(r"^(?:by|von|par|por|door|di)\s+", re.IGNORECASE)
_GENERIC_AUTHORS = {
    "admin", "administrator", "staff", "editor", "editors", "redaktion", "editorial", "newsroom",
    "news desk", "newsdesk", "web desk", "webmaster", "anonymous", "unknown", "guest", "author",
}


@dataclass(frozen=True)
class Merged:
    title: str | None = None
    published_at: datetime | None = None
    author: str | None = None
    description: str | None = None
    site_name: str | None = None
    image: str | None = None
    categories: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    canonical_url: str = ""
    sources: dict[str, str] = field(default_factory=dict)


def _key(value: str | None) -> str:
    return re.sub(r"\W+", " ", (value or "").casefold()).strip()


def site_names(site_name: str | None, feed_title: str | None, host: str) -> set[str]:
    names = {_key(site_name), _key(feed_title), _key(host), _key(bare_host(host))}
    names |= {_key(bare_host(host).rsplit(".", 1)[0])}
    return {n for n in names if n}


def strip_site(title: str, names: set[str]) -> str:
    """``Headline | Site`` -> ``Headline``; ``Site - Headline`` -> ``Headline``."""
    seps = list(re.finditer(_SEPARATORS, title))
    for sep in seps:
        if _key(title[sep.end():]) in names:
            return title[: sep.start()].strip()
    for sep in reversed(seps):
        if _key(title[: sep.start()]) in names:
            return title[sep.end():].strip()
    return title


def pick_title(page: str | None, feed: str | None, names: set[str]) -> tuple[str | None, str]:
    page, feed = clean_field(page), clean_field(feed)
    if page and _key(page) not in names:
        return strip_site(page, names), "page"
    if feed and _key(feed) not in names:
        return feed, "feed"
    if page or feed:
        return (page, "page") if page else (feed, "feed")
    return None, "none"


def pick_date(feed_published: datetime | None, page_date, feed_updated: datetime | None,
              now: datetime) -> tuple[datetime | None, str]:
    """``page_date`` is a callable: it is computed only when the feed's date is unusable."""
    if feed_published is not None and feed_published <= now:
        return feed_published, "feed"
    found = page_date()
    if found is not None and found <= now:
        return found, "page"
    if feed_updated is not None and feed_updated <= now:
        return feed_updated, "feed:updated"
    return None, "none"


def clean_author(value: str | None, names: set[str]) -> str | None:
    if not value:
        return None
    parts = [p.strip() for p in value.split(";")]
    if len(parts) > 3:  # "Jan Doe; Journalist; Columnist; Author", "CSP; International; Solar; ..."
        if not re.fullmatch(r"(?:[A-ZÀ-Þ][\w'’.-]+\s+){1,3}[A-ZÀ-Þ][\w'’.-]+", parts[0]):
            return None
        value = parts[0]
    value = _EMAIL.sub(" ", value)
    value = clean_field(_BY.sub("", clean_field(value) or ""), "author")
    if not value or value.casefold() in _GENERIC_AUTHORS or _key(value) in names:
        return None
    if not any(ch.isalpha() for ch in value):
        return None
    return value


def pick_author(page: PageMeta, feed: str | None, names: set[str]) -> tuple[str | None, str]:
    for value, source in ((page.author, "page"), (feed, "feed")):
        if (author := clean_author(value, names)) is not None:
            return author, source
    if (author := clean_author(page.byline(), names)) is not None:
        return author, "page:byline"
    return None, "none"


def merge(page: PageMeta, entry: FeedEntry, *, feed_title: str | None, canonical: str, canonical_from: str,
          now: datetime) -> Merged:
    host = urlsplit(canonical).hostname or ""
    site_name = clean_field(page.site_name, "site_name")
    names = site_names(site_name, feed_title, host)
    src: dict[str, str] = {}

    title, src["title"] = pick_title(page.title, entry.title, names)
    published, src["published_at"] = pick_date(entry.published, page.date, entry.updated, now)
    author, src["author"] = pick_author(page, entry.author, names)

    description = clean_field(page.description, "description")
    src["description"] = "page" if description else "none"
    if description is None and (summary := clean_field(strip_html(entry.summary), "description")):
        description, src["description"] = summary, "feed"

    if site_name:
        src["site_name"] = "page"
    elif site_name := clean_field(feed_title, "site_name"):
        src["site_name"] = "feed"
    else:
        src["site_name"] = "none"

    image, src["image"] = (page.image, "page") if page.image else (entry.image, "feed" if entry.image else "none")
    if image and len(image.encode("utf-8")) > 4096:  # a truncated URL is a wrong URL
        image, src["image"] = None, "none"

    categories = clean_list(page.categories, split_commas=True)
    src["categories"] = "page" if categories else "none"

    page_tags = clean_list(page.tags, split_commas=True)
    tags = clean_list([*page_tags, *entry.tags], split_commas=True)
    src["tags"] = "+".join(s for s, v in (("page", page_tags), ("feed", entry.tags)) if v) or "none"

    src["canonical_url"] = canonical_from
    return Merged(
        title=title, published_at=published, author=author, description=description,
        site_name=site_name, image=image, categories=categories, tags=tags,
        canonical_url=canonical, sources=src,
    )

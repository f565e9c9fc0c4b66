"""Feed entry + page metadata -> one set of metadata, with the source of every field. Pure.

The rules (also in the README, "Processing"); ``provenance.fields[name]`` records the winner:

=============  ======================================================================================
field          rule (first usable wins)
=============  ======================================================================================
title          the feed's title, unless it is empty, the site's name, cut short ("…" continued by a
               page headline), a page headline plus an affix, or disagrees with every page
               headline while two of them agree with each other; else the page headline that the
               page's headlines (JSON-LD ``headline``, ``og:title``, ``h1``, ``twitter:title``,
               ``<title>``) agree on most, JSON-LD and ``og:title`` breaking ties. A `` | Site`` /
               `` - Site`` affix naming the site is cut off every candidate. Source ``feed`` or
               ``page:<tag>``.
published_at   feed ``published``, unless missing or later than the fetch; else the page's declared
               ``datePublished`` (JSON-LD, ``article:published_time``, ``itemprop``; never
               ``dateModified``) unless after the fetch (``page:published``); else htmldate as
               trafilatura runs it (with the time of day from the markup when it names the same
               day), unless after the fetch (``page``); else the feed's ``updated``; else none.
               Offsets are kept as given.
authors        a list of names (``processors/authors.py``): the feed's ``dc:creator``/``author``;
               else the page's JSON-LD ``author``; else its author meta tags; else its byline;
               the first source naming a person wins. Prefixes ("By", "Von", "Par", ...),
               e-mails, dates and roles go, "A and B" is two names; organisations go, unless no
               source names a person (then the first credited one is kept).
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
from functools import lru_cache
from urllib.parse import urlsplit

from ingest.urls import bare_host
from newsflow.schema import FeedEntry
from processors.authors import names_of, people
from processors.clean import clean_field, clean_list, strip_html
from processors.extract import PageMeta

_SEPARATORS = r"\s+[|\-–—:·•»]\s+"


@dataclass(frozen=True)
class Merged:
    title: str | None = None
    published_at: datetime | None = None
    authors: list[str] = field(default_factory=list)
    description: str | None = None
    site_name: str | None = None
    image: str | None = None
    categories: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    canonical_url: str = ""
    sources: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=4096)  # the headline vote compares every pair of headlines
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


_WEIGHT = {"json-ld": 2.0, "og:title": 1.0}  # a tie-break bonus on top of the agreement count
_TRUNCATED = re.compile(r"(?:…|\.\.\.|\[\.\.\.\])\s*$")


_AFFIX_AFTER = re.compile(r"^\s*[|\-–—·•»/ㅣ]")  # "Headline-Section|Site" too (no spaces, as some CJK sites)
_WORDS_AFTER = re.compile(r"^\s+\w")
_AFFIX_BEFORE = re.compile(r"\s[|\-–—·•»/ㅣ]\s+$")


def _extends(longer: str, shorter: str, *, words: bool = False) -> bool:
    """``longer`` is ``shorter`` with an affix before or after it behind a separator (`` | ``,
    `` - ``, `` / ``, ...), e.g. a section or site name or a kicker; ``shorter`` must be a headline,
    not a word. A colon does not separate an affix (``Topic: Headline`` is the headline). With
    ``words``, more words after ``shorter`` count too (the longer SEO variant of a headline)."""
    if len(_key(shorter)) < 12 or _key(longer) == _key(shorter):
        return False
    if longer.startswith(shorter):
        rest = longer[len(shorter):]
        return bool(_AFFIX_AFTER.match(rest) or (words and _WORDS_AFTER.match(rest)))
    if longer.endswith(shorter):
        return bool(_AFFIX_BEFORE.search(longer[: -len(shorter)]))
    return False


def pick_title(headlines: list[tuple[str, str]], feed: str | None, names: set[str]) -> tuple[str | None, str]:
    """The headline, by evidence (README, "Metadata merge rules"):

    * each page headline (JSON-LD ``headline``, ``og:title``, ``h1``, ``twitter:title``,
      ``<title>``) loses a `` | Site``/`` - Site`` affix that names the site, and one that is
      only the site's name is no headline at all;
    * the feed's title wins unless it is empty, the site's name, cut short (ends in "…" and a
      page headline continues it) or a page headline plus an affix (a section, a kicker): then that
      page headline wins, unless another page headline states the feed's title word for word
      (affix and all); a site affix is cut off the feed's title too. When no page headline
      agrees with the feed's title while at least two page headlines agree with each other, the
      page's headline wins (the feed carries a short or an older title);
    * else the page headline that the most page headlines agree with (the same words, or the same
      words with a kicker or affix around them or more words after them: the SEO variant) wins,
      one that is another plus an affix counting one less; JSON-LD (+2) and ``og:title`` (+1)
      break ties, then the order above.
    """
    cands: list[tuple[str, str]] = []
    for src, value in headlines:
        text = clean_field(value)
        if text and _key(text) not in names and (text := strip_site(text, names)):
            cands.append((src, text))
    feed = clean_field(feed)
    if feed and _key(feed) not in names:
        if _TRUNCATED.search(feed):
            stem = _key(_TRUNCATED.sub("", feed))
            for src, text in cands:
                if _key(text).startswith(stem) and len(_key(text)) > len(stem):
                    return text, f"page:{src}"
        feed = strip_site(feed, names)
        if any(_key(text) == _key(feed) for _s, text in cands):
            return feed, "feed"  # the page states it word for word, affix and all
        for src, text in cands:  # "Headline - Politics" in the feed, "Headline" on the page
            if _extends(feed, text):
                return text, f"page:{src}"
        if any(_extends(text, feed, words=True) for _s, text in cands):
            return feed, "feed"  # the page says so too
        best, agreeing = _vote(cands)
        if agreeing < 2:  # the page's headlines do not agree either: the feed's stands
            return feed, "feed"
        src, text = cands[best]
        return text, f"page:{src}"  # the page's tags agree on another headline
    if not cands:
        return None, "none"
    best, _agreeing = _vote(cands)
    src, text = cands[best]
    return text, f"page:{src}"


def _vote(cands: list[tuple[str, str]]) -> tuple[int, int]:
    """Index of the page headline most page headlines agree with, and how many do. Agreement
    means the same words, or the same words with an affix or more words after them; a headline
    that is another one plus an affix counts one less (both "X - Paper" tags agree with each
    other, yet they are "X"). JSON-LD and ``og:title`` get a tie-break bonus (``_WEIGHT``)."""
    agree = [sum(_key(a) == _key(b) or _extends(a, b, words=True) for _s, a in cands) for _src, b in cands]
    support = [n - any(_extends(b, a, words=True) for _s, a in cands) for n, (_src, b) in zip(agree, cands)]
    best = max(range(len(cands)), key=lambda i: (support[i] + _WEIGHT.get(cands[i][0], 0), -i))
    return best, agree[best]


def pick_date(feed_published: datetime | None, declared: datetime | None, page_date,
              feed_updated: datetime | None, now: datetime) -> tuple[datetime | None, str]:
    """``now`` is the fetch time: nothing was published after it. ``declared`` is the page's own
    ``datePublished``; ``page_date`` is a callable (htmldate), computed only when the feed's and
    the declared date are unusable."""
    if feed_published is not None and feed_published <= now:
        return feed_published, "feed"
    if declared is not None and declared <= now:
        return declared, "page:published"
    found = page_date()
    if found is not None and found <= now:
        return found, "page"
    if feed_updated is not None and feed_updated <= now:
        return feed_updated, "feed:updated"
    return None, "none"


def pick_authors(page: PageMeta, feed: str | None, names: set[str]) -> tuple[list[str], str]:
    """The feed's ``dc:creator``/``author``; else the page's JSON-LD ``author``, its author meta
    tags, then its byline; the first source that names a person wins (``processors/authors.py``).
    When no source names a person, the first organisation credited is kept."""
    page_credits = (
        ("feed", lambda: [(feed, False)]),
        ("page:json-ld", lambda: [(c.name, c.organisation) for c in page.credits]),
        ("page:meta", lambda: [(v, False) for v in page.meta_authors] + [(page.author, False)]),
        ("page:byline", lambda: [(page.byline(), False)]),
    )
    fallback: tuple[list[str], str] = ([], "none")
    for source, credits in page_credits:
        found = names_of(credits(), names)
        if any(not n.organisation for n in found):
            return people(found), source
        if found and not fallback[0]:
            fallback = people(found), source
    return fallback


def merge(page: PageMeta, entry: FeedEntry, *, feed_title: str | None, canonical: str, canonical_from: str,
          now: datetime) -> Merged:
    host = urlsplit(canonical).hostname or ""
    site_name = clean_field(page.site_name, "site_name")
    names = site_names(site_name, feed_title, host)
    src: dict[str, str] = {}

    title, src["title"] = pick_title(page.headlines, entry.title, names)
    published, src["published_at"] = pick_date(entry.published, page.published, page.date, entry.updated, now)
    authors, src["authors"] = pick_authors(page, entry.author, names)

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
        title=title, published_at=published, authors=authors, description=description,
        site_name=site_name, image=image, categories=categories, tags=tags,
        canonical_url=canonical, sources=src,
    )

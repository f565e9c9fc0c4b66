"""Page bytes -> main text + page metadata, with trafilatura. Pure: no Kafka, no network.

Runs inside an extraction worker (``processors/pool.py``). The page is decoded once, with the charset
the poller determined (``RawArticle.charset``: BOM, HTTP header, ``<meta>``, detection, a declaration
believed only if the bytes decode with it), and trafilatura parses the text. Only a page without that
(an old record, ``newsflow enrich FILE``) goes to trafilatura as bytes, for it to guess.

One parse serves every step; trafilatura's content extraction works on a copy of the tree, which
stays as parsed (``processors/access.py`` reads paywall markers off it afterwards, when needed):

1. ``load_page``  parses the bytes once;
2. ``read_meta``  reads the metadata off the tree. Cheap structured fields (meta tags, Open Graph,
   JSON-LD (each script parsed once, by ``processors.jsonld.ld_blocks``), ``<title>``) are read at
   once; the expensive heuristics (htmldate's date search, byline search, category/tag links) are *lazy*: the merge
   (``processors/merge.py``) calls them only when the feed entry cannot supply the field;
3. ``extract_text`` takes the main text; when it is empty or shorter than ``min_chars`` it also
   tries trafilatura's ``baseline`` and keeps the longer of the two.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache

import trafilatura
from htmldate import find_date
from lxml.etree import XPath
from lxml.html import HtmlElement
from trafilatura import json_metadata as tjson
from trafilatura import metadata as tmeta
from trafilatura.utils import load_html

from processors.jsonld import Credit, LdBlock, ld_blocks, read_article_ld

log = logging.getLogger(__name__)

EXTRACTOR = "trafilatura"
EXTRACTOR_VERSION = trafilatura.__version__
BASELINE = "trafilatura-baseline"


class EmptyPage(ValueError):
    """No HTML tree could be built from the bytes (empty, binary, not HTML)."""


def _none() -> None:
    return None


@dataclass
class PageMeta:
    """What the page says about itself. ``date`` and ``byline`` are zero-argument callables
    (computed once, on first call) because they are the expensive part. Categories and tags come
    from structured markup only (``article:section``/``article:tag``, JSON-LD, meta keywords):
    trafilatura's category/tag-link heuristics cost more than all the other metadata together."""

    title: str | None = None
    headlines: list[tuple[str, str]] = field(default_factory=list)  # (source, text), see ``headlines``
    site_name: str | None = None
    description: str | None = None
    image: str | None = None
    author: str | None = None
    credits: list[Credit] = field(default_factory=list)  # JSON-LD ``author`` entries, typed
    meta_authors: list[str] = field(default_factory=list)  # ``<meta name="author">`` values
    published: datetime | None = None  # declared publication time, see ``declared_published``
    categories: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    lang: str | None = None
    date: Callable[[], datetime | None] = _none
    byline: Callable[[], str | None] = _none


@dataclass(frozen=True)
class Extraction:
    text: str
    extractor: str
    extractor_version: str = EXTRACTOR_VERSION


_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def decode_page(body: bytes, charset: str | None) -> str | bytes:
    """The page as text in ``charset`` (undecodable bytes replaced), or the bytes when there is none.

    An XML declaration is dropped from the text: lxml refuses text that declares an encoding, and
    trafilatura's fallback would re-encode it as UTF-8 under the declaration's other encoding."""
    if not charset:
        return body
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:
        return body
    return _XML_DECLARATION.sub("", text, count=1)


def load_page(page: str | bytes) -> HtmlElement:
    tree = load_html(page)
    if tree is None:
        raise EmptyPage("no HTML tree could be built from the page")
    return tree


def parse_page_date(value: str | None) -> datetime | None:
    """htmldate's output (``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS[+zzzz]``) -> aware datetime.
    A date without zone is taken as UTC."""
    if not value:
        return None
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


# Publication-time markup, read only to give htmldate's day its time of day and offset.
_TIME_META = XPath(
    "//meta[@property='article:published_time' or @name='article:published_time'"
    " or @itemprop='datePublished' or @name='pubdate' or @name='publish-date']/@content"
)
_LD_PUBLISHED = re.compile(r'"datePublished"\s*:\s*"([^"]{8,40})"')


def _published_times(tree: HtmlElement) -> list[datetime]:
    values = [str(v) for v in _TIME_META(tree)]
    for script in tree.iter("script"):
        if "ld+json" in (script.get("type") or "") and script.text:
            values += _LD_PUBLISHED.findall(script.text)
    found = (parse_page_date(v.strip().replace("Z", "+00:00")) for v in values)
    return [d for d in found if d is not None]


def declared_published(tree: HtmlElement, ld_published: str | None) -> datetime | None:
    """The publication time the page declares for the article: the article's JSON-LD
    ``datePublished``, else ``article:published_time``/``itemprop=datePublished`` and kin. Never
    ``dateModified``: an update is not a publication."""
    if ld_published and (found := parse_page_date(ld_published.strip().replace("Z", "+00:00"))):
        return found
    for value in _TIME_META(tree):
        if found := parse_page_date(str(value).strip().replace("Z", "+00:00")):
            return found
    return None


def _page_date(tree: HtmlElement, url: str | None) -> datetime | None:
    """htmldate as trafilatura runs it (original publication date, extensive search), so the day
    is trafilatura's; when it comes without a time (e.g. from the URL) and the publication-time
    markup names the same day, the markup's time and offset are kept."""
    date = parse_page_date(find_date(
        tree, url=url, original_date=True, extensive_search=True, outputformat="%Y-%m-%dT%H:%M:%S%z",
        max_date=(datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d"),
    ))
    if date is not None and (date.hour, date.minute, date.second) == (0, 0, 0):
        for precise in _published_times(tree):
            if precise.date() == date.date():
                return precise
    return date


def read_ld_meta(blocks: list[LdBlock], doc: tmeta.Document) -> tmeta.Document:
    """trafilatura's JSON-LD metadata rules (site name, author, categories, title) on the blocks
    ``ld_blocks`` parsed already, instead of ``tmeta.extract_meta_json``, which parses every block
    again after decoding escapes and entities in the raw text (which breaks valid JSON and sends
    large blocks to its regex reading, slow on long scripts). Only a block that is not JSON goes to
    that regex reading. The values are normalised afterwards, as trafilatura does before parsing."""
    for block in blocks:
        if block.parsed:
            doc = tjson.extract_json(block.data, doc)
        else:
            doc = tjson.extract_json_parse_error(tjson.normalize_json(tmeta.JSON_MINIFY.sub(r"\1", block.text)), doc)
    doc.sitename, doc.title = _normal(doc.sitename), _normal(doc.title)
    if doc.categories:
        doc.categories = [c for c in map(_normal, doc.categories) if c]
    return doc


def _normal(value: object) -> str | None:
    return tjson.normalize_json(value) or None if isinstance(value, str) else None


def _structured(tree: HtmlElement, blocks: list[LdBlock]) -> tmeta.Document:
    doc = tmeta.examine_meta(tree)
    if doc.author and " " not in doc.author:  # trafilatura's rule: a lone token is rarely a name
        doc.author = None
    try:
        doc = read_ld_meta(blocks, doc)
    except Exception as exc:  # noqa: BLE001 - trafilatura guards its JSON-LD reading the same way
        log.warning("JSON-LD metadata unreadable, meta tags only: %r", exc)
    return doc


_OG_TITLE = XPath("//meta[@property='og:title' or @name='og:title']/@content")
_TWITTER_TITLE = XPath("//meta[@name='twitter:title' or @property='twitter:title']/@content")
_H1 = XPath("//h1")
_META_AUTHOR = XPath("//meta[@name='author' or @property='author' or @name='dc.creator'"
                     " or @name='DC.creator' or @property='article:author_name']/@content")


def _h1(tree: HtmlElement) -> str | None:
    """The article's ``h1``: the first non-empty one inside ``<article>``/``<main>``, else the first
    non-empty one of the page. Line breaks inside it (a kicker above the headline) are kept as
    `` | `` so that the title rule can tell the parts apart."""
    found = [h for h in _H1(tree) if h.text_content().strip()]
    inside = [h for h in found if any(a.tag in ("article", "main") for a in h.iterancestors())]
    for h in inside or found:
        parts = [" ".join(t.split()) for t in h.itertext()]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return None


def headlines(tree: HtmlElement, ld_headline: str | None, title_tag: str | None) -> list[tuple[str, str]]:
    """Every headline the page states, in order of trust: JSON-LD ``headline``, ``og:title``, the
    article's ``h1``, ``twitter:title``, ``<title>``. The merge picks among them by agreement."""
    found = [("json-ld", ld_headline), ("og:title", next(iter(_OG_TITLE(tree)), None)), ("h1", _h1(tree)),
             ("twitter:title", next(iter(_TWITTER_TITLE(tree)), None)), ("title", title_tag)]
    return [(src, str(v)) for src, v in found if v and str(v).strip()]


def read_meta(tree: HtmlElement, url: str | None, ld_scripts: list[LdBlock] | None = None) -> PageMeta:
    """Metadata of the untouched tree. Call before ``extract_text``. ``ld_scripts``: the page's
    ``ld_blocks``, when the caller has them already."""
    blocks = ld_blocks(tree) if ld_scripts is None else ld_scripts
    ld = read_article_ld(tree, blocks)
    doc = _structured(tree, blocks)
    site = doc.sitename or tmeta.extract_sitename(tree)
    if site:
        site = site.lstrip("@")
        if site and "." not in site and not site[0].isupper():
            site = site.title()
    html_lang = tree.get("lang") or tree.get("xml:lang")
    return PageMeta(
        title=doc.title or tmeta.extract_title(tree),
        headlines=headlines(tree, ld.headline, tree.findtext(".//title")),
        credits=ld.authors,
        meta_authors=[str(v) for v in _META_AUTHOR(tree) if str(v).strip()],
        published=declared_published(tree, ld.published),
        site_name=site or None,
        description=doc.description,
        image=doc.image,
        author=doc.author,
        categories=list(doc.categories or []),
        tags=list(doc.tags or []),
        lang=html_lang.strip() if html_lang else None,
        date=cache(lambda: _page_date(tree, url)),
        byline=cache(lambda: tmeta.extract_author(tree)),
    )


def extract_text(tree: HtmlElement, page: str | bytes, url: str | None, *, min_chars: int) -> Extraction:
    """Main text of the page (comments excluded). Falls back to trafilatura's baseline when the
    result is empty or shorter than ``min_chars``, keeping whichever text is longer."""
    doc = trafilatura.bare_extraction(tree, url=url, include_comments=False, with_metadata=False)
    text = (doc.text or "") if doc is not None else ""
    if len(text.strip()) >= min_chars:
        return Extraction(text, EXTRACTOR)
    _body, fallback, _n = trafilatura.baseline(page)
    if len((fallback or "").strip()) > len(text.strip()):
        return Extraction(fallback, BASELINE)
    return Extraction(text, EXTRACTOR)

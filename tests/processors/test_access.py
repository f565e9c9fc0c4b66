"""processors/access.py: the access flag, table-driven on small pages of our own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsflow.schema import RawArticle, article_id
from processors.access import as_bool, decide_access, is_truncated, read_signals
from processors.article import Limits, build_article
from processors.extract import load_page

FULL = " ".join(["The council met on Tuesday and agreed the harbour budget after a long debate."] * 40)
TEASER = "The council met on Tuesday and agreed the harbour budget after a long debate. Critics said the"


def page(head: str = "", body: str = "") -> str:
    return f"<html><head><title>t</title>{head}</head><body><article><p>{FULL}</p></article>{body}</body></html>"


def ld(obj: str) -> str:
    return f'<script type="application/ld+json">{obj}</script>'


CASES = [
    # (case, head, body, text, expected access, expected source)
    ("nothing declared", "", "", FULL, "unknown", "none"),
    ("json-ld true", ld('{"@type": "NewsArticle", "isAccessibleForFree": true}'), "", FULL, "free", "jsonld"),
    ("json-ld false", ld('{"@type": "NewsArticle", "isAccessibleForFree": false}'), "", FULL, "paywalled", "jsonld"),
    ("json-ld string True", ld('{"isAccessibleForFree": "True"}'), "", FULL, "free", "jsonld"),
    ("json-ld string False", ld('{"isAccessibleForFree": "False"}'), "", FULL, "paywalled", "jsonld"),
    ("json-ld schema.org URL", ld('{"isAccessibleForFree": "https://schema.org/False"}'), "", FULL,
     "paywalled", "jsonld"),
    ("json-ld key in other case", ld('{"isAccessibleforFree" : "true"}'), "", FULL, "free", "jsonld"),
    ("json-ld @graph", ld('{"@graph": [{"@type": "WebSite"}, {"@type": "NewsArticle", "isAccessibleForFree": false}]}'),
     "", FULL, "paywalled", "jsonld"),
    ("json-ld top-level array", ld('[{"@type": "Organization"}, {"isAccessibleForFree": true}]'), "", FULL,
     "free", "jsonld"),
    ("hasPart false wins over page true",
     ld('{"@type": "NewsArticle", "isAccessibleForFree": true, "hasPart": {"@type": "WebPageElement", '
        '"isAccessibleForFree": false, "cssSelector": ".paywall"}}'), "", FULL, "paywalled", "jsonld:hasPart"),
    ("hasPart list", ld('{"hasPart": [{"isAccessibleForFree": "False", "cssSelector": ".locked"}]}'), "", FULL,
     "paywalled", "jsonld:hasPart"),
    ("broken json-ld still read", ld('{"@type": "NewsArticle", "isAccessibleForFree": false,}'), "", FULL,
     "paywalled", "jsonld"),
    ("unreadable value ignored", ld('{"isAccessibleForFree": "sometimes"}'), "", FULL, "unknown", "none"),
    ("meta content tier locked", '<meta property="article:content_tier" content="locked">', "", FULL,
     "paywalled", "meta:content_tier"),
    ("meta content tier metered", '<meta name="article:content_tier" content="Metered"/>', "", FULL,
     "paywalled", "meta:content_tier"),
    ("meta content tier free", '<meta property="article:content_tier" content="free">', "", FULL,
     "free", "meta:content_tier"),
    ("og: spelling", '<meta property="og:article:content_tier" content="locked">', "", FULL,
     "paywalled", "meta:content_tier"),
    ("underscore spelling", '<meta property="article_content_tier" content="metered">', "", FULL,
     "paywalled", "meta:content_tier"),
    ("unknown tier ignored", '<meta property="article:content_tier" content="gold">', "", FULL, "unknown", "none"),
    ("microdata", "", '<meta itemprop="isAccessibleForFree" content="False">', FULL, "paywalled", "microdata"),
    ("subscribe with google", '<script>(self.SWG_BASIC = self.SWG_BASIC || []).push(b => { b.init({type: '
     '"NewsArticle", isAccessibleForFree: false, isPartOfType: ["Product"]}); });</script>', "", FULL,
     "paywalled", "swg"),
    ("a script that is not swg is not read", '<script>var config = {isAccessibleForFree: false};</script>', "",
     FULL, "unknown", "none"),
    ("json-ld free, tier metered: not free wins",
     ld('{"isAccessibleForFree": true}') + '<meta property="article:content_tier" content="metered">', "", FULL,
     "paywalled", "meta:content_tier"),
    ("json-ld outranks the tier when both say free",
     ld('{"isAccessibleForFree": true}') + '<meta property="article:content_tier" content="free">', "", FULL,
     "free", "jsonld"),
    ("truncated teaser + paywall element", "", '<div class="article-paywall">Subscribe</div>', TEASER,
     "paywalled", "text:truncated+markup"),
    ("teaser ending in an ellipsis + regwall", "", '<div id="regwall-box"></div>', "A short teaser that ends ...",
     "paywalled", "text:truncated+markup"),
    ("full text + paywall element: markers prove nothing", "", '<div class="paywall"></div>', FULL,
     "unknown", "none"),
    ("short complete text + paywall element", "", '<div class="paywall"></div>', "A short note. It ends here.",
     "unknown", "none"),
    ("truncated teaser, no markup", "", "", TEASER, "unknown", "none"),
    ("truncated teaser, paywall only in a script id", "", '<script id="paywall-js">var a;</script>', TEASER,
     "unknown", "none"),
    ("truncated teaser, negated marker", "", '<div class="no-paywall"></div>', TEASER, "unknown", "none"),
    ("declaration outranks the text signal", '<meta property="article:content_tier" content="free">',
     '<div class="paywall"></div>', TEASER, "free", "meta:content_tier"),
]


@pytest.mark.parametrize(("head", "body", "text", "access", "source"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_access_rules(head, body, text, access, source):
    assert decide_access(read_signals(load_page(page(head, body))), text) == (access, source)


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("True", True), ("false", False), (" FALSE ", False),
    ("http://schema.org/True", True), ("yes", None), (1, None), (None, None),
])
def test_as_bool(value, expected):
    assert as_bool(value) is expected


@pytest.mark.parametrize(("text", "truncated"), [
    (TEASER, True),
    ("Ends on a comma,", True),
    ("Ends on an ellipsis…", True),
    ("A complete short note.", False),
    ('He said: "Done."', False),
    (FULL + " and then", False),  # long: not a teaser, however it ends
])
def test_is_truncated(text, truncated):
    assert is_truncated(text) is truncated


def test_the_article_carries_access_and_its_source():
    html = page('<meta property="article:content_tier" content="locked">')
    url = "https://news.example/a/1"
    now = datetime(2024, 3, 1, tzinfo=UTC)
    raw = RawArticle(id=article_id(url), url=url, canonical_url=url, final_url=url, fetched_at=now,
                     first_seen_at=now, charset="utf-8", body_b64=RawArticle.encode_body(html.encode()))
    article = build_article(raw, limits=Limits(), now=now).article
    assert article.access == "paywalled"
    assert article.provenance.fields["access"] == "meta:content_tier"

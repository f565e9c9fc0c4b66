"""The per-document chain (processors/article.py, processors/extract.py) without Kafka."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from newsflow.schema import Article, FeedEntry, RawArticle, article_id
from newsflow.stage.outcomes import Quarantine
from processors.enrich.enricher import Enrichment
from processors.article import Limits, build_article, build_from_text, reading_time_s, split_date_line
from processors.extract import BASELINE
from tests.conftest import SEED
from tests.processors.pages import SEED_TITLE, SITE, seed_html

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
URL = "https://news.example/world/2022/02/09/russia-ukraine"


def raw_of(body: bytes, *, entry: FeedEntry | None = None, feed_title: str | None = "Fixture Times - World",
           url: str = URL, charset: str | None = None) -> RawArticle:
    return RawArticle(
        id=article_id(url), url=url, canonical_url=url, canonical_from="fetched", final_url=url,
        feed_url="https://news.example/feed.xml", feed_title=feed_title, entry=entry or FeedEntry(), fetched_at=NOW,
        first_seen_at=NOW, charset=charset, body_b64=RawArticle.encode_body(body),
    )


def test_page_and_feed_metadata_are_merged_with_provenance():
    entry = FeedEntry(title="Feed headline", published=datetime(2022, 2, 9, 18, 5, tzinfo=UTC),
                      author="By Jane Reporter", tags=["Ukraine"])
    article = build_article(raw_of(seed_html(), entry=entry), limits=Limits(), now=NOW).article
    assert article.title == SEED_TITLE  # h1 and <title> (site name cut off) agree, the feed's title differs
    assert article.published_at == datetime(2022, 2, 9, 18, 5, tzinfo=UTC)  # the feed's date wins
    assert article.authors == ["Jane Reporter"]  # the feed's, cleaned
    assert article.site_name == SITE and article.source == "Fixture Times - World"
    assert article.language == "en"  # <html lang> when enrichment is off
    assert article.tags == ["Ukraine"]
    assert article.provenance.extractor == "trafilatura"
    assert article.provenance.fields.items() >= {
        "title": "page:h1", "published_at": "feed", "authors": "feed", "site_name": "page", "text": "trafilatura",
        "language": "page:html-lang", "canonical_url": "fetched",
    }.items()
    assert article.provenance.steps == {"enrichment": "off (settings.enrich)"}
    assert "Jen Psaki, the White House press secretary" in article.text
    assert "Subscribe to our newsletter" not in article.text and "All rights reserved" not in article.text
    assert article.word_count == len(article.text.split()) > 400
    assert article.reading_time_s == reading_time_s(article.word_count)
    assert article.persons == [] and article.minhash is None and article.content_hash
    Article.from_bytes(article.to_bytes())  # valid against the schema


def test_a_language_the_source_declares_wins_over_html_lang_when_enrichment_is_off():
    entry = FeedEntry(title="Schlagzeile", language="de-DE")  # a news sitemap's news:language
    article = build_article(raw_of(seed_html(), entry=entry), limits=Limits(), now=NOW).article
    assert article.language == "de" and article.provenance.fields["language"] == "feed:language"


class _Detects:
    """An enricher stand-in whose language detection finds ``language`` (None: unsure)."""

    def __init__(self, language: str | None):
        self.language = language

    def enrich(self, text: str, title: str | None) -> Enrichment:
        return Enrichment(language=self.language)


@pytest.mark.parametrize("detected, language, source", [
    ("en", "en", "py3langid"),  # detection wins
    (None, "de", "feed:language"),  # detection unsure: the source's declaration
])
def test_a_declared_language_fills_in_when_detection_is_unsure(detected, language, source):
    entry = FeedEntry(language="de")
    article = build_article(raw_of(seed_html(), entry=entry), limits=Limits(), enricher=_Detects(detected),
                            now=NOW).article
    assert (article.language, article.provenance.fields["language"]) == (language, source)


def test_page_metadata_fills_what_the_feed_lacks():
    page = seed_html(author="Fixture Reporter", published="2022-02-09T19:30:00+00:00")
    article = build_article(raw_of(page, feed_title=None), limits=Limits(), now=NOW).article
    assert article.published_at == datetime(2022, 2, 9, 19, 30, tzinfo=UTC)
    assert article.provenance.fields["published_at"] == "page:published"  # article:published_time
    assert article.title == SEED_TITLE  # no feed title: the page's, site name cut off
    assert article.authors == ["Fixture Reporter"] and article.provenance.fields["authors"] == "page:meta"
    assert article.source == SITE


def test_legacy_charset_is_detected_from_the_bytes():
    text = "Der Bürgermeister sagte, die Brücke über den Fluss werde im Frühjahr repariert. " * 8
    page = f'<html><head><meta charset="windows-1252"><title>Brücke</title></head><body><article><p>{text}</p>' \
           f"<p>{text}</p></article></body></html>"
    article = build_article(raw_of(page.encode("cp1252")), limits=Limits(), now=NOW).article
    assert "Bürgermeister" in article.text and "Frühjahr" in article.text
    assert article.title == "Brücke"


def test_baseline_fallback_when_the_main_text_is_too_short():
    body = "<html><body><div id='comments'><p>" + "Comment words that are many here. " * 20 + "</p></div>" \
           "<p>Hi there.</p></body></html>"
    article = build_article(raw_of(body.encode()), limits=Limits(min_chars=250), now=NOW).article
    assert article.provenance.extractor == BASELINE and article.provenance.fields["text"] == BASELINE
    assert article.text.count("Comment words") == 20


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "not_html"),
    (b"%PDF-1.4 \x89\x00\x00 binary", "not_html"),
    (b"<html><head><title>Video</title></head><body><div> <img src='/v.jpg'> </div></body></html>", "empty_extraction"),
    (b"<html><body><p>" + b"x " * 6000 + b"</p></body></html>", "page_too_large"),
])
def test_pages_that_can_never_become_articles_are_quarantined(body, reason):
    with pytest.raises(Quarantine) as exc:
        build_article(raw_of(body), limits=Limits(max_page_bytes=10_000), now=NOW)
    assert exc.value.reason == reason


def test_text_is_truncated_utf8_safely():
    para = "Ein schöner Absatz über die Lage am Hafen und die Schiffe dort. " * 40
    page = f"<html><body><article>{'<p>' + para + '</p>' * 1}{('<p>' + para + '</p>') * 20}</article></body></html>"
    article = build_article(raw_of(page.encode()), limits=Limits(max_text_bytes=5000), now=NOW).article
    assert len(article.text.encode("utf-8")) <= 5000
    article.text.encode("utf-8").decode("utf-8")


@pytest.mark.parametrize(("text", "date", "rest"), [
    (" date 2022-02-09 US officials have warned.", datetime(2022, 2, 9, tzinfo=UTC), "US officials have warned."),
    ("date 2022-02-09\nFirst paragraph.", datetime(2022, 2, 9, tzinfo=UTC), "First paragraph."),
    ("date 2022-13-40 Bad date.", None, "date 2022-13-40 Bad date."),
    ("No date line.", None, "No date line."),
])
def test_plain_text_date_line(text, date, rest):
    assert split_date_line(text) == (date, rest)


def test_plain_text_file(tmp_path):
    built = build_from_text(SEED.read_text(encoding="utf-8"), path=SEED, limits=Limits(), now=NOW)
    a = built.article
    assert a.published_at == datetime(2022, 2, 9, tzinfo=UTC)
    assert a.provenance.fields["published_at"] == "text:date-line" and a.provenance.extractor == "plain-text"
    assert a.text.startswith("US officials have warned") and a.url == SEED.resolve().as_uri()
    assert json.loads(a.to_bytes())["id"] == article_id(a.url)


# Short pages whose charset only the HTTP header names (the poller's RawArticle.charset): guessing from
# the bytes alone gets these wrong; the charset the poller determined gets them right.
HEADER_ONLY = [
    ("iso-8859-2", "Żółć gęślą jaźń. Łódź, Kraków i Wrocław świętują. Pchnąć w tę łódź jeża lub ośm skrzyń fig."),
    ("koi8-r", "Съешь же ещё этих мягких французских булок, да выпей чаю. Широкая электрификация южных губерний."),
    ("windows-1251", "Їжак, ґанок, європеєць, щастя. Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!"),
]


@pytest.mark.parametrize(("charset", "sentence"), HEADER_ONLY)
def test_the_charset_the_poller_determined_is_the_one_the_text_is_read_with(charset, sentence):
    html = f"<html><head><title>t</title></head><body><article><p>{sentence}</p></article></body></html>"
    body = html.encode(charset)
    article = build_article(raw_of(body, charset=charset), limits=Limits(min_chars=10), now=NOW).article
    assert sentence in article.text


def test_without_the_poller_charset_a_short_central_european_page_comes_out_garbled():
    """The failure the test above guards against: from the bytes alone, iso-8859-2 is taken for a
    look-alike single-byte charset (which one is the detector's guess)."""
    charset, sentence = HEADER_ONLY[0]
    body = f"<html><head><title>t</title></head><body><article><p>{sentence}</p></article></body></html>"
    guessed = build_article(raw_of(body.encode(charset)), limits=Limits(min_chars=10), now=NOW).article
    assert sentence not in guessed.text


def test_an_xhtml_page_that_declares_its_encoding_in_an_xml_declaration_is_read_right():
    sentence = "Zażółć gęślą jaźń, powiedział burmistrz Łodzi w poniedziałek rano."
    html = (f'<?xml version="1.0" encoding="iso-8859-2"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head>'
            f"<title>t</title></head><body><article><p>{sentence}</p></article></body></html>")
    article = build_article(raw_of(html.encode("iso-8859-2"), charset="iso-8859-2"), limits=Limits(min_chars=10),
                            now=NOW).article
    assert sentence in article.text


def test_v1_article_with_one_author_string_is_still_read():
    article = build_article(raw_of(seed_html(author="Fixture Reporter")), limits=Limits(), now=NOW).article
    v1 = json.loads(article.to_bytes())
    del v1["authors"]
    v1 |= {"schema_version": 1, "author": "Jane Reporter"}
    old = Article.from_bytes(json.dumps(v1).encode())
    assert (old.authors, old.schema_version) == (["Jane Reporter"], 2)
    assert "author" not in json.loads(old.to_bytes())
    v1["author"] = None
    assert Article.from_bytes(json.dumps(v1).encode()).authors == []


def _ld_page(*scripts: str) -> bytes:
    blocks = "".join(f'<script type="application/ld+json">{s}</script>' for s in scripts)
    return (f'<html lang="en"><head><title>Harbour reopens</title><meta property="og:site_name" content="Gazette">'
            f"{blocks}</head><body><article><p>{'The harbour reopened on Monday. ' * 20}</p></article></body></html>")


@pytest.mark.parametrize(("script", "site", "categories"), [
    # valid JSON whose strings hold an entity and escaped quotes (which trafilatura's own reading
    # decodes before parsing, breaking the JSON): read as JSON
    ('{"@context": "https://schema.org", "@type": "NewsArticle", "headline": "Harbour reopens",'
     ' "articleSection": ["Local", "Sea &amp; Shore"], "author": {"@type": "Person", "name": "Jane \\u0022JD\\u0022 Doe"},'
     ' "publisher": {"@type": "Organization", "name": "Harbour Gazette"}}',
     "Harbour Gazette", ["Local", "Sea & Shore"]),
    # not JSON (a trailing comma): trafilatura's regex reading still finds the publisher and section
    ('{"@context": "https://schema.org", "@type": "NewsArticle", "articleSection": "Local",'
     ' "publisher": {"@type": "Organization", "name": "Harbour Gazette"},}',
     "Harbour Gazette", ["Local"]),
])
def test_json_ld_metadata_is_read_from_the_blocks_parsed_once(script, site, categories):
    article = build_article(raw_of(_ld_page(script).encode()), limits=Limits(), now=NOW).article
    assert (article.site_name, article.categories) == (site, categories)


def test_extraction_leaves_the_parsed_tree_untouched():
    """The page's access markers are read off the tree after extraction (processors/access.py)."""
    from lxml.html import tostring

    from processors.extract import extract_text, load_page
    tree = load_page(seed_html().decode())
    before = tostring(tree)
    assert len(extract_text(tree, seed_html(), URL, min_chars=250).text) > 1000
    assert len(extract_text(tree, seed_html(), URL, min_chars=10**6).text) > 1000  # the baseline too
    assert tostring(tree) == before

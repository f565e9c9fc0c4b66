"""Author credits -> person names (processors/authors.py) and the article JSON-LD reader
(processors/jsonld.py), table-driven from byline patterns seen on publisher pages (own fixtures)."""

from __future__ import annotations

import pytest

from processors.authors import is_organisation, names_of, people, split_credit
from processors.extract import headlines, load_page
from processors.jsonld import Credit, read_article_ld

SITE = {"harbour gazette", "harbour example", "harbour"}


@pytest.mark.parametrize(("credit", "expected"), [
    ("Jane Doe", ["Jane Doe"]),
    ("By Jane Doe", ["Jane Doe"]),
    ("BY JANE DOE", ["JANE DOE"]),
    ("Von Anna Berg", ["Anna Berg"]),
    ("Par Marie Dupont", ["Marie Dupont"]),
    ("Por Juan Pérez y Ana Gómez", ["Juan Pérez", "Ana Gómez"]),
    ("Av Lars Nilsson och Eva Berg", ["Lars Nilsson", "Eva Berg"]),
    ("Di Marco Rossi e Giulia Bianchi", ["Marco Rossi", "Giulia Bianchi"]),
    ("Door Jan de Vries en Piet Jansen", ["Jan de Vries", "Piet Jansen"]),
    ("Przez Anna Nowak", ["Anna Nowak"]),
    ("Autor: Tomáš Novák", ["Tomáš Novák"]),
    ("Anna Berg und Tom Roe", ["Anna Berg", "Tom Roe"]),
    ("Marie Dupont et Paul Martin", ["Marie Dupont", "Paul Martin"]),
    ("Jane Doe, John Roe and Ann Poe", ["Jane Doe", "John Roe", "Ann Poe"]),
    ("Jane Doe; John Roe", ["Jane Doe", "John Roe"]),
    ("Jane Doe | Political Correspondent", ["Jane Doe"]),        # a role is no name
    ("Jane Doe, Reporter", ["Jane Doe"]),
    ("Jane Reporter, Chief Reporter", ["Jane Reporter"]),        # a surname that is a role word stays
    ("Jane Doe (jdoe@harbour.example)", ["Jane Doe"]),          # e-mail and bracketed note go
    ("jdoe@harbour.example", []),
    ("Jane Doe https://harbour.example/authors/jdoe", ["Jane Doe"]),
    ("Jane Doe 12.03.2024, 14:05", ["Jane Doe"]),               # a date next to the name
    ("Jane Doe Updated 3 hours ago", ["Jane Doe"]),
    ("Ein Kommentar Von Anna Berg", ["Anna Berg"]),              # a capitalised prefix later on
    ("Ursula von der Leyen", ["Ursula von der Leyen"]),         # a lower-case particle is part of the name
    ("admin", []),
    ("Redaktion", []),
    ("12345", []),
    ("", []),
    (None, []),
])
def test_split_credit(credit, expected):
    assert split_credit(credit) == expected


@pytest.mark.parametrize(("name", "organisation"), [
    ("Jane Doe", False),
    ("Harbour Gazette", True),                # the site's own name
    ("Harbour Gazette Online", True),         # ... with more words
    ("Associated Press", True),
    ("Deutsche Presse-Agentur", True),
    ("Nikkei Inc", True),
    ("harbour.example", True),                # a domain
    ("Example Media GmbH", True),
    ("Gear Team", False),                     # a desk's name is no organisation word list entry
])
def test_is_organisation(name, organisation):
    assert is_organisation(name, SITE) is organisation


@pytest.mark.parametrize(("credits", "expected"), [
    ([("Jane Doe", False), ("Harbour Gazette", True)], ["Jane Doe"]),        # persons beat the publisher
    ([("Harbour Gazette Online, Jane Doe", False)], ["Jane Doe"]),
    ([("Harbour Gazette", True)], ["Harbour Gazette"]),                       # only an organisation: kept
    ([("Associated Press", False), ("Reuters", False)], ["Associated Press"]),  # ... the first one
    ([("Jane Doe", False), ("jane doe", False)], ["Jane Doe"]),               # no repeats
    ([], []),
])
def test_people(credits, expected):
    assert people(names_of(credits, SITE)) == expected


ARTICLE_LD = """<html><head><title>Storm | Harbour Gazette</title>
<meta property="og:title" content="Storm hits the harbour">
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "WebSite", "name": "Harbour Gazette"}</script>
<script type="application/ld+json">{"@context": "https://schema.org", "@graph": [
  {"@type": "Organization", "name": "Harbour Gazette"},
  {"@type": ["NewsArticle"], "headline": "Storm hits the harbour",
   "author": [{"@type": "Person", "name": "Jane Doe"}, {"@type": "NewsMediaOrganization", "name": "Harbour Gazette"},
              "John Roe"],
   "datePublished": "2024-04-30T08:00:00+02:00", "dateModified": "2024-05-01T10:00:00+02:00"}]}</script>
<script type="application/ld+json">{not json</script>
</head><body><article><h1>Storm hits <em>the</em> harbour</h1><p>Text.</p></article></body></html>"""


def test_article_json_ld():
    ld = read_article_ld(load_page(ARTICLE_LD))
    assert ld.headline == "Storm hits the harbour"
    assert ld.authors == [Credit("Jane Doe"), Credit("Harbour Gazette", True), Credit("John Roe")]
    assert ld.published == "2024-04-30T08:00:00+02:00" and ld.modified == "2024-05-01T10:00:00+02:00"


def test_headlines_in_order_of_trust():
    tree = load_page(ARTICLE_LD)
    assert headlines(tree, "Storm hits the harbour", tree.findtext(".//title")) == [
        ("json-ld", "Storm hits the harbour"), ("og:title", "Storm hits the harbour"),
        ("h1", "Storm hits the harbour"), ("title", "Storm | Harbour Gazette"),
    ]


def test_no_article_json_ld():
    ld = read_article_ld(load_page('<html><head><script type="application/ld+json">{"@type": "WebPage", '
                                   '"headline": "Home"}</script></head><body><p>x</p></body></html>'))
    assert (ld.headline, ld.authors, ld.published) == (None, [], None)

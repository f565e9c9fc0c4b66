"""Cleaning rules (processors/clean.py)."""

from __future__ import annotations

import unicodedata

import pytest

from processors.clean import clean_field, clean_list, clean_text, is_boilerplate, truncate_bytes


def test_nfc_and_invisible_characters():
    decomposed = "Cafe\u0301 cre\u0300me"
    assert unicodedata.is_normalized("NFD", decomposed)
    out = clean_text(decomposed + "\u200b soft\u00adhyphen\ufeff")
    assert out == "Café crème softhyphen"
    assert unicodedata.is_normalized("NFC", out)


def test_whitespace():
    text = "  First\tparagraph\u00a0 with   spaces  \r\n\r\n\n\nSecond\u2009one\rThird"
    assert clean_text(text) == "First paragraph with spaces\nSecond one\nThird"


@pytest.mark.parametrize("line", [
    "Advertisement", "ADVERTISEMENT", "Anzeige", "Share this article", "Share on Facebook",
    "Subscribe to our newsletter", "Sign up for our daily newsletter.", "Read more:", "Related articles",
    "Follow us on Twitter", "Photo: Jane Doe/Reuters", "© 2024 Harbour Gazette", "All rights reserved.",
    "We use cookies to improve your experience.", "* * *", "—",
])
def test_boilerplate_lines_are_dropped(line):
    assert is_boilerplate(line)
    assert clean_text(f"Keep this.\n{line}\nAnd this.") == "Keep this.\nAnd this."


@pytest.mark.parametrize("line", [
    "Readers can subscribe to our newsletter at the town hall, the mayor said.",
    "Advertisement revenue fell by 12% last year.",
    "Read more about the vote in Tuesday's edition, which covers the lighthouse in detail.",
    "Photo finish: the regatta was decided by a bow's length.",
])
def test_sentences_mentioning_boilerplate_words_survive(line):
    assert not is_boilerplate(line)
    assert clean_text(line) == line


def test_repeated_line_dropped_once():
    assert clean_text("Caption\nCaption\nBody\nCaption") == "Caption\nBody\nCaption"


@pytest.mark.parametrize(("value", "limit", "expected"), [
    ("abc", 10, "abc"),
    ("héllo", 2, "h"),            # é is 2 bytes: never split
    ("日本語", 4, "日"),           # 3-byte characters
    ("a😀b", 4, "a"),              # 4-byte emoji
    ("😀", 3, ""),
])
def test_truncate_bytes_never_splits_a_character(value, limit, expected):
    out = truncate_bytes(value, limit)
    assert out == expected
    assert len(out.encode("utf-8")) <= limit


def test_truncate_at_space():
    text = "word " * 100
    out = truncate_bytes(text, 53, at_space=True)
    assert out.endswith("word") and len(out.encode()) <= 53


def test_fields_and_lists():
    assert clean_field("  A &amp; B\n title ") == "A & B title"
    assert clean_field("   ") is None
    assert len(clean_field("é" * 5000, "title").encode()) <= 1000
    assert clean_list(["Harbour", "harbour ", "Votes, lighthouse", None, ""], split_commas=True) == [
        "Harbour", "Votes", "lighthouse"]
    assert len(clean_list([f"t{i}" for i in range(500)])) == 100
    assert all(len(v.encode()) < 32_766 for v in clean_list(["x" * 100_000]))

"""Bounded decompression (caps counted after decoding) and page charset detection."""

from __future__ import annotations

import gzip
import zlib

import pytest

from ingest.decode import BodyTooLarge, BoundedDecoder, UnsupportedEncoding, detect_charset

TEXT = b"<rss>" + b"news " * 2000 + b"</rss>"


def decode(encoding, payload: bytes, cap: int, chunk: int = 1000) -> bytes:
    d = BoundedDecoder(encoding, cap)
    for i in range(0, len(payload), chunk):
        d.feed(payload[i:i + chunk])
    return d.finish()


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("encoding, payload", [
    (None, TEXT),
    ("identity", TEXT),
    ("gzip", gzip.compress(TEXT)),
    ("x-gzip", gzip.compress(TEXT)),
    ("deflate", zlib.compress(TEXT)),
    ("deflate", raw_deflate(TEXT)),
    ("gzip", gzip.compress(TEXT[:5000]) + gzip.compress(TEXT[5000:])),  # two gzip members
    ("deflate, gzip", gzip.compress(zlib.compress(TEXT))),  # applied in order, undone in reverse
])
def test_decodes_every_supported_encoding(encoding, payload):
    assert decode(encoding, payload, cap=len(TEXT)) == TEXT


@pytest.mark.parametrize("encoding, payload", [
    (None, TEXT), ("gzip", gzip.compress(TEXT)), ("deflate", zlib.compress(TEXT)),
])
def test_cap_is_counted_after_decompression(encoding, payload):
    with pytest.raises(BodyTooLarge):
        decode(encoding, payload, cap=len(TEXT) - 1)


def test_gzip_bomb_is_refused_without_inflating_it():
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)  # ~64 KiB on the wire
    d = BoundedDecoder("gzip", 1024 * 1024)
    with pytest.raises(BodyTooLarge):
        for i in range(0, len(bomb), 65536):
            d.feed(bomb[i:i + 65536])
        d.finish()
    assert sum(map(len, d.parts)) <= 1024 * 1024 < d.size <= 1024 * 1024 + 1  # held at most the cap


@pytest.mark.parametrize("encoding, payload, error", [
    ("br", b"\x0b\x02\x80", UnsupportedEncoding),
    ("gzip", b"this is not gzip at all", UnsupportedEncoding),
])
def test_unsupported_or_corrupt_encoding(encoding, payload, error):
    with pytest.raises(error):
        decode(encoding, payload, cap=10_000)


CAFE = "Caf\u00e9 cr\u00e8me \u2014 na\u00efve"
CHARSETS = [
    # body, content-type, expected codec, expected source
    (CAFE.encode("utf-8"), "text/html; charset=utf-8", "utf-8", "header"),
    (CAFE.encode("cp1252"), "text/html; charset=windows-1252", "cp1252", "header"),
    (b'<meta charset="iso-8859-1">' + CAFE.encode("latin-1", "replace"), "text/html", "iso8859-1", "meta"),
    # mis-declared: header says UTF-8, bytes are windows-1252 -> the <meta> is believed
    (b'<meta charset="windows-1252">' + CAFE.encode("cp1252"), "text/html; charset=utf-8", "cp1252", "meta"),
    # mis-declared the other way: declared Latin-1, bytes are valid UTF-8
    (CAFE.encode("utf-8"), "text/html; charset=iso-8859-1", "utf-8", "header-override"),
    (b"\xef\xbb\xbf" + CAFE.encode("utf-8"), "text/html; charset=iso-8859-1", "utf-8", "bom"),
    (b"plain ascii", "text/html; charset=bogus-charset", "utf-8", "detected"),
    (b"plain ascii", "text/html; charset=us-ascii", "cp1252", "header"),  # WHATWG: ascii means windows-1252
    (CAFE.encode("utf-8"), "text/html", "utf-8", "detected"),
    # UTF-8 with a stray byte pasted in (seen on real pages): still UTF-8, the stray byte is replaced
    ((CAFE * 10).encode("utf-8") + b" \xe9 " + (CAFE * 10).encode("utf-8"), "text/html; charset=utf-8", "utf-8",
     "header"),
    ((CAFE * 10).encode("utf-8") + b" \xe9 ", "text/html", "utf-8", "detected"),
]


@pytest.mark.parametrize("body, content_type, codec, source", CHARSETS)
def test_detect_charset(body, content_type, codec, source):
    assert detect_charset(body, content_type) == (codec, source)


def test_invalid_utf8_without_a_usable_declaration_is_detected_not_crashed():
    body = ("Zürich – Öffentliche Verkehrsmittel fahren wieder. " * 20).encode("cp1252") + b"\x81"
    codec, source = detect_charset(body, "text/html; charset=utf-8")
    assert source in ("detected", "fallback")
    body.decode(codec)  # whatever was chosen decodes the bytes

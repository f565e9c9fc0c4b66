"""Response bodies: bounded decompression and charset detection.

Byte caps are counted on the *decoded* body. ``BoundedDecoder`` inflates gzip/deflate with
``zlib``'s ``max_length``, so a gzip bomb costs at most ``cap + 1`` bytes of memory before it is
refused, however well it compresses.
"""

from __future__ import annotations

import codecs
import re
import zlib

import charset_normalizer

ACCEPT_ENCODING = "gzip, deflate"
UTF8_STRAYS = 16  # undecodable sequences a UTF-8 page may have and still be read as UTF-8
_STEP = 256 * 1024


class BodyTooLarge(Exception):
    def __init__(self, cap: int, what: str = "body"):
        super().__init__(f"{what} exceeds {cap} bytes after decompression")
        self.cap = cap


class UnsupportedEncoding(Exception):
    pass


class _Inflate:
    def __init__(self, wbits: int | None):
        self.wbits = wbits  # None: decide on the first bytes (deflate with or without zlib header)
        self.obj = None if wbits is None else zlib.decompressobj(wbits)

    def _start(self, data: bytes) -> None:
        if self.obj is None:
            zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self.wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
            self.obj = zlib.decompressobj(self.wbits)

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflate ``data``; return at most ``room + 1`` bytes (one more than fits means: too large)."""
        if not data:
            return b""
        self._start(data)
        out = bytearray()
        while data:
            chunk = self.obj.decompress(data, max(1, min(room + 1 - len(out), _STEP)))
            out += chunk
            if len(out) > room:
                return bytes(out)
            data = self.obj.unconsumed_tail
            if self.obj.eof:
                rest = self.obj.unused_data
                if rest and self.wbits and self.wbits > 16:  # concatenated gzip members
                    self.obj = zlib.decompressobj(self.wbits)
                    data = rest
                else:
                    break
        return bytes(out)

    def flush(self) -> bytes:
        return self.obj.flush() if self.obj is not None else b""


class BoundedDecoder:
    """Decode a ``Content-Encoding`` chain chunk by chunk; raise BodyTooLarge past ``cap`` decoded bytes."""

    def __init__(self, content_encoding: str | None, cap: int, what: str = "body"):
        self.cap = cap
        self.what = what
        self.size = 0
        self.parts: list[bytes] = []
        self.layers: list[_Inflate] = []
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        for coding in reversed(codings):  # the last coding applied is undone first
            if coding in ("identity", ""):
                continue
            if coding in ("gzip", "x-gzip"):
                self.layers.append(_Inflate(16 + zlib.MAX_WBITS))
            elif coding == "deflate":
                self.layers.append(_Inflate(None))
            else:
                raise UnsupportedEncoding(f"unsupported Content-Encoding {coding!r}")

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.cap:
            raise BodyTooLarge(self.cap, self.what)
        self.parts.append(data)

    def feed(self, raw: bytes) -> None:
        data = raw
        try:
            for layer in self.layers:
                data = layer.feed(data, self.cap - self.size)
        except zlib.error as exc:
            raise UnsupportedEncoding(f"corrupt compressed body: {exc}") from exc
        self._add(data)

    def finish(self) -> bytes:
        """The whole decoded body (after the last ``feed``)."""
        tail = b""
        try:
            for layer in self.layers:
                tail = layer.feed(tail, self.cap - self.size) + layer.flush()
        except zlib.error as exc:
            raise UnsupportedEncoding(f"corrupt compressed body: {exc}") from exc
        self._add(tail)
        return b"".join(self.parts)


# --- charset -------------------------------------------------------------------------------------
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)""", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None


def header_charset(content_type: str | None) -> str | None:
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def _decodes(body: bytes, codec: str) -> bool:
    try:
        body.decode(codec)
        return True
    except (UnicodeDecodeError, LookupError):
        return False


def _mostly_utf8(body: bytes) -> bool:
    """UTF-8 with a few stray bytes (a page pasted together from sources in another charset): at most
    ``UTF8_STRAYS`` undecodable sequences, and far fewer of them than well-formed non-ASCII characters. A
    page in a single-byte charset mis-declared as UTF-8 has almost no well-formed multi-byte sequences."""
    text = body.decode("utf-8", errors="replace")
    strays = text.count("\ufffd")
    if not strays or strays > UTF8_STRAYS:
        return False
    return sum(1 for ch in text if ord(ch) > 127) - strays >= 20 * strays


def detect_charset(body: bytes, content_type: str | None) -> tuple[str, str]:
    """(codec name, where it came from) for an HTML page.

    Order: byte-order mark; the HTTP header's charset; the page's ``<meta charset>``; detection.
    A declared charset is only believed if the body decodes with it, but for UTF-8 with a few stray
    bytes (``_mostly_utf8``: the reader replaces them). A single-byte declaration on a body that is valid
    UTF-8 with non-ASCII bytes is taken for the common mis-declaration it is: UTF-8.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name, "bom"
    is_ascii = body.isascii()
    utf8_ok = not is_ascii and (_decodes(body, "utf-8") or _mostly_utf8(body))
    for source, declared in (("header", header_charset(content_type)), ("meta", _meta_charset(body))):
        codec = _codec(declared)
        if codec is None:
            continue
        if codec == "ascii":
            codec = "utf-8" if utf8_ok else "cp1252"  # browsers read "ascii" as windows-1252
        if utf8_ok and codec != "utf-8" and _single_byte(codec):
            return "utf-8", f"{source}-override"
        if _decodes(body, codec) or (codec == "utf-8" and utf8_ok):
            return codec, source
    if is_ascii or utf8_ok:
        return "utf-8", "detected"
    best = charset_normalizer.from_bytes(body[: 256 * 1024]).best()
    codec = _codec(best.encoding) if best is not None else None
    return (codec, "detected") if codec else ("cp1252", "fallback")


def _meta_charset(body: bytes) -> str | None:
    m = _META_CHARSET.search(body[:8192])
    return m.group(1).decode("ascii", "replace") if m else None


def _single_byte(codec: str) -> bool:
    try:
        return len("\u00e9".encode(codec)) == 1
    except (UnicodeEncodeError, LookupError):
        return False

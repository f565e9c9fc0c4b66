"""What the poller reads off a fetched page before producing it: the URL the page says it is known by.

Only the ``<head>`` is parsed (the bytes up to ``</head>``, at most ``HEAD_MAX_BYTES``), with the charset
the poller determined, so this costs a fraction of a millisecond per page. The rule that decides whether
the declared URL is believed is ``ingest.urls.pick_canonical``.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

from lxml import etree
from lxml.etree import XPath

from ingest.urls import pick_canonical

HEAD_MAX_BYTES = 512 * 1024
_HEAD_END = re.compile(rb"</head\s*>|<body[\s>]", re.IGNORECASE)
_CANONICAL = XPath("//link[contains(concat(' ', normalize-space(translate(@rel, 'CANONIL', 'canonil')), ' '),"
                   " ' canonical ')]/@href")
_OG_URL = XPath("//meta[@property='og:url' or @name='og:url']/@content")


def _head(body: bytes) -> bytes:
    m = _HEAD_END.search(body, 0, HEAD_MAX_BYTES)
    return body[: m.start()] if m else body[:HEAD_MAX_BYTES]


def declared_canonical(body: bytes, charset: str | None, base_url: str) -> str | None:
    """The page's ``<link rel=canonical href>`` (else ``og:url``) as an absolute URL, or None."""
    head = _head(body)
    if not head.strip():
        return None
    try:
        parser = etree.HTMLParser(encoding=charset, recover=True, no_network=True)
        root = etree.fromstring(head, parser)
    except (etree.LxmlError, LookupError, ValueError):
        return None
    if root is None:
        return None
    for found in (_CANONICAL(root), _OG_URL(root)):
        for value in found:
            value = str(value).strip()
            if value:
                return urljoin(base_url, value)
    return None


def page_identity(body: bytes, charset: str | None, final_url: str) -> tuple[str, str]:
    """(canonical URL of the article, its source: ``page`` or ``fetched``) for a fetched HTML page."""
    return pick_canonical(declared_canonical(body, charset, final_url), final_url)

"""OPML import and export of feed definitions (OPML 1.0/2.0: ``<outline xmlUrl=...>``, nested categories)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime

from ingest.state import FeedDefinition
from ingest.store import definition_for


def parse_opml(data: bytes) -> list[FeedDefinition]:
    """Definitions for every outline with an ``xmlUrl``; the enclosing outline's text is the category."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"not an OPML document: {exc}") from exc
    body = root.find("body")
    if root.tag.lower() != "opml" or body is None:
        raise ValueError("not an OPML document: no <opml><body>")
    out: list[FeedDefinition] = []
    seen: set[str] = set()

    def walk(node: ET.Element, category: str | None) -> None:
        for child in node.findall("outline"):
            url = (child.get("xmlUrl") or child.get("xmlurl") or "").strip()
            label = child.get("title") or child.get("text")
            if url:
                try:
                    d = definition_for(url, title=label, category=category)
                except ValueError:
                    continue  # not http(s): an OPML of podcasts may hold other schemes
                if d.id not in seen:
                    seen.add(d.id)
                    out.append(d)
            walk(child, label if not url else category)

    walk(body, None)
    return out


def to_opml(defs: Iterable[FeedDefinition], title: str = "Newsflow feeds") -> str:
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC), usegmt=True)
    body = ET.SubElement(root, "body")
    groups: dict[str | None, ET.Element] = {None: body}
    for d in sorted(defs, key=lambda d: ((d.category or ""), d.url)):
        parent = groups.get(d.category)
        if parent is None:
            parent = groups[d.category] = ET.SubElement(body, "outline", text=d.category, title=d.category)
        label = d.title or d.url
        ET.SubElement(parent, "outline", type="rss", text=label, title=label, xmlUrl=d.url)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

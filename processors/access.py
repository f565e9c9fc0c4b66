"""Is the article free to read? ``free``, ``paywalled`` or ``unknown``, with the evidence. Pure.

Two steps:

1. ``read_signals(tree)`` on the untouched tree (beside ``read_meta``): what the page declares, and
   (lazily: only a truncated text without any declaration needs them) its paywall markers, so the
   tree must stay untouched until step 2 (trafilatura extracts from a copy of it);
2. ``decide_access(signals, text)`` once the main text is known.

Evidence, strongest first; ``decide_access`` returns the value and its source (``provenance.fields.access``):

==========================  =========================================================================
source                      rule
==========================  =========================================================================
``jsonld:hasPart``          a JSON-LD ``hasPart`` (a section of the article, usually with a
                            ``cssSelector``) declares ``isAccessibleForFree`` false -> paywalled
``jsonld``                  a JSON-LD node (``@graph`` arrays included) declares
                            ``isAccessibleForFree``: false -> paywalled, true -> free
``microdata``               ``itemprop="isAccessibleForFree"`` (``content`` or text), same values
``swg``                     Google's Subscribe with Google / Reader Revenue Manager script
                            (``basicSubscriptions.init({... isAccessibleForFree: ...})``), same values
``meta:content_tier``       ``<meta name|property="article:content_tier">`` (also spelled
                            ``og:article:content_tier``, ``article_content_tier``,
                            ``article:content-tier``): ``locked``/``metered`` -> paywalled,
                            ``free`` -> free
``text:truncated+markup``   no declaration, and the main text is short (under ``TRUNCATED_WORDS``
                            words) and ends abruptly (mid-sentence or on an ellipsis) while the
                            markup has paywall elements (in the body, not scripts: class or id with
                            ``paywall``, ``paid-barrier``, ``regwall``, ``premium-content``,
                            ``subscriber(s)-only``, but not ``no-paywall``) -> paywalled
``none``                    nothing of the above -> unknown
==========================  =========================================================================

Any declaration that the article is not free wins over one that it is (a page that says both is
at least partly paywalled). Booleans may be JSON ``true``/``false``, strings ``"True"``/``"false"``
or ``https://schema.org/False``; the key is matched without regard to case. A publisher's declaration
is its intent, not proof: a "free" article may still sit behind a cookie or registration wall, and
a "locked" one may be readable in full. Markup markers alone prove nothing (most news sites load a
paywall script on every page), which is why they count only together with a truncated text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from lxml.etree import XPath
from lxml.html import HtmlElement

from newsflow.schema import Access
from processors.jsonld import LdBlock, ld_blocks

TRUNCATED_WORDS = 250

_TIER_NAME = re.compile(r"^(?:og:)?article[:_]content[-_]tier$", re.IGNORECASE)
_TIERS: dict[str, bool] = {"free": True, "locked": False, "metered": False}
_FREE_KEY = "isaccessibleforfree"
_LD_VALUE = re.compile(r'"isAccessibleForFree"\s*:\s*("[^"]{1,40}"|true|false)', re.IGNORECASE)
_SWG_VALUE = re.compile(r'\bisAccessibleForFree\b"?\s*:\s*("[^"]{1,40}"|\'[^\']{1,40}\'|true|false)', re.IGNORECASE)
_MARKER = re.compile(r"pay-?wall|paid-?barrier|reg-?wall|premium-content|subscribers?-only", re.IGNORECASE)
_META = XPath("//meta[@name or @property]")
_MICRODATA = XPath("//*[@itemprop and translate(@itemprop, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
                   "='isaccessibleforfree']")
_NEGATED = re.compile(r"(?:^|[-_])(?:no|non|not|without)[-_]?(?:pay|reg|premium|subscri)", re.IGNORECASE)
# Visible elements only: a paywall vendor's <script id="paywall-js"> is on every page, free or not.
# (``descendant::`` rather than ``//body//*``: the same elements, at half the cost in libxml2.)
_CLASSED = XPath("descendant-or-self::body/descendant::*[(@class or @id)"
                 " and not(self::script or self::style or self::link or self::noscript)]")
_ABRUPT_END = re.compile(r"(?:[\w,;:(\-–—]|…|\.\.\.)\s*$")


@dataclass(frozen=True)
class Signals:
    """What the page's markup says about access, before extraction."""

    declared: tuple[tuple[str, bool], ...] = ()  # (source, is free), strongest source first
    markers: Callable[[], tuple[str, ...]] = tuple  # paywall class/id names (a few), read when asked


def as_bool(value: Any) -> bool | None:
    """``true``/``"True"``/``"https://schema.org/False"`` -> bool; anything else -> None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().rsplit("/", 1)[-1].casefold()
        return {"true": True, "false": False}.get(word)
    return None


def _walk_ld(node: Any, in_part: bool = False) -> Iterator[tuple[bool, bool]]:
    """(in a hasPart, is free) for every ``isAccessibleForFree`` in a JSON-LD document."""
    if isinstance(node, list):
        for item in node:
            yield from _walk_ld(item, in_part)
    elif isinstance(node, dict):
        for key, value in node.items():
            k = key.casefold() if isinstance(key, str) else ""
            if k == _FREE_KEY and (free := as_bool(value)) is not None:
                yield in_part, free
            elif isinstance(value, (dict, list)):
                yield from _walk_ld(value, in_part or k == "haspart")


def script_declarations(tree: HtmlElement, blocks: list[LdBlock] | None = None) -> list[tuple[str, bool]]:
    """JSON-LD declarations (``blocks``: the page's ``ld_blocks``, when the caller has them already),
    and those of Google's Subscribe with Google script."""
    found: list[tuple[str, bool]] = []
    for block in ld_blocks(tree) if blocks is None else blocks:
        if block.parsed:
            pairs = list(_walk_ld(block.data))
        else:  # broken JSON-LD is common: read the declarations it holds anyway
            pairs = [(False, free) for v in _LD_VALUE.findall(block.text) if (free := as_bool(v.strip('"'))) is not None]
        found += [("jsonld:hasPart" if part else "jsonld", free) for part, free in pairs]
    for script in tree.iter("script"):
        if (script.text and "ld+json" not in (script.get("type") or "").casefold()
                and ("basicSubscriptions" in script.text or "SWG" in script.text)):
            found += [("swg", free) for v in _SWG_VALUE.findall(script.text)
                      if (free := as_bool(v.strip("'\""))) is not None]
    return found


def paywall_markers(tree: HtmlElement) -> tuple[str, ...]:
    """Up to five paywall class/id names of the page's visible elements, in document order."""
    markers: list[str] = []
    for el in _CLASSED(tree):
        names = f"{el.get('class') or ''} {el.get('id') or ''}"
        low = names.lower()
        if "wall" not in low and "barrier" not in low and "premium-content" not in low and "-only" not in low:
            continue  # every _MARKER match holds one of these: a cheap test before the regex
        for token in names.split():
            if _MARKER.search(token) and not _NEGATED.search(token) and token not in markers:
                markers.append(token)
        if len(markers) >= 5:
            break
    return tuple(markers)


def read_signals(tree: HtmlElement, blocks: list[LdBlock] | None = None) -> Signals:
    """Declarations of the untouched tree, and its paywall markers when asked (``Signals.markers``:
    the tree must not change meanwhile). Call before extraction."""
    declared = script_declarations(tree, blocks)
    for el in _MICRODATA(tree):
        if (free := as_bool(el.get("content") or el.text_content())) is not None:
            declared.append(("microdata", free))
    for el in _META(tree):
        name = el.get("property") or el.get("name") or ""
        if _TIER_NAME.match(name.strip()) and (tier := (el.get("content") or "").strip().casefold()) in _TIERS:
            declared.append(("meta:content_tier", _TIERS[tier]))
    order = ["jsonld:hasPart", "jsonld", "microdata", "swg", "meta:content_tier"]
    declared.sort(key=lambda d: order.index(d[0]))
    return Signals(tuple(declared), cache(lambda: paywall_markers(tree)))


def is_truncated(text: str) -> bool:
    """Short and ending mid-sentence or on an ellipsis: what a teaser cut off by a paywall looks like."""
    return len(text.split()) < TRUNCATED_WORDS and bool(_ABRUPT_END.search(text))


def decide_access(signals: Signals, text: str) -> tuple[Access, str]:
    """The access value and its source (module docstring)."""
    for source, free in signals.declared:
        if not free:
            return "paywalled", source
    if signals.declared:
        return "free", signals.declared[0][0]
    if is_truncated(text) and signals.markers():
        return "paywalled", "text:truncated+markup"
    return "unknown", "none"

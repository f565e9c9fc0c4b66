"""URL normalisation: one canonical form per article (and per feed), so one identity everywhere.

``canonical_url`` drops tracking parameters and the fragment, lowercases scheme and host, drops the
trailing dot of a fully qualified host and default ports, and gives an empty path a ``/``. It keeps the
order of the remaining query parameters (some sites route on it) and never touches the path's case.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "piwik_", "hsa_", "oly_", "ns_", "__twitter")
_TRACKING_KEYS = {
    "fbclid", "gclid", "dclid", "gclsrc", "msclkid", "yclid", "igshid", "mkt_tok", "_hsenc", "_hsmi",
    "ref_src", "cmpid", "ocid", "sr_share", "at_medium", "at_campaign", "ito", "spm", "_ga", "_gl",
    "guccounter", "smid", "wt.mc_id", "cmp", "xtor",
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
HTTP_SCHEMES = ("http", "https")


def is_tracking_param(key: str) -> bool:
    k = key.lower()
    return k.startswith(_TRACKING_PREFIXES) or k in _TRACKING_KEYS


def canonical_url(url: str) -> str:
    """Drop tracking parameters and the fragment, lowercase scheme and host, drop default ports."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: keep the URL's own spelling of it
        port = None
        host = parts.netloc.rpartition("@")[2].lower()
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_tracking_param(k)]
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, urlencode(query, doseq=True), ""))


def feed_id(url: str) -> str:
    """Stable key of a feed in the feeds and feed-state topics: hash of the canonical URL it was added with.

    It never changes when a permanent redirect moves the feed: the definition's ``url`` changes instead.
    """
    return hashlib.sha256(canonical_url(url).encode("utf-8")).hexdigest()[:16]


def resolve(base: str, link: str | None) -> str | None:
    """An absolute http(s) URL for ``link`` relative to ``base``, or None for anything else."""
    if not link or not isinstance(link, str):
        return None
    absolute = urljoin(base, link.strip())
    parts = urlsplit(absolute)
    if parts.scheme.lower() not in HTTP_SCHEMES or not parts.hostname:
        return None
    return absolute


def host_of(url: str) -> str:
    """Lower-case host (no port): the key of the per-host limiter and the robots.txt cache."""
    return (urlsplit(url).hostname or "").lower().rstrip(".")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), "", "", ""))


def check_http_url(url: str) -> str:
    """The URL stripped, or ValueError when it is not an absolute http(s) URL with a host."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in HTTP_SCHEMES or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    return url

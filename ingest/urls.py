"""URL normalisation and identity: one canonical form per article (and per feed), one id everywhere.

``canonical_url`` drops tracking parameters and the fragment, lowercases scheme and host, drops the
trailing dot of a fully qualified host and default ports, and gives an empty path a ``/``. It keeps the
order of the remaining query parameters (some sites route on it) and never touches the path's case.
It is still a URL people open: scheme and host stay as the site spells them.

``identity_key`` is what an article id hashes (``newsflow.schema.article_id``): the canonical URL
without the spellings that never name another page on a news site: ``http``/``https``, a leading
``www.``/``m.``/``amp.``/``mobile.`` on the host, and a trailing ``/`` on the path.

``page_canonical`` is the rule that picks the URL an article is known by, from the page itself: its
``<link rel=canonical>`` (else ``og:url``) when it is http(s), on the same site and not the site's
home page; else the URL the page was fetched from (after redirects).
"""

from __future__ import annotations

import hashlib
import re
import string
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "piwik_", "hsa_", "oly_", "ns_", "__twitter")
_TRACKING_KEYS = {
    "fbclid", "gclid", "dclid", "gclsrc", "msclkid", "yclid", "igshid", "mkt_tok", "_hsenc", "_hsmi",
    "ref_src", "cmpid", "ocid", "sr_share", "at_medium", "at_campaign", "ito", "spm", "_ga", "_gl",
    "guccounter", "smid", "wt.mc_id", "cmp", "xtor",
    # feed and section tags that publishers append to the links of their feeds (?ref=rss, ?iref=...)
    "ref", "iref",
}
_SITE_PREFIXES = ("www.", "m.", "amp.", "mobile.")
_DEFAULT_PORTS = {"http": 80, "https": 443}
HTTP_SCHEMES = ("http", "https")


def is_tracking_param(key: str) -> bool:
    k = key.lower()
    return k.startswith(_TRACKING_PREFIXES) or k in _TRACKING_KEYS


def _canonical_parts(url: str) -> tuple[str, str, str, str]:
    """(scheme, netloc, path, query) of ``canonical_url``, for ``identity_key`` to use without a second parse."""
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
    query = ""
    if parts.query:
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                           if not is_tracking_param(k)], doseq=True)
    return scheme, netloc, parts.path or "/", query


def canonical_url(url: str) -> str:
    """Drop tracking parameters and the fragment, lowercase scheme and host, drop default ports."""
    return urlunsplit((*_canonical_parts(url), ""))


def bare_host(host: str) -> str:
    """``www.example.com``, ``m.example.com``, ``amp.example.com`` -> ``example.com`` (lower case)."""
    host = host.lower().rstrip(".")
    for prefix in _SITE_PREFIXES:
        if host.startswith(prefix) and host.count(".") > 1:
            return host[len(prefix):]
    return host


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _one_escaping(part: str) -> str:
    """Percent-escapes spelled one way: non-ASCII as UTF-8 escapes, hex in upper case, and unreserved
    characters (RFC 3986) never escaped; so ``/wiadomości``, ``/wiadomo%c5%9bci`` and ``/wiadomo%C5%9Bci``
    are one path."""
    part = _ESCAPE.sub(lambda m: c if (c := chr(int(m.group(1), 16))) in _UNRESERVED else m.group(0).upper(), part)
    return quote(part, safe="!#$%&'()*+,/:;=?@[]")


def identity_key(url: str) -> str:
    """The form of a URL an article id hashes: ``//host[:port]/path[?query]`` of its canonical URL, with
    the host's ``www.``/``m.``/``amp.``/``mobile.`` prefix and a trailing ``/`` dropped and one spelling of
    percent-escapes. ``http://`` and ``https://`` spellings, mobile hosts, trailing-slash variants and
    differently escaped links of a page get one id."""
    scheme, netloc, path, query = _canonical_parts(url)
    if scheme not in HTTP_SCHEMES:  # file:// (plain-text input) and the like: the URL itself
        return urlunsplit(urlsplit(urlunsplit((scheme, netloc, path, query, ""))))
    netloc = netloc.rpartition("@")[2]
    if not path.startswith("/"):  # no host ("https:\\/\\/..."): the leading "/" a URL's path gets
        path = f"/{path}"
    host, sep, port = netloc.rpartition(":") if not netloc.endswith("]") and ":" in netloc else (netloc, "", "")
    path = _one_escaping(path).rstrip("/") or "/"
    query = f"?{_one_escaping(query)}" if query else ""
    return f"//{bare_host(host)}{sep}{port}{path}{query}"


def same_site(a: str, b: str) -> bool:
    """Both URLs on one host, ignoring ``www.``/``m.``/``amp.``/``mobile.``."""
    ha, hb = urlsplit(a).hostname, urlsplit(b).hostname
    return bool(ha) and bare_host(ha or "") == bare_host(hb or "")


def pick_canonical(declared: str | None, fetched: str) -> tuple[str, str]:
    """(URL the article is known by, where it came from): the page's declared canonical (``page``) when it
    is an absolute http(s) URL on the same site as ``fetched`` and not the site's home page (a common
    template mistake); else ``fetched`` (``fetched``). Both normalised with ``canonical_url``."""
    fallback = canonical_url(fetched)
    if not declared:
        return fallback, "fetched"
    try:
        parts = urlsplit(declared.strip())
        if parts.scheme.lower() not in HTTP_SCHEMES or not same_site(declared.strip(), fallback):
            return fallback, "fetched"
    except ValueError:  # an unparsable URL (bad IPv6 literal, bad port)
        return fallback, "fetched"
    if parts.path in ("", "/") and not parts.query:
        return fallback, "fetched"
    return canonical_url(declared), "page"


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

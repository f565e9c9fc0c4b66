"""robots.txt rules (RFC 9309), table-driven, through RobotsCache with a stub fetch (no network).

Each row: robots.txt text, a path on https://example.com, and whether our agent may fetch it. The
``DEVIATIONS`` table lists where Protego departs from RFC 9309; those rows state what the RFC says and
are strict xfails, so an upgrade that fixes one fails here and the row can move to ``RULES``.
"""

from __future__ import annotations

import asyncio

import pytest

from ingest.robots import ROBOTS_MAX_BYTES, ROBOTS_TTL_S, UNREACHABLE_TTL_S, RobotsCache, Verdict

UA = "Newsflow/0.1 (+https://github.com/newsflow/newsflow)"
SITE = "https://example.com"
ALLOWED, DISALLOWED, UNREACHABLE = Verdict.ALLOWED, Verdict.DISALLOWED, Verdict.UNREACHABLE


class StubFetch:
    """Answers every robots.txt request with the same status and body, and counts them."""

    def __init__(self, status: int = 200, body: str | bytes = b""):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.urls: list[str] = []

    async def __call__(self, url: str) -> tuple[int, bytes]:
        self.urls.append(url)
        await asyncio.sleep(0)
        return self.status, self.body


def verdicts(robots: str | bytes, *paths: str, status: int = 200) -> list[Verdict]:
    cache = RobotsCache(StubFetch(status, robots), UA)

    async def main():
        return [await cache.verdict(SITE + p) for p in paths]
    return asyncio.run(main())


def star(*rules: str) -> str:
    return "User-agent: *\n" + "".join(r + "\n" for r in rules)


# --- rules --------------------------------------------------------------------------------------------------
RULES = [
    # the two cases
    (star("Disallow: /r/", "Allow: /r/public/"), "/r/public/1.html", ALLOWED),
    (star("Disallow: /r/", "Allow: /r/public/"), "/r/private/1.html", DISALLOWED),
    (star("Disallow: /*?print="), "/a/9.html?print=1", DISALLOWED),
    (star("Disallow: /*?print="), "/a/9.html", ALLOWED),
    # the longest match wins, whatever the order of the rules
    (star("Allow: /r/public/", "Disallow: /r/"), "/r/public/1.html", ALLOWED),
    (star("Allow: /r/", "Disallow: /r/secret/"), "/r/secret/1.html", DISALLOWED),
    (star("Disallow: /r/secret/", "Allow: /r/"), "/r/secret/1.html", DISALLOWED),
    (star("Allow: /*.html", "Disallow: /a/"), "/a/b.html", ALLOWED),  # length of the pattern, * included
    # Allow and Disallow of equal length: Allow wins (RFC 9309 2.2.2)
    (star("Allow: /page", "Disallow: /page"), "/page", ALLOWED),
    (star("Disallow: /page", "Allow: /page"), "/page", ALLOWED),
    (star("Disallow: /a/", "Allow: /a*"), "/a/x", ALLOWED),
    (star("Disallow: /%7Ejoe/", "Allow: /~joe/"), "/~joe/x", ALLOWED),  # equal once normalised
    # * matches any run of characters, including none and including "/"
    (star("Disallow: /fish*.php"), "/fishheads/catfish.php?parameters", DISALLOWED),
    (star("Disallow: /fish*.php"), "/fish.php", DISALLOWED),
    (star("Disallow: /fish*.php"), "/Fish.PHP", ALLOWED),  # paths are case-sensitive
    (star("Disallow: /*/private/"), "/a/b/private/c", DISALLOWED),
    (star("Disallow: /*/private/"), "/private/c", ALLOWED),
    (star("Disallow: /*"), "/anything", DISALLOWED),
    (star("Disallow: /a**b"), "/axxb", DISALLOWED),
    # a final $ anchors the end of the path (query included)
    (star("Disallow: /*.php$"), "/a/b.php", DISALLOWED),
    (star("Disallow: /*.php$"), "/a/b.php?x=1", ALLOWED),
    (star("Disallow: /*.php$"), "/a/b.php5", ALLOWED),
    (star("Disallow: /a$"), "/a", DISALLOWED),
    (star("Disallow: /a$"), "/ab", ALLOWED),
    (star("Disallow: /", "Allow: /$"), "/", ALLOWED),
    (star("Disallow: /", "Allow: /$"), "/a", DISALLOWED),
    # percent-encoding: unreserved characters and non-ASCII compare equal encoded or not
    (star("Disallow: /%7Ejoe/"), "/~joe/index.html", DISALLOWED),
    (star("Disallow: /~joe/"), "/%7Ejoe/index.html", DISALLOWED),
    (star("Disallow: /~joe/"), "/%7ejoe/index.html", DISALLOWED),  # lower-case hex digits
    (star("Disallow: /foo/bar/%62%61%7A"), "/foo/bar/baz", DISALLOWED),  # RFC 9309 2.2.2 table
    (star("Disallow: /foo/bar/\u30c4"), "/foo/bar/%E3%83%84", DISALLOWED),  # RFC table: U+30C4
    (star("Disallow: /foo/bar/%E3%83%84"), "/foo/bar/\u30c4", DISALLOWED),
    (star("Disallow: /caf\u00e9/"), "/caf%C3%A9/1", DISALLOWED),
    (star("Disallow: /caf%C3%A9/"), "/caf\u00e9/1", DISALLOWED),
    (star("Disallow: /caf%c3%a9/"), "/caf%C3%A9/1", DISALLOWED),
    (star("Disallow: /caf%C3%A9/"), "/cafe/1", ALLOWED),
    (star("Disallow: /a%2Fb"), "/a/b", ALLOWED),  # an encoded "/" is reserved: not the same path
    (star("Disallow: /a?b"), "/a%3Fb", DISALLOWED),
    # the rest of the syntax
    (star("Disallow:"), "/a", ALLOWED),  # an empty Disallow disallows nothing
    (star("Disallow: /x # not /y"), "/x/1", DISALLOWED),
    (star("Disallow: /x # not /y"), "/y", ALLOWED),
    (star("disallow: /x"), "/x", DISALLOWED),  # directive names are case-insensitive
    ("User-agent: *\r\nDisallow: /x\r\n", "/x", DISALLOWED),
    ("User-agent: *\rDisallow: /x\r", "/x", DISALLOWED),
    ("Disallow: /x\nUser-agent: *\nAllow: /y\n", "/x", ALLOWED),  # a rule before any group is ignored
    (star("Disallow: /"), "/robots.txt", ALLOWED),  # implicitly allowed (RFC 9309 2.2.2)
    ("", "/a", ALLOWED),
]


@pytest.mark.parametrize("robots, path, expected", RULES)
def test_rules(robots, path, expected):
    assert verdicts(robots, path) == [expected]


# --- which group applies to us ------------------------------------------------------------------------------
AGENTS = [
    ("User-agent: Newsflow\nDisallow: /\n", DISALLOWED),
    ("User-agent: newsflow\nDisallow: /\n", DISALLOWED),  # case-insensitive
    ("User-agent: NEWSFLOW\nDisallow: /\n", DISALLOWED),
    ("User-agent: OtherBot\nDisallow: /\n", ALLOWED),
    ("User-agent: NewsflowBot\nDisallow: /\n", ALLOWED),  # a longer token is another crawler
    ("User-agent: OtherBot\nUser-agent: Newsflow\nDisallow: /\n", DISALLOWED),  # one group, two agents
    ("User-agent: OtherBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n", ALLOWED),  # falls back to *
    ("User-agent: *\nDisallow: /\n\nUser-agent: Newsflow\nAllow: /\n", ALLOWED),  # ours beats *
    # only one group applies: ours does not inherit the * rules
    ("User-agent: Newsflow\nDisallow: /a\n\nUser-agent: *\nDisallow: /\n", ALLOWED),
    # groups naming the same agent are merged
    ("User-agent: Newsflow\nDisallow: /a\n\nUser-agent: *\nDisallow: /\n\nUser-agent: newsflow\nDisallow: /\n",
     DISALLOWED),
    # "Newsflow/1.0" is not a product token (RFC 9309 2.2.1 allows letters, "_" and "-"), so the RFC says
    # nothing about it. Protego does not match it (Google's parser would, cutting at the "/").
    ("User-agent: Newsflow/1.0\nDisallow: /\n", ALLOWED),
]


@pytest.mark.parametrize("robots, expected", AGENTS)
def test_the_group_of_our_product_token_applies_else_the_star_group(robots, expected):
    assert verdicts(robots, "/b") == [expected]


# --- where Protego 0.7.0 departs from RFC 9309 --------------------------------------------------------------
def deviation(robots: str, path: str, rfc: Verdict, why: str):
    return pytest.param(robots, path, rfc, marks=pytest.mark.xfail(strict=True, reason=why))


DEVIATIONS = [
    # Protego matches a group's token anywhere it starts a word of the agent, with no check of where it
    # ends, so "News" is taken as our group. (urllib.robotparser did the same.) The RFC uses the * group.
    deviation("User-agent: News\nDisallow: /\n", "/b", ALLOWED, "group token matched as a prefix"),
    # Protego extension: "Allow: /index.html" also allows "/".
    deviation(star("Disallow: /", "Allow: /index.html"), "/", DISALLOWED, "index.html allows /"),
    # Protego adds a second rule reading "$" as a literal character, so "/a$" also refuses "/a$b".
    deviation(star("Disallow: /a$"), "/a$b", ALLOWED, "a $ rule also matches a literal $"),
    # RFC 9309 2.2.2 table, second row: "/" in the query of a rule stands for "%2F" in the URL; Protego
    # keeps "%2F" distinct from "/" everywhere.
    deviation(star("Disallow: /foo/bar?baz=https://foo.bar"), "/foo/bar?baz=https%3A%2F%2Ffoo.bar",
              DISALLOWED, "%2F in the query is not the / of the rule"),
]


@pytest.mark.parametrize("robots, path, rfc", DEVIATIONS)
def test_where_protego_departs_from_rfc_9309(robots, path, rfc):
    assert verdicts(robots, path) == [rfc]


# --- the response, the body ---------------------------------------------------------------------------------
@pytest.mark.parametrize("status, expected", [
    (200, DISALLOWED),
    (204, DISALLOWED),  # any 2xx: its rules apply (the stub serves the same body)
    (401, ALLOWED), (403, ALLOWED), (404, ALLOWED), (410, ALLOWED),  # RFC 9309 2.3.1.3: 4xx allows all
    (500, UNREACHABLE), (503, UNREACHABLE),  # RFC 9309 2.3.1.4: 5xx, assume a complete disallow
    (0, UNREACHABLE),  # network error, timeout
])
def test_status_of_the_robots_txt_response(status, expected):
    assert verdicts(star("Disallow: /"), "/a", status=status) == [expected]


@pytest.mark.parametrize("body, path, expected", [
    (b"\xef\xbb\xbfUser-agent: *\nDisallow: /x\n", "/x", DISALLOWED),  # a UTF-8 BOM is skipped
    # invalid UTF-8 is replaced, the rest of the file still applies
    (b"User-agent: *\nDisallow: /caf\xe9/\nDisallow: /private/\n", "/private/1", DISALLOWED),
    (b"User-agent: *\nDisallow: /caf\xe9/\nDisallow: /private/\n", "/cafe/1", ALLOWED),
    (b"User-agent: *\nDisallow: /\xff\xfe\nAllow: /\n", "/a", ALLOWED),
])
def test_the_body_is_read_as_utf8(body, path, expected):
    assert verdicts(body, path) == [expected]


def test_only_the_first_max_bytes_are_read_and_never_half_a_line():
    rules = star("Disallow: /", "Disallow: /early/") + "# "
    head = rules + "x" * (ROBOTS_MAX_BYTES - len("Allow: /") - len(rules) - 1) + "\n"
    # the cap falls right after "Allow: /": read as a rule, that half line would allow everything
    body = (head + "Allow: /early/only-this\nAllow: /late/\n").encode()
    assert body[:ROBOTS_MAX_BYTES].endswith(b"\nAllow: /")
    assert verdicts(body, "/early/1", "/late/1", "/other") == [DISALLOWED] * 3


# --- crawl-delay --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("robots, status, delays", [
    ("User-agent: Newsflow\nCrawl-delay: 2.5\n\nUser-agent: *\nCrawl-delay: 9\n", 200, [("example.com", 2.5)]),
    ("User-agent: *\nCrawl-delay: 3\n", 200, [("example.com", 3.0)]),
    ("User-agent: OtherBot\nCrawl-delay: 30\n", 200, []),
    ("User-agent: Newsflow\nDisallow: /x\n\nUser-agent: *\nCrawl-delay: 3\n", 200, []),  # one group applies
    ("User-agent: *\nCrawl-delay: soon\n", 200, []),
    ("User-agent: *\nCrawl-delay: -1\n", 200, []),
    ("User-agent: *\nCrawl-delay: 0\n", 200, []),
    ("User-agent: *\nCrawl-delay: 3\n", 404, []),
])
def test_crawl_delay_for_our_agent_reaches_the_limiter(robots, status, delays):
    seen: list[tuple[str, float]] = []
    cache = RobotsCache(StubFetch(status, robots), UA, on_crawl_delay=lambda host, s: seen.append((host, s)))
    asyncio.run(cache.verdict("https://EXAMPLE.com/a"))
    assert seen == delays


# --- the cache ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status, ttl", [(200, ROBOTS_TTL_S), (404, ROBOTS_TTL_S), (503, UNREACHABLE_TTL_S)])
def test_one_fetch_per_origin_until_the_entry_expires(status, ttl):
    now = [1000.0]
    fetch = StubFetch(status, star("Disallow: /x"))
    cache = RobotsCache(fetch, UA, clock=lambda: now[0])

    async def main():
        await asyncio.gather(*(cache.verdict(f"{SITE}/{i}") for i in range(5)))
        await cache.verdict("https://other.example/a")
        now[0] += ttl - 1
        await cache.verdict(SITE + "/a")
        n = len(fetch.urls)
        now[0] += 1
        await cache.verdict(SITE + "/a")
        return n
    assert asyncio.run(main()) == 2
    assert fetch.urls == [SITE + "/robots.txt", "https://other.example/robots.txt", SITE + "/robots.txt"]

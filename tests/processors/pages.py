"""HTML pages for the processor tests, built at test time (the seed text stays in ../shared)."""

from __future__ import annotations

import html

from processors.article import split_date_line
from tests.conftest import SEED

SEED_TITLE = "US says Russia keeps building up forces near Ukraine despite diplomacy"
SITE = "The Fixture Times"


def seed_paragraphs() -> list[str]:
    _date, body = split_date_line(SEED.read_text(encoding="utf-8"))
    return [p.strip() for p in body.split("\n") if p.strip()]


def seed_html(*, title: str = f"{SEED_TITLE} | {SITE}", author: str | None = None,
              published: str | None = "2022-02-09T19:30:00+00:00") -> bytes:
    meta = [f'<meta property="og:site_name" content="{SITE}">']
    if author:
        meta.append(f'<meta name="author" content="{html.escape(author)}">')
    if published:
        meta.append(f'<meta property="article:published_time" content="{published}">')
    paras = "\n".join(f"<p>{html.escape(p, quote=False)}</p>" for p in seed_paragraphs())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>{''.join(meta)}</head>
<body>
<header><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/politics">Politics</a></nav></header>
<main><article>
<h1>{html.escape(SEED_TITLE)}</h1>
{paras}
</article>
<aside><h2>Newsletter</h2><p>Subscribe to our newsletter for the morning briefing.</p></aside>
</main>
<footer><p>© 2022 {SITE}. All rights reserved.</p></footer>
</body></html>""".encode()


def slow_html(divs: int = 30_000) -> bytes:
    """A legal page that takes trafilatura several CPU seconds (2.4 MB of link-heavy divs)."""
    cells = "".join(f"<div class='c{i}'><a href='/{i}'>link {i}</a> text {i} more words here</div>" for i in range(divs))
    return f"<html><body>{cells}</body></html>".encode()

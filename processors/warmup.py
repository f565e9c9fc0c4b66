"""One-off costs paid in the extraction pool's fork server, before any worker is forked.

``processors/pool.py`` preloads this module in its fork server (``set_forkserver_preload``), so
every worker forked from it — and every replacement after a timeout, a crash or recycling —
starts warm instead of paying again:

* htmldate hands free-text dates to dateparser, which compiles the regular expressions of its
  ~700 locales on first use (1.5-3 s of CPU): a date string that no locale knows makes it compile
  them all.
"""

from __future__ import annotations

from htmldate.extractors import get_external_parser


def warm() -> None:
    parser = get_external_parser()
    for sample in ("12 qwertzuiop 2019", "3 March 2019", "3. März 2019", "3 mars 2019", "3 marca 2019"):
        parser.get_date_data(sample)


warm()

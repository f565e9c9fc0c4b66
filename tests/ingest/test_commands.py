"""``newsflow poll`` and ``newsflow feeds ...`` through the real CLI entry point, on the real Kafka."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ingest.opml import parse_opml, to_opml
from ingest.poller import Poller
from newsflow.cli import main
from tests.support import hostile
from tests.support.feeds import news_sitemap, rss, sitemap_index

pytestmark = pytest.mark.integration

ENV_FIELDS = ("kafka_bootstrap", "es_url", "topic_raw", "topic_enriched", "topic_dlq", "topic_feeds",
              "topic_feed_state", "group_prefix", "es_index", "instance_id", "topic_partitions",
              "allow_private_addresses", "respect_robots", "metrics_port", "feeds_file")


@pytest.fixture
def cli(make_settings, monkeypatch, capsys, tmp_path):
    settings = make_settings(feeds_file=tmp_path / "none.yaml")
    # the CLI would point the process's logging at this test's captured stderr, closed after the test
    monkeypatch.setattr("newsflow.logs.configure_logging", lambda _settings: None)
    for name in ENV_FIELDS:
        monkeypatch.setenv(f"NEWSFLOW_{name.upper()}", str(getattr(settings, name)))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    run.settings = settings
    return run


def listed(cli) -> list[str]:
    code, out, _ = cli("feeds", "list", "--json")
    assert code == 0
    return sorted(json.loads(line)["url"] for line in out.splitlines())


def test_add_list_remove(cli):
    assert cli("feeds", "add", "https://news.example/rss.xml", "--title", "News")[1].startswith("added ")
    assert cli("feeds", "add", "https://NEWS.example/rss.xml?utm_source=x")[1].startswith("already present")
    assert listed(cli) == ["https://news.example/rss.xml"]
    code, _, err = cli("feeds", "add", "ftp://news.example/rss.xml")
    assert code == 2 and "http" in err
    assert cli("feeds", "remove", "https://news.example/rss.xml")[0] == 0
    assert listed(cli) == []
    assert cli("feeds", "remove", "https://news.example/rss.xml")[0] == 1


def test_opml_import_and_export_round_trip(cli, tmp_path):
    opml = tmp_path / "in.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head><title>x</title></head><body>'
        '<outline text="World"><outline text="A" xmlUrl="https://a.example/rss"/>'
        '<outline text="B" title="B feed" xmlUrl="https://b.example/atom"/></outline>'
        '<outline text="C" xmlUrl="https://c.example/feed"/>'
        '<outline text="dup" xmlUrl="https://a.example/rss"/>'
        '<outline text="pod" xmlUrl="itpc://pod.example/x"/></body></opml>')
    code, out, _ = cli("feeds", "import", str(opml))
    assert code == 0 and "3 feeds: 3 added" in out
    assert cli("feeds", "import", str(opml))[1].endswith("0 added, 0 reactivated, 3 already present\n")
    exported = tmp_path / "out.opml"
    assert cli("feeds", "export", "-o", str(exported))[0] == 0
    back = {d.url: (d.title, d.category) for d in parse_opml(exported.read_bytes())}
    assert back == {"https://a.example/rss": ("A", "World"), "https://b.example/atom": ("B feed", "World"),
                    "https://c.example/feed": ("C", None)}
    code, out, _ = cli("feeds", "export")
    assert code == 0 and len(parse_opml(out.encode())) == 3
    code, _, err = cli("feeds", "import", str(tmp_path / "missing.opml"))
    assert code == 2 and "missing.opml" in err


def test_status_json_reports_every_feed_after_a_poll_of_hostile_servers(cli, site):
    site.add("/a", hostile.page_html("A", "a"))
    site.add("/ok.xml", rss("OK", [{"link": site.url("/a"), "guid": "a", "title": "a"}]),
             content_type="application/rss+xml")
    site.add("/gone.xml", handler=hostile.status(410))
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    site.add("/busy.xml", handler=hostile.retry_after(503, hostile.http_date(later)))
    site.add("/missing.xml", handler=hostile.status(404))
    site.add("/drip.xml", handler=hostile.endless_body())
    for path in ("/ok.xml", "/gone.xml", "/busy.xml", "/missing.xml", "/drip.xml"):
        assert cli("feeds", "add", site.url(path))[0] == 0
    Poller(cli.settings.model_copy(update={"max_feed_bytes": 256 * 1024})).run(once=True)

    code, out, _ = cli("feeds", "status", "--json")
    assert code == 0
    report = json.loads(out)
    rows = {r["url"].rsplit("/", 1)[1]: r for r in report["feeds"]}
    assert report["summary"] == {"feeds": 5, "active": 1, "backing-off": 3, "retired": 1}
    for row in rows.values():
        assert {"url", "state", "last_success", "last_new_entry", "next_check", "consecutive_errors",
                "last_error_class", "last_error"} <= set(row)
    ok = rows["ok.xml"]
    assert (ok["state"], ok["consecutive_errors"], ok["last_error_class"]) == ("active", 0, None)
    assert ok["last_success"] and ok["last_new_entry"] and ok["next_check"]
    gone = rows["gone.xml"]
    assert (gone["state"], gone["last_error_class"], gone["next_check"]) == ("retired", "gone", None)
    assert "410" in gone["last_error"]
    busy = rows["busy.xml"]
    assert (busy["state"], busy["last_error_class"], busy["next_check_reason"]) == (
        "backing-off", "unavailable", "retry-after")
    assert datetime.fromisoformat(busy["next_check"]) == later
    assert (rows["missing.xml"]["last_error_class"], rows["drip.xml"]["last_error_class"]) == ("not_found", "too_large")
    assert rows["missing.xml"]["consecutive_errors"] == 1 and rows["missing.xml"]["last_success"] is None

    code, out, _ = cli("feeds", "status")
    assert code == 0 and "1 active, 3 backing off, 1 retired" in out

    assert cli("feeds", "add", site.url("/gone.xml"))[1].startswith("reactivated")
    site.add("/gone.xml", rss("Back", []), content_type="application/rss+xml")
    Poller(cli.settings).run(once=True)
    rows = {r["url"].rsplit("/", 1)[1]: r for r in json.loads(cli("feeds", "status", "--json")[1])["feeds"]}
    assert rows["gone.xml"]["state"] == "active" and site.hits("/gone.xml") == 2


def test_discover_finds_feeds_with_trafilatura_and_adds_them(cli, site):
    site.add("/", '<html><head><link rel="alternate" type="application/rss+xml" href="/feed.xml">'
                  '<link rel="alternate" type="application/atom+xml" href="/atom.xml">'
                  '<link rel="alternate" type="application/rss+xml" href="/broken.xml"></head>'
                  "<body>home</body></html>")
    site.add("/feed.xml", rss("RSS one", []), content_type="application/rss+xml")
    site.add("/atom.xml", '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Atom one</title>'
             "</feed>", content_type="application/atom+xml")
    code, out, err = cli("feeds", "discover", site.url("/"), "--add")
    assert code == 0
    assert sorted(line.split("\t")[0] for line in out.splitlines()) == [site.url("/atom.xml"), site.url("/feed.xml")]
    assert "broken.xml" in err
    assert listed(cli) == [site.url("/atom.xml"), site.url("/feed.xml")]
    assert cli("feeds", "discover", site.url("/atom.xml"))[1].startswith(site.url("/atom.xml"))


def test_discover_finds_sitemaps_named_by_robots_txt_and_adds_them(cli, site):
    now = datetime.now(UTC)
    site.add("/", "<html><head><title>No feed links</title></head><body>home</body></html>")
    site.add("/robots.txt", "User-agent: *\nDisallow: /private/\n"
             f"Sitemap: {site.url('/news.xml.gz')}\nSitemap: /sitemap-index.xml\nSitemap: {site.url('/gone.xml')}\n",
             content_type="text/plain")
    site.add("/news.xml.gz", gzip.compress(news_sitemap([{"loc": site.url("/a"), "published": now},
                                                         {"loc": site.url("/b"), "published": now}])),
             content_type="application/x-gzip")
    site.add("/sitemap-index.xml", sitemap_index([site.url("/news.xml.gz")]), content_type="application/xml")
    code, out, err = cli("feeds", "discover", site.url("/"), "--add")
    assert code == 0, err
    lines = sorted(out.splitlines())
    assert lines == [f"{site.url('/news.xml.gz')}\tFixture News\t2 entries (sitemap)",
                     f"{site.url('/sitemap-index.xml')}\t\tsitemap index of 1 recent sitemaps"]
    assert "gone.xml: HTTP 404" in err
    assert listed(cli) == [site.url("/news.xml.gz"), site.url("/sitemap-index.xml")]


def test_poll_once_from_the_command_line(cli, site, tmp_path, monkeypatch):
    site.add("/a", hostile.page_html("A", "a"))
    site.add("/feed.xml", rss("S", [{"link": site.url("/a"), "guid": "a"}]), content_type="application/rss+xml")
    cli("feeds", "add", site.url("/feed.xml"))
    assert cli("poll", "--once")[0] == 0
    assert site.hits("/feed.xml") == 1 and site.hits("/a") == 1
    assert cli("poll", "--once")[0] == 0 and site.hits("/feed.xml") == 1  # not due
    assert cli("poll", "--once", "--force")[0] == 0 and site.hits("/feed.xml") == 2


def test_opml_export_is_valid_for_an_empty_list():
    assert parse_opml(to_opml([]).encode()) == []


def test_read_only_commands_create_no_topic(stack, monkeypatch, capsys, tmp_path):
    """`feeds list | status | export` and `status` on a river whose topics were never created: they answer
    (no feeds) and leave the broker as they found it. Their consumer also refuses broker-side auto-creation
    (a metadata request of a missing topic would otherwise create it where auto.create.topics.enable)."""
    from newsflow.kafka_io import make_admin, make_reader
    from newsflow.topology import namespaced, teardown

    s = namespaced(stack, f"t{uuid.uuid4().hex[:10]}", state_dir=tmp_path, feeds_file=tmp_path / "none.yaml")
    monkeypatch.setattr("newsflow.logs.configure_logging", lambda _settings: None)
    for name in ENV_FIELDS + ("state_dir",):
        monkeypatch.setenv(f"NEWSFLOW_{name.upper()}", str(getattr(s, name)))
    try:
        answers = {}
        for argv in (["feeds", "list"], ["feeds", "list", "--json"], ["feeds", "status", "--json"],
                     ["feeds", "export"], ["status", "--json"]):
            code = main(argv)
            answers[" ".join(argv)] = out, err = capsys.readouterr()
            assert code == 0, (argv, out, err)
        assert "no feeds: topic" in answers["feeds list"][1] and s.topic_feeds in answers["feeds list"][1]
        assert answers["feeds list --json"][0] == ""
        assert json.loads(answers["feeds status --json"][0])["feeds"] == []
        assert json.loads(answers["status --json"][0])["feeds"]["file"] == str(s.feeds_file)
        admin = make_admin(s)
        try:
            assert [t for t in admin.list_topics() if t.startswith(s.group_prefix)] == []
        finally:
            admin.close()
        reader = make_reader(s)  # the feed tables' and `status`'s consumer
        try:
            assert reader.config["allow_auto_create_topics"] is False
        finally:
            reader.close()
    finally:
        teardown(s)

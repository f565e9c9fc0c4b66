"""deploy/kibana/*.ndjson against the index mapping (Kibana itself cannot run on this machine).

Every field a saved object references must exist, with a type its use needs: the data view's time
field a date; a Lens bucket or metric an aggregatable field of the right data type, not inside a
nested object (Kibana cannot aggregate those); a saved search's sort field sortable. The same checks
run on the template's mapping (no services) and on Elasticsearch's own field capabilities of a
real index built from the template, which is what Kibana reads.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from newsflow.elastic import apply_template, ensure_index, load_template, make_es, swap_alias
from newsflow.schema import Article
from newsflow.settings import REPO_ROOT, Settings

KIBANA_DIR = REPO_ROOT / "deploy" / "kibana"
NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
LENS_TYPES = {"string": {"keyword"}, "date": {"date"}, "number": NUMERIC}
RECORDS = "___records___"


@dataclass(frozen=True)
class Field:
    type: str
    aggregatable: bool
    nested_path: str | None  # the enclosing nested object, if any


def fields_from_mapping(properties: dict[str, Any], prefix: str = "", nested: str | None = None) -> dict[str, Field]:
    out: dict[str, Field] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        ftype = spec.get("type", "object")
        agg = ftype not in ("text", "nested", "object") and spec.get("doc_values", True) is not False
        out[path] = Field(ftype, agg, nested)
        inner_nested = path if ftype == "nested" else nested
        out |= fields_from_mapping(spec.get("properties", {}), f"{path}.", inner_nested)
        for sub, subspec in spec.get("fields", {}).items():
            st = subspec["type"]
            out[f"{path}.{sub}"] = Field(st, st != "text" and subspec.get("doc_values", True) is not False, nested)
    return out


def fields_from_field_caps(caps: dict[str, Any]) -> dict[str, Field]:
    nested_paths = {p for p, types in caps.items() if "nested" in types}
    out = {}
    for path, types in caps.items():
        if path.startswith("_"):
            continue
        (ftype, info), = types.items()
        parent = next((n for n in nested_paths if path.startswith(f"{n}.")), None)
        out[path] = Field(ftype, bool(info.get("aggregatable")), parent)
    return out


def load_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(KIBANA_DIR.glob("*.ndjson")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                obj = json.loads(line)
                obj["_where"] = f"{path.name}:{n}"
                objects.append(obj)
    return objects


def kql_fields(query: str) -> list[str]:
    """Field names of a KQL query, nested syntax ``quotes:{ speaker : * }`` included."""
    query = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)  # values may contain colons
    pattern = re.compile(r"([A-Za-z_][\w.]*)\s*:\s*(\{)?")
    found: list[str] = []
    pos = 0
    while m := pattern.search(query, pos):
        found.append(m.group(1))
        pos = m.end()
        if m.group(2):  # nested: the names inside the braces are relative to it
            end = query.index("}", pos)
            found += [f"{m.group(1)}.{f}" for f in kql_fields(query[pos:end])]
            pos = end + 1
    return list(dict.fromkeys(found))


def problems(objects: list[dict[str, Any]], fields: dict[str, Field]) -> list[str]:
    """Every reason a saved object would not work on this mapping (empty = all good)."""
    out: list[str] = []
    by_id = {(o["type"], o["id"]): o for o in objects}

    def need(where: str, path: str, *, agg: bool = False, types: set[str] | None = None) -> None:
        f = fields.get(path)
        if f is None:
            out.append(f"{where}: field {path!r} is not in the mapping")
            return
        if types and f.type not in types:
            out.append(f"{where}: {path!r} is {f.type}, needs one of {sorted(types)}")
        if agg and not f.aggregatable:
            out.append(f"{where}: {path!r} ({f.type}) is not aggregatable")
        if agg and f.nested_path:
            out.append(f"{where}: {path!r} is inside nested {f.nested_path!r}: Kibana cannot aggregate it")

    for o in objects:
        where = f"{o['_where']} {o['type']} {o['id']}"
        for ref in o.get("references", []):
            if (ref["type"], ref["id"]) not in by_id:
                out.append(f"{where}: reference {ref['name']} -> {ref['type']} {ref['id']} not in the NDJSON")
        a = o["attributes"]
        if o["type"] == "index-pattern":
            need(where, a["timeFieldName"], agg=True, types={"date"})
        elif o["type"] == "search":
            source = json.loads(a["kibanaSavedObjectMeta"]["searchSourceJSON"])
            for path in a["columns"]:
                need(where, path)
            for path, _order in a["sort"]:
                need(where, path, agg=True)
            for path in kql_fields(source["query"]["query"]):
                need(where, path)
        elif o["type"] == "lens":
            for layer in a["state"]["datasourceStates"]["formBased"]["layers"].values():
                for col_id, col in layer["columns"].items():
                    path = col.get("sourceField")
                    if path == RECORDS:
                        if col["operationType"] != "count":
                            out.append(f"{where}: {col_id} uses {RECORDS} with {col['operationType']}")
                        continue
                    types = LENS_TYPES.get(col["dataType"])
                    if col["operationType"] == "date_histogram":
                        types = {"date"}
                    need(where, path, agg=True, types=types)
            query = a["state"]["query"]["query"]
            for path in kql_fields(query):
                need(where, path)
        elif o["type"] == "dashboard":
            names = {r["name"] for r in o["references"]}
            for panel in json.loads(a["panelsJSON"]):
                ref = f"{panel['panelIndex']}:{panel['panelRefName']}"
                if ref not in names:
                    out.append(f"{where}: panel {panel['panelIndex']} has no reference {ref}")
    return out


def test_the_ndjson_has_what_the_issue_asks_for():
    objects = load_objects()
    titles = {(o["type"], o["attributes"]["title"]) for o in objects}
    views = [o for o in objects if o["type"] == "index-pattern"]
    # On the read alias, not `articles*` (which counts an old generation after a reindex too); the time
    # field is one every article has, so undated articles (published_at null) are not filtered out.
    assert [(v["attributes"]["title"], v["attributes"]["timeFieldName"]) for v in views] == [
        (Settings().es_index, "first_seen_at")]
    assert Article.model_fields["first_seen_at"].is_required()
    assert {("search", "Latest articles"), ("search", "Quotes by speaker")} <= titles
    (dashboard,) = [o for o in objects if o["type"] == "dashboard"]
    panel_titles = [p["title"] for p in json.loads(dashboard["attributes"]["panelsJSON"])]
    for wanted in ("Articles over time", "Top sources", "Top persons", "Top organizations", "Top places",
                   "Languages", "Access", "Latest quotes"):
        assert wanted in panel_titles
    assert len({o["id"] for o in objects}) == len(objects)


def test_every_field_the_ndjson_uses_fits_the_template_mapping():
    fields = fields_from_mapping(load_template(Settings())["template"]["mappings"]["properties"])
    objects = load_objects()
    assert not problems(objects, fields)


def test_the_checks_catch_what_kibana_would_choke_on():
    """The checker is only worth something if it fails on broken objects."""
    fields = fields_from_mapping(load_template(Settings())["template"]["mappings"]["properties"])
    objects = load_objects()
    broken = json.loads(json.dumps(objects))
    lens = next(o for o in broken if o["id"] == "newsflow-top-persons")
    col = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"]["term"]
    col["sourceField"] = "quotes.speaker"  # nested: not aggregatable in Kibana
    sources = next(o for o in broken if o["id"] == "newsflow-top-sources")
    sources["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"]["term"][
        "sourceField"] = "title"  # text
    view = next(o for o in broken if o["type"] == "index-pattern")
    view["attributes"]["timeFieldName"] = "published"  # missing
    found = "\n".join(problems(broken, fields))
    assert "inside nested 'quotes'" in found
    assert "'title' (text) is not aggregatable" in found
    assert "'published' is not in the mapping" in found


def test_kql_field_extraction():
    assert kql_fields('quotes:{ speaker : "John Kirby" } and language : en') == [
        "quotes", "quotes.speaker", "language"]
    assert kql_fields('title : "a: b" or source : x') == ["title", "source"]
    assert kql_fields("") == []


@pytest.mark.integration
def test_every_field_the_ndjson_uses_is_usable_per_elasticsearch_field_caps(make_settings):
    s = make_settings()
    es = make_es(s)
    try:
        ensure_index(es, f"{s.es_index}-2024.01", s.es_index)
        caps = es.field_caps(index=s.es_index, fields="*")["fields"]
    finally:
        es.close()
    fields = fields_from_field_caps(caps)
    assert fields["persons"].aggregatable and not fields["title"].aggregatable
    assert fields["quotes.speaker"].nested_path == "quotes"
    assert not problems(load_objects(), fields)


@pytest.mark.integration
def test_the_data_view_counts_the_current_generation_and_undated_articles(make_settings):
    """What Kibana's Discover asks for with the data view: its title as the index, a range on its time
    field. After a reindex, the old generation is out of the alias and so out of the counts; an article
    without a published date is counted all the same."""
    s = make_settings()
    (view,) = [o for o in load_objects() if o["type"] == "index-pattern"]
    title = view["attributes"]["title"].replace(Settings().es_index, s.es_index, 1)
    time_field = view["attributes"]["timeFieldName"]
    es = make_es(s)
    try:
        apply_template(es, s)
        old, new = f"{s.es_index}-2024.01", f"{s.es_index}-v2-2024.01"
        ensure_index(es, old, s.es_index)
        ensure_index(es, new, None)
        for index in (old, new):  # the same two articles in both generations, as a reindex leaves them
            es.index(index=index, id="dated", document={"title": "dated", "first_seen_at": "2024-01-10T08:00:00Z",
                                                        "published_at": "2024-01-10T07:00:00Z"})
            es.index(index=index, id="undated", document={"title": "undated", "first_seen_at": "2024-01-11T08:00:00Z"})
        swap_alias(es, s.es_index, f"{s.es_index}-v2")
        es.indices.refresh(index=f"{s.es_index}-*")
        hits = es.search(index=title, query={"range": {time_field: {"gte": "2024-01-01", "lt": "2024-02-01"}}},
                         size=10)["hits"]["hits"]
        everything = es.count(index=f"{s.es_index}*")["count"]
    finally:
        es.close()
    assert sorted((h["_index"], h["_id"]) for h in hits) == [(new, "dated"), (new, "undated")]
    assert everything == 4  # what the old `articles*` data view counted


class _StubKibana:
    """Kibana's saved-objects import endpoint, as far as `make kibana` can tell."""

    def __init__(self, success: bool):
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.requests.append((self.path, dict(self.headers.items()), body))
                objects = sum(1 for line in body.splitlines() if line.startswith(b'{"attributes"'))
                answer = json.dumps({"success": success, "successCount": objects if success else 0,
                                     **({} if success else {"errors": [{"id": "x", "error": {"type": "conflict"}}]})})
                data = answer.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_kibana(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "kibana", f"KIBANA_URL={url}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_make_kibana_posts_every_ndjson_to_the_saved_objects_api():
    stub = _StubKibana(success=True)
    try:
        done = make_kibana(stub.url)
    finally:
        stub.close()
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(KIBANA_DIR.glob("*.ndjson"))
    assert len(stub.requests) == len(files)
    for (path, headers, body), f in zip(stub.requests, files, strict=True):
        assert path == "/api/saved_objects/_import?overwrite=true"
        assert headers.get("kbn-xsrf") == "true"
        assert headers["Content-Type"].startswith("multipart/form-data")
        assert f.read_bytes().strip() in body
    assert f'"successCount": {len(load_objects())}' in done.stdout


def test_make_kibana_fails_when_kibana_refuses_the_import():
    stub = _StubKibana(success=False)
    try:
        done = make_kibana(stub.url)
    finally:
        stub.close()
    assert done.returncode != 0
    assert "import failed" in done.stdout

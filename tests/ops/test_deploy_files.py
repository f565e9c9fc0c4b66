"""Deploy files parse, and their names, ports and NEWSFLOW_* variables match the settings model."""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from newsflow.settings import REPO_ROOT, Settings
from newsflow.supervisor import STAGE_COMMANDS, stage_metrics_port

DEPLOY = REPO_ROOT / "deploy"
SECRET_FIELDS = {n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}


def setting_of(env_name: str) -> str:
    """NEWSFLOW_TOPIC_PARTITIONS -> topic_partitions, failing on a name the model does not know."""
    assert env_name.startswith("NEWSFLOW_"), env_name
    field = env_name.removeprefix("NEWSFLOW_").lower()
    assert field in Settings.model_fields, f"{env_name} is not a setting (see `newsflow config --markdown`)"
    return field


def validated(env: dict[str, str]) -> Settings:
    """The settings these variables make (raises if a value does not validate)."""
    return Settings(**{setting_of(k): v for k, v in env.items()})


def default_port(stage: str) -> int:
    return stage_metrics_port(Settings.model_construct(metrics_port=Settings.model_fields["metrics_port"].default),
                              stage)


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


# --- Prometheus ------------------------------------------------------------------------------------
def exported_series() -> set[str]:
    """Every sample name the stage processes can export (all stage modules imported)."""
    for mod in ("newsflow.metrics", "newsflow.ops", "processors.processor", "processors.index.indexer", "ingest.poller"):
        importlib.import_module(mod)
    import ingest

    for info in pkgutil.iter_modules(ingest.__path__):
        importlib.import_module(f"ingest.{info.name}")
    names = set()
    for fam in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"],
                    "summary": ["_count", "_sum"]}.get(fam.type, [""])
        names |= {fam.name + s for s in suffixes}
    return names


PROM_CONFIGS = sorted((DEPLOY / "prometheus").glob("prometheus*.yml"))


@pytest.mark.parametrize("path", PROM_CONFIGS, ids=lambda p: p.name)
def test_prometheus_scrape_configs_parse_and_target_the_stage_ports(path):
    cfg = yaml.safe_load(path.read_text())
    for rule_file in cfg["rule_files"]:
        assert (path.parent / rule_file).is_file()
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert "newsflow" in jobs
    static = jobs["newsflow"].get("static_configs")
    if static is None:  # kubernetes: ports come from pod annotations (checked with the manifests)
        assert jobs["newsflow"]["kubernetes_sd_configs"]
        return
    seen = {}
    for group in static:
        stage = group["labels"]["stage"]
        for target in group["targets"]:
            seen[stage] = int(target.rsplit(":", 1)[1])
    assert seen == {s: default_port(s) for s in STAGE_COMMANDS}


def test_alert_rules_cover_the_issue_and_use_only_exported_series():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for name in ("NewsflowFeedFailing", "NewsflowFeedsStuck", "NewsflowConsumerLagGrowing",
                 "NewsflowDeadLettersGrowing", "NewsflowElasticsearchRejections"):
        assert name in alerts
    exported = exported_series()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        used = set(re.findall(r"\bnewsflow_[a-z_]+", rule["expr"]))
        assert used - exported == set(), f"{name} uses series no stage exports: {used - exported}"


# --- systemd -----------------------------------------------------------------------------------------
def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """systemd unit -> {section: [(key, value), ...]} (keys may repeat, e.g. Environment)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, sep, val = line.partition("=")
        assert sep and current, f"{path.name}: cannot parse {line!r}"
        sections[current].append((key.strip(), val.strip()))
    return sections


@pytest.mark.parametrize("stage", list(STAGE_COMMANDS))
def test_systemd_unit_template_per_stage(stage):
    unit = parse_unit(DEPLOY / "systemd" / f"newsflow-{stage}@.service")
    service = unit["Service"]
    execstart = dict(service)["ExecStart"].split()
    assert execstart[0].endswith("/newsflow") and execstart[1:] == STAGE_COMMANDS[stage]
    env = dict(v.split("=", 1) for k, v in service if k == "Environment")
    for name in env:
        setting_of(name)
    assert env["NEWSFLOW_METRICS_PORT"] == "%i"  # the instance name is the metrics port
    assert float(dict(service)["TimeoutStopSec"]) > Settings.model_fields["shutdown_timeout_s"].default
    assert dict(service)["KillSignal"] == "SIGTERM"
    assert ("WantedBy", "newsflow.target") in unit["Install"]


def test_systemd_target_and_env_example_match_the_model():
    target = dict(parse_unit(DEPLOY / "systemd" / "newsflow.target")["Unit"])
    wanted = set(target["Wants"].split())
    assert wanted == {f"newsflow-{s}@{default_port(s)}.service" for s in STAGE_COMMANDS}
    lines = [ln for ln in (DEPLOY / "systemd" / "newsflow.env.example").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    env = dict(ln.split("=", 1) for ln in lines)
    validated(env)


# --- Kubernetes ----------------------------------------------------------------------------------------
WORKLOADS = ("Deployment", "StatefulSet", "Job")
# Stages whose consumer is a static group member named by NEWSFLOW_INSTANCE_ID (newsflow.kafka_io.
# make_member_consumer; the processor's transactional id too): their pod names must survive a restart.
STATIC_MEMBERS = ("poller", "processor", "indexer")  # transactional ids and/or static group members


def k8s_objects() -> dict[tuple[str, str], dict]:
    out = {}
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        for doc in load_yaml_docs(DEPLOY / "k8s" / res):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def workload(objs: dict[tuple[str, str], dict], name: str) -> dict:
    (found,) = [o for (kind, n), o in objs.items() if n == name and kind in WORKLOADS]
    return found


def test_k8s_manifests_parse_and_every_file_is_in_the_kustomization():
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files
    kinds = {k for k, _ in k8s_objects()}
    assert {"StatefulSet", "ConfigMap", "Secret", "HorizontalPodAutoscaler", "Job",
            "Namespace", "Service"} <= kinds


def test_k8s_kustomize_build_gives_the_same_objects_in_the_namespace():
    """`kubectl kustomize` (kustomize built into kubectl) renders what `kubectl apply -k` would apply."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the manifests are checked by parsing them (tests above)")
    done = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    built = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert {(d["kind"], d["metadata"]["name"]) for d in built} == set(k8s_objects())
    assert all(d["metadata"].get("namespace") == "newsflow" for d in built if d["kind"] != "Namespace")


def test_k8s_settings_validate_and_secrets_live_in_the_secret():
    objs = k8s_objects()
    config = objs[("ConfigMap", "newsflow-settings")]["data"]
    secret = objs[("Secret", "newsflow-secrets")]["stringData"]
    assert {setting_of(k) for k in secret} <= SECRET_FIELDS
    assert not ({setting_of(k) for k in config} & SECRET_FIELDS), "a secret in the ConfigMap"
    validated(config | secret)


@pytest.mark.parametrize("stage", list(STAGE_COMMANDS))
def test_k8s_workload_per_stage(stage):
    objs = k8s_objects()
    config = objs[("ConfigMap", "newsflow-settings")]["data"]
    dep = workload(objs, f"newsflow-{stage}")
    pod = dep["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["args"] == STAGE_COMMANDS[stage]
    env = {e["name"]: e.get("value") for e in container["env"]}
    for name in env:
        setting_of(name)
    port = default_port(stage)
    assert env["NEWSFLOW_METRICS_PORT"] == str(port)
    assert container["ports"][0]["containerPort"] == port
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
    assert refs == {"newsflow-settings", "newsflow-secrets"}
    assert pod["spec"]["terminationGracePeriodSeconds"] > float(config["NEWSFLOW_SHUTDOWN_TIMEOUT_S"])
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("stage", STATIC_MEMBERS)
def test_k8s_static_members_keep_their_identity_across_restarts(stage):
    """A Deployment's pod names are random: a restarted processor would get a new transactional id (its
    zombie never fenced) and a new static member id (its partitions held by the dead one). A StatefulSet
    pod keeps its name (<name>-<ordinal>), and that name is the instance id."""
    objs = k8s_objects()
    sts = workload(objs, f"newsflow-{stage}")
    assert sts["kind"] == "StatefulSet"
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    (instance,) = [e for e in container["env"] if e["name"] == "NEWSFLOW_INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    service = objs[("Service", sts["spec"]["serviceName"])]
    assert service["spec"]["clusterIP"] == "None"  # headless: the StatefulSet's governing service
    assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()


def test_k8s_replicas_and_autoscalers_do_not_fight_and_stay_within_the_partitions():
    """A workload an autoscaler owns has no `replicas` (every `kubectl apply` would reset the autoscaler's
    choice); no autoscaler may scale past the partition count, nor may a fixed replica count."""
    objs = k8s_objects()
    partitions = int(objs[("ConfigMap", "newsflow-settings")]["data"]["NEWSFLOW_TOPIC_PARTITIONS"])
    hpas = [o["spec"] for (kind, _), o in objs.items() if kind == "HorizontalPodAutoscaler"]
    scaled = {(h["scaleTargetRef"]["kind"], h["scaleTargetRef"]["name"]) for h in hpas}
    assert ("StatefulSet", "newsflow-processor") in scaled
    for hpa in hpas:
        target = objs[(hpa["scaleTargetRef"]["kind"], hpa["scaleTargetRef"]["name"])]
        assert "replicas" not in target["spec"], f"{target['metadata']['name']}: replicas and an autoscaler"
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"] <= partitions
    for (kind, name), o in objs.items():
        if kind in ("Deployment", "StatefulSet") and (kind, name) not in scaled:
            assert 1 <= o["spec"]["replicas"] <= partitions, name


@pytest.mark.parametrize("name", ["newsflow-poller", "newsflow-processor", "newsflow-indexer", "newsflow-topology"])
def test_k8s_pods_run_restricted(name):
    """The Pod Security Standards' `restricted` profile, plus a read-only root filesystem: what Newsflow
    writes (NEWSFLOW_STATE_DIR, the fork server's socket, temporary files) goes to an emptyDir at /tmp."""
    objs = k8s_objects()
    config = objs[("ConfigMap", "newsflow-settings")]["data"]
    pod = workload(objs, name)["spec"]["template"]["spec"]
    sec = pod["securityContext"]
    assert sec["runAsNonRoot"] is True and sec["runAsUser"] > 0
    assert sec["seccompProfile"]["type"] == "RuntimeDefault"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for container in pod["containers"]:
        csec = container["securityContext"]
        assert csec["allowPrivilegeEscalation"] is False
        assert csec["readOnlyRootFilesystem"] is True
        assert csec["capabilities"]["drop"] == ["ALL"] and not csec["capabilities"].get("add")
        assert not csec.get("privileged")
        writable = [m["mountPath"] for m in container.get("volumeMounts", [])
                    if "emptyDir" in volumes[m["name"]] and not m.get("readOnly")]
        assert "/tmp" in writable
        state_dir = Path(config["NEWSFLOW_STATE_DIR"])
        assert any(state_dir.is_relative_to(w) for w in writable), f"{name}: NEWSFLOW_STATE_DIR is not writable"


# --- image --------------------------------------------------------------------------------------------------
def test_dockerfile_env_and_entrypoint():
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    env_block = re.search(r"^ENV (.*?)(?=^\S)", text, flags=re.S | re.M).group(1)
    names = re.findall(r"(NEWSFLOW_[A-Z_]+)=", env_block)
    assert names
    for n in names:
        setting_of(n)
    assert 'ENTRYPOINT ["newsflow"]' in text
    for src in re.findall(r"^COPY (\S+)", text, flags=re.M):
        if not src.startswith("--"):
            assert (REPO_ROOT / src).exists(), f"COPY {src}: no such path"


# --- docker compose -----------------------------------------------------------------------------------------
def test_compose_runs_each_stage_as_a_service_with_matching_settings():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "elasticsearch", "kibana", "prometheus", "topology"} <= set(services)
    for stage, argv in STAGE_COMMANDS.items():
        svc = services[stage]
        assert svc["command"] == argv
        env = svc["environment"]
        got = validated(env)
        assert got.metrics_port == default_port(stage) and got.metrics_host == "0.0.0.0"
        assert (REPO_ROOT / svc["build"]["dockerfile"]).is_file()
        grace = float(svc["stop_grace_period"].rstrip("s"))
        assert grace > got.shutdown_timeout_s and svc["stop_signal"] == "SIGTERM"
        assert "topology" in svc["depends_on"]
        for port in svc.get("ports", []):
            assert port.endswith(f":{default_port(stage)}")
    assert services["topology"]["command"] == ["topology"]
    for volume in services["prometheus"]["volumes"]:
        src = volume.split(":")[0]
        if src.startswith("./"):
            assert (DEPLOY / src).is_file(), f"prometheus mounts missing {src}"

"""Newsflow as an operator installs it: a built wheel, installed (not editable) into a fresh venv, runs;
the image installs dependencies from the hashed lock before the code; the lock matches pyproject.toml."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
import uuid
import zipfile
from pathlib import Path

import pytest

from newsflow.settings import REPO_ROOT
from tests.support.stages import env_for

LOCKS = (REPO_ROOT / "requirements.lock", REPO_ROOT / "requirements-dev.lock")
PACKAGE_DATA = ("newsflow/data/articles-template.json", "newsflow/data/ilm-policy.json", "newsflow/data/feeds.yaml",
                "newsflow/demo_site/index.html", "processors/enrich/gazetteer.json")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from what the Dockerfile copies, in a directory of its own (no stale build/ of the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    for package in ("newsflow", "ingest", "processors"):
        shutil.copytree(REPO_ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "--wheel-dir", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (whl,) = out.glob("newsflow-*.whl")
    return whl


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    """A new venv with the wheel installed the ordinary way. Its dependencies are this venv's (a .pth
    line puts our site-packages after its own, so nothing is downloaded), but not Newsflow: the editable
    install's finder lives in a .pth file there, which a .pth line does not run."""
    venv = tmp_path_factory.mktemp("venv") / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "newsflow-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                           "--quiet", "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


def test_the_wheel_carries_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [n for n in PACKAGE_DATA if n not in names]
    assert not missing, f"not in {wheel.name}: {missing}"
    assert not any(n.startswith(("tests/", "deploy/", "bench/")) for n in names)


def test_the_installed_package_finds_its_data_and_reports_its_version(fresh_venv, tmp_path):
    python = fresh_venv / "bin" / "python"
    code = ("import newsflow, ingest, processors\n"
            "from newsflow.settings import Settings\n"
            "from newsflow.elastic import load_template\n"
            "from ingest.store import load_feeds_file\n"
            "s = Settings()\n"
            "print(newsflow.__file__, ingest.__file__, processors.__file__, s.feeds_file, sep='\\n')\n"
            "print(len(load_feeds_file(s.feeds_file)), load_template(s)['version'])\n")
    done = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("NEWSFLOW_")})
    assert done.returncode == 0, done.stderr
    *paths, counts = done.stdout.strip().splitlines()
    for p in paths:  # everything from the fresh venv, nothing from the checkout
        assert Path(p).is_relative_to(fresh_venv), p
    feeds, template_version = map(int, counts.split())
    assert feeds > 0 and template_version >= 4
    version = subprocess.run([fresh_venv / "bin" / "newsflow", "--version"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version.returncode == 0 and version.stdout.strip() == f"newsflow {declared}"


@pytest.mark.integration
def test_the_installed_newsflow_applies_the_topology_and_runs(fresh_venv, stack, tmp_path):
    """`newsflow topology` then `newsflow run` from the wheel, on the real stack, until every stage is
    healthy by `newsflow healthcheck`; then SIGTERM."""
    from newsflow.topology import namespaced, teardown

    feeds = tmp_path / "feeds.yaml"
    feeds.write_text("feeds: []\n")
    s = namespaced(stack, f"t{uuid.uuid4().hex[:10]}", state_dir=tmp_path / "state", feeds_file=feeds,
                   metrics_port=0, extract_workers=1, topic_partitions=1)
    bin_ = fresh_venv / "bin"
    env = env_for(s)
    try:
        done = subprocess.run([bin_ / "newsflow", "topology"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert s.topic_raw in done.stdout and "index template" in done.stdout
        port = _free_port_block()
        run_env = env | {"NEWSFLOW_METRICS_PORT": str(port)}
        proc = subprocess.Popen([bin_ / "newsflow", "run"], cwd=tmp_path, env=run_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 240
            check = None
            while time.monotonic() < deadline and proc.poll() is None:
                check = subprocess.run([bin_ / "newsflow", "healthcheck"], cwd=tmp_path, env=run_env,
                                       capture_output=True, text=True, timeout=60)
                if check.returncode == 0 and len(check.stdout.splitlines()) == 3:
                    break
                time.sleep(2)
            assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
            assert check is not None and check.returncode == 0, check.stdout + check.stderr
            assert {line.split()[0] for line in check.stdout.splitlines()} == {"poller", "processor", "indexer"}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=120)
        assert proc.returncode == 0
    finally:
        teardown(s)


def _free_port_block() -> int:
    """A port p with p, p+1, p+2 free (the stages' metrics ports under `newsflow run`)."""
    import socket

    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = sock.getsockname()[1]
        if base + 2 > 65535:
            continue
        try:
            for offset in (1, 2):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
    raise RuntimeError("no block of 3 free ports")


# --- the image and the lock -----------------------------------------------------------------------------
def test_dockerfile_installs_the_locked_dependencies_before_the_code():
    """A code change must not reinstall spaCy: the dependency layer comes from the lock alone, before any
    COPY of the source, and Newsflow is a regular install (its data are package data, not a checkout)."""
    text = (REPO_ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]  # the image stage
    steps = re.findall(r"^(COPY|RUN) (.*)$", final, flags=re.M)
    deps = next(i for i, (kind, arg) in enumerate(steps) if kind == "RUN" and "--require-hashes -r" in arg)
    assert all("requirements.lock" in arg for kind, arg in steps[:deps] if kind == "COPY")
    assert any(kind == "COPY" and "--from=wheel" in arg for kind, arg in steps[deps:])
    installs = [arg for kind, arg in steps if kind == "RUN" and "pip install" in arg]
    assert not any(re.search(r"\s(-e|--editable)\s", arg) for arg in installs)
    assert "--no-deps" in installs[-1]
    assert re.search(r'^HEALTHCHECK .*CMD \["newsflow", "healthcheck"\]$', text, flags=re.M)


def lock_entries(path: Path) -> dict[str, list[str]]:
    """name -> its hashes, from a `uv pip compile --generate-hashes` file."""
    entries: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        m = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", block)
        if m:
            entries[f"{m[1].lower().replace('_', '-')}=={m[2]}"] = re.findall(r"--hash=sha256:[0-9a-f]{64}", block)
    return entries


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_locked_requirement_is_pinned_with_hashes(lock):
    entries = lock_entries(lock)
    assert len(entries) > 50
    assert [name for name, hashes in entries.items() if not hashes] == []
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    direct = {f"{n.lower().replace('_', '-')}=={v}" for n, v in re.findall(r'^\s+"([A-Za-z0-9_.\-]+)==([^"]+)"', pyproject, re.M)}
    runtime = {d for d in direct if d.split("==")[0] not in {"pytest", "pytest-timeout", "matplotlib", "uv"}}
    assert (runtime if lock.name == "requirements.lock" else direct) <= set(entries)


def test_the_lock_is_what_make_lock_makes_of_pyproject(tmp_path):
    """`make lock` on the current pyproject.toml changes nothing (uv, offline from its cache)."""
    uv = Path(sys.executable).parent / "uv"
    for lock, extra in ((LOCKS[0], []), (LOCKS[1], ["--extra", "dev", "-c", str(LOCKS[0])])):
        out = tmp_path / lock.name
        out.write_text(lock.read_text())  # as `make lock` runs: the lock's pins are uv's preferences
        done = subprocess.run([uv, "pip", "compile", "pyproject.toml", *extra, "--offline", "--python-version", "3.11",
                               "--generate-hashes", "--custom-compile-command", "make lock", "-o", str(out), "--quiet"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        if done.returncode != 0 and any(w in done.stderr.lower() for w in ("offline", "network was disabled")):
            pytest.skip(f"uv cannot resolve offline here (empty cache): {done.stderr.strip()[:200]}")
        assert done.returncode == 0, done.stderr
        assert out.read_text() == lock.read_text(), f"{lock.name} is stale: run `make lock`"

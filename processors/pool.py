"""A pool of killable worker processes that run the per-document chain (``processors/article.py``).

Hard limits, per document:

* **time**  ``settings.extract_timeout_s``: pebble kills the worker that overruns and starts a
  new one; the document becomes ``Quarantine("extract_timeout")`` (one timeout, one dead letter);
* **size**  pages over ``settings.max_page_bytes`` are quarantined before parsing;
* **memory** each worker runs under an address-space limit (``settings.extract_memory_mb``): an
  allocation over it raises MemoryError in the worker (``Quarantine("extract_memory")``);
* **crash**  a worker that dies under a document is replaced and the document comes back as
  ``WorkerDied``, which the runner retries up to ``settings.max_attempts`` times, then dead-letters.

A pool whose workers cannot start at all (``start()``, or pebble's BrokenProcessPool later) stops
the stage with an error instead of dead-lettering every record.

Workers start from a fork server that pre-imports the heavy libraries and pays their one-off
warm-up costs (``processors/warmup.py``) — never forked from the consumer process, whose Kafka
threads may hold locks. They load spaCy and the other models once in
their initializer, use one BLAS thread each, die with their parent (``PR_SET_PDEATHSIG``) and are replaced after
``settings.extract_worker_max_tasks`` documents.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import resource
import signal
import sys
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime

from pebble import ProcessExpired, ProcessPool
from pydantic import ValidationError

from newsflow import metrics
from newsflow.logs import article_context, configure_logging
from newsflow.schema import RawArticle
from newsflow.settings import Settings
from newsflow.stage.outcomes import Drop, Quarantine
from processors.article import Built, Limits, build_article

log = logging.getLogger(__name__)

_PRELOAD = ["trafilatura", "htmldate", "lxml.html", "spacy", "yake", "py3langid", "datasketch", "processors.article",
            "processors.warmup"]
_PR_SET_PDEATHSIG = 1
# Single-threaded BLAS in the workers: they are the parallelism (``extract_workers``, one per core), and
# OpenBLAS built for one thread runs spaCy's small matrix products with 15 % less CPU than its threaded
# build (NER per English corpus article: 86 -> 73 ms). Read when numpy loads, so it must be in the
# environment the fork server starts with; an operator's own setting wins.
_ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class WorkerConfig:
    limits: Limits
    enrich: bool
    enrich_max_chars: int
    memory_mb: int
    logging: Settings | None = None  # a worker logs as its stage does (format, level, redaction)

    @classmethod
    def from_settings(cls, s: Settings) -> WorkerConfig:
        return cls(Limits.from_settings(s), s.enrich, s.enrich_max_chars, s.extract_memory_mb, s)


@dataclass
class WorkerResult:
    built: Built
    pid: int
    max_rss_kib: int


class _Worker:
    """Per-process state, created once by the pool initializer."""

    def __init__(self, config: WorkerConfig):
        from processors.enrich.enricher import Enricher

        self.config = config
        self.enricher = Enricher(max_chars=config.enrich_max_chars) if config.enrich else None


# The one piece of module state: the worker process's models, set by the pool initializer in
# each worker (never in the consumer process).
_worker: _Worker | None = None


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


MIN_HEADROOM_MB = 128


def _mapped_mib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


def init_worker(config: WorkerConfig) -> None:
    """Once per worker: die with the parent, load the models, then set the memory limit."""
    global _worker
    _die_with_parent()
    import processors.warmup  # noqa: F401 - free when the fork server preloaded it (the usual case)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if config.logging is not None:  # a fork-server child: nothing configured its logging yet
        configure_logging(config.logging)
    _worker = _Worker(config)
    if config.memory_mb:
        mapped = _mapped_mib()
        if config.memory_mb < mapped + MIN_HEADROOM_MB:
            raise RuntimeError(f"extract_memory_mb={config.memory_mb} leaves a worker no room: it maps "
                               f"{mapped} MiB with its models loaded, and needs {MIN_HEADROOM_MB} MiB more")
        limit = config.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def process_value(value: bytes | None, now: datetime | None = None) -> WorkerResult:
    """In a worker: one ``articles.raw`` record value -> Article (without story label)."""
    if _worker is None:
        raise RuntimeError("process_value runs in a pool worker (init_worker was not called)")
    try:
        raw = RawArticle.from_bytes(value or b"")
    except (ValidationError, ValueError) as exc:
        raise Quarantine("invalid_raw_record", str(exc)[:500]) from None
    with article_context(raw.id):  # what the extraction libraries and our steps log names the article
        built = build_article(raw, limits=_worker.config.limits, enricher=_worker.enricher, now=now)
    return WorkerResult(built, os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class WorkerDied(RuntimeError):
    """The worker died under a document (killed, crashed, out of memory outside Python): possibly
    not the document's fault, so the runner retries it, up to ``settings.max_attempts``."""


def one_blas_thread() -> None:
    """Single-threaded BLAS for the fork server this process starts next (``_ONE_BLAS_THREAD``)."""
    for name, value in _ONE_BLAS_THREAD.items():
        os.environ.setdefault(name, value)


def ping() -> int:
    """A no-op task: proves a worker started (models loaded, limits set)."""
    return os.getpid()


class ExtractionPool:
    """Runs ``process_value`` in worker processes with a per-document timeout."""

    def __init__(self, settings: Settings):
        self.timeout = settings.extract_timeout_s
        self.workers = settings.extract_workers
        one_blas_thread()
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        self.pool = ProcessPool(
            max_workers=settings.extract_workers,
            max_tasks=settings.extract_worker_max_tasks,
            initializer=init_worker,
            initargs=(WorkerConfig.from_settings(settings),),
            context=context,
        )

    def start(self) -> list[int]:
        """Start every worker now and wait for it: a worker that cannot start (models missing,
        memory limit too low) fails the stage at once instead of dead-lettering every record."""
        futures = [self.pool.schedule(ping, timeout=max(self.timeout, 120)) for _ in range(self.workers)]
        try:
            return [f.result() for f in futures]
        except Exception as exc:
            raise RuntimeError(f"extraction workers cannot start: {exc!r}") from exc

    def run(self, values: list[bytes | None], now: datetime | None = None) -> list[WorkerResult | BaseException]:
        """All values at once (the workers share them out); one outcome per value, in order.
        Drop/Quarantine/other exceptions are returned, not raised."""
        return self.collect(self.submit(values, now))

    def submit(self, values: list[bytes | None], now: datetime | None = None) -> list[Future]:
        """Queue the values and return at once: the workers take them first come, first served,
        after whatever was submitted before. Each document's timeout starts when a worker takes it."""
        return [self.pool.schedule(process_value, args=(v, now), timeout=self.timeout) for v in values]

    def collect(self, futures: list[Future]) -> list[WorkerResult | BaseException]:
        """Wait for submitted values: one outcome per value, in order (as ``run``)."""
        return [self._outcome(f) for f in futures]

    def cancel(self, futures: list[Future]) -> None:
        """Give submitted values up: a queued one never starts; a running one's worker is stopped
        (pebble starts a new one)."""
        for f in futures:
            f.cancel()

    def _outcome(self, future) -> WorkerResult | BaseException:
        try:
            return future.result()
        except FutureTimeout:
            metrics.EXTRACTION_TIMEOUTS.inc()
            return Quarantine("extract_timeout", f"no result after {self.timeout:g}s; worker killed")
        except ProcessExpired as exc:
            return WorkerDied(f"extraction worker died under the document (exit code {exc.exitcode})")
        except MemoryError:
            return Quarantine("extract_memory", "extraction ran out of its memory limit")
        except (Drop, Quarantine) as exc:
            return exc
        except BrokenProcessPool as exc:
            raise RuntimeError(f"extraction pool is broken: {exc}") from exc  # the stage stops, loudly
        except Exception as exc:  # noqa: BLE001 - handed to the runner, which retries then dead-letters
            return exc

    def close(self) -> None:
        self.pool.close()
        self.pool.join(timeout=10)
        if self.pool.active:
            self.pool.stop()
            self.pool.join(timeout=5)

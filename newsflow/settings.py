"""One typed, immutable settings object for every Newsflow process.

Values come from, highest priority first:

1. keyword arguments (tests, ``Settings(**overrides)``);
2. environment variables ``NEWSFLOW_<FIELD>`` (e.g. ``NEWSFLOW_KAFKA_BOOTSTRAP``);
3. an optional YAML file named by ``NEWSFLOW_CONFIG`` (keys are the field names);
4. the defaults below, which run the pipeline on the local stack (``make up``).

Secrets are ``SecretStr``: they print as ``**********`` in logs, ``repr`` and ``newsflow status``.
The README's configuration table is generated from this model (``newsflow config --markdown``)
and a test keeps the two in sync.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
# Files shipped inside the package (index template, ILM policy, default feed list): found with
# importlib.resources, so an installed wheel has them too, not only a checkout.
PACKAGE_DATA = Path(str(files("newsflow") / "data"))


class ConfigurationError(RuntimeError):
    """Settings that validate but that a service refuses (a wrong password, an untrusted CA). The
    message names the settings to fix and never holds a secret; the CLI exits with status 78."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NEWSFLOW_",
        frozen=True,
        extra="forbid",
        validate_default=True,
    )

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol: SASL_SSL on a real cluster (see Deploy)."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (SASL_* protocols): SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    kafka_ssl_cafile: FilePath | None = Field(
        None, description="CA certificates (PEM) that signed the brokers' certificates (SSL, SASL_SSL); "
        "empty = the system's CAs."
    )
    kafka_ssl_certfile: FilePath | None = Field(
        None, description="Client certificate (PEM) for mutual TLS; needs kafka_ssl_keyfile."
    )
    kafka_ssl_keyfile: FilePath | None = Field(
        None, description="Unencrypted private key (PEM) of kafka_ssl_certfile; keep it as secret as a password."
    )
    kafka_compression: Literal["zstd", "gzip", "none"] = Field(
        "zstd", description="Compression of every record batch Newsflow produces (zstd: gzip's ratio on news pages "
        "at about 6x less CPU)."
    )
    topic_raw: str = Field("articles.raw", description="Fetched pages, poller -> processor.")
    topic_enriched: str = Field("articles.enriched", description="Enriched articles, processor -> indexer.")
    topic_dlq: str = Field("articles.dlq", description="Dead-letter topic for every stage.")
    topic_feeds: str = Field("newsflow.feeds", description="Compacted topic of feed definitions.")
    topic_feed_state: str = Field("newsflow.feed-state", description="Compacted topic of per-feed poll state.")
    topic_partitions: int = Field(3, ge=1, description="Partitions for each topic created by Newsflow.")
    topic_replication: int = Field(
        1, ge=1, description="Replication factor of topics created by Newsflow (3 on a cluster: see Deploy)."
    )
    topic_min_insync: int = Field(
        1, ge=1, description="min.insync.replicas of topics created by Newsflow: every write (acks=all) waits for "
        "this many replicas; 2 with replication 3 keeps writing, and loses nothing, with one broker down."
    )
    group_prefix: str = Field("newsflow", description="Consumer groups are <prefix>-<stage>.")
    instance_id: str = Field(
        default_factory=lambda: os.uname().nodename,
        description="Identity of this process (transactional id suffix, logs). Defaults to the host name.",
    )
    max_message_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest record Newsflow produces; bigger pages go to the dead-letter topic.",
    )
    raw_retention_days: float = Field(
        30.0,
        description="How long articles.raw keeps fetched pages, for `newsflow reprocess` (-1 = forever). Applied "
        "by `make topics` / `newsflow run` to new and existing topics.",
    )

    # --- Elasticsearch -------------------------------------------------------------------
    es_url: str = Field("http://127.0.0.1:9200", description="Elasticsearch URL.")
    es_api_key: SecretStr | None = Field(
        None, description="Elasticsearch API key (secret; the encoded form), used instead of user and password."
    )
    es_username: str | None = Field(None, description="Elasticsearch basic-auth user.")
    es_password: SecretStr | None = Field(None, description="Elasticsearch basic-auth password (secret).")
    es_ca_certs: FilePath | None = Field(
        None, description="CA certificates (PEM) that signed Elasticsearch's certificate (https:// URLs); "
        "empty = the system's CAs."
    )
    es_verify_certs: bool = Field(
        True, description="Verify Elasticsearch's TLS certificate and host name (https:// URLs). Off only to try "
        "a self-signed node: the connection is then open to interception."
    )
    es_index: str = Field("articles", description="Read alias; monthly indices are <alias>-YYYY.MM.")
    es_shards: int = Field(
        1, ge=1, description="Primary shards of each monthly index (set when the template is applied; new indices only)."
    )
    es_replicas: int = Field(
        0, ge=0, description="Replicas of each monthly index: 0 on one node, at least 1 on a cluster (applied to "
        "the template and to the existing indices by `newsflow topology`).",
    )
    es_text_analyzer: str = Field(
        "newsflow_text",
        description="Analyzer for text fields: newsflow_text (standard + English stopwords, works on the local "
        "distribution) or english (full Elasticsearch with analysis-common).",
    )
    es_ilm_policy: str | None = Field(
        None,
        description="ILM policy name to install (newsflow/data/ilm-policy.json) and attach to new indices. "
        "Full Elasticsearch only: the local distribution has no ILM. Empty = no ILM.",
    )
    es_bulk_max_retries: int = Field(
        5, ge=0, description="Retries of bulk items Elasticsearch rejected (429/503) before the indexer pauses."
    )
    es_bulk_max_backoff_s: float = Field(
        8.0, gt=0, description="Cap of the exponential backoff between those retries (starts at 0.25 s)."
    )

    # --- Poller --------------------------------------------------------------------------
    feeds_file: Path = Field(
        PACKAGE_DATA / "feeds.yaml", description="Feed list (YAML) to seed from (default: the one shipped in the package)."
    )
    user_agent: str = Field(
        "Newsflow/0.1 (+https://github.com/newsflow/newsflow)",
        description="User-Agent sent on feed polls and page fetches.",
    )
    allow_private_addresses: bool = Field(
        False,
        description="Allow fetching loopback addresses (127.0.0.0/8, ::1). Only for tests and make demo; "
        "private, link-local, multicast and reserved addresses stay refused.",
    )
    respect_robots: bool = Field(True, description="Honour robots.txt for article pages.")
    poll_interval_s: float = Field(900.0, gt=0, description="Default interval between polls of one feed.")
    poll_min_interval_s: float = Field(60.0, gt=0, description="Lower bound of the adaptive poll interval.")
    poll_max_interval_s: float = Field(86400.0, gt=0, description="Upper bound of the poll interval and backoff.")
    host_concurrency: int = Field(2, ge=1, description="Concurrent requests per host (feeds and pages).")
    host_rate_per_s: float = Field(2.0, gt=0, description="Requests per second per host.")
    fetch_concurrency: int = Field(64, ge=1, description="Concurrent requests in total.")
    max_feed_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Max feed size after decompression.")
    max_page_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Max page size after decompression.")
    max_entries_per_feed: int = Field(500, ge=1, description="Entries read from one feed per poll.")
    sitemap_recent_days: float = Field(
        2.0, gt=0,
        description="Sitemap sources: only entries whose news:publication_date or lastmod (the later) is this "
        "recent are fetched; entries with neither date are skipped. Child sitemaps of an index with an older "
        "lastmod are not fetched.",
    )
    sitemap_max_depth: int = Field(
        2, ge=0, description="Sitemap indexes are followed this many levels down (0: an index is not followed)."
    )
    sitemap_max_files: int = Field(
        20, ge=1, description="Child sitemaps fetched per poll of one sitemap index (the newest by lastmod first)."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP/TLS connect timeout.")
    read_timeout_s: float = Field(15.0, gt=0, description="Timeout between two reads.")
    total_timeout_s: float = Field(30.0, gt=0, description="Total time for one request, body included.")
    max_redirects: int = Field(5, ge=0, description="Redirects followed per request.")
    poll_batch_s: float = Field(
        60.0, gt=0, le=300,
        description="The poller starts requests for at most this long, then delivers, persists feed state "
        "and serves its consumer group (a rebalance waits at most this plus total_timeout_s).",
    )

    # --- Processor -----------------------------------------------------------------------
    enrich: bool = Field(True, description="Run enrichment (language, entities, quotes, keywords, stories).")
    extract_workers: int = Field(2, ge=1, description="Extraction worker processes per processor.")
    extract_timeout_s: float = Field(20.0, gt=0, description="Per-document extraction timeout.")
    story_window: int = Field(20000, ge=100, description="Recent articles kept for story clustering.")
    extract_min_chars: int = Field(
        250, ge=0, description="Main text shorter than this also tries trafilatura's baseline; the longer text wins."
    )
    extract_memory_mb: int = Field(
        2048, ge=0, description="Address-space limit of each extraction worker in MiB (0 = none); over it, DLQ."
    )
    extract_worker_max_tasks: int = Field(
        500, ge=0, description="Pages an extraction worker handles before it is replaced (0 = never)."
    )
    max_text_bytes: int = Field(
        1_000_000, ge=1024, description="Article text beyond this many UTF-8 bytes is cut at a word boundary."
    )
    enrich_max_chars: int = Field(
        100_000, ge=1000, description="Characters of text given to NER, quote attribution and keywords."
    )

    # --- Runner --------------------------------------------------------------------------
    batch_size: int = Field(200, ge=1, description="Records per batch (transaction or bulk request).")
    batch_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Bytes per Elasticsearch bulk chunk.")
    batch_wait_ms: int = Field(500, ge=0, description="How long a stage waits to fill a batch.")
    max_attempts: int = Field(3, ge=1, description="Attempts before a record goes to the dead-letter topic.")
    shutdown_timeout_s: float = Field(30.0, gt=0, description="Grace period for in-flight work on SIGTERM.")

    # --- Ops -----------------------------------------------------------------------------
    metrics_port: int = Field(9464, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz (0 = off).")
    metrics_host: str = Field(
        "127.0.0.1", description="Address the /metrics server binds; 0.0.0.0 in containers so Prometheus can scrape."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json, console, or auto (console on a TTY, json otherwise)."
    )
    state_dir: Path = Field(REPO_ROOT / ".local", description="Local state (stack, pids, logs).")

    @field_validator("raw_retention_days")
    @classmethod
    def _retention(cls, v: float) -> float:
        if v != -1 and v <= 0:
            raise ValueError("must be a number of days > 0, or -1 to keep pages forever")
        return v

    @field_validator("es_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. http://127.0.0.1:9200")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _transport_security(self) -> Settings:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            missing = [n for n in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
                       if getattr(self, n) is None]
            if missing:
                raise ValueError(f"NEWSFLOW_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                                 + ", ".join(f"NEWSFLOW_{n.upper()}" for n in missing))
        tls_files = [n for n in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile") if getattr(self, n)]
        if tls_files and not protocol.endswith("SSL"):
            raise ValueError(f"{', '.join(f'NEWSFLOW_{n.upper()}' for n in tls_files)} set, but "
                             f"NEWSFLOW_KAFKA_SECURITY_PROTOCOL is {protocol}: TLS files apply to SSL and SASL_SSL")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("mutual TLS needs both NEWSFLOW_KAFKA_SSL_CERTFILE and NEWSFLOW_KAFKA_SSL_KEYFILE")
        if self.topic_min_insync > self.topic_replication:
            raise ValueError(f"NEWSFLOW_TOPIC_MIN_INSYNC={self.topic_min_insync} exceeds NEWSFLOW_TOPIC_REPLICATION="
                             f"{self.topic_replication}: no write could ever be acknowledged")
        if self.es_ca_certs is not None and not self.es_url.startswith("https://"):
            raise ValueError("NEWSFLOW_ES_CA_CERTS is set, so NEWSFLOW_ES_URL must be https://")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("NEWSFLOW_CONFIG")
        if config:
            if not Path(config).is_file():
                raise FileNotFoundError(f"NEWSFLOW_CONFIG names {config!r}, which is not a file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config))
        return tuple(sources)

    # --- derived names (kept here so the topology has one source of truth) ---------------
    def group(self, stage: str) -> str:
        return f"{self.group_prefix}-{stage}"

    def redacted(self) -> dict[str, Any]:
        """Settings as plain data, secrets masked. Safe for logs and ``status``."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********"
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


def settings_table() -> str:
    """The README configuration table, generated from the model."""
    rows = ["| variable | default | description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "(computed)"
        elif isinstance(field.default, Path):
            try:
                default = str(field.default.relative_to(REPO_ROOT))
            except ValueError:
                default = str(field.default)
        else:
            default = "" if field.default is None else str(field.default)
        cell = f"`{default}`" if default else "(none)"
        rows.append(f"| `NEWSFLOW_{name.upper()}` | {cell} | {field.description or ''} |")
    return "\n".join(rows) + "\n"


def describe_settings_error(exc: Exception) -> str:
    """A start-up settings error as one line per problem, named the way the operator set it.

    Secret values are never echoed back.
    """
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return f"  {exc}"
    config = os.environ.get("NEWSFLOW_CONFIG")
    lines = []
    for err in exc.errors(include_url=False):
        if not err["loc"]:  # a rule across settings: its message names them
            lines.append("  " + err["msg"].removeprefix("Value error, "))
            continue
        name = str(err["loc"][0])
        field = Settings.model_fields.get(name)
        if field is None:
            where = f" (in {config})" if config else ""
            lines.append(f"  {name}{where}: unknown setting; `newsflow config --markdown` lists them all")
            continue
        secret = "SecretStr" in str(field.annotation)
        got = "" if secret or err["type"] == "missing" else f" (got {err.get('input')!r})"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  NEWSFLOW_{name.upper()}{got}: {msg}")
    return "\n".join(lines)

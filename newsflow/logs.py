"""Logging: structlog, JSON lines when not on a TTY, readable console lines on one.

Every log line goes through one chain, whether it comes from ``structlog.get_logger()`` or from a
library's stdlib ``logging`` (kafka-python, elasticsearch, httpx, trafilatura):

    contextvars (article_id, ...) -> level, logger, timestamp -> process fields (stage, pid)
    -> stdlib ``extra=`` fields -> exceptions rendered to text -> REDACT -> JSON or console

Redaction runs last, after exceptions are turned into text, so a secret can hide neither in a
message, a field, a URL's user-info nor a traceback. The secrets are the ``SecretStr`` values of
the settings (Elasticsearch API key and password, Kafka SASL password) plus any field whose name
says it is a secret.

Following one article across stages: the runner binds ``article_id`` around each record
(:func:`article_context`), so every line logged while a record is processed carries it, e.g.::

    grep 9f2c...e1 poller.log processor.log indexer.log
"""

from __future__ import annotations

import base64
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from pydantic import SecretStr

from newsflow.settings import Settings

MASK = "**********"

# Field names whose values are never logged, whatever they hold.
_SECRET_KEYS = re.compile(r"(pass(word|wd)?|secret|api_?key|token|authorization|credential)", re.I)
# user:password@ in any URL.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/\s:@]*):(?P<pw>[^/\s@]+)@")

# Libraries that are chatty at INFO; they log at WARNING and above unless we run at DEBUG.
_NOISY = ("kafka", "elastic_transport", "elasticsearch", "httpx", "httpcore", "trafilatura", "htmldate",
          "urllib3", "courlan", "justext")

# Fields every line of this process carries (stage name, pid), set by ``bind_process``.
_PROCESS_FIELDS: dict[str, Any] = {}


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, longest first (so a secret containing another is masked whole).

    Includes the forms a secret takes on the wire, should a library log a request: the base64
    ``user:password`` of an HTTP basic-auth header.
    """
    out = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            out.append(value.get_secret_value())
    if settings.es_username and settings.es_password is not None:
        pair = f"{settings.es_username}:{settings.es_password.get_secret_value()}"
        out.append(base64.b64encode(pair.encode()).decode())
    return sorted(set(out), key=len, reverse=True)


class Redactor:
    """structlog processor (and plain function) that masks secrets anywhere in an event."""

    def __init__(self, secrets: list[str]):
        self.secrets = [s for s in secrets if s]

    def text(self, value: str) -> str:
        for s in self.secrets:
            if s in value:
                value = value.replace(s, MASK)
        return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", value)

    def value(self, value: Any, key: str = "") -> Any:
        if key and _SECRET_KEYS.search(key) and value not in (None, "", MASK):
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, SecretStr):
            return MASK
        if isinstance(value, Mapping):
            return {k: self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple, set)):
            return [self.value(v) for v in value]
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self.text(str(value))

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        return {k: self.value(v, k) for k, v in event.items()}


def _add_process_fields(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    for k, v in _PROCESS_FIELDS.items():
        event.setdefault(k, v)
    return event


def _leading_keys(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """timestamp, level, logger, event first: easier to read as raw JSON lines."""
    head = {k: event.pop(k) for k in ("timestamp", "level", "logger", "event") if k in event}
    return head | event


def bind_process(**fields: Any) -> None:
    """Fields every later log line of this process carries, from any thread (e.g. ``stage``)."""
    _PROCESS_FIELDS.update(fields)


def record_article_id(record: Any) -> str | None:
    """The article id of a Kafka record: its key (every Newsflow topic is keyed by article id)."""
    key = getattr(record, "key", None)
    if not key:
        return None
    return key.decode("ascii", "replace") if isinstance(key, bytes) else str(key)


@contextmanager
def article_context(article_id: str | None, **fields: Any) -> Iterator[None]:
    """Every line logged inside carries ``article_id`` (and ``fields``), in structlog and stdlib loggers."""
    if not article_id:
        with structlog.contextvars.bound_contextvars(**fields):
            yield
        return
    with structlog.contextvars.bound_contextvars(article_id=article_id, **fields):
        yield


def resolve_format(settings: Settings, stream: TextIO) -> str:
    if settings.log_format != "auto":
        return settings.log_format
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty and isatty() else "json"


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging through one redacting chain to ``stream`` (stderr)."""
    stream = stream or sys.stderr
    fmt = resolve_format(settings, stream)
    redact = Redactor(secret_values(settings))
    bind_process(pid=os.getpid())

    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    pre_chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
        _add_process_fields,
    ]
    if fmt == "json":
        renderer: Any = structlog.processors.JSONRenderer(default=str, sort_keys=False)
    else:
        colors = bool(getattr(stream, "isatty", None) and stream.isatty())
        # plain_traceback: the rich default would print local variables (client configs).
        renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)

    formatter = structlog.stdlib.ProcessorFormatter(
        # Lines from stdlib loggers: same fields, plus whatever they passed as ``extra=``.
        foreign_pre_chain=[*pre_chain, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact,
            _leading_keys,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in _NOISY:
        debug = root.level <= logging.DEBUG
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else max(logging.WARNING, root.level))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )

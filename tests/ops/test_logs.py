"""Structured logs: JSON off a TTY, console on one, stdlib routed through structlog, article_id context."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
import structlog

from newsflow.logs import article_context, configure_logging, record_article_id, resolve_format
from newsflow.settings import Settings


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(("setting", "tty", "expected"), [
    ("auto", False, "json"), ("auto", True, "console"), ("json", True, "json"), ("console", False, "console"),
])
def test_format_follows_the_terminal_unless_forced(setting, tty, expected):
    stream = TTY() if tty else io.StringIO()
    assert resolve_format(Settings(log_format=setting), stream) == expected


def test_structlog_and_stdlib_lines_are_json_with_the_same_fields():
    out = io.StringIO()
    configure_logging(Settings(log_format="auto"), stream=out)
    structlog.get_logger("newsflow.x").info("batch delivered", records=3)
    logging.getLogger("kafka.conn").warning("broker %s unreachable", "127.0.0.1:1", extra={"node": 1})
    first, second = lines(out)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["event"] == "batch delivered" and first["records"] == 3 and first["level"] == "info"
    assert second["event"] == "broker 127.0.0.1:1 unreachable" and second["logger"] == "kafka.conn"
    assert second["node"] == 1 and second["level"] == "warning"
    assert first["pid"] == second["pid"]


def test_console_rendering_on_a_tty_is_not_json():
    out = TTY()
    configure_logging(Settings(), stream=out)
    structlog.get_logger("t").info("hello there", n=1)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # colours on a terminal
    assert "hello there" in text and "n=1" in text and "[info" in text
    with pytest.raises(ValueError):
        json.loads(text.splitlines()[0])


def test_library_chatter_below_warning_is_silenced_at_info():
    out = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="INFO"), stream=out)
    logging.getLogger("kafka.client").info("bootstrapping")
    logging.getLogger("newsflow.stage.runner").info("ours")
    assert [r["event"] for r in lines(out)] == ["ours"]


def test_every_line_inside_article_context_carries_the_article_id():
    out = io.StringIO()
    configure_logging(Settings(log_format="json"), stream=out)
    with article_context("a" * 64):
        logging.getLogger("processors.article").warning("no date found")
        structlog.get_logger("x").info("extracted", words=120)
        with article_context("b" * 64):
            structlog.get_logger("x").info("inner")
        structlog.get_logger("x").info("outer again")
    structlog.get_logger("x").info("after")
    got = [(r["event"], r.get("article_id")) for r in lines(out)]
    assert got == [("no date found", "a" * 64), ("extracted", "a" * 64), ("inner", "b" * 64),
                   ("outer again", "a" * 64), ("after", None)]


def test_article_id_of_a_record_is_its_key():
    class Rec:
        key = b"9f2c"

    assert record_article_id(Rec()) == "9f2c"
    Rec.key = None
    assert record_article_id(Rec()) is None

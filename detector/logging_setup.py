"""Logging for the nightly job: readable text on a terminal, one JSON object per line under cron.

Everything goes to stderr so stdout keeps the summary. Records may carry structured fields through
``extra={"fields": {...}}``; the JSON formatter puts them at the top level of the object. Text lines
carry their level (``detector: info: ...``) and, under systemd (``$JOURNAL_STREAM`` set), the
``<N>`` syslog priority prefix journald reads, so ``journalctl -p warning`` filters them. Control
characters in text lines are escaped: log values come from attackers and must not forge lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from detector.terminal import safe_line

LOGGER = "detector"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg and the record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            doc["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(doc, default=str, sort_keys=False)


SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
"""Python levels as syslog priorities (RFC 5424), for journald's ``<N>`` line prefix."""


class TextFormatter(logging.Formatter):
    """``detector: LEVEL: message key=value ...``, one line per record; ``<N>`` first under journald."""

    def __init__(self, *, journald: bool | None = None) -> None:
        super().__init__()
        self.journald = bool(os.environ.get("JOURNAL_STREAM")) if journald is None else journald

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        extra = ""
        if isinstance(fields, dict) and fields:
            extra = " " + " ".join(f"{k}={v}" for k, v in fields.items())
        line = safe_line(f"detector: {record.levelname.lower()}: {record.getMessage()}{extra}")
        if self.journald:
            return f"<{SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now (a progress display may have redirected it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def setup(fmt: str = "text", *, level: int = logging.INFO, stream: TextIO | None = None) -> logging.Logger:
    """Configure the ``detector`` logger (idempotent: replaces handlers set by an earlier call)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}")
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = logging.StreamHandler(stream or _CurrentStderr())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields``."""
    logger.log(level, msg, extra={"fields": fields})


@contextlib.contextmanager
def step(name: str, **fields: Any) -> Iterator[None]:
    """Log a long step of a command when it starts and when it is done (with its seconds) at INFO.

    The commands print these on stderr (``train``, ``evaluate``, ``replay``): what a terminal shows
    as progress and what cron or journald keeps as the run's steps.
    """
    logger = logging.getLogger(LOGGER)
    log(logger, logging.INFO, f"{name} ...", **fields)
    start = time.perf_counter()
    yield
    log(logger, logging.INFO, f"{name} done", step=name, seconds=round(time.perf_counter() - start, 3))


def warn(message: str) -> None:
    """A warning for the user of a command (stderr through the ``detector`` logger)."""
    log(logging.getLogger(LOGGER), logging.WARNING, message)

"""Logging for the nightly job: readable text on a terminal, one JSON object per line under cron.

Everything goes to stderr so stdout keeps the summary. Records may carry structured fields through
``extra={"fields": {...}}``; the JSON formatter puts them at the top level of the object.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from detector.report.terminal import safe

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


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        extra = ""
        if isinstance(fields, dict) and fields:
            extra = " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return safe(f"detector: {record.levelname.lower()}: {record.getMessage()}{extra}")


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

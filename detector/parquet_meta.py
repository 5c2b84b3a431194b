"""Key-value metadata of the Parquet files detector writes: one key prefix, JSON values.

Written by :mod:`detector.report.parquet`, read wherever a published file is read back (an
export of a plan, a replay, a data person's notebook); a module of the common layer so that a
stage reading a report does not import the report stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

META_PREFIX = "detector."


def encode_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """``detector.``-prefixed string values; non-strings become JSON."""
    return {
        f"{META_PREFIX}{k}": v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
        for k, v in meta.items()
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``detector.`` key-value metadata of a report (keys without prefix, JSON decoded)."""
    raw = pq.read_metadata(path).metadata or {}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = k.decode()
        if not key.startswith(META_PREFIX):
            continue
        text = v.decode()
        try:
            out[key[len(META_PREFIX) :]] = json.loads(text)
        except ValueError:
            out[key[len(META_PREFIX) :]] = text
    return out

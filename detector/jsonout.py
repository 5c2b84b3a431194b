"""Machine-readable command output (``--json``): one JSON document on stdout per command.

Result objects are turned into plain JSON values here, so that every command's ``--json`` follows
the same rules: dataclasses become objects, Polars frames lists of row objects (lazy frames are
left out: they are files the command wrote; an object's own ``to_dict`` wins), times ISO 8601 strings, paths strings.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import PurePath
from typing import Any

import polars as pl


def jsonable(x: Any) -> Any:
    """``x`` as JSON values (see the module docstring); NaN and infinities become ``null``."""
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Enum):
        return jsonable(x.value)
    if isinstance(x, datetime | date):
        return x.isoformat()
    if isinstance(x, timedelta):
        return x.total_seconds()
    if isinstance(x, PurePath):
        return str(x)
    if isinstance(x, pl.DataFrame):
        return [jsonable(r) for r in x.iter_rows(named=True)]
    if isinstance(x, pl.Series):
        return jsonable(x.to_list())
    if callable(getattr(x, "to_dict", None)) and not isinstance(x, type):
        return jsonable(x.to_dict())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {
            f.name: jsonable(getattr(x, f.name))
            for f in dataclasses.fields(x)
            if not isinstance(getattr(x, f.name), pl.LazyFrame)
        }
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set | frozenset):
        return [jsonable(v) for v in x]
    return str(x)


def dumps(x: Any) -> str:
    """``x`` as an indented JSON document (UTF-8 text, keys in their order)."""
    return json.dumps(jsonable(x), indent=2, ensure_ascii=False, allow_nan=False)

"""State carried across nights: per-account history, shared-address counts, campaign infrastructure.

A state directory holds Parquet tables and ``state.json``, the commit point: it names each
table's file with its sha256 and row count, the format version and the run that wrote it. Saving
writes new files under a new generation, fsyncs them, then atomically replaces ``state.json``, so a
run killed while saving leaves the previous state whole. Loading verifies the version and every
checksum: a corrupt or incompatible state is a :class:`~detector.errors.StateError`, never a silent
reset. The manifest lists the inputs (by sha256) already folded into the state, so re-running a
night does not count it twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from detector import __version__
from detector.errors import StateError
from detector.schema import UTC_US

STATE_FORMAT = "detector-state"
STATE_VERSION = 1
"""Bumped whenever a table's layout changes; an older or newer state is refused."""
STATE_FILE = "state.json"
LOCK_FILE = ".lock"

MANIFEST_SCHEMA = pl.Schema(
    {
        "sha256": pl.String,
        "path": pl.String,
        "size": pl.Int64,
        "run_id": pl.String,
        "processed_at": UTC_US,
    }
)
"""Inputs already folded into the state, identified by content."""


@dataclass(frozen=True)
class State:
    """What one night hands to the next. Tables are plain frames; the pipeline gives them meaning.

    Attributes:
        history: the detection stage's per-account history (``History.to_frames()``), by name.
        shared: shared-address counts in the enrichment stage's shape.
        campaigns: campaign infrastructure in the detection stage's shape.
        plan: the last run's response plan (``recommendations.parquet`` rows, real names), replayed
            on the next night's logs and compared with its plan.
        manifest: inputs already processed (:data:`MANIFEST_SCHEMA`).
        run_id: the run that wrote this state, ``None`` for a new state.
    """

    history: dict[str, pl.DataFrame] = field(default_factory=dict)
    shared: pl.DataFrame | None = None
    campaigns: pl.DataFrame | None = None
    plan: pl.DataFrame | None = None
    manifest: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MANIFEST_SCHEMA))
    run_id: str | None = None

    @property
    def is_empty(self) -> bool:
        return self.run_id is None

    def processed(self) -> set[str]:
        """sha256 of every input already folded in."""
        return set(self.manifest.get_column("sha256").to_list())

    def with_inputs(self, inputs: list[dict[str, Any]], run_id: str, now: datetime) -> State:
        """The manifest extended with ``inputs`` (dicts with path, size, sha256) not yet in it."""
        seen = self.processed()
        new = [i for i in inputs if i["sha256"] not in seen]
        rows = pl.DataFrame(
            {
                "sha256": [i["sha256"] for i in new],
                "path": [str(i["path"]) for i in new],
                "size": [int(i["size"]) for i in new],
                "run_id": [run_id] * len(new),
                "processed_at": [now] * len(new),
            },
            schema=MANIFEST_SCHEMA,
        )
        return replace(self, manifest=pl.concat([self.manifest, rows]))


def prune(frame: pl.DataFrame, now: datetime, horizon_days: int) -> pl.DataFrame:
    """Drop rows whose newest time column is older than the horizon.

    The time column is the first of ``last_seen``, ``end``, ``processed_at``, ``timestamp`` that the
    frame has; a frame with none of them is kept whole.
    """
    cutoff = now - timedelta(days=horizon_days)
    for name in ("last_seen", "end", "processed_at", "timestamp"):
        if name in frame.columns and isinstance(frame.schema[name], pl.Datetime):
            col = pl.col(name)
            if frame.schema[name].time_zone is None:
                cutoff = cutoff.replace(tzinfo=None)
            return frame.filter(col.is_null() | (col >= cutoff))
    return frame


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def locked(state_dir: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``state_dir`` (created if missing) for one run."""
    d = Path(state_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StateError(f"cannot use state directory: {e.strerror}", path=d) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise StateError("state directory is in use by another run", path=d) from e
        yield d
    finally:
        os.close(fd)


def _tables(state: State) -> dict[str, pl.DataFrame]:
    tables = {f"history.{k}": v for k, v in state.history.items()}
    if state.shared is not None:
        tables["shared"] = state.shared
    if state.campaigns is not None:
        tables["campaigns"] = state.campaigns
    if state.plan is not None:
        tables["plan"] = state.plan
    tables["manifest"] = state.manifest
    return tables


def load_state(state_dir: str | Path) -> State:
    """The state in ``state_dir``; an empty state if the directory has none yet.

    Raises:
        StateError: the state is of another format or version, a file is missing, or a checksum
            does not match.
    """
    d = Path(state_dir)
    index = d / STATE_FILE
    if not index.exists():
        if d.exists() and any(p.suffix == ".parquet" for p in d.iterdir()):
            raise StateError(f"{STATE_FILE} is missing but the directory holds state tables", path=d)
        return State()
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StateError(f"corrupt state index: {e}", path=index) from e
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise StateError("not a detector state", path=index)
    if doc.get("version") != STATE_VERSION:
        raise StateError(
            f"state format version {doc.get('version')!r} is not supported (this detector reads version "
            f"{STATE_VERSION})",
            path=index,
            hint="use the detector version that wrote it, or start a new state directory",
        )
    tables: dict[str, pl.DataFrame] = {}
    for name, entry in doc.get("tables", {}).items():
        path = d / entry["file"]
        if not path.exists():
            raise StateError(f"state table {name} is missing", path=path)
        if _sha256(path) != entry["sha256"]:
            raise StateError(f"state table {name} is corrupt (checksum mismatch)", path=path)
        try:
            tables[name] = pl.read_parquet(path)
        except Exception as e:
            raise StateError(f"state table {name} cannot be read: {e}", path=path) from e
    if "manifest" not in tables:
        raise StateError("state has no manifest", path=index)
    manifest = tables.pop("manifest")
    if manifest.schema != MANIFEST_SCHEMA:
        raise StateError("state manifest has unexpected columns", path=index)
    return State(
        history={k.removeprefix("history."): v for k, v in tables.items() if k.startswith("history.")},
        shared=tables.get("shared"),
        campaigns=tables.get("campaigns"),
        plan=tables.get("plan"),
        manifest=manifest,
        run_id=doc.get("run_id"),
    )


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_state(state_dir: str | Path, state: State, *, run_id: str, now: datetime) -> Path:
    """Write ``state`` atomically into ``state_dir``; returns the path of ``state.json``."""
    d = Path(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    index = d / STATE_FILE
    old_files: set[str] = set()
    generation = 0
    if index.exists():
        with contextlib.suppress(OSError, ValueError):
            old = json.loads(index.read_text(encoding="utf-8"))
            generation = int(old.get("generation", 0))
            old_files = {e["file"] for e in old.get("tables", {}).values()}
    generation += 1
    entries: dict[str, dict[str, Any]] = {}
    for name, frame in _tables(state).items():
        file = f"{name}.g{generation}.parquet"
        path = d / file
        frame.write_parquet(path, compression="zstd")
        with path.open("rb") as f:
            os.fsync(f.fileno())
        entries[name] = {"file": file, "sha256": _sha256(path), "rows": frame.height}
    doc = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "tool_version": __version__,
        "generation": generation,
        "run_id": run_id,
        "updated_at": now.isoformat(),
        "tables": entries,
    }
    tmp = d / f".{STATE_FILE}.{run_id}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, index)
    _fsync_dir(d)
    keep = {e["file"] for e in entries.values()}
    for p in d.glob("*.parquet"):
        if p.name not in keep and (p.name in old_files or ".g" in p.name):
            p.unlink(missing_ok=True)
    return index

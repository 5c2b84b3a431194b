"""State carried across nights: per-account history, shared-address counts, campaign infrastructure.

A state directory holds **generations**, one per night folded in: ``g<N>/`` with the Parquet
tables and ``generation.json`` (each table's file with its sha256 and row count, the format
version, the run that wrote it, the parent generation, the night's window and the sha256 of its
inputs). ``state.json`` is the pointer to the current generation (a copy of its
``generation.json``), replaced in one atomic rename: that rename is where a new state becomes
current (:mod:`detector.publish` makes it part of one transaction with the reports). Loading
verifies the version and every checksum: a corrupt or incompatible state is a
:class:`~detector.errors.StateError`, never a silent reset.

Generations are kept (``[state] generations``) so that re-running a night the state already holds
runs against the generation before that night (:func:`base_for`) and reproduces its reports. Every
file is written with mode 0600 and every directory with 0700, whatever the umask: the state holds
personal data (account names, the addresses they log in from).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from detector import __version__
from detector.errors import DetectorError, OutputError, StateError
from detector.schema import UTC_US, C, Verdict

if TYPE_CHECKING:
    from detector.config import Config
    from detector.features.baseline import History
    from detector.score.verdicts import Scores

STATE_FORMAT = "detector-state"
STATE_VERSION = 1
"""Bumped whenever a table's layout changes; an older or newer state is refused."""
STATE_FILE = "state.json"
GENERATION_FILE = "generation.json"
PENDING_FILE = ".pending.json"
"""Written before a generation is staged, removed once it is current or discarded (see publish)."""
LOCK_FILE = ".lock"
FILE_MODE = 0o600
DIR_MODE = 0o700

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
        generation: the generation it was loaded from (0: a new state).
    """

    history: dict[str, pl.DataFrame] = field(default_factory=dict)
    shared: pl.DataFrame | None = None
    campaigns: pl.DataFrame | None = None
    plan: pl.DataFrame | None = None
    manifest: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MANIFEST_SCHEMA))
    run_id: str | None = None
    generation: int = 0
    """The generation it was loaded from (0: a new state)."""

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


def learnable_events(events: pl.LazyFrame, scores: Scores, cfg: Config) -> pl.LazyFrame:
    """The night's events the state may learn (:func:`detector.features.baseline.learnable`): not the
    attacker's logins into compromised accounts, nor any login from an unshared malicious source (a
    forged or doubtful success). ``scores``: ``accounts`` and ``sources`` with their verdicts."""
    from detector.features.baseline import learnable

    compromised = scores.accounts.lazy().filter(pl.col(C.VERDICT) == Verdict.COMPROMISED)
    attackers = scores.sources.lazy().filter(
        (pl.col(C.VERDICT) == Verdict.MALICIOUS) & ~pl.col("shared_address").fill_null(False)
    )
    return learnable(events, compromised, cfg.scoring.account_compromised, attackers)


def merge_campaigns(previous: pl.DataFrame | None, current: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Campaign infrastructure seen so far: this night's campaigns replace earlier rows of the same id."""
    now = current.collect() if isinstance(current, pl.LazyFrame) else current
    if previous is None or previous.is_empty():
        return now
    keep = previous.filter(~pl.col(C.CAMPAIGN).is_in(now.get_column(C.CAMPAIGN).implode()))
    return pl.concat([keep, now], how="diagonal_relaxed")


def fold_night(
    state: State,
    history: History,
    scores: Scores,
    *,
    events: pl.LazyFrame,
    campaigns: pl.DataFrame,
    plan: pl.DataFrame,
    inputs: list[dict[str, Any]],
    run_id: str,
    now: datetime,
    end: datetime | None,
    cfg: Config,
) -> State:
    """The state after a night: ``state`` (the one the night ran against) with the night folded in.

    The per-account ``history`` and the shared-address counts learn the :func:`learnable_events`
    of the inputs ``state`` does not hold yet (a night run again learns nothing twice); history,
    shared addresses and campaigns (``campaigns``: the night's, replacing earlier rows of the same
    id) are pruned to ``[state] horizon_days`` before ``end`` (the night's last event, else
    ``now``); ``plan`` is kept for the next night's replay; the inputs join the manifest.

    Args:
        state: the state the night was analysed against.
        history: its per-account history (``History.from_frames(state.history)``).
        scores: the night's verdicts (``accounts``, ``sources``).
        events: the night's scored events (with ``source_file``).
        inputs: the night's input manifest (dicts with path, size, sha256).
        now: when the run started (the manifest's ``processed_at``).
    """
    from detector.enrich import merge_shared, shared_address_counts
    from detector.features.baseline import update_history

    seen = state.processed()
    new_paths = [i["path"] for i in inputs if i["sha256"] not in seen]
    shared = state.shared
    if new_paths:
        fresh = learnable_events(events.filter(pl.col(C.SOURCE_FILE).is_in(new_paths)), scores, cfg)
        history = update_history(history, fresh)
        # nor does an attacker's address become one "legitimate users" log in from
        shared = merge_shared(shared_address_counts(fresh), state.shared)
    horizon_end = end or now
    days = cfg.state.horizon_days
    history = history.prune(horizon_end - timedelta(days=days))
    return State(
        history=history.to_frames(),
        shared=prune(shared, horizon_end, days) if shared is not None else None,
        campaigns=prune(merge_campaigns(state.campaigns, campaigns), horizon_end, days),
        plan=plan,
        manifest=state.manifest,
        run_id=run_id,
    ).with_inputs(inputs, run_id, now)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def exclusive(d: Path, lock_name: str, *, what: str, busy: type[DetectorError]) -> Iterator[Path]:
    """Hold an exclusive lock file ``lock_name`` in ``d`` (created 0700 if missing) for one run;
    ``busy`` is raised at once when another run holds it."""
    try:
        private_dir(d)
        fd = os.open(d / lock_name, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as e:
        raise OutputError(f"cannot write the {what}: {e.strerror}", path=d) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise busy(f"{what} is in use by another run", path=d) from e
        yield d
    finally:
        os.close(fd)


def locked(state_dir: str | Path) -> contextlib.AbstractContextManager[Path]:
    """Hold an exclusive lock on ``state_dir`` (created if missing) for one run."""
    return exclusive(Path(state_dir), LOCK_FILE, what="state directory", busy=StateError)


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


def private_dir(d: Path) -> Path:
    """``d`` (and missing parents) created; a directory this creates gets mode 0700 whatever the umask."""
    missing = [p for p in (d, *d.parents) if not p.exists()]
    d.mkdir(parents=True, exist_ok=True)
    for p in missing:
        os.chmod(p, DIR_MODE)
    return d


def write_private(path: Path, text: str) -> None:
    """Write ``path`` atomically (temporary file, fsync, rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written index behind
        raise
    fsync_dir(path.parent)


def _read_doc(index: Path) -> dict[str, Any]:
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
    return doc


def load_state(state_dir: str | Path, generation: int | None = None) -> State:
    """The current state in ``state_dir`` (or the kept ``generation``); empty if the directory has none yet.

    Raises:
        StateError: the state is of another format or version, a file is missing, or a checksum
            does not match.
    """
    d = Path(state_dir)
    index = d / STATE_FILE
    if generation is not None:
        index = d / f"g{generation}" / GENERATION_FILE
        if not index.exists():
            raise StateError(f"state generation {generation} is not kept", path=index.parent)
    if not index.exists():
        if d.exists() and (any(p.suffix == ".parquet" for p in d.iterdir()) or generations(d)):
            raise StateError(f"{STATE_FILE} is missing but the directory holds state tables", path=d)
        return State()
    doc = _read_doc(index)
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
        generation=int(doc.get("generation", 0)),
    )


def fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Generation:
    """What ``generation.json`` says about one kept generation (no tables loaded)."""

    number: int
    parent: int | None
    run_id: str | None
    window_start: datetime | None
    inputs: frozenset[str]


def _generation(doc: dict[str, Any]) -> Generation:
    start = doc.get("window_start")
    parent = doc.get("parent")
    return Generation(
        number=int(doc.get("generation", 0)),
        parent=None if parent is None else int(parent),
        run_id=doc.get("run_id"),
        window_start=datetime.fromisoformat(start) if start else None,
        inputs=frozenset(doc.get("inputs", ())),
    )


def generations(state_dir: str | Path) -> dict[int, Generation]:
    """The kept generations by number, the current one included (also in the layout before generations)."""
    d = Path(state_dir)
    out: dict[int, Generation] = {}
    for index in d.glob(f"g*/{GENERATION_FILE}"):
        with contextlib.suppress(StateError, ValueError, TypeError):
            g = _generation(_read_doc(index))
            out[g.number] = g
    if (d / STATE_FILE).exists():
        g = _generation(_read_doc(d / STATE_FILE))
        out.setdefault(g.number, g)
    return out


@dataclass(frozen=True)
class Base:
    """The state a night runs against (see :func:`base_for`)."""

    number: int | None = None
    """The kept generation to load (0: the empty state); ``None``: the current state."""
    note: str | None = None
    """Why it is not the current state, for the run's warnings."""
    later_nights: bool = False
    """Later nights are folded in after this one: the run publishes its reports, not a state."""


def base_for(state_dir: str | Path, current: State, window_start: datetime | None, inputs: set[str]) -> Base:
    """The generation a night must run against: the state as it was before that night.

    Walks back from the current generation past every generation of the same or a later night
    (its window starts at or after tonight's, or it folded in one of tonight's inputs).

    Raises:
        StateError: the generation before that night is no longer kept.
    """
    if current.is_empty:
        return Base()
    kept = generations(state_dir)
    number: int | None = current.generation
    skipped: list[tuple[int, bool]] = []  # (generation, is it this very night)
    while number is not None and number in kept:
        g = kept[number]
        same = bool(g.inputs & inputs) or (window_start is not None and g.window_start == window_start)
        later = window_start is not None and g.window_start is not None and g.window_start > window_start
        if not (same or later):
            break
        skipped.append((number, same))
        number = g.parent
    if not skipped:
        return Base()
    if number is not None and number not in kept:
        raise StateError(
            f"the state already holds this or a later night (generation {skipped[-1][0]}) and the "
            f"generation before it ({number}) is no longer kept",
            path=state_dir,
            hint="keep more generations ([state] generations), or run without --state",
        )
    base = 0 if number is None else number
    before = f"generation {base}" if base else "the empty state before the first night"
    # only a re-run of the latest night replaces it; an earlier night leaves the later ones in place
    latest = len(skipped) == 1 and skipped[0][1]
    if any(same for _, same in skipped):
        note = f"this night is already in the state: it runs against {before}, as it did the first time"
    else:
        note = f"this night is older than the state's latest: it runs against {before}"
    if not latest:
        note += f"; later nights are in the state, which stays at generation {current.generation}"
    return Base(base, note, later_nights=not latest)


def next_generation(state_dir: str | Path) -> int:
    """A generation number no kept or staged generation uses."""
    d = Path(state_dir)
    used = [0, *generations(d)]
    used += [int(p.name[1:]) for p in d.glob("g*") if p.name[1:].isdigit()]
    return max(used) + 1


def stage_generation(
    state_dir: str | Path,
    state: State,
    *,
    generation: int,
    parent: int | None,
    run_id: str,
    now: datetime,
    window: tuple[datetime | None, datetime | None] = (None, None),
    inputs: list[str] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """Write ``state`` as generation ``generation`` (``g<N>/``, fsynced, mode 0600); return its document.

    The generation is not current until :func:`make_current` points ``state.json`` at it.
    """
    d = Path(state_dir)
    gdir = d / f"g{generation}"
    if gdir.exists():
        shutil.rmtree(gdir)
    private_dir(gdir)
    entries: dict[str, dict[str, Any]] = {}
    for name, frame in _tables(state).items():
        path = gdir / f"{name}.parquet"
        frame.write_parquet(path, compression="zstd")
        os.chmod(path, FILE_MODE)
        with path.open("rb") as f:
            os.fsync(f.fileno())
        entries[name] = {"file": f"{gdir.name}/{path.name}", "sha256": _sha256(path), "rows": frame.height}
    doc = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "tool_version": __version__,
        "generation": generation,
        "parent": parent or None,
        "run_id": run_id,
        "updated_at": now.isoformat(),
        "window_start": window[0].isoformat() if window[0] else None,
        "window_end": window[1].isoformat() if window[1] else None,
        "inputs": sorted(set(inputs)),
        "tables": entries,
    }
    write_private(gdir / GENERATION_FILE, json.dumps(doc, indent=2, sort_keys=True))
    fsync_dir(d)
    return doc


def make_current(state_dir: str | Path, doc: dict[str, Any]) -> None:
    """Point ``state.json`` at the generation ``doc`` describes (one atomic rename)."""
    write_private(Path(state_dir) / STATE_FILE, json.dumps(doc, indent=2, sort_keys=True))


def retain(state_dir: str | Path, keep: int) -> list[int]:
    """Keep the current generation and its ``keep - 1`` nearest ancestors; delete the rest; return those deleted.

    Ancestors, not the newest numbers: a re-run night's replaced generation is a sibling, and the
    generation a re-run of the latest night needs is the current one's parent. Tables of the
    layout before generations (``name.gN.parquet`` beside ``state.json``) that the current index
    does not name are deleted too.
    """
    d = Path(state_dir)
    index = d / STATE_FILE
    current = json.loads(index.read_text(encoding="utf-8")) if index.exists() else {}
    named = {e["file"] for e in current.get("tables", {}).values()}
    for p in d.glob("*.parquet"):
        if p.name not in named and ".g" in p.name:
            p.unlink(missing_ok=True)
    kept = generations(d)
    chain: list[int] = []
    number = current.get("generation")
    while number is not None and number in kept and len(chain) < keep:
        chain.append(number)
        number = kept[number].parent
    numbers = [int(p.name[1:]) for p in d.glob("g*") if p.name[1:].isdigit()]
    gone = sorted(n for n in numbers if n not in chain)
    for n in gone:
        shutil.rmtree(d / f"g{n}", ignore_errors=True)
    return gone


def save_state(
    state_dir: str | Path,
    state: State,
    *,
    run_id: str,
    now: datetime,
    keep: int = 8,
    parent: int | None = None,
) -> Path:
    """Write ``state`` as a new generation and make it current; returns the path of ``state.json``.

    For library use and tests; ``detector run`` stages the generation and commits it with the
    reports (:mod:`detector.publish`).
    """
    d = private_dir(Path(state_dir))
    number = next_generation(d)
    if parent is None:
        parent = state.generation or None
    doc = stage_generation(d, state, generation=number, parent=parent, run_id=run_id, now=now)
    make_current(d, doc)
    retain(d, keep)
    return d / STATE_FILE

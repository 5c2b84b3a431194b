"""Log ingestion: files -> canonical events (see docs/ingest.md).

``ingest(paths, cfg, work_dir)`` streams every input in batches of ``cfg.chunk_bytes``:
read (``sources``) -> envelope (``envelope``) -> the registered parsers (``registry``) ->
``correlate`` -> events appended to ``work_dir/events.parquet`` one row group per batch, so memory
stays bounded. Lines that are not events are counted as noise by kind or quarantined with their
file, line number and reason; nothing is dropped silently.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import Counter, deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc

from detector.config import IngestConfig
from detector.errors import ConfigError, InputError, did_you_mean
from detector.ingest import correlate as corr
from detector.ingest import kernel, registry
from detector.ingest.copies import drop_copies, unique_contents
from detector.ingest.envelope import ENVELOPE_OK, advance_year, parse_envelope
from detector.ingest.fields import OUTPUT_SCHEMA
from detector.ingest.logouts import STAGED, LogoutPairing
from detector.ingest.registry import ENVELOPE_SCHEMA, KIND
from detector.ingest.screen import screen
from detector.ingest.sources import (
    RAW_CUT,
    InputFile,
    ReadLog,
    expand,
    file_sha256,
    read_lines,
    read_table,
)
from detector.schema import EVENT_SCHEMA, QUARANTINE_SCHEMA, C
from detector.workers import available_cores

__all__ = ["IngestResult", "ingest", "ingest_to_parquet"]

PRIVATE = (corr.STAGE, corr.QID, corr.SMTPD)
HEAD_PARSERS = 2
"""The first registered parsers (Dovecot, Postfix), whose claims are cheap and take most lines."""
CARRY = timedelta(seconds=300)
"""Rows of a batch later than its last stamp minus this wait for the next batch before being
correlated for good (longest gap between lines of one attempt we join)."""


@dataclass(frozen=True)
class IngestResult:
    """What ingestion produced and observed."""

    events: pl.LazyFrame
    events_path: Path
    quarantine: pl.DataFrame
    noise: dict[str, int]
    inputs: list[tuple[str, int | None, str]]
    lines_read: int
    warnings: list[str]
    elapsed: float
    event_count: int = 0
    claimed: int = 0
    quarantined: int = 0
    """Lines quarantined, including any beyond the rows kept in ``quarantine``."""

    def to_dict(self) -> dict[str, Any]:
        """What ``ingest --json`` prints: counts, not rows (the events are in ``events_path``)."""
        grp = self.events.group_by(C.DAEMON, C.ACTION, C.OUTCOME).agg(pl.len().alias("n")).collect()
        reasons = (
            self.quarantine.group_by("reason").agg(pl.len()).sort("len", "reason", descending=[True, False])
        )
        return {
            "events_path": str(self.events_path),
            "lines_read": self.lines_read,
            "inputs": [{"path": p, "size": size, "sha256": sha} for p, size, sha in self.inputs],
            "events": int(grp["n"].sum()),
            "by_kind": [
                {"daemon": d, "action": a, "outcome": o, "events": n}
                for d, a, o, n in grp.sort(
                    "n", "daemon", "action", "outcome", descending=[True, False, False, False]
                ).iter_rows()
            ],
            "noise": dict(sorted(self.noise.items())),
            "quarantined": max(self.quarantined, len(self.quarantine)),
            "quarantine_reasons": dict(reasons.iter_rows()),
            "warnings": list(self.warnings),
            "elapsed_seconds": round(self.elapsed, 3),
        }

    def summary_text(self) -> str:
        grp = (
            self.events.group_by(C.DAEMON, C.ACTION, C.OUTCOME)
            .agg(pl.len().alias("n"))
            .sort("n", descending=True)
            .collect()
        )
        out = [
            f"lines read     {self.lines_read:>12,} from {len(self.inputs)} input(s)",
            f"events         {int(grp['n'].sum()):>12,}",
        ]
        for d, a, o, n in grp.iter_rows():
            out.append(f"  {d or '-'}/{a or '-'}/{o or '-':<22} {n:>10,}")
        out.append(f"noise          {sum(self.noise.values()):>12,}")
        for k, n in sorted(self.noise.items(), key=lambda kv: (-kv[1], kv[0]))[:8]:
            out.append(f"  {k:<32} {n:>10,}")
        out.append(f"quarantined    {max(self.quarantined, len(self.quarantine)):>12,}")
        if len(self.quarantine):
            for r, n in (
                self.quarantine.group_by("reason").agg(pl.len()).sort("len", descending=True).iter_rows()
            ):
                out.append(f"  {r:<32} {n:>10,}")
        for w in self.warnings[:10]:
            out.append(f"warning: {w}")
        rate = self.lines_read / self.elapsed if self.elapsed > 0 else 0.0
        out.append(f"time           {self.elapsed:>11.2f}s ({rate:,.0f} lines/s)")
        return "\n".join(out)


@dataclass
class _Run:
    cfg: IngestConfig
    writer: _EventWriter
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    quarantined: int = 0
    """Quarantined lines seen; only the first QUARANTINE_KEEP are kept with their text."""
    noise: Counter = field(default_factory=Counter)
    lines: int = 0
    claimed: int = 0
    rid: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    text_bytes: int | None = None
    """Size of the text inputs on disk (None where one is stdin): whether the kernel pays off."""
    processes: Executor | None = None
    """Worker processes parsing batches (``workers`` > 1 on a large input), else None (threads)."""
    parse_workers: int = 0
    """How many (with ``processes``)."""


DICTIONARY_COLUMNS = (
    C.HOST,
    C.DAEMON,
    C.SERVICE,
    C.ACTION,
    C.OUTCOME,
    C.AUTH_METHOD,
    C.REASON,
    C.SOURCE_FILE,
)
"""Event columns of few distinct values, dictionary-encoded in the Parquet output."""


WRITER_OPTIONS: dict[str, Any] = {
    "compression": "lz4",
    # statistics on the sort key only (row-group skipping by time); on every column they were a
    # third of the writing time. Dictionary encoding only where values repeat (hashing
    # addresses, sessions and stamps was a third of what was left)
    "write_statistics": [C.TIMESTAMP],
    "use_dictionary": list(DICTIONARY_COLUMNS),
}


class _EventWriter:
    """Appends event batches; remembers whether time order held across batches. Logins and open
    logouts of parsed text go to ``pairing`` (filled in :meth:`close`).

    The batches are staged as Arrow IPC (lz4) beside ``path`` and written once as Parquet by the
    pairing's pass at the end, which fills the logouts: encoding Parquet twice (once as batches
    came, once more to fill the logouts) was a fifth of ingestion's CPU on an IMAP log."""

    def __init__(self, path: Path, pairing: LogoutPairing) -> None:
        self.path = path
        self.staged = path.with_name(f".{path.stem}{STAGED}")
        self.pairing = pairing
        self.writer: pa.ipc.RecordBatchFileWriter | None = None
        self.last: datetime | None = None
        self.ordered = True
        self.count = 0
        self.arrow_schema = pl.DataFrame(schema=EVENT_SCHEMA).to_arrow().schema

    def write(self, df: pl.DataFrame, *, pair: bool = False) -> None:
        if df.is_empty():
            return
        # time order; ties in file line order (a batch holds the lines of one file)
        if not _in_order(df):
            df = df.sort(C.TIMESTAMP, C.LINE_NUMBER, maintain_order=True, nulls_last=True)
        first, last = df[C.TIMESTAMP].min(), df[C.TIMESTAMP].max()
        if self.last is not None and first is not None and first < self.last:
            self.ordered = False
        if last is not None and (self.last is None or last > self.last):
            self.last = last
        if self.writer is None:
            self.writer = pa.ipc.new_file(self.staged, self.arrow_schema, options=STAGING_OPTIONS)
        if pair:
            self.pairing.record(df, self.count)
        # one record batch per call: it becomes one row group of the Parquet file
        self.writer.write_table(df.to_arrow().cast(self.arrow_schema).combine_chunks())
        self.count += len(df)

    def close(self) -> None:
        if self.writer is None:
            self.pairing.discard()
            pl.DataFrame(schema=EVENT_SCHEMA).write_parquet(self.path)
            return
        self.writer.close()
        try:
            self.pairing.apply(self.staged, self.arrow_schema, WRITER_OPTIONS, out=self.path, rows=self.count)
        finally:
            self.staged.unlink(missing_ok=True)
        if not self.ordered:
            tmp = self.path.with_suffix(".unsorted.parquet")
            os.replace(self.path, tmp)
            pl.scan_parquet(tmp).sort(C.TIMESTAMP, maintain_order=True, nulls_last=True).sink_parquet(
                self.path
            )
            tmp.unlink()


def _in_order(df: pl.DataFrame) -> bool:
    """Rows already in (time, line) order, so sorting them would change nothing: times ascending
    without nulls and line numbers ascending. A batch of one file in time order is (both bench
    profiles: every batch), and checking costs a tenth of the sort."""
    ts = df[C.TIMESTAMP]
    return ts.null_count() == 0 and ts.is_sorted() and df[C.LINE_NUMBER].is_sorted()


STAGING_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
"""The staged events: lz4 about 2.4x the size of the Parquet file on disk, where no compression
was 8x (a night of a large provider is tens of GiB of staging then)."""


def ingest(
    paths: list[str] | tuple[str, ...], cfg: IngestConfig, work_dir: Path, *, workers: int = 1
) -> IngestResult:
    """Parse ``paths`` into canonical events at ``work_dir/events.parquet`` (see module doc).

    With ``workers`` > 1 the batches of a large input are parsed in that many worker processes;
    correlation and writing stay in this one, in batch order, so the result is the same whatever
    the number (with a fixed ``year`` too: the reader hands each batch the New Year state it
    starts from, :func:`envelope.advance_year`). 0 (``[engine] workers``' default, "the cores
    available") parses in this process, and so does any count on fewer than
    :data:`PROCESS_MIN_CORES` cores (see there)."""
    started = time.perf_counter()
    _check_timezone(cfg.timezone)
    files, warnings = unique_contents(expand(list(paths)))
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(
        cfg, _EventWriter(work_dir / "events.parquet", LogoutPairing(work_dir, cfg.pairing_memory_bytes))
    )
    sizes = [inp.size for inp in files if not inp.is_table]
    run.text_bytes = None if any(size is None for size in sizes) else sum(sizes)
    n = workers or 1
    big = run.text_bytes is None or run.text_bytes >= PROCESS_MIN_BYTES
    try:
        if n > 1 and big and available_cores() >= PROCESS_MIN_CORES:
            run.parse_workers = n
            with _processes(n) as run.processes:
                return _ingest(files, warnings, run, started)
        return _ingest(files, warnings, run, started)
    finally:
        run.processes = None
        run.writer.pairing.discard()


PROCESS_MIN_BYTES = 64 * 1024 * 1024
"""Text input below which ``workers`` > 1 still parses in this process: starting a worker (Python,
polars, the kernel) costs more than it saves."""


PROCESS_MIN_CORES = 8
"""Cores below which ``workers`` > 1 still parses in this process's threads. Parse workers take
only the parsing (about a third of a line's CPU); reading, correlating, writing and the pairing stay
in the job's process, which with two parse workers spent as much CPU as one process on its own
(2M IMAP-profile lines, ``--year 2026``, load 15: job's process 7.1 CPU s + workers 7.2 against
7.7 in one process): the batches' text out and their events back are pickled, and each worker
loads polars and the kernel. This process's threads already parse two batches at once beside the
thread that correlates and writes, so on 2 cores the workers only add CPU. The threshold was
not measured (no machine with more cores): the workers can pay only where the parsing threads,
not the job's serial part, are what waits."""


def _processes(n: int) -> ProcessPoolExecutor:
    """``n`` worker processes (spawned: polars' threads do not survive a fork), each with a
    share of the cores for polars."""
    import multiprocessing

    threads = max(1, available_cores() // n)
    return ProcessPoolExecutor(
        max_workers=n,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_start,
        initargs=(threads,),
    )


def _worker_start(threads: int) -> None:
    # before polars' thread pool starts (it starts on first use, not on import)
    os.environ["POLARS_MAX_THREADS"] = str(threads)


def _ingest(files: list[InputFile], warnings: list[str], run: _Run, started: float) -> IngestResult:
    inputs: list[tuple[str, int | None, str]] = []
    tables = 0
    for inp in files:
        if inp.is_table:
            df = _screen_table(read_table(inp).collect(), inp.path, run)
            run.writer.write(df)
            run.lines += len(df)
            tables += 1
            inputs.append((inp.path, inp.size, file_sha256(inp.path)))
            continue
        log = ReadLog()
        _ingest_text(inp, run, log)
        inputs.append((inp.path, log.bytes_read if inp.path == "-" else inp.size, log.sha256))
        warnings.extend(log.warnings)
        if log.quarantine:
            _add_quarantine(run, pl.DataFrame(log.quarantine, schema=QUARANTINE_SCHEMA))
        if log.lines == 0:
            warnings.append(f"{inp.path}: empty input (0 lines)")
    run.writer.close()
    if len(files) - tables > 1:
        from detector.ingest.across import join_across_files

        copied = drop_copies(run.writer.path)
        if copied:
            run.writer.count -= copied
            run.noise["noise:copy"] += copied
            warnings.append(
                f"{copied:,} event(s) logged in two files (mail.log and mail.warn/mail.err) counted once"
            )

        merged = join_across_files(run.writer.path)
        run.writer.count -= merged
        if merged:
            run.noise["noise:merged"] += merged
    quarantine = (
        pl.concat(run.quarantine, how="vertical")
        if run.quarantine
        else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    )
    text_lines = run.lines
    if run.claimed == 0 and tables == 0 and text_lines > 0:
        first = quarantine.filter(pl.col("reason") != "truncated_archive").head(1)
        where = f" (first: {first[C.SOURCE_FILE][0]}:{first[C.LINE_NUMBER][0]})" if len(first) else ""
        raise InputError(f"no recognisable mail log line in {text_lines:,} line(s){where}")
    if run.quarantined > quarantine.height:
        warnings.append(
            f"{run.quarantined:,} lines quarantined; the first {quarantine.height:,} are kept in the quarantine file"
        )
    bad = quarantine.filter(pl.col("reason") == "invalid_utf8").height
    if bad:
        warnings.append(f"{bad:,} line(s) with invalid UTF-8 quarantined")
    return IngestResult(
        events=pl.scan_parquet(run.writer.path),
        events_path=run.writer.path,
        quarantine=quarantine,
        noise=dict(run.noise),
        inputs=inputs,
        lines_read=run.lines,
        warnings=warnings,
        elapsed=time.perf_counter() - started,
        event_count=run.writer.count,
        claimed=run.claimed,
        quarantined=run.quarantined,
    )


def _screen_table(df: pl.DataFrame, path: str, run: _Run) -> pl.DataFrame:
    """A table of events passes the same screen as parsed lines: rows with an invalid address are
    quarantined (located by table path and 1-based row), control characters in accounts escaped."""
    out, reason = screen(df.with_columns(pl.lit("event").alias(KIND)))
    bad = reason.is_not_null()
    if bad.any():
        rows = out.with_row_index("_row", offset=1).filter(bad)
        q = rows.select(
            pl.lit(path).alias(C.SOURCE_FILE),
            pl.col("_row").cast(pl.Int64).alias(C.LINE_NUMBER),
            pl.concat_str(
                [pl.lit("source_ip="), pl.col(C.SOURCE_IP), pl.lit(" local_ip="), pl.col(C.LOCAL_IP)],
                ignore_nulls=True,
            )
            .str.slice(0, RAW_CUT)
            .alias(C.RAW),
        ).with_columns(reason.filter(bad).alias("reason"))
        _add_quarantine(run, q.select(QUARANTINE_SCHEMA.names()).cast(dict(QUARANTINE_SCHEMA)))
    return out.filter(~bad).drop(KIND)


def _check_timezone(name: str) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        hint = did_you_mean(name, zoneinfo.available_timezones())
        raise ConfigError(f"unknown time zone {name!r}", hint=hint) from e


ENGINE = "in-memory"
"""Engine of the per-batch collects: the same speed as the streaming engine on a batch, and 10-20 ms
less set-up per collect (a third of the fixed cost of a batch)."""
PARSE_WORKERS = 2
"""Batches parsed at once (polars and the kernel release the GIL)."""
AHEAD = 1
"""Batches read and queued beyond those being parsed."""


@dataclass
class _Effects:
    """What parsing one batch adds to the run, applied in batch order by the settling thread."""

    quarantine: list[pl.DataFrame] = field(default_factory=list)
    noise: Counter = field(default_factory=Counter)
    claimed: int = 0


def _ingest_text(inp: InputFile, run: _Run, log: ReadLog) -> None:
    """Read, parse and settle the batches of one input as a pipeline: the main thread reads,
    worker threads parse the next batches (polars releases the GIL) and one more thread
    correlates and writes batch k meanwhile (pyarrow's writer releases it too).
    Parsing has no side effect on the run: its quarantine, noise and row ids are applied by the
    settling thread in batch order, one batch after the other, so results do not depend on the
    overlap. With a fixed year the reader moves the New Year state past each batch before it is
    parsed (:func:`envelope.advance_year`), and a batch that crosses no New Year (nor follows a
    crossing) goes through the kernel with its limit at the end of that year, which reads every
    stamp in it; the others go through the envelope with the state they start from."""
    years: dict = {}
    year_end = _year_end(run.cfg.year, run.cfg.timezone) if run.cfg.year is not None else None
    carry: list[pl.DataFrame | None] = [None]

    def settle(parsed: Future) -> None:
        carry[0] = _settle(_applied(run, *parsed.result()), carry[0], run, final=False)

    workers = PARSE_WORKERS
    threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-parse")
    pool: Executor = threads
    if run.processes is not None:
        pool, workers = run.processes, run.parse_workers
    with (
        threads,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-settle") as settling,
    ):
        waiting: deque[Future] = deque()
        fast: bool | None = None
        for batch in read_lines(inp, run.cfg.chunk_bytes, run.cfg.max_line_bytes, log):
            run.lines += len(batch)
            if fast is None:
                fast = kernel.wanted(run.cfg.kernel, batch, run.text_bytes)
            state: dict = {}
            steady = True
            if year_end is not None:
                long = batch[C.RAW].str.len_bytes() > run.cfg.max_line_bytes
                state, steady = advance_year(batch[C.RAW].filter(~long), years)
            parse = partial(_parse_batch, fast=fast and steady, limit=year_end)
            waiting.append(settling.submit(settle, pool.submit(parse, batch, inp, run.cfg, state)))
            del batch
            if len(waiting) > workers + AHEAD:
                waiting.popleft().result()
        while waiting:
            waiting.popleft().result()
    pending = carry[0]
    if pending is not None and not pending.is_empty():
        _settle(pending.clear(), pending, run, final=True)


QUARANTINE_KEEP = 1_000_000
"""Quarantine rows kept in memory and written; beyond, lines are counted (bounded memory on junk)."""


def _add_quarantine(run: _Run, rows: pl.DataFrame) -> None:
    with run.lock:
        room = QUARANTINE_KEEP - min(run.quarantined, QUARANTINE_KEEP)
        run.quarantined += len(rows)
        if room > 0:
            run.quarantine.append(rows.head(room))


def _quarantine(rows: pl.DataFrame, reason: pl.Expr) -> pl.DataFrame:
    return rows.select(
        C.SOURCE_FILE,
        C.LINE_NUMBER,
        reason.alias("reason"),
        pl.col(C.RAW).str.slice(0, RAW_CUT).alias(C.RAW),
    )


def _applied(run: _Run, parsed: pl.DataFrame, fx: _Effects) -> pl.DataFrame:
    """Apply a parsed batch's effects to the run and number its rows (in batch order)."""
    for rows in fx.quarantine:
        _add_quarantine(run, rows)
    run.noise.update(fx.noise)
    run.claimed += fx.claimed
    parsed = parsed.with_columns(pl.int_range(run.rid, run.rid + len(parsed), dtype=pl.Int64).alias(corr.RID))
    run.rid += len(parsed)
    return parsed


def _year_end(year: int, timezone: str) -> datetime:
    """The kernel's reference for a fixed ``year``: its limit (a day later) is the year's last
    second, so every RFC 3164 stamp reads as in ``year``."""
    import zoneinfo

    return datetime(year, 12, 30, 23, 59, 59, tzinfo=zoneinfo.ZoneInfo(timezone))


def _parse_batch(
    batch: pl.DataFrame,
    inp: InputFile,
    cfg: IngestConfig,
    state: dict,
    *,
    fast: bool = False,
    limit: datetime | None = None,
) -> tuple[pl.DataFrame, _Effects]:
    """One batch's events and effects. ``state``: the fixed year's state it starts from (see
    :func:`envelope.advance_year`; the batch's own copy); ``limit``: the kernel's reference with a
    fixed year (else the file's modification time)."""
    fx = _Effects()
    long = pl.col(C.RAW).str.len_bytes() > cfg.max_line_bytes
    too_long = batch.filter(long)
    if not too_long.is_empty():
        fx.quarantine.append(_quarantine(too_long, pl.lit("too_long")))
        batch = batch.filter(~long)
    taken = None
    if fast and not batch.is_empty():
        # the compiled fast path takes the lines it fully recognises; the rest go on below
        reference = inp.mtime if limit is None else limit
        taken, batch = kernel.split(
            batch, timezone=cfg.timezone, reference=reference, private=PRIVATE, claimable=_may_claim()
        )
        fx.noise.update(taken.noise)
        fx.claimed += taken.lines
        if batch.is_empty():
            return taken.events, fx
    # the raw text is not carried through the envelope (a copy of the batch's text per batch):
    # the quarantine takes it from the batch by line number
    raws = batch.select(C.LINE_NUMBER, C.RAW)
    env = (
        parse_envelope(
            batch.lazy(), timezone=cfg.timezone, year=cfg.year, reference=inp.mtime, year_state=state
        )
        .drop(C.RAW)
        .collect(engine=ENGINE)
    )
    del batch
    ok = env[ENVELOPE_OK]
    if not ok.all():
        bad_env = env.filter(~ok).select(C.SOURCE_FILE, C.LINE_NUMBER, "invalid_utf8")
        bad_env = bad_env.join(raws, on=C.LINE_NUMBER, how="left", maintain_order="left")
        reason = pl.when(pl.col("invalid_utf8")).then(pl.lit("invalid_utf8")).otherwise(pl.lit("no_envelope"))
        fx.quarantine.append(_quarantine(bad_env, reason))
        env = env.filter(ok)
    outs = []
    registered = registry.parsers()  # not `parsers`: importing the subpackage rebinds that name
    # the first parsers (Dovecot, Postfix: cheap claims, most lines) split the batch in one
    # partition; the others' claims run only on what is left, one after the other
    head, tail = registered[:HEAD_PARSERS], registered[HEAD_PARSERS:]
    which = pl.lit(None, pl.Int32)
    for i, p in reversed(list(enumerate(head))):
        which = pl.when(p.claims()).then(pl.lit(i, pl.Int32)).otherwise(which)
    parts = env.with_columns(_p=which).partition_by("_p", as_dict=True, include_key=False)
    unclaimed = parts.pop((None,), env.clear())
    bad_lines = env.filter(pl.col("invalid_utf8"))[C.LINE_NUMBER]
    del env  # the parts hold a copy
    jobs = [(head[key[0]], part) for key, part in parts.items()]
    remaining = _claim_tail(unclaimed, tail, jobs)
    for p, part in jobs:
        fx.claimed += len(part)
        out = p.parse(part.lazy().select(ENVELOPE_SCHEMA.names()))
        have = _output_names(p, out)
        out = out.select(
            [pl.col(n).cast(t) for n, t in OUTPUT_SCHEMA.items()]
            + [(pl.col(k) if k in have else pl.lit(None)).cast(pl.String).alias(k) for k in PRIVATE]
        )
        outs.append(out)
    _count_unclaimed(remaining, raws, fx)
    del parts, jobs, unclaimed, remaining  # the plans in ``outs`` hold what they read
    if not outs:
        if taken is not None:
            return taken.events, fx
        return pl.DataFrame(schema={**OUTPUT_SCHEMA, **dict.fromkeys(PRIVATE, pl.String)}), fx
    done = pl.collect_all(outs, engine=ENGINE)
    del outs
    kept = [_sort_out(done.pop(0), bad_lines, raws, fx) for _ in range(len(done))]
    if taken is not None:
        kept.insert(0, taken.events)
    return pl.concat(kept, how="vertical"), fx


_OUTPUT_NAMES: dict[str, frozenset[str]] = {}


def _output_names(parser: registry.LineParser, out: pl.LazyFrame) -> frozenset[str]:
    """The columns of ``parser``'s output plan: the same for every batch (its input always has the
    envelope columns), so resolved once (about a millisecond for a plan of a few hundred nodes)."""
    names = _OUTPUT_NAMES.get(parser.name)
    if names is None:
        names = _OUTPUT_NAMES[parser.name] = frozenset(out.collect_schema().names())
    return names


def _may_claim() -> pl.Expr:
    """The lines some parser may claim, as this module dispatches them: a head parser's claims or
    the others' pre-test (every line where one of them has none). The kernel counts the other
    programs' lines that fail it as ``noise:unclaimed``, as :func:`_parse_batch` would."""
    registered = registry.parsers()
    head, tail = registered[:HEAD_PARSERS], registered[HEAD_PARSERS:]
    test = registry.pretest(tail)
    if test is None:
        return pl.lit(True)
    return pl.any_horizontal([p.claims().fill_null(False) for p in head] + [test.fill_null(False)])


def _claim_tail(rows: pl.DataFrame, tail: tuple, jobs: list) -> pl.DataFrame:
    """Offer ``rows`` to the ``tail`` parsers' claims one after the other (appending (parser, rows)
    to ``jobs``); return the rows none claims, in their order. Only rows that pass the parsers'
    pre-test (program name, message shape) are offered: sshd or cron lines skip a dozen claims."""
    test = registry.pretest(tail)
    if test is None or rows.is_empty():
        offered = rows
    else:
        rows = rows.with_row_index("_i")
        offered = rows.filter(test)
    taken = []
    for p in tail:
        if offered.is_empty():
            break
        mask = offered.select(p.claims().fill_null(False)).to_series()
        if not mask.any():
            continue
        part = offered.filter(mask)
        jobs.append((p, part.drop("_i", strict=False)))
        taken.append(part)
        offered = offered.filter(~mask)
    if test is None or rows.is_empty():
        return offered
    if taken:
        ids = pl.concat([t.select("_i") for t in taken])["_i"]
        rows = rows.filter(~pl.col("_i").is_in(ids.implode()))
    return rows.drop("_i")


def _sort_out(out: pl.DataFrame, bad_lines: pl.Series, raws: pl.DataFrame, fx: _Effects) -> pl.DataFrame:
    """One parser's rows: unparsed, ambiguous and invalid-address lines (:func:`screen`) and
    invalid UTF-8 go to the quarantine, noise that no join can need is counted now, the rest is
    returned. Masks first, then one filter of the wide frame."""
    out, reason = screen(out)
    kind = out[KIND]
    is_event = kind == "event"
    bad = reason.is_not_null()
    if len(bad_lines):
        invalid = out[C.LINE_NUMBER].is_in(bad_lines.implode())
        bad = bad | (invalid & ~is_event)
        reason = reason.scatter((invalid & ~is_event).arg_true(), "invalid_utf8")
    if bad.any():
        q = (
            out.filter(bad)
            .select(C.SOURCE_FILE, C.LINE_NUMBER)
            .with_columns(reason.filter(bad).alias("reason"))
        )
        q = q.join(raws, on=C.LINE_NUMBER, how="left", maintain_order="left")
        fx.quarantine.append(_quarantine(q, pl.col("reason")))
    is_event = is_event & ~bad
    done = ~bad & ~is_event & out[corr.STAGE].is_null()
    for k, n in kind.filter(done).value_counts().iter_rows():
        fx.noise[k] += n
    return out.filter(~bad & ~done)


def _count_unclaimed(unclaimed: pl.DataFrame, raws: pl.DataFrame, fx: _Effects) -> None:
    if unclaimed.is_empty():
        return
    bad = unclaimed.filter(pl.col("invalid_utf8"))
    if not bad.is_empty():
        bad = bad.select(C.SOURCE_FILE, C.LINE_NUMBER).join(raws, on=C.LINE_NUMBER, how="left")
        fx.quarantine.append(_quarantine(bad, pl.lit("invalid_utf8")))
    n = len(unclaimed) - len(bad)
    if n:
        fx.noise["noise:unclaimed"] += n


def _settle(parsed: pl.DataFrame, pending: pl.DataFrame | None, run: _Run, *, final: bool) -> pl.DataFrame:
    """Correlate ``pending`` + ``parsed``; write what is settled, return what must wait."""
    rows = parsed if pending is None or pending.is_empty() else pl.concat([pending, parsed], how="vertical")
    if rows.is_empty():
        return rows
    out = corr.correlate(rows)
    if final:
        wait = pl.repeat(False, len(out), dtype=pl.Boolean, eager=True)
    else:
        cutoff = rows[C.TIMESTAMP].max() - CARRY
        # rows that may still be joined wait, and so do later events, so that batches are
        # written in time order; noise is counted at once
        waiting = pl.col(corr.STAGE).is_not_null() | (pl.col(KIND) == "event")
        wait = out.select(waiting & (pl.coalesce(corr.PARTNER, C.TIMESTAMP) > cutoff)).to_series()
    # masks on the narrow columns, one filter of the wide frame
    kind = out[KIND]
    is_event = kind == "event"
    run.writer.write(out.filter(is_event & ~wait).select(EVENT_SCHEMA.names()), pair=True)
    noise = kind.filter(~is_event & ~wait).value_counts()
    with run.lock:
        for k, n in noise.iter_rows():
            run.noise[k] += n
    waiting_ids = out[corr.RID].filter(wait)
    return rows.filter(pl.col(corr.RID).is_in(waiting_ids.implode()))


def ingest_to_parquet(
    paths: list[str] | tuple[str, ...], out: Path | str, cfg: IngestConfig, *, workers: int = 1
) -> IngestResult:
    """Ingest ``paths`` into ``out`` (written under a temporary name, then renamed) and the
    quarantine into ``<out stem>.quarantine.parquet`` next to it.

    The canonical events are not the run's ``events.parquet`` (scored, with the enrichment and
    detection columns): writing them under that name into a run's report directory is refused, and
    under that name elsewhere gives a warning.

    Raises:
        InputError: ``out`` is the ``events.parquet`` of a run's report directory.
    """
    out = Path(out)
    clash = out.name == RUN_EVENTS
    if clash and (out.parent / "summary.json").exists():
        raise InputError(
            "refusing to overwrite a run's scored events with canonical events",
            path=out,
            hint=f"write them elsewhere, e.g. --out {out.parent / CANONICAL_NAME}",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        result = ingest(paths, cfg, Path(tmp), workers=workers)
        os.chmod(result.events_path, 0o600)  # account names and addresses: personal data
        os.replace(result.events_path, out)
    qpath = out.with_name(f"{out.stem}.quarantine.parquet")
    qtmp = qpath.with_name(f".{qpath.name}.tmp")
    result.quarantine.write_parquet(qtmp)
    os.chmod(qtmp, 0o600)
    os.replace(qtmp, qpath)
    warnings = list(result.warnings)
    if clash:
        warnings.append(
            f"{out} holds canonical events, not the scored events a run writes under this name "
            f"(name it {CANONICAL_NAME}, as the docs do)"
        )
    return replace(result, events=pl.scan_parquet(out), events_path=out, warnings=warnings)


RUN_EVENTS = "events.parquet"
"""The name of a run's scored events report (``detector run``), which ingest's output is not."""
CANONICAL_NAME = "canonical.parquet"
"""The name the docs give ingest's output."""

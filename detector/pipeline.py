"""The nightly job: ingest -> enrich -> detect -> score -> recommend -> report, with state across nights.

:func:`run` is the one orchestrator. It stages every output (the reports in ``OUT/.tmp-<run id>/``,
the night's state generation in ``STATE/g<N>/``) and publishes them together in one transaction
(:mod:`detector.publish`): a run that fails or is killed before the commit point leaves the
previous reports and state intact, one killed after it is finished by the next run, so reports
and state always come from the same night. Stage results are not kept on long-lived objects:
everything a run produced is in its :class:`RunResult`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import resource
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from detector import __version__, schema
from detector.config import Config
from detector.engine import default_model_path as default_model_path
from detector.engine import night_window
from detector.errors import ConfigError, DetectorError, InputError, RunFailed, unwritable
from detector.logging_setup import LOGGER, log
from detector.publish import JOURNAL, commit, locked_out, recover_out, recover_state
from detector.report import contract
from detector.report.parquet import write_batches, write_parquet
from detector.schema import C, Verdict
from detector.state import State
from detector.workers import Workers, cpu_seconds, in_process, task_cpu_seconds

if TYPE_CHECKING:
    from detector.detect import Detection
    from detector.engine import Analysis
    from detector.enrich import GeoIPDatabases
    from detector.features.baseline import History
    from detector.ingest import IngestResult
    from detector.recommend.overrides import Override
    from detector.recommend.replay import ReplayResult
    from detector.report.pseudonymize import Pseudonymizer
    from detector.score import Scores

STEPS: tuple[str, ...] = (
    "inputs",
    "ingest",
    "enrich",
    "detect",
    "score",
    "events",
    "recommend",
    "replay",
    "reports",
    "state",
    "publish",
)
"""The steps of a run, in order (progress callbacks receive these names; a run that fails names
the step in its error). ``inputs`` reads and checks everything but the logs (state, model, GeoIP,
directory, overrides, labels) before the long steps; ``enrich``, ``detect`` and ``score`` are
:func:`detector.engine.analyse`'s."""

Window = tuple[datetime | None, datetime | None]
"""The first and last timestamp of a night's events (``None``: no event)."""

ENGINES = ("local", "spark")
"""Where the analysis runs: this process, or Spark (:mod:`detector.spark`)."""

EVENT_ROW_GROUP = 64 * 1024
"""Rows per row group of events.parquet (a row group is gathered in memory before it is written)."""


@dataclass(frozen=True)
class FailOn:
    """When a night needs attention (exit code 3): ``compromised``, ``targeted``, or a risk threshold."""

    verdicts: tuple[str, ...] = ()
    threshold: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> FailOn | None:
        if text is None:
            return None
        t = text.strip().lower()
        if t == "compromised":
            return cls(verdicts=(Verdict.COMPROMISED,))
        if t == "targeted":
            return cls(verdicts=(Verdict.COMPROMISED, Verdict.TARGETED))
        try:
            value = float(t)
        except ValueError:
            raise ConfigError(
                f"--fail-on must be compromised, targeted or a risk threshold in [0, 1], got {text!r}"
            ) from None
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"--fail-on threshold must be in [0, 1], got {value}")
        return cls(threshold=value)

    def check(self, accounts: pl.DataFrame) -> str | None:
        """Why the night needs attention, or ``None``."""
        if self.verdicts:
            counts = accounts.filter(pl.col(C.VERDICT).is_in(self.verdicts)).group_by(C.VERDICT).len()
            found = {r[C.VERDICT]: r["len"] for r in counts.iter_rows(named=True)}
            if found:
                return ", ".join(f"{n} {v}" for v, n in sorted(found.items()))
            return None
        assert self.threshold is not None
        n = accounts.filter(pl.col(C.RISK_SCORE) >= self.threshold).height
        return f"{n} accounts with risk >= {self.threshold:g}" if n else None

    def describe(self) -> str:
        if self.threshold is not None:
            return f"risk>={self.threshold:g}"
        return "targeted" if Verdict.TARGETED in self.verdicts else "compromised"


@dataclass(frozen=True)
class RunResult:
    """What a finished run published."""

    run_id: str
    out_dir: Path
    files: tuple[Path, ...]
    summary: dict[str, Any]
    attention: str | None = None
    """Why the night needs attention under ``fail_on`` (``None``: it does not, or no ``fail_on``)."""
    warnings: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    state_generation: int | None = None
    """The state generation published with the reports (``None``: no ``--state``, or a night re-run
    after later ones, which publishes reports only)."""

    @property
    def exit_code(self) -> int:
        return 3 if self.attention else 0


@dataclass(frozen=True)
class RunOptions:
    """What a run reads besides its logs, fixed for the run (:func:`run`'s keyword arguments)."""

    state_dir: Path | None = None
    practitioners: Path | None = None
    geoip_dir: Path | None = None
    model_path: Path | None = None
    cfg: Config = field(default_factory=Config)
    fail_on: FailOn | None = None
    pseudonymize_key: str | None = None
    labels: Path | None = None
    overrides: Path | None = None
    engine: str = "local"
    spark_master: str | None = None


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


class _Steps:
    """Times each step, logs it, tells the progress callback, and knows the step running (or the
    one that failed)."""

    def __init__(self, logger: logging.Logger, progress: Callable[[str], None] | None) -> None:
        self.logger = logger
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.current: str | None = None

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.current = name
        if self.progress is not None:
            self.progress(name)
        start = time.perf_counter()
        cpu, tasks = cpu_seconds(), task_cpu_seconds()
        yield
        took = time.perf_counter() - start
        self.timings[name] = round(took, 3)
        # the process's peak resident memory so far (MiB): the step that raises it is the one to shrink
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        # CPU seconds of this process and of its worker processes during the step, and of its
        # per-shard tasks wherever they ran: the rest of this process's is the step's serial part
        main, children = (round(b - a, 2) for a, b in zip(cpu, cpu_seconds(), strict=True))
        log(
            self.logger, logging.INFO, f"{name} done", step=name, seconds=round(took, 3), peak_rss_mib=peak,
            cpu_s=main, workers_cpu_s=children, shard_tasks_cpu_s=round(task_cpu_seconds() - tasks, 2),
        )  # fmt: skip


def _frame(x: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return x.collect() if isinstance(x, pl.LazyFrame) else x


def _conform(df: pl.DataFrame | pl.LazyFrame, columns: tuple[schema.Column, ...]) -> pl.LazyFrame:
    return schema.conform(df.lazy(), pl.Schema(schema.dtypes(columns)))


def _inputs_meta(inputs: Sequence[Any]) -> list[dict[str, Any]]:
    """Ingestion's input manifest (``(path, size, sha256)`` tuples) as JSON-ready dicts."""
    out = []
    for i in inputs:
        path, size, sha = (i.path, i.size, i.sha256) if hasattr(i, "sha256") else tuple(i)
        out.append({"path": str(path), "size": None if size is None else int(size), "sha256": str(sha)})
    return out


TEXT_COLUMNS = ("reason", "reasons", "evidence")
"""Free-text report columns that may name accounts."""
ENTITY_COLUMNS = {
    "recommendations.parquet": ("target_type", "target"),
    "collateral.parquet": ("target_type", "target"),
    "findings.parquet": ("entity_type", "entity"),
}
"""(type column, value column) pairs whose value is an account where the type says so."""


def _pseudonymize_tables(tables: dict[str, pl.DataFrame], pseudo: Pseudonymizer) -> dict[str, pl.DataFrame]:
    """Replace account names in every report table: account columns, entity columns and free text."""
    pseudo.learn(tables["accounts.parquet"].get_column(C.ACCOUNT).to_list())
    for name, (kind, value) in ENTITY_COLUMNS.items():
        df = tables[name]
        pseudo.learn(df.filter(pl.col(kind) == "account").get_column(value).to_list())
    out: dict[str, pl.DataFrame] = {}
    for name, df in tables.items():
        exprs = []
        for col, dtype in df.schema.items():
            if col == C.ACCOUNT:
                exprs.append(pseudo.column(col))
            elif col == C.RAW:
                exprs.append(pl.lit(None, dtype=pl.String).alias(col))
            elif col in TEXT_COLUMNS and dtype == pl.String:
                exprs.append(pseudo.text(pl.col(col)).alias(col))
            elif col in TEXT_COLUMNS and dtype == pl.List(pl.String):
                exprs.append(pseudo.text_list(col))
        if name in ENTITY_COLUMNS:
            kind, value = ENTITY_COLUMNS[name]
            exprs.append(
                pl.when(pl.col(kind) == "account")
                .then(pseudo.column(value))
                .otherwise(pl.col(value))
                .alias(value)
            )
        out[name] = df.with_columns(exprs) if exprs else df
    return out


def run(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    state_dir: str | Path | None = None,
    practitioners: str | Path | None = None,
    geoip_dir: str | Path | None = None,
    model_path: str | Path | None = None,
    cfg: Config | None = None,
    fail_on: str | FailOn | None = None,
    pseudonymize_key: str | None = None,
    labels: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    overrides: str | Path | None = None,
    engine: str = "local",
    spark_master: str | None = None,
) -> RunResult:
    """Run the nightly job on ``paths`` and publish its reports in ``out_dir``.

    Args:
        paths: log files, directories, globs.
        out_dir: where the reports go (created if missing).
        state_dir: state carried across nights; ``None`` analyses the input window alone.
        practitioners: the practitioner directory (CSV), if any.
        geoip_dir: GeoIP databases; ``None`` searches where enrichment looks.
        model_path: the scoring model; ``None`` uses the shipped default.
        cfg: the effective configuration.
        fail_on: ``compromised``, ``targeted`` or a risk threshold: sets ``RunResult.attention``.
        pseudonymize_key: replace account names in the reports with keyed hashes.
        labels: ground-truth incidents for the replay comparison (otherwise the tool's verdicts).
        overrides: operators' overrides of measures (``detector.recommend.overrides``; ``None``:
            ``/etc/detector/overrides.toml`` if it exists), applied to the plan and audited.
        progress: called with each step name (:data:`STEPS`) as it starts.
        clock: the wall clock (tests).
        engine: ``local`` (this process) or ``spark`` (:mod:`detector.spark`: the same functions
            run as Spark tasks; the state and the reports stay with this process).
        spark_master: the Spark master URL (``None``: ``spark-submit``'s, else ``local[2]``).

    Raises:
        DetectorError: bad input, configuration, model or state (exit 2), or RunFailed (exit 1,
            naming the step that failed).
    """
    opts = RunOptions(
        state_dir=_path(state_dir), practitioners=_path(practitioners), geoip_dir=_path(geoip_dir),
        model_path=_path(model_path), cfg=cfg or Config(),
        fail_on=fail_on if isinstance(fail_on, FailOn) or fail_on is None else FailOn.parse(fail_on),
        pseudonymize_key=pseudonymize_key, labels=_path(labels), overrides=_path(overrides),
        engine=engine, spark_master=spark_master,
    )  # fmt: skip
    clock = clock or (lambda: datetime.now(UTC))
    started = clock()
    run_id = new_run_id(started)
    logger = logging.getLogger(LOGGER)
    steps = _Steps(logger, progress)
    out = Path(out_dir)
    if not paths:
        raise InputError("no input paths given")
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    from detector.state import locked, private_dir

    with locked_out(out):
        finished = recover_out(out)
        if finished:
            log(
                logger,
                logging.WARNING,
                f"finished the publication of run {finished}, killed after its commit point",
            )
        for stale in out.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = out / f".tmp-{run_id}"
        night = _Night(run_id, started, out, staging, logger, steps, writing=[out], warnings=[])
        try:
            private_dir(staging)
            with contextlib.ExitStack() as stack:
                if opts.state_dir is not None:
                    stack.enter_context(locked(opts.state_dir))
                    stack.callback(_roll_back, opts.state_dir, out)
                return _run(paths, opts, night)
        except DetectorError as e:
            e.step = e.step or steps.current
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            if os.environ.get("DETECTOR_DEBUG"):
                raise
            if (out / JOURNAL).exists():
                raise RunFailed(
                    f"publication interrupted after its commit point ({type(e).__name__}: {e}); the next "
                    "run on this output directory finishes it",
                    path=out / JOURNAL,
                ) from e
            failed = unwritable(e, night.writing[-1])
            if failed is None:
                where = f" in step {steps.current}" if steps.current else ""
                failed = RunFailed(f"run failed{where}, previous reports kept: {type(e).__name__}: {e}")
            failed.step = steps.current
            raise failed from e
        finally:
            if not (out / JOURNAL).exists():  # after the commit point the next run needs the staged files
                shutil.rmtree(staging, ignore_errors=True)


def _path(p: str | Path | None) -> Path | None:
    return None if p is None else Path(p)


def _roll_back(state_dir: Path, out: Path) -> None:
    """After a run, under the state lock: delete a generation it staged but never committed."""
    from detector.publish import recover_state

    if not (out / JOURNAL).exists():
        with contextlib.suppress(DetectorError, OSError):
            recover_state(state_dir, own_out=out)


FIRST_NIGHT = (
    "no history yet (a first night, or no --state): the plan cannot tell an owner's home address from "
    "a proxy an attacker borrowed, nor which networks a targeted account really uses, so first-night "
    "plans refuse more legitimate logins and stop fewer takeovers; keep --state, or build it first "
    "from the previous days' logs (docs/operations.md)"
)
"""The run's warning when the baseline history is empty (measured: docs/response-plan.md)."""


@dataclass(frozen=True)
class _Night:
    """One run: its identity, where it stages its files, and what its steps share.

    ``writing``: the directory the current step writes to (the last one), named when it cannot be
    written; ``warnings``: the run's warnings so far, in order (they go into the summary)."""

    run_id: str
    started: datetime
    out: Path
    staging: Path
    logger: logging.Logger
    step: _Steps
    writing: list[Path]
    warnings: list[str]

    def warn(self, *messages: str) -> None:
        for w in messages:
            log(self.logger, logging.WARNING, w)
        self.warnings.extend(messages)


@dataclass(frozen=True)
class _Inputs:
    """Everything a run reads besides the logs, read and checked before the long steps."""

    state: State
    model_file: Path
    geoip: GeoIPDatabases
    directory: pl.DataFrame | None
    overrides: list[Override]
    labels: pl.DataFrame | None
    spark: Any = None
    """The Spark session (``--engine spark``), else ``None``."""


@dataclass(frozen=True)
class _Events:
    """The scored events as published (``events.parquet``, staged) and the reports' metadata."""

    events: pl.LazyFrame
    count: int
    end: datetime | None
    meta: dict[str, Any]
    scores: Scores
    detection: Detection
    pseudo: Pseudonymizer | None
    """Pseudonyms of the accounts named in the events, for the tables' free text (``None``: real names)."""
    shards: tuple[Path, ...] = ()
    """The scored events per account shard (``scored-<k>.parquet``, each sorted by ``event_id``,
    real account names), which the later steps' per-shard tasks read; empty: not scored per shard."""
    written: Future[int] | None = None
    """``events.parquet`` being encoded in a thread (with worker processes): :meth:`wait` before
    reading ``events``."""

    def wait(self, night: _Night) -> None:
        """Wait for ``events.parquet``; a failure there fails the run in step ``events``."""
        if self.written is None:
            return
        try:
            rows = self.written.result()
        except BaseException:
            night.step.current = "events"
            raise
        assert rows == self.count, (rows, self.count)


@dataclass(frozen=True)
class _Plan:
    plan: pl.DataFrame
    collateral: pl.DataFrame
    audit: pl.DataFrame


def _run(paths: Sequence[str | Path], opts: RunOptions, night: _Night) -> RunResult:
    """The steps of :data:`STEPS`, each a function of what the steps before it returned."""
    # scikit-learn's OpenMP threads (the event model predicts on two) sleep while they wait instead
    # of spinning: on a busy machine spinning doubled the prediction's CPU and wall time. Read when
    # scikit-learn loads, so set before the first import; a value in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    log(night.logger, logging.INFO, "run started", run_id=night.run_id, inputs=len(paths), out=str(night.out))
    inputs = _read_inputs(opts, night)
    # the workers run the per-shard part of every step from detection to the replay
    with _workers(paths, inputs, opts, night) as workers:
        ingested, window = _ingest(paths, inputs, opts, night)
        analysis, history = _analyse(ingested, window, inputs, opts, night, workers)
        scored = _write_events(analysis, ingested, inputs, opts, night, workers)
        prior = analysis.prior
        del analysis  # detection's and scoring's in-memory frames: the later steps read events.parquet
        planned = _recommend(scored, history, inputs, opts, night, workers)
        state = prior.state
        comparison, replay_kind = _replay(state, scored, planned.plan, inputs, opts, night, workers)
        scored.wait(night)  # before the workers it may use close
    tables, summary, attention = _reports(
        scored, planned, ingested, state, comparison, replay_kind, opts, night
    )
    generation = None
    if opts.state_dir is not None and not prior.later_nights:
        generation = _fold(
            opts.state_dir, state, history, scored, tables, planned.plan, ingested, window, opts, night
        )
    files = _publish(opts, night, generation)
    log(
        night.logger,
        logging.INFO,
        "run finished",
        run_id=night.run_id,
        attention=attention,
        **night.step.timings,
    )
    return RunResult(
        run_id=night.run_id,
        out_dir=night.out,
        files=files,
        summary=summary,
        attention=attention,
        warnings=tuple(night.warnings),
        timings=night.step.timings,
        state_generation=generation["generation"] if generation else None,
    )


def _read_inputs(opts: RunOptions, night: _Night) -> _Inputs:
    """Everything that can be wrong with the inputs but the logs, checked before the long steps."""
    from detector.enrich import find_databases, load_practitioners
    from detector.labels import read_labels
    from detector.recommend.overrides import read_overrides
    from detector.score.io import check_model
    from detector.state import load_state

    with night.step("inputs"):
        if opts.state_dir is not None:
            settled = recover_state(opts.state_dir, own_out=night.out)
            if settled:
                log(night.logger, logging.WARNING, settled)
        model_file = opts.model_path if opts.model_path is not None else default_model_path()
        check_model(model_file)  # file, card, checksum, versions; the model loads beside detection
        geo_dir = str(opts.geoip_dir) if opts.geoip_dir is not None else opts.cfg.enrich.geoip_dir
        spark = None
        if opts.engine == "spark":  # before the long steps: no PySpark or no Java is bad usage (exit 2)
            from detector import spark as spark_engine

            spark = spark_engine.session(opts.spark_master)
        return _Inputs(
            state=load_state(opts.state_dir) if opts.state_dir is not None else State(),
            model_file=model_file,
            geoip=find_databases(geo_dir),
            directory=load_practitioners(opts.practitioners) if opts.practitioners is not None else None,
            overrides=read_overrides(opts.overrides),
            labels=read_labels(opts.labels) if opts.labels is not None else None,
            spark=spark,
        )


def _workers(paths: Sequence[str | Path], inputs: _Inputs, opts: RunOptions, night: _Night) -> Workers:
    """The analysis' worker processes, started before ingestion when the night is large enough for
    several shards (their start overlaps ingestion). Spark runs its own (none here)."""
    if inputs.spark is not None:
        return in_process()
    from detector.engine import early_workers

    return early_workers(opts.cfg, night.staging / "work", paths)


def _ingest(
    paths: Sequence[str | Path], inputs: _Inputs, opts: RunOptions, night: _Night
) -> tuple[IngestResult, Window]:
    """The night's events (and its first and last timestamp)."""
    from detector.ingest import ingest

    with night.step("ingest"):
        if inputs.spark is None:
            ingested = ingest(
                [str(p) for p in paths],
                opts.cfg.ingest,
                night.staging / "work",
                workers=opts.cfg.engine.workers,
            )
        else:
            from detector import spark as spark_engine

            ingested = spark_engine.ingest(inputs.spark, paths, opts.cfg.ingest, night.staging / "work")
        window = night_window(ingested.events)
    night.warnings.extend(ingested.warnings)
    return ingested, window


def _analyse(
    ingested: IngestResult,
    window: Window,
    inputs: _Inputs,
    opts: RunOptions,
    night: _Night,
    workers: Workers | None = None,
) -> tuple[Analysis, History]:
    """enrich -> features -> detect -> score: the one analysis every command runs (detector.engine),
    against the state as it was before the night; detection per account shard, in files under the
    staging directory (small nights: in memory)."""
    from detector.engine import analyse, digests, prior_for
    from detector.enrich import NO_DIRECTORY

    prior = None
    if opts.state_dir is not None:
        # a night the state already holds runs against the generation before it (same reports)
        prior = prior_for(opts.state_dir, inputs.state, window[0], set(digests(ingested.inputs)))
        if prior.note is not None:
            night.warnings.append(prior.note)
    if inputs.spark is None:
        analysis = analyse(
            ingested.events, opts.cfg, work_dir=night.staging / "work", prior=prior, geoip=inputs.geoip,
            practitioners=inputs.directory, model=inputs.model_file, step=night.step, workers=workers,
        )  # fmt: skip
    else:
        from detector import spark as spark_engine

        analysis = spark_engine.analyse(
            inputs.spark, ingested.events_path, opts.cfg, work_dir=night.staging / "work", prior=prior,
            geoip=inputs.geoip, practitioners=inputs.directory, model=inputs.model_file, step=night.step,
        )  # fmt: skip
    history = analysis.prior.history
    night.warnings.extend(analysis.warnings)
    if inputs.directory is None:
        night.warnings.append(NO_DIRECTORY)
    if not history.n_accounts:
        night.warnings.append(FIRST_NIGHT)
    for w in night.warnings:
        log(night.logger, logging.WARNING, w)
    return analysis, history


def _write_events(
    analysis: Analysis,
    ingested: IngestResult,
    inputs: _Inputs,
    opts: RunOptions,
    night: _Night,
    workers: Workers | None = None,
) -> _Events:
    """``events.parquet`` streamed in event order, one batch per shard in memory; the reports' metadata.

    Scored per shard, each shard's events are finished in the workers (``scored-<k>.parquet``,
    :mod:`detector.report.events`) and this process merges them into the one file."""
    from detector.report import events as shard_events
    from detector.report.pseudonymize import Pseudonymizer

    assert analysis.scores is not None and analysis.detection is not None
    scores, staging = analysis.scores, night.staging
    pseudo = Pseudonymizer(opts.pseudonymize_key) if opts.pseudonymize_key else None
    with night.step("events"):
        meta: dict[str, Any] = {
            contract.Meta.TOOL_VERSION: __version__,
            contract.Meta.REPORT_VERSION: contract.REPORT_VERSION,
            contract.Meta.SCHEMA_VERSION: schema.SCHEMA_VERSION,
            contract.Meta.RUN_ID: night.run_id,
            contract.Meta.CREATED_AT: night.started.isoformat(),
            contract.Meta.INPUTS: _inputs_meta(ingested.inputs),
            contract.Meta.MODEL_ID: getattr(analysis.model, "model_id", inputs.model_file.name),
            contract.Meta.MODEL_CARD_SHA256: getattr(analysis.model, "card_sha256", None),
            contract.Meta.GEOIP: analysis.enrich_metadata,
            contract.Meta.CONFIG_SHA256: opts.cfg.digest(),
            contract.Meta.PSEUDONYMIZED: "true" if pseudo else "false",
        }
        columns = contract.BY_NAME["events.parquet"].columns()
        scored = _conform(scores.events, columns)
        events_schema = scored.collect_schema()
        shards: tuple[shard_events.ScoredShard, ...] = ()
        if scores.shards:
            shards = shard_events.scored_shards(
                scores, events_schema, staging / "work", workers or in_process()
            )
            start, end = shard_events.window(shards)
            batches: Iterator[pl.DataFrame] = shard_events.in_order(
                shards, staging / "work", workers or in_process()
            )
        else:
            start, end = night_window(scored)
            batches = (_conform(b, columns).collect() for b in scores.batches([c.name for c in columns]))
        meta[contract.Meta.WINDOW_START] = start.isoformat() if start else None
        meta[contract.Meta.WINDOW_END] = end.isoformat() if end else None
        events_meta = {**meta, contract.Meta.REPORT: "events.parquet"}
        raw_events = staging / ("work/events.parquet" if pseudo else "events.parquet")
        encode = functools.partial(
            _encode_events,
            batches,
            events_schema,
            raw_events,
            events_meta,
            pseudo,
            staging / "events.parquet",
        )
        written: Future[int] | None = None
        if shards and workers is not None and workers.parallel:
            # encoded in a thread while the plan's and the replay's tasks run (they read the
            # scored shards, not events.parquet); the later steps wait for it (_Events.wait)
            writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events-writer")
            written = writer.submit(encode)
            writer.shutdown(wait=False)  # the thread ends with its one task
            n_events = sum(s.rows for s in shards)
        else:
            n_events = encode()
        for detection, risk in scores.shards:  # the scored shards hold what the later steps read
            detection.unlink(missing_ok=True)
            risk.unlink(missing_ok=True)
        events = pl.scan_parquet(raw_events)
    # the later steps read the scored events from disk, not the in-memory frames of detection and
    # scoring (every event, about 100 columns)
    return _Events(
        events=events,
        count=n_events,
        end=end,
        meta=meta,
        scores=dataclasses.replace(scores, events=events, shards=()),
        detection=dataclasses.replace(analysis.detection, events=events, shards=()),
        pseudo=pseudo,
        shards=tuple(s.path for s in shards),
        written=written,
    )


def _encode_events(
    batches: Iterator[pl.DataFrame],
    events_schema: pl.Schema,
    raw_events: Path,
    meta: dict[str, Any],
    pseudo: Any,
    published: Path,
) -> int:
    """``events.parquet`` from the scored events in event order (and its pseudonymized copy)."""
    n_events = write_batches(batches, events_schema, raw_events, meta, EVENT_ROW_GROUP)
    if pseudo:
        events = pl.scan_parquet(raw_events)
        write_parquet(events.with_columns(pseudo.column(C.ACCOUNT)), published, meta)
    return n_events


def _recommend(
    scored: _Events,
    history: History,
    inputs: _Inputs,
    opts: RunOptions,
    night: _Night,
    workers: Workers | None = None,
) -> _Plan:
    """The plan with its collateral, the operators' overrides applied (audited); its tables of
    logins built per shard in the workers."""
    from detector.recommend import recommend
    from detector.recommend.history import known_networks
    from detector.recommend.overrides import apply_overrides
    from detector.recommend.plan import collateral_table

    with night.step("recommend"):
        now = scored.end or night.started
        guarded: list[str] = []  # blocks the plan's guards refused (docs/security.md)
        plan, collateral = collateral_table(
            recommend(
                scored.scores, scored.detection, opts.cfg, now,
                # networks the accounts used on earlier nights (the history before tonight's update)
                known_networks=known_networks(history), warnings=guarded, with_collateral=True,
                shards=scored.shards, workers=workers,
            ),
            _frame(scored.scores.accounts),
        )  # fmt: skip
        # operators' lifts and extensions (in force at the wall-clock time of the run), audited
        plan, audit = apply_overrides(plan, inputs.overrides, night.started)
        collateral = collateral.filter(pl.col("measure_id").is_in(plan.get_column("measure_id").implode()))
    night.warn(*guarded)
    return _Plan(plan, collateral, audit)


def _replay(
    state: State,
    scored: _Events,
    plan: pl.DataFrame,
    inputs: _Inputs,
    opts: RunOptions,
    night: _Night,
    workers: Workers | None = None,
) -> tuple[ReplayResult | None, str]:
    """With a state, last night's plan on tonight's logs (what the plan is worth a day later); else
    the plan on the logs it was built from. A night without events has nothing to replay; one
    scored per shard and judged by the tool's verdicts replays per shard in the workers."""
    from detector.recommend import replay
    from detector.recommend.replay import replay_shards

    replayed, kind = (state.plan, "next_day") if state.plan is not None else (plan, "same_day")
    with night.step("replay"):
        if not scored.count:
            comparison = None
        elif scored.shards and inputs.labels is None:
            comparison = replay_shards(replayed, scored.shards, opts.cfg, workers)
        else:
            scored.wait(night)
            comparison = replay(replayed, scored.events, inputs.labels, opts.cfg)
    return comparison, kind


def _reports(
    scored: _Events,
    planned: _Plan,
    ingested: IngestResult,
    state: State,
    comparison: ReplayResult | None,
    replay_kind: str,
    opts: RunOptions,
    night: _Night,
) -> tuple[dict[str, pl.DataFrame], dict[str, Any], str | None]:
    """The report tables (pseudonymized if asked), the staged reports and summary, and whether the
    night needs attention under ``fail_on``."""
    from detector.detect.campaigns import with_history
    from detector.report import RunData, write_reports

    rule = opts.fail_on
    with night.step("reports"):
        scores, detection = scored.scores, scored.detection
        tables = {
            "accounts.parquet": _frame(_conform(scores.accounts, schema.ACCOUNT_COLUMNS)),
            "sources.parquet": _frame(_conform(scores.sources, schema.SOURCE_COLUMNS)),
            "recommendations.parquet": _frame(_conform(planned.plan, schema.RECOMMENDATION_COLUMNS)),
            "findings.parquet": _frame(
                _conform(detection.findings, contract.BY_NAME["findings.parquet"].columns())
            ),
            "collateral.parquet": planned.collateral,
            "campaigns.parquet": _frame(
                _conform(
                    with_history(_frame(detection.campaigns), state.campaigns),
                    contract.BY_NAME["campaigns.parquet"].columns(),
                )
            ),
            "quarantine.parquet": _frame(_conform(ingested.quarantine, schema.QUARANTINE_COLUMNS)),
        }
        if scored.pseudo is not None:
            tables = _pseudonymize_tables(tables, scored.pseudo)
        attention = rule.check(tables["accounts.parquet"]) if rule else None
        data = RunData(
            meta=scored.meta,
            events=pl.scan_parquet(night.staging / "events.parquet"),
            tables=tables,
            lines_read=int(ingested.lines_read),
            noise=dict(ingested.noise),
            replay=comparison,
            replay_labelled=getattr(comparison, "truth", None) == "labels",
            replay_kind=replay_kind,
            overrides=planned.audit,
            previous_plan=state.plan,
            warnings=tuple(night.warnings),
            fail_on=rule.describe() if rule else None,
            attention=attention,
        )
        summary = write_reports(data, night.staging)
    return tables, summary, attention


def _fold(
    state_dir: Path,
    state: State,
    history: History,
    scored: _Events,
    tables: dict[str, pl.DataFrame],
    plan: pl.DataFrame,
    ingested: IngestResult,
    window: Window,
    opts: RunOptions,
    night: _Night,
) -> dict[str, Any]:
    """The night folded into the state it ran against (:func:`detector.state.fold_night`), staged as
    the state's next generation; returns the generation's record."""
    from detector.publish import announce
    from detector.state import fold_night, next_generation, stage_generation

    night.writing.append(state_dir)
    inputs = _inputs_meta(ingested.inputs)
    with night.step("state"):
        if state.processed() >= {i["sha256"] for i in inputs}:
            log(night.logger, logging.INFO, "inputs already in the state: history not updated again")
        folded = fold_night(
            state, history, scored.scores, events=scored.events, campaigns=tables["campaigns.parquet"],
            plan=plan, inputs=inputs, run_id=night.run_id, now=night.started, end=scored.end, cfg=opts.cfg,
        )  # fmt: skip
        number = next_generation(state_dir)
        announce(state_dir, run_id=night.run_id, generation=number, out_dir=night.out)
        generation = stage_generation(
            state_dir, folded, generation=number, parent=state.generation or None, run_id=night.run_id,
            now=night.started, window=window, inputs=[i["sha256"] for i in inputs],
        )  # fmt: skip
    night.writing.pop()
    return generation


def _publish(opts: RunOptions, night: _Night, generation: dict[str, Any] | None) -> tuple[Path, ...]:
    """Reports and state generation published as one transaction; then old generations dropped."""
    from detector.state import retain

    with night.step("publish"):
        files = commit(
            night.out, night.staging, contract.ALL_FILES, run_id=night.run_id, state_dir=opts.state_dir,
            generation=generation,
        )  # fmt: skip
    if opts.state_dir is not None:
        try:
            retain(opts.state_dir, opts.cfg.state.generations)
        except OSError as e:  # the night is published; the next run retries
            log(
                night.logger,
                logging.WARNING,
                f"cannot delete old state generations: {e.strerror}",
                path=str(opts.state_dir),
            )
    return files

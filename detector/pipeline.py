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
import logging
import os
import resource
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from detector import __version__, schema
from detector.config import Config
from detector.engine import default_model_path as default_model_path
from detector.engine import night_window
from detector.errors import ConfigError, DetectorError, InputError, RunFailed, unwritable
from detector.logging_setup import LOGGER, log
from detector.publish import JOURNAL, commit, locked_out, recover_out
from detector.report import contract
from detector.report.parquet import write_batches, write_parquet
from detector.schema import C

STEPS: tuple[str, ...] = (
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
"""The steps of a run, in order (progress callbacks receive these names)."""

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
            return cls(verdicts=("compromised",))
        if t == "targeted":
            return cls(verdicts=("compromised", "targeted"))
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
            counts = accounts.filter(pl.col("verdict").is_in(self.verdicts)).group_by("verdict").len()
            found = {r["verdict"]: r["len"] for r in counts.iter_rows(named=True)}
            if found:
                return ", ".join(f"{n} {v}" for v, n in sorted(found.items()))
            return None
        assert self.threshold is not None
        n = accounts.filter(pl.col(C.RISK_SCORE) >= self.threshold).height
        return f"{n} accounts with risk >= {self.threshold:g}" if n else None

    def describe(self) -> str:
        if self.threshold is not None:
            return f"risk>={self.threshold:g}"
        return "targeted" if "targeted" in self.verdicts else "compromised"


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


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


class _Steps:
    """Times each step, logs it, and tells the progress callback."""

    def __init__(self, logger: logging.Logger, progress: Callable[[str], None] | None) -> None:
        self.logger = logger
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.progress is not None:
            self.progress(name)
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start
        self.timings[name] = round(took, 3)
        # the process's peak resident memory so far (MiB): the step that raises it is the one to shrink
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        log(self.logger, logging.INFO, f"{name} done", step=name, seconds=round(took, 3), peak_rss_mib=peak)


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


def _pseudonymize_tables(tables: dict[str, pl.DataFrame], pseudo: Any) -> dict[str, pl.DataFrame]:
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
        progress: called with each step name as it starts.
        clock: the wall clock (tests).

    Raises:
        DetectorError: bad input, configuration, model or state (exit 2), or RunFailed (exit 1).
    """
    cfg = cfg or Config()
    rule = fail_on if isinstance(fail_on, FailOn) or fail_on is None else FailOn.parse(fail_on)
    clock = clock or (lambda: datetime.now(UTC))
    started = clock()
    run_id = new_run_id(started)
    logger = logging.getLogger(LOGGER)
    out = Path(out_dir)
    if not paths:
        raise InputError("no input paths given")
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
        writing = [out]  # the directory the current step writes to, named when it cannot be written
        try:
            private_dir(staging)
            with contextlib.ExitStack() as stack:
                if state_dir is not None:
                    stack.enter_context(locked(state_dir))
                    stack.callback(_roll_back, Path(state_dir), out)
                return _run(
                    paths, out, staging, run_id, started, logger, progress, cfg, rule,
                    state_dir=None if state_dir is None else Path(state_dir), practitioners=practitioners,
                    geoip_dir=geoip_dir, model_path=model_path, pseudonymize_key=pseudonymize_key,
                    labels=labels, writing=writing, overrides=overrides,
                )  # fmt: skip
        except DetectorError:
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
            refused = unwritable(e, writing[-1])
            if refused is not None:
                raise refused from e
            raise RunFailed(f"run failed, previous reports kept: {type(e).__name__}: {e}") from e
        finally:
            if not (out / JOURNAL).exists():  # after the commit point the next run needs the staged files
                shutil.rmtree(staging, ignore_errors=True)


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


def learnable_events(events: pl.LazyFrame, scores: Any, cfg: Config) -> pl.LazyFrame:
    """The night's events the state may learn (:func:`detector.features.baseline.learnable`): not the
    attacker's logins into compromised accounts, nor any login from an unshared malicious source (a
    forged or doubtful success). ``scores``: ``accounts`` and ``sources`` with their verdicts."""
    from detector.features.baseline import learnable
    from detector.score.verdicts import Verdict

    compromised = scores.accounts.lazy().filter(pl.col("verdict") == Verdict.COMPROMISED)
    attackers = scores.sources.lazy().filter(
        (pl.col("verdict") == Verdict.MALICIOUS) & ~pl.col("shared_address").fill_null(False)
    )
    return learnable(events, compromised, cfg.scoring.account_compromised, attackers)


def _run(
    paths: Sequence[str | Path],
    out: Path,
    staging: Path,
    run_id: str,
    started: datetime,
    logger: logging.Logger,
    progress: Callable[[str], None] | None,
    cfg: Config,
    rule: FailOn | None,
    *,
    state_dir: Path | None,
    practitioners: str | Path | None,
    geoip_dir: str | Path | None,
    model_path: str | Path | None,
    pseudonymize_key: str | None,
    labels: str | Path | None,
    writing: list[Path],
    overrides: str | Path | None = None,
) -> RunResult:
    # scikit-learn's OpenMP threads (the event model predicts on two) sleep while they wait instead
    # of spinning: on a busy machine spinning doubled the prediction's CPU and wall time. Read when
    # scikit-learn loads, so set before the first import; a value in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from detector.detect.campaigns import with_history
    from detector.engine import analyse, prior_for
    from detector.enrich import (
        NO_DIRECTORY,
        find_databases,
        load_practitioners,
        merge_shared,
        shared_address_counts,
    )
    from detector.features.baseline import update_history
    from detector.ingest import ingest
    from detector.publish import announce, recover_state
    from detector.recommend import recommend, replay
    from detector.recommend.history import known_networks
    from detector.recommend.plan import collateral_table
    from detector.report import RunData, write_reports
    from detector.report.pseudonymize import Pseudonymizer
    from detector.score.io import check_model
    from detector.state import (
        State,
        load_state,
        next_generation,
        prune,
        retain,
        stage_generation,
    )

    step = _Steps(logger, progress)
    warnings: list[str] = []
    log(logger, logging.INFO, "run started", run_id=run_id, inputs=len(paths), out=str(out))

    # Everything that can be wrong with the inputs is checked before the long steps.
    if state_dir is not None:
        settled = recover_state(state_dir, own_out=out)
        if settled:
            log(logger, logging.WARNING, settled)
    current = state = load_state(state_dir) if state_dir is not None else State()
    model_file = Path(model_path) if model_path is not None else default_model_path()
    check_model(model_file)  # file, card, checksum, versions; the model loads beside detection
    geo_dir = str(geoip_dir) if geoip_dir is not None else cfg.enrich.geoip_dir
    geoip = find_databases(geo_dir)
    directory = load_practitioners(practitioners) if practitioners is not None else None
    from detector.recommend.overrides import apply_overrides, read_overrides

    operator_overrides = read_overrides(overrides)
    label_frame = None
    if labels is not None:
        from detector.labels import read_labels

        label_frame = read_labels(labels)

    with step("ingest"):
        ingested = ingest([str(p) for p in paths], cfg.ingest, staging / "work")
    warnings.extend(ingested.warnings)
    inputs = _inputs_meta(ingested.inputs)
    night = night_window(ingested.events)
    later_nights = False
    prior = None
    if state_dir is not None:
        # a night the state already holds runs against the generation before it (same reports)
        prior = prior_for(state_dir, current, night[0], {i["sha256"] for i in inputs})
        if prior.note is not None:
            warnings.append(prior.note)
        state, later_nights = prior.state, prior.later_nights
    # enrich -> features -> detect -> score: the one analysis every command runs (detector.engine);
    # detection per account shard, in files under the staging directory (small nights: in memory)
    analysis = analyse(
        ingested.events, cfg, work_dir=staging / "work", prior=prior, geoip=geoip, practitioners=directory,
        model=model_file, step=step,
    )  # fmt: skip
    history = analysis.prior.history
    warnings.extend(analysis.warnings)
    if directory is None:
        warnings.append(NO_DIRECTORY)
    if not history.n_accounts:
        warnings.append(FIRST_NIGHT)
    for w in warnings:
        log(logger, logging.WARNING, w)
    detection, scores, model = analysis.detection, analysis.scores, analysis.model

    pseudo = Pseudonymizer(pseudonymize_key) if pseudonymize_key else None
    meta: dict[str, Any] = {
        contract.Meta.TOOL_VERSION: __version__,
        contract.Meta.REPORT_VERSION: contract.REPORT_VERSION,
        contract.Meta.SCHEMA_VERSION: schema.SCHEMA_VERSION,
        contract.Meta.RUN_ID: run_id,
        contract.Meta.CREATED_AT: started.isoformat(),
        contract.Meta.INPUTS: inputs,
        contract.Meta.MODEL_ID: getattr(model, "model_id", model_file.name),
        contract.Meta.MODEL_CARD_SHA256: getattr(model, "card_sha256", None),
        contract.Meta.GEOIP: analysis.enrich_metadata,
        contract.Meta.CONFIG_SHA256: cfg.digest(),
        contract.Meta.PSEUDONYMIZED: "true" if pseudo else "false",
    }

    with step("events"):
        columns = contract.BY_NAME["events.parquet"].columns()
        scored = _conform(scores.events, columns)
        # per shard, the window comes from the detection files (the lazy merge would read them all)
        start, end = night_window(pl.scan_parquet([d for d, _ in scores.shards]) if scores.shards else scored)
        meta[contract.Meta.WINDOW_START] = start.isoformat() if start else None
        meta[contract.Meta.WINDOW_END] = end.isoformat() if end else None
        events_meta = {**meta, contract.Meta.REPORT: "events.parquet"}
        raw_events = staging / ("work/events.parquet" if pseudo else "events.parquet")
        # streamed in event order, one batch per shard in memory
        batches = (_conform(b, columns).collect() for b in scores.batches([c.name for c in columns]))
        n_events = write_batches(batches, scored.collect_schema(), raw_events, events_meta, EVENT_ROW_GROUP)
        events = pl.scan_parquet(raw_events)
        if pseudo:
            write_parquet(
                events.with_columns(pseudo.column(C.ACCOUNT)), staging / "events.parquet", events_meta
            )
    # the later steps read the scored events from disk: the in-memory frames of detection and
    # scoring (every event, about 100 columns) are freed before the plan and the replay
    scores = dataclasses.replace(scores, events=events)
    detection = dataclasses.replace(detection, events=events)
    del scored

    with step("recommend"):
        now = end or started
        # networks the accounts used on earlier nights (the history before tonight's update)
        guarded: list[str] = []  # blocks the plan's guards refused (docs/security.md)
        plan, collateral = collateral_table(
            _frame(
                recommend(
                    scores, detection, cfg, now, known_networks=known_networks(history), warnings=guarded,
                    with_collateral=True,
                )
            ),
            _frame(scores.accounts),
        )  # fmt: skip
        # operators' lifts and extensions (in force at the wall-clock time of the run), audited
        plan, override_audit = apply_overrides(plan, operator_overrides, started)
        collateral = collateral.filter(pl.col("measure_id").is_in(plan.get_column("measure_id").implode()))
    for w in guarded:
        log(logger, logging.WARNING, w)
    warnings.extend(guarded)
    # with a state, last night's plan on tonight's logs (what the plan is worth a day later);
    # else the plan on the logs it was built from
    replayed, replay_kind = (state.plan, "next_day") if state.plan is not None else (plan, "same_day")
    with step("replay"):  # a night without events has nothing to replay
        comparison = replay(replayed, events, label_frame, cfg) if n_events else None

    tables = {
        "accounts.parquet": _frame(_conform(scores.accounts, schema.ACCOUNT_COLUMNS)),
        "sources.parquet": _frame(_conform(scores.sources, schema.SOURCE_COLUMNS)),
        "recommendations.parquet": _frame(_conform(plan, schema.RECOMMENDATION_COLUMNS)),
        "findings.parquet": _frame(
            _conform(detection.findings, contract.BY_NAME["findings.parquet"].columns())
        ),
        "collateral.parquet": collateral,
        "campaigns.parquet": _frame(
            _conform(
                with_history(_frame(detection.campaigns), state.campaigns),
                contract.BY_NAME["campaigns.parquet"].columns(),
            )
        ),
        "quarantine.parquet": _frame(_conform(ingested.quarantine, schema.QUARANTINE_COLUMNS)),
    }
    if pseudo:
        tables = _pseudonymize_tables(tables, pseudo)
    attention = rule.check(tables["accounts.parquet"]) if rule else None

    with step("reports"):
        data = RunData(
            meta=meta,
            events=pl.scan_parquet(staging / "events.parquet"),
            tables=tables,
            lines_read=int(ingested.lines_read),
            noise=dict(ingested.noise),
            replay=comparison,
            replay_labelled=getattr(comparison, "truth", None) == "labels",
            replay_kind=replay_kind,
            overrides=override_audit,
            previous_plan=state.plan,
            warnings=tuple(warnings),
            fail_on=rule.describe() if rule else None,
            attention=attention,
        )
        summary = write_reports(data, staging)

    generation = None
    if state_dir is not None and not later_nights:
        writing.append(state_dir)
        with step("state"):
            seen = state.processed()
            new_paths = [i["path"] for i in inputs if i["sha256"] not in seen]
            if new_paths:
                fresh = learnable_events(events.filter(pl.col(C.SOURCE_FILE).is_in(new_paths)), scores, cfg)
                history = update_history(history, fresh)
                # nor does an attacker's address become one "legitimate users" log in from
                shared = merge_shared(shared_address_counts(fresh), state.shared)
            else:
                log(logger, logging.INFO, "inputs already in the state: history not updated again")
                shared = state.shared
            horizon_end = end or started
            history = history.prune(horizon_end - timedelta(days=cfg.state.horizon_days))
            campaigns = _merge_campaigns(state.campaigns, tables["campaigns.parquet"])
            new_state = State(
                history=history.to_frames(),
                shared=prune(shared, horizon_end, cfg.state.horizon_days) if shared is not None else None,
                campaigns=prune(campaigns, horizon_end, cfg.state.horizon_days),
                plan=plan,
                manifest=state.manifest,
                run_id=run_id,
            ).with_inputs(inputs, run_id, started)
            number = next_generation(state_dir)
            announce(state_dir, run_id=run_id, generation=number, out_dir=out)
            generation = stage_generation(
                state_dir, new_state, generation=number, parent=state.generation or None, run_id=run_id,
                now=started, window=night, inputs=[i["sha256"] for i in inputs],
            )  # fmt: skip
        writing.pop()

    with step("publish"):
        files = commit(
            out, staging, contract.ALL_FILES, run_id=run_id, state_dir=state_dir, generation=generation
        )
    if state_dir is not None:
        try:
            retain(state_dir, cfg.state.generations)
        except OSError as e:  # the night is published; the next run retries
            log(
                logger,
                logging.WARNING,
                f"cannot delete old state generations: {e.strerror}",
                path=str(state_dir),
            )

    log(logger, logging.INFO, "run finished", run_id=run_id, attention=attention, **step.timings)
    return RunResult(
        run_id=run_id,
        out_dir=out,
        files=files,
        summary=summary,
        attention=attention,
        warnings=tuple(warnings),
        timings=step.timings,
        state_generation=generation["generation"] if generation else None,
    )


def _merge_campaigns(previous: pl.DataFrame | None, current: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Campaign infrastructure seen so far: this night's campaigns replace earlier rows of the same id."""
    now = _frame(current)
    if previous is None or previous.is_empty():
        return now
    keep = previous.filter(~pl.col(C.CAMPAIGN).is_in(now.get_column(C.CAMPAIGN).implode()))
    return pl.concat([keep, now], how="diagonal_relaxed")

"""One analysis of a night: enrich -> features -> detect -> score, with earlier nights explicit.

:func:`analyse` is the one call that turns a night's events into verdicts. ``detector run``
(:mod:`detector.pipeline`), ``evaluate`` (:mod:`detector.score.evaluate`), ``replay``
(:mod:`detector.recommend.replay`) and ``train``'s training frame (:mod:`detector.score.train`)
all go through it, so the same night against the same state gets the same verdicts whichever
command reads it. What earlier nights contribute (per-account history, shared-address counts,
campaign ids) is one explicit :class:`Prior`, read from a state directory by :func:`read_prior`
as the nightly job reads it: the generation before the night when the state already holds it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from detector.config import Config
from detector.errors import ModelError
from detector.schema import ENRICH_COLUMNS, C
from detector.state import State, base_for, load_state
from detector.workers import Workers, worker_count

MODEL_NAME = "default.skops"

UNTIL = ("enrich", "detect", "score")
"""The steps :func:`analyse` can stop after."""

Step = Callable[[str], AbstractContextManager[None]]
"""Times and reports one named step (``enrich``, ``detect``, ``score``)."""

if TYPE_CHECKING:
    from detector.detect import Detection
    from detector.enrich import GeoIPDatabases
    from detector.features.baseline import History
    from detector.score.io import Model
    from detector.score.verdicts import Scores


def default_model_path() -> Path:
    """The model used without ``--model``.

    In order: ``$DETECTOR_MODEL``; ``detector/data/default.skops`` (package data of an installed
    wheel); ``models/default.skops`` next to the source tree (a checkout, an editable install);
    ``<prefix>/share/detector/models/default.skops``.
    """
    env = os.environ.get("DETECTOR_MODEL")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    candidates = [
        here / "data" / MODEL_NAME,
        here.parent / "models" / MODEL_NAME,
        Path(sys.prefix) / "share" / "detector" / "models" / MODEL_NAME,
    ]
    for p in candidates:
        if p.exists():
            return p
    raise ModelError(
        "no default model found",
        path=candidates[1],
        hint="pass --model FILE or set DETECTOR_MODEL; `make model` trains one",
    )


def night_window(events: pl.LazyFrame | pl.DataFrame) -> tuple[datetime | None, datetime | None]:
    """The first and last timestamp of the events."""
    row = (
        events.lazy()
        .select(pl.col(C.TIMESTAMP).min().alias("start"), pl.col(C.TIMESTAMP).max().alias("end"))
        .collect()
    )
    return row["start"][0], row["end"][0]


def digests(inputs: Sequence[Any]) -> list[str]:
    """The sha256 of ingestion's input manifest (``(path, size, sha256)`` tuples or records)."""
    return [str(i.sha256 if hasattr(i, "sha256") else tuple(i)[2]) for i in inputs]


@dataclass(frozen=True)
class Prior:
    """What earlier nights tell the analysis of this one: the state as it was before the night.

    Attributes:
        state: that state (empty: a first night, or no ``--state``).
        note: why it is not the current generation (the night is already in the state, or older).
        later_nights: later nights are in the state (a run publishes reports only).
    """

    state: State = field(default_factory=State)
    note: str | None = None
    later_nights: bool = False

    @property
    def history(self) -> History:
        """The per-account baseline."""
        from detector.features.baseline import History

        return History.from_frames(self.state.history) if self.state.history else History.empty()


def prior_for(state_dir: str | Path, current: State, start: datetime | None, inputs: set[str]) -> Prior:
    """The state a night starting at ``start`` (with inputs of these sha256) runs against.

    ``current`` is the state's current generation; a night it already holds (or an older one) runs
    against the generation before it (:func:`detector.state.base_for`), so a re-run, ``evaluate``
    and ``replay`` see what the night's first run saw.
    """
    base = base_for(state_dir, current, start, inputs)
    if base.number is None:
        return Prior(current)
    state = load_state(state_dir, base.number) if base.number else State()
    return Prior(state, base.note, base.later_nights)


def read_prior(
    state_dir: str | Path | None, events: pl.LazyFrame | pl.DataFrame, inputs: Sequence[str] = ()
) -> Prior:
    """:func:`prior_for` the night of ``events`` from the state in ``state_dir`` (read only;
    ``None``: an empty prior). ``inputs``: the sha256 of the night's input files, if known."""
    if state_dir is None:
        return Prior()
    return prior_for(state_dir, load_state(state_dir), night_window(events)[0], set(inputs))


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyse` produced and the inputs it used.

    Attributes:
        events: the enriched events detection read.
        detection: ``detector.detect.Detection`` (per account shard, files under the work
            directory; ``None``: stopped after enrichment).
        scores: ``detector.score.verdicts.Scores`` (``None``: not scored).
        model: the loaded model (``None``: the rules, or not scored).
        prior: the earlier nights' state it ran against.
        enrich_metadata: the enrichment's record (databases, counts; empty when already enriched).
        warnings: the enrichment's warnings.
    """

    events: pl.LazyFrame
    detection: Detection | None
    scores: Scores | None
    model: Model | None
    prior: Prior
    enrich_metadata: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    yield


def analyse(
    events: pl.LazyFrame | pl.DataFrame,
    cfg: Config,
    *,
    work_dir: str | Path,
    prior: Prior | None = None,
    geoip: GeoIPDatabases | None = None,
    practitioners: pl.DataFrame | None = None,
    model: Model | str | Path | None = None,
    until: str = "score",
    step: Step | None = None,
    workers: Workers | None = None,
) -> Analysis:
    """Enrich (unless already enriched), detect and score a night's events against ``prior``.

    Args:
        events: ingested events (or enriched ones: every ``schema.ENRICH_COLUMNS`` present).
        cfg: the effective configuration (``[engine] workers``: the processes running the per-shard
            steps; the results do not depend on it).
        work_dir: where detection keeps its per-shard files; keep it until the results are read.
        prior: history, shared-address counts and campaign ids of earlier nights (empty: none).
        geoip: databases (``detector.enrich.find_databases``); ``None``: no GeoIP columns.
        practitioners: the practitioner directory, if any.
        model: a loaded model, a model file (loaded beside detection) or ``None`` (the rules).
        until: the last step: ``enrich`` (a replay against labels), ``detect`` (training, which has
            no model yet) or ``score``.
        step: times each step (``enrich``, ``detect``, ``score``).
        workers: the worker processes to run the per-shard steps in (a pool the caller started
            early, e.g. :func:`early_workers` beside ingestion, and closes); default: a pool of
            ``[engine] workers`` processes started when detection knows its shards.
    """
    from detector.detect.shards import detect_sharded

    if until not in UNTIL:
        raise ValueError(f"until must be one of {', '.join(UNTIL)}, got {until!r}")
    prior = prior or Prior()
    step = step or _quiet
    lf = events.lazy()
    metadata: dict[str, Any] = {}
    warnings: list[str] = []
    have = lf.collect_schema().names()
    if not all(c.name in have for c in ENRICH_COLUMNS):
        from detector.enrich import enrich

        with step("enrich"):
            enriched = enrich(
                lf,
                geoip=geoip,
                practitioners=practitioners,
                history_shared=prior.state.shared,
                cfg=cfg.enrich,
            )
        lf, metadata = enriched.events, enriched.metadata
        warnings.extend(enriched.warnings)
    if until == "enrich":
        return Analysis(lf, None, None, None, prior, metadata, tuple(warnings))
    scoring = until == "score"
    history = prior.history
    shards = Path(work_dir) / "shards"
    with contextlib.ExitStack() as stack:
        if workers is None:
            workers = stack.enter_context(Workers(worker_count(cfg.engine.workers), shards))
        with step("detect"), ThreadPoolExecutor(1, thread_name_prefix="model") as pool:
            # importing scikit-learn and loading the model (about 2.5 s, mostly Python) run beside
            # detection, whose polars work releases the GIL: about 1 s less wall time at 2M lines
            loading = pool.submit(_load, model if scoring else None)
            detection = detect_sharded(
                lf, cfg, history, shards, known_campaigns=prior.state.campaigns, workers=workers
            )
        loaded = loading.result()
        scores = None
        if scoring:
            from detector.score import score

            with step("score"):
                scores = score(detection, loaded, cfg, workers=workers)
    return Analysis(
        events=lf, detection=detection, scores=scores, model=loaded, prior=prior,
        enrich_metadata=metadata, warnings=tuple(warnings),
    )  # fmt: skip


BYTES_PER_EVENT = 256
"""Log bytes per event :func:`early_workers` expects (IMAP-like logs: about 230; logs with
delivery noise: more, so fewer events than expected)."""


def early_workers(cfg: Config, work_dir: str | Path, paths: Sequence[str | Path]) -> Workers:
    """The worker processes of a run's analysis, started now if the logs promise several shards.

    Started beside ingestion, the workers' start (a Python process each, importing polars,
    scikit-learn and the engine, about 1.5 CPU-s) overlaps it instead of delaying detection; a
    small night (one expected shard) starts none here and leaves it to detection. Close it (a
    context manager) after :func:`analyse`.
    """
    from detector.detect import shards
    from detector.ingest.sources import expand

    workers = Workers(worker_count(cfg.engine.workers), Path(work_dir) / "shards")
    if workers.n > 1:
        size = sum(f.size or 0 for f in expand([str(p) for p in paths]))
        expected = shards.shard_count(size // BYTES_PER_EVENT, shards.SHARD_EVENTS)
        if expected > 1:
            workers.start(expected)
    return workers


def _load(model: Model | str | Path | None) -> Model | None:
    if isinstance(model, str | Path):
        from detector.score import load_model

        return load_model(model)
    return model

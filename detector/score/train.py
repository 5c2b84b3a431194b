"""Training: events plus a labels file in, a saved model and its card out.

:func:`train` reads logs (or a canonical events Parquet), runs ingest -> enrich -> detect, joins
the labels (``detector.labels``), and fits :func:`fit_model`: the login model on every event, then
the account and source models on aggregates of the login model's *out-of-fold* risk, so that the
upper models learn from risks as they look on data the login model has not seen.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from detector.config import Config
from detector.errors import InputError, ModelError
from detector.logging_setup import step
from detector.schema import ENRICH_COLUMNS, EVENT_SCHEMA, C

if TYPE_CHECKING:
    from detector.detect import Detection
    from detector.engine import Analysis
from detector.score import aggregates as agg
from detector.score.io import Model, model_paths, save_model
from detector.score.model import AccountCompromiseClassifier, LoginRiskClassifier, SourceRiskClassifier

MAX_BENIGN = 150_000
"""Benign events the login model is fitted on at most (see :func:`subsample`)."""
IS_ATTACK = "is_attack"
LABEL_TECHNIQUE = "label_technique"
LABEL_CAMPAIGN = "label_campaign"


@dataclass(frozen=True)
class Prepared:
    """A detection ready for scoring, with where it came from."""

    detection: Detection
    events: pl.DataFrame
    source: str


@dataclass(frozen=True)
class TrainResult:
    model: Model
    model_file: Path
    card_file: Path
    summary: dict[str, Any]

    def summary_text(self) -> str:
        s = self.summary
        return (
            f"trained {self.model.model_id}: {s['events']} events ({s['attack_events']} attack), "
            f"{s['accounts']} accounts ({s['compromised_accounts']} compromised), "
            f"{s['sources']} sources ({s['malicious_sources']} malicious); "
            f"out-of-fold login PR-AUC {s['oof_event_pr_auc']:.3f}\n"
            f"wrote {self.model_file} and {self.card_file}"
        )


def _read_events_parquet(path: Path) -> pl.LazyFrame:
    try:
        lf = pl.scan_parquet(path)
        have = lf.collect_schema()
    except Exception as e:
        raise InputError(f"cannot read events Parquet: {e}", path=path) from e
    from detector.schema import check

    check(have, EVENT_SCHEMA, what="events file", path=str(path))
    return lf


def analyse_path(
    events_path: str | Path,
    work: Path,
    *,
    cfg: Config,
    geoip_dir: str | Path | None = None,
    practitioners: str | Path | None = None,
    state_dir: str | Path | None = None,
    model: Model | str | Path | None = None,
    until: str = "score",
) -> Analysis:
    """Logs (file or directory) or a canonical events Parquet -> :func:`detector.engine.analyse`.

    ``state_dir``: earlier nights' state, read as ``detector run`` reads it
    (:func:`detector.engine.read_prior`). The analysis' files live in ``work``.
    """
    from detector.engine import analyse, digests, read_prior
    from detector.enrich import NO_DIRECTORY, find_databases, load_practitioners
    from detector.ingest import ingest
    from detector.logging_setup import warn

    path = Path(events_path)
    if not path.exists():
        raise InputError("events not found", path=path)
    inputs: list[str] = []
    if path.is_file() and path.suffix == ".parquet":
        events = _read_events_parquet(path)
    else:
        with step("ingest"):
            ingested = ingest([str(path)], cfg.ingest, work)
        events = ingested.events
        inputs = digests(ingested.inputs)
        for w in ingested.warnings:
            warn(w)
    prior = read_prior(state_dir, events, inputs)
    if prior.note:
        warn(prior.note)
    geo = str(geoip_dir) if geoip_dir is not None else cfg.enrich.geoip_dir
    directory = load_practitioners(practitioners) if practitioners is not None else None
    have = events.collect_schema().names()
    enriched = all(c.name in have for c in ENRICH_COLUMNS)
    analysis = analyse(
        events, cfg, work_dir=work, prior=prior, geoip=None if enriched else find_databases(geo),
        practitioners=directory, model=model, until=until, step=step,
    )  # fmt: skip
    for w in [*analysis.warnings, *([NO_DIRECTORY] if directory is None and not enriched else [])]:
        warn(w)
    return analysis


def prepare(
    events_path: str | Path,
    *,
    cfg: Config | None = None,
    geoip_dir: str | Path | None = None,
    practitioners: str | Path | None = None,
    state_dir: str | Path | None = None,
) -> Prepared:
    """The training frame: :func:`analyse_path` up to detection, kept in memory."""
    cfg = cfg or Config()
    with tempfile.TemporaryDirectory(prefix="detector-train-") as work:
        analysis = analyse_path(
            events_path, Path(work), cfg=cfg, geoip_dir=geoip_dir, practitioners=practitioners,
            state_dir=state_dir, until="detect",
        )  # fmt: skip
        detection = analysis.detection
        frame = _frame(detection.events)
        # the work directory goes away with this block: keep the events in memory
        detection = dataclasses.replace(detection, events=frame.lazy(), shards=())
    return Prepared(detection=detection, events=frame, source=str(events_path))


def _frame(x: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return x.collect() if isinstance(x, pl.LazyFrame) else x


def with_labels(events: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Events with ``is_attack``, ``label_campaign``, ``label_technique`` (via ``detector.labels``)."""
    from detector.labels import label_events

    out = label_events(events.lazy(), labels)
    out = out.collect() if isinstance(out, pl.LazyFrame) else out
    return out.with_columns(pl.col(IS_ATTACK).fill_null(False))


def compromised_set(labels: pl.DataFrame) -> set[str]:
    from detector.labels import compromised_accounts

    got = compromised_accounts(labels)
    if isinstance(got, pl.DataFrame):
        got = got.get_column(C.ACCOUNT).to_list()
    elif isinstance(got, pl.Series):
        got = got.to_list()
    return {a for a in got if a is not None}


def account_labels(accounts: pl.DataFrame, compromised: Iterable[str]) -> np.ndarray:
    return accounts.get_column(C.ACCOUNT).is_in(list(compromised)).to_numpy().astype(int)


def source_labels(events: pl.DataFrame, sources: pl.DataFrame) -> np.ndarray:
    """A source is malicious when any of its events is labelled an attack."""
    bad = events.filter(pl.col(IS_ATTACK)).get_column(C.SOURCE_IP).unique().drop_nulls()
    return sources.get_column(C.SOURCE_IP).is_in(bad.implode()).to_numpy().astype(int)


def subsample(
    y: np.ndarray, max_benign: int, rng: np.random.Generator, max_attack: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices keeping at most ``max_benign`` negatives and ``max_attack`` positives (default:
    every positive), uniformly, with weights (``1 / fraction kept`` per class) that keep the fitted
    probabilities calibrated."""
    neg = np.flatnonzero(y == 0)
    pos = np.flatnonzero(y != 0)
    cut_pos = max_attack is not None and len(pos) > max_attack
    if len(neg) <= max_benign and not cut_pos:
        return np.arange(len(y)), np.ones(len(y))
    keep_neg = rng.choice(neg, size=max_benign, replace=False) if len(neg) > max_benign else neg
    keep_pos = rng.choice(pos, size=max_attack, replace=False) if cut_pos else pos
    chosen = np.sort(np.concatenate([keep_pos, keep_neg]))
    weight = np.where(y[chosen] == 0, len(neg) / len(keep_neg), len(pos) / len(keep_pos))
    return chosen, weight


def _fit_or_none(est: Any, x: np.ndarray, y: np.ndarray) -> Any:
    return est.fit(x, y) if y.sum() >= 2 and (len(y) - y.sum()) >= 2 else None


def fit_model(
    events: pl.DataFrame,
    compromised: Iterable[str],
    *,
    feature_columns: tuple[str, ...],
    detector_names: tuple[str, ...],
    random_state: int = 0,
    max_iter: int | None = None,
    max_benign: int = MAX_BENIGN,
    max_attack: int | None = None,
) -> tuple[Model, dict[str, Any]]:
    """Fit the three estimators on labelled detection events.

    Args:
        events: Detection events with ``is_attack`` (from :func:`with_labels`).
        compromised: Accounts the labels call compromised.
        feature_columns: The detection's numeric features (``detector.features.FEATURE_COLUMNS``).
        detector_names: Detectors whose firing is counted in the account and source aggregates.
        random_state: Seed of folds and trees.
        max_iter: Boosting iterations for every estimator (default: each estimator's own).
        max_benign: Benign events the login model is fitted on at most (a uniform sample,
            weighted up so that probabilities stay calibrated).
        max_attack: Attack events the login model is fitted on at most, sampled and weighted the
            same way (default: every attack event; ``make model`` caps them, its worlds together
            hold several hundred thousand).

    Raises:
        ModelError: the labels mark no attack event, or every event.
    """
    compromised = set(compromised)
    y = events.get_column(IS_ATTACK).fill_null(False).to_numpy().astype(int)
    positives = int(y.sum())
    if positives < 3 or positives > len(y) - 3:
        raise ModelError(
            f"labels mark {positives} of {len(y)} events as attacks: need at least 3 of each class",
            hint="check that the labels file belongs to these logs (accounts, addresses and times)",
        )
    it = {} if max_iter is None else {"max_iter": max_iter}
    names = agg.event_feature_names(feature_columns)
    x = agg.event_matrix(events, names)
    rng = np.random.default_rng(random_state)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=random_state)
    oof = np.zeros(len(y))
    for fold, (fit_idx, held_idx) in enumerate(folds.split(x, y), start=1):
        with step(f"login model, cross-validation fold {fold}/3", events=len(fit_idx)):
            keep, weight = subsample(y[fit_idx], max_benign, rng, max_attack)
            part = LoginRiskClassifier(random_state=random_state, **it)
            part.fit(x[fit_idx][keep], y[fit_idx][keep], sample_weight=weight)
            oof[held_idx] = part.positive_proba(x[held_idx])
    keep, weight = subsample(y, max_benign, rng, max_attack)
    with step("login model", events=len(keep)):
        login = LoginRiskClassifier(random_state=random_state, **it).fit(
            x[keep], y[keep], sample_weight=weight
        )
    scored = events.with_columns(pl.Series(C.RISK_SCORE, oof, dtype=pl.Float64))

    acc = agg.account_aggregates(scored.lazy(), detector_names).collect()
    acc_names = agg.feature_names(acc.collect_schema(), "acc_")
    y_acc = account_labels(acc, compromised)
    with step("account model", accounts=acc.height):
        account = _fit_or_none(
            AccountCompromiseClassifier(random_state=random_state, **it), agg.matrix(acc, acc_names), y_acc
        )

    src = agg.source_aggregates(scored.lazy(), detector_names).collect()
    src_names = agg.feature_names(src.collect_schema(), "src_")
    y_src = source_labels(scored, src)
    with step("source model", sources=src.height):
        source = _fit_or_none(
            SourceRiskClassifier(random_state=random_state, **it), agg.matrix(src, src_names), y_src
        )

    model = Model(
        event=login,
        account=account,
        source=source,
        event_features=names,
        account_features=acc_names,
        source_features=src_names,
        detector_names=tuple(detector_names),
    )
    summary = {
        "events": events.height,
        "attack_events": positives,
        "accounts": acc.height,
        "compromised_accounts": int(y_acc.sum()),
        "sources": src.height,
        "malicious_sources": int(y_src.sum()),
        "oof_event_pr_auc": float(average_precision_score(y, oof)),
    }
    return model, summary


def default_features() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(FEATURE_COLUMNS, HIT_DETECTORS)`` of the installed ``detector.features``."""
    from detector.features import FEATURE_COLUMNS, HIT_DETECTORS

    return tuple(FEATURE_COLUMNS), tuple(HIT_DETECTORS)


def train_frames(
    prepared: Prepared,
    labels: pl.DataFrame,
    out: str | Path,
    *,
    world: dict[str, Any] | None = None,
    random_state: int = 0,
    max_iter: int | None = None,
    max_attack: int | None = None,
) -> TrainResult:
    """Train on an already prepared detection and save ``out.skops`` + ``out.card.json``."""
    features, detectors = default_features()
    events = with_labels(prepared.events, labels)
    model, summary = fit_model(
        events,
        compromised_set(labels),
        feature_columns=features,
        detector_names=detectors,
        random_state=random_state,
        max_iter=max_iter,
        max_attack=max_attack,
    )
    card = {
        "training": {
            "events_from": prepared.source,
            "world": world or {},
            "random_state": random_state,
            "max_benign": MAX_BENIGN,
            "max_attack": max_attack,
            **summary,
        },
        "metrics": {},
    }
    saved = save_model(model, out, card=card)
    model_file, card_file = model_paths(out)
    return TrainResult(model=saved, model_file=model_file, card_file=card_file, summary=summary)


def train(
    events_path: str | Path,
    labels_path: str | Path,
    out: str | Path,
    *,
    geoip_dir: str | Path | None = None,
    practitioners: str | Path | None = None,
    state_dir: str | Path | None = None,
    cfg: Config | None = None,
    world: dict[str, Any] | None = None,
    random_state: int = 0,
    max_iter: int | None = None,
) -> TrainResult:
    """``detector train``: logs or events Parquet + labels file -> ``out.skops`` and ``out.card.json``.

    ``state_dir``: the state of ``detector run``: the training frame is built against the earlier
    nights it holds (history, shared-address counts, campaigns), as the nightly job sees the night.

    Raises:
        InputError: missing events or labels.
        ModelError: labels that mark no attack in these events.
    """
    from detector.labels import read_labels

    labels = read_labels(labels_path)
    prepared = prepare(
        events_path, cfg=cfg, geoip_dir=geoip_dir, practitioners=practitioners, state_dir=state_dir
    )
    return train_frames(prepared, labels, out, world=world, random_state=random_state, max_iter=max_iter)

"""Evaluation of a model against labelled events, at event, account and source level.

Figures (all written to the model card under ``metrics``):

- events: precision and recall at risk >= 0.5, PR-AUC (average precision), detection rate at
  0.1% and 1% false-positive rate, and the same per attack family (``label_technique``);
- accounts: recall of compromised accounts (verdict ``compromised``), false ``compromised``
  verdicts per 10,000 accounts, PR-AUC of the account risk;
- sources: PR-AUC of the source risk, precision and recall of the ``malicious`` verdict;
- benign traps: accounts of the simulator's look-alike populations (stale-password device,
  typos, travellers, movers, CGNAT, hospital NAT, shared VPN, IPv6 rotation, ...) judged
  ``compromised`` (must be none). They are read from ``labels/legit-behaviours.csv`` beside the
  incidents file where it exists, and recognised from behaviour otherwise.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, roc_curve

from detector.config import Config
from detector.errors import InputError
from detector.schema import C, Outcome
from detector.score.aggregates import attempts, is_failure, is_login, is_success
from detector.score.io import load_model, read_card, write_card
from detector.score.train import (
    IS_ATTACK,
    LABEL_TECHNIQUE,
    Prepared,
    compromised_set,
    source_labels,
    with_labels,
)
from detector.score.verdicts import Scores, Verdict, score


def _pr_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    if y.sum() == 0 or y.sum() == len(y):
        return None
    return float(average_precision_score(y, p))


def detection_rate_at_fpr(y: np.ndarray, p: np.ndarray, fpr: float) -> float | None:
    """Largest true-positive rate with a false-positive rate at most ``fpr``."""
    if y.sum() == 0 or y.sum() == len(y):
        return None
    f, t, _ = roc_curve(y, p)
    ok = f <= fpr
    return float(t[ok].max()) if ok.any() else 0.0


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    pred = p >= threshold
    tp = int((pred & (y == 1)).sum())
    return {
        "n": len(y),
        "positives": int(y.sum()),
        "precision": _ratio(tp, int(pred.sum())),
        "recall": _ratio(tp, int(y.sum())),
        "pr_auc": _pr_auc(y, p),
        "detection_rate_at_0.1pct_fpr": detection_rate_at_fpr(y, p, 0.001),
        "detection_rate_at_1pct_fpr": detection_rate_at_fpr(y, p, 0.01),
    }


def family_metrics(events: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Per attack family: its events against every benign event."""
    y_all = events.get_column(IS_ATTACK).to_numpy().astype(bool)
    p_all = events.get_column(C.RISK_SCORE).to_numpy()
    fams = events.get_column(LABEL_TECHNIQUE).to_numpy() if LABEL_TECHNIQUE in events.columns else None
    out: dict[str, dict[str, Any]] = {}
    if fams is None:
        return out
    for fam in sorted({f for f in fams[y_all] if f is not None}):
        keep = ~y_all | (fams == fam)
        y = (y_all & (fams == fam))[keep].astype(int)
        m = binary_metrics(y, p_all[keep])
        out[str(fam)] = {
            k: m[k]
            for k in (
                "positives",
                "recall",
                "pr_auc",
                "detection_rate_at_0.1pct_fpr",
                "detection_rate_at_1pct_fpr",
            )
        }
    return out


TRAP_KINDS = {"cgnat": ("mobile",), "hospital_nat": ("hospital", "clinic")}
"""Address-plan kinds (``geoip/address-plan.csv`` of a simulated world) behind each shared-address trap."""


def _plan_networks(plan_csv: Path) -> dict[str, list[Any]]:
    plan = pl.read_csv(plan_csv, columns=["cidr", "kind"])
    out: dict[str, list[Any]] = {}
    for trap, kinds in TRAP_KINDS.items():
        cidrs = plan.filter(pl.col("kind").is_in(kinds)).get_column("cidr").to_list()
        out[trap] = [ipaddress.ip_network(c) for c in cidrs]
    return out


def trap_accounts(
    labelled: pl.DataFrame, compromised: set[str], plan_csv: str | Path | None = None
) -> dict[str, list[str]]:
    """Accounts of each benign look-alike population, from labelled events (and the world's address plan).

    The simulator's manifest counts its behaviours but does not list their accounts, so they are
    recognised from what they do, on events the labels call benign, leaving out accounts the labels
    call compromised:

    - ``stale_password``: at least 20 failed logins from one address (a device retrying);
    - ``typo``: a failed login followed within 10 minutes by a success from the same address;
    - ``traveller``: a successful login from outside the country most of the account's logins come from;
    - ``cgnat`` / ``hospital_nat``: a successful login from a carrier's CGNAT range or a hospital or
      clinic NAT of the address plan (needs ``plan_csv``).
    """
    ok, bad = is_success(), is_failure()
    benign = labelled.lazy().filter(~pl.col(IS_ATTACK) & pl.col(C.ACCOUNT).is_not_null())
    benign = benign.filter(~pl.col(C.ACCOUNT).is_in(list(compromised)))
    out: dict[str, list[str]] = {}
    stale = (
        benign.filter(bad)
        .group_by(C.ACCOUNT, C.SOURCE_IP)
        .agg(attempts().sum().alias("n"))
        .filter(pl.col("n") >= 20)
    )
    out["stale_password"] = stale.select(C.ACCOUNT).unique().collect().get_column(C.ACCOUNT).to_list()
    seq = (
        benign.filter(is_login())
        .sort(C.TIMESTAMP)
        .with_columns(
            pl.col(C.OUTCOME).shift(1).over(C.ACCOUNT, C.SOURCE_IP).alias("_prev"),
            pl.col(C.TIMESTAMP).shift(1).over(C.ACCOUNT, C.SOURCE_IP).alias("_prev_ts"),
        )
    )
    typo = seq.filter(
        ok
        & pl.col("_prev").is_in(Outcome.FAILED)
        & ((pl.col(C.TIMESTAMP) - pl.col("_prev_ts")) <= pl.duration(minutes=10))
    )
    out["typo"] = typo.select(C.ACCOUNT).unique().collect().get_column(C.ACCOUNT).to_list()
    home = (
        benign.filter(ok & pl.col(C.COUNTRY).is_not_null())
        .group_by(C.ACCOUNT)
        .agg(pl.col(C.COUNTRY).mode().sort().first().alias("_home"))
    )
    away = benign.filter(ok).join(home, on=C.ACCOUNT).filter(pl.col(C.COUNTRY) != pl.col("_home"))
    away = away.filter(~(pl.col(C.IS_VPN).fill_null(False) | pl.col(C.IS_HOSTING).fill_null(False)))
    out["traveller"] = away.select(C.ACCOUNT).unique().collect().get_column(C.ACCOUNT).to_list()
    if plan_csv is not None and Path(plan_csv).exists():
        pairs = benign.filter(ok).select(C.ACCOUNT, C.SOURCE_IP).unique().collect()
        ips = pairs.get_column(C.SOURCE_IP).unique().drop_nulls().to_list()
        for trap, nets in _plan_networks(Path(plan_csv)).items():
            inside = [ip for ip in ips if any(ipaddress.ip_address(ip) in n for n in nets)]
            out[trap] = (
                pairs.filter(pl.col(C.SOURCE_IP).is_in(inside)).get_column(C.ACCOUNT).unique().to_list()
            )
    return {k: sorted(v) for k, v in out.items()}


BEHAVIOURS_FILE = "legit-behaviours.csv"
"""Written by ``detector simulate`` beside ``incidents.csv``: ``account, behaviour, sessions, sources``."""

ORDINARY_BEHAVIOURS = frozenset({"desktop_home", "phone_wifi", "webmail", "smtp_send", "pop3_desktop"})
"""Legitimate behaviours that look like nothing suspicious: counted as accounts, not as traps."""


def behaviour_traps(path: str | Path, compromised: set[str]) -> dict[str, list[str]]:
    """Accounts of each look-alike population, as the world's ``legit-behaviours.csv`` lists them.

    Every behaviour except the ordinary ones is a trap population; accounts the labels call
    compromised are left out (their owner's behaviour is real, but the account is not a trap).
    """
    path = Path(path)
    try:
        df = pl.read_csv(path, columns=[C.ACCOUNT, "behaviour"], schema_overrides={C.ACCOUNT: pl.String})
    except (pl.exceptions.PolarsError, OSError) as e:
        raise InputError(
            f"cannot read the legitimate-behaviours file: {e}",
            path=path,
            hint="expected the columns account,behaviour (written by `detector simulate`)",
        ) from e
    df = df.filter(
        ~pl.col("behaviour").is_in(list(ORDINARY_BEHAVIOURS)) & ~pl.col(C.ACCOUNT).is_in(list(compromised))
    ).with_columns(pl.col(C.ACCOUNT).str.to_lowercase())
    groups = df.group_by("behaviour").agg(pl.col(C.ACCOUNT).unique().sort()).sort("behaviour")
    return {b: list(a) for b, a in groups.iter_rows()}


def account_metrics(scores: Scores, compromised: set[str], traps: dict[str, list[str]]) -> dict[str, Any]:
    acc = scores.accounts
    n = acc.height
    truth = acc.get_column(C.ACCOUNT).is_in(list(compromised)).to_numpy()
    judged = (acc.get_column("verdict") == Verdict.COMPROMISED).to_numpy()
    found = int((truth & judged).sum())
    false = int((~truth & judged).sum())
    verdicts = dict(acc.group_by("verdict").len().iter_rows())
    trap_out = {}
    for pop, accounts in traps.items():
        hit = acc.filter(pl.col(C.ACCOUNT).is_in(accounts) & (pl.col("verdict") == Verdict.COMPROMISED))
        trap_out[pop] = {
            "accounts": len(accounts),
            "judged_compromised": hit.height,
            "examples": hit.get_column(C.ACCOUNT).head(5).to_list(),
        }
    missed = sorted(set(compromised) - set(acc.filter(pl.col("verdict") == Verdict.COMPROMISED)[C.ACCOUNT]))
    return {
        "n": n,
        "compromised": int(truth.sum()),
        "found": found,
        "compromised_recall": _ratio(found, int(truth.sum())),
        "false_compromised": false,
        "false_compromised_per_10k": 10_000 * false / n if n else None,
        "pr_auc": _pr_auc(truth.astype(int), acc.get_column(C.RISK_SCORE).to_numpy()),
        "verdicts": {str(k): int(v) for k, v in sorted(verdicts.items())},
        "missed_examples": missed[:5],
        "traps": trap_out,
    }


def source_metrics(scores: Scores, labelled: pl.DataFrame) -> dict[str, Any]:
    src = scores.sources
    y = source_labels(labelled, src)
    judged = (src.get_column("verdict") == Verdict.MALICIOUS).to_numpy()
    tp = int((judged & (y == 1)).sum())
    return {
        "n": src.height,
        "malicious": int(y.sum()),
        "pr_auc": _pr_auc(y, src.get_column(C.RISK_SCORE).to_numpy()),
        "precision": _ratio(tp, int(judged.sum())),
        "recall": _ratio(tp, int(y.sum())),
        "shared_addresses": int(src.get_column("shared_address").sum()),
    }


def metrics_for(
    scores: Scores,
    labels: pl.DataFrame,
    plan_csv: str | Path | None = None,
    behaviours: str | Path | None = None,
) -> dict[str, Any]:
    """Every figure for scored events against labels.

    ``behaviours``: the world's ``legit-behaviours.csv`` (trap populations as simulated); without
    it they are recognised from behaviour, with ``plan_csv`` (the world's address plan) for the
    shared-address ones.
    """
    labelled = with_labels(scores.events, labels)
    compromised = compromised_set(labels)
    traps = (
        behaviour_traps(behaviours, compromised)
        if behaviours is not None and Path(behaviours).exists()
        else trap_accounts(labelled, compromised, plan_csv)
    )
    y = labelled.get_column(IS_ATTACK).to_numpy().astype(int)
    p = labelled.get_column(C.RISK_SCORE).to_numpy()
    return {
        "events": binary_metrics(y, p),
        "families": family_metrics(labelled),
        "accounts": account_metrics(scores, compromised, traps),
        "sources": source_metrics(scores, labelled),
    }


def quality_targets(m: dict[str, Any]) -> dict[str, bool]:
    """The targets of issue 4, each met or not."""
    a, s = m["accounts"], m["sources"]
    return {
        "compromised_recall>=0.95": (a["compromised_recall"] or 0) >= 0.95,
        "false_compromised_per_10k<=1": (a["false_compromised_per_10k"] or 0) <= 1.0,
        "source_pr_auc>=0.95": (s["pr_auc"] or 0) >= 0.95,
        "no_trap_compromised": all(t["judged_compromised"] == 0 for t in a["traps"].values()),
    }


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, Any]
    model_path: str | None

    def summary_text(self) -> str:
        return format_metrics(self.metrics)


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def format_metrics(m: dict[str, Any]) -> str:
    e, a, s = m["events"], m["accounts"], m["sources"]
    lines = [
        f"evaluated on {m.get('evaluated_on', '?')} (model {m.get('model_id', '?')})",
        f"events   n={e['n']} attacks={e['positives']} precision={_f(e['precision'])} recall={_f(e['recall'])} "
        f"PR-AUC={_f(e['pr_auc'])} DR@0.1%FPR={_f(e['detection_rate_at_0.1pct_fpr'])} "
        f"DR@1%FPR={_f(e['detection_rate_at_1pct_fpr'])}",
    ]
    for fam, f in m["families"].items():
        lines.append(
            f"  {fam:<28} n={f['positives']} recall={_f(f['recall'])} PR-AUC={_f(f['pr_auc'])} "
            f"DR@0.1%FPR={_f(f['detection_rate_at_0.1pct_fpr'])} DR@1%FPR={_f(f['detection_rate_at_1pct_fpr'])}"
        )
    lines.append(
        f"accounts n={a['n']} compromised={a['compromised']} found={a['found']} recall={_f(a['compromised_recall'])} "
        f"false compromised={a['false_compromised']} ({_f(a['false_compromised_per_10k'])} per 10k) "
        f"PR-AUC={_f(a['pr_auc'])}"
    )
    lines.append("  verdicts: " + ", ".join(f"{k}={v}" for k, v in a["verdicts"].items()))
    for pop, t in a["traps"].items():
        lines.append(
            f"  trap {pop:<16} accounts={t['accounts']} judged compromised={t['judged_compromised']}"
        )
    lines.append(
        f"sources  n={s['n']} malicious={s['malicious']} PR-AUC={_f(s['pr_auc'])} "
        f"precision={_f(s['precision'])} recall={_f(s['recall'])} shared={s['shared_addresses']}"
    )
    if "targets" in m:
        lines.append(
            "targets  " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in m["targets"].items())
        )
    return "\n".join(lines)


def _measured(
    scores: Scores,
    labels: pl.DataFrame,
    model: Any,
    source: str,
    *,
    world: dict[str, Any] | None,
    plan_csv: str | Path | None,
    behaviours: str | Path | None,
) -> dict[str, Any]:
    from detector.logging_setup import step

    with step("measure"):
        m = metrics_for(scores, labels, plan_csv, behaviours)
    m["targets"] = quality_targets(m)
    m["evaluated_on"] = source
    m["world"] = world or {}
    m["model_id"] = model.model_id
    m["evaluated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return m


def _recorded(m: dict[str, Any], model_path: str | Path, write: bool) -> EvalResult:
    if write:
        card = read_card(model_path)
        card["metrics"] = m
        write_card(model_path, card)
    return EvalResult(metrics=m, model_path=str(model_path))


def evaluate_prepared(
    prepared: Prepared,
    labels: pl.DataFrame,
    model_path: str | Path,
    *,
    cfg: Config | None = None,
    world: dict[str, Any] | None = None,
    plan_csv: str | Path | None = None,
    behaviours: str | Path | None = None,
    write: bool = True,
) -> EvalResult:
    """Score a prepared detection (:func:`detector.score.train.prepare`, the analysis' detection)
    with the model at ``model_path`` and measure it against ``labels`` (``make model``: one
    detection, a model trained after it)."""
    cfg = cfg or Config()
    from detector.logging_setup import step

    model = load_model(model_path)
    with step("score"):
        scores = score(prepared.detection, model, cfg)
    m = _measured(
        scores, labels, model, prepared.source, world=world, plan_csv=plan_csv, behaviours=behaviours
    )
    return _recorded(m, model_path, write)


def evaluate(
    model_path: str | Path,
    events_path: str | Path,
    labels_path: str | Path,
    *,
    geoip_dir: str | Path | None = None,
    practitioners: str | Path | None = None,
    state_dir: str | Path | None = None,
    cfg: Config | None = None,
    world: dict[str, Any] | None = None,
    write: bool = True,
) -> EvalResult:
    """``detector evaluate``: score labelled logs with a model, print and record the figures.

    The logs go through :func:`detector.engine.analyse` as in ``detector run``, against the
    state in ``state_dir`` as it was before their night (:func:`detector.engine.read_prior`), so
    the verdicts measured are the ones the nightly job gives. The model is loaded (and verified)
    first, so a bad model fails before the long steps.
    """
    import tempfile

    from detector.labels import read_labels
    from detector.score.train import analyse_path

    cfg = cfg or Config()
    model = load_model(model_path)
    labels = read_labels(labels_path)
    plan = Path(geoip_dir) / "address-plan.csv" if geoip_dir is not None else None
    behaviours = Path(labels_path).with_name(BEHAVIOURS_FILE)
    with tempfile.TemporaryDirectory(prefix="detector-evaluate-") as work:
        analysis = analyse_path(
            events_path, Path(work), cfg=cfg, geoip_dir=geoip_dir, practitioners=practitioners,
            state_dir=state_dir, model=model,
        )  # fmt: skip
        scores = analysis.scores
        scores = Scores(
            events=scores.events.lazy().collect(), accounts=scores.accounts, sources=scores.sources,
            model_id=scores.model_id,
        )  # fmt: skip
    m = _measured(scores, labels, model, str(events_path), world=world, plan_csv=plan, behaviours=behaviours)
    return _recorded(m, model_path, write)

"""Risk scores and verdicts per event, account and source, with reasons in plain words.

:func:`score` turns a :class:`~detector.detect.Detection` into :class:`Scores`:

- events get ``risk_score``: the login model's calibrated probability, or without a model the
  rule-based fallback :func:`rule_event_risk` (from the severities of the detectors that fired);
- accounts (``schema.ACCOUNT_SCHEMA``) get a compromise risk from the account model (fallback: the
  riskiest successful login), a verdict from ``cfg.scoring`` thresholds, reasons and counts;
- sources (``schema.SOURCE_SCHEMA``) get a maliciousness risk from the source model (fallback: the
  riskiest event from the address), a verdict, their campaign and whether legitimate users share them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from detector.config import Config
from detector.detect.shards import BATCH_ROWS, merge_sorted_batches, read_batches
from detector.errors import ModelError
from detector.schema import ACCOUNT_SCHEMA, SOURCE_SCHEMA, C
from detector.score import aggregates as agg
from detector.score import hosted as hosted_rule
from detector.score.io import Model
from detector.workers import Workers, in_process

RISK = C.RISK_SCORE

SEVERITY_WEIGHT: dict[str, float] = {"info": 0.05, "low": 0.2, "medium": 0.45, "high": 0.7, "critical": 0.9}
"""Fallback risk of an event on which one attack detector of this severity fired."""
UNKNOWN_DETECTOR_WEIGHT = 0.3
BENIGN_DAMPING = 0.25
"""Fallback: a benign explainer (stale password, typo, shared address) multiplies the risk by this."""


class Verdict:
    COMPROMISED = "compromised"
    TARGETED = "targeted"
    SUSPICIOUS = "suspicious"
    CLEAN = "clean"
    MALICIOUS = "malicious"
    BENIGN = "benign"


@dataclass(frozen=True)
class Scores:
    """Scored events (``risk_score`` added), accounts and sources; ``model_id`` is ``None`` for rules."""

    events: pl.DataFrame | pl.LazyFrame
    """A frame, or (scored per shard) a lazy merge of the scored shards in event order (it holds
    them all in memory when collected: stream :meth:`batches` instead)."""
    accounts: pl.DataFrame
    sources: pl.DataFrame
    model_id: str | None = None
    shards: tuple[tuple[Path, Path], ...] = ()
    """Scored per shard: each shard's detection file and its row-aligned risk file."""
    combine: bool = False
    """Scored per shard: whether ``risk_score`` is the larger of the model's and the rules' risk."""

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pl.DataFrame]:
        """The scored events in event order, a few thousand rows at a time (one batch per shard in memory).

        ``columns``: only those of these the events have (all by default; ``event_id`` always).
        """
        if not self.shards:
            events = self.events.lazy()
            if columns is not None:
                events = events.select(_present(events.collect_schema().names(), columns))
            yield from events.collect().iter_slices(BATCH_ROWS)
            return
        # a merge round emits about one batch per shard: their sum stays near MERGE_ROWS rows
        rows = max(1024, MERGE_ROWS // len(self.shards))
        yield from merge_sorted_batches(
            [_scored_batches(d, r, self.combine, rows, columns) for d, r in self.shards]
        )


def _present(have: list[str], columns: Sequence[str]) -> list[str]:
    wanted = {C.EVENT_ID, *columns}
    return [c for c in have if c in wanted]


MERGE_ROWS = 64 * 1024
"""Rows held from all shards together while they are merged back into event order."""


def _scored_batches(
    detection: Path, risk: Path, combine: bool, rows: int, columns: Sequence[str] | None = None
) -> Iterator[pl.DataFrame]:
    risks = pl.read_parquet(risk)
    offset = 0
    for batch in read_batches(detection, rows, None if columns is None else [C.EVENT_ID, *columns]):
        scored = batch.hstack(risks.slice(offset, batch.height).get_columns())
        offset += batch.height
        yield _final(scored.lazy(), combine).drop(RULE, hosted_rule.HOSTED, strict=False).collect()


@functools.cache
def _registry_meta() -> dict[str, tuple[str, str, str]]:
    try:
        from detector.detect import registry

        registry._load_builtins()
        return {n: (d.technique, d.kind, d.severity) for n, d in registry.REGISTRY.items()}
    except ImportError:
        return {}


def detector_meta(names: list[str] | tuple[str, ...] = ()) -> pl.DataFrame:
    """``detector, technique, kind, weight`` for the registered detectors plus ``names``."""
    meta = dict(_registry_meta())
    for n in names:
        meta.setdefault(n, ("", "attack", ""))
    rows = [
        (n, t or None, k, SEVERITY_WEIGHT.get(s, UNKNOWN_DETECTOR_WEIGHT))
        for n, (t, k, s) in sorted(meta.items())
    ]
    return pl.DataFrame(
        rows,
        schema={"detector": pl.String, "technique": pl.String, "kind": pl.String, "weight": pl.Float64},
        orient="row",
    )


def _fired(events: pl.LazyFrame, meta: pl.DataFrame) -> pl.LazyFrame:
    """One row per (event, detector that fired), with the detector's metadata."""
    return (
        events.select(C.EVENT_ID, pl.col(C.DETECTORS).alias("detector"))
        .explode("detector")
        .drop_nulls("detector")
        .join(meta.lazy(), on="detector", how="left")
        .with_columns(pl.col("kind").fill_null("attack"), pl.col("weight").fill_null(UNKNOWN_DETECTOR_WEIGHT))
    )


def rule_event_risk(events: pl.DataFrame) -> np.ndarray:
    """Fallback event risk: ``1 - prod(1 - weight)`` over attack detectors, damped by benign ones."""
    names = events.get_column(C.DETECTORS).explode().drop_nulls().unique().to_list()
    per_event = (
        _fired(events.lazy(), detector_meta(names))
        .group_by(C.EVENT_ID)
        .agg(
            (pl.when(pl.col("kind") == "attack").then((1 - pl.col("weight")).log()).otherwise(0.0).sum())
            .exp()
            .alias("_keep"),
            (pl.col("kind") == "benign").any().alias("_benign"),
        )
        .with_columns(
            ((1 - pl.col("_keep")) * pl.when(pl.col("_benign")).then(BENIGN_DAMPING).otherwise(1.0)).alias(
                RISK
            )
        )
    )
    out = events.lazy().select(C.EVENT_ID).join(per_event, on=C.EVENT_ID, how="left", maintain_order="left")
    return out.select(pl.col(RISK).fill_null(0.0)).collect().to_series().to_numpy()


def _positive(model: Any, x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return np.zeros(0)
    return model.positive_proba(x)


MATRIX_ROWS = 500_000
"""Events scored per model call: the float matrix of a chunk (64 features) stays near 250 MiB."""

RULE = "_rule_risk"
"""Working column: the rule-based risk of an event, kept beside the model's."""


def _final(lf: pl.LazyFrame, combine: bool) -> pl.LazyFrame:
    """Events with ``risk_score`` = the larger of the model's and the rules' risk (when ``combine``)."""
    return lf.with_columns(pl.max_horizontal(RISK, RULE).alias(RISK)) if combine else lf


def event_rule_risk(events: pl.DataFrame, model: Model | None, cfg: Config) -> np.ndarray:
    """The rules' risk of each event as :func:`score_events` keeps it beside the model's (``_rule_risk``)."""
    shared = (
        events.get_column(C.IP_LEGIT_ACCOUNTS).fill_null(0).to_numpy()
        >= cfg.scoring.shared_address_min_accounts
        if C.IP_LEGIT_ACCOUNTS in events.columns
        else np.zeros(events.height, dtype=bool)
    )
    rule = np.clip(rule_event_risk(events), 0.0, 1.0) * np.where(shared, BENIGN_DAMPING, 1.0)
    if model is None:
        return rule
    # The model was trained on enriched events: where an address has no GeoIP answer (no ASN),
    # its network features are all zero, a case it never saw, so the rules' risk stands beside it.
    unseen = (
        events.get_column(C.ASN).is_null().to_numpy()
        if C.ASN in events.columns
        else np.ones(events.height, bool)
    )
    return np.where(unseen, rule, 0.0)


def check_event_features(events: pl.DataFrame, model: Model) -> None:
    """Raise ModelError when ``events`` lack a feature the event model reads."""
    missing = [
        n for n in model.event_features if n not in events.columns and n not in agg.EXTRA_EVENT_FEATURES
    ]
    if missing:
        raise ModelError(
            f"model {model.model_id} reads features this detection lacks: {', '.join(missing[:5])}",
            path=model.path,
            hint="the model was trained on another version of detector.features: retrain with `make model`",
        )


def score_events(events: pl.DataFrame, model: Model | None, cfg: Config | None = None) -> pl.DataFrame:
    """``risk_score`` (the model's, or the rules' without a model) and the rules' risk in ``_rule_risk``.

    The rules' risk of an event from an address where at least ``shared_address_min_accounts``
    accounts log in legitimately (``ip_legit_accounts``, from enrichment) is damped like a benign
    explanation: a CGNAT gateway or a hospital NAT that an attacker also used does not make every
    user behind it a suspect.
    """
    cfg = cfg or Config()
    rule = event_rule_risk(events, model, cfg)
    if model is None:
        risk = rule
    else:
        check_event_features(events, model)
        risk = np.concatenate(
            [
                _positive(model.event, agg.event_matrix(chunk, model.event_features))
                for chunk in events.iter_slices(MATRIX_ROWS)
            ]
            or [np.zeros(0)]
        )
    return events.with_columns(
        pl.Series(RISK, np.clip(risk, 0.0, 1.0), dtype=pl.Float64), pl.Series(RULE, rule, dtype=pl.Float64)
    )


def _verdict_source(cfg: Config) -> pl.Expr:
    s = cfg.scoring
    return (
        pl.when(pl.col(RISK) >= s.source_malicious)
        .then(pl.lit(Verdict.MALICIOUS))
        .when(pl.col(RISK) >= s.source_suspicious)
        .then(pl.lit(Verdict.SUSPICIOUS))
        .otherwise(pl.lit(Verdict.BENIGN))
    )


def source_table(
    events: pl.DataFrame,
    model: Model | None,
    cfg: Config,
    detector_names: tuple[str, ...],
    *,
    combine: bool = True,
) -> pl.DataFrame:
    """Per-source risk, verdict, campaign, counts and shared-address flag (``SOURCE_SCHEMA``)."""
    feats = agg.source_aggregates(events.lazy(), detector_names).collect()
    if model is not None and model.source is not None:
        risk = _positive(model.source, agg.matrix(feats, model.source_features))
    else:
        risk = feats.get_column("src_risk_max").to_numpy()
    feats = feats.with_columns(pl.Series(RISK, np.clip(risk, 0.0, 1.0), dtype=pl.Float64))
    lf = _final(events.lazy(), combine)
    if combine:
        rule = lf.group_by(C.SOURCE_IP).agg(pl.col(RULE).max().alias("_rule"))
        feats = (
            feats.lazy()
            .join(rule, on=C.SOURCE_IP, how="left")
            .with_columns(pl.max_horizontal(RISK, pl.col("_rule").fill_null(0.0)).alias(RISK))
            .collect()
        )
    login, ok, bad = agg.is_login(), agg.is_success(), agg.is_failure()
    calm = ok & (pl.col(RISK) < cfg.scoring.source_suspicious)
    attack = detector_meta().filter(pl.col("kind") == "attack").get_column("detector").to_list()
    facts = (
        lf.filter(pl.col(C.SOURCE_IP).is_not_null())
        .group_by(C.SOURCE_IP)
        .agg(
            pl.col(C.PREFIX).drop_nulls().first(),
            pl.col(C.ASN).drop_nulls().first(),
            pl.col(C.AS_ORG).drop_nulls().first(),
            pl.col(C.COUNTRY).drop_nulls().first(),
            pl.col(C.CAMPAIGN).drop_nulls().mode().sort().first().alias(C.CAMPAIGN),
            pl.col(C.ACCOUNT).filter(login).drop_nulls().n_unique().cast(pl.Int64).alias("accounts_targeted"),
            pl.when(login).then(agg.attempts()).otherwise(0).sum().alias("attempts"),
            pl.when(bad).then(agg.attempts()).otherwise(0).sum().alias("failures"),
            ok.cast(pl.Int64).sum().alias("successes"),
            pl.col(C.ACCOUNT).filter(calm).n_unique().cast(pl.Int64).alias("_calm"),
            pl.col(C.ACCOUNT).filter(ok & ~calm).n_unique().cast(pl.Int64).alias("_risky"),
            pl.col(C.IP_LEGIT_ACCOUNTS).max().fill_null(0).cast(pl.Int64).alias("_known"),
            *_source_reason_facts(attack),
        )
    )
    out = (
        facts.join(feats.lazy().select(C.SOURCE_IP, RISK), on=C.SOURCE_IP, how="left")
        .with_columns(
            pl.when(pl.col("_guessing"))
            .then(pl.max_horizontal(RISK, pl.lit(cfg.scoring.source_malicious)))
            .otherwise(pl.col(RISK))
            .alias(RISK)
        )
        .with_columns(
            pl.max_horizontal("_calm", (pl.col("_known") - pl.col("_risky")).clip(lower_bound=0)).alias(
                "legit_accounts"
            ),
            _verdict_source(cfg).alias("verdict"),
        )
        .with_columns(
            (pl.col("legit_accounts") >= cfg.scoring.shared_address_min_accounts).alias("shared_address")
        )
        .with_columns(source_reasons().alias("reasons"))
        .sort(RISK, C.SOURCE_IP, descending=[True, False])
    )
    return out.select([pl.col(n).cast(t) for n, t in SOURCE_SCHEMA.items()]).collect()


GUESSING = "guessing_source"
"""The detector whose sources are malicious whatever the models say (``detector.detect.detectors.guessing``):
a source failing many times and never logging in; the models never saw failures without an account."""


def _source_reason_facts(attack: list[str]) -> list[pl.Expr]:
    """Per-source aggregates the reasons read (``_guessing``, ``_unnamed``, ``_fail_from``, ``_fail_to``,
    ``_attacks``: the attack detectors that fired on its events, sorted)."""
    bad = agg.is_failure()
    fired = pl.col(C.DETECTORS).list.explode(keep_nulls=False, empty_as_null=False)
    return [
        agg.fired(GUESSING).any().alias("_guessing"),
        pl.when(bad & pl.col(C.ACCOUNT).is_null()).then(agg.attempts()).otherwise(0).sum().alias("_unnamed"),
        pl.col(C.TIMESTAMP).filter(bad).min().alias("_fail_from"),
        pl.col(C.TIMESTAMP).filter(bad).max().alias("_fail_to"),
        fired.filter(fired.is_in(attack) & (fired != GUESSING)).unique().sort().alias("_attacks"),
    ]


def source_reasons() -> pl.Expr:
    """``reasons`` of a source in plain words (empty for a benign one): never logging in while
    failing (with the failures without an account name and the time span), the other attack
    detectors that fired on its attempts, its campaign, or else the model's risk alone."""
    span = pl.format(
        "{} -> {}",
        pl.col("_fail_from").dt.strftime("%Y-%m-%d %H:%M"),
        pl.col("_fail_to").dt.strftime("%Y-%m-%d %H:%M UTC"),
    )
    guessing = pl.when(pl.col("_guessing")).then(
        pl.format(
            "guessing: no successful login, {} from this address ({} without an account name), {}",
            _plural(pl.col("failures"), "failed attempt", "failed attempts"),
            "_unnamed",
            span,
        )
    )
    campaign = pl.when(pl.col(C.CAMPAIGN).is_not_null()).then(pl.format("campaign {}", C.CAMPAIGN))
    others = pl.col("_attacks").list.eval(pl.element().str.replace_all("_", " "))
    parts = pl.concat_list(
        pl.concat_list(guessing).list.drop_nulls(),
        others.fill_null(pl.lit([], pl.List(pl.String))),
        pl.concat_list(campaign).list.drop_nulls(),
    )
    fallback = pl.concat_list(pl.format("risk {} from the source model", pl.col(RISK).round(2)))
    empty = pl.lit([], pl.List(pl.String))
    return (
        pl.when(pl.col("verdict") == Verdict.BENIGN)
        .then(empty)
        .when(parts.list.len() > 0)
        .then(parts)
        .otherwise(fallback)
    )


def _unshared_malicious(sources: pl.DataFrame) -> pl.LazyFrame:
    return sources.lazy().filter(
        (pl.col("verdict") == Verdict.MALICIOUS)
        & ~pl.col("shared_address").fill_null(False)
        & (pl.col("legit_accounts").fill_null(0) == 0)
    )


def _failed_from(events: pl.LazyFrame, attackers: pl.LazyFrame) -> pl.LazyFrame:
    """Failed logins naming an account, from the ``attackers`` (a frame with ``source_ip``)."""
    return events.filter(agg.is_failure() & pl.col(C.ACCOUNT).is_not_null()).join(
        attackers.select(C.SOURCE_IP), on=C.SOURCE_IP, how="semi"
    )


OWNER_EXPLAINERS: tuple[str, ...] = ("stale_password_device", "typo_then_success")
"""Benign detectors that explain failures followed by a success as the owner's own (an old password
on a device, a typo): such a pair is not a brute force that got in."""


def _owner_explained() -> pl.Expr:
    return pl.col(C.DETECTORS).list.eval(pl.element().is_in(OWNER_EXPLAINERS)).list.any().fill_null(False)


def takeover_sprayers(events: pl.LazyFrame, sources: pl.DataFrame, cfg: Config) -> pl.LazyFrame:
    """``source_ip, _n``: unshared malicious sources that failed on at least
    ``[scoring] takeover_failed_accounts`` accounts (read across accounts: computed once over all
    events when accounts are scored per shard)."""
    failed = _failed_from(events, _unshared_malicious(sources))
    return (
        failed.group_by(C.SOURCE_IP)
        .agg(pl.col(C.ACCOUNT).n_unique().alias("_n"))
        .filter(pl.col("_n") >= cfg.scoring.takeover_failed_accounts)
    )


def takeover_risk(
    events: pl.LazyFrame, sources: pl.DataFrame, cfg: Config, sprayers: pl.DataFrame | None = None
) -> pl.LazyFrame:
    """``account, _takeover, _takeover_why``: the riskiest takeover login of each account.

    A takeover login is a success from a malicious source that either failed on at least
    ``[scoring] takeover_failed_accounts`` accounts and on which scoring counts no legitimate user
    (``legit_accounts == 0``, not shared; the success scored at or above ``account_compromised``:
    a sprayer's one right guess) or failed at least ``takeover_failed_attempts`` times on this
    account, shared or not, with no owner's explanation (:data:`OWNER_EXPLAINERS`) on those
    failures or the success (its risk counts as ``account_compromised`` at least, capped at 1): a
    VPN exit's customers do not fail ten times on one mailbox before getting in, a brute force
    through that exit does, however calm the success looks. The account model can
    explain such a login away (the account's other logins come through a shared address), yet the
    attacker holds the password. An address an attacker touched once (a home line a proxy borrowed)
    or a success below the threshold (a VPN exit a stuffing list also used) is not enough.
    """
    s = cfg.scoring
    failed = _failed_from(events, sources.lazy().filter(pl.col("verdict") == Verdict.MALICIOUS))
    ok = events.filter(agg.is_success() & pl.col(C.ACCOUNT).is_not_null())
    spraying = takeover_sprayers(events, sources, cfg) if sprayers is None else sprayers.lazy()
    owner = _owner_explained()
    guessing = (
        failed.group_by(C.SOURCE_IP, C.ACCOUNT)
        .agg(agg.attempts().sum().alias("_n"), owner.any().alias("_owner"))
        .filter((pl.col("_n") >= s.takeover_failed_attempts) & ~pl.col("_owner"))
    )
    sprayed = (
        ok.filter(pl.col(RISK) >= s.account_compromised)
        .join(spraying, on=C.SOURCE_IP)
        .select(
            C.ACCOUNT,
            RISK,
            pl.format(
                "a source that failed on {} accounts, with no legitimate user logged in from it", "_n"
            ).alias("_takeover_why"),
        )
    )
    guessed = (
        ok.filter(~owner)
        .join(guessing, on=[C.SOURCE_IP, C.ACCOUNT])
        .select(
            C.ACCOUNT,
            pl.max_horizontal(RISK, pl.lit(s.account_compromised)).clip(upper_bound=1.0).alias(RISK),
            pl.format("a source that failed {} times on it", "_n").alias("_takeover_why"),
        )
    )
    return (
        pl.concat([sprayed, guessed])
        .sort(RISK, "_takeover_why", descending=[True, False])
        .group_by(C.ACCOUNT)
        .agg(pl.col(RISK).first().alias("_takeover"), pl.col("_takeover_why").first())
    )


def _rule_columns(model: Model | None, combine: bool) -> list[str]:
    """The columns the rules' risk lives in: beside the model's (combined), or alone without a model."""
    return [RULE] if combine else ([RISK, RULE] if model is None else [])


def _hosted(events: pl.LazyFrame, sources: pl.DataFrame, cfg: Config, columns: list[str]) -> pl.DataFrame:
    """The night's :func:`hosted.hosted_takeovers` (none when the rules' risk is not used)."""
    if not columns:
        return pl.DataFrame(schema=hosted_rule.HOSTED_SCHEMA)
    attackers = _unshared_malicious(sources).select(C.SOURCE_IP, C.ASN)
    return hosted_rule.hosted_takeovers(events, attackers, cfg).collect()


def _rescore_sources(
    events: pl.LazyFrame,
    sources: pl.DataFrame,
    hosted: pl.DataFrame,
    model: Model | None,
    cfg: Config,
    names: tuple[str, ...],
    combine: bool,
) -> pl.DataFrame:
    """``sources`` with the rows of the hosted takeovers' addresses scored again (a source's row
    reads only its own events, so the other rows stand)."""
    ips = events.join(hosted.lazy(), on=C.EVENT_ID, how="semi").select(C.SOURCE_IP).unique()
    again = source_table(
        events.join(ips, on=C.SOURCE_IP, how="semi").collect(), model, cfg, names, combine=combine
    )
    kept = sources.join(again.select(C.SOURCE_IP), on=C.SOURCE_IP, how="anti")
    return pl.concat([kept, again]).sort(RISK, C.SOURCE_IP, descending=[True, False])


def _with_reason(reason: pl.Expr) -> pl.Expr:
    """The account's ``reasons`` with ``reason`` appended."""
    return pl.concat_list(pl.col("reasons").fill_null(pl.lit([], pl.List(pl.String))), reason)


def _takeover_reason() -> pl.Expr:
    return pl.format("taken over: {}", pl.col("_takeover_why"))


def _verdict_account(cfg: Config) -> pl.Expr:
    s = cfg.scoring
    return (
        pl.when(pl.col(RISK) >= s.account_compromised)
        .then(pl.lit(Verdict.COMPROMISED))
        .when(pl.col(RISK) >= s.account_suspicious)
        .then(pl.lit(Verdict.SUSPICIOUS))
        .when(pl.col("_targeted"))
        .then(pl.lit(Verdict.TARGETED))
        .otherwise(pl.lit(Verdict.CLEAN))
    )


def _words(name: pl.Expr) -> pl.Expr:
    return name.str.replace_all("_", " ")


def _plural(n: pl.Expr, one: str, many: str) -> pl.Expr:
    return pl.format("{} {}", n, pl.when(n == 1).then(pl.lit(one)).otherwise(pl.lit(many)))


def _campaign(col: pl.Expr, template: str) -> pl.Expr:
    return pl.when(col.is_not_null()).then(pl.format(template, col)).otherwise(pl.lit(""))


def _network(prefix: str = "") -> pl.Expr:
    """``203.0.113.5 (AS64500 HostCo, hosting)`` from the columns ``{prefix}source_ip`` etc."""
    c = functools.partial(lambda p, n: pl.col(p + n), prefix)
    kind = (
        pl.when(c(C.IS_TOR).fill_null(False))
        .then(pl.lit(", Tor exit"))
        .when(c(C.IS_VPN).fill_null(False))
        .then(pl.lit(", VPN"))
        .when(c(C.IS_HOSTING).fill_null(False))
        .then(pl.lit(", hosting"))
        .otherwise(pl.lit(""))
    )
    asn = (
        pl.when(c(C.ASN).is_not_null())
        .then(pl.format("AS{} {}", c(C.ASN), c(C.AS_ORG).fill_null("")))
        .otherwise(pl.lit("unknown network"))
    )
    country = pl.when(c(C.COUNTRY).is_not_null()).then(pl.format(", {}", c(C.COUNTRY))).otherwise(pl.lit(""))
    return pl.format("{} ({}{}{})", c(C.SOURCE_IP), asn.str.strip_chars(), country, kind)


def account_reasons(events: pl.LazyFrame, sources: pl.DataFrame, meta: pl.DataFrame) -> pl.LazyFrame:
    """``account, reasons, techniques, _targeted``: plain-word reasons from the account's events."""
    ok, bad = agg.is_success(), agg.is_failure()
    src_bad = sources.lazy().select(
        C.SOURCE_IP, pl.col("verdict").is_in([Verdict.MALICIOUS, Verdict.SUSPICIOUS]).alias("_src_bad")
    )
    ev = events.filter(pl.col(C.ACCOUNT).is_not_null()).join(src_bad, on=C.SOURCE_IP, how="left")
    ev = ev.with_columns(pl.col("_src_bad").fill_null(False))
    have = ev.collect_schema().names()
    new_country = pl.col("is_new_country") > 0 if "is_new_country" in have else pl.lit(False)
    new_asn = pl.col("is_new_asn") > 0 if "is_new_asn" in have else pl.lit(False)
    risky_ok = ok & (pl.col(RISK) >= agg.RISKY)
    top_cols = [C.SOURCE_IP, C.ASN, C.AS_ORG, C.COUNTRY, C.IS_HOSTING, C.IS_VPN, C.IS_TOR, C.CAMPAIGN]
    top = (
        ev.filter(risky_ok)
        # ties on risk broken by event order, so that the reason names the same login every run
        .sort(RISK, C.EVENT_ID, descending=[True, False])
        .group_by(C.ACCOUNT)
        .agg(
            *[pl.col(n).first().alias(f"top_{n}") for n in top_cols],
            pl.len().alias("_n_risky_ok"),
            new_country.first().alias("_new_country"),
            new_asn.first().alias("_new_asn"),
        )
    )
    counts = ev.group_by(C.ACCOUNT).agg(
        pl.when(bad).then(agg.attempts()).otherwise(0).sum().alias("_failures"),
        pl.col(C.SOURCE_IP).filter(bad).n_unique().alias("_fail_sources"),
        pl.when(bad & pl.col("_src_bad")).then(agg.attempts()).otherwise(0).sum().alias("_bad_failures"),
        pl.col(C.SOURCE_IP).filter(bad & pl.col("_src_bad")).n_unique().alias("_bad_sources"),
        pl.col(C.CAMPAIGN).filter(bad).drop_nulls().mode().sort().first().alias("_fail_campaign"),
        (bad & (pl.col(C.CAMPAIGN).is_not_null() | pl.col("_src_bad"))).any().alias("_targeted"),
    )
    fired = (
        _fired(ev.select(C.EVENT_ID, C.ACCOUNT, C.DETECTORS), meta)
        .join(ev.select(C.EVENT_ID, C.ACCOUNT), on=C.EVENT_ID)
        .group_by(C.ACCOUNT, "detector", "technique", "kind")
        .agg(pl.len().alias("n"))
    )
    detector_text = (
        pl.when(pl.col("kind") == "benign")
        .then(
            pl.format(
                "explained as benign: {} ({})",
                _words(pl.col("detector")),
                _plural(pl.col("n"), "event", "events"),
            )
        )
        .otherwise(
            pl.format(
                "{}{} on {}",
                _words(pl.col("detector")),
                pl.when(pl.col("technique").is_not_null())
                .then(pl.format(" ({})", pl.col("technique")))
                .otherwise(pl.lit("")),
                _plural(pl.col("n"), "event", "events"),
            )
        )
    )
    per_detector = (
        fired.sort(["kind", "n", "detector"], descending=[False, True, False])
        .group_by(C.ACCOUNT, maintain_order=True)
        .agg(
            detector_text.alias("_detector_reasons"),
            pl.col("technique")
            .filter(pl.col("kind") == "attack")
            .drop_nulls()
            .unique()
            .sort()
            .alias(C.TECHNIQUES),
        )
    )
    success_reason = pl.when(pl.col("_n_risky_ok").fill_null(0) > 0).then(
        pl.format(
            "{} from {}{}{}",
            _plural(pl.col("_n_risky_ok"), "successful login", "successful logins"),
            _network("top_"),
            pl.when(pl.col("_failures") > 0)
            .then(pl.format(" after {}", _plural(pl.col("_failures"), "failed attempt", "failed attempts")))
            .otherwise(pl.lit("")),
            _campaign(pl.col("top_" + C.CAMPAIGN), " from campaign {}"),
        )
    )
    new_net = (
        pl.when(pl.col("_new_country").fill_null(False))
        .then(pl.format("first login ever from country {}", pl.col("top_" + C.COUNTRY)))
        .when(pl.col("_new_asn").fill_null(False))
        .then(pl.format("first login ever from AS{}", pl.col("top_" + C.ASN)))
    )
    attacked = pl.when(pl.col("_bad_failures") > 0).then(
        pl.format(
            "{} from {} seen attacking{}",
            _plural(pl.col("_bad_failures"), "failed attempt", "failed attempts"),
            _plural(pl.col("_bad_sources"), "source", "sources"),
            _campaign(pl.col("_fail_campaign"), " (campaign {})"),
        )
    )
    return (
        counts.join(top, on=C.ACCOUNT, how="left")
        .join(per_detector, on=C.ACCOUNT, how="left")
        .select(
            C.ACCOUNT,
            pl.concat_list(
                pl.concat_list(success_reason, new_net, attacked).list.drop_nulls(),
                pl.col("_detector_reasons").fill_null(pl.lit([], pl.List(pl.String))),
            ).alias("reasons"),
            pl.col(C.TECHNIQUES).fill_null(pl.lit([], pl.List(pl.String))),
            pl.col("_targeted"),
        )
    )


def account_table(
    events: pl.DataFrame,
    sources: pl.DataFrame,
    model: Model | None,
    cfg: Config,
    detector_names: tuple[str, ...],
    *,
    combine: bool = True,
    context: pl.DataFrame | None = None,
    sprayers: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per-account compromise risk, verdict, reasons and counts (``ACCOUNT_SCHEMA``).

    When ``events`` holds one account shard, ``context`` (:func:`aggregates.source_context`) and
    ``sprayers`` (:func:`takeover_sprayers`) are computed over all events and passed in.
    """
    feats = agg.account_aggregates(events.lazy(), detector_names, context).collect()
    if model is not None and model.account is not None:
        risk = _positive(model.account, agg.matrix(feats, model.account_features))
    else:
        risk = feats.get_column("acc_risk_success_max").to_numpy()
    feats = feats.with_columns(pl.Series(RISK, np.clip(risk, 0.0, 1.0), dtype=pl.Float64))
    lf = _final(events.lazy(), combine)
    if combine:
        rule = lf.group_by(C.ACCOUNT).agg(
            pl.col(RULE).filter(agg.is_success()).max().fill_null(0.0).alias("_rule")
        )
        feats = (
            feats.lazy()
            .join(rule, on=C.ACCOUNT, how="left", nulls_equal=True)
            .with_columns(pl.max_horizontal(RISK, pl.col("_rule").fill_null(0.0)).alias(RISK))
            .collect()
        )
    login, ok, bad = agg.is_login(), agg.is_success(), agg.is_failure()
    facts = (
        lf.filter(pl.col(C.ACCOUNT).is_not_null())
        .group_by(C.ACCOUNT)
        .agg(
            pl.col(C.IS_PRACTITIONER).fill_null(False).any(),
            pl.col(C.PROFESSION).drop_nulls().first(),
            pl.when(login).then(agg.attempts()).otherwise(0).sum().alias("attempts"),
            pl.when(bad).then(agg.attempts()).otherwise(0).sum().alias("failures"),
            ok.cast(pl.Int64).sum().alias("successes"),
            pl.col(C.SOURCE_IP).drop_nulls().n_unique().cast(pl.Int64).alias("distinct_sources"),
            pl.col(C.COUNTRY).drop_nulls().unique().sort().alias("countries"),
            pl.col(C.TIMESTAMP).min().alias("first_seen"),
            pl.col(C.TIMESTAMP).max().alias("last_seen"),
        )
    )
    reasons = account_reasons(lf, sources, detector_meta(detector_names))
    raised = pl.col("_takeover").is_not_null() & (pl.col(RISK) < cfg.scoring.account_compromised)
    out = (
        facts.join(feats.lazy().select(C.ACCOUNT, RISK), on=C.ACCOUNT, how="left")
        .join(reasons, on=C.ACCOUNT, how="left")
        .join(takeover_risk(lf, sources, cfg, sprayers), on=C.ACCOUNT, how="left")
        .join(hosted_rule.reasons(lf), on=C.ACCOUNT, how="left")
        .with_columns(
            pl.col("_targeted").fill_null(False),
            pl.when(raised)
            .then(_with_reason(_takeover_reason()))
            .otherwise(pl.col("reasons"))
            .alias("reasons"),
            pl.when(raised).then(pl.col("_takeover")).otherwise(pl.col(RISK)).alias(RISK),
        )
        .with_columns(
            pl.when(pl.col("_hosted_why").is_not_null())
            .then(_with_reason(pl.col("_hosted_why")))
            .otherwise(pl.col("reasons"))
            .alias("reasons")
        )
        .with_columns(_verdict_account(cfg).alias("verdict"))
        .with_columns(
            pl.when(pl.col("verdict") == Verdict.CLEAN)
            .then(pl.col("reasons").list.eval(pl.element().filter(pl.element().str.starts_with("explained"))))
            .otherwise(pl.col("reasons"))
            .alias("reasons")
        )
        .sort(RISK, C.ACCOUNT, descending=[True, False])
    )
    return out.select([pl.col(n).cast(t) for n, t in ACCOUNT_SCHEMA.items()]).collect()


def score(
    detection: Any,
    model: Model | None,
    cfg: Config,
    *,
    combine: bool = True,
    workers: Workers | None = None,
) -> Scores:
    """Score a detection: per-event risk, per-account and per-source verdicts with reasons.

    With a model, each level's risk is the larger of the model's probability and the rules' risk
    (:func:`rule_event_risk`; an account's riskiest successful login, a source's riskiest event)
    counted only on events whose address GeoIP could not place (no ASN): there the model's network
    features are all zero, a case it was not trained on, and strong detector evidence must not be
    silenced. ``combine=False`` keeps the model's alone. The account and source models always read
    the login model's own risk, as in training.

    Args:
        detection: ``detector.detect.Detection`` (``.events`` LazyFrame or DataFrame).
        model: A loaded :class:`Model`, or ``None`` for the rule-based fallback.
        cfg: Configuration; ``cfg.scoring`` holds the verdict thresholds.
        combine: Combine the model with the rules (default) or not.
        workers: run the per-shard steps of a sharded detection (default: in this process).
    """
    if getattr(detection, "shards", ()):
        return score_shards(detection.shards, model, cfg, combine=combine, workers=workers)
    events = detection.events
    events = events.collect() if isinstance(events, pl.LazyFrame) else events
    names = tuple(model.detector_names) if model is not None else _fired_names(events)
    events = score_events(events, model, cfg)
    combine = combine and model is not None
    sources = source_table(events, model, cfg, names, combine=combine)
    columns = _rule_columns(model, combine)
    hosted = _hosted(events.lazy(), sources, cfg, columns)
    if hosted.height:
        events = hosted_rule.mark(events.lazy(), hosted, cfg, columns).collect()
        sources = _rescore_sources(events.lazy(), sources, hosted, model, cfg, names, combine)
    accounts = account_table(events, sources, model, cfg, names, combine=combine)
    final = _final(events.lazy(), combine).drop(RULE, hosted_rule.HOSTED, strict=False).collect()
    return Scores(
        events=final, accounts=accounts, sources=sources, model_id=model.model_id if model else None
    )


SCORE_INPUTS: tuple[str, ...] = (
    C.EVENT_ID,
    C.ACTION,
    C.OUTCOME,
    C.ATTEMPTS,
    C.CAMPAIGN,
    C.DETECTORS,
    C.IP_LEGIT_ACCOUNTS,
    C.ASN,
)
"""Columns :func:`score_events` reads besides the model's event features."""


@dataclass(frozen=True)
class ScoreContext:
    """What a per-shard scoring step reads besides its shard (picklable; frames are Arrow-friendly).

    Built by :func:`score_shards` and extended between its global steps.

    Attributes:
        cfg: the effective configuration.
        model: the loaded model (``None``: the rules).
        combine: ``risk_score`` is the larger of the model's and the rules' risk.
        names: the detectors the account and source tables count.
        wanted: the columns :func:`risk_inputs_step` keeps.
        path_risks: the event model's positive probability (``_positive``) per distinct path
            through its trees (``w0``...), over all shards (:func:`path_risks`).
        hosted: hosted addresses whose events' rules' risk is raised (:mod:`detector.score.hosted`).
        sources: the source table (all shards).
        context: per-source context of the account table (``aggregates.source_context``).
        sprayers: the takeover sprayers (:func:`takeover_sprayers`).
    """

    cfg: Config
    model: Model | None
    combine: bool
    names: tuple[str, ...]
    wanted: tuple[str, ...]
    path_risks: pl.DataFrame | None = None
    hosted: pl.DataFrame | None = None
    sources: pl.DataFrame | None = None
    context: pl.DataFrame | None = None
    sprayers: pl.DataFrame | None = None

    @property
    def thresholds(self) -> list[np.ndarray] | None:
        """The event model's split thresholds (``None``: no model, or not plain boosted trees)."""
        return self.model.event.thresholds() if self.model is not None else None


def _need(value: Any, what: str) -> Any:
    if value is None:
        raise ValueError(f"this step needs the context's {what}: run the global step before it")
    return value


def risk_inputs_step(detection: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard: the columns of its detection the event risk reads."""
    return detection.select([c for c in dict.fromkeys(ctx.wanted) if c in detection.columns])


def rule_risk_step(inputs: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard, without distinct paths (no model, or not plain trees): ``risk_score`` and
    ``_rule_risk`` of each event (:func:`score_events`)."""
    return score_events(inputs, ctx.model, ctx.cfg).select(RISK, RULE)


def paths_step(inputs: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard, with a tree model: each event's rules' risk and path through the trees
    (``_rule_risk``, ``w0``...; :meth:`~detector.score.model.CalibratedBoostingClassifier.paths`)."""
    model = _need(ctx.model, "model")
    thresholds = _need(ctx.thresholds, "model's thresholds")
    check_event_features(inputs, model)
    rule = pl.Series(RULE, event_rule_risk(inputs, model, ctx.cfg), dtype=pl.Float64)
    paths, inverse = model.event.paths(agg.event_matrix(inputs, model.event_features), thresholds)
    return paths[inverse].insert_column(0, rule)


def path_risks(paths: Sequence[pl.DataFrame], ctx: ScoreContext) -> pl.DataFrame:
    """Global: the event model's positive probability per distinct path of all shards' events
    (each shard's :func:`paths_step` frame, or its distinct paths).

    The event model predicts once per distinct path over all shards together (the shards of a
    night share most paths: 151,597 per-shard paths but 90,137 distinct ones over 4 shards of
    532,873 events).
    """
    model = _need(ctx.model, "model")
    every = pl.concat([p.drop(RULE, strict=False).unique() for p in paths]).unique()
    positive = model.event.predict_paths(every, _need(ctx.thresholds, "thresholds"), threads=PREDICT_THREADS)
    return every.with_columns(pl.Series("_positive", positive[:, -1], dtype=pl.Float64))


def path_risk_step(paths: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard (:func:`paths_step`'s frame): ``risk_score`` and ``_rule_risk`` of each event."""
    table = _need(ctx.path_risks, "path risks")
    codes = [c for c in paths.columns if c != RULE]
    positive = paths.select(codes).join(table, on=codes, how="left", maintain_order="left")
    return pl.DataFrame(
        [
            pl.Series(RISK, np.clip(positive.get_column("_positive").to_numpy(), 0.0, 1.0), dtype=pl.Float64),
            paths.get_column(RULE),
        ]
    )


def hosted_step(scored: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard (``event_id``, ``risk_score``, ``_rule_risk``): the risk columns with the hosted
    addresses' events' risk raised and the mark (:func:`detector.score.hosted.mark`)."""
    hosted = _need(ctx.hosted, "hosted addresses")
    columns = _rule_columns(ctx.model, ctx.combine)
    marked = hosted_rule.mark(scored.lazy().select(C.EVENT_ID, RISK, RULE), hosted, ctx.cfg, columns)
    return marked.drop(C.EVENT_ID).collect()


def account_step(scored: pl.DataFrame, ctx: ScoreContext) -> pl.DataFrame:
    """Per account shard (its detection beside its risk columns): its accounts' rows."""
    return account_table(
        scored,
        _need(ctx.sources, "source table"),
        ctx.model,
        ctx.cfg,
        ctx.names,
        combine=ctx.combine,
        context=_need(ctx.context, "source context"),
        sprayers=_need(ctx.sprayers, "takeover sprayers"),
    )


Pair = tuple[Path, Path]
"""A scored shard: its detection file and its row-aligned risk file."""


def rule_risk_task(pair: Pair, ctx: ScoreContext) -> None:
    """Per shard, without distinct paths: its risk file (:func:`rule_risk_step`)."""
    detection, risk = pair
    inputs = risk_inputs_step(_shard_inputs(detection, ctx.wanted), ctx)
    rule_risk_step(inputs, ctx).write_parquet(risk, compression="lz4")


def paths_task(pair: Pair, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard, with a tree model: its events' paths kept in its risk file; its distinct paths."""
    detection, risk = pair
    paths = paths_step(risk_inputs_step(_shard_inputs(detection, ctx.wanted), ctx), ctx)
    paths.write_parquet(risk, compression="lz4")
    return paths.drop(RULE).unique()


def path_risk_task(pair: Pair, ctx: ScoreContext) -> None:
    """Per shard: its risk file from the paths :func:`paths_task` kept there (:func:`path_risk_step`)."""
    risk = pair[1]
    path_risk_step(pl.read_parquet(risk), ctx).write_parquet(risk, compression="lz4")


def hosted_task(pair: Pair, ctx: ScoreContext) -> None:
    """Per shard: its risk file with the hosted addresses' events raised and marked (:func:`hosted_step`)."""
    detection, risk = pair
    scored = pl.concat(
        [pl.read_parquet(detection, columns=[C.EVENT_ID]), pl.read_parquet(risk, columns=[RISK, RULE])],
        how="horizontal",
    )
    hosted_step(scored, ctx).write_parquet(risk, compression="lz4")


def account_task(pair: Pair, ctx: ScoreContext) -> pl.DataFrame:
    """Per shard: its accounts' rows (:func:`account_step`)."""
    detection, risk = pair
    return account_step(pl.concat([pl.read_parquet(detection), pl.read_parquet(risk)], how="horizontal"), ctx)


def write_shard_risks(pairs: tuple[Pair, ...], ctx: ScoreContext, workers: Workers | None = None) -> None:
    """Write each shard's ``risk_score`` and ``_rule_risk`` (as :func:`score_events`) to its risk file.

    With a tree model, each shard's paths (:func:`paths_step`) are kept in its risk file until
    the one prediction over all shards' distinct paths (:func:`path_risks`) gives their risks.
    """
    workers = workers or in_process()
    if ctx.thresholds is None:
        list(workers.map(rule_risk_task, pairs, ctx))
        return
    distinct = list(workers.map(paths_task, pairs, ctx))
    ctx = replace(ctx, path_risks=path_risks(distinct, ctx))
    del distinct
    list(workers.map(path_risk_task, pairs, ctx))


PREDICT_THREADS = 2
"""Threads of the one event-model prediction over a night's distinct paths."""


def _shard_inputs(path: Path, wanted: Sequence[str]) -> pl.DataFrame:
    scan = pl.scan_parquet(path)
    have = scan.collect_schema().names()
    return scan.select([c for c in dict.fromkeys(wanted) if c in have]).collect()


def _scored_scans(pairs: tuple[tuple[Path, Path], ...]) -> list[pl.LazyFrame]:
    """Each shard's detection file beside its row-aligned risk file."""
    return [pl.concat([pl.scan_parquet(d), pl.scan_parquet(r)], how="horizontal") for d, r in pairs]


def score_shards(
    shards: tuple[Path, ...],
    model: Model | None,
    cfg: Config,
    *,
    combine: bool = True,
    workers: Workers | None = None,
) -> Scores:
    """:func:`score` of a detection held per account shard (``Detection.shards``), one shard in memory.

    Event risk is row-wise: each shard's risk columns are computed from the few columns they read
    and written beside it (``risk-<shard file>``, row-aligned with it). The source table is one
    group-by over the few columns it reads of all shards; accounts are scored per shard (an
    account's events are in one shard) with the per-source context and the takeover sprayers
    computed over all events. ``Scores.events`` merges the scored shards back into event order,
    lazily (it is streamed into ``events.parquet``).

    The per-shard work is the steps ``step(frame, ctx) -> frame`` with one picklable
    :class:`ScoreContext` (:func:`risk_inputs_step`, :func:`rule_risk_step` or :func:`paths_step`
    then :func:`path_risk_step`, :func:`hosted_step`, :func:`account_step`); the global steps
    between them (:func:`path_risks`, the source table, the hosted addresses, the source context,
    the takeover sprayers) extend the context. ``workers`` run the per-shard tasks (default: in
    this process); the result does not depend on them.
    """
    names = tuple(model.detector_names) if model is not None else _fired_names(pl.scan_parquet(list(shards)))
    combine = combine and model is not None
    wanted = (*SCORE_INPUTS, *(model.event_features if model is not None else ()))
    ctx = ScoreContext(cfg, model, combine, names, wanted)
    pairs = tuple((path, path.with_name("risk-" + path.name)) for path in shards)
    workers = workers or in_process()
    write_shard_risks(pairs, ctx, workers)
    scored = _scored_scans(pairs)
    every = pl.concat(scored)
    sources = source_table(every, model, cfg, names, combine=combine)  # type: ignore[arg-type]
    hosted = _hosted(every, sources, cfg, _rule_columns(model, combine))
    if hosted.height:  # the risk files take the raised rules' risk and the mark
        list(workers.map(hosted_task, pairs, replace(ctx, hosted=hosted)))
        scored = _scored_scans(pairs)
        every = pl.concat(scored)
        sources = _rescore_sources(every, sources, hosted, model, cfg, names, combine)
    ctx = replace(
        ctx,
        sources=sources,
        context=agg.source_context(every).collect(),
        sprayers=takeover_sprayers(every, sources, cfg).collect(),
    )
    accounts = pl.concat(list(workers.map(account_task, pairs, ctx))).sort(
        RISK, C.ACCOUNT, descending=[True, False]
    )
    events = functools.reduce(
        lambda a, b: a.merge_sorted(b, key=C.EVENT_ID),
        [_final(s, combine).drop(RULE, hosted_rule.HOSTED, strict=False) for s in scored],
    )
    return Scores(
        events=events,
        accounts=accounts,
        sources=sources,
        model_id=model.model_id if model else None,
        shards=pairs,
        combine=combine,
    )


def _fired_names(events: pl.DataFrame | pl.LazyFrame) -> tuple[str, ...]:
    names = events.lazy().select(pl.col(C.DETECTORS).explode().drop_nulls().unique()).collect()
    return tuple(sorted(names.to_series().to_list()))

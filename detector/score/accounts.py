"""Per-account compromise risk, verdict, reasons and counts (``schema.ACCOUNT_SCHEMA``)."""

from __future__ import annotations

import numpy as np
import polars as pl

from detector.config import Config
from detector.schema import ACCOUNT_SCHEMA, C, Verdict
from detector.score import aggregates as agg
from detector.score import hosted as hosted_rule
from detector.score.io import Model
from detector.score.reasons import _takeover_reason, _with_reason, account_reasons
from detector.score.rules import RISK, RULE, _final, _positive, detector_meta
from detector.score.takeover import OWNER_VPN_NEEDS, owner_vpn_accounts, takeover_risk


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
    have = lf.collect_schema()
    if cfg.scoring.owner_vpn and all(c in have for c in OWNER_VPN_NEEDS):  # off: no work
        feats = (
            feats.lazy()
            .join(owner_vpn_accounts(lf, cfg), on=C.ACCOUNT, how="left", nulls_equal=True)
            .with_columns(
                pl.when(pl.col("_owner_vpn_as").is_not_null())
                .then(pl.min_horizontal(RISK, pl.lit(cfg.scoring.account_suspicious)))
                .otherwise(pl.col(RISK))
                .alias(RISK)
            )
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
    owner = ["_owner_vpn_as"] if "_owner_vpn_as" in feats.columns else []
    raised = pl.col("_takeover").is_not_null() & (pl.col(RISK) < cfg.scoring.account_compromised)
    out = (
        facts.join(feats.lazy().select(C.ACCOUNT, RISK, *owner), on=C.ACCOUNT, how="left")
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
        .with_columns(
            pl.when(pl.col("_owner_vpn_as").is_not_null() & pl.col("_takeover").is_null())
            .then(
                _with_reason(
                    pl.format(
                        "explained as benign: a VPN exit of AS{} the account used before", "_owner_vpn_as"
                    )
                )
            )
            .otherwise(pl.col("reasons"))
            .alias("reasons")
            if owner
            else pl.col("reasons")
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

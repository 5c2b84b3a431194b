"""The reasons of a verdict in plain words: an account's (:func:`account_reasons`) and a source's
(:func:`source_reasons`), from the facts scoring aggregated."""

from __future__ import annotations

import functools

import polars as pl

from detector.schema import C, Verdict
from detector.score import aggregates as agg
from detector.score.rules import RISK, _fired

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


def _with_reason(reason: pl.Expr) -> pl.Expr:
    """The account's ``reasons`` with ``reason`` appended."""
    return pl.concat_list(pl.col("reasons").fill_null(pl.lit([], pl.List(pl.String))), reason)


def _takeover_reason() -> pl.Expr:
    return pl.format("taken over: {}", pl.col("_takeover_why"))


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

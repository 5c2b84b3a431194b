"""Per-source risk, verdict, campaign, counts and shared-address flag (``schema.SOURCE_SCHEMA``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from detector.config import Config
from detector.parts import hash_part, split_rows
from detector.schema import SOURCE_SCHEMA, C, Verdict
from detector.score import aggregates as agg
from detector.score.io import Model
from detector.score.reasons import _source_reason_facts, source_reasons
from detector.score.rules import RISK, RULE, _final, _positive, detector_meta


def _verdict_source(cfg: Config) -> pl.Expr:
    s = cfg.scoring
    return (
        pl.when(pl.col(RISK) >= s.source_malicious)
        .then(pl.lit(Verdict.MALICIOUS))
        .when(pl.col(RISK) >= s.source_suspicious)
        .then(pl.lit(Verdict.SUSPICIOUS))
        .otherwise(pl.lit(Verdict.BENIGN))
    )


SOURCE_BUCKET_EVENTS = 500_000
"""Events per source bucket of :func:`source_table` and :func:`source_context` over a large night."""


def source_buckets(events: int, bucket_events: int = SOURCE_BUCKET_EVENTS) -> int:
    """How many source buckets a night of ``events`` events is aggregated in (at least 1)."""
    return max(1, -(-events // max(bucket_events, 1)))


def by_source(events: pl.LazyFrame | pl.DataFrame, buckets: int) -> list[pl.LazyFrame]:
    """``events`` split into ``buckets`` parts by a hash of the source address: every event of an
    address is in one part, in its order. A per-source group-by of each part holds a part's groups
    (the accounts behind ``n_unique``, the campaigns behind ``mode``), not every event's."""
    lf = events.lazy()
    if buckets <= 1:
        return [lf]
    return [lf.filter(source_bucket(buckets) == j) for j in range(buckets)]


def source_bucket(buckets: int) -> pl.Expr:
    """An event's source bucket: a hash of its address modulo ``buckets`` (:func:`~detector.parts.hash_part`)."""
    return hash_part(pl.col(C.SOURCE_IP), buckets)


SOURCE_INPUTS: tuple[str, ...] = (
    C.SOURCE_IP,
    C.TIMESTAMP,
    C.ACCOUNT,
    C.ACTION,
    C.OUTCOME,
    C.ATTEMPTS,
    C.RISK_SCORE,
    RULE,
    C.CAMPAIGN,
    C.DETECTORS,
    C.IP_LEGIT_ACCOUNTS,
    C.IS_HOSTING,
    C.IS_VPN,
    C.IS_TOR,
    C.BASELINE_SCORE,
    C.PREFIX,
    C.ASN,
    C.AS_ORG,
    C.COUNTRY,
)
"""The columns :func:`source_table` and :func:`source_context` read."""


@dataclass(frozen=True)
class SourceBuckets:
    """A night's rows of :data:`SOURCE_INPUTS` split by source bucket (:func:`source_bucket`) on
    disk: per bucket, its piece of each account shard, in the shards' order (each piece's rows in
    their order), as one filter per bucket over the shards in order would give them. Each bucket is
    read from its own pieces instead of every shard being read and filtered once per bucket."""

    paths: tuple[tuple[Path, ...], ...]

    def frames(self) -> Iterator[pl.DataFrame]:
        """Each bucket's rows, one bucket in memory at a time."""
        for paths in self.paths:
            yield read_bucket(paths)

    def remove(self) -> None:
        for paths in self.paths:
            for p in paths:
                p.unlink(missing_ok=True)


def read_bucket(pieces: tuple[Path, ...]) -> pl.DataFrame:
    """A source bucket's rows from its pieces, in the shards' order."""
    return pl.concat([pl.read_parquet(p) for p in pieces], rechunk=True)


def split_by_source(frame: pl.DataFrame, buckets: int) -> list[pl.DataFrame]:
    """One account shard's rows of :data:`SOURCE_INPUTS` in ``buckets`` parts by :func:`source_bucket`
    (a :class:`SourceBuckets` piece each, every part present)."""
    columns = [c for c in SOURCE_INPUTS if c in frame.columns]
    return split_rows(frame.select(columns), source_bucket(buckets), buckets)


Events = pl.LazyFrame | pl.DataFrame | SourceBuckets
"""What the per-source tables read: the events, or a night's events split by source bucket."""


def bucket_frames(events: Events, buckets: int) -> Iterator[pl.DataFrame]:
    """:func:`by_source`'s parts with the columns of :data:`SOURCE_INPUTS`, one at a time: read from
    their pieces (:class:`SourceBuckets`), or collected by polars' streaming engine (a part's rows
    in memory, not the columns of every event: a lazy part of the scored shards, collected by the
    in-memory engine, read every event before its filter)."""
    if isinstance(events, SourceBuckets):
        yield from events.frames()
        return
    lf = events.lazy()
    have = set(lf.collect_schema().names())
    columns = [c for c in SOURCE_INPUTS if c in have]
    for part in by_source(lf, buckets):
        yield part.select(columns).collect(engine="streaming")


def source_context(events: Events, buckets: int = 1) -> pl.DataFrame:
    """:func:`aggregates.source_context`, one source bucket at a time (:func:`bucket_frames`; split
    :class:`SourceBuckets`: their buckets)."""
    if buckets <= 1 and not isinstance(events, SourceBuckets):
        return agg.source_context(events.lazy()).collect()
    return pl.concat([agg.source_context(part.lazy()).collect() for part in bucket_frames(events, buckets)])


def source_table(
    events: Events,
    model: Model | None,
    cfg: Config,
    detector_names: tuple[str, ...],
    *,
    combine: bool = True,
    buckets: int = 1,
) -> pl.DataFrame:
    """Per-source risk, verdict, campaign, counts and shared-address flag (``SOURCE_SCHEMA``).

    ``buckets``: computed per source bucket (:func:`by_source`; each row reads only its own
    address's events, so the table is the same), sorted by risk and address; split
    :class:`SourceBuckets` are read per bucket whatever ``buckets`` says.
    """
    if buckets > 1 or isinstance(events, SourceBuckets):
        return sorted_sources(
            source_rows(part, model, cfg, detector_names, combine=combine)
            for part in bucket_frames(events, buckets)
        )
    return source_rows(events, model, cfg, detector_names, combine=combine)


def sorted_sources(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """The source table from its buckets' rows (each address in one bucket), by risk and address."""
    return pl.concat(list(parts)).sort(RISK, C.SOURCE_IP, descending=[True, False])


def source_rows(
    events: pl.DataFrame | pl.LazyFrame,
    model: Model | None,
    cfg: Config,
    detector_names: tuple[str, ...],
    *,
    combine: bool,
) -> pl.DataFrame:
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

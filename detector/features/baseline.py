"""Per-account behavioural baseline: a likelihood-ratio score in the spirit of Freeman et al.

"Who Are You? A Statistical Approach to Measuring User Authenticity" (NDSS 2016) scores a login by
how much more likely its traits are for the population (a stand-in for an attacker) than for the
account itself. For each login and each trait ``f`` (address, prefix, ASN, country, service, auth
method, TLS)::

    score = sum_f log( p(v_f | population) / p(v_f | account) )

    p(v | account)    = (c_account(v) + alpha * p(v | population)) / (n_account + alpha)
    p(v | population) = (c_population(v) + 1) / (n_population + V_f + 1)

``c_account`` counts the account's successful logins with that value strictly before the event:
the carried :class:`History` plus cumulative counts within the window (frame sorted by time). The
pseudo-count ``alpha`` smooths rare values towards the population; an account with no history
scores 0 (no evidence either way) and one with few successes leans on the population: that is the
cold-start rule, made explicit by the ``cold_start_successes`` threshold below which the
``is_new_*`` flags stay 0. Higher scores mean "less like this account's own history".

State is an explicit small table (:class:`History`) that the nightly job stores across runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from detector.errors import StateError
from detector.schema import UTC_US, Action, C, Outcome

FEATURE = "feature"
VALUE = "value"
COUNT = "count"
LAST_SEEN = "last_seen"
METRIC = "metric"

TRAITS: tuple[str, ...] = (
    C.SOURCE_IP,
    C.PREFIX,
    C.ASN,
    C.COUNTRY,
    C.SERVICE,
    C.AUTH_METHOD,
    C.TLS,
)
"""Traits of a login compared with the account's history (each one term of the score)."""

VOLUME_METRICS: tuple[str, ...] = (C.BYTES_OUT, C.RECIPIENTS)
"""Per-session volumes whose log-scale mean/variance per account is carried for post-login norms."""

ACCOUNT_HISTORY_SCHEMA = pl.Schema(
    {C.ACCOUNT: pl.String, FEATURE: pl.String, VALUE: pl.String, COUNT: pl.Int64, LAST_SEEN: UTC_US}
)
POPULATION_SCHEMA = pl.Schema({FEATURE: pl.String, VALUE: pl.String, COUNT: pl.Int64})
VOLUME_SCHEMA = pl.Schema(
    {C.ACCOUNT: pl.String, METRIC: pl.String, "n": pl.Int64, "mean_log": pl.Float64, "m2_log": pl.Float64}
)
_FRAMES = {"accounts": ACCOUNT_HISTORY_SCHEMA, "population": POPULATION_SCHEMA, "volumes": VOLUME_SCHEMA}


@dataclass(frozen=True)
class History:
    """What earlier nights taught: per-account trait counts, population counts, volume norms.

    ``accounts``: account, feature, value, count, last_seen (successful logins only);
    ``population``: feature, value, count; ``volumes``: account, metric, n, mean_log, m2_log
    (log1p of bytes_out per logout, recipients per sent message).
    """

    accounts: pl.DataFrame
    population: pl.DataFrame
    volumes: pl.DataFrame

    @classmethod
    def empty(cls) -> History:
        return cls(*(pl.DataFrame(schema=s) for s in _FRAMES.values()))

    def to_frames(self) -> dict[str, pl.DataFrame]:
        return {"accounts": self.accounts, "population": self.population, "volumes": self.volumes}

    @classmethod
    def from_frames(cls, frames: dict[str, pl.DataFrame]) -> History:
        """Rebuild from :meth:`to_frames` output; raise StateError on a missing or mistyped table."""
        out = {}
        for name, schema in _FRAMES.items():
            if name not in frames:
                raise StateError(f"history lacks table {name!r}")
            df = frames[name]
            for col, dtype in schema.items():
                if col not in df.columns:
                    raise StateError(f"history table {name!r} lacks column {col!r}")
                if df.schema[col] != dtype:
                    raise StateError(
                        f"history table {name!r} column {col!r} is {df.schema[col]}, expected {dtype}"
                    )
            out[name] = df.select(list(schema))
        return cls(**out)

    def prune(self, before: datetime) -> History:
        """Drop per-account values last seen before ``before`` (the state horizon)."""
        return History(self.accounts.filter(pl.col(LAST_SEEN) >= before), self.population, self.volumes)

    @property
    def n_accounts(self) -> int:
        return self.accounts.get_column(C.ACCOUNT).n_unique()


def trait_value(name: str) -> pl.Expr:
    """A trait as text, nulls as the empty string (so every login counts once per trait)."""
    return pl.col(name).cast(pl.String).fill_null("")


def is_success() -> pl.Expr:
    return (pl.col(C.ACTION) == Action.LOGIN) & (pl.col(C.OUTCOME) == Outcome.SUCCESS)


def _long_successes(events: pl.LazyFrame) -> pl.LazyFrame:
    succ = events.filter(is_success() & pl.col(C.ACCOUNT).is_not_null())
    return pl.concat(
        [
            succ.select(C.ACCOUNT, pl.lit(t).alias(FEATURE), trait_value(t).alias(VALUE), pl.col(C.TIMESTAMP))
            for t in TRAITS
        ]
    )


def _volumes(events: pl.LazyFrame) -> pl.LazyFrame:
    parts = [
        events.filter(pl.col(m).is_not_null() & pl.col(C.ACCOUNT).is_not_null())
        .group_by(C.ACCOUNT)
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            pl.col(m).cast(pl.Float64).log1p().mean().alias("mean_log"),
            ((pl.col(m).cast(pl.Float64).log1p() - pl.col(m).cast(pl.Float64).log1p().mean()) ** 2)
            .sum()
            .alias("m2_log"),
        )
        .with_columns(pl.lit(m).alias(METRIC))
        for m in VOLUME_METRICS
    ]
    return pl.concat(parts).select(list(VOLUME_SCHEMA))


def _merge_volumes(a: pl.LazyFrame, b: pl.LazyFrame) -> pl.LazyFrame:
    """Chan et al.'s parallel combination of (n, mean, M2)."""
    j = a.join(b, on=[C.ACCOUNT, METRIC], how="full", coalesce=True, suffix="_b").with_columns(
        pl.col("n", "n_b").fill_null(0),
        pl.col("mean_log", "mean_log_b", "m2_log", "m2_log_b").fill_null(0.0),
    )
    n = pl.col("n") + pl.col("n_b")
    delta = pl.col("mean_log_b") - pl.col("mean_log")
    return j.select(
        C.ACCOUNT,
        METRIC,
        n.alias("n"),
        (pl.col("mean_log") + delta * pl.col("n_b") / n).alias("mean_log"),
        (pl.col("m2_log") + pl.col("m2_log_b") + delta**2 * pl.col("n") * pl.col("n_b") / n).alias("m2_log"),
    )


def learnable(
    events: pl.LazyFrame, compromised: pl.LazyFrame, risk: float, attackers: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """The events the baseline may learn from: never a forged or doubtful success.

    Left out: the risky logins of compromised accounts (at or above ``risk``, ``[scoring]
    account_compromised``), and every event from ``attackers`` (a frame with ``source_ip``: the
    unshared sources scoring calls malicious). An attacker's logins, and a failed login a parser was
    tricked into reading as a success (attackers write the user names), would otherwise become the
    owner's history, and on the next nights the attacker's networks would look like the owner's and
    be kept open by every restriction. The owner's own calm logins of the same night are still learned.
    ``compromised``: a frame with the ``account`` column.
    """
    flagged = compromised.select(C.ACCOUNT).unique().with_columns(pl.lit(True).alias("_compromised"))
    attacker = pl.col("_compromised").fill_null(False) & (pl.col(C.RISK_SCORE) >= risk).fill_null(False)
    out = events.join(flagged, on=C.ACCOUNT, how="left").filter(~attacker).drop("_compromised")
    if attackers is not None:
        out = out.join(attackers.select(C.SOURCE_IP).unique(), on=C.SOURCE_IP, how="anti")
    return out


def update_history(history: History | None, events: pl.LazyFrame | pl.DataFrame) -> History:
    """Fold a window's successful logins (and session volumes) into ``history``."""
    history = history or History.empty()
    lf = events.lazy()
    new_acc = (
        _long_successes(lf)
        .group_by(C.ACCOUNT, FEATURE, VALUE)
        .agg(pl.len().cast(pl.Int64).alias(COUNT), pl.col(C.TIMESTAMP).max().alias(LAST_SEEN))
    )
    accounts = (
        pl.concat([history.accounts.lazy(), new_acc.select(list(ACCOUNT_HISTORY_SCHEMA))])
        .group_by(C.ACCOUNT, FEATURE, VALUE)
        .agg(pl.col(COUNT).sum(), pl.col(LAST_SEEN).max())
        .sort(C.ACCOUNT, FEATURE, VALUE)
    )
    population = (
        pl.concat(
            [
                history.population.lazy(),
                new_acc.group_by(FEATURE, VALUE).agg(pl.col(COUNT).sum()).select(list(POPULATION_SCHEMA)),
            ]
        )
        .group_by(FEATURE, VALUE)
        .agg(pl.col(COUNT).sum())
        .sort(FEATURE, VALUE)
    )
    volumes = _merge_volumes(history.volumes.lazy(), _volumes(lf)).sort(C.ACCOUNT, METRIC)
    acc, pop, vol = pl.collect_all([accounts, population, volumes])
    return History(acc.select(list(ACCOUNT_HISTORY_SCHEMA)), pop, vol.select(list(VOLUME_SCHEMA)))


def prior_col(trait: str) -> str:
    return f"_prior_{trait}"


PRIOR_N = "acct_prior_successes"
"""Successful logins of the account before the event (history + window)."""


def _history_counts(events: pl.LazyFrame, history: History) -> pl.LazyFrame:
    """Per event (in order): the account's carried successes ``_hist_n`` and, per trait, the carried
    count of its value for the account (``_hc_<trait>``) and for the population (``_hp_<trait>``).

    Joined to the keys alone: joining the wide frame would copy every column at every join.
    """
    values = [f"_v_{t}" for t in TRAITS]
    acc_n = (
        history.accounts.lazy()
        .filter(pl.col(FEATURE) == C.SERVICE)
        .group_by(C.ACCOUNT)
        .agg(pl.col(COUNT).sum().alias("_hist_n"))
    )
    out = events.select(C.ACCOUNT, *values).join(acc_n, on=C.ACCOUNT, how="left", maintain_order="left")
    for t, v in zip(TRAITS, values, strict=True):
        ha = history.accounts.lazy().filter(pl.col(FEATURE) == t)
        hp = history.population.lazy().filter(pl.col(FEATURE) == t)
        out = out.join(
            ha.select(C.ACCOUNT, pl.col(VALUE).alias(v), pl.col(COUNT).alias(f"_hc_{t}")),
            on=[C.ACCOUNT, v],
            how="left",
            maintain_order="left",
        ).join(
            hp.select(pl.col(VALUE).alias(v), pl.col(COUNT).alias(f"_hp_{t}")),
            on=v,
            how="left",
            maintain_order="left",
        )
    return out.drop(C.ACCOUNT, *values)


def window_population(lf: pl.LazyFrame) -> pl.LazyFrame:
    """``feature, value, count``: the window's successful logins per trait value (every account).

    The population side of the score; computed once over all events when the baseline runs per
    account shard (:func:`add_baseline`'s ``population``).
    """
    return pl.concat([trait_population(lf, t) for t in TRAITS])


def trait_population(lf: pl.LazyFrame, trait: str) -> pl.LazyFrame:
    """:func:`window_population`'s rows of one trait."""
    return (
        lf.filter(is_success())
        .group_by(trait_value(trait).alias(VALUE))
        .agg(pl.len().cast(pl.Int64).alias(COUNT))
        .select(pl.lit(trait).alias(FEATURE), VALUE, COUNT)
    )


def _window_counts(events: pl.LazyFrame, population: pl.DataFrame) -> pl.LazyFrame:
    """Per event (in order), per trait: the window's successes with its value (``_wc_<trait>``)."""
    values = [f"_v_{t}" for t in TRAITS]
    out = events.select(values)
    for t, v in zip(TRAITS, values, strict=True):
        counts = population.lazy().filter(pl.col(FEATURE) == t)
        out = out.join(
            counts.select(pl.col(VALUE).alias(v), pl.col(COUNT).alias(f"_wc_{t}")),
            on=v,
            how="left",
            maintain_order="left",
        )
    return out.drop(values)


def add_baseline(
    lf: pl.LazyFrame,
    history: History | None,
    *,
    alpha: float = 5.0,
    cold_start: int = 5,
    population: pl.DataFrame | None = None,
) -> pl.LazyFrame:
    """Add ``baseline_score``, ``acct_prior_successes`` and ``is_new_<trait>`` flags.

    ``lf`` must be sorted by time (ties in a fixed order); counts are strictly before each row.
    ``population`` is the :func:`window_population` of all events when ``lf`` holds one account
    shard (default: the population of ``lf`` itself).
    """
    history = history or History.empty()
    has_history = history.accounts.height > 0 or history.population.height > 0
    succ = pl.col("_succ")
    out = lf.with_columns(_succ=is_success().cast(pl.Int64), **{f"_v_{t}": trait_value(t) for t in TRAITS})
    hist_n = pl.lit(0, pl.Int64)
    if has_history:
        out = pl.concat([out, _history_counts(out, history)], how="horizontal")
        hist_n = pl.col("_hist_n").fill_null(0)
    if population is not None:
        out = pl.concat([out, _window_counts(out, population)], how="horizontal")
    out = out.with_columns((succ.cum_sum().over(C.ACCOUNT) - succ + hist_n).alias(PRIOR_N))
    pop_hist = history.population.group_by(FEATURE).agg(
        pl.col(COUNT).sum().alias("tot"), pl.len().alias("nv")
    )
    terms = []
    for t in TRAITS:
        v = f"_v_{t}"
        hc = pl.col(f"_hc_{t}").fill_null(0) if has_history else pl.lit(0, pl.Int64)
        pc = pl.col(f"_hp_{t}").fill_null(0) if has_history else pl.lit(0, pl.Int64)
        ph = pop_hist.filter(pl.col(FEATURE) == t)
        hist_tot = int(ph["tot"].sum()) if ph.height else 0
        hist_nv = int(ph["nv"].sum()) if ph.height else 0
        # population: window successes plus carried counts, add-one smoothed over the values seen
        if population is None:
            pop_count = succ.sum().over(v) + pc
            pop_total = succ.sum() + hist_tot
            pop_values = pl.col(v).filter(succ == 1).n_unique() + hist_nv
        else:
            window = population.filter(pl.col(FEATURE) == t)
            pop_count = pl.col(f"_wc_{t}").fill_null(0) + pc
            pop_total = pl.lit(int(window[COUNT].sum()) + hist_tot, pl.Int64)
            pop_values = pl.lit(window.height + hist_nv, pl.Int64)
        out = out.with_columns(
            (succ.cum_sum().over(C.ACCOUNT, v) - succ + hc).alias(prior_col(t)),
            ((pop_count + 1) / (pop_total + pop_values + 1)).cast(pl.Float64).alias(f"_p_{t}"),
        ).drop(v, *([f"_hc_{t}", f"_hp_{t}"] if has_history else []), f"_wc_{t}", strict=False)
        p_pop = pl.col(f"_p_{t}")
        p_acc = (pl.col(prior_col(t)) + alpha * p_pop) / (pl.col(PRIOR_N) + alpha)
        terms.append((p_pop / p_acc).log())
    cold = pl.col(PRIOR_N) < cold_start
    return out.with_columns(
        pl.sum_horizontal(terms).fill_nan(0.0).fill_null(0.0).alias(C.BASELINE_SCORE),
        *[
            pl.when(cold | pl.col(C.ACCOUNT).is_null() | pl.col(t).is_null())
            .then(0)
            .otherwise((pl.col(prior_col(t)) == 0).cast(pl.Int8))
            .cast(pl.Int8)
            .alias(f"is_new_{name}")
            for t, name in ((C.SOURCE_IP, "ip"), (C.PREFIX, "prefix"), (C.ASN, "asn"), (C.COUNTRY, "country"))
        ],
    ).drop("_succ", "_hist_n", *[f"_p_{t}" for t in TRAITS], strict=False)

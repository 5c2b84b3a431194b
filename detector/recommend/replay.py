"""What-if replay: apply a plan (and the alternatives) to a log and count who gets through.

Strategies, side by side:

- ``plan``: the plan's blocks, locks and restrictions, in force from the start of the log until
  each measure's ``expires_at``; a credential reset makes the attacker's successful logins to the
  account fail; restrictions apply to external addresses (private ones are the provider's own).
- ``shutdown``: a blanket shutdown of external access (every login from outside private and
  allow-listed networks refused).
- ``fail2ban``: fail2ban's default jail: 5 failures from one address within 10 minutes ban it for
  10 minutes (refused attempts are not logged, so they do not count towards the next ban).
- ``none``: no action.

Per strategy: attack login attempts stopped, attacker logins that still succeed (of those that
succeed with no action), legitimate logins refused (of legitimate successful logins), for all
accounts and for practitioners. Truth comes from labels (``is_attack``) where given, else from the
tool's own verdicts, and the result says which.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from detector.config import Config
from detector.parts import hash_part, parquet_rows, split_rows, write_parts
from detector.recommend import nets
from detector.schema import UTC_US, Action, C, Outcome
from detector.workers import Workers, in_process

IS_ATTACK = "is_attack"
STRATEGIES = ("plan", "shutdown", "fail2ban", "none")
TRUTH_LABELS = "labels"
TRUTH_VERDICTS = "verdicts"

F2B_MAXRETRY = 5
F2B_FINDTIME = timedelta(minutes=10)
F2B_BANTIME = timedelta(minutes=10)

_NEEDED = {
    C.TIMESTAMP: UTC_US,
    C.ACCOUNT: pl.String,
    C.SOURCE_IP: pl.String,
    C.ASN: pl.Int64,
    C.SERVICE: pl.String,
    C.ACTION: pl.String,
    C.OUTCOME: pl.String,
    C.IS_PRACTITIONER: pl.Boolean,
    C.IS_PRIVATE: pl.Boolean,
    IS_ATTACK: pl.Boolean,
}

TABLE_SCHEMA = pl.Schema(
    {
        "strategy": pl.String,
        "attack_attempts": pl.Int64,
        "attack_stopped": pl.Int64,
        "attack_stopped_pct": pl.Float64,
        "attacker_logins": pl.Int64,
        "attacker_logins_succeeding": pl.Int64,
        "attacker_logins_pct": pl.Float64,
        "legit_logins": pl.Int64,
        "legit_refused": pl.Int64,
        "legit_refused_pct": pl.Float64,
        "practitioner_logins": pl.Int64,
        "practitioner_refused": pl.Int64,
        "practitioner_refused_pct": pl.Float64,
    }
)
"""Columns of :attr:`ReplayResult.table` (one row per strategy, in :data:`STRATEGIES` order)."""


@dataclass(frozen=True)
class ReplayResult:
    """Side-by-side outcome of the strategies on one log.

    Attributes:
        table: one row per strategy (:data:`TABLE_SCHEMA`); percentages in [0, 100], null when
            the denominator is 0.
        truth: ``"labels"`` (ground truth given) or ``"verdicts"`` (the tool's own verdicts).
        logins: login events replayed.
        notes: caveats to print with the table.
    """

    table: pl.DataFrame
    truth: str
    logins: int
    notes: tuple[str, ...] = field(default=())

    def row(self, strategy: str) -> dict[str, Any]:
        return self.table.filter(pl.col("strategy") == strategy).row(0, named=True)

    def render(self, width: int = 110) -> str:
        """The comparison as a text table (rich), with the source of truth stated."""
        from rich.console import Console
        from rich.table import Table

        def cell(pct: float | None, num: int, den: int) -> str:
            return "n/a" if pct is None else f"{pct:.1f}% ({num}/{den})"

        table = Table(title="What-if replay", title_justify="left")
        for name in (
            "strategy",
            "attack attempts stopped",
            "attacker logins succeeding",
            "legit logins refused",
            "practitioners refused",
        ):
            table.add_column(name, justify="left" if name == "strategy" else "right")
        for r in self.table.iter_rows(named=True):
            table.add_row(
                r["strategy"],
                cell(r["attack_stopped_pct"], r["attack_stopped"], r["attack_attempts"]),
                cell(r["attacker_logins_pct"], r["attacker_logins_succeeding"], r["attacker_logins"]),
                cell(r["legit_refused_pct"], r["legit_refused"], r["legit_logins"]),
                cell(r["practitioner_refused_pct"], r["practitioner_refused"], r["practitioner_logins"]),
            )
        console = Console(width=width, record=True, file=_Null(), color_system=None)
        console.print(table)
        truth = (
            "truth: labels (is_attack)"
            if self.truth == TRUTH_LABELS
            else "truth: the tool's own verdicts (no labels given): attack = what detector itself calls an attack"
        )
        lines = [console.export_text().rstrip(), truth, *self.notes]
        return "\n".join(lines) + "\n"


class _Null:
    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass


_KEY = (C.ACCOUNT, C.SOURCE_IP, C.ASN, C.SERVICE, C.IS_PRIVATE)
_CATEGORICAL = (C.ACCOUNT, C.SOURCE_IP, C.SERVICE)
_FAILED = "_failed"
_SUCCESS = "_success"
_SRC = "_src"


@dataclass(frozen=True)
class Day:
    """The login events of a replayed day, narrow, and their distinct keys.

    The strategies decide per distinct (account, address, AS, service) key which of its logins
    they refuse, and apply that to the events through the integer key ``_k``, so no per-event
    string column is held or joined.

    Attributes:
        events: one row per login in time order: ``_i`` (row id), ``_k`` (key), ``timestamp``,
            ``_failed`` and ``_success`` (outcome), ``is_practitioner``, ``is_attack``.
        keys: one row per ``_k`` (``_k`` = row number): ``account`` (lower case), ``source_ip``,
            ``asn``, ``service``, ``is_private`` (filled in where enrichment did not say) and
            ``_src`` (an integer id of ``source_ip``).
    """

    events: pl.DataFrame
    keys: pl.DataFrame

    @property
    def height(self) -> int:
        return self.events.height

    def per_event(self, flags: pl.Series) -> pl.Series:
        """A per-key column (indexed by ``_k``) spread over the events, in ``_i`` order."""
        return flags.gather(self.events.get_column("_k"))


def _prepare(events: pl.LazyFrame | pl.DataFrame) -> Day:
    """Login events in time order, reduced to integer keys; the key strings once per distinct key.

    One streaming pass reads only the needed columns (projection pushed down to a Parquet scan),
    keeps the strings as categoricals and numbers the distinct keys (a dense rank, ``_k`` = the
    key's row in ``keys``).
    """
    lf = events.lazy()
    have = lf.collect_schema()
    ev = (
        lf.select([(pl.col(n) if n in have else pl.lit(None)).cast(t).alias(n) for n, t in _NEEDED.items()])
        .with_row_index("_r")
        .filter(pl.col(C.ACTION) == Action.LOGIN)
        .select(
            "_r",
            C.TIMESTAMP,
            pl.col(C.ACCOUNT).str.to_lowercase().cast(pl.Categorical),
            pl.col(C.SOURCE_IP).cast(pl.Categorical),
            C.ASN,
            pl.col(C.SERVICE).cast(pl.Categorical),
            C.IS_PRIVATE,
            pl.col(C.OUTCOME).is_in(list(Outcome.FAILED)).fill_null(False).alias(_FAILED),
            (pl.col(C.OUTCOME) == Outcome.SUCCESS).fill_null(False).alias(_SUCCESS),
            C.IS_PRACTITIONER,
            IS_ATTACK,
        )
        .with_columns((pl.struct(_KEY).rank("dense") - 1).cast(pl.UInt32).alias("_k"))
        .collect(engine="streaming")
    )
    keys = ev.select("_k", *_KEY).unique("_k", keep="any").sort("_k")
    ev = (
        ev.select("_r", "_k", C.TIMESTAMP, _FAILED, _SUCCESS, C.IS_PRACTITIONER, IS_ATTACK)
        .sort(C.TIMESTAMP, "_r")
        .drop("_r")
        .with_row_index("_i")
    )
    keys = keys.with_columns(pl.col(c).cast(pl.String) for c in _CATEGORICAL).with_columns(
        pl.col(C.SOURCE_IP).rank("dense").cast(pl.UInt32).alias(_SRC)
    )
    missing = keys.filter(pl.col(C.IS_PRIVATE).is_null()).get_column(C.SOURCE_IP)
    if missing.len():
        keys = (
            keys.join(_private(missing), on=C.SOURCE_IP, how="left", maintain_order="left")
            .with_columns(pl.coalesce(C.IS_PRIVATE, "_private").fill_null(False).alias(C.IS_PRIVATE))
            .drop("_private")
        )
    return Day(events=ev, keys=keys)


def _private(ips: pl.Series) -> pl.DataFrame:
    """``source_ip`` -> ``is_private`` for the distinct addresses (where enrichment did not say)."""
    uniq = ips.drop_nulls().unique().to_list()
    flags = []
    for text in uniq:
        try:
            a = ipaddress.ip_address(text)
            flags.append(bool(a.is_private or a.is_loopback or a.is_link_local))
        except ValueError:
            flags.append(False)
    return pl.DataFrame(
        {C.SOURCE_IP: uniq, "_private": flags}, schema={C.SOURCE_IP: pl.String, "_private": pl.Boolean}
    )


def _covers_service() -> pl.Expr:
    return (
        pl.col("services").is_null()
        | (pl.col("services").list.len() == 0)
        | pl.col(C.SERVICE).is_null()
        | pl.col("services").list.contains(pl.col(C.SERVICE))
    )


def _with_nets(rows: pl.DataFrame, column: str) -> pl.DataFrame:
    """Canonical ``net`` text of a target column (address -> /32 or /128), dropping unparsable ones."""
    texts = rows.get_column(column).drop_nulls().unique().to_list()  # parse each distinct text once
    parsed = [nets.parse_net(t) for t in texts]
    canon = {
        t: (p.text if p.kind == nets.ASN else nets.cidr_text(p))
        for t, p in zip(texts, parsed, strict=True)
        if p
    }
    net = pl.col(column).replace_strict(canon, default=None, return_dtype=pl.String)
    return rows.with_columns(net.alias(nets.NET)).filter(pl.col(nets.NET).is_not_null())


def _network_hits(ev: pl.DataFrame, rules: pl.DataFrame) -> pl.DataFrame:
    """Events (``_i`` and rule columns) whose address or AS falls inside a rule's ``net``."""
    parsed = [nets.parse_net(t) for t in rules.get_column(nets.NET).unique().to_list()]
    pairs = nets.containing(ev.get_column(C.SOURCE_IP), [p for p in parsed if p is not None])
    by_net = ev.join(pairs, on=C.SOURCE_IP, how="inner")
    by_asn = ev.filter(pl.col(C.ASN).is_not_null()).with_columns(
        pl.format("AS{}", pl.col(C.ASN)).alias(nets.NET)
    )
    return pl.concat([by_net, by_asn.select(by_net.columns)]).join(rules, on=nets.NET, how="inner")


def _outside_allowed(cand: pl.DataFrame, rules: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``cand`` (``_rule``, ``source_ip``, ``asn``) whose address is in none of its rule's
    ``allowed_networks`` (addresses, CIDRs or ``AS<n>``; null or empty = none).

    ``rules`` holds ``_rule`` and ``allowed_networks``: each rule's list is exploded once, not once
    per candidate, and the candidates' distinct addresses are matched against the distinct networks.
    """
    allowed = (
        rules.select("_rule", pl.col("allowed_networks").alias(nets.NET))
        .explode(nets.NET)
        .filter(pl.col(nets.NET).is_not_null())
    )
    if allowed.is_empty() or cand.is_empty():
        return cand
    allowed = _with_nets(allowed, nets.NET).unique()
    parsed = [nets.parse_net(t) for t in allowed.get_column(nets.NET).unique().to_list()]
    cand = cand.with_row_index("_row")
    pairs = nets.containing(cand.get_column(C.SOURCE_IP), [x for x in parsed if x is not None])
    ok = pl.concat(
        [
            cand.select("_row", "_rule", C.SOURCE_IP)
            .join(pairs, on=C.SOURCE_IP)
            .join(allowed, on=["_rule", nets.NET], how="semi")
            .select("_row"),
            cand.select("_row", "_rule", pl.format("AS{}", pl.col(C.ASN)).alias(nets.NET))
            .join(allowed, on=["_rule", nets.NET], how="semi")
            .select("_row"),
        ]
    )
    return cand.join(ok.unique(), on="_row", how="anti").drop("_row")


def _refused_until(day: Day, hits: list[pl.DataFrame]) -> pl.Series:
    """Per event: refused by one of the (``_k``, ``expires_at``) rule hits still in force.

    A login is refused when some rule covering its key has not expired at its time: when one of
    them never expires, or before the latest ``expires_at`` among them.
    """
    if not hits:
        return pl.Series("refused", [False] * day.height, dtype=pl.Boolean)
    per_key = (
        pl.concat([h.select("_k", "expires_at") for h in hits])
        .group_by("_k")
        .agg(
            pl.col("expires_at").is_null().any().alias("_forever"), pl.col("expires_at").max().alias("_until")
        )
    )
    full = day.keys.select("_k").join(per_key, on="_k", how="left", maintain_order="left")
    forever = day.per_event(full.get_column("_forever").fill_null(False))
    until = day.per_event(full.get_column("_until"))
    ts = day.events.get_column(C.TIMESTAMP)
    return (forever | (ts < until).fill_null(False)).alias("refused")


def plan_refusals(plan: pl.DataFrame, day: Day) -> pl.DataFrame:
    """``_i`` of the logins, ``refused`` by the plan, and ``reset``: attacker successes a reset defeats.

    A block refuses logins from inside its target except from its ``allowed_networks`` (the
    legitimate users' own addresses a hosting-prefix block exempts); a restriction refuses the
    account's logins from external addresses outside its ``allowed_networks``. Rules are matched
    against the distinct keys, then applied to each login while in force (before ``expires_at``).

    Returns a frame ``_i``, ``refused`` (bool), ``reset`` (bool: the account's credentials were
    reset by the plan, so a success with the old password fails).
    """
    keys = day.keys.select("_k", C.ACCOUNT, C.SOURCE_IP, C.ASN, C.SERVICE, C.IS_PRIVATE)
    hits: list[pl.DataFrame] = []
    blocks = plan.filter(pl.col("action") == "block").select(
        "target", "services", "allowed_networks", "expires_at"
    )
    if blocks.height:
        rules = _with_nets(blocks, "target").drop("target").with_row_index("_rule")
        cand = _network_hits(keys, rules.drop("allowed_networks")).filter(_covers_service())
        hits.append(_outside_allowed(cand, rules))
    locks = plan.filter(pl.col("action") == "lock_account").select(
        pl.col("target").str.to_lowercase().alias(C.ACCOUNT), "expires_at"
    )
    if locks.height:
        hits.append(keys.join(locks, on=C.ACCOUNT))
    restricts = (
        plan.filter(pl.col("action") == "restrict_account")
        .select(
            pl.col("target").str.to_lowercase().alias(C.ACCOUNT), "services", "allowed_networks", "expires_at"
        )
        .with_row_index("_rule")
    )
    if restricts.height:
        cand = keys.join(restricts.drop("allowed_networks"), on=C.ACCOUNT).filter(
            _covers_service() & ~pl.col(C.IS_PRIVATE).fill_null(False)
        )
        hits.append(_outside_allowed(cand, restricts))
    resets = plan.filter(pl.col("action") == "reset_credentials").get_column("target").str.to_lowercase()
    reset = keys.get_column(C.ACCOUNT).is_in(resets.implode()).fill_null(False)
    return day.events.select("_i").with_columns(
        _refused_until(day, hits), day.per_event(reset).alias("reset")
    )


def shutdown_refusals(day: Day, cfg: Config) -> pl.Series:
    """Blanket shutdown: refuse every login from outside private and allow-listed networks."""
    allow = nets.parse_nets(cfg.plan.allowlist)
    keys = day.keys
    inside = pl.Series([False] * keys.height, dtype=pl.Boolean)
    if allow:
        rules = pl.DataFrame({nets.NET: [n.text if n.kind == nets.ASN else nets.cidr_text(n) for n in allow]})
        hits = _network_hits(keys.select("_k", C.SOURCE_IP, C.ASN), rules).get_column("_k").unique()
        inside = keys.get_column("_k").is_in(hits.implode())
    private = keys.get_column(C.IS_PRIVATE).fill_null(False)
    return day.per_event(~(private | inside))


def _ban_windows(day: Day, maxretry: int, findtime: timedelta, bantime: timedelta) -> pl.DataFrame:
    """Ban windows (``_src``, ``start``, ``end``) of :func:`fail2ban_bans`, by integer source id."""
    schema = {_SRC: pl.UInt32, "start": UTC_US, "end": UTC_US}
    jailed = day.keys.select(
        pl.col(C.SOURCE_IP).is_not_null()
        & ~pl.col(C.SOURCE_IP).str.starts_with("127.")
        & (pl.col(C.SOURCE_IP) != "::1")
    ).to_series()
    f = (
        day.events.select(
            day.per_event(day.keys.get_column(_SRC)).alias(_SRC),
            pl.col(C.TIMESTAMP).dt.epoch("us").alias("t"),
            (pl.col(_FAILED) & day.per_event(jailed)).alias("_jailed"),
        )
        .filter(pl.col("_jailed"))
        .drop("_jailed")
        .sort(_SRC, "t")
    )
    if f.height < maxretry:
        return pl.DataFrame(schema=schema)
    code = f.get_column(_SRC).to_numpy().astype(np.int64)
    t = f.get_column("t").to_numpy().astype(np.int64)
    find_us, ban_us = int(findtime.total_seconds() * 1e6), int(bantime.total_seconds() * 1e6)
    t0 = int(t.min())
    span = int(t.max()) - t0 + ban_us + 1
    n_src = int(code.max()) + 1
    if span * n_src >= 2**62:
        raise OverflowError("replay window too long for the fail2ban simulation")
    key = code * span + (t - t0)
    n = t.size
    k = maxretry - 1
    ready = np.zeros(n, dtype=bool)
    ready[k:] = (code[k:] == code[:-k]) & (t[k:] - t[:-k] <= find_us) if k else True
    idx = np.where(ready, np.arange(n), n)
    next_ready = np.minimum.accumulate(idx[::-1])[::-1]
    next_ready = np.append(next_ready, n)
    src = np.unique(code)
    cursor = np.full(src.size, t0, dtype=np.int64)
    bans_src, bans_t = [], []
    while src.size:
        j0 = np.searchsorted(key, src * span + (cursor - t0), side="left")
        cand = np.minimum(j0 + k, n)
        i = next_ready[cand]
        ok = (i < n) & (code[np.minimum(i, n - 1)] == src)
        src, i = src[ok], i[ok]
        bans_src.append(src)
        bans_t.append(t[i])
        cursor = t[i] + ban_us
    return pl.DataFrame(
        {_SRC: np.concatenate(bans_src), "_t": np.concatenate(bans_t)},
        schema={_SRC: pl.UInt32, "_t": pl.Int64},
    ).select(
        _SRC,
        pl.from_epoch("_t", time_unit="us").dt.replace_time_zone("UTC").cast(UTC_US).alias("start"),
        (pl.from_epoch("_t", time_unit="us").dt.replace_time_zone("UTC").cast(UTC_US) + bantime).alias("end"),
    )


def fail2ban_bans(
    day: Day,
    *,
    maxretry: int = F2B_MAXRETRY,
    findtime: timedelta = F2B_FINDTIME,
    bantime: timedelta = F2B_BANTIME,
) -> pl.DataFrame:
    """Ban windows (``source_ip``, ``start``, ``end``) of a fail2ban jail over failed logins.

    A ban starts at the ``maxretry``-th failure within ``findtime`` counted since the previous ban
    ended, and lasts ``bantime``. Failures during a ban were refused by the firewall, so they never
    reach the log fail2ban reads and do not count. Vectorised over sources: each round finds every
    source's next ban at once (``searchsorted`` on sorted failure times), so the Python loop runs
    once per ban of the most-banned source, never per event. Loopback sources are ignored, like
    fail2ban's default ``ignoreip``.
    """
    bans = _ban_windows(day, maxretry, findtime, bantime)
    names = day.keys.select(_SRC, C.SOURCE_IP).unique(_SRC)
    return (
        bans.join(names, on=_SRC, how="left").select(C.SOURCE_IP, "start", "end").sort(C.SOURCE_IP, "start")
    )


def fail2ban_refusals(day: Day, **jail: Any) -> pl.Series:
    """Logins refused by fail2ban: from a banned source after its ban started and before it ends."""
    bans = _ban_windows(
        day,
        jail.get("maxretry", F2B_MAXRETRY),
        jail.get("findtime", F2B_FINDTIME),
        jail.get("bantime", F2B_BANTIME),
    )
    if bans.is_empty():
        return pl.Series([False] * day.height, dtype=pl.Boolean)
    ev = day.events.select("_i", day.per_event(day.keys.get_column(_SRC)).alias(_SRC), C.TIMESTAMP).filter(
        pl.col(_SRC).is_not_null()
    )
    hit = ev.join_asof(
        bans.sort("start"),
        left_on=C.TIMESTAMP,
        right_on="start",
        by=_SRC,
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    refused = hit.filter(pl.col(C.TIMESTAMP) < pl.col("end")).get_column("_i")
    return day.events.get_column("_i").is_in(refused.implode())


def _truth(
    events: pl.LazyFrame | pl.DataFrame, labels: pl.DataFrame | None, cfg: Config
) -> tuple[pl.LazyFrame, str]:
    if labels is not None:
        from detector.labels import label_events

        return label_events(events.lazy(), labels).lazy(), TRUTH_LABELS
    have = events.lazy().collect_schema()
    if IS_ATTACK in have:
        return events.lazy(), TRUTH_LABELS
    return own_verdicts(events, cfg), TRUTH_VERDICTS


def own_verdicts(
    events: pl.LazyFrame | pl.DataFrame, cfg: Config, *, model_path: str | Path | None = None
) -> pl.LazyFrame:
    """``is_attack`` from detector's own scoring: an event scored at or above the source threshold.

    Not also every event of a source judged ``malicious``: on data/samples that counts 12,835
    legitimate logins from shared addresses as attacks (26,533 attack attempts against 13,629 in
    the labels; the event rule gives 13,539). Events not yet scored are analysed first
    (:func:`detector.engine.analyse`, with ``model_path`` or the shipped model, no earlier nights).
    """
    lf = events.lazy()
    if C.RISK_SCORE not in lf.collect_schema():
        import tempfile

        from detector.engine import analyse, default_model_path
        from detector.errors import ModelError

        try:
            path = model_path if model_path is not None else default_model_path()
        except ModelError:
            path = None  # no shipped model: scoring's rule fallback
        with tempfile.TemporaryDirectory(prefix="detector-replay-") as work:
            lf = analyse(lf, cfg, work_dir=Path(work), model=path).scores.events.lazy().collect().lazy()
    return lf.with_columns(
        (pl.col(C.RISK_SCORE).fill_null(0.0) >= cfg.scoring.source_malicious)
        .fill_null(False)
        .alias(IS_ATTACK)
    )


def _pct(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den > 0).then(100.0 * num / den)


def _summary(day: Day, strategy: str, refused: pl.Series, defeated: pl.Series) -> dict[str, Any]:
    frame = day.events.select(
        pl.col(IS_ATTACK).fill_null(False).alias("a"),
        pl.col(_SUCCESS).alias("s"),
        pl.col(C.IS_PRACTITIONER).fill_null(False).alias("p"),
    ).with_columns(refused.alias("r"), defeated.alias("d"))
    a, s, p, r, d = (pl.col(x) for x in "asprd")
    legit = ~a & s
    return frame.select(
        pl.lit(strategy).alias("strategy"),
        a.sum().alias("attack_attempts"),
        (a & (r | (s & d))).sum().alias("attack_stopped"),
        (a & s).sum().alias("attacker_logins"),
        (a & s & ~r & ~d).sum().alias("attacker_logins_succeeding"),
        legit.sum().alias("legit_logins"),
        (legit & r).sum().alias("legit_refused"),
        (legit & p).sum().alias("practitioner_logins"),
        (legit & p & r).sum().alias("practitioner_refused"),
    ).row(0, named=True)


def _table(counts: pl.DataFrame) -> pl.DataFrame:
    """:data:`TABLE_SCHEMA` from the per-strategy counts (the percentages computed here)."""
    return counts.with_columns(
        _pct(pl.col("attack_stopped"), pl.col("attack_attempts")).alias("attack_stopped_pct"),
        _pct(pl.col("attacker_logins_succeeding"), pl.col("attacker_logins")).alias("attacker_logins_pct"),
        _pct(pl.col("legit_refused"), pl.col("legit_logins")).alias("legit_refused_pct"),
        _pct(pl.col("practitioner_refused"), pl.col("practitioner_logins")).alias("practitioner_refused_pct"),
    ).select([pl.col(n).cast(t) for n, t in TABLE_SCHEMA.items()])


def combine_results(results: list[ReplayResult]) -> ReplayResult:
    """Several replays (e.g. each day's plan on the next day, over a week) as one: counts summed per
    strategy, percentages of the sums. The figures of a world rather than of one day pair."""
    if not results:
        raise ValueError("combine_results needs at least one replay")
    truths = {r.truth for r in results}
    if len(truths) > 1:
        raise ValueError("cannot combine replays judged by labels with replays judged by verdicts")
    counts = [n for n, t in TABLE_SCHEMA.items() if t == pl.Int64]
    order = results[0].table.get_column("strategy").to_list()
    summed = (
        pl.concat([r.table.select("strategy", *counts) for r in results])
        .group_by("strategy", maintain_order=True)
        .agg(pl.col(counts).sum())
        .sort(pl.col("strategy").replace_strict(order, list(range(len(order))), default=len(order)))
    )
    notes = tuple(dict.fromkeys(n for r in results for n in r.notes))
    return ReplayResult(
        table=_table(summed),
        truth=results[0].truth,
        logins=sum(r.logins for r in results),
        notes=notes,
    )


def replay(
    plan: pl.DataFrame,
    events: pl.LazyFrame | pl.DataFrame,
    labels: pl.DataFrame | None,
    cfg: Config,
    *,
    truth: str | None = None,
) -> ReplayResult:
    """Apply the plan, a blanket shutdown, fail2ban and no action to ``events``; compare.

    Args:
        plan: a plan (``RECOMMENDATION_SCHEMA``), e.g. ``recommendations.parquet`` of the day before.
        events: enriched events of the day to replay (``is_practitioner``, ``asn``, ``is_private``
            used where present); with an ``is_attack`` column they count as labelled.
        labels: ground truth (``detector.labels.read_labels``), or ``None``.
        cfg: configuration (allowlist for the shutdown; thresholds for the own verdicts).
        truth: what ``is_attack`` in ``events`` comes from, when the caller computed it
            (``"verdicts"`` after :func:`own_verdicts`); by default it is read from labels or
            an ``is_attack`` column (labels) or computed from the tool's verdicts.
    """
    lf, found = _truth(events, labels, cfg)
    return _result([_tally(plan, _prepare(lf), cfg)], truth or found)


def _tally(plan: pl.DataFrame, day: Day, cfg: Config) -> pl.DataFrame:
    """Per strategy, the counts of :data:`TABLE_SCHEMA` on ``day``'s logins, its logins
    (``_logins``) and those without a practitioner flag (``_unknown``): sums over the events, so
    the tallies of disjoint parts of a day add up to the day's (:func:`_result`)."""
    none = pl.Series([False] * day.height, dtype=pl.Boolean)
    p = plan_refusals(plan, day)
    rows = [
        _summary(day, "plan", p.get_column("refused"), p.get_column("reset")),
        _summary(day, "shutdown", shutdown_refusals(day, cfg), none),
        _summary(day, "fail2ban", fail2ban_refusals(day), none),
        _summary(day, "none", none, none),
    ]
    return pl.DataFrame(rows).with_columns(
        pl.lit(day.height, pl.Int64).alias(_LOGINS),
        pl.lit(day.events.get_column(C.IS_PRACTITIONER).null_count(), pl.Int64).alias(_UNKNOWN),
    )


_LOGINS = "_logins"
_UNKNOWN = "_unknown"


def _result(tallies: Sequence[pl.DataFrame], truth: str) -> ReplayResult:
    """The replay of the logins of ``tallies`` (of disjoint parts of the logins), counts summed."""
    counts = [n for n, t in TABLE_SCHEMA.items() if t == pl.Int64]
    summed = (
        pl.concat(tallies)
        .group_by("strategy", maintain_order=True)
        .agg(pl.col(*counts, _LOGINS, _UNKNOWN).sum())
    )
    logins, unknown = summed.row(0, named=True)[_LOGINS], summed.row(0, named=True)[_UNKNOWN]
    notes = []
    if unknown == logins and logins:
        notes.append("no practitioner directory: practitioner figures are empty")
    return ReplayResult(
        table=_table(summed.drop(_LOGINS, _UNKNOWN)), truth=truth, logins=logins, notes=tuple(notes)
    )


SOURCE_BUCKET_LOGINS = 1_000_000
"""Login events per source bucket of :func:`replay_shards` (what a task holds, about 100 bytes each)."""


@dataclass(frozen=True)
class ReplayContext:
    """What the per-shard replay tasks read besides their part: the plan, the configuration and the
    number of source buckets."""

    plan: pl.DataFrame
    cfg: Config
    buckets: int = 1


_EVENT = "_event"


def logins_task(item: tuple[Path, Path], ctx: ReplayContext) -> list[Path]:
    """Per account shard (its scored events): its login events, the replay's columns and the tool's
    own verdicts (``is_attack``), split by a hash of the address into ``ctx.buckets`` files
    ``<prefix>-<j>.parquet`` (all the logins of an address in one bucket, as fail2ban counts them)."""
    shard, prefix = item
    have = pl.scan_parquet(shard).collect_schema()
    logins = (
        own_verdicts(pl.scan_parquet(shard), ctx.cfg)
        .filter(pl.col(C.ACTION) == Action.LOGIN)
        .select(
            pl.col(C.EVENT_ID).alias(_EVENT),
            *[
                (pl.col(n) if n in have or n == IS_ATTACK else pl.lit(None)).cast(t).alias(n)
                for n, t in _NEEDED.items()
            ],
        )
        .collect()
    )
    parts = split_rows(logins, hash_part(pl.col(C.SOURCE_IP), ctx.buckets), ctx.buckets)
    return write_parts(parts, lambda j: prefix.with_name(f"{prefix.name}-{j}.parquet"))


def bucket_task(parts: list[Path], ctx: ReplayContext) -> pl.DataFrame:
    """Per source bucket (its logins from every account shard, back in event order): :func:`_tally`."""
    logins = pl.concat([pl.read_parquet(p) for p in parts]).sort(_EVENT).drop(_EVENT)
    for p in parts:
        p.unlink(missing_ok=True)
    return _tally(ctx.plan, _prepare(logins), ctx.cfg)


def replay_shards(
    plan: pl.DataFrame, shards: Sequence[Path], cfg: Config, workers: Workers | None = None
) -> ReplayResult:
    """:func:`replay` of a scored night held per account shard (``scored-<k>.parquet``, each sorted
    by ``event_id``), judged by the tool's own verdicts, in ``workers``; the same result.

    Every strategy decides per address (fail2ban counts an address's failures across accounts) or
    per (account, address, AS, service) key, so the logins are regrouped by a hash of the address
    into source buckets, each replayed on its own, and the counts summed. The buckets' count
    follows the logins and the workers, never the result.
    """
    workers = workers or in_process()
    rows = parquet_rows(shards)
    buckets = max(workers.n if workers.parallel else 1, -(-rows // SOURCE_BUCKET_LOGINS))
    ctx = ReplayContext(plan, cfg, buckets)
    items = [(s, s.with_name(f"replay-{k}")) for k, s in enumerate(shards)]
    by_bucket: list[list[Path]] = [[] for _ in range(buckets)]
    for parts in workers.map(logins_task, items, ctx):
        for j, part in enumerate(parts):
            by_bucket[j].append(part)
    return _result(list(workers.map(bucket_task, by_bucket, ctx)), TRUTH_VERDICTS)


def read_plan(path: str | Path) -> pl.DataFrame:
    """A plan from ``recommendations.parquet`` (or a JSON export), checked against the contract.

    Raises:
        InputError: the file does not exist or cannot be read.
        SchemaError: a column is missing or of the wrong type.
    """
    from detector.errors import InputError
    from detector.schema import RECOMMENDATION_SCHEMA, check

    p = Path(path)
    if not p.exists():
        raise InputError("plan file not found", path=p)
    try:
        if p.suffix == ".json":
            frame = pl.DataFrame(json.loads(p.read_text(encoding="utf-8")), infer_schema_length=None)
            frame = frame.with_columns(pl.col("expires_at").str.to_datetime(time_zone="UTC", time_unit="us"))
            frame = frame.select([pl.col(n).cast(t) for n, t in RECOMMENDATION_SCHEMA.items()])
        else:
            frame = pl.read_parquet(p)
    except (OSError, pl.exceptions.PolarsError, ValueError) as e:
        raise InputError(f"cannot read the plan: {e}", path=p) from e
    check(frame.schema, RECOMMENDATION_SCHEMA, what="plan", path=str(p))
    return frame


def replay_logs(
    paths: list[str],
    plan_path: str | Path,
    cfg: Config,
    *,
    labels: str | Path | None = None,
    geoip_dir: str | Path | None = None,
    practitioners: str | Path | None = None,
    model_path: str | Path | None = None,
    state_dir: str | Path | None = None,
) -> ReplayResult:
    """Analyse ``paths`` (typically the day after the plan) and :func:`replay` the plan on them.

    The day goes through :func:`detector.engine.analyse` as in ``detector run``, against the state
    in ``state_dir`` as it was before that day (:func:`detector.engine.read_prior`); without
    labels, its verdicts (with ``model_path`` or the shipped model) tell attacks from legitimate
    logins, so they are the ones ``run`` gives on the same day and state.
    """
    import tempfile

    from detector.engine import analyse, default_model_path, digests, read_prior
    from detector.enrich import NO_DIRECTORY, find_databases, load_practitioners
    from detector.errors import ModelError
    from detector.ingest import ingest
    from detector.logging_setup import step, warn

    plan = read_plan(plan_path)
    label_frame = None
    if labels is not None:
        from detector.labels import read_labels

        label_frame = read_labels(labels)
    geo = find_databases(str(geoip_dir) if geoip_dir is not None else cfg.enrich.geoip_dir)
    directory = load_practitioners(practitioners) if practitioners is not None else None
    model: Path | str | None = model_path
    if model is None and label_frame is None:
        try:
            model = default_model_path()
        except ModelError:
            model = None  # no shipped model: scoring's rule fallback
    with tempfile.TemporaryDirectory(prefix="detector-replay-") as work:
        with step("ingest"):
            ingested = ingest([str(p) for p in paths], cfg.ingest, Path(work))
        prior = read_prior(state_dir, ingested.events, digests(ingested.inputs))
        analysis = analyse(
            ingested.events, cfg, work_dir=Path(work), prior=prior, geoip=geo, practitioners=directory,
            model=model, until="enrich" if label_frame is not None else "score", step=step,
        )  # fmt: skip
        notes = [*([prior.note] if prior.note else []), *analysis.warnings]
        for w in [*notes, *([NO_DIRECTORY] if directory is None else [])]:
            warn(w)
        scores = analysis.scores
        events = analysis.events if scores is None else scores.events.lazy()
        with step("replay"):
            result = replay(plan, events.collect(), label_frame, cfg)
    notes = (*result.notes, *ingested.warnings[:3])
    return ReplayResult(table=result.table, truth=result.truth, logins=result.logins, notes=tuple(notes))

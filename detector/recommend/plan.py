"""The scoped response plan: blocks, account measures, monitoring and reopening, one row per measure.

``recommend`` reads what scoring decided (``Scores.sources`` and ``Scores.accounts`` verdicts,
the scored events) and what detection found (findings, campaigns), and returns
:data:`detector.schema.RECOMMENDATION_SCHEMA` rows sorted by action, then practitioners first, then
risk. The columns are a public contract documented in ``docs/response-plan.md``.

A legitimate login, the unit of collateral, is a successful login to an account that scoring did not
call compromised, or to a compromised account from outside the attackers' addresses with a low
event risk, and not from an attacking address scoring counts no legitimate user on. An attacking
source's successful login that is not legitimate makes the account compromised for the plan.

The parts: :mod:`~detector.recommend.context` (what the plan reads, its vocabulary),
:mod:`~detector.recommend.blocks`, :mod:`~detector.recommend.accounts` (account measures),
:mod:`~detector.recommend.history` (earlier nights' networks); this module assembles them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from detector.config import Config
from detector.recommend import nets, scope
from detector.recommend.accounts import _account_rows, mainstream_networks, new_network_accounts
from detector.recommend.blocks import _blocks, _source_monitors
from detector.recommend.context import (
    ACTIONS,
    BLOCK,
    COLLATERAL_PRIVATE,
    COMPROMISED,
    MONITOR,
    REOPEN,
    _attack_stats,
    _attackers,
    _expand,
    _finding_index,
    _frame,
)
from detector.recommend.guard import Guard
from detector.recommend.guard import warnings as guard_warnings
from detector.recommend.history import _anonymous_history_as_prefixes, _history_rows
from detector.recommend.logins import (
    LEGIT,
    LoginContext,
    combine,
    home_lines_step,
    home_lines_task,
    logins_step,
    logins_task,
)
from detector.recommend.reopen import reopen_rows
from detector.schema import RECOMMENDATION_SCHEMA, C, Column, conform, dtypes
from detector.workers import Workers, in_process

if TYPE_CHECKING:
    from detector.detect import Detection
    from detector.score.verdicts import Scores

COLLATERAL_COLUMNS: tuple[Column, ...] = (
    Column("measure_id", pl.String, "The measure (recommendations.parquet)."),
    Column("action", pl.String, "Its action."),
    Column("target_type", pl.String, "Its target type."),
    Column("target", pl.String, "Its target."),
    Column(
        C.ACCOUNT,
        pl.String,
        "An account with a legitimate login the measure refuses (a block) or whose owner must act (a reset).",
    ),
    Column(C.IS_PRACTITIONER, pl.Boolean, "The account is a health practitioner's."),
)
"""collateral.parquet: one row per (measure, account) counted in the measure's ``collateral_accounts``."""


def measure_id(action: str, target_type: str, target: str, services: list[str] | None) -> str:
    """Stable id of a measure: the same measure gets the same id every night."""
    text = "\x1f".join([action, target_type, target, ",".join(sorted(services or []))])
    return "M" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def finish(rows: pl.DataFrame) -> pl.DataFrame:
    """Stable order (action, practitioners first, risk, target), stable ids, the public schema."""
    rank = {a: i for i, a in enumerate(ACTIONS)}
    if "_practitioner" not in rows.columns:
        rows = rows.with_columns(pl.lit(False).alias("_practitioner"))
    rows = rows.with_columns(
        pl.col("action").replace_strict(rank, default=len(ACTIONS), return_dtype=pl.Int32).alias("_rank"),
        pl.col("services").fill_null(pl.lit([], pl.List(pl.String))),
    ).sort(
        ["_rank", "wave", "_practitioner", C.RISK_SCORE, "target"],
        descending=[False, False, True, True, False],
        nulls_last=True,
        maintain_order=True,
    )
    ids = [
        measure_id(a, t, g, s)
        for a, t, g, s in zip(
            rows.get_column("action").to_list(),
            rows.get_column("target_type").to_list(),
            rows.get_column("target").to_list(),
            rows.get_column("services").to_list(),
            strict=True,
        )
    ]
    rows = rows.with_columns(pl.Series("measure_id", ids, dtype=pl.String))
    out = conform(rows.lazy(), RECOMMENDATION_SCHEMA).collect()
    if COLLATERAL_PRIVATE in rows.columns:
        out = out.with_columns(rows.get_column(COLLATERAL_PRIVATE).fill_null([]))
    return out


def recommend(
    scores: Scores,
    detection: Detection | None,
    cfg: Config,
    now: datetime,
    *,
    known_networks: pl.DataFrame | None = None,
    warnings: list[str] | None = None,
    with_collateral: bool = False,
    shards: Sequence[Path] = (),
    workers: Workers | None = None,
) -> pl.DataFrame:
    """The response plan for a scored window (one row per measure, ``RECOMMENDATION_SCHEMA``).

    No block of the plan is wider than ``[plan] widest_block_v4``/``v6``, touches a reserved or
    allow-listed network, or names anything but a valid address, CIDR or AS number
    (:mod:`detector.recommend.guard`): every refusal is appended to ``warnings`` when given.

    With ``with_collateral`` the plan has one more column, the accounts each measure's
    ``collateral_accounts`` counts (read it with :func:`collateral_table`).

    Args:
        scores: ``Scores`` (``events`` with risk, ``accounts`` and ``sources`` with verdicts).
        detection: ``Detection`` (``findings``, ``campaigns``); may be ``None``.
        cfg: the configuration (``cfg.plan`` budgets, durations, allowlist, shutdown).
        now: when the plan takes effect; ``expires_at`` counts from it.
        known_networks: optional history (``account``, ``net``: CIDR or ``AS<n>``) of networks
            accounts logged in from legitimately before the window; added to ``allowed_networks``.
        shards: the scored events per account shard (``scored-<k>.parquet``; default: read
            ``scores.events``): the plan's tables of logins are built per shard
            (:mod:`detector.recommend.logins`), in ``workers`` (default: this process).

    Raises:
        ConfigError: an allowlist entry is neither an address, a CIDR nor ``AS<n>``.
    """
    nets.parse_nets(cfg.plan.allowlist)
    sources = _frame(scores, "sources")
    accounts = _frame(scores, "accounts").with_columns(pl.col(C.ACCOUNT).str.to_lowercase())
    attackers = sources.filter(_attackers(cfg))
    attacker_ips = attackers.get_column(C.SOURCE_IP).to_list()
    userless = (
        attackers.filter(
            ~pl.col("shared_address").fill_null(False) & (pl.col("legit_accounts").fill_null(0) == 0)
        )
        .get_column(C.SOURCE_IP)
        .to_list()
        if "legit_accounts" in attackers.columns
        else []
    )
    compromised = accounts.filter(pl.col("verdict") == COMPROMISED).get_column(C.ACCOUNT).to_list()
    if userless:
        userless = sorted(set(userless) - set(_home_lines(scores, shards, userless, cfg, workers)))
    shared_ips = sources.filter(pl.col("shared_address").fill_null(False)).get_column(C.SOURCE_IP).to_list()
    ctx = LoginContext(
        tuple(attacker_ips),
        tuple(compromised),
        tuple(userless),
        tuple(shared_ips),
        cfg.scoring.account_compromised,
    )
    # the plan's tables of logins, per account shard in the workers when the night is held per shard
    # combined as the parts come (not listed first): each table's parts are released once combined
    if shards:
        tables = combine((workers or in_process()).map(logins_task, shards, ctx))
    else:
        tables = combine([logins_step(scores.events.lazy(), ctx)])
    practitioners = tables.practitioners.get_column(C.ACCOUNT)
    accounts = accounts.with_columns(
        (pl.col(C.IS_PRACTITIONER).fill_null(False) | pl.col(C.ACCOUNT).is_in(practitioners.implode())).alias(
            C.IS_PRACTITIONER
        ),
    )
    findings = _finding_index(detection)
    # the logins from the attackers' addresses: the only ones the blocks read
    from_attackers = tables.from_attackers
    attack = from_attackers.filter(~pl.col(LEGIT))
    legit = tables.legit
    per_source = (
        _attack_stats(attack, C.SOURCE_IP)
        .select(C.SOURCE_IP, scope.SERVICES)
        .join(
            from_attackers.group_by(C.SOURCE_IP).agg(
                pl.any_horizontal(C.IS_HOSTING, C.IS_VPN, C.IS_TOR)
                .fill_null(False)
                .any()
                .alias(scope.ANONYMOUS),
                pl.col(C.IS_VPN).fill_null(False).any().alias(scope.VPN),
            ),
            on=C.SOURCE_IP,
            how="left",
        )
    )
    attackers = (
        attackers.join(per_source, on=C.SOURCE_IP, how="left")
        .join(
            from_attackers.select(C.SOURCE_IP, pl.col(C.PREFIX48).alias("_p48"))
            .drop_nulls()
            .unique(C.SOURCE_IP),
            on=C.SOURCE_IP,
            how="left",
        )
        .with_columns(
            _expand(pl.col(scope.SERVICES).fill_null(pl.lit([], pl.List(pl.String)))).alias(scope.SERVICES),
            pl.col("_p48").alias(C.PREFIX48),
        )
        .sort(C.SOURCE_IP)
    )
    del from_attackers
    addresses = tables.addresses
    anonymous_asns = tables.anonymous_asns.get_column(C.ASN).to_list()
    new_network = (
        new_network_accounts(legit, known_networks)
        if known_networks is not None and cfg.plan.restrict_new_network
        else []
    )
    if known_networks is not None:
        history = _history_rows(known_networks, accounts, compromised)
        legit = pl.concat([legit, _anonymous_history_as_prefixes(history, legit, anonymous_asns)])
    scoping = scope.choose_blocks(attackers, legit, cfg.plan, addresses)
    mainstream = mainstream_networks(legit, anonymous_asns, cfg.plan.mainstream_share, scoping.blocks)
    account_rows, restricted = _account_rows(
        accounts.with_columns(pl.col(C.ACCOUNT).str.to_lowercase()),
        attack,
        legit,
        findings,
        cfg,
        now,
        scoping.blocks.get_column(scope.SOURCES).explode().drop_nulls().to_list(),
        tables.probing(),
        shared_ips,
        mainstream,
        tables.taken.get_column(C.ACCOUNT).to_list(),
        new_network,
    )
    parts = [
        _blocks(scoping, attackers, attack, findings, now, cfg),
        account_rows,
        _source_monitors(sources, scoping, attackers),
    ]
    if cfg.plan.shutdown:
        parts.append(reopen_rows(accounts, restricted.get_column(C.ACCOUNT).to_list()))
    parts = [p for p in parts if p.width]
    plan = finish(pl.concat([conform_partial(p) for p in parts], how="vertical_relaxed"))
    # the invariant, whatever path built the blocks: checked on the finished plan
    guard = Guard.from_config(cfg.plan)
    late = guard.blocks(plan)
    if late.height:
        plan = plan.filter(
            ~((pl.col("action") == BLOCK) & pl.col("target").is_in(late.get_column("target").implode()))
        )
    if warnings is not None:
        warnings.extend(
            guard_warnings(
                pl.concat(
                    [
                        scoping.refused.select(scope.KEY, scope.WHY),
                        late.select(pl.col("target").alias(scope.KEY), scope.WHY),
                    ]
                )
            )
        )
    return plan if with_collateral else plan.drop(COLLATERAL_PRIVATE, strict=False)


def _home_lines(
    scores: Scores, shards: Sequence[Path], addresses: list[str], cfg: Config, workers: Workers | None
) -> list[str]:
    """Of ``addresses``, those a practitioner logged in from tonight with a success scored under
    ``account_compromised``: the practitioner's home or practice line, which a stuffing proxy on
    the same line must not get blocked as the attacker's own (an account scored compromised keeps
    its reset: its successes from attacking addresses are never legitimate). Per account shard in
    the workers when the night is held per shard (:func:`~detector.recommend.logins.home_lines_task`)."""
    threshold = cfg.scoring.account_compromised
    if shards:
        parts = list((workers or in_process()).map(home_lines_task, shards, (tuple(addresses), threshold)))
    else:
        parts = [home_lines_step(scores.events.lazy(), addresses, threshold)]
    return sorted(set().union(*parts))


def conform_partial(rows: pl.DataFrame) -> pl.DataFrame:
    """Cast a part to the plan's dtypes, keeping the private ``_practitioner`` sort key."""
    cols = [
        pl.col(n).cast(t) if n in rows.columns else pl.lit(None, t).alias(n)
        for n, t in RECOMMENDATION_SCHEMA.items()
        if n != "measure_id"
    ]
    extra = (
        [pl.col("_practitioner").fill_null(False)]
        if "_practitioner" in rows.columns
        else [pl.lit(False).alias("_practitioner")]
    )
    extra.append(
        pl.col(COLLATERAL_PRIVATE).cast(pl.List(pl.String))
        if COLLATERAL_PRIVATE in rows.columns
        else pl.lit(None, pl.List(pl.String)).alias(COLLATERAL_PRIVATE)
    )
    return rows.select(*cols, *extra)


def collateral_table(plan: pl.DataFrame, accounts: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a plan made ``with_collateral`` into the plan and its collateral (:data:`COLLATERAL_COLUMNS`).

    Measures that refuse no login (monitor, reopen) have none; ``accounts`` gives ``is_practitioner``.
    """
    if COLLATERAL_PRIVATE not in plan.columns:
        return plan, pl.DataFrame(schema=dtypes(COLLATERAL_COLUMNS))
    rows = (
        plan.filter(~pl.col("action").is_in([MONITOR, REOPEN]))
        .select("measure_id", "action", "target_type", "target", pl.col(COLLATERAL_PRIVATE).alias(C.ACCOUNT))
        .explode(C.ACCOUNT)
        .drop_nulls(C.ACCOUNT)
        .join(accounts.select(C.ACCOUNT, C.IS_PRACTITIONER).unique(C.ACCOUNT), on=C.ACCOUNT, how="left")
        .with_columns(pl.col(C.IS_PRACTITIONER).fill_null(False))
        .sort("measure_id", C.ACCOUNT)
    )
    return plan.drop(COLLATERAL_PRIVATE), rows.select(
        [pl.col(c.name).cast(c.dtype) for c in COLLATERAL_COLUMNS]
    )

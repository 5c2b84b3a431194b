"""The plan's tables of logins, built per account shard in the worker processes.

Everything the plan reads of the scored logins is a filter or a distinct set once tonight's
verdicts say which addresses attack and which accounts are compromised (:class:`LoginContext`,
from the small account and source tables): the attackers' logins, the distinct legitimate logins,
the addresses and their AS numbers, the anonymous AS numbers, the practitioners, the accounts an
attacker got into, and the two sides of the probing pairs. :func:`logins_step` builds them from
one part of the logins (the whole night, or one shard's ``scored-<k>.parquet`` in
:func:`logins_task`); :func:`combine` joins the parts into what the whole night gives (the
attackers' logins back in event order, distinct sets made distinct again), so the plan's global
decisions run on the small combined tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from detector.recommend import scope
from detector.recommend.context import _EVENT_COLUMNS, is_legit
from detector.schema import Action, C, Outcome

LEGIT = "_legit"
_EVENT = "_event"


@dataclass(frozen=True)
class LoginContext:
    """What tells a legitimate login from an attacker's (:func:`~detector.recommend.context.is_legit`),
    decided on the whole night's source and account tables (picklable)."""

    attacker_ips: tuple[str, ...]
    compromised: tuple[str, ...]
    userless: tuple[str, ...]
    shared_ips: tuple[str, ...]
    threshold: float


@dataclass(frozen=True)
class PlanLogins:
    """The plan's tables of logins (account names in lower case).

    Attributes:
        from_attackers: the logins from the attackers' addresses, in event order, with ``_legit``.
        legit: distinct legitimate successful logins (:data:`scope.LEGIT_COLUMNS`), sorted.
        addresses: distinct (``source_ip``, ``asn``).
        anonymous_asns: distinct AS numbers of hosting, VPN or Tor logins (``asn``).
        practitioners: distinct accounts with a practitioner's login (``account``).
        taken: distinct accounts with a successful login that is not legitimate (``account``).
        failed: distinct (``account``, ``source_ip``, ``asn``) of failed logins with an AS number
            from unshared addresses whose pair never succeeded in this part.
        succeeded: distinct (``account``, ``source_ip``) of successful logins from unshared addresses.
    """

    from_attackers: pl.DataFrame
    legit: pl.DataFrame
    addresses: pl.DataFrame
    anonymous_asns: pl.DataFrame
    practitioners: pl.DataFrame
    taken: pl.DataFrame
    failed: pl.DataFrame
    succeeded: pl.DataFrame

    def probing(self) -> pl.DataFrame:
        """(``account``, ``asn``) of addresses that only ever failed against the account: whoever
        is there is not its owner (an owner's typo is followed by a success from the same address),
        so a restriction does not allow that AS wholesale, only the account's own prefixes in it."""
        return (
            self.failed.join(self.succeeded, on=[C.ACCOUNT, C.SOURCE_IP], how="anti")
            .select(C.ACCOUNT, C.ASN)
            .drop_nulls()
            .unique()
        )


def logins(events: pl.LazyFrame) -> pl.LazyFrame:
    """The columns of the scored events the plan needs (missing ones as nulls), logins only, with
    their ``event_id`` (``_event``; null where the events have none)."""
    have = events.collect_schema()
    return (
        events.select(
            pl.col(C.EVENT_ID).cast(pl.UInt64).alias(_EVENT)
            if C.EVENT_ID in have
            else pl.lit(None, pl.UInt64).alias(_EVENT),
            *[(pl.col(n) if n in have else pl.lit(None)).cast(t).alias(n) for n, t in _EVENT_COLUMNS.items()],
        )
        .filter(pl.col(C.ACTION) == Action.LOGIN)
        .with_columns(pl.col(C.ACCOUNT).str.to_lowercase())
    )


def _accounts(lf: pl.LazyFrame) -> pl.LazyFrame:
    return lf.select(pl.col(C.ACCOUNT).drop_nulls().unique())


def logins_step(events: pl.LazyFrame, ctx: LoginContext) -> PlanLogins:
    """The plan's tables of one part of the scored events (lazy: each table reads only its own
    columns and rows)."""
    lf = logins(events).with_columns(
        is_legit(list(ctx.attacker_ips), list(ctx.compromised), ctx.threshold, list(ctx.userless)).alias(
            LEGIT
        )
    )
    unshared = lf.select(C.ACCOUNT, C.SOURCE_IP, C.ASN, C.OUTCOME).filter(
        ~pl.col(C.SOURCE_IP).is_in(list(ctx.shared_ips))
    )
    succeeded = unshared.filter(pl.col(C.OUTCOME) == Outcome.SUCCESS).select(C.ACCOUNT, C.SOURCE_IP).unique()
    failed = (
        # without an AS number a failure is never a probing pair (probing() drops it): not carried
        unshared.filter(
            pl.col(C.OUTCOME).is_in(list(Outcome.FAILED))
            & pl.col(C.ACCOUNT).is_not_null()
            & pl.col(C.ASN).is_not_null()
        )
        .join(succeeded, on=[C.ACCOUNT, C.SOURCE_IP], how="anti")
        .select(C.ACCOUNT, C.SOURCE_IP, C.ASN)
        .unique()
    )
    tables = pl.collect_all(
        [
            lf.filter(pl.col(C.SOURCE_IP).is_in(list(ctx.attacker_ips))),
            lf.filter(pl.col(LEGIT)).select(list(scope.LEGIT_COLUMNS)).unique(),
            lf.select(C.SOURCE_IP, C.ASN).unique(),
            lf.filter(pl.any_horizontal(C.IS_HOSTING, C.IS_VPN, C.IS_TOR).fill_null(False)).select(
                pl.col(C.ASN).drop_nulls().unique()
            ),
            lf.filter(pl.col(C.IS_PRACTITIONER).fill_null(False)).select(C.ACCOUNT).unique(),
            _accounts(lf.filter((pl.col(C.OUTCOME) == Outcome.SUCCESS) & ~pl.col(LEGIT))),
            failed,
            succeeded,
        ]
    )
    return PlanLogins(*tables)


def logins_task(shard: Path, ctx: LoginContext) -> PlanLogins:
    """Per account shard (its scored events, ``scored-<k>.parquet``): :func:`logins_step`."""
    return logins_step(pl.scan_parquet(shard), ctx)


def home_lines_step(events: pl.LazyFrame, addresses: Sequence[str], threshold: float) -> set[str]:
    """Of ``addresses``, those with a practitioner's success scored under ``threshold`` in this part
    of the scored events (:func:`detector.recommend.plan._home_lines`)."""
    return set(
        logins(events)
        .filter(
            pl.col(C.SOURCE_IP).is_in(list(addresses))
            & pl.col(C.IS_PRACTITIONER).fill_null(False)
            & (pl.col(C.OUTCOME) == Outcome.SUCCESS)
            & (pl.col(C.RISK_SCORE).fill_null(0.0) < threshold)
        )
        .select(pl.col(C.SOURCE_IP).unique())
        .collect()
        .get_column(C.SOURCE_IP)
        .to_list()
    )


def home_lines_task(shard: Path, args: tuple[tuple[str, ...], float]) -> set[str]:
    """Per account shard (``scored-<k>.parquet``): :func:`home_lines_step`."""
    return home_lines_step(pl.scan_parquet(shard), *args)


def combine(parts: Iterable[PlanLogins]) -> PlanLogins:
    """The tables of the parts' logins together, as :func:`logins_step` gives them for all.

    ``parts`` is consumed (pass the workers' results as they come, not a list kept elsewhere): each
    table is combined in turn and its parts released before the next, so the night's tables are
    held about once, not as parts and as combined tables at the same time.
    """
    pending: dict[str, list[pl.DataFrame]] = {name: [] for name in _COMBINED}
    for part in parts:
        for name, frames in pending.items():
            frames.append(getattr(part, name))
        del part
    del parts
    return PlanLogins(**{name: finish(pl.concat(pending.pop(name))) for name, finish in _COMBINED.items()})


_COMBINED: dict[str, Callable[[pl.DataFrame], pl.DataFrame]] = {
    "from_attackers": lambda f: f.sort(_EVENT, maintain_order=True).drop(_EVENT),
    # every column a key: two rows of one account, address and service (a practitioner's flag,
    # an AS) otherwise came in unique()'s order, which varies from run to run
    "legit": lambda f: f.unique().sort(
        C.ACCOUNT, C.SOURCE_IP, C.SERVICE, pl.exclude(C.ACCOUNT, C.SOURCE_IP, C.SERVICE), nulls_last=True
    ),
    "addresses": lambda f: f.unique(),
    "anonymous_asns": lambda f: f.unique().sort(C.ASN),
    "practitioners": lambda f: f.unique(),
    "taken": lambda f: f.unique(),
    "failed": lambda f: f.unique(),
    "succeeded": lambda f: f.unique(),
}
"""How :func:`combine` makes each table of the parts' concatenation what the whole night gives
(largest first: its parts are released first)."""


__all__ = [
    "LoginContext",
    "PlanLogins",
    "combine",
    "home_lines_step",
    "home_lines_task",
    "logins",
    "logins_step",
    "logins_task",
]

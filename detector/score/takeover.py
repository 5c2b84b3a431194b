"""Takeover logins the account model may explain away: a sprayer's right guess, a brute force that
got in (:func:`takeover_risk`), read across accounts from the malicious sources."""

from __future__ import annotations

import polars as pl

from detector.config import Config
from detector.schema import C, Verdict
from detector.score import aggregates as agg
from detector.score.rules import RISK


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


ANONYMOUS_NEW_NEEDS: tuple[str, ...] = (
    C.IS_TOR,
    C.IS_HOSTING,
    C.IS_VPN,
    C.IP_LEGIT_ACCOUNTS,
    "acct_prefix_logins",
    "acct_prior_successes",
)
"""Columns :func:`anonymous_new_logins` reads (the rule is skipped on frames without them)."""


def anonymous_new_logins(ok: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """``account, risk_score, _takeover_why``: risky successes from anonymous infrastructure new to the account.

    A success scored at least ``account_compromised`` from a Tor exit or a rented hosting address
    (not a VPN exit: its customers rotate through the exits), not shared (``ip_legit_accounts``
    below ``shared_address_min_accounts``), into an account that logged in before (history or
    earlier tonight) but never from that /24 (``acct_prefix_logins`` 0). On drawn-mix development
    worlds the account model explained such logins away (account risk 0 beside a login scored
    0.54-0.83) in cold accounts whose owners use home and mobile lines; the owners' own cloud servers
    scored that high had logged in from their /24 tens of times before. Off with
    ``[scoring] takeover_anonymous_new = false``.
    """
    s = cfg.scoring
    tor = pl.col(C.IS_TOR).fill_null(False)
    rented = pl.col(C.IS_HOSTING).fill_null(False) & ~pl.col(C.IS_VPN).fill_null(False)
    return ok.filter(
        pl.lit(s.takeover_anonymous_new)
        & (pl.col(RISK) >= s.account_compromised)
        & (tor | rented)
        & (pl.col(C.IP_LEGIT_ACCOUNTS).fill_null(0) < s.shared_address_min_accounts)
        & (pl.col("acct_prefix_logins").fill_null(0) == 0)
        & (pl.col("acct_prior_successes").fill_null(0) >= 1)
    ).select(
        C.ACCOUNT,
        RISK,
        # whole literals: polars 2.1 panics formatting a when/then string inside this plan
        pl.when(tor)
        .then(pl.lit("a login from a Tor exit never used by the account before"))
        .otherwise(pl.lit("a login from a hosting network never used by the account before"))
        .alias("_takeover_why"),
    )


OWNER_VPN_NEEDS: tuple[str, ...] = (C.IS_VPN, "is_new_asn", "acct_prior_successes", C.ASN)
"""Columns :func:`owner_vpn_accounts` reads (the guard is skipped on frames without them)."""

TAKEOVER_SIGNS: tuple[str, ...] = ("mailbox_download", "send_burst")
"""Detectors on a success that show a takeover's use of the mailbox, whatever the network."""


def owner_vpn_login(cfg: Config) -> pl.Expr:
    """A login through a VPN exit of an AS the account already used (past its cold start), with no
    :data:`TAKEOVER_SIGNS` detector on it; always false when ``[scoring] owner_vpn`` is off."""
    signs = pl.col(C.DETECTORS).list.eval(pl.element().is_in(TAKEOVER_SIGNS)).list.any().fill_null(False)
    return (
        pl.lit(cfg.scoring.owner_vpn)
        & pl.col(C.IS_VPN).fill_null(False)
        & (pl.col("is_new_asn").fill_null(1) == 0)
        & (pl.col("acct_prior_successes").fill_null(0) >= cfg.features.cold_start_successes)
        & ~signs
    )


def owner_vpn_accounts(lf: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """``account, _owner_vpn_as``: accounts whose every risky success is the owner's own VPN.

    Every success scored at least ``account_compromised`` came through a VPN exit of an AS the
    account had already logged in from (``is_new_asn`` 0 past ``[features] cold_start_successes``
    earlier successes) and no :data:`TAKEOVER_SIGNS` detector fired on it. On drawn-mix development
    worlds every false lock was an owner's single login through a VPN exit a stuffing campaign also
    used that night (login risk 0.54-0.99); an attacker's first login through the VPN is new to the
    account (``is_new_asn`` 1), so a takeover through it still counts. Such a login is not a
    sprayer's right guess either (:func:`takeover_risk`: the exit failed on other accounts because a
    stuffing list ran through it too). Off with
    ``[scoring] owner_vpn = false``.
    """
    risky = (
        agg.is_success() & (pl.col(RISK) >= cfg.scoring.account_compromised) & pl.col(C.ACCOUNT).is_not_null()
    )
    own = owner_vpn_login(cfg)
    return (
        lf.filter(pl.lit(cfg.scoring.owner_vpn) & risky)
        .group_by(C.ACCOUNT)
        .agg(own.all().alias("_own"), pl.col(C.ASN).filter(own).first().alias("_owner_vpn_as"))
        .filter(pl.col("_own"))
        .select(C.ACCOUNT, "_owner_vpn_as")
    )


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
    a sprayer's one right guess, unless it is the owner's own VPN: :func:`owner_vpn_login`) or failed at least ``takeover_failed_attempts`` times on this
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
    have = events.collect_schema()
    own_vpn = (
        owner_vpn_login(cfg) if s.owner_vpn and all(c in have for c in OWNER_VPN_NEEDS) else pl.lit(False)
    )
    sprayed = (
        ok.filter((pl.col(RISK) >= s.account_compromised) & ~own_vpn)
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
    kinds = [sprayed, guessed]
    if s.takeover_anonymous_new and all(c in have for c in ANONYMOUS_NEW_NEEDS):
        kinds.append(anonymous_new_logins(ok, cfg))
    return (
        pl.concat(kinds)
        .sort(RISK, "_takeover_why", descending=[True, False])
        .group_by(C.ACCOUNT)
        .agg(pl.col(RISK).first().alias("_takeover"), pl.col("_takeover_why").first())
    )

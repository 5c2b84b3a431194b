"""Account measures: reset and lock compromised accounts, restrict the exposed targeted ones to
their own networks (and the mainstream access networks), monitor the rest."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from detector.config import Config
from detector.recommend import scope
from detector.recommend.context import (
    CLEAN,
    COLLATERAL_PRIVATE,
    COMPROMISED,
    LOCK,
    MAX_FINDING_IDS,
    MONITOR,
    RESET,
    RESTRICT,
    SUSPICIOUS,
    TARGET_ACCOUNT,
    TARGETED,
    _attack_stats,
    _evidence_json,
    _expand,
    _findings_for,
)
from detector.schema import UTC_US, C, Outcome, Service

SPRAYING = "T1110.003"

SMTP_AUTH = scope.SERVICE_GROUPS[Service.SMTP]
NOT_SMTP_AUTH = tuple(sorted(s for s in Service.ALL if s not in SMTP_AUTH))
"""The services of a practitioner's light restriction: a takeover's burst of mail goes out by SMTP
AUTH from hosting, VPN and Tor exits, while a travelling owner mostly reads mail (IMAP, POP3)."""


def _only_spraying() -> pl.Expr:
    """An attempt detection attributes to password spraying alone: one common password tried per
    account, so an unblocked sprayer is not by itself a reason to restrict every account it tried
    (credential stuffing, which holds the real password, is)."""
    t = pl.col(C.TECHNIQUES)
    return (t.list.len().fill_null(0) > 0) & (t.list.set_difference(pl.lit([SPRAYING])).list.len() == 0)


def _known_networks(legit: pl.DataFrame, own_attackers: pl.DataFrame, allow: list[str]) -> pl.DataFrame:
    """Per account: the networks it logs in from legitimately (``allowed_networks``).

    Its /24 (IPv4) or /48 (IPv6) prefixes, and its AS numbers except those its own attackers came
    from through unshared addresses (there only its prefixes), plus the allow-listed networks. An
    attack through a shared address (CGNAT, hospital NAT) does not take the carrier's AS away from
    the account: its owner roams there too.
    """
    prefixes = legit.select(C.ACCOUNT, pl.coalesce(C.PREFIX48, C.PREFIX).alias("net"))
    asns = (
        legit.filter(pl.col(C.ASN).is_not_null())
        .join(own_attackers, on=[C.ACCOUNT, C.ASN], how="anti")
        .select(C.ACCOUNT, pl.format("AS{}", pl.col(C.ASN)).alias("net"))
    )
    return (
        pl.concat([prefixes, asns])
        .drop_nulls()
        .unique()
        .sort(C.ACCOUNT, "net")
        .group_by(C.ACCOUNT, maintain_order=True)
        .agg(pl.col("net").alias("_known"))
        .with_columns(
            pl.concat_list(pl.col("_known"), pl.lit(sorted(allow), pl.List(pl.String))).alias(
                "allowed_networks"
            )
        )
    )


def _account_rows(
    accounts: pl.DataFrame,
    attack: pl.DataFrame,
    legit: pl.DataFrame,
    findings: pl.DataFrame,
    cfg: Config,
    now: datetime,
    blocked_sources: list[str],
    probing: pl.DataFrame,
    shared_ips: list[str],
    mainstream: list[str],
    entered: list[str],
    new_network: list[str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Reset/lock compromised accounts, restrict exposed targeted ones; returns (rows, restricted).

    ``entered``: the accounts with a successful login that is not legitimate (an attacker's, or a
    risky one); a compromised verdict leads to a reset or a lock only for them.

    A targeted account is exposed (and restricted) when some of its attackers are not blocked by
    the plan (shared addresses, collateral over budget; password spraying alone excepted), or when it was attacked hard (many
    attempts or many sources: the attack will come back from new addresses; an account scoring
    calls targeted with many failures counts even when no attacking source was identified, as in
    a distributed brute force of one attempt per address). Every other existing account the
    attackers tried gets a light restriction (``restrict_light``): on every service, to its own
    networks plus the ``mainstream`` access networks, since its takeover, if it comes, comes from
    hosting, VPN or Tor exits; a practitioner's light restriction covers SMTP AUTH only
    (``restrict_light_practitioners``: the takeover's burst of mail, not the travelling owner's
    reading). A practitioner's restriction allows the mainstream networks too, unless the account
    is under a distributed attack (``restrict_distributed_sources`` sources: the bots sit on those
    very home lines). With ``restrict_light`` off, a lightly targeted account whose attackers are
    all blocked is monitored instead.

    ``new_network`` (:func:`new_network_accounts`): accounts with a legitimate-looking login from an
    AS they never used on earlier nights; each one not otherwise measured gets a light restriction
    too (``restrict_new_network``): a first-try stuffing success from a one-use proxy looks exactly
    like that, and its takeover comes from elsewhere, while the owner keeps tonight's network.
    """
    new_net = pl.col(C.ACCOUNT).is_in(new_network or [])
    real = attack.filter(pl.col(C.ACCOUNT).is_not_null()).with_columns(
        (~pl.col(C.SOURCE_IP).is_in(blocked_sources) & ~_only_spraying()).alias("_unblocked")
    )
    stats = (
        _attack_stats(real, C.ACCOUNT)
        .with_columns(_expand(pl.col(scope.SERVICES)).alias(scope.SERVICES))
        .rename({C.TECHNIQUES: "_attack_techniques"})
        .join(
            real.group_by(C.ACCOUNT).agg(
                (pl.col(C.OUTCOME) != Outcome.UNKNOWN_USER).any().alias("_exists"),
                pl.col("_unblocked").sum().alias("_unblocked"),
            ),
            on=C.ACCOUNT,
        )
    )
    own_attackers = (
        pl.concat([real.filter(~pl.col(C.SOURCE_IP).is_in(shared_ips)).select(C.ACCOUNT, C.ASN), probing])
        .drop_nulls()
        .unique()
    )
    known = _known_networks(legit, own_attackers, list(cfg.plan.allowlist))
    has_legit = legit.select(C.ACCOUNT).unique().with_columns(pl.lit(True).alias("_has_legit"))
    ids = (
        _findings_for(
            accounts.select(pl.col(C.ACCOUNT).alias("measure"), pl.col(C.ACCOUNT).alias("entity")),
            findings,
            "account",
        )
        .sort("finding_id")
        .group_by("measure")
        .agg(pl.col("finding_id").alias("_findings"))
        .rename({"measure": C.ACCOUNT})
    )
    a = (
        accounts.join(stats, on=C.ACCOUNT, how="full", coalesce=True)
        .join(known, on=C.ACCOUNT, how="left")
        .join(has_legit, on=C.ACCOUNT, how="left")
        .join(ids, on=C.ACCOUNT, how="left")
        .with_columns(
            pl.col("verdict").fill_null(CLEAN),
            pl.col("_has_legit").fill_null(False),
            pl.col(C.IS_PRACTITIONER).fill_null(False),
            pl.col(C.RISK_SCORE).fill_null(0.0),
            pl.col("_findings").fill_null(pl.lit([], pl.List(pl.String))),
            pl.col("_sources").fill_null(0),
            pl.coalesce(pl.col(C.TECHNIQUES), pl.lit([], pl.List(pl.String))).alias(C.TECHNIQUES),
            pl.col("reasons").fill_null(pl.lit([], pl.List(pl.String))),
        )
        .with_columns(
            pl.concat_list(
                C.TECHNIQUES, pl.col("_attack_techniques").fill_null(pl.lit([], pl.List(pl.String)))
            )
            .list.unique()
            .list.sort()
            .alias(C.TECHNIQUES)
        )
    )
    # Failed attempts alone, which anyone can aim at any account, never reset nor lock it: only an
    # account with a successful login the plan does not count as its owner's (``entered``) is
    # treated as compromised; one scoring calls compromised on failures alone is a targeted account,
    # whose measures keep its own networks open.
    taken = (pl.col("verdict") == COMPROMISED) & pl.col(C.ACCOUNT).is_in(entered)
    compromised = a.filter(taken)
    targeted = a.filter(
        ~taken
        & (pl.col("verdict").is_in([TARGETED, COMPROMISED]) | pl.col("_exists").fill_null(False) | new_net)
    )
    p = cfg.plan
    attempts = pl.col("_attempts").fill_null(0)
    strict = (
        (pl.col("_unblocked").fill_null(0) > 0)
        | (attempts >= p.restrict_min_attempts)
        | (pl.col("_sources") >= p.restrict_min_sources)
        | ((pl.col("verdict") == TARGETED) & (pl.col("failures").fill_null(0) >= p.restrict_min_attempts))
    )
    listed = (attempts >= 1) & pl.col("_exists").fill_null(False)
    light = (
        pl.lit(p.restrict_light)
        & (listed | new_net)
        & (~pl.col(C.IS_PRACTITIONER) | pl.lit(p.restrict_light_practitioners))
        & ~strict
    )
    exposed = strict | light
    distributed = pl.lit(p.restrict_distributed_sources > 0) & (
        pl.col("_sources") >= p.restrict_distributed_sources
    )
    # SMTP AUTH from the own networks only: after a login from a new network (not a practitioner's:
    # their light restriction already covers SMTP AUTH alone, and their mobile and travel sending
    # would pay), and for every light restriction with restrict_light_smtp_own (a practitioner's,
    # on SMTP AUTH alone, then allows no mainstream network at all)
    smtp_own = light & (pl.lit(p.restrict_light_smtp_own) | (~listed & ~pl.col(C.IS_PRACTITIONER)))
    targeted = targeted.with_columns(
        light.alias("_light"),
        (light & ~listed).alias("_new_net"),
        smtp_own.alias("_smtp_own"),
        (
            (light | (pl.col(C.IS_PRACTITIONER) & ~distributed)) & ~(smtp_own & pl.col(C.IS_PRACTITIONER))
        ).alias("_mainstream"),
    )
    attempts = pl.max_horizontal(attempts, pl.col("failures").fill_null(0))
    unseen_ok = pl.lit(p.restrict_unseen_min_attempts > 0) & (attempts >= p.restrict_unseen_min_attempts)
    restrict = exposed & (pl.col("_known").is_not_null() | unseen_ok | light)
    covered = targeted.filter(~restrict)
    targeted = targeted.filter(restrict)
    evidence = _evidence_json(
        sources="_sources",
        attempts=pl.col("attempts").fill_null(pl.col("_attempts")).fill_null(0),
        failures=pl.col("failures").fill_null(0),
        successes=pl.col("successes").fill_null(0),
        attack_attempts=pl.col("_attempts").fill_null(0),
        campaigns=pl.col("_campaigns").fill_null(pl.lit([], pl.List(pl.String))),
        findings=pl.col("_findings").list.head(MAX_FINDING_IDS),
        findings_total=pl.col("_findings").list.len(),
    )
    own = pl.col("_has_legit").cast(pl.Int64)
    own_pract = (pl.col("_has_legit") & pl.col(C.IS_PRACTITIONER)).cast(pl.Int64)
    why = pl.col("reasons").list.join("; ")

    def rows(frame: pl.DataFrame, action: str, **cols: pl.Expr) -> pl.DataFrame:
        base = {
            "action": pl.lit(action),
            "target_type": pl.lit(TARGET_ACCOUNT),
            "target": pl.col(C.ACCOUNT),
            "services": pl.lit(None, pl.List(pl.String)),
            "allowed_networks": pl.lit(None, pl.List(pl.String)),
            "wave": pl.lit(None, pl.Int32),
            "expires_at": pl.lit(None, UTC_US),
            C.RISK_SCORE: pl.col(C.RISK_SCORE),
            "confidence": pl.col(C.RISK_SCORE),
            C.TECHNIQUES: pl.col(C.TECHNIQUES),
            "evidence": evidence,
            "collateral_accounts": own,
            "collateral_practitioners": own_pract,
            "_practitioner": pl.col(C.IS_PRACTITIONER),
        }
        base.update(cols)
        return frame.select(**base)

    out = [
        rows(
            compromised,
            RESET,
            reason=pl.concat_str(
                [pl.lit("compromised: "), why, pl.lit("; the attacker's copy of the password stops working")]
            ),
            **{
                COLLATERAL_PRIVATE: pl.when(pl.col("_has_legit"))
                .then(pl.concat_list(pl.col(C.ACCOUNT)))
                .otherwise(pl.lit([], pl.List(pl.String)))
            },
        )
    ]
    if cfg.plan.lock_while_active:
        out.append(
            rows(
                compromised,
                LOCK,
                expires_at=pl.lit(now + timedelta(hours=cfg.plan.block_hours)).cast(UTC_US),
                reason=pl.concat_str([pl.lit("compromised and the attacker may still be active: "), why]),
            )
        )
    networks_text = (
        pl.when(pl.col("_known").is_null())
        .then(pl.lit("only from allow-listed networks (no legitimate login seen)"))
        .otherwise(pl.format("only from the {} networks it used", pl.col("_known").list.len()))
    )
    services_text = (
        pl.when(pl.col(scope.SERVICES).list.len() > 0)
        .then(pl.lit(" on ") + pl.col(scope.SERVICES).list.join("/"))
        .otherwise(pl.lit(""))
    )
    own_nets = pl.col("allowed_networks").fill_null(pl.lit(sorted(cfg.plan.allowlist), pl.List(pl.String)))
    out.append(
        rows(
            targeted,
            RESTRICT,
            services=pl.when(pl.col("_light") & pl.col(C.IS_PRACTITIONER))
            .then(pl.lit(list(SMTP_AUTH), pl.List(pl.String)))
            .when(pl.col("_smtp_own"))
            .then(pl.lit(list(NOT_SMTP_AUTH), pl.List(pl.String)))
            .when(pl.col("_light"))
            .then(pl.lit([], pl.List(pl.String)))
            .otherwise(pl.col(scope.SERVICES).fill_null(pl.lit([], pl.List(pl.String)))),
            allowed_networks=pl.when(pl.col("_mainstream"))
            .then(pl.concat_list(own_nets, pl.lit(mainstream, pl.List(pl.String))).list.unique().list.sort())
            .otherwise(own_nets),
            expires_at=pl.lit(now + timedelta(hours=cfg.plan.restrict_hours)).cast(UTC_US),
            confidence=pl.col(C.RISK_SCORE).clip(lower_bound=0.5),
            reason=pl.format(
                "{}{}{}; logins {}",
                pl.when(pl.col("_new_net"))
                .then(pl.lit("no attack attempt on it"))
                .otherwise(
                    pl.format(
                        "targeted by {} attacking source(s) ({} attempts)",
                        pl.col("_sources"),
                        pl.col("_attempts").fill_null(0),
                    )
                ),
                services_text,
                pl.when(pl.col("_new_net") & pl.col(C.IS_PRACTITIONER))
                .then(
                    pl.lit(
                        ", but a login tonight from a network new to it (restricted on SMTP AUTH only: a"
                        " takeover's mail would go out from elsewhere)"
                    )
                )
                .when(pl.col("_new_net"))
                .then(
                    pl.lit(
                        ", but a login tonight from a network new to it (a takeover would come from elsewhere)"
                    )
                )
                .when(pl.col("_light") & pl.col(C.IS_PRACTITIONER))
                .then(
                    pl.lit(
                        ", on the attackers' lists (a takeover's mail would go out by SMTP AUTH from"
                        " elsewhere; restricted on SMTP AUTH only)"
                    )
                )
                .when(pl.col("_light"))
                .then(pl.lit(", on the attackers' lists (its takeover would come from elsewhere)"))
                .when(pl.col(C.IS_PRACTITIONER) & ~pl.col("_mainstream"))
                .then(pl.lit(", a distributed attack from home lines (no mainstream network allowed)"))
                .when(pl.col("_unblocked").fill_null(0) > 0)
                .then(pl.format(", {} of them from addresses this plan cannot block", pl.col("_unblocked")))
                .otherwise(pl.lit(", attacked hard enough to come back from new addresses")),
                pl.when(pl.col("_mainstream") & (pl.lit(len(mainstream)) > 0))
                .then(
                    pl.format(
                        "{} and the {} mainstream access networks", networks_text, pl.lit(len(mainstream))
                    )
                )
                .otherwise(networks_text),
            ),
            collateral_accounts=pl.lit(0, pl.Int64),
            collateral_practitioners=pl.lit(0, pl.Int64),
        )
    )
    out.append(
        rows(
            targeted.filter(pl.col("_smtp_own") & ~pl.col(C.IS_PRACTITIONER)),
            RESTRICT,
            services=pl.lit(list(SMTP_AUTH), pl.List(pl.String)),
            allowed_networks=own_nets,
            expires_at=pl.lit(now + timedelta(hours=cfg.plan.restrict_hours)).cast(UTC_US),
            confidence=pl.col(C.RISK_SCORE).clip(lower_bound=0.5),
            reason=pl.format(
                "sending by SMTP AUTH {} (a takeover's burst of mail goes out from a network the owner never used)",
                networks_text,
            ),
            collateral_accounts=pl.lit(0, pl.Int64),
            collateral_practitioners=pl.lit(0, pl.Int64),
        )
    )
    watch = a.filter(
        (pl.col("verdict") == SUSPICIOUS)
        & ~pl.col(C.ACCOUNT).is_in(targeted.get_column(C.ACCOUNT).to_list())
        & ~pl.col(C.ACCOUNT).is_in(covered.get_column(C.ACCOUNT).to_list())
    )
    out.append(
        rows(
            watch,
            MONITOR,
            reason=pl.concat_str([pl.lit("suspicious account, not worth acting on yet: "), why]),
            collateral_accounts=pl.lit(0, pl.Int64),
            collateral_practitioners=pl.lit(0, pl.Int64),
        )
    )
    out.append(
        rows(
            covered,
            MONITOR,
            reason=pl.format(
                "targeted by {} attacking source(s) ({} attempts), all blocked by this plan; not restricted",
                pl.col("_sources"),
                attempts,
            ),
            collateral_accounts=pl.lit(0, pl.Int64),
            collateral_practitioners=pl.lit(0, pl.Int64),
        )
    )
    return pl.concat(out, how="diagonal_relaxed"), targeted.select(C.ACCOUNT)


def new_network_accounts(legit: pl.DataFrame, known: pl.DataFrame) -> list[str]:
    """Accounts with a legitimate login tonight from an AS they never used on earlier nights.

    ``legit``: tonight's legitimate logins (:data:`~detector.recommend.scope.LEGIT_COLUMNS`);
    ``known``: earlier nights' networks (:func:`~detector.recommend.history.known_networks`). Only
    accounts with earlier nights on record count (a new account has no "new" network).
    """
    asns = known.filter(pl.col("net").str.starts_with("AS")).select(
        C.ACCOUNT, pl.col("net").str.slice(2).cast(pl.Int64, strict=False).alias(C.ASN)
    )
    return (
        legit.filter(pl.col(C.ASN).is_not_null())
        .select(C.ACCOUNT, C.ASN)
        .unique()
        .join(known.select(C.ACCOUNT).unique(), on=C.ACCOUNT, how="semi")
        .join(asns.drop_nulls(), on=[C.ACCOUNT, C.ASN], how="anti")
        .get_column(C.ACCOUNT)
        .unique()
        .sort()
        .to_list()
    )


def mainstream_networks(
    legit: pl.DataFrame, anonymous_asns: list[int], share: float, blocks: pl.DataFrame | None = None
) -> list[str]:
    """``AS<n>`` of the mainstream access networks: the residential and mobile ISPs (not hosting,
    VPN or Tor) that at least ``share`` of the accounts with legitimate logins log in from, and
    that the plan does not block. A light restriction allows them: the owner roams there, and an
    attacker's takeover comes from hosting, VPN, Tor or abroad.
    """
    if share <= 0 or legit.is_empty():
        return []
    accounts = legit.get_column(C.ACCOUNT).n_unique()
    blocked = set()
    if blocks is not None and blocks.height:
        blocked = set(blocks.filter(pl.col(scope.LEVEL) == scope.LEVEL_ASN).get_column(scope.KEY).to_list())
    users = (
        legit.filter(pl.col(C.ASN).is_not_null() & ~pl.col(C.ASN).is_in(anonymous_asns))
        .group_by(C.ASN)
        .agg(pl.col(C.ACCOUNT).n_unique().alias("_n"))
        .filter(pl.col("_n") >= share * accounts)
    )
    return sorted(f"AS{a}" for a in users.get_column(C.ASN).to_list() if f"AS{a}" not in blocked)

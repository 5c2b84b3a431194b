"""The scoped response plan: blocks, account measures, monitoring and reopening, one row per measure.

``recommend`` reads what scoring decided (``Scores.sources`` and ``Scores.accounts`` verdicts,
the scored events) and what detection found (findings, campaigns), and returns
:data:`detector.schema.RECOMMENDATION_SCHEMA` rows sorted by action, then practitioners first, then
risk. The columns are a public contract documented in ``docs/response-plan.md``.

A legitimate login, the unit of collateral, is a successful login to an account that scoring did not
call compromised, or to a compromised account from outside the attackers' addresses with a low
event risk, and not from an attacking address scoring counts no legitimate user on. An attacking
source's successful login that is not legitimate makes the account compromised for the plan.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from detector.config import Config
from detector.recommend import nets, scope
from detector.recommend.guard import Guard
from detector.recommend.guard import warnings as guard_warnings
from detector.recommend.reopen import reopen_rows
from detector.schema import (
    RECOMMENDATION_SCHEMA,
    UTC_US,
    Action,
    C,
    Column,
    Outcome,
    Service,
    conform,
    dtypes,
)

BLOCK = "block"
LOCK = "lock_account"
RESET = "reset_credentials"
RESTRICT = "restrict_account"
REOPEN = "reopen"
MONITOR = "monitor"
ACTIONS = (BLOCK, LOCK, RESET, RESTRICT, REOPEN, MONITOR)

TARGET_IP = "ip"
TARGET_CIDR = "cidr"
TARGET_ASN = "asn"
TARGET_ACCOUNT = "account"

MALICIOUS = "malicious"
SUSPICIOUS = "suspicious"
COMPROMISED = "compromised"
TARGETED = "targeted"
CLEAN = "clean"

COLLATERAL_PRIVATE = "_collateral"
"""The plan's private column of collateral accounts (``recommend(..., with_collateral=True)``)."""
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

MAX_FINDING_IDS = 50
"""Finding ids listed in a measure's evidence (the total is always given)."""

_EVENT_COLUMNS = {
    C.TIMESTAMP: UTC_US,
    C.ACCOUNT: pl.String,
    C.SOURCE_IP: pl.String,
    C.PREFIX: pl.String,
    C.PREFIX48: pl.String,
    C.ASN: pl.Int64,
    C.AS_ORG: pl.String,
    C.SERVICE: pl.String,
    C.ACTION: pl.String,
    C.OUTCOME: pl.String,
    C.IS_PRACTITIONER: pl.Boolean,
    C.IS_HOSTING: pl.Boolean,
    C.IS_VPN: pl.Boolean,
    C.IS_TOR: pl.Boolean,
    C.RISK_SCORE: pl.Float64,
    C.TECHNIQUES: pl.List(pl.String),
    C.CAMPAIGN: pl.String,
}


def _frame(obj: Any, name: str) -> pl.DataFrame | None:
    value = getattr(obj, name, None)
    if value is None:
        return None
    return value.collect() if isinstance(value, pl.LazyFrame) else value


def _events(scores: Any) -> pl.DataFrame:
    """The columns of the scored events the plan needs (missing ones as nulls), logins only."""
    lf = scores.events.lazy()
    have = lf.collect_schema()
    return (
        lf.select(
            [(pl.col(n) if n in have else pl.lit(None)).cast(t).alias(n) for n, t in _EVENT_COLUMNS.items()]
        )
        .filter(pl.col(C.ACTION) == Action.LOGIN)
        .with_columns(pl.col(C.ACCOUNT).str.to_lowercase())
        .collect()
    )


def _finding_index(detection: Any) -> pl.DataFrame:
    """``entity_type``, ``entity``, ``finding_id`` of attack findings (benign explainers excluded)."""
    findings = _frame(detection, "findings")
    schema = {"entity_type": pl.String, "entity": pl.String, "finding_id": pl.String}
    if findings is None or not {"entity", "finding_id"} <= set(findings.columns):
        return pl.DataFrame(schema=schema)
    if "kind" in findings.columns:
        findings = findings.filter(pl.col("kind").fill_null("attack") != "benign")
    if "entity_type" not in findings.columns:
        findings = findings.with_columns(pl.lit(None, pl.String).alias("entity_type"))
    return findings.select([pl.col(k).cast(v) for k, v in schema.items()]).unique().sort("finding_id")


def _findings_for(keys: pl.DataFrame, index: pl.DataFrame, entity_type: str) -> pl.DataFrame:
    """Per ``measure`` key: ids of findings whose entity is one of its ``entity`` values."""
    return keys.join(
        index.filter(pl.col("entity_type") == entity_type).drop("entity_type"), on="entity", how="inner"
    ).select("measure", "finding_id")


def _evidence_json(**fields: pl.Expr) -> pl.Expr:
    return pl.struct(**fields).struct.json_encode().alias("evidence")


def measure_id(action: str, target_type: str, target: str, services: list[str] | None) -> str:
    """Stable id of a measure: the same measure gets the same id every night."""
    text = "\x1f".join([action, target_type, target, ",".join(sorted(services or []))])
    return "M" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def _attackers(cfg: Config) -> pl.Expr:
    """Sources the plan acts on: malicious ones, and suspicious ones in a campaign or with many failures."""
    verdict = pl.col("verdict")
    busy = pl.lit(cfg.plan.act_on_suspicious_failures > 0) & (
        pl.col("failures").fill_null(0) >= cfg.plan.act_on_suspicious_failures
    )
    return (verdict == MALICIOUS) | ((verdict == SUSPICIOUS) & (pl.col(C.CAMPAIGN).is_not_null() | busy))


def is_legit(
    attacker_ips: list[str], compromised: list[str], threshold: float, userless: list[str] | None = None
) -> pl.Expr:
    """A legitimate successful login: not risky, not a compromised account's login from an attacker,
    and not from an attacking address scoring counts no legitimate user on (``userless``: its
    successes are the attacker's own, e.g. a sprayer's one right guess)."""
    risky = (
        (pl.col(C.RISK_SCORE).fill_null(0.0) >= threshold)
        | (pl.col(C.ACCOUNT).is_in(compromised) & pl.col(C.SOURCE_IP).is_in(attacker_ips))
        | pl.col(C.SOURCE_IP).is_in(userless or [])
    )
    return (
        (pl.col(C.OUTCOME) == Outcome.SUCCESS)
        & pl.col(C.ACCOUNT).is_not_null()
        & pl.col(C.SOURCE_IP).is_not_null()
        & ~risky
    )


SPRAYING = "T1110.003"

SMTP_AUTH = scope.SERVICE_GROUPS[Service.SMTP]
"""The services of a practitioner's light restriction: a takeover's burst of mail goes out by SMTP
AUTH from hosting, VPN and Tor exits, while a travelling owner mostly reads mail (IMAP, POP3)."""


def _only_spraying() -> pl.Expr:
    """An attempt detection attributes to password spraying alone: one common password tried per
    account, so an unblocked sprayer is not by itself a reason to restrict every account it tried
    (credential stuffing, which holds the real password, is)."""
    t = pl.col(C.TECHNIQUES)
    return (t.list.len().fill_null(0) > 0) & (t.list.set_difference(pl.lit([SPRAYING])).list.len() == 0)


def _probing(events: pl.DataFrame) -> pl.DataFrame:
    """(``account``, ``asn``) of addresses that only ever failed against the account: whoever is
    there is not its owner (an owner's typo is followed by a success from the same address), so a
    restriction does not allow that AS wholesale, only the account's own prefixes in it."""
    events = events.select(C.ACCOUNT, C.SOURCE_IP, C.ASN, C.OUTCOME)  # filters copy only these
    failed = events.filter(pl.col(C.OUTCOME).is_in(list(Outcome.FAILED)) & pl.col(C.ACCOUNT).is_not_null())
    succeeded = events.filter(pl.col(C.OUTCOME) == Outcome.SUCCESS).select(C.ACCOUNT, C.SOURCE_IP).unique()
    return (
        failed.join(succeeded, on=[C.ACCOUNT, C.SOURCE_IP], how="anti")
        .select(C.ACCOUNT, C.ASN)
        .drop_nulls()
        .unique()
    )


def _legit(events: pl.DataFrame) -> pl.DataFrame:
    return (
        events.lazy()  # the filter copies only the columns selected
        .filter(pl.col("_legit"))
        .select(list(scope.LEGIT_COLUMNS))
        .collect()
        .unique()
        .sort(C.ACCOUNT, C.SOURCE_IP, C.SERVICE, nulls_last=True)
    )


def _attack_stats(attack: pl.DataFrame, by: str) -> pl.DataFrame:
    """Per source or per account: attacked services (expanded; [] = all), techniques, counts."""
    return attack.group_by(by).agg(
        pl.when(pl.col(C.SERVICE).is_null().any())
        .then(pl.lit([], pl.List(pl.String)))
        .otherwise(pl.col(C.SERVICE).drop_nulls().unique().sort().implode())
        .first()
        .alias(scope.SERVICES),
        pl.col(C.TECHNIQUES)
        .list.explode(keep_nulls=False, empty_as_null=False)
        .drop_nulls()
        .unique()
        .sort()
        .alias(C.TECHNIQUES),
        pl.len().cast(pl.Int64).alias("_attempts"),
        (pl.col(C.OUTCOME) == Outcome.SUCCESS).sum().cast(pl.Int64).alias("_successes"),
        pl.col(C.ACCOUNT).drop_nulls().n_unique().cast(pl.Int64).alias("_accounts"),
        pl.col(C.ACCOUNT).is_null().sum().cast(pl.Int64).alias("_unnamed"),
        pl.col(C.SOURCE_IP).drop_nulls().n_unique().cast(pl.Int64).alias("_sources"),
        pl.col(C.CAMPAIGN).drop_nulls().unique().sort().alias("_campaigns"),
        pl.col(C.TIMESTAMP).max().alias("_last"),
    )


def _expand(services: pl.Expr) -> pl.Expr:
    return scope.expand_services_expr(services)


def _blocks(
    scoping: scope.Scoping,
    attackers: pl.DataFrame,
    attack: pl.DataFrame,
    findings: pl.DataFrame,
    now: datetime,
    cfg: Config,
) -> pl.DataFrame:
    blocks = scoping.blocks.with_row_index("measure")
    if blocks.is_empty():
        return pl.DataFrame()
    members = blocks.select("measure", pl.col(scope.SOURCES).alias(C.SOURCE_IP)).explode(C.SOURCE_IP)
    per_source = members.join(attackers, on=C.SOURCE_IP, how="left")
    events = members.join(attack, on=C.SOURCE_IP, how="inner")
    stats = _attack_stats(events, "measure")
    ids = pl.concat(
        [
            _findings_for(members.rename({C.SOURCE_IP: "entity"}), findings, "source_ip"),
            _findings_for(blocks.select("measure", pl.col(scope.KEY).alias("entity")), findings, "prefix"),
            _findings_for(blocks.select("measure", pl.col(scope.KEY).alias("entity")), findings, "asn"),
            _findings_for(
                per_source.select("measure", pl.col(C.CAMPAIGN).alias("entity")).drop_nulls(),
                findings,
                "campaign",
            ),
        ]
    ).unique()
    ids = ids.sort("finding_id").group_by("measure").agg(pl.col("finding_id").alias("_findings"))
    src = per_source.group_by("measure").agg(
        pl.col(C.RISK_SCORE).max().alias("_risk"),
        pl.col(C.RISK_SCORE).mean().alias("_confidence"),
        pl.col("attempts").sum().alias("_src_attempts"),
        pl.col("failures").sum().alias("_failures"),
        pl.col(C.AS_ORG).drop_nulls().first().alias("_as_org"),
        pl.col(C.CAMPAIGN).drop_nulls().unique().sort().alias("_src_campaigns"),
    )
    b = (
        blocks.join(src, on="measure", how="left")
        .join(stats.drop(scope.SERVICES), on="measure", how="left")
        .join(ids, on="measure", how="left")
        .with_columns(
            pl.col("_findings").fill_null(pl.lit([], pl.List(pl.String))),
            pl.coalesce("_src_attempts", "_attempts").fill_null(0).alias("_attempts"),
            pl.col("_accounts").fill_null(0),
            pl.col("_successes").fill_null(0),
            pl.col(C.TECHNIQUES).fill_null(pl.lit([], pl.List(pl.String))),
            pl.concat_list(
                pl.col("_src_campaigns"), pl.col("_campaigns").fill_null(pl.lit([], pl.List(pl.String)))
            )
            .list.unique()
            .list.sort()
            .alias("_campaigns"),
        )
    )
    n = pl.col(scope.SOURCES).list.len()
    services_text = (
        pl.when(pl.col(scope.SERVICES).list.len() > 0)
        .then(pl.lit(" on ") + pl.col(scope.SERVICES).list.join("/"))
        .otherwise(pl.lit(""))
    )
    campaign_text = (
        pl.when(pl.col("_campaigns").list.len() > 0)
        .then(pl.lit(" (campaign ") + pl.col("_campaigns").list.join(", ") + pl.lit(")"))
        .otherwise(pl.lit(""))
    )
    level = pl.col(scope.LEVEL)
    what = (
        pl.when(level == scope.LEVEL_IP)
        .then(
            pl.format(
                "{} made {} login attempts against {} accounts", pl.col(scope.KEY), "_attempts", "_accounts"
            )
        )
        .when(level == scope.LEVEL_ASN)
        .then(
            pl.format(
                "{} attacking addresses in {} ({}) made {} login attempts against {} accounts",
                n,
                pl.col(scope.KEY),
                pl.col("_as_org").fill_null("unknown organisation"),
                "_attempts",
                "_accounts",
            )
        )
        .otherwise(
            pl.format(
                "{} attacking addresses in {} made {} login attempts against {} accounts",
                n,
                pl.col(scope.KEY),
                "_attempts",
                "_accounts",
            )
        )
    )
    # Postfix logs most failed SASL logins without the name tried (guessing_source)
    what = what + pl.when(pl.col("_unnamed") > 0).then(
        pl.format(" ({} without an account name)", "_unnamed")
    ).otherwise(pl.lit(""))
    spare = (
        pl.when(pl.col(scope.EXCEPT).list.len() > 0)
        .then(
            pl.format(
                "; hosting/VPN network: except the {} addresses its legitimate users log in from",
                pl.col(scope.EXCEPT).list.len(),
            )
        )
        .when(level == scope.LEVEL_ASN)
        .then(pl.lit("; nobody logs in legitimately from this network"))
        .when(pl.col(scope.COLLATERAL) == 0)
        .then(pl.lit("; no legitimate login from it"))
        .otherwise(
            pl.format("; {} legitimate accounts would be hit (within budget)", pl.col(scope.COLLATERAL))
        )
    )
    return b.select(
        pl.lit(BLOCK).alias("action"),
        pl.when(level == scope.LEVEL_IP)
        .then(pl.lit(TARGET_IP))
        .when(level == scope.LEVEL_ASN)
        .then(pl.lit(TARGET_ASN))
        .otherwise(pl.lit(TARGET_CIDR))
        .alias("target_type"),
        pl.col(scope.KEY).alias("target"),
        pl.col(scope.SERVICES).alias("services"),
        pl.col(scope.EXCEPT).alias("allowed_networks"),
        pl.lit(None, pl.Int32).alias("wave"),
        pl.lit(now + timedelta(hours=cfg.plan.block_hours)).cast(UTC_US).alias("expires_at"),
        pl.col("_risk").fill_null(0.0).alias(C.RISK_SCORE),
        pl.col("_confidence").fill_null(0.0).alias("confidence"),
        pl.concat_str([what, services_text, campaign_text, spare]).alias("reason"),
        pl.col(C.TECHNIQUES),
        _evidence_json(
            sources=n,
            attempts="_attempts",
            failures=pl.col("_failures").fill_null(0),
            successes="_successes",
            accounts="_accounts",
            campaigns="_campaigns",
            findings=pl.col("_findings").list.head(MAX_FINDING_IDS),
            findings_total=pl.col("_findings").list.len(),
        ),
        pl.col(scope.COLLATERAL).alias("collateral_accounts"),
        pl.col(scope.COLLATERAL_PRACT).alias("collateral_practitioners"),
        pl.col(scope.COLLATERAL_LIST).alias(COLLATERAL_PRIVATE),
        pl.lit(False).alias("_practitioner"),
    )


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
    """
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
        ~taken & (pl.col("verdict").is_in([TARGETED, COMPROMISED]) | pl.col("_exists").fill_null(False))
    )
    p = cfg.plan
    attempts = pl.col("_attempts").fill_null(0)
    strict = (
        (pl.col("_unblocked").fill_null(0) > 0)
        | (attempts >= p.restrict_min_attempts)
        | (pl.col("_sources") >= p.restrict_min_sources)
        | ((pl.col("verdict") == TARGETED) & (pl.col("failures").fill_null(0) >= p.restrict_min_attempts))
    )
    light = (
        pl.lit(p.restrict_light)
        & (attempts >= 1)
        & pl.col("_exists").fill_null(False)
        & (~pl.col(C.IS_PRACTITIONER) | pl.lit(p.restrict_light_practitioners))
        & ~strict
    )
    exposed = strict | light
    distributed = pl.lit(p.restrict_distributed_sources > 0) & (
        pl.col("_sources") >= p.restrict_distributed_sources
    )
    targeted = targeted.with_columns(
        light.alias("_light"),
        (light | (pl.col(C.IS_PRACTITIONER) & ~distributed)).alias("_mainstream"),
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
            .when(pl.col("_light"))
            .then(pl.lit([], pl.List(pl.String)))
            .otherwise(pl.col(scope.SERVICES).fill_null(pl.lit([], pl.List(pl.String)))),
            allowed_networks=pl.when(pl.col("_mainstream"))
            .then(pl.concat_list(own_nets, pl.lit(mainstream, pl.List(pl.String))).list.unique().list.sort())
            .otherwise(own_nets),
            expires_at=pl.lit(now + timedelta(hours=cfg.plan.restrict_hours)).cast(UTC_US),
            confidence=pl.col(C.RISK_SCORE).clip(lower_bound=0.5),
            reason=pl.format(
                "targeted by {} attacking source(s) ({} attempts){}{}; logins {}",
                pl.col("_sources"),
                pl.col("_attempts").fill_null(0),
                services_text,
                pl.when(pl.col("_light") & pl.col(C.IS_PRACTITIONER))
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


def _source_monitors(sources: pl.DataFrame, scoping: scope.Scoping, attackers: pl.DataFrame) -> pl.DataFrame:
    """Monitor rows: attacking sources left unblocked (and why), and suspicious sources."""
    unblocked = scoping.unblocked.join(sources, on=C.SOURCE_IP, how="left").with_columns(
        pl.format(
            "attacking source not blocked: {} ({} legitimate accounts behind it); its targets are restricted instead",
            pl.col(scope.WHY),
            pl.col(scope.COLLATERAL),
        ).alias("reason")
    )
    watch = sources.filter(
        (pl.col("verdict") == SUSPICIOUS)
        & ~pl.col(C.SOURCE_IP).is_in(attackers.get_column(C.SOURCE_IP).to_list())
    )
    watch = watch.with_columns(
        pl.lit("suspicious source, not worth acting on yet").alias("reason"),
        pl.lit(0, pl.Int64).alias(scope.COLLATERAL),
        pl.lit(0, pl.Int64).alias(scope.COLLATERAL_PRACT),
    )
    both = pl.concat(
        [
            f.select(
                C.SOURCE_IP,
                "reason",
                C.RISK_SCORE,
                "attempts",
                "failures",
                "successes",
                "accounts_targeted",
                pl.col(scope.COLLATERAL).cast(pl.Int64),
                pl.col(scope.COLLATERAL_PRACT).cast(pl.Int64),
            )
            for f in (unblocked, watch)
        ]
    )
    return both.select(
        pl.lit(MONITOR).alias("action"),
        pl.lit(TARGET_IP).alias("target_type"),
        pl.col(C.SOURCE_IP).alias("target"),
        pl.lit(None, pl.List(pl.String)).alias("services"),
        pl.lit(None, pl.List(pl.String)).alias("allowed_networks"),
        pl.lit(None, pl.Int32).alias("wave"),
        pl.lit(None, UTC_US).alias("expires_at"),
        pl.col(C.RISK_SCORE).fill_null(0.0),
        pl.col(C.RISK_SCORE).fill_null(0.0).alias("confidence"),
        "reason",
        pl.lit([], pl.List(pl.String)).alias(C.TECHNIQUES),
        _evidence_json(
            attempts=pl.col("attempts").fill_null(0),
            failures=pl.col("failures").fill_null(0),
            successes=pl.col("successes").fill_null(0),
            accounts=pl.col("accounts_targeted").fill_null(0),
        ),
        pl.col(scope.COLLATERAL).alias("collateral_accounts"),
        pl.col(scope.COLLATERAL_PRACT).alias("collateral_practitioners"),
        pl.lit(False).alias("_practitioner"),
    )


def _anonymous_history_as_prefixes(
    history: pl.DataFrame, tonight: pl.DataFrame, anonymous_asns: list[int]
) -> pl.DataFrame:
    """History rows on hosting/VPN/Tor AS numbers keep their address and prefix but not their AS,
    unless the account logs in legitimately from that AS tonight too.

    An attacker's logins into an account the scoring missed enter the history as the account's
    own; on anonymous infrastructure they would protect the whole AS from a block (a takeover
    rotates through hosting, VPN and Tor exits). Servers and VPN customers log in every night,
    so they still count; the prefix and address keep protecting the others.
    """
    seen = tonight.select(C.ACCOUNT, C.ASN).drop_nulls().unique().with_columns(pl.lit(True).alias("_tonight"))
    return (
        history.join(seen, on=[C.ACCOUNT, C.ASN], how="left")
        .with_columns(
            pl.when(pl.col(C.ASN).is_in(anonymous_asns) & pl.col("_tonight").is_null())
            .then(pl.lit(None, pl.Int64))
            .otherwise(pl.col(C.ASN))
            .alias(C.ASN)
        )
        .drop("_tonight")
        .filter(pl.any_horizontal(pl.col(C.PREFIX, C.PREFIX48, C.ASN).is_not_null()))
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


def known_networks(history: Any) -> pl.DataFrame:
    """``account``, ``net`` (address, CIDR or ``AS<n>``) from the baseline history's successful logins.

    Pass the result as ``recommend(..., known_networks=...)`` so that collateral and restrictions
    count the networks accounts used on earlier nights. Accepts a ``History`` or its ``accounts``
    table (features ``source_ip``, ``prefix`` and ``asn``).
    """
    table = getattr(history, "accounts", history)
    schema = {C.ACCOUNT: pl.String, "net": pl.String}
    if table is None or table.is_empty():
        return pl.DataFrame(schema=schema)
    feature, value = pl.col("feature"), pl.col("value")
    return (
        table.filter(feature.is_in([C.SOURCE_IP, C.PREFIX, C.ASN]) & (value != ""))
        .select(
            pl.col(C.ACCOUNT).str.to_lowercase(),
            pl.when(feature == C.ASN).then(pl.lit("AS") + value).otherwise(value).alias("net"),
        )
        .unique()
        .sort(C.ACCOUNT, "net")
    )


def _history_rows(known: pl.DataFrame, accounts: pl.DataFrame, compromised: list[str]) -> pl.DataFrame:
    """Legitimate-login rows (any service) for the networks accounts used on earlier nights, so that
    collateral and ``allowed_networks`` count them; an address also gives its prefixes. Compromised
    accounts' history is left out (it may hold the attacker's logins)."""
    from detector.enrich.geoip import classify

    addresses = known.filter(~pl.col("net").str.contains("/") & ~pl.col("net").str.starts_with("AS"))
    cut = classify(addresses.get_column("net").unique()).select(
        pl.col(C.SOURCE_IP).alias("net"), pl.col(C.PREFIX).alias("_p"), pl.col(C.PREFIX48).alias("_p48")
    )
    known = known.join(cut, on="net", how="left")
    parsed = known.select(
        pl.col(C.ACCOUNT).str.to_lowercase(),
        pl.col("net"),
        pl.col("net").str.extract(r"^AS(\d+)$").cast(pl.Int64, strict=False).alias(C.ASN),
        pl.col("net").str.extract(r"/(\d+)$").cast(pl.Int32, strict=False).alias("_len"),
        "_p",
        "_p48",
    ).filter(~pl.col(C.ACCOUNT).is_in(compromised))
    practitioners = accounts.select(C.ACCOUNT, pl.col(C.IS_PRACTITIONER).fill_null(False))
    rows = (
        parsed.join(practitioners, on=C.ACCOUNT, how="left")
        .select(
            C.ACCOUNT,
            pl.col(C.IS_PRACTITIONER).fill_null(False),
            pl.when(pl.col("_p").is_not_null()).then(pl.col("net")).alias(C.SOURCE_IP),
            pl.when(pl.col("_len").is_in([24, 64]))
            .then(pl.col("net"))
            .otherwise(pl.col("_p"))
            .alias(C.PREFIX),
            pl.when(pl.col("_len") == 48).then(pl.col("net")).otherwise(pl.col("_p48")).alias(C.PREFIX48),
            C.ASN,
            pl.lit(None, pl.String).alias(C.SERVICE),
        )
        .filter(
            pl.any_horizontal(
                pl.col(C.PREFIX).is_not_null(), pl.col(C.PREFIX48).is_not_null(), pl.col(C.ASN).is_not_null()
            )
        )
        .select([pl.col(k).cast(v) for k, v in scope.LEGIT_COLUMNS.items()])
    )
    with_address = rows.filter(pl.col(C.SOURCE_IP).is_not_null())
    prefix_only = rows.filter(pl.col(C.SOURCE_IP).is_null() & pl.col(C.PREFIX).is_not_null()).join(
        with_address.select(C.ACCOUNT, C.PREFIX).unique(), on=[C.ACCOUNT, C.PREFIX], how="anti"
    )
    return pl.concat(
        [with_address, prefix_only, rows.filter(pl.col(C.PREFIX).is_null() & pl.col(C.SOURCE_IP).is_null())]
    )


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
    scores: Any,
    detection: Any,
    cfg: Config,
    now: datetime,
    *,
    known_networks: pl.DataFrame | None = None,
    warnings: list[str] | None = None,
    with_collateral: bool = False,
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

    Raises:
        ConfigError: an allowlist entry is neither an address, a CIDR nor ``AS<n>``.
    """
    nets.parse_nets(cfg.plan.allowlist)
    events = _events(scores)
    sources = _frame(scores, "sources")
    practitioners = events.filter(pl.col(C.IS_PRACTITIONER).fill_null(False)).get_column(C.ACCOUNT).unique()
    accounts = _frame(scores, "accounts").with_columns(
        pl.col(C.ACCOUNT).str.to_lowercase(),
        (
            pl.col(C.IS_PRACTITIONER).fill_null(False)
            | pl.col(C.ACCOUNT).str.to_lowercase().is_in(practitioners.implode())
        ).alias(C.IS_PRACTITIONER),
    )
    findings = _finding_index(detection)
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
    events = events.with_columns(
        is_legit(attacker_ips, compromised, cfg.scoring.account_compromised, userless).alias("_legit")
    )
    attack = events.filter(pl.col(C.SOURCE_IP).is_in(attacker_ips) & ~pl.col("_legit"))
    legit = _legit(events)
    per_source = (
        _attack_stats(attack, C.SOURCE_IP)
        .select(C.SOURCE_IP, scope.SERVICES)
        .join(
            events.group_by(C.SOURCE_IP).agg(
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
            events.select(C.SOURCE_IP, pl.col(C.PREFIX48).alias("_p48")).drop_nulls().unique(C.SOURCE_IP),
            on=C.SOURCE_IP,
            how="left",
        )
        .with_columns(
            _expand(pl.col(scope.SERVICES).fill_null(pl.lit([], pl.List(pl.String)))).alias(scope.SERVICES),
            pl.col("_p48").alias(C.PREFIX48),
        )
        .sort(C.SOURCE_IP)
    )
    shared_ips = sources.filter(pl.col("shared_address").fill_null(False)).get_column(C.SOURCE_IP).to_list()
    addresses = events.select(C.SOURCE_IP, C.ASN).unique()
    anonymous_asns = (
        events.filter(pl.any_horizontal(C.IS_HOSTING, C.IS_VPN, C.IS_TOR).fill_null(False))
        .get_column(C.ASN)
        .drop_nulls()
        .unique()
        .sort()
        .to_list()
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
        _probing(
            events.select(C.ACCOUNT, C.SOURCE_IP, C.ASN, C.OUTCOME).filter(
                ~pl.col(C.SOURCE_IP).is_in(shared_ips)
            )
        ),
        shared_ips,
        mainstream,
        events.filter((pl.col(C.OUTCOME) == Outcome.SUCCESS) & ~pl.col("_legit"))
        .get_column(C.ACCOUNT)
        .drop_nulls()
        .unique()
        .to_list(),
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

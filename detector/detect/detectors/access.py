"""Detectors of a successful login that should not have happened, and what followed it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from detector.detect.detectors.common import detector, ramp, spans
from detector.detect.findings import evidence
from detector.features import BUCKET
from detector.features import expressions as x
from detector.features.baseline import PRIOR_N, prior_col
from detector.schema import C


@dataclass(frozen=True)
class SuspiciousSuccessParams:
    attacker_min_accounts: int = 5
    """The source failed against at least this many accounts in the window (or belongs to a campaign)."""
    attacker_max_success_share: float = 0.5
    """...and most of its attempts failed (a shared address succeeds mostly)."""
    min_prior_failures: int = 5
    """Failures from the same source since the account's previous success there (a guessed password)."""
    min_baseline_score: float = 12.0
    """A new ASN alone fires when the baseline score reaches this."""
    new_country: bool = False
    """Also fire on a new ASN in a new country alone (off: travellers; the model sees is_new_country)."""
    stale_min_gap_seconds: float = 60.0
    """Failures before the success retried one password, or came at a slow steady rhythm (gap CV <= 0.5,
    median gap at least this): a stale-password device, not guessing."""
    session_min_bytes: int = 50_000_000
    """The login's session downloaded at least this many bytes..."""
    session_min_ratio: float = 20.0
    """...and this many times the account's norm (see mailbox_download)."""
    session_min_recipients: int = 100
    """The login's session sent to this many recipients within an hour (see send_burst)."""
    anonymous_min_history: int = 1
    """Hosting/Tor counts as never used only if the account had this many earlier successes (a mail fetcher
    in a cloud that is the account's only client is its normal network)."""
    follow_source: bool = True
    """Also flag the account's later successes from the same address (or the same hosting/VPN/Tor ASN)."""


@detector(
    SuspiciousSuccessParams,
    name="suspicious_success",
    technique="T1078",
    tactic="Initial Access",
    severity="high",
    kind="attack",
    description="A successful login from a source or campaign seen attacking, after a run of failures from the same source, from a network the account never used (hosting or Tor never seen for the account, a new VPN, a new ASN in a new country or far from the baseline), or whose session then downloaded the mailbox or sent a burst; later logins of the account from the same address (or hosting/VPN/Tor ASN) follow.",
    false_positives="Travellers and movers (new country or ISP); a user who finally remembers the password after many tries; a legitimate user on a commercial VPN exit that attackers also use; a new phone synchronising the whole mailbox.",
    triage="Open the evidence reasons; compare the login with the account's usual networks and clients; look at what followed (mailbox_download, send_burst); ask the user.",
    affected="Resetting credentials or locking affects the account's owner only; blocking the source affects others behind it.",
)
def suspicious_success(lf: pl.LazyFrame, p: SuspiciousSuccessParams) -> pl.LazyFrame:
    attacker = pl.col(C.CAMPAIGN).is_not_null() | (
        (pl.col("src_accounts") >= p.attacker_min_accounts)
        & (pl.col("src_success_share") <= p.attacker_max_success_share)
    )
    new_asn = pl.col("is_new_asn") == 1
    hosting_or_tor = pl.col(C.IS_HOSTING).fill_null(False) | pl.col(C.IS_TOR).fill_null(False)
    never_asn = (pl.col(prior_col(C.ASN)) == 0) & (pl.col(PRIOR_N) >= p.anonymous_min_history)
    reasons = {
        "attacking_source": attacker,
        "after_failures": (pl.col("seg_failures") >= p.min_prior_failures)
        & (pl.col("pair_passwords") != 1)
        & ~(
            (pl.col("pair_gap_cv") <= 0.5) & (pl.col("pair_gap_median_s") >= p.stale_min_gap_seconds)
        ).fill_null(False),
        "anonymous_network": (never_asn & hosting_or_tor) | (new_asn & hosting_or_tor),
        "new_vpn": new_asn & pl.col(C.IS_VPN).fill_null(False),
        "bulk_download": (pl.col("session_bytes_out") >= p.session_min_bytes)
        & (pl.col("session_download_log_ratio") >= math.log(max(p.session_min_ratio, 1.0))),
        "send_burst": pl.col("session_recipients_hour") >= p.session_min_recipients,
        "new_country": new_asn & (pl.col("is_new_country") == 1) & pl.lit(p.new_country),
        "unusual_network": new_asn & (pl.col(C.BASELINE_SCORE) >= p.min_baseline_score),
    }
    weights = {
        "attacking_source": 0.9,
        "after_failures": 0.75,
        "anonymous_network": 0.6,
        "new_vpn": 0.4,
        "bulk_download": 0.7,
        "send_burst": 0.7,
        "new_country": 0.4,
        "unusual_network": 0.45,
    }
    flags = {k: v.fill_null(False) for k, v in reasons.items()}
    strength = pl.max_horizontal([pl.when(f).then(weights[k]).otherwise(0.0) for k, f in flags.items()])
    n = pl.sum_horizontal([f.cast(pl.Int32) for f in flags.values()])
    # later logins from the same address (or hosting/VPN/Tor ASN) follow the first suspicious one
    follow = (
        pl.when(x.is_anonymiser() & pl.col(C.ASN).is_not_null())
        .then(pl.lit("AS") + pl.col(C.ASN).cast(pl.String))
        .otherwise(pl.col(C.SOURCE_IP))
    )
    key = [C.ACCOUNT, "_follow"]
    ts = pl.col(C.TIMESTAMP)
    first_flag = ts.filter(pl.col("_s") > 0).min().over(key)
    followed = (ts > first_flag).fill_null(False) & pl.lit(p.follow_source)
    return (
        lf.filter(x.is_success() & pl.col(C.ACCOUNT).is_not_null())
        .with_columns(
            **{f"_r_{k}": f for k, f in flags.items()},
            _s=strength + 0.1 * (n - 1).clip(lower_bound=0),
            _follow=follow,
        )
        .with_columns(
            _followed=followed & (pl.col("_s") == 0),
            _s=pl.max_horizontal("_s", pl.col("_s").max().over(key) * followed.cast(pl.Float64)),
        )
        .filter(pl.col("_s") > 0)
        .group_by(C.ACCOUNT, "_follow")
        .agg(
            pl.col("_s").max().alias("score"),
            *[pl.col(f"_r_{k}").any().alias(k) for k in flags],
            pl.col("_followed").sum().alias("followed_logins"),
            pl.col(C.SOURCE_IP).n_unique().alias("sources"),
            pl.col(C.SOURCE_IP).first(),
            pl.col("src_accounts").max(),
            pl.col("seg_failures").max(),
            pl.col(C.BASELINE_SCORE).max().round(2),
            pl.col(C.ASN).first(),
            pl.col(C.COUNTRY).first(),
            pl.col(C.CAMPAIGN).drop_nulls().first(),
            *spans(),
        )
        .with_columns(
            pl.lit("account").alias("entity_type"),
            pl.col(C.ACCOUNT).alias("entity"),
            evidence(
                source_ip=pl.col(C.SOURCE_IP),
                sources=pl.col("sources"),
                asn=pl.col(C.ASN),
                country=pl.col(C.COUNTRY),
                source_failed_accounts=pl.col("src_accounts"),
                failures_before=pl.col("seg_failures"),
                baseline_score=pl.col(C.BASELINE_SCORE),
                followed_logins=pl.col("followed_logins"),
                **{k: pl.col(k) for k in flags},
            ).alias("evidence"),
        )
    )


@dataclass(frozen=True)
class TravelParams:
    max_speed_kmh: float = 900.0
    """Faster than an airliner between two successful logins."""
    min_km: float = 300.0
    """Ignore shorter jumps (GeoIP city error)."""
    shared_min_accounts: int = 3
    """Either address shared by this many accounts (CGNAT, hospital NAT) does not count."""
    ignore_hosting: bool = True
    """Hosting addresses locate a server (a mail fetcher, a proxy), not the person; suspicious_success judges them."""
    new_network_only: bool = True
    """Only a jump to an ASN the account had not used before counts (alternating home/office/fetcher does not)."""


@detector(
    TravelParams,
    name="atypical_travel",
    technique="T1078",
    tactic="Initial Access",
    severity="medium",
    kind="attack",
    description="Successive successful logins of one account further apart than anyone could travel in the time, to a network the account had not used before; VPN exits, hosting (servers, not people), shared gateways, the same ASN, prefix or IPv6 /48 are excluded.",
    false_positives="Split tunnels and corporate proxies not flagged as VPN; GeoIP errors for mobile carriers; a user on two devices, one behind a VPN not in the database.",
    triage="Look at both logins: which one is the account's usual network? The other is the suspect; check its ASN type and what followed it.",
    affected="The account's owner (credential reset).",
)
def atypical_travel(lf: pl.LazyFrame, p: TravelParams) -> pl.LazyFrame:
    prev = lambda c: pl.col(f"_prev_{c}")  # noqa: E731
    shared = (pl.col(C.IP_LEGIT_ACCOUNTS).fill_null(0) >= p.shared_min_accounts) | (
        prev(C.IP_LEGIT_ACCOUNTS).fill_null(0) >= p.shared_min_accounts
    )
    explained = (
        pl.col(C.IS_VPN).fill_null(False)
        | prev(C.IS_VPN).fill_null(False)
        | shared
        | (pl.col(C.ASN) == prev(C.ASN)).fill_null(False)
        | (pl.col(C.PREFIX) == prev(C.PREFIX)).fill_null(False)
        | (pl.col(C.PREFIX48) == prev(C.PREFIX48)).fill_null(False)
        | (
            pl.lit(p.ignore_hosting)
            & (pl.col(C.IS_HOSTING).fill_null(False) | prev("is_hosting").fill_null(False))
        )
        | (pl.lit(p.new_network_only) & (pl.col(prior_col(C.ASN)) > 0))
    )
    return lf.filter(
        x.is_success()
        & (pl.col("travel_speed_kmh") > p.max_speed_kmh)
        & (pl.col("travel_km") >= p.min_km)
        & ~explained
    ).select(
        pl.lit("account").alias("entity_type"),
        pl.col(C.ACCOUNT).alias("entity"),
        prev(C.TIMESTAMP).alias("start"),
        pl.col(C.TIMESTAMP).alias("end"),
        ramp(pl.col("travel_speed_kmh"), p.max_speed_kmh, 5).alias("score"),
        evidence(
            km=pl.col("travel_km").round(0),
            speed_kmh=pl.col("travel_speed_kmh").round(0),
            from_country=prev(C.COUNTRY),
            to_country=pl.col(C.COUNTRY),
            from_ip=prev(C.SOURCE_IP),
            to_ip=pl.col(C.SOURCE_IP),
        ).alias("evidence"),
        pl.concat_list(pl.col("_prev_event_id"), pl.col(C.EVENT_ID)).alias("event_ids"),
    )


@dataclass(frozen=True)
class DownloadParams:
    min_bytes: int = 50_000_000
    """A session must send at least this many bytes to the client."""
    min_ratio: float = 20.0
    """...and this many times the account's norm (history mean of log bytes, else window median)."""


@detector(
    DownloadParams,
    name="mailbox_download",
    technique="T1114.002",
    tactic="Collection",
    severity="high",
    kind="attack",
    description="A session downloading far more mail than the account's norm (bulk IMAP/POP3 download after a takeover).",
    false_positives="A new phone or a re-synchronised client downloading the whole mailbox; a user exporting an archive.",
    triage="Check the login that opened the session: usual network and client? If not, treat the mailbox content as disclosed.",
    affected="The account's owner; reset and session termination do not affect others.",
)
def mailbox_download(lf: pl.LazyFrame, p: DownloadParams) -> pl.LazyFrame:
    log_ratio = math.log(max(p.min_ratio, 1.0))
    return (
        lf.filter(
            pl.col(C.BYTES_OUT).is_not_null()
            & (pl.col(C.BYTES_OUT) >= p.min_bytes)
            & (pl.col("download_log_ratio") >= log_ratio)
            & pl.col(C.ACCOUNT).is_not_null()
        )
        .group_by(BUCKET, C.ACCOUNT)
        .agg(
            pl.col(C.BYTES_OUT).sum().alias("bytes_out"),
            pl.col("download_log_ratio").max().exp().round(1).alias("ratio"),
            pl.len().alias("sessions"),
            *spans(),
            pl.col("_session_login").drop_nulls().alias("_logins"),
        )
        .with_columns(pl.concat_list("event_ids", "_logins").list.unique().alias("event_ids"))
        .with_columns(
            pl.lit("account").alias("entity_type"),
            pl.col(C.ACCOUNT).alias("entity"),
            ramp(pl.col("ratio"), p.min_ratio, 10).alias("score"),
            evidence(
                bytes_out=pl.col("bytes_out"), ratio_to_norm=pl.col("ratio"), sessions=pl.col("sessions")
            ).alias("evidence"),
        )
    )


@dataclass(frozen=True)
class SendBurstParams:
    min_recipients: int = 100
    """Recipients submitted by the account within a clock hour..."""
    min_messages: int = 30
    """...or messages."""
    require_new_network: bool = True
    """Only after a successful login from a new ASN in the window (or from a new ASN itself)."""
    hard_min_recipients: int = 1000
    """This many recipients in an hour fire regardless of the network."""


@detector(
    SendBurstParams,
    name="send_burst",
    technique="T1534",
    tactic="Lateral Movement",
    severity="high",
    kind="attack",
    description="A burst of submitted messages or recipients after a login from a new network (phishing or spam from a taken-over account).",
    false_positives="Newsletters or mass mailings sent by the account's owner while travelling; a practice sending appointment reminders from a new office.",
    triage="Look at the login from the new network that preceded the burst and at the message sizes; stop the queue and reset the credentials if it was not the owner.",
    affected="The account's owner; queued messages to recipients.",
)
def send_burst(lf: pl.LazyFrame, p: SendBurstParams) -> pl.LazyFrame:
    burst = (pl.col("send_recipients_hour") >= p.min_recipients) | (
        pl.col("send_messages_hour") >= p.min_messages
    )
    new_net = (pl.col("acct_new_network_login_before") == 1) | (pl.col("is_new_asn") == 1)
    cond = burst & (new_net | pl.lit(not p.require_new_network)) | (
        pl.col("send_recipients_hour") >= p.hard_min_recipients
    )
    return (
        lf.filter((pl.col(C.ACTION) == "send") & pl.col(C.ACCOUNT).is_not_null() & cond)
        .group_by(BUCKET, C.ACCOUNT)
        .agg(
            pl.col(C.RECIPIENTS).fill_null(1).sum().alias("recipients"),
            pl.len().alias("messages"),
            pl.col("send_recipients_hour").max().alias("peak_hour_recipients"),
            pl.col("acct_new_network_login_before").max().alias("after_new_network_login"),
            *spans(),
        )
        .with_columns(
            pl.lit("account").alias("entity_type"),
            pl.col(C.ACCOUNT).alias("entity"),
            ramp(pl.col("peak_hour_recipients"), p.min_recipients, 10).alias("score"),
            evidence(
                recipients=pl.col("recipients"),
                messages=pl.col("messages"),
                peak_hour_recipients=pl.col("peak_hour_recipients"),
                after_new_network_login=pl.col("after_new_network_login"),
            ).alias("evidence"),
        )
    )

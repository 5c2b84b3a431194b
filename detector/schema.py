"""Column names, dtypes and meanings of every frame and report, defined once.

Stages refer to columns through the constants below (``C.ACCOUNT``), never by position or by a
string typed twice. Each table is a tuple of :class:`Column` so that ``docs/schema.md`` can be
generated from it and tests can check every report against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

SCHEMA_VERSION = "1"
UTC_US = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    doc: str


class C:
    """Column names shared by all stages."""

    # events (ingest)
    TIMESTAMP = "timestamp"
    HOST = "host"
    DAEMON = "daemon"
    SERVICE = "service"
    ACTION = "action"
    OUTCOME = "outcome"
    ACCOUNT = "account"
    SOURCE_IP = "source_ip"
    SOURCE_PORT = "source_port"
    LOCAL_IP = "local_ip"
    AUTH_METHOD = "auth_method"
    TLS = "tls"
    SESSION_ID = "session_id"
    ATTEMPTS = "attempts"
    BYTES_IN = "bytes_in"
    BYTES_OUT = "bytes_out"
    RECIPIENTS = "recipients"
    MESSAGE_SIZE = "message_size"
    REASON = "reason"
    PASSWORD_HASH = "password_hash"
    SOURCE_FILE = "source_file"
    LINE_NUMBER = "line_number"
    # enrichment
    COUNTRY = "country"
    CITY = "city"
    LATITUDE = "latitude"
    LONGITUDE = "longitude"
    ASN = "asn"
    AS_ORG = "as_org"
    IS_HOSTING = "is_hosting"
    IS_VPN = "is_vpn"
    IS_TOR = "is_tor"
    IS_PRIVATE = "is_private"
    PREFIX = "prefix"
    PREFIX48 = "prefix48"
    IS_PRACTITIONER = "is_practitioner"
    PROFESSION = "profession"
    IP_LEGIT_ACCOUNTS = "ip_legit_accounts"
    PREFIX_LEGIT_ACCOUNTS = "prefix_legit_accounts"
    # scoring
    EVENT_ID = "event_id"
    RISK_SCORE = "risk_score"
    DETECTORS = "detectors"
    TECHNIQUES = "techniques"
    BASELINE_SCORE = "baseline_score"
    CAMPAIGN = "campaign"
    # quarantine
    RAW = "raw"


class Action:
    LOGIN = "login"
    LOGOUT = "logout"
    SEND = "send"
    ALL = (LOGIN, LOGOUT, SEND)


class Outcome:
    SUCCESS = "success"
    FAILURE = "failure"  # wrong password
    UNKNOWN_USER = "unknown_user"
    DISABLED = "disabled"  # account disabled, expired, locked
    POLICY = "policy_refused"  # refused by policy before the password was checked
    TEMPFAIL = "tempfail"  # the server could not check (backend down)
    UNKNOWN = "unknown"  # an attempt whose outcome the line does not tell
    ALL = (SUCCESS, FAILURE, UNKNOWN_USER, DISABLED, POLICY, TEMPFAIL, UNKNOWN)
    FAILED = (FAILURE, UNKNOWN_USER, DISABLED, POLICY)


class Service:
    IMAP = "imap"
    POP3 = "pop3"
    SMTP = "smtp"
    SUBMISSION = "submission"
    MANAGESIEVE = "managesieve"
    WEBMAIL = "webmail"
    ALL = (IMAP, POP3, SMTP, SUBMISSION, MANAGESIEVE, WEBMAIL)


class Verdict:
    COMPROMISED = "compromised"
    TARGETED = "targeted"
    SUSPICIOUS = "suspicious"
    CLEAN = "clean"
    MALICIOUS = "malicious"
    BENIGN = "benign"


EVENT_COLUMNS: tuple[Column, ...] = (
    Column(C.TIMESTAMP, UTC_US, "When the server logged the line, UTC, microseconds."),
    Column(C.HOST, pl.String, "The server that logged it (syslog host name)."),
    Column(C.DAEMON, pl.String, "dovecot, postfix, exim, courier, cyrus, nginx, zimbra, ..."),
    Column(C.SERVICE, pl.String, "imap, pop3, smtp, submission, managesieve, webmail; null if unknown."),
    Column(
        C.ACTION,
        pl.String,
        "login: an authentication attempt with an outcome; logout: a session end with its traffic; send: a message submitted by an authenticated user.",
    ),
    Column(
        C.OUTCOME,
        pl.String,
        "success, failure (wrong password), unknown_user, disabled, policy_refused, tempfail, unknown; null for logout and send.",
    ),
    Column(
        C.ACCOUNT, pl.String, "The account, lower-cased as the server saw it; null where the line has none."
    ),
    Column(C.SOURCE_IP, pl.String, "Client address, canonical text (::ffff:a.b.c.d becomes a.b.c.d)."),
    Column(C.SOURCE_PORT, pl.Int32, "Client port where logged."),
    Column(C.LOCAL_IP, pl.String, "Server address the client connected to (Dovecot lip=)."),
    Column(C.AUTH_METHOD, pl.String, "SASL mechanism (PLAIN, LOGIN, CRAM-MD5, ...), upper case."),
    Column(C.TLS, pl.Boolean, "Whether the session was encrypted; null where the line does not say."),
    Column(
        C.SESSION_ID,
        pl.String,
        "Dovecot session id, or Postfix queue id / process id, linking lines of one session.",
    ),
    Column(
        C.ATTEMPTS,
        pl.Int32,
        "Authentication attempts this event stands for (Dovecot's 'N attempts'); 1 otherwise.",
    ),
    Column(C.BYTES_IN, pl.Int64, "Bytes received from the client in the session (logout)."),
    Column(C.BYTES_OUT, pl.Int64, "Bytes sent to the client in the session (logout; POP3 size=)."),
    Column(C.RECIPIENTS, pl.Int32, "Recipients of a submitted message (send; Postfix nrcpt=)."),
    Column(
        C.MESSAGE_SIZE, pl.Int64, "Size of a submitted message in bytes (send), or POP3 retr count bytes."
    ),
    Column(C.REASON, pl.String, "The server's own words for the outcome (e.g. 'Password mismatch')."),
    Column(
        C.PASSWORD_HASH,
        pl.String,
        "Prefix of the password hash Dovecot logs with auth_verbose_passwords; tells one password retyped from many tried.",
    ),
    Column(C.SOURCE_FILE, pl.String, "The log file the event came from."),
    Column(C.LINE_NUMBER, pl.Int64, "1-based line number of the line the event came from in source_file."),
)

ENRICH_COLUMNS: tuple[Column, ...] = (
    Column(C.COUNTRY, pl.String, "ISO 3166 country code of source_ip (GeoIP City/Country)."),
    Column(C.CITY, pl.String, "City name of source_ip."),
    Column(C.LATITUDE, pl.Float64, "Latitude of source_ip."),
    Column(C.LONGITUDE, pl.Float64, "Longitude of source_ip."),
    Column(C.ASN, pl.Int64, "Autonomous system number of source_ip."),
    Column(C.AS_ORG, pl.String, "Organisation of the autonomous system."),
    Column(C.IS_HOSTING, pl.Boolean, "Source is a hosting provider or data centre (Anonymous-IP)."),
    Column(C.IS_VPN, pl.Boolean, "Source is a known VPN exit (Anonymous-IP)."),
    Column(C.IS_TOR, pl.Boolean, "Source is a Tor exit node (Anonymous-IP)."),
    Column(C.IS_PRIVATE, pl.Boolean, "Source is private, loopback, link-local or reserved (not looked up)."),
    Column(C.PREFIX, pl.String, "Network prefix of source_ip: /24 for IPv4, /64 for IPv6."),
    Column(C.PREFIX48, pl.String, "The /48 of an IPv6 source; null for IPv4."),
    Column(C.IS_PRACTITIONER, pl.Boolean, "Account is in the practitioner directory."),
    Column(C.PROFESSION, pl.String, "Profession from the practitioner directory."),
    Column(
        C.IP_LEGIT_ACCOUNTS,
        pl.Int32,
        "Distinct accounts that logged in successfully from source_ip (window and baseline).",
    ),
    Column(
        C.PREFIX_LEGIT_ACCOUNTS, pl.Int32, "Distinct accounts that logged in successfully from the prefix."
    ),
)

SCORE_COLUMNS: tuple[Column, ...] = (
    Column(C.EVENT_ID, pl.UInt64, "Stable id of the event within the run (row order after sorting by time)."),
    Column(
        C.BASELINE_SCORE,
        pl.Float64,
        "Per-account behavioural likelihood-ratio score (higher = less like the account's own history).",
    ),
    Column(C.RISK_SCORE, pl.Float64, "Probability-like risk in [0, 1]."),
    Column(C.DETECTORS, pl.List(pl.String), "Names of the detectors that fired on the event."),
    Column(C.TECHNIQUES, pl.List(pl.String), "MITRE ATT&CK technique ids of those detectors."),
    Column(C.CAMPAIGN, pl.String, "Campaign id the event's source belongs to, if any."),
)

QUARANTINE_COLUMNS: tuple[Column, ...] = (
    Column(C.SOURCE_FILE, pl.String, "File the line came from."),
    Column(C.LINE_NUMBER, pl.Int64, "1-based line number (0 for a whole-file problem)."),
    Column(
        "reason",
        pl.String,
        "Why the line is not an event (unparsed, invalid_utf8, too_long, truncated_archive, ...).",
    ),
    Column(C.RAW, pl.String, "The line as read (invalid bytes replaced, cut at 4 KiB)."),
)


def dtypes(columns: tuple[Column, ...]) -> dict[str, pl.DataType]:
    return {c.name: c.dtype for c in columns}


EVENT_SCHEMA = pl.Schema(dtypes(EVENT_COLUMNS))
ENRICHED_SCHEMA = pl.Schema({**EVENT_SCHEMA, **dtypes(ENRICH_COLUMNS)})
QUARANTINE_SCHEMA = pl.Schema(dtypes(QUARANTINE_COLUMNS))


def empty(schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def conform(lf: pl.LazyFrame, schema: pl.Schema) -> pl.LazyFrame:
    """Select exactly ``schema``'s columns in order, casting, and adding missing ones as nulls."""
    have = lf.collect_schema()
    return lf.select(
        [
            (pl.col(name) if name in have else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )


def check(schema_have: pl.Schema, schema_want: pl.Schema, *, what: str, path: str | None = None) -> None:
    """Raise SchemaError naming the first missing or mistyped column."""
    from detector.errors import SchemaError, did_you_mean

    for name, dtype in schema_want.items():
        if name not in schema_have:
            raise SchemaError(
                f"{what} lacks column {name!r}", path=path, hint=did_you_mean(name, schema_have.names())
            )
        if schema_have[name] != dtype:
            raise SchemaError(f"{what} column {name!r} is {schema_have[name]}, expected {dtype}", path=path)


ACCOUNT_COLUMNS: tuple[Column, ...] = (
    Column(C.ACCOUNT, pl.String, "The account (pseudonymised with --pseudonymize)."),
    Column(C.IS_PRACTITIONER, pl.Boolean, "Account is in the practitioner directory."),
    Column(C.PROFESSION, pl.String, "Profession from the directory."),
    Column(C.RISK_SCORE, pl.Float64, "Risk that the account is compromised, in [0, 1]."),
    Column("verdict", pl.String, "compromised, targeted, suspicious or clean."),
    Column("reasons", pl.List(pl.String), "Why, in plain words."),
    Column(C.TECHNIQUES, pl.List(pl.String), "ATT&CK technique ids behind the verdict."),
    Column("attempts", pl.Int64, "Authentication attempts against the account."),
    Column("failures", pl.Int64, "Failed attempts."),
    Column("successes", pl.Int64, "Successful logins."),
    Column("distinct_sources", pl.Int64, "Distinct source addresses."),
    Column("countries", pl.List(pl.String), "Countries the attempts came from."),
    Column("first_seen", UTC_US, "First event."),
    Column("last_seen", UTC_US, "Last event."),
)

SOURCE_COLUMNS: tuple[Column, ...] = (
    Column(C.SOURCE_IP, pl.String, "Source address."),
    Column(C.PREFIX, pl.String, "Its /24 (IPv4) or /64 (IPv6)."),
    Column(C.ASN, pl.Int64, "Autonomous system number."),
    Column(C.AS_ORG, pl.String, "AS organisation."),
    Column(C.COUNTRY, pl.String, "Country code."),
    Column(C.RISK_SCORE, pl.Float64, "Risk that the source is malicious, in [0, 1]."),
    Column("verdict", pl.String, "malicious, suspicious or benign."),
    Column(
        "reasons",
        pl.List(pl.String),
        "Why a malicious or suspicious source is judged so, in plain words (empty for a benign one): guessing without logging in, the attack detectors that fired on its attempts, its campaign.",
    ),
    Column(C.CAMPAIGN, pl.String, "Campaign id the source was grouped into, if any."),
    Column(
        "accounts_targeted",
        pl.Int64,
        "Distinct accounts it named (failures logged without a name count in failures only).",
    ),
    Column("attempts", pl.Int64, "Authentication attempts."),
    Column("failures", pl.Int64, "Failed attempts."),
    Column("successes", pl.Int64, "Successful logins."),
    Column(
        "shared_address",
        pl.Boolean,
        "Many accounts log in legitimately from it (CGNAT, hospital NAT, VPN exit).",
    ),
    Column("legit_accounts", pl.Int64, "Accounts with legitimate successful logins from it."),
)

RECOMMENDATION_COLUMNS: tuple[Column, ...] = (
    Column("measure_id", pl.String, "Stable id of the measure."),
    Column(
        "action", pl.String, "block, lock_account, reset_credentials, restrict_account, reopen or monitor."
    ),
    Column("target_type", pl.String, "ip, cidr or asn (block); account (account actions and reopen)."),
    Column("target", pl.String, "The address, CIDR, AS<n> or account."),
    Column("services", pl.List(pl.String), "Services the measure applies to; empty or null = all."),
    Column(
        "allowed_networks",
        pl.List(pl.String),
        "restrict_account: CIDRs and AS<n> the account may still log in from; block: legitimate users' addresses inside the target that stay allowed.",
    ),
    Column("wave", pl.Int32, "reopen: reopening order (1 = first)."),
    Column("expires_at", UTC_US, "When a block or restriction lapses."),
    Column(C.RISK_SCORE, pl.Float64, "Risk of the target, in [0, 1]."),
    Column("confidence", pl.Float64, "Confidence that the measure is warranted, in [0, 1]."),
    Column("reason", pl.String, "Why, in plain words."),
    Column(C.TECHNIQUES, pl.List(pl.String), "ATT&CK technique ids."),
    Column("evidence", pl.String, "JSON: counts and the ids of the findings behind the measure."),
    Column("collateral_accounts", pl.Int64, "Accounts with recent legitimate logins the measure would hit."),
    Column("collateral_practitioners", pl.Int64, "Of which practitioners."),
)

ACCOUNT_SCHEMA = pl.Schema(dtypes(ACCOUNT_COLUMNS))
SOURCE_SCHEMA = pl.Schema(dtypes(SOURCE_COLUMNS))
RECOMMENDATION_SCHEMA = pl.Schema(dtypes(RECOMMENDATION_COLUMNS))

"""Exports of a plan to the enforcement points: nftables, Postfix, Dovecot, CrowdSec, CSV, JSON.

Only measures still in force at export time are written; durations and timeouts count from then.
Targets a format cannot express (an AS number in nftables) are listed as comments, never silently
dropped. Given an ASN database, AS numbers (blocked ones and those in a restriction's
``allowed_networks``) are first expanded into the prefixes the database assigns them, so that
firewalls, Postfix and Dovecot enforce them too.

Everything written is validated for its consumer first (the plan is built from attacker-written
logs): every network is re-parsed and must be in canonical form, every account name must be one
the consumer's file format can hold, and a value that cannot be written safely is left out and
named (escaped) in the export's :class:`Tally`. CSV cells that a spreadsheet would run as a
formula are neutralised. Every format is documented, with how the tests check it in the real
consumer, in ``docs/response-plan.md``.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from detector.errors import ConfigError
from detector.recommend import nets
from detector.schema import RECOMMENDATION_SCHEMA, Service

AS_NATIVE_FORMATS = frozenset({"crowdsec", "csv", "json"})
"""Formats that carry AS numbers as they are (CrowdSec has an AS scope); the others need prefixes."""

FORMATS = ("nftables", "postfix", "dovecot", "crowdsec", "csv", "json")

DIRECTORY_FORMATS = frozenset({"dovecot", "crowdsec"})
"""Formats written as a directory of files (``--out DIR``)."""

ACTS_ON: dict[str, frozenset[str] | None] = {
    "nftables": frozenset({"block"}),
    "postfix": frozenset({"block"}),
    "crowdsec": frozenset({"block"}),
    "dovecot": frozenset({"block", "lock_account", "restrict_account", "reset_credentials"}),
    "csv": None,
    "json": None,
}
"""The plan actions each format enforces (``None``: the whole plan, expired measures included)."""

ACCOUNT_ACTIONS = frozenset({"lock_account", "restrict_account", "reset_credentials"})

SERVICE_PORTS: dict[str, tuple[int, ...]] = {
    Service.IMAP: (143, 993),
    Service.POP3: (110, 995),
    Service.SMTP: (25,),
    Service.SUBMISSION: (465, 587),
    Service.MANAGESIEVE: (4190,),
    Service.WEBMAIL: (80, 443),
}
"""TCP ports an nftables rule matches for each service ("all" = every mail service listed here)."""

DOVECOT_SERVICES: dict[str, tuple[str, ...]] = {
    Service.IMAP: ("imap",),
    Service.POP3: ("pop3",),
    Service.SMTP: ("smtp",),
    Service.SUBMISSION: ("submission", "smtp"),
    Service.MANAGESIEVE: ("sieve",),
    Service.WEBMAIL: ("imap",),
}
"""Dovecot's ``%{service}`` for each plan service (Postfix SASL asks as ``smtp``; webmail logs in
over IMAP)."""

POSTFIX_SERVICES = {Service.SMTP, Service.SUBMISSION}
PRIVATE_NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7")
"""Restrictions apply to external addresses: a restricted account is never refused from these."""

DOVECOT_DIR = "/etc/dovecot/detector"
"""Where the Dovecot snippet expects its files unless told otherwise."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HASH = re.compile(r"[!-9;-~]+")  # printable ASCII without ':' and without spaces
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def shown(value: Any) -> str:
    """``value`` as it may be shown on a terminal or in a comment: escaped, one line, bounded."""
    text = repr(str(value))[1:-1] if value is not None else "None"
    return text if len(text) <= 80 else text[:79] + "…"


@dataclass
class Tally:
    """What an export wrote and what it could not.

    Attributes:
        written: entries written (networks, account lines, decisions, rows).
        expired: measures of the actions this format enforces that had expired by export time.
        commented: targets left as comments (not expressible in the format).
        skipped: values left out because they cannot be written safely, each named (escaped)
            with its measure and why.
        asns: the AS numbers left as comments (no ASN database to expand them).
        pseudonymized_accounts: account measures written from a pseudonymised plan.
    """

    written: int = 0
    expired: int = 0
    commented: int = 0
    skipped: list[str] = field(default_factory=list)
    asns: set[int] = field(default_factory=set)
    pseudonymized_accounts: int = 0

    def skip(self, value: Any, measure: Any, why: str) -> None:
        self.skipped.append(f"{shown(value)} ({shown(measure)}): {why}")

    def comment(self, asn: int | None = None) -> None:
        self.commented += 1
        if asn is not None:
            self.asns.add(asn)

    def counts(self) -> str:
        return (
            f"{self.written:,} written, {self.expired:,} expired, {len(self.skipped):,} skipped, "
            f"{self.commented:,} left as comments"
        )


@dataclass(frozen=True)
class Rendered:
    """An export: its files (name -> text; one unnamed file for single-file formats) and tally."""

    files: dict[str, str]
    tally: Tally

    @property
    def text(self) -> str:
        """The single file, or every file under a ``# ==== file: NAME ====`` line."""
        if list(self.files) == [""]:
            return self.files[""]
        return "".join(f"# ==== file: {name} ====\n{text}" for name, text in self.files.items())


# --- validation -------------------------------------------------------------------------------


def strict_net(text: Any) -> Any:
    """``text`` as an ``ipaddress`` network, or an ``int`` AS number, if it is one in canonical
    form (what the plan writes); ``None`` for anything else (spaces, zone ids, host bits, ...)."""
    if not isinstance(text, str) or not text:
        return None
    if text.startswith("AS") and text[2:].isdigit() and text == f"AS{int(text[2:])}":
        return int(text[2:]) if int(text[2:]) < 2**32 else None
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=True)
        else:
            addr = ipaddress.ip_address(text)
            net = ipaddress.ip_network(f"{addr}/{addr.max_prefixlen}")
            if str(addr) != text:
                return None
    except ValueError:
        return None
    if "%" in text or (("/" in text) and str(net) != text):
        return None
    return net


def dovecot_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a key of a Dovecot passwd-file, or ``None`` when it can."""
    if not isinstance(name, str) or not name:
        return "empty account name"
    if _CONTROL.search(name):
        return "control character in the account name"
    if ":" in name:
        return "':' in the account name (passwd-file field separator)"
    if name != name.strip():
        return "leading or trailing space in the account name"
    if name.startswith("#"):
        return "account name starting with '#' (a passwd-file comment)"
    return None


def neutralise_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula (OWASP CSV injection rule)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """CSV with every cell neutralised: the one way this tool writes CSV.

    Rows end in CRLF (RFC 4180): Python's writer quotes only the characters of its line
    terminator, so with a bare ``\n`` a cell holding a lone CR would be written unquoted and split
    the row in readers that take CR as a line break."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([neutralise_cell(h) for h in header])
    for row in rows:
        writer.writerow([neutralise_cell(v) for v in row])
    return buf.getvalue()


# --- plan helpers -----------------------------------------------------------------------------


def _active(plan: pl.DataFrame, now: datetime) -> pl.DataFrame:
    return plan.filter(pl.col("expires_at").is_null() | (pl.col("expires_at") > now))


def _acting(plan: pl.DataFrame, fmt: str, now: datetime, tally: Tally) -> pl.DataFrame:
    """The measures ``fmt`` enforces that are in force at ``now``; counts the expired ones."""
    actions = ACTS_ON[fmt]
    if actions is None:
        return plan
    mine = plan.filter(pl.col("action").is_in(sorted(actions)))
    active = _active(mine, now)
    tally.expired += mine.height - active.height
    return active


def plan_asns(plan: pl.DataFrame) -> list[int]:
    """AS numbers the plan names: blocked ones and those in ``allowed_networks``."""
    texts = plan.get_column("target").to_list() + [
        t for ts in plan.get_column("allowed_networks").to_list() for t in (ts or [])
    ]
    return sorted({n for t in texts if isinstance(n := strict_net(t), int)})


def expand_asns(plan: pl.DataFrame, networks: dict[int, list[Any]]) -> pl.DataFrame:
    """The plan with AS numbers replaced by their prefixes (``networks``: AS -> CIDRs, as from
    :func:`detector.recommend.nets.asn_networks`).

    A blocked AS becomes one ``cidr`` block per prefix, with the same measure id and the AS in its
    reason; an AS in ``allowed_networks`` is replaced by its prefixes. An AS the database does not
    know stays as it is (and is commented in the formats that cannot express it).
    """

    def prefixes(text: str | None) -> list[str] | None:
        """The prefixes of an ``AS<n>`` text the database knows; ``None`` for anything else."""
        n = strict_net(text)
        known = networks.get(n) if isinstance(n, int) else None
        return [str(x) for x in known] if known else None

    rows = []
    for r in plan.to_dicts():
        if r.get("allowed_networks"):
            out = [x for t in r["allowed_networks"] for x in (prefixes(t) or [t])]
            r["allowed_networks"] = list(dict.fromkeys(out))
        blocked = prefixes(r.get("target")) if r.get("action") == "block" else None
        if blocked is None:
            rows.append(r)
            continue
        reason = f"{r.get('reason') or ''} ({r['target']})"
        rows.extend({**r, "target_type": "cidr", "target": cidr, "reason": reason} for cidr in blocked)
    return pl.DataFrame(rows, schema=plan.schema) if rows else plan.clear()


def _seconds(expires: datetime | None, now: datetime) -> int | None:
    return None if expires is None else max(1, int((expires - now).total_seconds()))


def carve(network: Any, exceptions: Iterable[Any]) -> list[Any]:
    """``network`` minus the exception networks, as the fewest CIDRs (sorted)."""
    parts = [network]
    for hole in exceptions:
        out = []
        for part in parts:
            if part.version != hole.version or not part.overlaps(hole):
                out.append(part)
            elif part.subnet_of(hole):
                continue  # the hole covers the whole part
            else:
                out.extend(part.address_exclude(hole))
        parts = out
    return sorted(parts, key=lambda n: (n.version, int(n.network_address), n.prefixlen))


def complement(allowed: Iterable[Any]) -> list[Any]:
    """Every address outside ``allowed``, as the fewest CIDRs (both families, IPv4 first).

    Walks the gaps between the collapsed networks: linear in their number after sorting (a light
    restriction allows hundreds of ISP prefixes)."""
    out: list[Any] = []
    wanted = list(allowed)
    for version, cls in ((4, ipaddress.IPv4Address), (6, ipaddress.IPv6Address)):
        cursor, last = 0, (1 << (32 if version == 4 else 128)) - 1
        for net in ipaddress.collapse_addresses(n for n in wanted if n.version == version):
            start = int(net.network_address)
            if start > cursor:
                out.extend(ipaddress.summarize_address_range(cls(cursor), cls(start - 1)))
            cursor = int(net.broadcast_address) + 1
        if cursor <= last:
            out.extend(ipaddress.summarize_address_range(cls(cursor), cls(last)))
    return out


def _networks(texts: Iterable[Any], measure: Any, tally: Tally) -> tuple[list[Any], list[int]]:
    """Valid networks and AS numbers of ``texts``; anything else is skipped and counted."""
    cidrs, asns = [], []
    for t in texts:
        n = strict_net(t)
        if n is None:
            tally.skip(t, measure, "not an address, a CIDR or an AS number in canonical form")
        elif isinstance(n, int):
            asns.append(n)
        else:
            cidrs.append(n)
    return cidrs, asns


def _blocks(plan: pl.DataFrame, tally: Tally) -> list[dict[str, Any]]:
    """Blocks (already filtered to those in force), one dict per network to write (``net``: an
    ``ipaddress`` network or an ``int`` AS number). A block with exceptions (a hosting prefix minus
    its legitimate users' addresses) becomes the CIDRs that remain; an invalid target or a block of
    everyone (``/0``) is skipped."""
    out = []
    for r in plan.filter(pl.col("action") == "block").to_dicts():
        named = r["services"] or []
        r["services"] = sorted({s for s in named if s in SERVICE_PORTS})
        if named and not r["services"]:
            tally.skip(",".join(map(str, named)), r["measure_id"], "no known service")
            continue
        net = strict_net(r["target"])
        if net is None:
            tally.skip(
                r["target"], r["measure_id"], "not an address, a CIDR or an AS number in canonical form"
            )
            continue
        if not isinstance(net, int) and net.prefixlen == 0:
            tally.skip(r["target"], r["measure_id"], "a block of every address")
            continue
        if isinstance(net, int) or not r.get("allowed_networks"):
            out.append({**r, "net": net})
            continue
        holes, _ = _networks(r["allowed_networks"], r["measure_id"], tally)
        out.extend({**r, "net": part} for part in carve(net, holes))
    return out


def _net_text(net: Any) -> str:
    """An address for a single-address network, else the CIDR (IPv4 formatted from the integer:
    a restriction's complement is hundreds of networks per account)."""
    if net.version == 4:
        a = int(net.network_address)
        text = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
        return text if net.prefixlen == 32 else f"{text}/{net.prefixlen}"
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _header(title: str, now: datetime, comment: str = "#") -> list[str]:
    return [
        f"{comment} detector response plan: {title}",
        f"{comment} generated {now.isoformat(timespec='seconds')}",
    ]


def _drop_covered(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Drop networks inside another of the same list (an interval set refuses overlaps).

    Sorted by start and then by width, a network is covered exactly when it lies inside the last
    network kept (the kept ones are disjoint), so one pass suffices."""
    kept: list[tuple[Any, Any]] = []
    for net, row in sorted(items, key=lambda x: (x[0].version, int(x[0].network_address), x[0].prefixlen)):
        if kept and kept[-1][0].version == net.version and net.subnet_of(kept[-1][0]):
            continue
        kept.append((net, row))
    return kept


# --- formats ----------------------------------------------------------------------------------


def to_nftables(plan: pl.DataFrame, now: datetime, tally: Tally) -> dict[str, str]:
    """An ``inet detector`` table: one interval set per address family and service scope, with a
    timeout per element, and a drop rule per set on the services' ports. Load with ``nft -f``
    (it replaces the previous ``detector`` table)."""
    groups: dict[tuple[str, ...], dict[int, list[tuple[Any, dict[str, Any]]]]] = {}
    lines = _header("nftables sets (load with: nft -f FILE)", now)
    for r in _blocks(plan, tally):
        if isinstance(r["net"], int):
            tally.comment(r["net"])
            lines.append(
                f"# not expressible in nftables (AS number): AS{r['net']} ({shown(r['measure_id'])})"
            )
            continue
        groups.setdefault(tuple(r["services"]), {4: [], 6: []})[r["net"].version].append((r["net"], r))
    lines += ["table inet detector {", "}", "delete table inet detector", "table inet detector {"]
    rules = []
    for services in sorted(groups):
        scope = "_".join(services) or "all"
        ports = sorted({p for s in (services or SERVICE_PORTS) for p in SERVICE_PORTS.get(s, ())})
        for version, family, addr_type in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
            name = f"blocked_v{version}_{scope}"
            members = _drop_covered(groups[services][version])
            lines += [f"\tset {name} {{", f"\t\ttype {addr_type}", "\t\tflags interval, timeout"]
            if members:
                elements = []
                for net, r in members:
                    timeout = _seconds(r["expires_at"], now) or 86400
                    elements.append(f'{_net_text(net)} timeout {timeout}s comment "{_id(r["measure_id"])}"')
                tally.written += len(members)
                lines.append("\t\telements = { " + ", ".join(elements) + " }")
            lines.append("\t}")
            if ports:
                rules.append(f"\t\t{family} saddr @{name} tcp dport {{ {', '.join(map(str, ports))} }} drop")
    lines += [
        "\tchain input {",
        "\t\ttype filter hook input priority filter - 10; policy accept;",
        *rules,
        "\t}",
        "}",
    ]
    return {"": "\n".join(lines) + "\n"}


def _id(measure: Any) -> str:
    """A measure id as it may appear inside a quoted comment of any format."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(measure))[:64]


def to_postfix(plan: pl.DataFrame, now: datetime, tally: Tally) -> dict[str, str]:
    """A ``check_client_access`` CIDR table (``cidr:/etc/postfix/detector_access``): blocks that
    cover SMTP or submission, ``<network> REJECT <text>``."""
    lines = _header("Postfix check_client_access cidr table", now)
    lines.append("# smtpd_client_restrictions = check_client_access cidr:/etc/postfix/detector_access, ...")
    body = []
    for r in _blocks(plan, tally):
        if r["services"] and not POSTFIX_SERVICES & set(r["services"]):
            continue
        if isinstance(r["net"], int):
            tally.comment(r["net"])
            lines.append(
                f"# not expressible in a cidr table (AS number): AS{r['net']} ({_id(r['measure_id'])})"
            )
            continue
        until = (
            r["expires_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
            if r["expires_at"]
            else "further notice"
        )
        body.append(
            f"{_net_text(r['net'])} REJECT 5.7.1 access refused after credential attacks "
            f"({_id(r['measure_id'])}, until {until})"
        )
    tally.written += len(body)
    return {"": "\n".join(lines + body) + "\n"}


def _dovecot_services(services: list[str] | None) -> list[str]:
    chosen = services or list(DOVECOT_SERVICES)
    return sorted({d for s in chosen for d in DOVECOT_SERVICES.get(s, ())})


def _passdb(path: str, key: str, what: str) -> list[str]:
    return [
        f"# {what}",
        "passdb {",
        "  driver = passwd-file",
        f"  args = username_format={key} {path}",
        "  result_success = return-fail",
        "  result_failure = continue",
        "  result_internalfail = continue",
        "}",
    ]


def dovecot_snippet(directory: str, now: datetime) -> str:
    """The Dovecot configuration that enforces the files of the ``dovecot`` export in ``directory``.

    Each passdb *refuses* the login when its entry matches and passes it on otherwise: an entry
    matches only for its key (the service, the service and account, or the account) and, through
    ``allow_nets``, only from the networks it lists; ``result_success = return-fail`` turns the
    match into a refusal, an unknown key or another network continues to the next passdb, and a
    missing or unreadable file fails open (``result_internalfail = continue``).
    """
    d = directory.rstrip("/")
    lines = [
        *_header("Dovecot passdbs (2.3)", now),
        "# Include this file BEFORE your own passdb (e.g. at the top of conf.d/10-auth.conf):",
        f"#   !include {d}/detector.conf",
        "# Each passdb refuses a login when its entry matches and passes it on otherwise.",
        "# `result_success = return-fail` is what turns a match into a refusal: never remove it.",
        "",
        *_passdb(f"{d}/block-nets", "%{service}", "blocked networks, one entry per Dovecot service"),
        "",
        *_passdb(
            f"{d}/accounts",
            "%{service}/%{user}",
            "locked accounts (refused from everywhere) and restricted accounts (refused outside their networks)",
        ),
        "",
        *_passdb(
            f"{d}/reset",
            "%{user}",
            "reset accounts: the password in force when the plan was made (the stolen one) is refused",
        ),
    ]
    return "\n".join(lines) + "\n"


def _nets_field(networks: Iterable[Any], local: bool = False) -> str:
    return ",".join((["local"] if local else []) + [_net_text(n) for n in networks])


def _entry(key: str, listed: str) -> str:
    """A passwd-file entry that matches any password from the networks ``listed`` (comma-separated);
    the snippet's ``result_success = return-fail`` makes the match a refusal."""
    return f"{key}:::::::nopassword nologin allow_nets={listed}"


def to_dovecot(
    plan: pl.DataFrame,
    now: datetime,
    tally: Tally,
    *,
    directory: str = DOVECOT_DIR,
    password_hashes: dict[str, str] | None = None,
) -> dict[str, str]:
    """Three passwd-files and the snippet that makes Dovecot enforce them (``detector.conf``).

    - ``block-nets``: per Dovecot service, the blocked networks (ranges stay ranges).
    - ``accounts``: per service and account, where its login is refused: everywhere for a lock,
      everywhere outside its allowed networks and the private ranges for a restriction.
    - ``reset``: per reset account, the password hash in force when the plan was made (from
      ``password_hashes``), so the stolen password is refused and the owner's new one is not.

    Account keys are written in lower case: Dovecot looks names up after its default
    ``auth_username_format = %Lu``.
    """
    blocks = _blocks(plan, tally)
    by_service: dict[str, list[tuple[Any, None]]] = {}
    block_lines = _header("Dovecot blocked networks (passwd-file keyed by %{service})", now)
    for r in blocks:
        if isinstance(r["net"], int):
            tally.comment(r["net"])
            block_lines.append(f"# not expressible here (AS number, use nftables/crowdsec): AS{r['net']}")
            continue
        for svc in _dovecot_services(r["services"]):
            by_service.setdefault(svc, []).append((r["net"], None))
    for svc in sorted(by_service):
        kept = [n for n, _ in _drop_covered(by_service[svc])]
        block_lines.append(_entry(svc, _nets_field(kept)))
    tally.written += len({r["net"] for r in blocks if not isinstance(r["net"], int)})

    account_lines = _header("Dovecot locked and restricted accounts (keyed by %{service}/%{user})", now)
    entries: dict[str, str] = {}
    private = [ipaddress.ip_network(p) for p in PRIVATE_NETS]
    refusals: dict[frozenset[Any], str] = {}
    rows = plan.filter(pl.col("action").is_in(["lock_account", "restrict_account"])).to_dicts()
    for r in sorted(rows, key=lambda r: (r["action"] != "lock_account", str(r["target"]))):
        problem = dovecot_name_problem(r["target"])
        if problem is not None:
            tally.skip(r["target"], r["measure_id"], problem)
            continue
        if r["action"] == "lock_account":
            refused, services = _nets_field(complement([]), local=True), None
        else:
            cidrs, asns = _networks(r["allowed_networks"] or [], r["measure_id"], tally)
            for a in asns:
                tally.comment(a)
            if asns:
                account_lines.append(
                    f"# {r['target']}: AS numbers not expanded (no ASN database), refused from them too: "
                    + ", ".join(f"AS{a}" for a in asns)
                )
            allowed = frozenset([*private, *cidrs])
            if allowed not in refusals:
                refusals[allowed] = _nets_field(complement(allowed))
            refused, services = refusals[allowed], r["services"]
        keys = [f"{svc}/{r['target'].lower()}" for svc in _dovecot_services(services)]
        new = [k for k in keys if k not in entries]  # a lock comes first and wins over a restriction
        entries.update({k: _entry(k, refused) for k in new})
        tally.written += bool(new)
    account_lines += [entries[k] for k in sorted(entries)]

    reset_lines = _header("Dovecot reset accounts: the stolen password refused (keyed by %{user})", now)
    hashes = password_hashes or {}
    for r in sorted(
        plan.filter(pl.col("action") == "reset_credentials").to_dicts(), key=lambda r: str(r["target"])
    ):
        problem = dovecot_name_problem(r["target"])
        if problem is not None:
            tally.skip(r["target"], r["measure_id"], problem)
            continue
        h = hashes.get(r["target"])
        if h is None:
            tally.comment()
            reset_lines.append(
                f"# not enforced (no password hash given with --password-hashes): {r['target']}"
            )
        elif not _HASH.fullmatch(h):
            tally.skip(r["target"], r["measure_id"], "password hash with ':', spaces or control characters")
        else:
            reset_lines.append(f"{r['target'].lower()}:{h}::::::")
            tally.written += 1
    return {
        "detector.conf": dovecot_snippet(directory, now),
        "block-nets": "\n".join(block_lines) + "\n",
        "accounts": "\n".join(account_lines) + "\n",
        "reset": "\n".join(reset_lines) + "\n",
    }


CROWDSEC_SCOPES = (("Ip", "ip.json"), ("Range", "range.json"), ("AS", "as.json"))


def to_crowdsec(plan: pl.DataFrame, now: datetime, tally: Tally) -> dict[str, str]:
    """One ``cscli decisions import`` JSON list per scope (Ip, Range, AS) and ``import.sh``.

    CrowdSec 1.4 (Debian 12) ignores a decision's ``scope`` field and applies ``--scope`` (default
    ``Ip``) to the whole file, so an AS or a range in a mixed file is refused or mislabelled;
    current CrowdSec reads the field. One file per scope imported with ``--scope`` works in both.
    The fields are those current CrowdSec documents (``duration, reason, scope, type, value``; 1.4
    also listed ``origin``, which every version replaces with ``cscli-import``).
    """
    out: dict[str, list[dict[str, str]]] = {scope: [] for scope, _ in CROWDSEC_SCOPES}
    for r in _blocks(plan, tally):
        net = r["net"]
        if isinstance(net, int):
            scope, value = "AS", str(net)
        else:
            scope, value = ("Ip" if net.prefixlen == net.max_prefixlen else "Range"), _net_text(net)
        out[scope].append(
            {
                "duration": f"{_seconds(r['expires_at'], now) or 86400}s",
                "reason": f"detector {_id(r['measure_id'])}",
                "scope": scope,
                "type": "ban",
                "value": value,
            }
        )
        tally.written += 1
    script = [
        "#!/bin/sh",
        "# detector response plan: CrowdSec decisions, one file per scope (CrowdSec 1.4 needs --scope)",
        f"# generated {now.isoformat(timespec='seconds')}",
        "set -e",
        'cd "$(dirname "$0")"',
        *(f"cscli decisions import -i {name} --scope {scope}" for scope, name in CROWDSEC_SCOPES),
    ]
    files = {name: json.dumps(out[scope], indent=1) + "\n" for scope, name in CROWDSEC_SCOPES}
    return {**files, "import.sh": "\n".join(script) + "\n"}


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def to_json(plan: pl.DataFrame, now: datetime, tally: Tally) -> dict[str, str]:
    """The whole plan (every measure, also expired ones) as a JSON list of objects."""
    tally.written += plan.height
    rows = [_jsonable(r) for r in plan.select(list(RECOMMENDATION_SCHEMA)).to_dicts()]
    return {"": json.dumps(rows, indent=1) + "\n"}


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    if isinstance(v, datetime):
        return v.isoformat()
    return "" if v is None else v


def to_csv(plan: pl.DataFrame, now: datetime, tally: Tally) -> dict[str, str]:
    """The whole plan as CSV; list columns joined with ``;``, times in ISO 8601, formulas
    neutralised (a cell starting with ``= + - @``, tab or CR gets a leading ``'``)."""
    names = list(RECOMMENDATION_SCHEMA)
    tally.written += plan.height
    return {"": csv_text(names, ([_cell(v) for v in r] for r in plan.select(names).iter_rows()))}


_WRITERS: dict[str, Callable[..., dict[str, str]]] = {
    "nftables": to_nftables,
    "postfix": to_postfix,
    "dovecot": to_dovecot,
    "crowdsec": to_crowdsec,
    "csv": to_csv,
    "json": to_json,
}


def render(
    plan: pl.DataFrame,
    fmt: str,
    *,
    now: datetime | None = None,
    asn_db: str | Path | None = None,
    dovecot_dir: str = DOVECOT_DIR,
    password_hashes: dict[str, str] | None = None,
) -> Rendered:
    """The plan in an enforcement point's format (:data:`FORMATS`), with its tally.

    Args:
        plan: the plan (``RECOMMENDATION_SCHEMA``).
        fmt: one of :data:`FORMATS`.
        now: export time (default: now); measures expired by then are left out and timeouts and
            durations count from it.
        asn_db: an ASN database (GeoLite2-ASN format): AS numbers are expanded into their prefixes
            for the formats that cannot name an AS (all but CrowdSec, CSV and JSON).
        dovecot_dir: where the Dovecot files will be installed (the snippet names them).
        password_hashes: account -> password hash in force when the plan was made, for the
            Dovecot ``reset`` file.

    Raises:
        ConfigError: unknown format.
        EnrichmentError: the ASN database cannot be read.
    """
    from detector.errors import did_you_mean

    if fmt not in _WRITERS:
        raise ConfigError(
            f"unknown export format {fmt!r}",
            hint=did_you_mean(fmt, FORMATS) or f"one of {', '.join(FORMATS)}",
        )
    at = _now(now)
    tally = Tally()
    acting = _acting(plan, fmt, at, tally)
    if asn_db is not None and fmt not in AS_NATIVE_FORMATS:
        acting = expand_asns(acting, nets.asn_networks(asn_db, plan_asns(acting)))
    if fmt == "dovecot":
        files = to_dovecot(acting, at, tally, directory=dovecot_dir, password_hashes=password_hashes)
    else:
        files = _WRITERS[fmt](acting, at, tally)
    return Rendered(files, tally)


def export(
    plan: pl.DataFrame, fmt: str, *, now: datetime | None = None, asn_db: str | Path | None = None
) -> str:
    """The plan in an enforcement point's format as one text (see :func:`render`)."""
    return render(plan, fmt, now=now, asn_db=asn_db).text


@dataclass(frozen=True)
class Exported:
    """An export's text, what it wrote and what the user should know about it."""

    text: str
    tally: Tally
    warnings: tuple[str, ...] = ()


def read_password_hashes(path: str | Path, accounts: Iterable[str]) -> dict[str, str]:
    """``account -> hash`` for ``accounts`` from a passwd-file (``user:hash[:...]`` lines).

    Raises:
        InputError: the file cannot be read.
    """
    from detector.errors import InputError

    wanted = set(accounts)
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                user, sep, rest = line.rstrip("\n").partition(":")
                if sep and user in wanted and not line.startswith("#"):
                    out[user] = rest.split(":", 1)[0]
    except OSError as e:
        raise InputError(f"cannot read the password hashes: {e.strerror}", path=path) from e
    return out


PRIVATE_FILES = frozenset({"accounts", "reset"})
"""Dovecot files holding account names or password hashes: created ``0640``, never world-readable."""


def _write_atomically(target: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to a temporary file (``0600`` while written) and rename it over ``target``.

    A file that exists keeps its mode, owner and group (an operator who gave the ``dovecot`` group
    read access keeps it: a file Dovecot cannot read fails open); a new one gets ``mode``."""
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    if target.exists():
        st = target.stat()
        os.chmod(tmp, st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
    else:
        os.chmod(tmp, mode)
    os.replace(tmp, target)


def export_plan_file(
    plan_path: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    now: datetime | None = None,
    geoip_dir: str | Path | None = None,
    password_hashes: str | Path | None = None,
    fail_on_empty: bool = False,
    overrides: str | Path | None = None,
) -> Exported:
    """Read a plan file, export it as ``fmt`` and write it to ``out`` (a file, or a directory for
    :data:`DIRECTORY_FORMATS`), each file atomically.

    Operators' overrides (``overrides``, default ``/etc/detector/overrides.toml`` if it exists) are
    applied first: an override made after the run holds from the next export on.

    AS numbers are expanded with the ASN database found as ``detector run`` finds it
    (``geoip_dir``, ``$DETECTOR_GEOIP_DIR``, the system directories); without one, a warning says
    how many stay as comments.

    Raises:
        InputError: the plan cannot be read, ``out`` cannot be written, or a directory format has
            no ``out``.
        SchemaError: the plan is not a plan.
        ConfigError: unknown format.
        EnrichmentError: the GeoIP directory or the ASN database cannot be read.
        RunFailed: ``fail_on_empty`` and nothing is in force (nothing is written).
    """
    from detector.enrich.geoip import find_databases
    from detector.errors import InputError, RunFailed
    from detector.parquet_meta import read_metadata
    from detector.recommend.overrides import apply_overrides, read_overrides
    from detector.recommend.replay import read_plan

    if fmt in DIRECTORY_FORMATS and out is None:
        raise InputError(f"the {fmt} export is a directory of files: pass --out DIR")
    at = _now(now)
    plan, _ = apply_overrides(read_plan(plan_path), read_overrides(overrides), at)
    acting = _acting(plan, fmt, at, Tally())
    asn_db = None
    if fmt not in AS_NATIVE_FORMATS and plan_asns(acting):
        found = find_databases(geoip_dir).asn
        asn_db = found.path if found is not None else None
    hashes = None
    if password_hashes is not None:
        resets = plan.filter(pl.col("action") == "reset_credentials").get_column("target").to_list()
        hashes = read_password_hashes(password_hashes, resets)
    directory = str(Path(out).resolve()) if out is not None and fmt == "dovecot" else DOVECOT_DIR
    done = render(plan, fmt, now=at, asn_db=asn_db, dovecot_dir=directory, password_hashes=hashes)
    tally = done.tally
    warnings = [f"skipped (cannot be written safely): {s}" for s in tally.skipped]
    if tally.asns:
        warnings.append(
            f"{len(tally.asns)} AS numbers cannot be expressed in {fmt} and are left as comments: "
            "pass --geoip-dir with an ASN database (GeoLite2-ASN) to expand them into prefixes"
        )
    pseudonymized = Path(plan_path).suffix == ".parquet" and _pseudonymized(plan_path, read_metadata)
    accounts = acting.filter(pl.col("action").is_in(sorted(ACCOUNT_ACTIONS))).height
    if pseudonymized and accounts:
        tally.pseudonymized_accounts = accounts
        warnings.append(
            f"the plan is pseudonymised: its {accounts} account measures name pseudonyms and match no real user"
        )
    if tally.written == 0 and tally.expired:
        mine = plan.filter(pl.col("action").is_in(sorted(ACTS_ON[fmt] or ())))
        last = mine.get_column("expires_at").max()
        until = f" (the last at {last.isoformat(timespec='seconds')})" if isinstance(last, datetime) else ""
        warnings.append(
            f"nothing in force at {at.isoformat(timespec='seconds')}: all {tally.expired} {fmt} measures "
            f"had expired{until}; pass --now to export as of the plan's night"
        )
    if fail_on_empty and tally.written == 0:
        raise RunFailed(f"nothing in force to export ({tally.counts()}); nothing written")
    if out is not None:
        target = Path(out)
        try:
            if fmt in DIRECTORY_FORMATS:
                target.mkdir(parents=True, exist_ok=True)
                for name, text in done.files.items():
                    mode = 0o755 if name == "import.sh" else 0o640 if name in PRIVATE_FILES else 0o644
                    _write_atomically(target / name, text, mode)
            else:
                _write_atomically(target, done.text)
        except OSError as e:
            raise InputError(f"cannot write the export: {e.strerror}", path=target) from e
    return Exported(done.text, tally, tuple(warnings))


def _pseudonymized(path: str | Path, read_metadata: Callable[[str | Path], dict[str, Any]]) -> bool:
    try:
        return str(read_metadata(path).get("pseudonymized", "")).lower() == "true"
    except (OSError, ValueError):  # advisory: the plan itself was read fine
        return False

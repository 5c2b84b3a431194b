"""Exports of a plan to the enforcement points: nftables, Postfix, Dovecot, CrowdSec, CSV, JSON.

Only measures still in force at export time are written; durations and timeouts count from then.
Targets a format cannot express (an AS number in nftables, an IPv6 key in a passwd-file) are listed
as comments, never silently dropped. Given an ASN database, AS numbers (blocked ones and those in a
restriction's ``allowed_networks``) are first expanded into the prefixes the database assigns them,
so that firewalls, Postfix and Dovecot enforce them too. Every format is documented with an example
in ``docs/response-plan.md``.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from detector.errors import ConfigError
from detector.recommend import nets
from detector.schema import RECOMMENDATION_SCHEMA, Service

AS_NATIVE_FORMATS = frozenset({"crowdsec", "csv", "json"})
"""Formats that carry AS numbers as they are (CrowdSec has an AS scope); the others need prefixes."""

FORMATS = (
    "nftables",
    "postfix",
    "dovecot",
    "dovecot-deny-ips",
    "dovecot-deny-users",
    "dovecot-allow-nets",
    "crowdsec",
    "csv",
    "json",
)

SERVICE_PORTS: dict[str, tuple[int, ...]] = {
    Service.IMAP: (143, 993),
    Service.POP3: (110, 995),
    Service.SMTP: (25,),
    Service.SUBMISSION: (465, 587),
    Service.MANAGESIEVE: (4190,),
    Service.WEBMAIL: (80, 443),
}
"""TCP ports an nftables rule matches for each service ("all" = every mail service listed here)."""

POSTFIX_SERVICES = {Service.SMTP, Service.SUBMISSION}
PRIVATE_NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1", "fc00::/7")
"""Restrictions apply to external addresses: Dovecot's ``allow_nets`` always lists these."""
MAX_EXPANDED = 256
"""A Dovecot deny list keyed by address expands IPv4 CIDRs up to this many addresses (/24)."""


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def plan_asns(plan: pl.DataFrame) -> list[int]:
    """AS numbers the plan names: blocked ones and those in ``allowed_networks``."""
    texts = plan.get_column("target").to_list() + [
        t for ts in plan.get_column("allowed_networks").to_list() for t in (ts or [])
    ]
    return sorted({n.asn for t in texts if (n := nets.parse_net(t or "")) is not None and n.asn is not None})


def expand_asns(plan: pl.DataFrame, networks: dict[int, list[Any]]) -> pl.DataFrame:
    """The plan with AS numbers replaced by their prefixes (``networks``: AS -> CIDRs, as from
    :func:`detector.recommend.nets.asn_networks`).

    A blocked AS becomes one ``cidr`` block per prefix, with the same measure id and the AS in its
    reason; an AS in ``allowed_networks`` is replaced by its prefixes. An AS the database does not
    know stays as it is (and is commented in the formats that cannot express it).
    """

    def prefixes(text: str | None) -> list[str] | None:
        """The prefixes of an ``AS<n>`` text the database knows; ``None`` for anything else."""
        n = nets.parse_net(text or "")
        known = networks.get(n.asn) if n is not None and n.asn is not None else None
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
        asn = nets.parse_net(r["target"])
        reason = f"{r.get('reason') or ''} ({asn.text if asn else r['target']})"
        rows.extend({**r, "target_type": "cidr", "target": cidr, "reason": reason} for cidr in blocked)
    return pl.DataFrame(rows, schema=plan.schema) if rows else plan.clear()


def _active(plan: pl.DataFrame, now: datetime) -> pl.DataFrame:
    return plan.filter(pl.col("expires_at").is_null() | (pl.col("expires_at") > now))


def _seconds(expires: datetime | None, now: datetime) -> int | None:
    return None if expires is None else max(1, int((expires - now).total_seconds()))


def carve(network: Any, exceptions: list[str]) -> list[Any]:
    """``network`` minus the exception addresses/networks, as the fewest CIDRs (sorted)."""
    parts = [network]
    for text in exceptions:
        exc = nets.parse_net(text)
        if exc is None or exc.kind == nets.ASN:
            continue
        hole = ipaddress.ip_network(nets.cidr_text(exc))
        out = []
        for part in parts:
            if part.version != hole.version or not part.overlaps(hole):
                out.append(part)
            elif not hole.subnet_of(part):
                continue  # the hole covers the whole part
            else:
                out.extend(part.address_exclude(hole))
        parts = out
    return sorted(parts, key=lambda n: (int(n.network_address), n.prefixlen))


def _net_of(network: Any) -> nets.Net:
    if network.prefixlen == network.max_prefixlen:
        return nets.Net(nets.IP, str(network.network_address), network.version, network.prefixlen)
    return nets.Net(nets.CIDR, str(network), network.version, network.prefixlen)


def _blocks(plan: pl.DataFrame, now: datetime) -> list[dict[str, Any]]:
    """Active blocks, one dict per enforceable network; a block with exceptions (a hosting prefix
    minus its legitimate users' addresses) becomes the CIDRs that remain."""
    out = []
    for r in _active(plan.filter(pl.col("action") == "block"), now).to_dicts():
        r["net"] = nets.parse_net(r["target"] or "")
        r["services"] = sorted(r["services"] or [])
        if r["net"] is None:
            continue
        if r["net"].kind == nets.ASN or not r.get("allowed_networks"):
            out.append(r)
            continue
        for part in carve(ipaddress.ip_network(nets.cidr_text(r["net"])), r["allowed_networks"]):
            out.append({**r, "net": _net_of(part)})
    return out


def _short(text: str | None, n: int = 120) -> str:
    t = (text or "").replace("\n", " ").replace('"', "'")
    return t if len(t) <= n else t[: n - 1] + "…"


def _header(title: str, now: datetime, comment: str = "#") -> list[str]:
    return [
        f"{comment} detector response plan: {title}",
        f"{comment} generated {now.isoformat(timespec='seconds')}",
    ]


def _drop_covered(items: list[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
    """Drop networks inside another of the same list (an interval set refuses overlaps)."""
    items = sorted(items, key=lambda x: (x[0].prefixlen, int(x[0].network_address)))
    kept: list[tuple[Any, dict[str, Any]]] = []
    for net, row in items:
        if not any(net.subnet_of(k) for k, _ in kept if k.version == net.version):
            kept.append((net, row))
    return sorted(kept, key=lambda x: (int(x[0].network_address), x[0].prefixlen))


def to_nftables(plan: pl.DataFrame, now: datetime | None = None) -> str:
    """An ``inet detector`` table: one interval set per address family and service scope, with a
    timeout per element, and a drop rule per set on the services' ports. Load with ``nft -f``
    (it replaces the previous ``detector`` table)."""
    now = _now(now)
    groups: dict[tuple[str, ...], dict[int, list[tuple[Any, dict[str, Any]]]]] = {}
    skipped = []
    for r in _blocks(plan, now):
        if r["net"].kind == nets.ASN:
            skipped.append(r)
            continue
        net = ipaddress.ip_network(nets.cidr_text(r["net"]))
        groups.setdefault(tuple(r["services"]), {4: [], 6: []})[net.version].append((net, r))
    lines = _header("nftables sets (load with: nft -f FILE)", now)
    lines += [
        f"# not expressible in nftables (AS number): {r['target']} ({r['measure_id']})" for r in skipped
    ]
    lines += ["table inet detector {", "}", "delete table inet detector", "table inet detector {"]
    rules = []
    for services in sorted(groups):
        scope = "_".join(services) if services else "all"
        ports = sorted({p for s in (services or SERVICE_PORTS) for p in SERVICE_PORTS.get(s, ())})
        for version, family, addr_type in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
            name = f"blocked_v{version}_{scope}"
            members = _drop_covered(groups[services][version])
            lines += [f"\tset {name} {{", f"\t\ttype {addr_type}", "\t\tflags interval, timeout"]
            if members:
                elements = []
                for net, r in members:
                    text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
                    elements.append(
                        f'{text} timeout {_seconds(r["expires_at"], now) or 86400}s comment "{r["measure_id"]}"'
                    )
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
    return "\n".join(lines) + "\n"


def to_postfix(plan: pl.DataFrame, now: datetime | None = None) -> str:
    """A ``check_client_access`` CIDR table (``cidr:/etc/postfix/detector_access``): blocks that
    cover SMTP or submission, ``<network> REJECT <text>``."""
    now = _now(now)
    lines = _header("Postfix check_client_access cidr table", now)
    lines.append("# smtpd_client_restrictions = check_client_access cidr:/etc/postfix/detector_access, ...")
    body = []
    for r in _blocks(plan, now):
        if r["services"] and not POSTFIX_SERVICES & set(r["services"]):
            continue
        if r["net"].kind == nets.ASN:
            lines.append(f"# not expressible in a cidr table (AS number): {r['target']} ({r['measure_id']})")
            continue
        until = (
            r["expires_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
            if r["expires_at"]
            else "further notice"
        )
        body.append(
            f"{r['net'].text} REJECT 5.7.1 access refused after credential attacks ({r['measure_id']}, until {until})"
        )
    return "\n".join(lines + body) + "\n"


def to_dovecot_deny_ips(plan: pl.DataFrame, now: datetime | None = None) -> str:
    """A passwd-file of blocked IPv4 addresses, for a deny passdb keyed by the client address.

    IPv4 CIDRs up to /24 are expanded to their addresses; wider ones, IPv6 (a passwd-file key
    cannot hold ``:``) and AS numbers are listed as comments for the firewall exports.
    """
    now = _now(now)
    lines = _header("Dovecot deny passdb keyed by client address", now)
    lines += [
        "# passdb {",
        "#   driver = passwd-file",
        "#   args = username_format=%{rip} /etc/dovecot/detector-deny-ips",
        "#   deny = yes",
        "# }",
    ]
    body: list[str] = []
    for r in _blocks(plan, now):
        net = r["net"]
        if net.kind == nets.ASN or net.version == 6:
            lines.append(f"# not expressible here (use nftables/crowdsec): {r['target']} ({r['measure_id']})")
            continue
        network = ipaddress.ip_network(nets.cidr_text(net))
        if network.num_addresses > MAX_EXPANDED:
            lines.append(f"# too wide to expand (use nftables/crowdsec): {r['target']} ({r['measure_id']})")
            continue
        hosts = [network.network_address] if network.num_addresses == 1 else list(network)
        body += [str(h) for h in hosts]
    return "\n".join(lines + sorted(set(body), key=lambda a: int(ipaddress.ip_address(a)))) + "\n"


def to_dovecot_deny_users(plan: pl.DataFrame, now: datetime | None = None) -> str:
    """A passwd-file of locked accounts, for a deny passdb keyed by user name."""
    now = _now(now)
    lines = _header("Dovecot deny passdb of locked accounts", now)
    lines += [
        "# passdb {",
        "#   driver = passwd-file",
        "#   args = /etc/dovecot/detector-deny-users",
        "#   deny = yes",
        "# }",
    ]
    locked = _active(plan.filter(pl.col("action") == "lock_account"), now).get_column("target").to_list()
    return "\n".join(lines + sorted(set(locked))) + "\n"


def to_dovecot_allow_nets(plan: pl.DataFrame, now: datetime | None = None) -> str:
    """A passwd-file with the ``allow_nets`` extra field of each restricted account.

    ``local`` (internal lookups such as LMTP delivery) and private addresses are always allowed;
    AS numbers cannot be expressed in ``allow_nets`` and are listed in a comment above the line.
    """
    now = _now(now)
    lines = _header("Dovecot allow_nets for restricted accounts", now)
    lines += [
        "# passdb {",
        "#   driver = passwd-file",
        "#   args = /etc/dovecot/detector-allow-nets",
        "#   skip = unauthenticated",
        "#   result_success = continue-ok",
        "# }",
    ]
    rows = _active(plan.filter(pl.col("action") == "restrict_account"), now).to_dicts()
    for r in sorted(rows, key=lambda r: r["target"]):
        parsed = [nets.parse_net(t) for t in r["allowed_networks"] or []]
        asns = [p.text for p in parsed if p is not None and p.kind == nets.ASN]
        cidrs = sorted({p.text for p in parsed if p is not None and p.kind != nets.ASN})
        if asns:
            lines.append(f"# {r['target']}: AS numbers not expressible in allow_nets: {', '.join(asns)}")
        lines.append(f"{r['target']}:::::::allow_nets={','.join(['local', *PRIVATE_NETS, *cidrs])}")
    return "\n".join(lines) + "\n"


def to_crowdsec(plan: pl.DataFrame, now: datetime | None = None) -> str:
    """A ``cscli decisions import -i FILE.json`` list: Ip, Range and AS scopes, ban, duration."""
    now = _now(now)
    out = []
    for r in _blocks(plan, now):
        net = r["net"]
        scope, value = {
            nets.IP: ("Ip", net.text),
            nets.CIDR: ("Range", net.text),
            nets.ASN: ("AS", str(net.asn)),
        }[net.kind]
        out.append(
            {
                "duration": f"{_seconds(r['expires_at'], now) or 86400}s",
                "origin": "detector",
                "reason": f"detector {r['measure_id']}: {_short(r['reason'])}",
                "scope": scope,
                "type": "ban",
                "value": value,
            }
        )
    return json.dumps(out, indent=2) + "\n"


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def to_json(plan: pl.DataFrame, now: datetime | None = None) -> str:
    """The whole plan (every measure, also expired ones) as a JSON list of objects."""
    return (
        json.dumps([_jsonable(r) for r in plan.select(list(RECOMMENDATION_SCHEMA)).to_dicts()], indent=1)
        + "\n"
    )


def to_csv(plan: pl.DataFrame, now: datetime | None = None) -> str:
    """The whole plan as CSV; list columns joined with ``;``, times in ISO 8601."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = list(RECOMMENDATION_SCHEMA)
    writer.writerow(names)
    for r in plan.select(names).iter_rows():
        writer.writerow(
            [
                ";".join(v)
                if isinstance(v, list)
                else v.isoformat()
                if isinstance(v, datetime)
                else ""
                if v is None
                else v
                for v in r
            ]
        )
    return buf.getvalue()


def to_dovecot(plan: pl.DataFrame, now: datetime | None = None) -> str:
    """The three Dovecot files one after the other, each under a ``# ==== file: NAME ====`` line."""
    parts = [
        ("detector-deny-ips", to_dovecot_deny_ips),
        ("detector-deny-users", to_dovecot_deny_users),
        ("detector-allow-nets", to_dovecot_allow_nets),
    ]
    return "".join(f"# ==== file: {name} ====\n{fn(plan, now)}" for name, fn in parts)


_WRITERS = {
    "nftables": to_nftables,
    "postfix": to_postfix,
    "dovecot": to_dovecot,
    "dovecot-deny-ips": to_dovecot_deny_ips,
    "dovecot-deny-users": to_dovecot_deny_users,
    "dovecot-allow-nets": to_dovecot_allow_nets,
    "crowdsec": to_crowdsec,
    "csv": to_csv,
    "json": to_json,
}


def export(
    plan: pl.DataFrame, fmt: str, *, now: datetime | None = None, asn_db: str | Path | None = None
) -> str:
    """The plan in an enforcement point's format (:data:`FORMATS`).

    Args:
        plan: the plan (``RECOMMENDATION_SCHEMA``).
        fmt: one of :data:`FORMATS`.
        now: export time (default: now); measures expired by then are left out and timeouts and
            durations count from it.
        asn_db: an ASN database (GeoLite2-ASN format): AS numbers are expanded into their prefixes
            for the formats that cannot name an AS (all but CrowdSec, CSV and JSON).

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
    if asn_db is not None and fmt not in AS_NATIVE_FORMATS:
        plan = expand_asns(plan, nets.asn_networks(asn_db, plan_asns(plan)))
    return _WRITERS[fmt](plan, now)


@dataclass(frozen=True)
class Exported:
    """An export's text and what the user should know about it."""

    text: str
    warnings: tuple[str, ...] = ()


def export_plan_file(
    plan_path: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    now: datetime | None = None,
    geoip_dir: str | Path | None = None,
    overrides: str | Path | None = None,
) -> Exported:
    """Read a plan file, export it as ``fmt`` and write it to ``out`` atomically (if given).

    Operators' overrides (``overrides``, default ``/etc/detector/overrides.toml`` if it exists) are
    applied first: an override made after the run holds from the next export on.

    AS numbers are expanded with the ASN database found as ``detector run`` finds it
    (``geoip_dir``, ``$DETECTOR_GEOIP_DIR``, the system directories); without one, a warning says
    how many stay as comments.

    Raises:
        InputError: the plan cannot be read, or ``out`` cannot be written.
        SchemaError: the plan is not a plan.
        ConfigError: unknown format.
        EnrichmentError: the GeoIP directory or the ASN database cannot be read.
    """
    from detector.enrich.geoip import find_databases
    from detector.errors import InputError
    from detector.recommend.overrides import apply_overrides, read_overrides
    from detector.recommend.replay import read_plan

    plan, _ = apply_overrides(read_plan(plan_path), read_overrides(overrides), now or datetime.now(UTC))
    warnings = []
    asn_db = None
    asns = plan_asns(plan) if fmt not in AS_NATIVE_FORMATS else []
    if asns:
        found = find_databases(geoip_dir).asn
        asn_db = found.path if found is not None else None
        if asn_db is None:
            warnings.append(
                f"{len(asns)} AS numbers cannot be expressed in {fmt} and are left as comments: "
                "pass --geoip-dir with an ASN database (GeoLite2-ASN) to expand them into prefixes"
            )
    text = export(plan, fmt, now=now, asn_db=asn_db)
    if out is not None:
        target = Path(out)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as e:
            raise InputError(f"cannot write the export: {e.strerror}", path=target) from e
    return Exported(text, tuple(warnings))

"""``detector explain ACCOUNT_OR_IP --run DIR``: the evidence behind one verdict, down to the log lines.

Reads the reports a run published (``accounts.parquet``, ``sources.parquet``, ``events.parquet``,
``findings.parquet``), picks the findings about the target (by entity, or through the events behind
them), and reads the riskiest events' lines back from the original log files (``.gz``, ``.bz2``,
``.xz`` and ``.zst`` are decompressed).
"""

from __future__ import annotations

import bz2
import gzip
import io
import ipaddress
import lzma
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import polars as pl

from detector.errors import InputError, did_you_mean
from detector.schema import C

REPORTS = ("accounts.parquet", "sources.parquet", "events.parquet", "findings.parquet")


@dataclass(frozen=True)
class LogLine:
    source_file: str
    line_number: int
    text: str | None
    """The line read back from the file; ``None`` where the file is gone or shorter."""
    risk_score: float | None = None
    why: str | None = None
    """Why this line is evidence (the takeover login, a finding's first event); ``None`` for the rest."""


@dataclass(frozen=True)
class Explanation:
    kind: str
    """``account`` or ``source``."""
    target: str
    verdict: dict[str, Any]
    findings: pl.DataFrame
    lines: tuple[LogLine, ...] = ()
    events_total: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _scan(run: Path, name: str) -> pl.LazyFrame:
    """A report of ``run``: one Parquet file, or a directory of parts (``events.parquet/`` or
    ``events/`` as Spark and other engines write a large table, hive-style ``key=value`` folders
    allowed)."""
    path = run / name
    if not path.exists() and (run / Path(name).stem).is_dir():
        path = run / Path(name).stem
    if not path.exists():
        raise InputError(
            f"run directory lacks {name}", path=run, hint="pass the --out directory of `detector run`"
        )
    return scan_table(path)


def scan_table(path: Path) -> pl.LazyFrame:
    """One Parquet file, or every ``*.parquet`` under a directory (hive partitions read as columns)."""
    if path.is_dir():
        if not any(path.rglob("*.parquet")):
            raise InputError("no Parquet part in the directory", path=path)
        return pl.scan_parquet(path / "**" / "*.parquet", hive_partitioning=True)
    return pl.scan_parquet(path)


OPENERS: dict[str, Any] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".lzma": lzma.open}


@contextmanager
def _open_text(path: Path) -> Iterator[IO[str]]:
    suffix = path.suffix.lower()
    if suffix == ".zst":
        import zstandard

        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as z:
            yield io.TextIOWrapper(z, encoding="utf-8", errors="replace")
        return
    opener = OPENERS.get(suffix, open)
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        yield f


def _resolve(name: str, run: Path) -> Path | None:
    p = Path(name)
    for cand in (p, run / p, run.parent / p):
        if cand.is_file():
            return cand
    return None


def read_lines(source_file: str, numbers: list[int], run: Path) -> dict[int, str]:
    """The given 1-based lines of a log file (read once, up to the last line wanted)."""
    path = _resolve(source_file, run)
    if path is None or not numbers:
        return {}
    wanted = set(numbers)
    last = max(wanted)
    out: dict[int, str] = {}
    try:
        with _open_text(path) as f:
            for i, line in enumerate(f, start=1):
                if i in wanted:
                    out[i] = line.rstrip("\r\n")
                if i >= last:
                    break
    except (OSError, EOFError, ValueError):
        return out
    return out


SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def _findings_for(
    findings: pl.LazyFrame, entities: list[tuple[str, str]], event_ids: pl.Series
) -> pl.DataFrame:
    by_entity = pl.lit(False)
    for kind, value in entities:
        by_entity = by_entity | ((pl.col("entity_type") == kind) & (pl.col("entity") == value))
    by_event = (
        pl.col("event_ids").list.eval(pl.element().is_in(event_ids.implode())).list.any().fill_null(False)
    )
    severity = pl.col("severity").replace_strict(SEVERITY_RANK, default=0, return_dtype=pl.Int8)
    return (
        findings.filter(by_entity | by_event)
        .sort(pl.col("kind") != "attack", severity, "score", "start", descending=[False, True, True, False])
        .collect()
    )


MAX_EVIDENCE = 10
"""Evidence lines shown ahead of the riskiest ones."""


def _success() -> pl.Expr:
    return (pl.col(C.ACTION) == "login") & (pl.col(C.OUTCOME) == "success")


def _failure() -> pl.Expr:
    return (pl.col(C.ACTION) == "login") & pl.col(C.OUTCOME).is_in(["failure", "unknown_user", "locked"])


def key_events(events: pl.DataFrame, findings: pl.DataFrame, kind: str) -> pl.DataFrame:
    """The events that made the verdict, with ``why``: the logins that prove it, then each finding's first.

    For an account: the first successful login of each source after failed attempts on it (a
    takeover), and the riskiest success; for a source: its first success on each account after
    failures, and its first failure. Each finding contributes its earliest event (strongest first).
    """
    group = C.SOURCE_IP if kind == "account" else C.ACCOUNT
    ordered = events.sort(C.TIMESTAMP, C.EVENT_ID)
    failed = pl.when(_failure()).then(pl.col(C.ATTEMPTS).fill_null(1).cast(pl.Int64)).otherwise(0)
    fails_before = failed.cum_sum().over(group) - failed
    firsts = (
        ordered.with_columns(fails_before.alias("_fails_before"))
        .filter(_success() & (pl.col("_fails_before") > 0))
        .unique(group, keep="first", maintain_order=True)
        .select(
            C.EVENT_ID,
            pl.format(
                "first successful login from {} after {} failed attempt(s)"
                if kind == "account"
                else "first successful login into {} after {} failed attempt(s)",
                pl.col(group),
                pl.col("_fails_before"),
            ).alias("why"),
        )
    )
    riskiest_success = (
        events.filter(_success())
        .sort(C.RISK_SCORE, C.TIMESTAMP, descending=[True, False], nulls_last=True)
        .head(1)
        .select(
            C.EVENT_ID,
            pl.format("riskiest successful login (risk {})", pl.col(C.RISK_SCORE).round(2)).alias("why"),
        )
    )
    first_failure = (
        ordered.filter(_failure())
        .head(1 if kind == "source" else 0)
        .select(C.EVENT_ID, pl.lit("first failed attempt").alias("why"))
    )
    id_type = events.schema[C.EVENT_ID]
    by_finding = pl.DataFrame(schema={C.EVENT_ID: id_type, "why": pl.String})
    attacks = findings.filter(pl.col("kind") == "attack") if "kind" in findings.columns else findings
    if attacks.height and "event_ids" in attacks.columns:
        known = events.select(C.EVENT_ID, C.TIMESTAMP)
        by_finding = (
            attacks.select(
                pl.col("event_ids").alias(C.EVENT_ID),
                pl.format(
                    "first event of finding {} ({})", pl.col("detector"), pl.col("technique").fill_null("-")
                ).alias("why"),
                pl.int_range(pl.len()).alias("_rank"),
            )
            .explode(C.EVENT_ID)
            .with_columns(pl.col(C.EVENT_ID).cast(id_type))
            .join(known, on=C.EVENT_ID)
            .sort("_rank", C.TIMESTAMP)
            .unique("_rank", keep="first", maintain_order=True)
            .select(C.EVENT_ID, "why")
        )
    parts = [firsts, riskiest_success, first_failure, by_finding]  # in this priority
    return (
        pl.concat([p.with_columns(pl.col(C.EVENT_ID).cast(id_type)) for p in parts])
        .unique(C.EVENT_ID, keep="first", maintain_order=True)
        .head(MAX_EVIDENCE)
    )


def explain(target: str, run_dir: str | Path, *, max_lines: int = 20) -> Explanation:
    """The verdict on ``target`` (account or address), the findings behind it and its log lines.

    The lines lead with the evidence (:func:`key_events`: the takeover login, the first success
    after failures, each finding's first event), then the riskiest of the rest, up to ``max_lines``
    in all (the evidence is always shown).

    Raises:
        InputError: a run directory without reports, or a target the run does not know.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError("run directory not found", path=run)
    kind = "source" if _is_ip(target) else "account"
    table = _scan(run, "sources.parquet" if kind == "source" else "accounts.parquet")
    key = C.SOURCE_IP if kind == "source" else C.ACCOUNT
    group = C.ACCOUNT if kind == "source" else C.SOURCE_IP
    value = str(ipaddress.ip_address(target)) if kind == "source" else target.lower()
    row = table.filter(pl.col(key) == value).collect()
    if row.height == 0:
        known = table.select(key).collect().get_column(key).to_list()
        raise InputError(f"{kind} {target!r} is not in this run", path=run, hint=did_you_mean(value, known))
    verdict = row.row(0, named=True)
    events = _scan(run, "events.parquet").filter(pl.col(key) == value)
    cols = [
        C.EVENT_ID,
        C.SOURCE_FILE,
        C.LINE_NUMBER,
        C.RISK_SCORE,
        C.TIMESTAMP,
        C.ACTION,
        C.OUTCOME,
        C.ATTEMPTS,
        group,
    ]
    ev = events.select(cols).sort([C.RISK_SCORE, C.TIMESTAMP], descending=[True, False]).collect()
    entities = [("account", value)] if kind == "account" else [("source_ip", value)]
    if kind == "source":
        entities += [("prefix", str(verdict.get(C.PREFIX))), ("asn", f"AS{verdict.get(C.ASN)}")]
        if verdict.get(C.CAMPAIGN):
            entities.append(("campaign", str(verdict[C.CAMPAIGN])))
    findings = _findings_for(_scan(run, "findings.parquet"), entities, ev.get_column(C.EVENT_ID))
    evidence = key_events(ev, findings, kind)
    lead = ev.join(evidence, on=C.EVENT_ID).sort(C.TIMESTAMP, C.EVENT_ID)
    rest = (
        ev.join(evidence, on=C.EVENT_ID, how="anti")
        .head(max(0, max_lines - lead.height))
        .sort(C.SOURCE_FILE, C.LINE_NUMBER)
        .with_columns(pl.lit(None, pl.String).alias("why"))
    )
    shown = pl.concat([lead, rest.select(lead.columns)])
    texts: dict[str, dict[int, str]] = {}
    warnings: list[str] = []
    for (source_file,), part in shown.group_by(C.SOURCE_FILE, maintain_order=True):
        texts[str(source_file)] = read_lines(str(source_file), part.get_column(C.LINE_NUMBER).to_list(), run)
        if not texts[str(source_file)]:
            warnings.append(f"{source_file}: log file not readable from here; showing file:line only")
    lines = [
        LogLine(str(f), int(n), texts[str(f)].get(int(n)), r, why)
        for f, n, r, why in shown.select(C.SOURCE_FILE, C.LINE_NUMBER, C.RISK_SCORE, "why").iter_rows()
    ]
    return Explanation(
        kind=kind,
        target=value,
        verdict=verdict,
        findings=findings,
        lines=tuple(lines),
        events_total=ev.height,
        warnings=tuple(warnings),
    )


def render(ex: Explanation, console: Any | None = None) -> None:
    """Print an explanation with rich (panels and tables)."""
    from rich.console import Console
    from rich.markup import escape as markup_escape
    from rich.panel import Panel
    from rich.table import Table

    from detector.terminal import safe

    def escape(text: str) -> str:
        return markup_escape(safe(text))

    console = console or Console()
    v = ex.verdict
    colour = {"compromised": "red", "malicious": "red", "targeted": "yellow", "suspicious": "yellow"}.get(
        str(v.get("verdict")), "green"
    )
    head = [f"[bold {colour}]{escape(str(v.get('verdict')))}[/]  risk {v.get(C.RISK_SCORE, 0):.3f}"]
    if ex.kind == "account":
        head.append(
            f"attempts {v['attempts']}, failures {v['failures']}, successes {v['successes']}, "
            f"sources {v['distinct_sources']}, countries {', '.join(v.get('countries') or []) or '-'}"
        )
        head.append(f"seen {v['first_seen']} .. {v['last_seen']}")
        if v.get(C.IS_PRACTITIONER):
            head.append(f"practitioner ({escape(str(v.get(C.PROFESSION) or 'unknown profession'))})")
        if v.get(C.TECHNIQUES):
            head.append("techniques: " + ", ".join(v[C.TECHNIQUES]))
        for r in v.get("reasons") or []:
            head.append(f"  • {escape(r)}")
    else:
        head.append(
            f"AS{v.get(C.ASN)} {escape(str(v.get(C.AS_ORG) or ''))} {v.get(C.COUNTRY) or ''}, prefix {v.get(C.PREFIX)}"
        )
        head.append(
            f"accounts targeted {v['accounts_targeted']}, attempts {v['attempts']}, failures {v['failures']}, "
            f"successes {v['successes']}"
        )
        if v.get(C.CAMPAIGN):
            head.append(f"campaign {v[C.CAMPAIGN]}")
        if v.get("shared_address"):
            head.append(
                f"[yellow]shared address: {v['legit_accounts']} accounts log in legitimately from it[/]"
            )
        for r in v.get("reasons") or []:
            head.append(f"  • {escape(r)}")
    console.print(Panel("\n".join(head), title=f"{ex.kind} {escape(ex.target)}"))

    if ex.findings.height:
        console.print(f"[bold]findings ({ex.findings.height})[/]")
        for f in ex.findings.head(30).iter_rows(named=True):
            score = f"{f['score']:.2f}" if f["score"] is not None else "-"
            console.print(
                f"  {escape(str(f['detector']))} {escape(str(f['technique'] or ''))}  {f['severity']}  "
                f"score {score}  {escape(str(f['entity_type']))} {escape(str(f['entity']))}  "
                f"{str(f['start'])[:19]} .. {str(f['end'])[:19]}",
                highlight=False,
            )
            evidence = readable_evidence(f["evidence"])
            if evidence:
                console.print(f"      {escape(evidence)}", style="dim", highlight=False)
    else:
        console.print("no detector finding names this target")

    lead = [ln for ln in ex.lines if ln.why]
    rest = [ln for ln in ex.lines if not ln.why]
    if lead:
        console.print(f"[bold]evidence ({len(lead)} lines)[/]")
        for ln in lead:
            console.print(
                f"  {escape(ln.why or '')}  [dim]{escape(ln.source_file)}:{ln.line_number}[/]",
                highlight=False,
            )
            console.print(
                f"      {escape(ln.text) if ln.text is not None else '(not readable)'}", highlight=False
            )
    t = Table(
        title=f"other log lines ({len(rest)} riskiest of {ex.events_total} events)", title_justify="left"
    )
    t.add_column("file:line", overflow="fold")
    t.add_column("risk")
    t.add_column("line", overflow="fold", ratio=3)
    for ln in rest:
        risk = f"{ln.risk_score:.2f}" if ln.risk_score is not None else ""
        t.add_row(
            escape(f"{ln.source_file}:{ln.line_number}"),
            risk,
            escape(ln.text) if ln.text is not None else "(not readable)",
        )
    console.print(t)
    for w in ex.warnings:
        console.print(f"[dim]{escape(w)}[/]")


def readable_evidence(text: str | None) -> str:
    """A finding's evidence JSON as ``key=value, ...`` (lists shortened), or the text as it is."""
    import json

    if not text:
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict):
        return text

    def value(v: Any) -> str:
        if isinstance(v, list):
            head = ", ".join(map(str, v[:5]))
            return f"[{head}{', ...' if len(v) > 5 else ''}]" + (f" ({len(v)})" if len(v) > 5 else "")
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    return ", ".join(f"{k}={value(v)}" for k, v in data.items())

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
    path = run / name
    if not path.exists():
        raise InputError(
            f"run directory lacks {name}", path=run, hint="pass the --out directory of `detector run`"
        )
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


def _findings_for(
    findings: pl.LazyFrame, entities: list[tuple[str, str]], event_ids: pl.Series
) -> pl.DataFrame:
    by_entity = pl.lit(False)
    for kind, value in entities:
        by_entity = by_entity | ((pl.col("entity_type") == kind) & (pl.col("entity") == value))
    by_event = (
        pl.col("event_ids").list.eval(pl.element().is_in(event_ids.implode())).list.any().fill_null(False)
    )
    return findings.filter(by_entity | by_event).sort("score", "start", descending=[True, False]).collect()


def explain(target: str, run_dir: str | Path, *, max_lines: int = 20) -> Explanation:
    """The verdict on ``target`` (account or address), the findings behind it and its riskiest log lines.

    Raises:
        InputError: a run directory without reports, or a target the run does not know.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError("run directory not found", path=run)
    kind = "source" if _is_ip(target) else "account"
    table = _scan(run, "sources.parquet" if kind == "source" else "accounts.parquet")
    key = C.SOURCE_IP if kind == "source" else C.ACCOUNT
    value = str(ipaddress.ip_address(target)) if kind == "source" else target.lower()
    row = table.filter(pl.col(key) == value).collect()
    if row.height == 0:
        known = table.select(key).collect().get_column(key).to_list()
        raise InputError(f"{kind} {target!r} is not in this run", path=run, hint=did_you_mean(value, known))
    verdict = row.row(0, named=True)
    events = _scan(run, "events.parquet").filter(pl.col(key) == value)
    cols = [C.EVENT_ID, C.SOURCE_FILE, C.LINE_NUMBER, C.RISK_SCORE, C.TIMESTAMP]
    ev = events.select(cols).sort([C.RISK_SCORE, C.TIMESTAMP], descending=[True, False]).collect()
    entities = [("account", value)] if kind == "account" else [("source_ip", value)]
    if kind == "source":
        entities += [("prefix", str(verdict.get(C.PREFIX))), ("asn", f"AS{verdict.get(C.ASN)}")]
        if verdict.get(C.CAMPAIGN):
            entities.append(("campaign", str(verdict[C.CAMPAIGN])))
    findings = _findings_for(_scan(run, "findings.parquet"), entities, ev.get_column(C.EVENT_ID))
    top = ev.head(max_lines).sort(C.SOURCE_FILE, C.LINE_NUMBER)
    lines: list[LogLine] = []
    warnings: list[str] = []
    for (source_file,), part in top.group_by(C.SOURCE_FILE, maintain_order=True):
        numbers = part.get_column(C.LINE_NUMBER).to_list()
        text = read_lines(str(source_file), numbers, run)
        if not text:
            warnings.append(f"{source_file}: log file not readable from here; showing file:line only")
        lines.extend(
            LogLine(str(source_file), int(n), text.get(int(n)), r)
            for n, r in zip(numbers, part.get_column(C.RISK_SCORE).to_list(), strict=True)
        )
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

    from detector.report.terminal import safe

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
        t = Table(title=f"findings ({ex.findings.height})", show_lines=False)
        for col in (
            "detector",
            "technique",
            "severity",
            "kind",
            "entity",
            "start",
            "end",
            "score",
            "evidence",
        ):
            t.add_column(col, overflow="fold")
        for f in ex.findings.head(30).iter_rows(named=True):
            t.add_row(
                f["detector"], f["technique"] or "", f["severity"], f["kind"],
                f"{f['entity_type']} {f['entity']}", str(f["start"]), str(f["end"]),
                f"{f['score']:.2f}" if f["score"] is not None else "", escape(f["evidence"] or ""),
            )  # fmt: skip
        console.print(t)
    else:
        console.print("no detector finding names this target")

    t = Table(title=f"log lines ({len(ex.lines)} riskiest of {ex.events_total} events)")
    t.add_column("file:line", overflow="fold")
    t.add_column("risk")
    t.add_column("line", overflow="fold")
    for ln in ex.lines:
        risk = f"{ln.risk_score:.2f}" if ln.risk_score is not None else ""
        t.add_row(
            escape(f"{ln.source_file}:{ln.line_number}"),
            risk,
            escape(ln.text) if ln.text is not None else "(not readable)",
        )
    console.print(t)
    for w in ex.warnings:
        console.print(f"[dim]{escape(w)}[/]")

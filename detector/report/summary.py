"""The summary of a night: a JSON document (``summary.json``) and its one-screen terminal rendering.

:func:`build_summary` reduces the run's tables to what an analyst reads in a minute; the HTML
report is rendered from the same document, so both always say the same thing.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from detector.report import contract
from detector.report.terminal import safe
from detector.schema import Action, C, Outcome

if TYPE_CHECKING:
    from detector.report import RunData

NO_TRAFFIC_ACTIONS = ("monitor", "reopen")
"""Measures that refuse no login: their collateral (what a block would have hit) is not counted."""

LIST_LIMIT = 10
"""Accounts, campaigns and measures listed in summary.json per section."""

BUCKETS: tuple[tuple[str, timedelta], ...] = (
    ("5m", timedelta(minutes=5)),
    ("15m", timedelta(minutes=15)),
    ("1h", timedelta(hours=1)),
    ("3h", timedelta(hours=3)),
    ("6h", timedelta(hours=6)),
    ("1d", timedelta(days=1)),
)


def bucket_for(start: datetime | None, end: datetime | None, *, target: int = 48) -> str:
    """A bucket width giving about ``target`` bars (at most ``2 * target``) over the window."""
    if start is None or end is None:
        return "1h"
    span = end - start
    for name, width in BUCKETS:
        if span / width <= 2 * target:
            return name
    return BUCKETS[-1][0]


def _iso(x: Any) -> Any:
    return x.isoformat() if isinstance(x, datetime) else x


def _rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    return [{k: _iso(v) for k, v in r.items()} for r in df.iter_rows(named=True)]


def _counts(df: pl.DataFrame, col: str) -> dict[str, int]:
    if df.is_empty():
        return {}
    g = df.group_by(col).len().sort("len", descending=True)
    return {str(r[col]): int(r["len"]) for r in g.iter_rows(named=True)}


def _login() -> pl.Expr:
    return pl.col(C.ACTION) == Action.LOGIN


def _tries() -> pl.Expr:
    return pl.col(C.ATTEMPTS).fill_null(1).cast(pl.Int64)


def night_numbers(events: pl.LazyFrame) -> dict[str, Any]:
    """Counts over the events: events, attempts, failures, successes, accounts, sources, window."""
    row = (
        events.select(
            pl.len().alias("events"),
            _tries().filter(_login()).sum().alias("attempts"),
            _tries().filter(_login() & pl.col(C.OUTCOME).is_in(Outcome.FAILED)).sum().alias("failures"),
            (_login() & (pl.col(C.OUTCOME) == Outcome.SUCCESS)).sum().alias("successes"),
            pl.col(C.ACCOUNT).drop_nulls().n_unique().alias("accounts"),
            pl.col(C.SOURCE_IP).drop_nulls().n_unique().alias("sources"),
            pl.col(C.TIMESTAMP).min().alias("start"),
            pl.col(C.TIMESTAMP).max().alias("end"),
        )
        .collect()
        .row(0, named=True)
    )
    return {k: (_iso(v) if isinstance(v, datetime) else int(v or 0)) for k, v in row.items()} | {
        "_start": row["start"],
        "_end": row["end"],
    }


def timeline(events: pl.LazyFrame, every: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Login attempts per time bucket by outcome, and events per bucket for the top campaigns."""
    t = pl.col(C.TIMESTAMP).dt.truncate(every).alias("t")
    by_outcome = (
        events.filter(_login())
        .group_by(t, pl.col(C.OUTCOME).fill_null(Outcome.UNKNOWN).alias("outcome"))
        .agg(_tries().sum().alias("n"))
        .sort("t", "outcome")
        .collect()
    )
    camp = events.filter(pl.col(C.CAMPAIGN).is_not_null() & _login())
    top = (
        camp.group_by(C.CAMPAIGN)
        .agg(_tries().sum().alias("n"))
        .sort("n", C.CAMPAIGN, descending=[True, False])
        .head(6)
        .collect()
        .get_column(C.CAMPAIGN)
    )
    by_campaign = (
        camp.filter(pl.col(C.CAMPAIGN).is_in(top.implode()))
        .group_by(t, C.CAMPAIGN)
        .agg(_tries().sum().alias("n"))
        .sort("t", C.CAMPAIGN)
        .collect()
    )
    return _rows(by_outcome), _rows(by_campaign)


def attack_origins(sources: pl.DataFrame) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Attempts from malicious and suspicious sources, by country and by ASN (top 10)."""
    bad = sources.filter(pl.col("verdict").is_in(["malicious", "suspicious"]))
    countries = (
        bad.group_by(pl.col(C.COUNTRY).fill_null("??"))
        .agg(pl.col("attempts").sum(), pl.len().alias("addresses"))
        .sort("attempts", C.COUNTRY, descending=[True, False])
        .head(LIST_LIMIT)
    )
    asns = (
        bad.group_by(C.ASN)
        .agg(pl.col(C.AS_ORG).drop_nulls().first(), pl.col("attempts").sum(), pl.len().alias("addresses"))
        .sort("attempts", C.ASN, descending=[True, False], nulls_last=True)
        .head(LIST_LIMIT)
    )
    return _rows(countries), _rows(asns)


def reopening_waves(plan: pl.DataFrame, accounts: pl.DataFrame) -> list[dict[str, Any]]:
    """Accounts per reopening wave, with practitioners and mean risk."""
    waves = plan.filter(pl.col("action") == "reopen")
    if waves.is_empty():
        return []
    prac = accounts.select(pl.col(C.ACCOUNT).alias("target"), C.IS_PRACTITIONER)
    g = (
        waves.join(prac, on="target", how="left")
        .group_by("wave")
        .agg(
            pl.len().alias("accounts"),
            pl.col(C.IS_PRACTITIONER).fill_null(False).sum().alias("practitioners"),
            pl.col(C.RISK_SCORE).mean().alias("mean_risk"),
        )
        .sort("wave")
    )
    return _rows(g)


def _account_list(accounts: pl.DataFrame, verdict: str) -> tuple[int, list[dict[str, Any]]]:
    """Accounts of one verdict, practitioners first.

    Compromised accounts are ranked by risk; targeted ones (low compromise risk by definition) by
    how hard they were hit.
    """
    risk, failures = pl.col(C.RISK_SCORE), pl.col("failures").fill_null(0)
    order = [risk, failures] if verdict == "compromised" else [failures, risk]
    sel = accounts.filter(pl.col("verdict") == verdict).sort(
        [pl.col(C.IS_PRACTITIONER).fill_null(False), *order, pl.col(C.ACCOUNT)],
        descending=[True, True, True, False],
        nulls_last=True,
    )
    cols = [C.ACCOUNT, C.IS_PRACTITIONER, C.PROFESSION, C.RISK_SCORE, "failures", "reasons", C.TECHNIQUES]
    return sel.height, _rows(sel.head(LIST_LIMIT).select(cols))


def replay_rows(result: Any) -> list[dict[str, Any]] | None:
    """The replay comparison as one dict per strategy, whatever container the replay returned."""
    if result is None:
        return None
    for attr in ("to_frame", "frame", "table"):
        x = getattr(result, attr, None)
        if x is not None:
            result = x() if callable(x) else x
            break
    if isinstance(result, pl.LazyFrame):
        result = result.collect()
    if isinstance(result, pl.DataFrame):
        return _rows(result)
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = dataclasses.asdict(result)
    if isinstance(result, dict):
        return [
            {"strategy": k, **v} if isinstance(v, dict) else {"strategy": k, "value": v}
            for k, v in result.items()
        ]
    if isinstance(result, list):
        return [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else dict(r) for r in result]
    raise TypeError(f"unexpected replay result {type(result).__name__}")


STRATEGY_NAMES = {
    "plan": "the plan",
    "shutdown": "blanket shutdown",
    "fail2ban": "fail2ban",
    "none": "no action",
}
REPLAY_VIEW: tuple[tuple[str, str, str, str], ...] = (
    ("attacks stopped", "attack_stopped_pct", "attack_stopped", "attack_attempts"),
    ("attackers in", "attacker_logins_pct", "attacker_logins_succeeding", "attacker_logins"),
    ("legit refused", "legit_refused_pct", "legit_refused", "legit_logins"),
    ("pract. refused", "practitioner_refused_pct", "practitioner_refused", "practitioner_logins"),
)
"""(heading, percentage, count, denominator) of the replay table's columns shown to people."""


def replay_view(rows: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """The replay comparison as display strings: ``97.0% (970/1000)`` per strategy and measure."""
    if not rows:
        return []
    if not all(pct in rows[0] for _, pct, _, _ in REPLAY_VIEW):
        return [{k: _fmt_num(v) for k, v in r.items()} for r in rows]
    out = []
    for r in rows:
        view = {"strategy": STRATEGY_NAMES.get(r.get("strategy"), str(r.get("strategy")))}
        for head, pct, num, den in REPLAY_VIEW:
            p = r.get(pct)
            view[head] = "n/a" if p is None else f"{p:.1f}% ({r.get(num):,}/{r.get(den):,})"
        out.append(view)
    return out


def build_summary(run: RunData) -> dict[str, Any]:
    """The summary document (``summary.json``) of a run."""
    t = run.tables
    accounts = t["accounts.parquet"]
    sources = t["sources.parquet"]
    plan = t["recommendations.parquet"]
    campaigns = t["campaigns.parquet"]
    night = night_numbers(run.events)
    every = bucket_for(night.pop("_start"), night.pop("_end"))
    by_outcome, by_campaign = timeline(run.events, every)
    countries, asns = attack_origins(sources)
    n_comp, compromised = _account_list(accounts, "compromised")
    n_targ, targeted = _account_list(accounts, "targeted")
    camp_sorted = campaigns.sort("accounts_targeted", "campaign", descending=[True, False], nulls_last=True)
    top_measures = plan.sort(C.RISK_SCORE, "measure_id", descending=[True, False], nulls_last=True).head(
        LIST_LIMIT
    )
    acting = plan.filter(~pl.col("action").is_in(NO_TRAFFIC_ACTIONS))
    m = run.meta
    return {
        "run": {
            "run_id": m.get(contract.Meta.RUN_ID),
            "tool_version": m.get(contract.Meta.TOOL_VERSION),
            "report_version": contract.REPORT_VERSION,
            "created_at": m.get(contract.Meta.CREATED_AT),
            "window_start": m.get(contract.Meta.WINDOW_START),
            "window_end": m.get(contract.Meta.WINDOW_END),
            "inputs": m.get(contract.Meta.INPUTS, []),
            "model_id": m.get(contract.Meta.MODEL_ID),
            "model_card_sha256": m.get(contract.Meta.MODEL_CARD_SHA256),
            "geoip": m.get(contract.Meta.GEOIP),
            "config_sha256": m.get(contract.Meta.CONFIG_SHA256),
            "pseudonymized": m.get(contract.Meta.PSEUDONYMIZED) == "true",
            "fail_on": run.fail_on,
            "attention": run.attention,
        },
        "night": {
            "lines": run.lines_read,
            **night,
            "quarantined": t["quarantine.parquet"].height,
            "noise": dict(sorted(run.noise.items())),
        },
        "campaigns": {"total": campaigns.height, "top": _rows(camp_sorted.head(LIST_LIMIT))},
        "accounts": {
            "verdicts": _counts(accounts, "verdict"),
            "practitioners_affected": accounts.filter(
                pl.col(C.IS_PRACTITIONER).fill_null(False)
                & pl.col("verdict").is_in(["compromised", "targeted"])
            ).height,
            "compromised_total": n_comp,
            "compromised": compromised,
            "targeted_total": n_targ,
            "targeted": targeted,
        },
        "sources": {
            "verdicts": _counts(sources, "verdict"),
            "shared": int(sources["shared_address"].sum() or 0),
        },
        "findings": {"total": t["findings.parquet"].height},
        "plan": {
            "measures": plan.height,
            "by_action": _counts(plan, "action"),
            "collateral_accounts": int(acting["collateral_accounts"].sum() or 0),
            "collateral_practitioners": int(acting["collateral_practitioners"].sum() or 0),
            "top": _rows(
                top_measures.select(
                    "measure_id",
                    "action",
                    "target_type",
                    "target",
                    C.RISK_SCORE,
                    "reason",
                    "collateral_accounts",
                )
            ),
        },
        "replay": {
            "labelled": run.replay_labelled,
            "notes": list(getattr(run.replay, "notes", ()) or ()),
            "strategies": (rows := replay_rows(run.replay)),
            "view": replay_view(rows),
        },
        "charts": {
            "bucket": every,
            "attempts": by_outcome,
            "campaigns": by_campaign,
            "countries": countries,
            "asns": asns,
            "waves": reopening_waves(plan, accounts),
        },
        "warnings": list(run.warnings),
    }


# ---------------------------------------------------------------- terminal rendering


def _fmt_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 10 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


def _short_time(s: str | None) -> str:
    return s[:16].replace("T", " ") if s else "-"


def _day_time(s: str | None) -> str:
    return s[5:16].replace("T", " ") if s else "-"


def _line(text: str, style: str = "") -> Text:
    return Text(safe(text), style=style, no_wrap=True, overflow="ellipsis")


def _acct_line(a: dict[str, Any], *, risk: bool = True) -> str:
    """One account: its risk (compromised accounts only: a targeted account's is low by definition)."""
    who = a[C.ACCOUNT]
    if a.get(C.IS_PRACTITIONER):
        who += f" [{a.get(C.PROFESSION) or 'practitioner'}]"
    reasons = "; ".join((a.get("reasons") or [])[:2])
    lead = f"{a[C.RISK_SCORE]:.2f}  " if risk and a.get(C.RISK_SCORE) is not None else ""
    return f"  {lead}{who}  {reasons}"


def render_summary(summary: dict[str, Any], *, max_accounts: int = 5) -> Group:
    """A one-screen rich rendering of ``summary`` (at most about 40 lines at 100 columns)."""
    r, n, acc, plan = summary["run"], summary["night"], summary["accounts"], summary["plan"]
    parts: list[Any] = []
    title = Text.assemble(
        ("detector ", "bold"),
        (f"run {r['run_id']}  ", "dim"),
        f"{_short_time(r['window_start'])} -> {_short_time(r['window_end'])} UTC",
    )
    parts.append(title)
    parts.append(
        _line(f"Night: {n['lines']:,} lines, {n['events']:,} events, {n['quarantined']:,} quarantined")
    )
    parts.append(
        _line(f"Logins: {n['attempts']:,} attempts, {n['failures']:,} failed, {n['successes']:,} succeeded")
    )
    verdicts = acc["verdicts"]
    src = summary["sources"]["verdicts"]
    parts.append(
        _line(
            f"Accounts: {n['accounts']:,} seen, {verdicts.get('compromised', 0):,} compromised, "
            f"{verdicts.get('targeted', 0):,} targeted, {verdicts.get('suspicious', 0):,} suspicious "
            f"({acc['practitioners_affected']:,} practitioners)"
        )
    )
    parts.append(
        _line(
            f"Sources: {n['sources']:,} seen, {src.get('malicious', 0):,} malicious, "
            f"{src.get('suspicious', 0):,} suspicious, {summary['sources']['shared']:,} shared"
        )
    )
    camps = summary["campaigns"]
    parts.append(_line(f"\nCampaigns: {camps['total']:,}", style="bold"))
    for c in camps["top"][:3]:
        parts.append(
            _line(
                f"  {c.get('campaign')}  {c.get('technique') or ''}  {_fmt_num(c.get('n_sources'))} sources, "
                f"{_fmt_num(c.get('accounts_targeted'))} accounts  "
                f"{_day_time(c.get('start'))} -> {_day_time(c.get('end'))}"
            )
        )
    parts.append(_line(f"\nCompromised accounts: {acc['compromised_total']:,}", style="bold red"))
    parts.extend(_line(_acct_line(a)) for a in acc["compromised"][:max_accounts])
    if acc["compromised_total"] > max_accounts:
        parts.append(
            _line(f"  ... and {acc['compromised_total'] - max_accounts} more (accounts.parquet)", style="dim")
        )
    parts.append(_line(f"Targeted accounts: {acc['targeted_total']:,}", style="bold yellow"))
    parts.extend(_line(_acct_line(a, risk=False)) for a in acc["targeted"][:3])
    if acc["targeted_total"] > 3:
        parts.append(_line(f"  ... and {acc['targeted_total'] - 3} more", style="dim"))
    actions = ", ".join(f"{k} {v:,}" for k, v in plan["by_action"].items()) or "none"
    parts.append(_line(f"\nPlan: {plan['measures']:,} measures", style="bold"))
    parts.append(_line(f"  {actions}"))
    parts.append(
        _line(
            f"  collateral: {plan['collateral_accounts']:,} accounts with legitimate logins hit "
            f"({plan['collateral_practitioners']:,} practitioners)"
        )
    )
    rows = summary["replay"]["strategies"]
    if rows:
        label = "labels" if summary["replay"]["labelled"] else "the tool's own verdicts (no labels)"
        table = Table(title=f"Replay on the analysed day, judged by {label}", title_justify="left", box=None)
        compact = all(pct in rows[0] for _, pct, _, _ in REPLAY_VIEW)
        heads = ["strategy", *(h for h, *_ in REPLAY_VIEW)] if compact else list(rows[0])
        for i, head in enumerate(heads):
            table.add_column(
                head,
                justify="left" if i == 0 else "right",
                no_wrap=True,
                overflow="ellipsis",
                min_width=16 * (i == 0),
            )
        for r in rows:
            if compact:
                cells = [STRATEGY_NAMES.get(r["strategy"], str(r["strategy"]))]
                for _, pct, _, _ in REPLAY_VIEW:
                    cells.append("n/a" if r[pct] is None else f"{r[pct]:.1f}%")
            else:
                cells = [_fmt_num(r.get(h)) for h in heads]
            table.add_row(*cells)
        parts.append(_line(""))
        parts.append(table)
    from detector.recommend.guard import GUARD_WARNING

    # the first warning, and every refusal of the plan's guards (what the plan would not block)
    said = [w for i, w in enumerate(summary["warnings"]) if i == 0 or w.startswith(GUARD_WARNING)]
    for w in said:
        parts.append(_line(f"warning: {w}", style="yellow"))
    if len(summary["warnings"]) > len(said):
        parts.append(
            _line(f"... {len(summary['warnings']) - len(said)} more warnings in summary.json", style="dim")
        )
    if r.get("attention"):
        parts.append(_line(f"NEEDS ATTENTION (--fail-on {r['fail_on']}): {r['attention']}", style="bold red"))
    return Group(*parts)


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(render_summary(summary), overflow="ellipsis", crop=True)

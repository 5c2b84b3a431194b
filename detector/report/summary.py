"""The summary of a night: a JSON document (``summary.json``) and its one-screen terminal rendering.

:func:`build_summary` reduces the run's tables to what an analyst reads in a minute; the HTML
report is rendered from the same document, so both always say the same thing.
"""

from __future__ import annotations

import dataclasses
import shlex
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from detector.report import contract
from detector.schema import Action, C, Outcome
from detector.terminal import safe_line

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


IMPACT_ORDER = ("reset_credentials", "lock_account", "block", "restrict_account")
"""Actions that change what a login meets, in the order a tie on impact is broken."""


def _evidence_int(key: str) -> pl.Expr:
    return pl.col("evidence").str.json_path_match(f"$.{key}").cast(pl.Int64, strict=False).fill_null(0)


def impact() -> list[pl.Expr]:
    """What a measure achieves: attack attempts it stops and accounts it protects.

    A block stops its sources' attempts on every account they targeted; an account measure stops
    the attacking attempts on that one account (a reset also ends a takeover).
    """
    account = pl.col("target_type") == "account"
    stopped = pl.when(account).then(_evidence_int("attack_attempts")).otherwise(_evidence_int("attempts"))
    protected = pl.when(account).then(pl.lit(1, pl.Int64)).otherwise(_evidence_int("accounts"))
    return [stopped.alias("attacks_stopped"), protected.alias("accounts_protected")]


def top_by_impact(plan: pl.DataFrame, limit: int = LIST_LIMIT) -> pl.DataFrame:
    """The measures that do most: the best of every action, then of every kind, then the rest.

    Impact is attacks stopped, then accounts protected. The best measure of each action leads
    (resets first: they end takeovers), then the best of each (action, target type) by impact, so
    credential resets and AS blocks appear even when hundreds of blocks stop more attempts.
    """
    cols = ["measure_id", "action", "target_type", "target", C.RISK_SCORE, "reason", "collateral_accounts"]
    acting = plan.filter(pl.col("action").is_in(IMPACT_ORDER))
    if acting.is_empty():
        return acting.select(cols).with_columns(
            pl.lit(0, pl.Int64).alias("attacks_stopped"), pl.lit(0, pl.Int64).alias("accounts_protected")
        )
    rank = pl.col("action").replace_strict({a: i for i, a in enumerate(IMPACT_ORDER)}, return_dtype=pl.Int32)
    ranked = (
        acting.select(*cols, *impact(), rank.alias("_rank"))
        .sort(
            "attacks_stopped",
            "accounts_protected",
            "_rank",
            "measure_id",
            descending=[True, True, False, False],
        )
        .with_row_index("_order")
    )
    per_action = ranked.group_by("action").agg(pl.col("_order").min(), pl.col("_rank").first())
    per_kind = ranked.group_by("action", "target_type").agg(pl.col("_order").min()).get_column("_order")
    first = per_action.sort("_rank").get_column("_order")
    tier = (
        pl.when(pl.col("_order").is_in(first.implode()))
        .then(0)
        .when(pl.col("_order").is_in(per_kind.implode()))
        .then(1)
        .otherwise(2)
    )
    chosen = ranked.with_columns(tier.alias("_tier")).sort(
        "_tier", pl.when(pl.col("_tier") == 0).then(pl.col("_rank")).otherwise(0), "_order"
    )
    return chosen.head(limit).drop("_order", "_rank", "_tier")


def collateral_split(
    plan: pl.DataFrame, accounts: pl.DataFrame, collateral: pl.DataFrame | None = None
) -> dict[str, dict[str, int]]:
    """Who bears the plan, in three groups that do not overlap in kind.

    ``reset_owners``: compromised accounts whose password is reset (their owners must get a new
    one), ``refused_by_blocks``: legitimate users behind blocked addresses, prefixes or ASNs (a sum
    over blocks, so an account behind two blocks counts twice, unless ``collateral``, the run's
    ``collateral.parquet``, names them: then each account once), ``held_by_restrictions``: accounts
    limited to their own networks. Monitor rows enforce nothing and count nowhere.
    """
    prac = accounts.select(pl.col(C.ACCOUNT).alias("target"), C.IS_PRACTITIONER)

    def owners(action: str) -> dict[str, int]:
        rows = plan.filter((pl.col("action") == action) & (pl.col("target_type") == "account"))
        rows = rows.unique("target").join(prac, on="target", how="left")
        return {
            "accounts": rows.height,
            "practitioners": int(rows.get_column(C.IS_PRACTITIONER).fill_null(False).sum()),
        }

    blocks = plan.filter(pl.col("action") == "block")
    if collateral is not None:
        hit = collateral.filter(pl.col("action") == "block").unique(C.ACCOUNT)
        refused = {
            "accounts": hit.height,
            "practitioners": int(hit.get_column(C.IS_PRACTITIONER).fill_null(False).sum()),
        }
    else:
        refused = {
            "accounts": int(blocks.get_column("collateral_accounts").sum() or 0),
            "practitioners": int(blocks.get_column("collateral_practitioners").sum() or 0),
        }
    return {
        "reset_owners": owners("reset_credentials"),
        "refused_by_blocks": refused,
        "held_by_restrictions": owners("restrict_account"),
    }


WARNING_SEVERITY: tuple[tuple[str, str], ...] = (
    ("no history yet", "high"),
    ("no GeoIP", "high"),
    ("no practitioner directory", "high"),
    ("was built on", "medium"),
    ("duplicate", "medium"),
    ("empty input", "medium"),
)
"""(words in the warning, severity): what degrades the plan is high, what loses a few lines is low."""
SEVERITIES = ("high", "medium", "low")


def graded_warnings(warnings: Any) -> list[dict[str, str]]:
    """The run's warnings with a severity, the most severe first (stable within a severity)."""
    graded = [
        {"severity": next((sev for words, sev in WARNING_SEVERITY if words in w), "low"), "message": w}
        for w in warnings
    ]
    return sorted(graded, key=lambda g: SEVERITIES.index(g["severity"]))


def plan_changes(plan: pl.DataFrame, previous: pl.DataFrame | None) -> dict[str, Any] | None:
    """What changed since the previous run's plan, by measure id (counts per action only: the
    previous plan holds real account names, the reports may be pseudonymised)."""
    if previous is None:
        return None
    ids = previous.get_column("measure_id").implode()
    new = plan.filter(~pl.col("measure_id").is_in(ids))
    lifted = previous.filter(~pl.col("measure_id").is_in(plan.get_column("measure_id").implode()))
    return {
        "new": _counts(new, "action"),
        "continued": plan.height - new.height,
        "lifted": _counts(lifted, "action"),
    }


REPORTS = "REPORTS"
"""Stands for the reports directory in ``next_steps`` commands (filled in when printed)."""


def next_steps(
    compromised: list[dict[str, Any]], targeted: list[dict[str, Any]], plan: pl.DataFrame
) -> list[dict[str, str]]:
    """The commands an analyst runs next; account names are shell-quoted (they come from the logs)."""
    steps = []
    first = (compromised or targeted or [None])[0]
    if first is not None:
        steps.append(
            {
                "what": "see why the riskiest account was flagged",
                "command": f"detector explain {shlex.quote(str(first[C.ACCOUNT]))} --run {REPORTS}",
            }
        )
    if plan.filter(pl.col("action") == "block").height:
        steps.append(
            {
                "what": "load tonight's blocks into the firewall",
                "command": f"detector export --plan {REPORTS}/recommendations.parquet --format nftables "
                "--out detector-blocks.nft --fail-on-empty",
            }
        )
    if plan.filter(pl.col("target_type") == "account").height:
        steps.append(
            {
                "what": "hand the account measures to the mail server",
                "command": f"detector export --plan {REPORTS}/recommendations.parquet --format dovecot "
                "--out /etc/dovecot/detector",
            }
        )
    return steps


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
    top_measures = top_by_impact(plan)
    collateral = collateral_split(plan, accounts, t.get("collateral.parquet"))
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
            "collateral_accounts": collateral["refused_by_blocks"]["accounts"],
            "collateral_practitioners": collateral["refused_by_blocks"]["practitioners"],
            "collateral": collateral,
            "acting_total": plan.filter(~pl.col("action").is_in(NO_TRAFFIC_ACTIONS)).height,
            "top": _rows(top_measures),
        },
        "replay": {
            "kind": run.replay_kind,
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
        "since_last_night": plan_changes(plan, run.previous_plan),
        "overrides": _rows(run.overrides) if run.overrides is not None else [],
        "warnings": list(run.warnings),
        "warnings_by_severity": graded_warnings(run.warnings),
        "next_steps": next_steps(compromised, targeted, plan),
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
    """One line of the summary; cut with an ellipsis on a terminal only (see :func:`print_summary`)."""
    return Text(safe_line(text), style=style, no_wrap=True)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _more(total: int, shown: int, where: str) -> list[Text]:
    return [_line(f"  ... and {total - shown:,} more ({where})", style="dim")] if total > shown else []


def _acct_line(a: dict[str, Any], *, risk: bool = True) -> str:
    """One account: its risk (compromised accounts only: a targeted account's is low by definition)."""
    who = a[C.ACCOUNT]
    if a.get(C.IS_PRACTITIONER):
        who += f" [{a.get(C.PROFESSION) or 'practitioner'}]"
    reasons = "; ".join((a.get("reasons") or [])[:2])
    lead = f"{a[C.RISK_SCORE]:.2f}  " if risk and a.get(C.RISK_SCORE) is not None else ""
    return f"  {lead}{who}  {reasons}"


def _window_label(r: dict[str, Any]) -> str:
    """'Night' for up to a day and a half of logs, else the number of days (a three-day window is no night)."""
    try:
        span = datetime.fromisoformat(r["window_end"]) - datetime.fromisoformat(r["window_start"])
    except (KeyError, TypeError, ValueError):
        return "Night"
    return "Night" if span <= timedelta(hours=36) else f"Window ({round(span / timedelta(days=1))} days)"


REPLAY_TITLES = {
    "same_day": "Replay on the analysed day itself (the plan graded on the logs it was built from: "
    "an upper bound, not a forecast)",
    "next_day": "Next-day estimate (last night's plan replayed on tonight's logs)",
}


def _measure_line(m: dict[str, Any]) -> str:
    what = f"{m['action']} {m['target_type']} {m['target']}"
    return (
        f"  {what}  stops {_plural(int(m.get('attacks_stopped') or 0), 'attempt')}, "
        f"protects {_plural(int(m.get('accounts_protected') or 0), 'account')}  {m.get('reason') or ''}"
    )


def render_summary(summary: dict[str, Any], *, max_accounts: int = 5, reports: str | None = None) -> Group:
    """A one-screen rich rendering of ``summary`` (at most about 45 lines at 100 columns).

    Every count is followed by what it counts or by "and N more"; ``reports`` (the reports
    directory) fills in the suggested commands.
    """
    r, n, acc, plan = summary["run"], summary["night"], summary["accounts"], summary["plan"]
    parts: list[Any] = []
    title = Text.assemble(
        ("detector ", "bold"),
        (f"run {r['run_id']}  ", "dim"),
        f"{_short_time(r['window_start'])} -> {_short_time(r['window_end'])} UTC",
    )
    parts.append(title)
    parts.append(
        _line(
            f"{_window_label(r)}: {_plural(n['lines'], 'line')}, {_plural(n['events'], 'event')}, "
            f"{n['quarantined']:,} quarantined"
        )
    )
    parts.append(
        _line(
            f"Logins: {_plural(n['attempts'], 'attempt')}, {n['failures']:,} failed, {n['successes']:,} succeeded"
        )
    )
    verdicts = acc["verdicts"]
    src = summary["sources"]["verdicts"]
    parts.append(
        _line(
            f"Accounts: {n['accounts']:,} seen, {verdicts.get('compromised', 0):,} compromised, "
            f"{verdicts.get('targeted', 0):,} targeted, {verdicts.get('suspicious', 0):,} suspicious "
            f"({_plural(acc['practitioners_affected'], 'practitioner')} among the compromised and targeted)"
        )
    )
    parts.append(
        _line(
            f"Sources: {n['sources']:,} seen, {src.get('malicious', 0):,} malicious, "
            f"{src.get('suspicious', 0):,} suspicious, {summary['sources']['shared']:,} shared"
        )
    )
    camps = summary["campaigns"]
    shown = camps["top"][:3]
    parts.append(_line(""))
    parts.append(_line(f"Campaigns: {camps['total']:,}", style="bold"))
    for c in shown:
        first = f"  first seen {_day_time(c['first_seen'])}" if c.get("first_seen") else ""
        parts.append(
            _line(
                f"  {c.get('campaign')}  {c.get('technique') or ''}  "
                f"{_plural(int(c.get('n_sources') or 0), 'source')}, "
                f"{_plural(int(c.get('accounts_targeted') or 0), 'account')}  "
                f"{_day_time(c.get('start'))} -> {_day_time(c.get('end'))}{first}"
            )
        )
    parts.extend(_more(camps["total"], len(shown), "campaigns.parquet"))
    parts.append(_line(f"Compromised accounts: {acc['compromised_total']:,}", style="bold red"))
    parts.extend(_line(_acct_line(a)) for a in acc["compromised"][:max_accounts])
    parts.extend(_more(acc["compromised_total"], len(acc["compromised"][:max_accounts]), "accounts.parquet"))
    parts.append(_line(f"Targeted accounts: {acc['targeted_total']:,}", style="bold yellow"))
    parts.extend(_line(_acct_line(a, risk=False)) for a in acc["targeted"][:2])
    parts.extend(_more(acc["targeted_total"], len(acc["targeted"][:2]), "accounts.parquet"))
    actions = ", ".join(f"{k} {v:,}" for k, v in plan["by_action"].items()) or "none"
    parts.append(_line(""))
    parts.append(_line(f"Plan: {_plural(plan['measures'], 'measure')}", style="bold"))
    parts.append(_line(f"  {actions}"))
    col = plan.get("collateral")
    if col:
        reset, blocks, held = col["reset_owners"], col["refused_by_blocks"], col["held_by_restrictions"]
        parts.append(
            _line(
                f"  who bears it: {_plural(reset['accounts'], 'owner')} of reset accounts "
                f"({reset['practitioners']:,} practitioners), "
                f"{_plural(blocks['accounts'], 'legitimate user')} refused by blocks "
                f"({blocks['practitioners']:,} practitioners), "
                f"{_plural(held['accounts'], 'account')} held to their own networks "
                f"({held['practitioners']:,} practitioners)"
            )
        )
    changes = summary.get("since_last_night")
    if changes is not None:
        new = ", ".join(f"{k} {v:,}" for k, v in changes["new"].items()) or "none"
        lifted = ", ".join(f"{k} {v:,}" for k, v in changes["lifted"].items()) or "none"
        parts.append(
            _line(f"  since last night: new {new}; lifted {lifted}; {changes['continued']:,} continued")
        )
    overrides = summary.get("overrides") or []
    if overrides:
        lifted = sum(o["override"] == "lift" for o in overrides)
        unmatched = sum(not o["matched"] for o in overrides)
        stale = f", {unmatched:,} not in tonight's plan" if unmatched else ""
        parts.append(
            _line(
                f"  overrides in force: {len(overrides):,} ({lifted:,} lifted, "
                f"{len(overrides) - lifted:,} extended{stale})",
                style="bold",
            )
        )
        for o in overrides[:3]:
            until = f" until {_short_time(o['until'])}" if o.get("until") else ""
            parts.append(_line(f"    {o['override']} {o['measure_id']}{until} by {o['by']}: {o['why']}"))
        parts.extend(_more(len(overrides), min(3, len(overrides)), "summary.json"))
    top = plan["top"][:4]
    if top:
        parts.append(
            _line(
                f"Top {len(top)} of {plan.get('acting_total', plan['measures']):,} measures that act "
                "(the best of each action, then of each kind; all in recommendations.parquet):"
            )
        )
        parts.extend(_line(_measure_line(m)) for m in top)
    rows = summary["replay"]["strategies"]
    if rows:
        label = "labels" if summary["replay"]["labelled"] else "the tool's own verdicts (no labels)"
        kind = summary["replay"].get("kind") or "same_day"
        title = f"{REPLAY_TITLES.get(kind, kind)}, judged by {label}"
        table = Table(title=safe_line(title), title_justify="left", box=None)
        compact = all(pct in rows[0] for _, pct, _, _ in REPLAY_VIEW)
        heads = ["strategy", *(h for h, *_ in REPLAY_VIEW)] if compact else list(rows[0])
        for i, head in enumerate(heads):
            table.add_column(
                head, justify="left" if i == 0 else "right", overflow="fold", min_width=16 * (i == 0)
            )
        for row in rows:
            if compact:
                cells = [STRATEGY_NAMES.get(row["strategy"], str(row["strategy"]))]
                for _, pct, _, _ in REPLAY_VIEW:
                    cells.append("n/a" if row[pct] is None else f"{row[pct]:.1f}%")
            else:
                cells = [_fmt_num(row.get(h)) for h in heads]
            table.add_row(*(safe_line(c) for c in cells))
        parts.append(_line(""))
        parts.append(table)
    from detector.recommend.guard import GUARD_WARNING

    graded = summary.get("warnings_by_severity") or graded_warnings(summary["warnings"])
    shown_w = [w for w in graded if w["severity"] == "high"] or graded[:1]
    shown_w = shown_w + [w for w in graded if w not in shown_w][: max(0, 2 - len(shown_w))]
    # every refusal of the plan's guards too (what the plan would not block)
    shown_w = shown_w + [w for w in graded if w not in shown_w and w["message"].startswith(GUARD_WARNING)]
    for w in shown_w:
        style = "bold yellow" if w["severity"] == "high" else "yellow"
        parts.append(_line(f"warning ({w['severity']}): {w['message']}", style=style))
    parts.extend(_more(len(graded), len(shown_w), "summary.json"))
    steps = summary.get("next_steps") or []
    if steps:
        parts.append(_line("Next:", style="bold"))
        where = shlex.quote(reports) if reports else REPORTS
        parts.extend(_line(f"  {s['command'].replace(REPORTS, where)}   # {s['what']}") for s in steps)
    if r.get("attention"):
        parts.append(_line(f"NEEDS ATTENTION (--fail-on {r['fail_on']}): {r['attention']}", style="bold red"))
    return Group(*parts)


def print_summary(
    summary: dict[str, Any], console: Console | None = None, *, reports: str | None = None
) -> None:
    """Print the summary: cut to the width on a terminal, whole lines anywhere else (cron mail, pipes)."""
    console = console or Console()
    group = render_summary(summary, reports=reports)
    if console.is_terminal:
        console.print(group, overflow="ellipsis", crop=True)
    else:
        console.print(group, soft_wrap=True)

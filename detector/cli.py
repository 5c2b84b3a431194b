"""Command-line adapter: parse options, call one library function, print a summary.

Diagnostics go to stderr so that stdout stays machine-readable. Exit codes: 0 done, 1 failed
(a bug or a run that could not finish), 2 bad usage or input, 3 the night needs attention
(``run --fail-on``), 130 interrupted.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from datetime import datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from detector import __version__
from detector.errors import DetectorError

app = typer.Typer(
    name="detector",
    help="Detect credential abuse against mail accounts (IMAP/POP/SMTP) and recommend scoped measures.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="rich",
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

F = TypeVar("F", bound=Callable[..., Any])


def err(message: str) -> None:
    typer.echo(message, err=True)


def guarded(fn: F) -> F:
    """Turn errors into one line on stderr and a meaningful exit code; no traceback for users."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except DetectorError as e:
            err(f"detector: error: {e}")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err("detector: interrupted")
            raise typer.Exit(130) from None
        except Exception as e:
            if os.environ.get("DETECTOR_DEBUG"):
                raise
            err(f"detector: internal error: {type(e).__name__}: {e} (set DETECTOR_DEBUG=1 for a traceback)")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"detector {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """detector: mail-account credential-abuse detector."""


Paths = Annotated[
    list[str], typer.Argument(help="Log files, directories (recursive), globs, or - for stdin.")
]
Year = Annotated[
    int | None, typer.Option(help="Year of RFC 3164 stamps (default: inferred from file modification times).")
]
Timezone = Annotated[str, typer.Option(help="Time zone of time stamps without an offset.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML configuration file.")]


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
@guarded
def ingest(
    paths: Paths,
    out: Annotated[Path, typer.Option(help="Events Parquet file to write.")],
    year: Year = None,
    timezone: Timezone = "UTC",
    config: ConfigOpt = None,
) -> None:
    """Parse authentication logs into canonical events (Parquet), with a quarantine of bad lines."""
    from detector import config as cfgmod
    from detector.ingest import ingest_to_parquet

    cfg = cfgmod.load(config).replace(ingest={"year": year, "timezone": timezone})
    result = ingest_to_parquet(paths, out, cfg.ingest)
    typer.echo(result.summary_text())


@app.command("run")
@guarded
def run_cmd(
    paths: Paths,
    out: Annotated[
        Path, typer.Option(help="Directory for the reports (Parquet, summary.json, report.html).")
    ],
    state: Annotated[Path | None, typer.Option(help="State directory carried across nights.")] = None,
    practitioners: Annotated[Path | None, typer.Option(help="Practitioner directory (CSV).")] = None,
    geoip_dir: Annotated[
        Path | None,
        typer.Option(help="Directory of GeoIP .mmdb files (default: searched as enrichment does)."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model file (default: the shipped models/default.skops).")
    ] = None,
    config: ConfigOpt = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            help="Exit 3 when the night needs attention: compromised, targeted, or a risk threshold."
        ),
    ] = None,
    pseudonymize: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            envvar="DETECTOR_PSEUDONYMIZE_KEY",
            help="Replace account names in the reports with keyed hashes (or set DETECTOR_PSEUDONYMIZE_KEY).",
        ),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Ground-truth incidents for the replay comparison (optional).")
    ] = None,
    log_format: Annotated[
        LogFormat, typer.Option(help="text on a terminal, json under cron.")
    ] = LogFormat.text,
    year: Year = None,
    timezone: Annotated[str | None, typer.Option(help="Time zone of time stamps without an offset.")] = None,
) -> None:
    """Run the nightly job: ingest, enrich, detect, score, recommend; publish reports; print the summary."""
    from detector.runner import run_command

    code = run_command(
        paths, out, state=state, practitioners=practitioners, geoip_dir=geoip_dir, model=model,
        config=config, fail_on=fail_on, pseudonymize=pseudonymize, labels=labels,
        log_format=log_format.value, year=year, timezone=timezone,
    )  # fmt: skip
    if code:
        raise typer.Exit(code)


PlanOpt = Annotated[
    Path, typer.Option("--plan", help="The plan: recommendations.parquet (or a JSON export).")
]


@app.command("replay")
@guarded
def replay_cmd(
    paths: Paths,
    plan: PlanOpt,
    labels: Annotated[
        Path | None,
        typer.Option(help="Ground-truth incidents; without them the tool's own verdicts are used."),
    ] = None,
    geoip_dir: Annotated[Path | None, typer.Option(help="Directory of GeoIP .mmdb files.")] = None,
    practitioners: Annotated[Path | None, typer.Option(help="Practitioner directory (CSV).")] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model for the own verdicts (default: the shipped one).")
    ] = None,
    config: ConfigOpt = None,
    year: Year = None,
    timezone: Timezone = "UTC",
) -> None:
    """Apply a plan to a log (typically the next day) beside a blanket shutdown, fail2ban and no action."""
    from detector import config as cfgmod
    from detector.recommend.replay import replay_logs

    cfg = cfgmod.load(config).replace(ingest={"year": year, "timezone": timezone})
    result = replay_logs(
        paths, plan, cfg, labels=labels, geoip_dir=geoip_dir, practitioners=practitioners, model_path=model
    )
    typer.echo(result.render(), nl=False)


class ExportFormat(str, Enum):  # noqa: UP042  (same style as LogFormat)
    nftables = "nftables"
    postfix = "postfix"
    dovecot = "dovecot"
    dovecot_deny_ips = "dovecot-deny-ips"
    dovecot_deny_users = "dovecot-deny-users"
    dovecot_allow_nets = "dovecot-allow-nets"
    crowdsec = "crowdsec"
    csv = "csv"
    json = "json"


@app.command("export")
@guarded
def export_cmd(
    plan: PlanOpt,
    format: Annotated[ExportFormat, typer.Option("--format", help="Enforcement point format.")],
    out: Annotated[Path | None, typer.Option(help="File to write (default: standard output).")] = None,
    now: Annotated[
        datetime | None,
        typer.Option(
            help="Export as of this UTC time: measures expired by then are left out (default: now)."
        ),
    ] = None,
    geoip_dir: Annotated[
        Path | None,
        typer.Option(help="Directory with an ASN database, to expand AS numbers into their prefixes."),
    ] = None,
) -> None:
    """Export a plan's measures in force to an enforcement point (nftables, Postfix, Dovecot, CrowdSec, CSV, JSON)."""
    from datetime import UTC

    from detector.recommend.export import export_plan_file

    at = now.replace(tzinfo=UTC) if now is not None and now.tzinfo is None else now
    done = export_plan_file(plan, format.value, out, now=at, geoip_dir=geoip_dir)
    for w in done.warnings:
        err(f"detector: warning: {w}")
    if out is None:
        typer.echo(done.text, nl=False)
    else:
        err(f"detector: wrote {format.value} export to {out}")


@app.command()
@guarded
def simulate(
    out: Annotated[
        Path, typer.Option(help="Directory to write the world into (logs, directory, GeoIP, labels).")
    ],
    accounts: Annotated[int, typer.Option(help="Number of mail accounts.")] = 3000,
    days: Annotated[int, typer.Option(help="Number of days of logs.")] = 3,
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed and options give the same bytes.")
    ] = 7,
    practitioner_share: Annotated[
        float, typer.Option(help="Share of accounts held by health practitioners.")
    ] = 0.35,
    start: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="First day (UTC), default 2026-11-16.")
    ] = None,
    mix: Annotated[
        str,
        typer.Option(
            help="Attack mix: 'drawn' from the seed (sizes, proxies, rotation, scale, timing, takeover), "
            "or 'fixed' (the mix of data/samples and the tuned worlds)."
        ),
    ] = "drawn",
) -> None:
    """Write a reproducible labelled mail world: logs, practitioner directory, GeoIP databases, incidents."""
    from detector.simulate import DEFAULT_START
    from detector.simulate import simulate as run_simulation

    result = run_simulation(
        out,
        accounts=accounts,
        days=days,
        seed=seed,
        practitioner_share=practitioner_share,
        start=start.date() if start is not None else DEFAULT_START,
        mix=mix,
    )
    typer.echo(result.summary_text())


EventsOpt = Annotated[
    Path,
    typer.Option(
        "--events", help="Logs (file or directory) or a canonical events Parquet from `detector ingest`."
    ),
]
LabelsOpt = Annotated[
    Path, typer.Option("--labels", help="Incidents file (labels/incidents.csv from `detector simulate`).")
]
GeoipOpt = Annotated[Path | None, typer.Option(help="Directory of GeoIP .mmdb files.")]
PractitionersOpt = Annotated[Path | None, typer.Option(help="Practitioner directory (CSV).")]


@app.command()
@guarded
def train(
    events: EventsOpt,
    labels: LabelsOpt,
    out: Annotated[
        Path, typer.Option(help="Model to write: models/NAME gives NAME.skops and NAME.card.json.")
    ],
    geoip_dir: GeoipOpt = None,
    practitioners: PractitionersOpt = None,
    config: ConfigOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the cross-validation folds and the trees.")] = 0,
    max_iter: Annotated[
        int | None,
        typer.Option(help="Boosting iterations per estimator (default: each one's own; fewer is faster)."),
    ] = None,
) -> None:
    """Train the scoring model on labelled logs (ingest, enrich and detect run internally)."""
    from detector import config as cfgmod
    from detector.score.train import train as train_model

    result = train_model(
        events, labels, out, geoip_dir=geoip_dir, practitioners=practitioners, cfg=cfgmod.load(config),
        random_state=seed, max_iter=max_iter,
    )  # fmt: skip
    typer.echo(result.summary_text())


@app.command()
@guarded
def evaluate(
    model: Annotated[Path, typer.Option(help="Model file (NAME.skops, with NAME.card.json beside it).")],
    events: EventsOpt,
    labels: LabelsOpt,
    geoip_dir: GeoipOpt = None,
    practitioners: PractitionersOpt = None,
    config: ConfigOpt = None,
    write_card: Annotated[bool, typer.Option(help="Record the figures in the model card.")] = True,
) -> None:
    """Measure a model on labelled logs: precision/recall, PR-AUC, detection rate at low FPR, per family."""
    from detector import config as cfgmod
    from detector.score.evaluate import evaluate as evaluate_model

    result = evaluate_model(
        model,
        events,
        labels,
        geoip_dir=geoip_dir,
        practitioners=practitioners,
        cfg=cfgmod.load(config),
        write=write_card,
    )
    typer.echo(result.summary_text())


@app.command()
@guarded
def explain(
    target: Annotated[str, typer.Argument(help="An account or a source address.")],
    run: Annotated[Path, typer.Option("--run", help="Output directory of `detector run`.")],
    lines: Annotated[int, typer.Option(help="How many of the riskiest log lines to show.")] = 20,
) -> None:
    """Show the verdict on an account or address, the findings behind it and the raw log lines."""
    from detector.score.explain import explain as explain_target
    from detector.score.explain import render

    render(explain_target(target, run, max_lines=lines))


@config_app.command("show")
@guarded
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (defaults overridden by --config) as TOML."""
    import tomli_w

    from detector import config as cfgmod

    data = cfgmod.load(config).to_dict()

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if v is not None}
        if isinstance(x, tuple):
            return list(x)
        return x

    typer.echo(tomli_w.dumps(clean(data)))


def main() -> None:
    app(prog_name="detector")


if __name__ == "__main__":
    sys.exit(main())

"""Command-line adapter: parse options, call one library function, print a summary.

Diagnostics go to stderr so that stdout stays machine-readable. Exit codes: 0 done, 1 failed
(a bug or a run that could not finish), 2 bad usage or input, 3 the night needs attention
(``run --fail-on``), 130 interrupted.
"""

from __future__ import annotations

import functools
import os
import sys
import typing
from collections.abc import Callable
from datetime import datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from detector import __version__
from detector.errors import DetectorError, unwritable
from detector.terminal import safe

app = typer.Typer(
    name="detector",
    help="Detect credential abuse against mail accounts (IMAP/POP/SMTP) and recommend scoped measures.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    rich_markup_mode="rich",
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
override_app = typer.Typer(
    help="Lift or extend one measure of the plan, with who and why (runs and exports honour it).",
    no_args_is_help=True,
)
app.add_typer(override_app, name="override")

F = TypeVar("F", bound=Callable[..., Any])


def err(message: str) -> None:
    """One line of diagnostics on stderr, control sequences shown as escapes."""
    typer.echo(safe(message), err=True)


def say(text: str, *, nl: bool = True) -> None:
    """Text for the user on stdout, control sequences shown as escapes."""
    typer.echo(safe(text), nl=nl)


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
            refused = unwritable(e)  # any command's --out: read-only, full, a file in the way
            if refused is not None:
                err(f"detector: error: {refused}")
                raise typer.Exit(refused.exit_code) from None
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
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """detector: mail-account credential-abuse detector."""


Paths = Annotated[
    list[str], typer.Argument(help="Log files, directories (recursive), globs, or - for stdin.")
]
Year = Annotated[
    int | None,
    typer.Option(
        help="Year of RFC 3164 stamps (default: [ingest] year, else inferred from file modification times)."
    ),
]
Timezone = Annotated[
    str | None,
    typer.Option(help="Time zone of time stamps without an offset (default: [ingest] timezone, UTC)."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Worker processes for ingestion, detection and scoring (default: [engine] workers, 1: none; 0: the cores available).",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML configuration file (default: $DETECTOR_CONFIG, else /etc/detector/detector.toml if it exists).",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout (diagnostics stay on stderr).")
]


def emit_json(value: Any) -> None:
    """The ``--json`` output of a command: one document on stdout."""
    from detector.jsonout import dumps

    typer.echo(dumps(value))


def log_steps() -> None:
    """Show a long command's steps and warnings on stderr as text lines with levels (terminal, cron, journald)."""
    from detector.logging_setup import setup

    setup("text")


def warn_all(warnings: Any) -> None:
    for w in warnings:
        err(f"detector: warning: {w}")


OverridesOpt = Annotated[
    Path | None,
    typer.Option(
        "--overrides",
        help="Operators' overrides of measures (default: /etc/detector/overrides.toml if it exists).",
    ),
]


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class Engine(StrEnum):
    local = "local"
    spark = "spark"


@app.command()
@guarded
def ingest(
    paths: Paths,
    out: Annotated[Path, typer.Option(help="Events Parquet file to write.")],
    year: Year = None,
    timezone: Timezone = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Parse authentication logs into canonical events (Parquet), with a quarantine of bad lines."""
    from detector import config as cfgmod
    from detector.ingest import ingest_to_parquet

    cfg = cfgmod.load(config).overridden(
        ingest={"year": year, "timezone": timezone}, engine={"workers": workers}
    )
    result = ingest_to_parquet(paths, out, cfg.ingest, workers=cfg.engine.workers)
    if json:
        warn_all(result.warnings)
        emit_json(result)
    else:
        say(result.summary_text())


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
    overrides: OverridesOpt = None,
    log_format: Annotated[
        LogFormat, typer.Option(help="text on a terminal, json under cron.")
    ] = LogFormat.text,
    year: Year = None,
    timezone: Annotated[str | None, typer.Option(help="Time zone of time stamps without an offset.")] = None,
    engine: Annotated[
        Engine,
        typer.Option(help="local: this process; spark: the same steps as Spark tasks (docs/spark.md)."),
    ] = Engine.local,
    spark_master: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Spark master with --engine spark: local[N], yarn, k8s://..., spark://... "
            "(default: spark-submit's, else local[2]).",
        ),
    ] = None,
    workers: WorkersOpt = None,
) -> None:
    """Run the nightly job: ingest, enrich, detect, score, recommend; publish reports; print the summary."""
    from detector.runner import run_command

    code = run_command(
        paths, out, state=state, practitioners=practitioners, geoip_dir=geoip_dir, model=model,
        config=config, fail_on=fail_on, pseudonymize=pseudonymize, labels=labels,
        log_format=log_format.value, year=year, timezone=timezone, overrides=overrides, workers=workers,
        engine=engine.value, spark_master=spark_master,
    )  # fmt: skip
    if code:
        raise typer.Exit(code)


PlanOpt = Annotated[
    Path, typer.Option("--plan", help="The plan: recommendations.parquet (or a JSON export).")
]
StateOpt = Annotated[
    Path | None,
    typer.Option(help="State directory of `run`: analyse against the earlier nights it holds."),
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
    state: StateOpt = None,
    config: ConfigOpt = None,
    year: Year = None,
    timezone: Timezone = None,
    workers: WorkersOpt = None,
    json: JsonOpt = False,
) -> None:
    """Apply a plan to a log (typically the next day) beside a blanket shutdown, fail2ban and no action."""
    from detector import config as cfgmod
    from detector.recommend.replay import replay_logs

    log_steps()

    cfg = cfgmod.load(config).overridden(
        ingest={"year": year, "timezone": timezone}, engine={"workers": workers}
    )
    result = replay_logs(
        paths, plan, cfg, labels=labels, geoip_dir=geoip_dir, practitioners=practitioners, model_path=model,
        state_dir=state,
    )  # fmt: skip
    if json:
        emit_json(result)
    else:
        say(result.render(), nl=False)


class ExportFormat(str, Enum):  # noqa: UP042  (same style as LogFormat)
    nftables = "nftables"
    postfix = "postfix"
    dovecot = "dovecot"
    crowdsec = "crowdsec"
    csv = "csv"
    json = "json"


@app.command("export")
@guarded
def export_cmd(
    plan: PlanOpt,
    format: Annotated[ExportFormat, typer.Option("--format", help="Enforcement point format.")],
    out: Annotated[
        Path | None,
        typer.Option(help="File to write (default: standard output); a directory for dovecot and crowdsec."),
    ] = None,
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
    password_hashes: Annotated[
        Path | None,
        typer.Option(
            help="passwd-file (user:hash) with the reset accounts' current password hashes: "
            "the dovecot export then refuses those (stolen) passwords."
        ),
    ] = None,
    fail_on_empty: Annotated[
        bool,
        typer.Option(help="Exit 1 and write nothing when no measure of the format is in force."),
    ] = False,
    json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON document (format, file written or the export's text, warnings) on stdout.",
        ),
    ] = False,
    overrides: OverridesOpt = None,
) -> None:
    """Export a plan's measures in force to an enforcement point (nftables, Postfix, Dovecot, CrowdSec, CSV, JSON)."""
    from datetime import UTC

    from detector.recommend.export import export_plan_file

    at = now.replace(tzinfo=UTC) if now is not None and now.tzinfo is None else now
    done = export_plan_file(
        plan,
        format.value,
        out,
        now=at,
        geoip_dir=geoip_dir,
        password_hashes=password_hashes,
        fail_on_empty=fail_on_empty,
        overrides=overrides,
    )
    warn_all(done.warnings)
    if json:
        emit_json({"format": format.value, "out": out, **({"text": done.text} if out is None else {}),
                   "counts": done.tally.counts(), "warnings": done.warnings})  # fmt: skip
    elif out is None:  # validated for its consumer; shown escaped only on a terminal
        typer.echo(safe(done.text) if sys.stdout.isatty() else done.text, nl=False)
    err(f"detector: {format.value} export: {done.tally.counts()}" + (f" -> {out}" if out else ""))


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
    say(result.summary_text())


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
    state: StateOpt = None,
    config: ConfigOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the cross-validation folds and the trees.")] = 0,
    max_iter: Annotated[
        int | None,
        typer.Option(help="Boosting iterations per estimator (default: each one's own; fewer is faster)."),
    ] = None,
    workers: WorkersOpt = None,
) -> None:
    """Train the scoring model on labelled logs (ingest, enrich and detect run internally)."""
    from detector import config as cfgmod
    from detector.score.train import train as train_model

    log_steps()

    result = train_model(
        events, labels, out, geoip_dir=geoip_dir, practitioners=practitioners, state_dir=state,
        cfg=cfgmod.load(config).overridden(engine={"workers": workers}), random_state=seed, max_iter=max_iter,
    )  # fmt: skip
    say(result.summary_text())


@app.command()
@guarded
def evaluate(
    model: Annotated[Path, typer.Option(help="Model file (NAME.skops, with NAME.card.json beside it).")],
    events: EventsOpt,
    labels: LabelsOpt,
    geoip_dir: GeoipOpt = None,
    practitioners: PractitionersOpt = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    write_card: Annotated[
        bool,
        typer.Option(help="Record the figures in the model card (off by default: the card is left alone)."),
    ] = False,
    workers: WorkersOpt = None,
    json: JsonOpt = False,
) -> None:
    """Measure a model on labelled logs: precision/recall, PR-AUC, detection rate at low FPR, per family."""
    from detector import config as cfgmod
    from detector.score.evaluate import evaluate as evaluate_model

    log_steps()

    result = evaluate_model(
        model,
        events,
        labels,
        geoip_dir=geoip_dir,
        practitioners=practitioners,
        state_dir=state,
        cfg=cfgmod.load(config).overridden(engine={"workers": workers}),
        write=write_card,
    )
    if json:
        emit_json(result)
    else:
        say(result.summary_text())


@app.command()
@guarded
def explain(
    target: Annotated[str, typer.Argument(help="An account or a source address.")],
    run: Annotated[Path, typer.Option("--run", help="Output directory of `detector run`.")],
    lines: Annotated[
        int, typer.Option(help="Log lines to show: the evidence always, then the riskiest of the rest.")
    ] = 20,
    json: JsonOpt = False,
) -> None:
    """Show the verdict on an account or address, the findings behind it and the raw log lines."""
    from detector.score.explain import explain as explain_target
    from detector.score.explain import render

    result = explain_target(target, run, max_lines=lines)
    if json:
        warn_all(result.warnings)
        emit_json(result)
    else:
        render(result)


@app.command()
@guarded
def serve(
    plan: PlanOpt,
    dovecot_listen: Annotated[
        str | None,
        typer.Option(help="HOST:PORT for Dovecot's auth policy requests (auth_policy_server_url)."),
    ] = None,
    postfix_listen: Annotated[
        str | None, typer.Option(help="HOST:PORT for Postfix's check_policy_service requests.")
    ] = None,
    now: Annotated[
        datetime | None,
        typer.Option(help="Start the service's clock at this UTC time (replays and tests; default: now)."),
    ] = None,
    geoip_dir: Annotated[
        Path | None,
        typer.Option(help="Directory with an ASN database, to match networks given as AS numbers."),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(help="File holding the key Dovecot must send (auth_policy_server_api_header)."),
    ] = None,
    state: Annotated[
        Path | None, typer.Option(help="Directory keeping what the service learnt of reset accounts.")
    ] = None,
    control: Annotated[
        Path | None,
        typer.Option(help="Operator's control file (TOML: open_wave, password_changed); re-read on change."),
    ] = None,
    overrides: OverridesOpt = None,
    log_only: Annotated[
        bool, typer.Option("--log-only", help="Decide and log, but answer allow (rollout).")
    ] = False,
    config: ConfigOpt = None,
    log_format: Annotated[
        LogFormat, typer.Option(help="Log format on stderr: text on a terminal, json under systemd.")
    ] = LogFormat.text,
) -> None:
    """Answer Dovecot's and Postfix's policy requests from the plan in force, until SIGTERM (SIGHUP reloads)."""
    from datetime import UTC

    from detector import config as cfgmod
    from detector.logging_setup import setup
    from detector.serve import ServeOptions, parse_listen
    from detector.serve import serve as run_service

    setup(log_format.value)
    options = ServeOptions(
        plan=plan,
        dovecot_listen=parse_listen(dovecot_listen) if dovecot_listen else None,
        postfix_listen=parse_listen(postfix_listen) if postfix_listen else None,
        now=now.replace(tzinfo=UTC) if now is not None and now.tzinfo is None else now,
        geoip_dir=geoip_dir, api_key_file=api_key_file, state_dir=state, control_file=control,
        overrides_file=overrides, log_only=log_only, cfg=cfgmod.load(config).serve,
    )  # fmt: skip
    run_service(options)


@config_app.command("show")
@guarded
def config_show(config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Print the effective configuration (defaults overridden by --config), every detector's thresholds included."""
    from detector import config as cfgmod
    from detector.detect.registry import effective

    data = effective(cfgmod.load(config))
    if json:
        emit_json(data)
        return
    import tomli_w

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if v is not None}
        if isinstance(x, tuple):
            return list(x)
        return x

    typer.echo(tomli_w.dumps(clean(data)))


PLAIN_LABELS = {Path: "PATH", int: "INTEGER", float: "NUMBER", str: "TEXT", datetime: "DATE-TIME", bool: ""}
"""Help labels of option values by Python type (flags show none); choices are listed by typer."""


MeasureArg = Annotated[str, typer.Argument(help="Measure id (measure_id of recommendations.parquet).")]
WhyOpt = Annotated[str, typer.Option("--why", help="Why (a ticket, the reason): kept in the audit.")]
ByOpt = Annotated[
    str | None, typer.Option("--by", help="Who decides (default: the login name running the command).")
]
FileOpt = Annotated[
    Path | None, typer.Option("--file", help="Overrides file (default: /etc/detector/overrides.toml).")
]


def _override(
    measure: str, action: str, why: str, by: str | None, until: datetime | None, file: Path | None
) -> None:
    import getpass
    from datetime import UTC

    from detector.recommend.overrides import Override, add_override

    at = datetime.now(UTC).replace(microsecond=0)
    when = until.replace(tzinfo=UTC) if until is not None and until.tzinfo is None else until
    path = add_override(file, Override(measure, action, by or getpass.getuser(), why, at, when))
    err(f"detector: {action} {measure} recorded in {path}; the next run and export honour it")


@override_app.command("lift")
@guarded
def override_lift(
    measure: MeasureArg,
    why: WhyOpt,
    by: ByOpt = None,
    until: Annotated[
        datetime | None, typer.Option(help="Lifted until this UTC time (default: for good).")
    ] = None,
    file: FileOpt = None,
) -> None:
    """Lift a measure: it is left out of the plan, the exports and the login-time decisions."""
    _override(measure, "lift", why, by, until, file)


@override_app.command("extend")
@guarded
def override_extend(
    measure: MeasureArg,
    until: Annotated[datetime, typer.Option(help="The measure's new expiry (UTC).")],
    why: WhyOpt,
    by: ByOpt = None,
    file: FileOpt = None,
) -> None:
    """Extend a measure: it holds until the given time, tonight and on the next nights."""
    _override(measure, "extend", why, by, until, file)


@override_app.command("list")
@guarded
def override_list(file: FileOpt = None, json: JsonOpt = False) -> None:
    """List the overrides in the file, who made them and why."""
    from detector.recommend.overrides import read_overrides
    from detector.terminal import safe_line

    found = read_overrides(file)
    if json:
        emit_json(found)
        return
    for o in found:
        until = f" until {o.until.isoformat()}" if o.until else ""
        typer.echo(safe_line(f"{o.at.isoformat()}  {o.action} {o.measure}{until}  by {o.by}: {o.why}"))


def _type_label(param: Any) -> str | None:
    """A plain help label for a parameter's value (``PATH``, ``INTEGER``), never a Python type name."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:  # typer before 0.16: click parameters
        return "" if getattr(param, "is_flag", False) else None
    annotation = desc.annotation
    element = typing.get_args(annotation)[0] if desc.is_list else annotation
    if isinstance(element, type) and issubclass(element, Enum):
        return None
    if desc.is_datetime and desc.parameter_info.formats:
        label = "|".join(desc.parameter_info.formats)
    else:
        label = PLAIN_LABELS.get(element, "TEXT")
    return label + ("..." if desc.is_list and label else "")


def command() -> Any:
    """The click command tree of the CLI, with help that names no Python types (``<list[str]>``)."""
    root = typer.main.get_command(app)

    def walk(cmd: Any) -> None:
        for param in cmd.params:
            label = _type_label(param)
            if getattr(param, "param_type_name", "") == "argument":
                if label is not None and hasattr(param, "display_type_rich"):
                    param.display_type_rich = lambda ctx, _label=label: _label
            elif param.metavar is None:
                param.metavar = label
        help_option = cmd.get_help_option

        def plain_help_option(ctx: Any, _get: Any = help_option) -> Any:
            option = _get(ctx)
            if option is not None:
                option.metavar = ""
            return option

        cmd.get_help_option = plain_help_option
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(root)
    return root


def _is_usage_error(e: Exception) -> bool:
    """Click's usage errors (typer vendors click from 0.16 on, so they are matched by shape)."""
    return callable(getattr(e, "format_message", None)) and isinstance(getattr(e, "exit_code", None), int)


def main(args: list[str] | None = None) -> int:
    """Run the CLI; a usage error is one line on stderr and exit 2, like every other error."""
    cli = command()
    try:
        code = cli.main(args, prog_name="detector", standalone_mode=False)
    except typer.Abort:
        err("detector: interrupted")
        return 130
    except Exception as e:
        if not _is_usage_error(e):
            raise
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            return 0
        where = ctx.command_path if ctx is not None else "detector"
        err(f"detector: error: {e.format_message()} (see `{where} --help`)")
        return int(e.exit_code)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())

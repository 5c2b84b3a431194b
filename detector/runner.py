"""Terminal side of ``detector run``: logging, progress bars, the printed summary, the exit code.

Kept out of :mod:`detector.cli` so the CLI stays a thin adapter and out of :mod:`detector.pipeline`
so the library never touches the terminal.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from detector import config as cfgmod
from detector.errors import DetectorError
from detector.logging_setup import LOGGER, log, setup
from detector.pipeline import STEPS, FailOn, run
from detector.terminal import safe

SUMMARY_WIDTH = 120


@contextmanager
def _progress(enabled: bool) -> Iterator[object]:
    if not enabled:
        yield None
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task("start", total=len(STEPS))
        seen: list[str] = []

        def advance(step: str) -> None:
            if seen:
                bar.advance(task)
            seen.append(step)
            bar.update(task, description=step)

        yield advance


def run_command(
    paths: Sequence[str],
    out: Path,
    *,
    state: Path | None,
    practitioners: Path | None,
    geoip_dir: Path | None,
    model: Path | None,
    config: Path | None,
    fail_on: str | None,
    pseudonymize: str | None,
    labels: Path | None,
    overrides: Path | None = None,
    log_format: str,
    year: int | None,
    timezone: str | None,
    engine: str = "local",
    spark_master: str | None = None,
    workers: int | None = None,
) -> int:
    """Run the nightly job as the CLI does; return the exit code (0, or 3 under ``--fail-on``).

    SIGTERM (systemd stopping the unit, ``timeout``) unwinds like Ctrl-C, so the staging directory is
    removed and the previous reports stay; under ``--log-format json`` errors are also logged as a
    structured line for the log collector.
    """

    def _terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        interactive = log_format == "text" and sys.stderr.isatty()
        # under cron (no terminal) text logs keep every step, as JSON logs do; a terminal has the progress bar
        setup(log_format, level=logging.WARNING if interactive else logging.INFO)
        rule = FailOn.parse(fail_on)
        cfg = cfgmod.load(config).overridden(
            ingest={"year": year, "timezone": timezone}, engine={"workers": workers}
        )
        with _progress(interactive) as progress:
            result = run(
                list(paths),
                out,
                state_dir=state,
                practitioners=practitioners,
                geoip_dir=geoip_dir,
                model_path=model,
                cfg=cfg,
                fail_on=rule,
                pseudonymize_key=pseudonymize,
                labels=labels,
                overrides=overrides,
                progress=progress,  # type: ignore[arg-type]
                engine=engine,
                spark_master=spark_master,
            )
        from detector.report.summary import print_summary

        # cron mail and pipes get whole lines (the replay table 120 columns); a terminal keeps its width
        piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
        print_summary(
            result.summary, Console(width=SUMMARY_WIDTH if piped else None), reports=str(result.out_dir)
        )
        published = f"reports: {safe(result.out_dir)}"
        if state is not None:
            kept = "unchanged" if result.state_generation is None else f"generation {result.state_generation}"
            published += f"; state: {safe(state)} ({kept})"
        Console(stderr=True, highlight=False, soft_wrap=True).print(published, style="dim", markup=False)
        return result.exit_code
    except DetectorError as e:
        if log_format == "json":
            log(logging.getLogger(LOGGER), logging.ERROR, str(e), exit_code=e.exit_code, step=e.step)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)

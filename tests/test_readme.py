"""The README's "Using it" examples run as written after `make run`; production examples and the
files in deploy/ only use options the commands have."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from detector.cli import command, main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_RUN = ["run", "data/samples/logs", "--out", "out/samples", "--practitioners",
               "data/samples/practitioners.csv", "--geoip-dir", "data/samples/geoip"]  # fmt: skip
"""What `make run` runs (Makefile)."""


def using_it_blocks() -> list[list[list[str]]]:
    """The shell blocks of the README's "Using it" section, as commands (continuations joined, comments cut)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Using it") :]
    section = section[: section.index("\n## ", 3)]
    blocks = []
    for body in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        joined = body.replace("\\\n", " ")
        blocks.append(
            [
                shlex.split(line, comments=True)
                for line in joined.splitlines()
                if shlex.split(line, comments=True)
            ]
        )
    return blocks


def _options(cmd) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}


def check_options(words: list[str]) -> None:
    """``detector SUB ... --opt ...``: every --option exists on SUB."""
    root = command()
    cmd, rest = root, words[1:]
    while rest and hasattr(cmd, "commands") and rest[0] in cmd.commands:
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    assert cmd is not root, f"no command in {words}"
    unknown = [w.split("=")[0] for w in rest if w.startswith("--") and w.split("=")[0] not in _options(cmd)]
    assert not unknown, f"{' '.join(words[:2])}: unknown options {unknown}"


def test_readme_has_both_blocks():
    try_it, production = using_it_blocks()
    assert all(words[0] == ".venv/bin/detector" for words in try_it)
    assert all(words[0] == "detector" for words in production)


@pytest.mark.parametrize("words", using_it_blocks()[1], ids=lambda w: " ".join(w[:2]))
def test_production_examples_use_real_options(words):
    check_options(words)


def _deploy_commands() -> list[list[str]]:
    service = (ROOT / "deploy/detector.service").read_text().replace("\\\n", " ")
    (exec_start,) = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    cron = (ROOT / "deploy/detector.cron").read_text()
    (cron_line,) = [line for line in cron.splitlines() if line and not line.startswith("#")]
    run = cron_line[cron_line.index("/opt/detector") : cron_line.index(" >")]
    return [shlex.split(exec_start.removeprefix("ExecStart=")), shlex.split(run)]


@pytest.mark.parametrize("words", _deploy_commands(), ids=["service", "cron"])
def test_deploy_files_use_real_options_and_the_documented_paths(words):
    assert words[0] == "/opt/detector/.venv/bin/detector"
    check_options(["detector", *words[1:]])
    text = " ".join(words)
    for path in ("/var/lib/detector/state", "/etc/detector/practitioners.csv", "/var/lib/detector/reports"):
        assert path in text


def test_timer_and_logrotate():
    timer = (ROOT / "deploy/detector.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer and "WantedBy=timers.target" in timer
    rotate = (ROOT / "deploy/detector.logrotate").read_text()
    assert (
        "/var/log/detector/" in rotate and "/var/log/detector/" in (ROOT / "deploy/detector.cron").read_text()
    )


@pytest.mark.slow
def test_quick_start_runs_as_written_after_make_run(tmp_path, monkeypatch):
    (tmp_path / "data").symlink_to(ROOT / "data")
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(SAMPLES_RUN) == 0  # make run
    for words in using_it_blocks()[0]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(words[1:])
        assert code == 0, (words, err.getvalue())
        assert (out.getvalue() + err.getvalue()).strip(), words
    assert (tmp_path / "out/block.nft").read_text().strip()

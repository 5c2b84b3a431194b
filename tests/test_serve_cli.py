"""`detector serve` as a command: usage errors exit 2 with one line; the docs list every option and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from detector.cli import app
from detector.config import ServeConfig
from detector.serve.index import network_key
from tests.serve_plans import measure, write_plan

DOC = Path(__file__).resolve().parents[1] / "docs" / "serve.md"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plan", "missing.parquet", "--dovecot-listen", "127.0.0.1:0"], "plan file not found"),
        (["--plan", "PLAN"], "nothing to serve"),
        (["--plan", "PLAN", "--dovecot-listen", "localhost"], "is not HOST:PORT"),
        (["--plan", "PLAN", "--dovecot-listen", "127.0.0.1:99999"], "is not HOST:PORT"),
        (["--plan", "PLAN", "--dovecot-listen", "127.0.0.1:0", "--api-key-file", "nokey"], "API key file"),
        (["--plan", "PLAN", "--dovecot-listen", "127.0.0.1:0", "--control", "CONTROL"], "open_wave"),
        (["--plan", "PLAN", "--dovecot-listen", "192.0.2.1:0"], "cannot listen"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_plan(tmp_path / "PLAN", [measure("block", "100.70.0.1")])
    (tmp_path / "CONTROL").write_text('open_wave = "two"\n')
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:4001", ("127.0.0.1", 4001)),
        ("[::1]:4001", ("::1", 4001)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_listen_addresses(text, expected):
    from detector.serve import parse_listen

    assert parse_listen(text) == expected


def test_every_option_and_key_is_documented():
    text = DOC.read_text()
    cmd = typer.main.get_command(app).commands["serve"]
    for param in cmd.params:
        if param.name != "help":
            assert f"`{param.opts[0]}`" in text, f"{param.opts[0]} not in docs/serve.md"
    for f in dataclasses.fields(ServeConfig):
        assert f"| `{f.name}` | {f.default} |" in text, (
            f"[serve] {f.name} (default {f.default}) not in docs/serve.md"
        )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("203.0.113.7", (4, 32, 0xCB007107)),
        ("203.0.113.0/24", (4, 24, 0xCB0071)),
        ("2001:db8::/32", (6, 32, 0x20010DB8)),
        ("AS64500", (0, 0, 64500)),
        ("as64500", (0, 0, 64500)),
        (" AS64500 ", (0, 0, 64500)),
        ("203.0.113.9/24", (4, 24, 0xCB0071)),  # host bits ignored
        ("203.0.113.0/33", None),
        ("nonsense", None),
        ("", None),
    ],
)
def test_network_keys(text, key):
    assert network_key(text) == key


@pytest.mark.slow
def test_the_command_serves_reloads_on_sighup_and_stops_on_sigterm(tmp_path):
    import http.client
    import json
    import signal
    import socket
    import subprocess
    import sys
    import time

    plan = write_plan(tmp_path / "recommendations.parquet", [measure("block", "100.70.0.1")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    detector = Path(sys.executable).with_name("detector")
    proc = subprocess.Popen(
        [
            str(detector),
            "serve",
            "--plan",
            str(plan),
            "--dovecot-listen",
            f"127.0.0.1:{port}",
            "--log-format",
            "json",
            "--now",
            "2026-11-20T12:00:00",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                health = json.loads(conn.getresponse().read())
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "the service did not start"
                time.sleep(0.1)
        assert health["measures"] == 1
        proc.send_signal(signal.SIGHUP)
        while True:
            conn.request("GET", "/metrics")
            if 'detector_serve_reloads_total{result="ok"} 1' in conn.getresponse().read().decode():
                break
            assert time.time() < deadline, "no reload after SIGHUP"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        records = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
        assert [r["msg"] for r in records][:1] == ["serving"]
        assert "plan loaded" in [r["msg"] for r in records]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

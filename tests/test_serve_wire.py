"""Both policy protocols on loopback, against a service running in a thread."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.config import ServeConfig
from detector.serve import Background, ServeOptions
from detector.serve.service import STATE_FILE
from tests.serve_plans import NOW, measure, write_plan

ROWS = [
    measure("block", "100.70.0.0/24"),
    measure("restrict_account", "alice@example.org", allowed=["100.64.7.0/24"]),
    measure("reset_credentials", "bob@example.org"),
]


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    return write_plan(tmp_path / "recommendations.parquet", ROWS)


def options(plan: Path, **kw) -> ServeOptions:
    kw.setdefault("cfg", ServeConfig(reload_check_seconds=0.05))
    return ServeOptions(
        plan=plan, dovecot_listen=("127.0.0.1", 0), postfix_listen=("127.0.0.1", 0), now=NOW, **kw
    )


def post(conn: http.client.HTTPConnection, command: str, doc, headers=None) -> tuple[int, dict]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    conn.request(
        "POST", f"/?command={command}", body, {"Content-Type": "application/json", **(headers or {})}
    )
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"{}")


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def postfix(port: int, *requests: dict) -> list[str]:
    data = b"".join(("".join(f"{k}={v}\n" for k, v in r.items()) + "\n").encode() for r in requests)
    return [a for a in raw(port, data).decode().split("\n\n") if a]


def login(user: str, ip: str, **extra) -> dict:
    return {"login": user, "remote": ip, "protocol": "imap", "pwhash": "abc", "session_id": "s1", **extra}


def test_dovecot_allow_and_report_on_one_keep_alive_connection(plan_file):
    with Background(options(plan_file)) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        assert post(c, "allow", login("carol@example.org", "100.70.0.9")) == (
            200,
            {"status": -1, "msg": "access from this network is suspended"},
        )
        assert post(c, "allow", login("alice@example.org", "100.64.7.3"))[1]["status"] == 0
        assert post(c, "allow", login("alice@example.org", "100.99.0.1"))[1]["status"] == -1
        assert (
            post(
                c,
                "report",
                {**login("x@example.org", "100.99.0.1"), "success": False, "policy_reject": False},
            )[0]
            == 200
        )
        assert s.engine.by_source.count(ipaddress.ip_address("100.99.0.1"), s.now()) == 1


def test_reset_account_through_reports(plan_file):
    with Background(options(plan_file)) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        bob = "bob@example.org"
        post(c, "report", {**login(bob, "100.64.1.1", pwhash="0aa"), "success": True, "policy_reject": False})
        assert postfix(
            s.ports["postfix"],
            {"request": "smtpd_access_policy", "client_address": "100.64.1.1", "sasl_username": bob},
        ) == ["action=REJECT 5.7.1 sending is suspended until the password is changed"]
        post(c, "report", {**login(bob, "100.64.1.1", pwhash="0bb"), "success": True, "policy_reject": False})
        assert post(c, "allow", login(bob, "100.64.1.1", pwhash="0aa"))[1]["status"] == -1
        assert post(c, "allow", login(bob, "100.64.1.1", pwhash="0bb"))[1]["status"] == 0
        assert postfix(
            s.ports["postfix"],
            {"request": "smtpd_access_policy", "client_address": "100.64.1.1", "sasl_username": bob},
        ) == ["action=DUNNO"]


def test_reset_state_survives_a_restart(plan_file, tmp_path):
    state = tmp_path / "state"
    with Background(options(plan_file, state_dir=state)) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        for h in ("0aa", "0bb"):
            post(c, "report", {**login("bob@example.org", "100.64.1.1", pwhash=h), "success": True})
    assert json.loads((state / STATE_FILE).read_text())["resets"]["bob@example.org"]["stolen"] == "0aa"
    with Background(options(plan_file, state_dir=state)) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        assert post(c, "allow", login("bob@example.org", "100.64.1.1", pwhash="0aa"))[1]["status"] == -1


def test_api_key_is_checked(plan_file, tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    with Background(options(plan_file, api_key_file=key)) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        assert post(c, "allow", login("carol@example.org", "100.70.0.9"))[0] == 401
        assert post(c, "allow", login("carol@example.org", "100.70.0.9"), {"X-API-Key": "wrong"})[0] == 401
        assert (
            post(c, "allow", login("carol@example.org", "100.70.0.9"), {"X-API-Key": "s3cret"})[1]["status"]
            == -1
        )


def test_log_only_answers_allow_but_counts_the_decision(plan_file):
    with Background(options(plan_file, log_only=True)) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        assert post(c, "allow", login("carol@example.org", "100.70.0.9"))[1] == {"status": 0, "msg": ""}
        answers = postfix(
            s.ports["postfix"],
            {"request": "smtpd_access_policy", "client_address": "100.70.0.9", "sasl_username": "c"},
        )
        assert answers == ["action=WARN detector would refuse: block"]
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        assert 'detector_serve_decisions_total{outcome="reject",protocol="dovecot",rule="block"} 1' in text
        assert "detector_serve_log_only 1" in text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 0),
        (b"not json", 0),
        (b"[1,2]", 0),
        (b'{"login": 5}', 0),
        (b'{"login": "\\u0000"}', 0),
        (b"\xff\xfe", 0),
    ],
)
def test_garbage_bodies_fail_open(plan_file, body, status):
    with Background(options(plan_file)) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        assert post(c, "allow", body) == (200, {"status": status, "msg": ""})


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /?command=allow HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
        b"POST /?command=allow HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /?command=allow HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /?command=allow HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
        b"POST /?command=allow HTTP/1.1\r\n" + b"".join(b"H%d: x\r\n" % i for i in range(100)) + b"\r\n",
    ],
    ids=["no-http", "huge-body", "chunked", "negative-length", "huge-header", "many-headers"],
)
def test_malformed_http_is_answered_and_closed(plan_file, request_bytes):
    with Background(options(plan_file)) as s:
        answer = raw(s.ports["dovecot"], request_bytes)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b'{"status":0' in answer
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        assert post(c, "allow", login("carol@example.org", "100.70.0.9"))[1]["status"] == -1  # still serving


def test_expect_100_continue(plan_file):
    with Background(options(plan_file)) as s:
        body = json.dumps(login("carol@example.org", "100.70.0.9")).encode()
        head = b"POST /?command=allow HTTP/1.1\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
        answer = raw(s.ports["dovecot"], head % len(body) + body)
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        assert answer.endswith(b'{"status":-1,"msg":"access from this network is suspended"}')


def test_health_and_metrics(plan_file):
    with Background(options(plan_file)) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        c.request("GET", "/health")
        health = json.loads(c.getresponse().read())
        assert health["status"] == "ok" and health["measures"] == 3 and health["mode"] == "enforce"
        c.request("GET", "/metrics")
        r = c.getresponse()
        assert r.getheader("Content-Type").startswith("text/plain")
        text = r.read().decode()
        assert 'detector_serve_plan_measures{action="block"} 1' in text
        assert 'detector_serve_decision_seconds_bucket{le="+Inf"}' in text


@pytest.mark.parametrize(
    ("request_attrs", "action"),
    [
        (
            {
                "request": "smtpd_access_policy",
                "client_address": "100.70.0.9",
                "sasl_username": "c@example.org",
            },
            "REJECT 5.7.1 access from this network is suspended",
        ),
        (
            {"request": "smtpd_access_policy", "client_address": "100.70.0.9", "sasl_username": ""},
            "DUNNO",
        ),  # inbound mail, no login
        (
            {
                "request": "smtpd_access_policy",
                "client_address": "100.71.0.9",
                "sasl_username": "c@example.org",
            },
            "DUNNO",
        ),
        (
            {
                "request": "smtpd_access_policy",
                "client_address": "100.99.0.1",
                "sasl_username": "alice@example.org",
            },
            "REJECT 5.7.1 access to this account is limited to its usual networks",
        ),
        (
            {
                "request": "smtpd_access_policy",
                "client_address": "100.64.7.1",
                "sasl_username": "alice@example.org",
            },
            "DUNNO",
        ),
        ({"request": "junk", "client_address": "100.70.0.9", "sasl_username": "c"}, "DUNNO"),
        ({"client_address": "100.70.0.9"}, "DUNNO"),
        (
            {
                "request": "smtpd_access_policy",
                "client_address": "not-an-ip",
                "sasl_username": "bob@example.org\x01",
            },
            "DUNNO",
        ),
    ],
)
def test_postfix_policy(plan_file, request_attrs, action):
    with Background(options(plan_file)) as s:
        assert postfix(s.ports["postfix"], request_attrs) == [f"action={action}"]


def test_postfix_many_requests_per_connection_and_malformed_lines(plan_file):
    with Background(options(plan_file)) as s:
        blocked = {"request": "smtpd_access_policy", "client_address": "100.70.0.9", "sasl_username": "c"}
        data = (
            b"request=smtpd_access_policy\nno equals sign\n\n"
            + b"".join(f"{k}={v}\n".encode() for k, v in blocked.items())
            + b"\n"
        )
        assert raw(s.ports["postfix"], data).decode().split("\n\n")[:2] == [
            "action=DUNNO",
            "action=REJECT 5.7.1 access from this network is suspended",
        ]
        assert raw(s.ports["postfix"], b"request=" + b"x" * 10000 + b"\n\n") == b"action=DUNNO\n\n"


def test_plan_and_control_reload_on_change(plan_file, tmp_path):
    control = tmp_path / "control.toml"
    with Background(options(plan_file, control_file=control)) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        assert post(c, "allow", login("dora@example.org", "100.72.0.1"))[1]["status"] == 0
        tmp = tmp_path / "new.parquet"
        write_plan(
            tmp, [*ROWS, measure("block", "100.72.0.0/24"), measure("reopen", "late@example.org", wave=2)]
        )
        tmp.replace(plan_file)  # how a run publishes: a rename
        deadline = time.time() + 60  # a loaded CI machine: the loop ends as soon as it reloads
        while (
            post(c, "allow", login("dora@example.org", "100.72.0.1"))[1]["status"] == 0
            and time.time() < deadline
        ):
            time.sleep(0.05)
        assert post(c, "allow", login("dora@example.org", "100.72.0.1"))[1]["status"] == -1
        control.write_text("open_wave = 1\n")
        deadline = time.time() + 60
        while (
            post(c, "allow", login("late@example.org", "100.64.0.1"))[1]["status"] == 0
            and time.time() < deadline
        ):
            time.sleep(0.05)
        assert (
            post(c, "allow", login("late@example.org", "100.64.0.1"))[1]["msg"]
            == "access to this account has not been reopened yet"
        )
        plan_file.write_bytes(b"broken")  # a half-written plan: the old one stays in force
        deadline = time.time() + 60
        while s.metrics.get("reloads_total", result="failed") < 1 and time.time() < deadline:
            time.sleep(0.05)
        assert post(c, "allow", login("dora@example.org", "100.72.0.1"))[1]["status"] == -1
        assert s.metrics.get("reloads_total", result="failed") >= 1


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory):
    plan = write_plan(tmp_path_factory.mktemp("plan") / "recommendations.parquet", ROWS)
    with Background(options(plan)) as s:
        yield s


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000), st.sampled_from(["dovecot", "postfix"]))
def test_random_bytes_never_stop_the_service(shared_service, data, listener):
    with socket.create_connection(("127.0.0.1", shared_service.ports[listener]), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    c = http.client.HTTPConnection("127.0.0.1", shared_service.ports["dovecot"], timeout=5)
    assert post(c, "allow", login("carol@example.org", "100.70.0.9"))[1]["status"] == -1
    assert shared_service.metrics.get("errors_total", kind="internal") == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=12))
def test_any_postfix_attributes_get_an_action(shared_service, attrs):
    lines = "".join(f"{k}={v}\n" for k, v in attrs.items() if "\n" not in k + v and "=" not in k)
    answer = raw(shared_service.ports["postfix"], (lines + "\n").encode())
    assert answer.startswith(b"action=") and answer.endswith(b"\n\n")
    action = answer.decode().split("\n", 1)[0]
    assert action in ("action=DUNNO",) or action.startswith("action=REJECT 5.7.1 ")


def test_an_operators_override_is_honoured_and_reloaded(plan_file, tmp_path):
    """`detector override lift` on a block: the service stops refusing its addresses, without a run."""
    overrides = tmp_path / "overrides.toml"
    overrides.write_text("")
    block = measure("block", "100.70.0.0/24")["measure_id"]
    with Background(options(plan_file, overrides_file=overrides)) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.ports["dovecot"], timeout=5)
        assert post(c, "allow", login("dora@example.org", "100.70.0.9"))[1]["status"] == -1
        overrides.write_text(
            f'[[override]]\nmeasure = "{block}"\naction = "lift"\nby = "soc"\nwhy = "partner NAT"\n'
            f"at = {NOW.isoformat()}\n"
        )
        deadline = time.time() + 5
        while post(c, "allow", login("dora@example.org", "100.70.0.9"))[1]["status"] != 0:
            assert time.time() < deadline, "the lifted block is still in force"
            time.sleep(0.05)

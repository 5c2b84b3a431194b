"""End to end: a real Dovecot (Debian's dovecot-core and dovecot-imapd) asks `detector serve`.

The test starts its own Dovecot on loopback with a temporary configuration: IMAP on a free port,
a passwd-file of test users, ``auth_policy_server_url`` pointing at the service. Real IMAP logins
(``imaplib``) are refused, accepted or tarpitted as the plan says. Clients on 127.0.0.1 are in
``login_trusted_networks`` and give an external address with the IMAP ID command
(``x-originating-ip``); Dovecot applies no tarpit to trusted clients, so the tarpit is checked
from 127.0.0.2. The packages are installed by ``make test-deps`` (``make test``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import imaplib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from detector.config import ServeConfig
from detector.serve import Background, ServeOptions
from tests.serve_plans import NOW, measure, write_plan

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
IMAP_BINARY = Path("/usr/lib/dovecot/imap")
NONCE = "detector-test-nonce"
API_KEY = "k3y-for-tests"

pytestmark = [
    pytest.mark.skipif(not Path(DOVECOT).exists(), reason="dovecot-core is not installed (make test-deps)"),
    pytest.mark.skipif(not IMAP_BINARY.exists(), reason="dovecot-imapd is not installed (make test-deps)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting Dovecot needs root"),
]

USERS = {"alice": "alice-pw", "bob": "stolen-pw", "carol": "carol-pw", "dave": "dave-pw"}
ROWS = [
    measure("block", "100.70.0.0/24"),
    measure("restrict_account", "alice", allowed=["100.64.7.0/24"]),
    measure("reset_credentials", "bob"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policy_hash(user: str, password: str, truncate: int = 12) -> str:
    """Dovecot's ``%{hashed_password}``: sha256(nonce, user NUL, password), cut to ``truncate`` bits."""
    digest = hashlib.sha256(NONCE.encode() + user.encode() + b"\0" + password.encode()).digest()
    value = int.from_bytes(digest, "big") >> (256 - truncate)
    return value.to_bytes((truncate + 7) // 8, "big").hex()


def write_passwd(path: Path, users: dict[str, str]) -> None:
    path.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users.items()))
    os.utime(path, (time.time() + 1, time.time() + 1))  # a new mtime even within the same second


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_cache_size = 0
auth_verbose = yes
login_trusted_networks = 127.0.0.1/32
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:{root}/mail/%u
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
auth_policy_server_url = http://127.0.0.1:{policy_port}/
auth_policy_server_api_header = X-API-Key:{api_key}
auth_policy_hash_nonce = {nonce}
auth_policy_request_attributes = login=%{{requested_username}} pwhash=%{{hashed_password}} remote=%{{rip}} protocol=%s session_id=%{{session}}
auth_policy_check_before_auth = yes
auth_policy_check_after_auth = yes
auth_policy_report_after_auth = yes
"""


class Client(imaplib.IMAP4):
    """imaplib from a chosen loopback address, optionally announcing an external one (IMAP ID)."""

    def __init__(self, port: int, source: str = "127.0.0.1", origin: str | None = None) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=30)
        if origin is not None:
            self.xatom("ID", f'("x-originating-ip" "{origin}")')

    def _create_socket(self, timeout):  # type: ignore[override]
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


def try_login(port: int, user: str, password: str, **kw) -> tuple[bool, float]:
    started = time.monotonic()
    c = Client(port, **kw)
    try:
        c.login(user, password)
        ok = True
    except imaplib.IMAP4.error:
        ok = False
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            c.logout()
    return ok, time.monotonic() - started


@pytest.fixture(scope="module")
def world():
    root = Path(tempfile.mkdtemp(prefix="detector-dovecot-"))
    os.chmod(root, 0o755)
    (root / "mail").mkdir(mode=0o777)
    os.chmod(root / "mail", 0o777)
    write_passwd(root / "passwd", USERS)
    plan = write_plan(root / "recommendations.parquet", ROWS)
    key = root / "api-key"
    key.write_text(API_KEY)
    cfg = ServeConfig(source_failures=3, tarpit_seconds=2, prefix_failures=0, account_failures=0)
    options = ServeOptions(plan=plan, dovecot_listen=("127.0.0.1", 0), now=NOW, api_key_file=key, cfg=cfg)
    with Background(options) as service:
        imap_port = free_port()
        conf = root / "dovecot.conf"
        conf.write_text(
            CONFIG.format(
                root=root,
                imap_port=imap_port,
                policy_port=service.ports["dovecot"],
                api_key=API_KEY,
                nonce=NONCE,
            )
        )
        errors = root / "start.err"
        with errors.open("w") as err:  # not a pipe: the daemon keeps its descriptors open
            started = subprocess.run(
                [DOVECOT, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )
        if started.returncode != 0:
            text = errors.read_text().strip()
            shutil.rmtree(root, ignore_errors=True)
            pytest.fail(f"dovecot did not start: {text}")
        try:
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", imap_port), 0.5).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield {"root": root, "port": imap_port, "service": service}
        finally:
            subprocess.run([DOVECOT, "-c", str(conf), "stop"], stdin=subprocess.DEVNULL, capture_output=True)
            shutil.rmtree(root, ignore_errors=True)


def log_tail(world) -> str:
    return "\n".join((world["root"] / "dovecot.log").read_text().splitlines()[-15:])


def decisions(service, rule: str) -> float:
    return service.metrics.get("decisions_total", protocol="dovecot", outcome="reject", rule=rule)


def test_a_user_outside_the_plan_logs_in(world):
    assert try_login(world["port"], "carol", "carol-pw", origin="100.64.1.1")[0]
    assert not try_login(world["port"], "carol", "wrong", origin="100.64.1.1")[0]


def test_a_blocked_network_is_refused(world):
    before = decisions(world["service"], "block")
    assert not try_login(world["port"], "carol", "carol-pw", origin="100.70.0.5")[0]
    assert decisions(world["service"], "block") == before + 1


def test_a_restricted_account_only_from_its_networks(world):
    assert not try_login(world["port"], "alice", "alice-pw", origin="100.99.0.1")[0]
    assert try_login(world["port"], "alice", "alice-pw", origin="100.64.7.20")[0]
    assert try_login(world["port"], "alice", "alice-pw")[0]  # 127.0.0.1: the provider's own


@pytest.mark.slow  # waits for passwd-file's once-a-second change check
def test_a_reset_account_refuses_the_stolen_password_and_takes_the_new_one(world):
    assert policy_hash("bob", "stolen-pw") != policy_hash("bob", "new-pw")  # 12 bits: check they differ
    port, service = world["port"], world["service"]
    assert try_login(port, "bob", "stolen-pw", origin="100.64.2.2")[
        0
    ]  # before the change: the owner is not locked out
    time.sleep(0.2)  # the report after authentication is asynchronous
    assert service.engine.resets["bob"].stolen == policy_hash("bob", "stolen-pw")
    write_passwd(world["root"] / "passwd", {**USERS, "bob": "new-pw"})
    time.sleep(1.1)  # passwd-file is checked for changes at most once a second
    assert try_login(port, "bob", "new-pw", origin="100.64.2.2")[0], log_tail(world)
    time.sleep(0.2)
    assert service.engine.resets["bob"].changed_at is not None
    before = decisions(service, "stolen_password")
    assert not try_login(port, "bob", "stolen-pw", origin="100.64.2.2")[0]
    assert decisions(service, "stolen_password") == before + 1
    assert try_login(port, "bob", "new-pw", origin="100.64.2.2")[0]


def test_failures_reported_by_dovecot_tarpit_the_source(world):
    port, service = world["port"], world["service"]
    conn = http.client.HTTPConnection("127.0.0.1", service.ports["dovecot"], timeout=5)
    for i in range(3):  # three failures from 127.0.0.2, as Dovecot's reports carry them
        doc = {
            "login": f"u{i}",
            "remote": "127.0.0.2",
            "protocol": "imap",
            "success": False,
            "policy_reject": False,
        }
        conn.request("POST", "/?command=report", json.dumps(doc), {"X-API-Key": API_KEY})
        conn.getresponse().read()
    ok, seconds = try_login(port, "dave", "dave-pw", source="127.0.0.2")
    assert ok and seconds >= 2, f"login took {seconds:.2f} s"
    ok, seconds = try_login(port, "dave", "dave-pw", origin="100.64.3.3")
    assert ok and seconds < 1.5

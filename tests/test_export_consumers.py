"""Exports loaded by their real consumers: nft, postmap, Dovecot (doveconf, doveadm auth test) and
CrowdSec (cscli decisions import against a local API started by the test).

The Debian packages are installed by ``.ci/test-deps`` (run by ``make test`` as root); without them
each test skips naming the missing package. Dovecot and CrowdSec run on loopback only, from a
temporary directory, and are stopped by the fixture that started them.
"""

import json
import os
import shutil
import socket
import subprocess
import time
from datetime import timedelta

import polars as pl
import pytest

from detector.recommend.export import render
from detector.schema import RECOMMENDATION_SCHEMA
from detector.simulate.geodb import write_geoip_databases
from tests.recommend_frames import NOW
from tests.test_export import AS_NETWORKS, BASE, ROWS, body


def need(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        pytest.skip(f"{binary} not found: install the Debian package {package} (make test-deps)")
    return path


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} is started as root by this test (run as root, as CI does)")


HOSTILE = [
    {"measure_id": "H1", "action": "restrict_account", "target_type": "account",
     "target": "carol@example.org:::::::allow_nets=0.0.0.0/0 x", "allowed_networks": ["198.51.100.0/24"]},
    {"measure_id": "H2", "action": "lock_account", "target_type": "account", "target": "dave@example.org\nbob@example.org"},
    {"measure_id": "H3", "action": "block", "target_type": "cidr", "target": "0.0.0.0/0"},
    {"measure_id": "H4", "action": "block", "target_type": "ip", "target": "9.9.9.8>"},
    {"measure_id": "H5", "action": "block", "target_type": "ip", "target": "fe80::1%eth0"},
    {"measure_id": "R1", "action": "reset_credentials", "target_type": "account", "target": "rita@example.org",
     "expires_at": None},
]  # fmt: skip
pytestmark = pytest.mark.slow  # real daemons: a few seconds each on an idle machine

PLAN = pl.DataFrame([{**BASE, **r} for r in [*ROWS, *HOSTILE]], schema=RECOMMENDATION_SCHEMA)


# --- nftables and Postfix ---------------------------------------------------------------------


def test_nftables_export_is_accepted_by_nft(tmp_path):
    nft = need("nft", "nftables")
    for plan in (PLAN, PLAN.head(0)):
        f = tmp_path / "plan.nft"
        f.write_text(render(plan, "nftables", now=NOW).text)
        r = subprocess.run([nft, "-c", "-f", str(f)], capture_output=True, text=True)
        if r.returncode != 0 and "Operation not permitted" in r.stderr:
            pytest.skip("nft -c needs CAP_NET_ADMIN here")
        assert r.returncode == 0, r.stderr


def test_postfix_cidr_table_answers_postmap(tmp_path):
    postmap = need("postmap", "postfix")
    (tmp_path / "main.cf").write_text("")  # postmap reads a configuration directory first
    table = tmp_path / "detector_access"
    table.write_text(render(PLAN, "postfix", now=NOW).text)
    cases = {
        "203.0.113.77": True,  # inside a blocked range
        "198.51.100.7": True,
        "2001:db8:1:2::1": True,
        "192.0.2.9": True,  # an SMTP-only block
        "192.0.2.10": False,  # an IMAP-only block
        "192.0.2.11": False,  # expired
        "8.8.8.8": False,  # 0.0.0.0/0 was skipped
    }
    for addr, hit in cases.items():
        r = subprocess.run(
            [postmap, "-c", str(tmp_path), "-q", addr, f"cidr:{table}"], capture_output=True, text=True
        )
        assert (r.returncode == 0 and r.stdout.startswith("REJECT 5.7.1")) == hit, (addr, r.stdout, r.stderr)


# --- Dovecot ----------------------------------------------------------------------------------

USERS = {
    "alice@example.org": "alice-pw",  # restricted on IMAP to 198.51.100.0/24, AS64600, 2001:db8:9::/48
    "bob@example.org": "bob-pw",  # in no measure
    "carol@example.org": "carol-pw",  # the real account a forged name tries to open
    "mallory@example.org": "mallory-pw",  # locked
    "rita@example.org": "stolen-pw",  # reset: the attacker knows this one
}


def _users_file(path, users):
    path.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users.items()))


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory):
    """A Dovecot auth service with the export's snippet included before the site's own passdb."""
    binary = need("dovecot", "dovecot-core")
    need_root("dovecot")
    root = tmp_path_factory.mktemp("dv")
    export_dir = root / "detector"
    export_dir.mkdir()
    geoip = root / "geoip"
    write_geoip_databases(geoip, AS_NETWORKS, 1_735_689_600)
    _users_file(root / "users", USERS)
    hashes = root / "hashes"
    _users_file(hashes, {"rita@example.org": "stolen-pw"})
    done = render(
        PLAN,
        "dovecot",
        now=NOW,
        asn_db=geoip / "GeoLite2-ASN.mmdb",
        dovecot_dir=str(export_dir),
        password_hashes={"rita@example.org": "{PLAIN}stolen-pw"},
    )
    for name, text in done.files.items():
        (export_dir / name).write_text(text)
    conf = root / "dovecot.conf"
    conf.write_text(
        f"""base_dir = {root}/run
state_dir = {root}/state
protocols =
listen = 127.0.0.1
log_path = {root}/log
ssl = no
default_internal_user = root
default_internal_group = root
default_login_user = root
!include {export_dir}/detector.conf
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = static
  args = uid=root gid=root home={root}/home/%u
}}
service auth {{
  user = root
}}
"""
    )
    check = subprocess.run(
        [shutil.which("doveconf") or "doveconf", "-c", str(conf), "-n"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 20
    while not (root / "run" / "auth-client").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"dovecot did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.1)
    yield {"conf": conf, "root": root, "tally": done.tally, "check": check.stdout}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def auth(dovecot, user, password, rip, service="imap"):
    r = subprocess.run(
        [
            "doveadm",
            "-c",
            str(dovecot["conf"]),
            "auth",
            "test",
            "-x",
            f"service={service}",
            "-x",
            f"rip={rip}",
            user,
            password,
        ],
        capture_output=True,
        text=True,
    )
    return "auth succeeded" in r.stdout


def test_doveconf_loads_the_snippet(dovecot):
    text = dovecot["check"]
    assert text.count("result_success = return-fail") == 3
    assert "username_format=%{service}/%{user}" in text


@pytest.mark.parametrize(
    ("rip", "service", "ok"),
    [
        ("198.51.100.7", "imap", False),  # a blocked address (every service)
        ("203.0.113.77", "pop3", False),  # inside a blocked range: one entry, not 256 addresses
        ("2001:db8:1:2::9", "imap", False),  # IPv6 range
        ("100.64.0.200", "imap", False),  # a blocked AS, expanded into its prefixes
        ("192.0.2.10", "imap", False),  # an IMAP-only block ...
        ("192.0.2.10", "pop3", True),  # ... leaves POP3 open
        ("192.0.2.9", "smtp", False),  # an SMTP-only block reaches Postfix SASL through Dovecot
        ("192.0.2.11", "imap", True),  # expired
        ("8.8.8.8", "imap", True),  # 0.0.0.0/0 was never written
    ],
)
def test_dovecot_refuses_blocked_networks(dovecot, rip, service, ok):
    assert auth(dovecot, "bob@example.org", "bob-pw", rip, service) is ok


@pytest.mark.parametrize(
    ("rip", "service", "ok"),
    [
        ("8.8.8.8", "imap", False),  # outside its networks
        ("2001:db8:8::1", "imap", False),
        ("198.51.100.20", "imap", True),  # inside: its own network
        ("81.56.7.8", "imap", True),  # inside: its ISP's AS, expanded
        ("2001:db8:9::1", "imap", True),
        ("10.20.30.40", "imap", True),  # private ranges stay open
        ("8.8.8.8", "pop3", True),  # the restriction is on IMAP only
    ],
)
def test_dovecot_restricts_an_account_to_its_networks(dovecot, rip, service, ok):
    assert auth(dovecot, "alice@example.org", "alice-pw", rip, service) is ok


def test_dovecot_restriction_still_needs_the_password(dovecot):
    assert not auth(dovecot, "alice@example.org", "wrong", "198.51.100.20")


def test_dovecot_locked_account_is_refused_everywhere(dovecot):
    for rip in ("8.8.8.8", "10.0.0.1", "198.51.100.20"):
        assert not auth(dovecot, "mallory@example.org", "mallory-pw", rip)


def test_dovecot_accounts_outside_the_plan_and_forged_names_are_unaffected(dovecot):
    assert auth(dovecot, "bob@example.org", "bob-pw", "8.8.8.8")
    assert not auth(dovecot, "bob@example.org", "wrong", "8.8.8.8")
    assert auth(dovecot, "carol@example.org", "carol-pw", "8.8.8.8")  # no injected entry for carol
    assert auth(dovecot, "bob@example.org", "bob-pw", "8.8.4.4", "pop3")  # no injected line for bob
    skipped = "\n".join(dovecot["tally"].skipped)
    assert "carol@example.org:::::::allow_nets" in skipped and "dave@example.org\\nbob@example.org" in skipped


def test_dovecot_reset_refuses_the_stolen_password_and_accepts_the_new_one(dovecot):
    assert not auth(dovecot, "rita@example.org", "stolen-pw", "8.8.8.8")
    _users_file(dovecot["root"] / "users", {**USERS, "rita@example.org": "owners-new-pw"})
    try:
        time.sleep(1.1)  # passwd-file is re-read when its mtime changes (one-second resolution)
        assert auth(dovecot, "rita@example.org", "owners-new-pw", "8.8.8.8")
        assert not auth(dovecot, "rita@example.org", "stolen-pw", "8.8.8.8")
    finally:
        _users_file(dovecot["root"] / "users", USERS)


# --- CrowdSec ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def crowdsec(tmp_path_factory):
    """A CrowdSec local API (no agent, no online API) on a free loopback port, and its cscli."""
    daemon = need("crowdsec", "crowdsec")
    cscli = need("cscli", "crowdsec")
    need_root("crowdsec")
    root = tmp_path_factory.mktemp("cs")
    (root / "data").mkdir()
    port = _free_port()
    config = root / "config.yaml"
    config.write_text(
        f"""common:
  daemonize: false
  log_media: file
  log_level: info
  log_dir: {root}/
  working_dir: .
config_paths:
  config_dir: {root}/
  data_dir: {root}/data/
  simulation_path: /etc/crowdsec/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  plugin_dir: /usr/lib/crowdsec/plugins/
cscli:
  output: json
db_config:
  type: sqlite
  db_path: {root}/data/crowdsec.db
api:
  client:
    credentials_path: {root}/local_api_credentials.yaml
  server:
    listen_uri: 127.0.0.1:{port}
    profiles_path: /etc/crowdsec/profiles.yaml
prometheus:
  enabled: false
"""
    )
    base = [cscli, "-c", str(config)]
    add = subprocess.run(
        [*base, "machines", "add", "detector-test", "--password", "detector-test-password",
         "-f", str(root / "local_api_credentials.yaml"), "--url", f"http://127.0.0.1:{port}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    proc = subprocess.Popen(
        [daemon, "-c", str(config), "-no-cs"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the CrowdSec local API did not start")
        time.sleep(0.2)
    version = subprocess.run([cscli, "version"], capture_output=True, text=True)
    yield {"cscli": base, "root": root, "version": version.stdout + version.stderr}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def decisions(cs):
    r = subprocess.run(
        [*cs["cscli"], "decisions", "list", "-a", "-o", "json"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return {(d["scope"], d["value"]) for a in json.loads(r.stdout or "null") or [] for d in a["decisions"]}


def test_crowdsec_imports_every_decision_one_file_per_scope(crowdsec, tmp_path):
    files = render(PLAN, "crowdsec", now=NOW).files
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    script = (tmp_path / "import.sh").read_text()
    for line in body(script):
        if line.startswith("cscli decisions import"):
            args = line.split()[1:]
            r = subprocess.run([*crowdsec["cscli"], *args], capture_output=True, text=True, cwd=tmp_path)
            assert r.returncode == 0, (line, r.stderr)
    written = {
        (d["scope"], d["value"]) for n in ("ip.json", "range.json", "as.json") for d in json.loads(files[n])
    }
    assert ("Range", "203.0.113.0/24") in written and ("AS", "64666") in written
    assert written <= decisions(crowdsec)
    assert not any(v in ("0.0.0.0/0", "9.9.9.8>") for _, v in decisions(crowdsec))


def test_crowdsec_1_4_refuses_a_mixed_scope_file(crowdsec, tmp_path):
    """Why the export writes one file per scope: 1.4 applies --scope (default Ip) to every line."""
    if "v1.4." not in crowdsec["version"]:
        pytest.skip(f"checks CrowdSec 1.4's behaviour; this is {crowdsec['version'].splitlines()[0]}")
    mixed = tmp_path / "mixed.json"
    mixed.write_text(
        json.dumps([{"duration": "1h", "scope": "AS", "type": "ban", "value": "64999", "reason": "x"}])
    )
    r = subprocess.run(
        [*crowdsec["cscli"], "decisions", "import", "-i", str(mixed)], capture_output=True, text=True
    )
    assert r.returncode != 0


def test_crowdsec_files_follow_the_documented_import_format():
    """Current CrowdSec (1.7) documents ``duration, reason, scope, type, value`` per decision."""
    files = render(PLAN, "crowdsec", now=NOW + timedelta(0)).files
    for name in ("ip.json", "range.json", "as.json"):
        for d in json.loads(files[name]):
            assert set(d) == {"duration", "reason", "scope", "type", "value"}

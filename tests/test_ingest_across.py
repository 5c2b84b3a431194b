"""A Postfix SASL failure in syslog and the Dovecot auth line naming its account in Dovecot's own log."""

from __future__ import annotations

import pytest
from ingest_helpers import write_log

from detector.config import IngestConfig
from detector.ingest import ingest

PF = [
    "Nov 23 03:14:15 mx postfix/submission/smtpd[2001]: connect from unknown[203.0.113.9]",
    "Nov 23 03:14:17 mx postfix/submission/smtpd[2001]: warning: unknown[203.0.113.9]: SASL PLAIN authentication failed: UGFzc3dvcmQ6",
    "Nov 23 03:14:17 mx postfix/submission/smtpd[2001]: disconnect from unknown[203.0.113.9] ehlo=1 auth=0/1 quit=1 commands=2/3",
]
SYSLOG_AUTH = "Nov 23 {t} {host} dovecot: auth: passwd-file(alice@example.org,{ip}): Password mismatch"
LOG_PATH_AUTH = "Nov 23 {t} auth: Info: passwd-file(alice@example.org,{ip}): Password mismatch"


def _ingest(tmp_path, files: dict[str, list[str]]):
    paths = [str(write_log(tmp_path / name, lines)) for name, lines in files.items()]
    result = ingest(paths, IngestConfig(year=2026), tmp_path / "work")
    return result.events.collect(), result


@pytest.mark.parametrize(
    ("dovecot_line", "merged"),
    [
        (SYSLOG_AUTH.format(t="03:14:17", host="mx", ip="203.0.113.9"), True),
        (LOG_PATH_AUTH.format(t="03:14:17", ip="203.0.113.9"), True),  # log_path lines name no host
        (SYSLOG_AUTH.format(t="03:14:16", host="mx", ip="203.0.113.9"), True),
        (SYSLOG_AUTH.format(t="03:14:17", host="imap2", ip="203.0.113.9"), False),  # another server
        (SYSLOG_AUTH.format(t="03:14:25", host="mx", ip="203.0.113.9"), False),  # too far apart
        (SYSLOG_AUTH.format(t="03:14:17", host="mx", ip="198.51.100.1"), False),  # another client
    ],
)
def test_the_two_lines_of_one_attempt_in_two_files_count_once(tmp_path, dovecot_line, merged):
    events, result = _ingest(tmp_path, {"mail.log": PF, "dovecot.log": [dovecot_line]})
    postfix = events.filter(events["daemon"] == "postfix").row(0, named=True)
    if merged:
        assert len(events) == 1 and result.event_count == 1
        assert (postfix["account"], postfix["reason"]) == ("alice@example.org", "Password mismatch")
        assert result.noise["noise:merged"] == 2  # the disconnect counter and the Dovecot line
    else:
        assert len(events) == 2 and postfix["account"] is None


def test_one_dovecot_line_completes_one_postfix_failure_only(tmp_path):
    second = PF[1].replace("03:14:17", "03:14:18").replace("[2001]", "[2002]")
    events, _ = _ingest(
        tmp_path,
        {
            "mail.log": [*PF[:2], second],
            "dovecot.log": [SYSLOG_AUTH.format(t="03:14:17", host="mx", ip="203.0.113.9")],
        },
    )
    # the nearest failure (same second) takes the account; the other stays without one
    assert events.sort("timestamp")["account"].to_list() == ["alice@example.org", None]


def test_the_same_file_join_is_unchanged(tmp_path):
    auth = SYSLOG_AUTH.format(t="03:14:17", host="mx", ip="203.0.113.9")
    events, _ = _ingest(tmp_path, {"mail.log": [*PF[:2], auth, PF[2]], "other.log": [PF[0]]})
    assert len(events) == 1 and events["account"][0] == "alice@example.org"


ROTATED_AUTH = (
    "Nov 23 03:14:17 mx dovecot: auth-worker(812): passwd-file(alice@example.org,198.51.100.7{session}): "
    "Password mismatch"
)
ROTATED_LOGIN = (
    "Nov 23 03:14:17 {host} dovecot: imap-login: Disconnected (auth failed, {n} attempts in 2 secs): "
    "user=<alice@example.org>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.10, TLS, session=<{login_session}>"
)


@pytest.mark.parametrize(
    ("session", "login_session", "host", "merged"),
    [
        (",<s1>", "s1", "mx", True),  # same session id
        ("", "s1", "mx", True),  # the auth line names no session: same address and account
        (",<s1>", "s2", "mx", False),  # two sessions
        (",<s1>", "s1", "imap2", False),  # another server
    ],
)
def test_a_dovecot_failure_split_by_a_rotation_counts_once(tmp_path, session, login_session, host, merged):
    events, result = _ingest(
        tmp_path,
        {
            "mail.log.1": [ROTATED_AUTH.format(session=session)],
            "mail.log": [ROTATED_LOGIN.format(host=host, n=1, login_session=login_session)],
        },
    )
    if not merged:
        assert len(events) == 2 and "noise:merged" not in result.noise
        return
    assert len(events) == 1 and result.event_count == 1 and result.noise["noise:merged"] == 1
    row = events.row(0, named=True)
    assert (row["account"], row["reason"], row["service"], row["tls"], row["attempts"]) == (
        "alice@example.org",
        "Password mismatch",
        "imap",
        True,
        1,
    )
    assert (row["session_id"], row["local_ip"], row["source_file"]) == (
        "s1",
        "192.0.2.10",
        str(tmp_path / "mail.log.1"),
    )


def test_a_rotated_login_line_of_three_attempts_leaves_them_on_its_auth_lines(tmp_path):
    auth = [ROTATED_AUTH.format(session=",<s1>").replace("03:14:17", t) for t in ("03:14:16", "03:14:17")]
    events, _ = _ingest(
        tmp_path,
        {"mail.log.1": auth, "mail.log": [ROTATED_LOGIN.format(host="mx", n=3, login_session="s1")]},
    )
    assert events.sort("timestamp")["attempts"].to_list() == [1, 2]
    assert events["service"].to_list() == ["imap", "imap"]


def test_a_dovecot_auth_line_paired_with_its_login_line_is_not_given_to_postfix(tmp_path):
    pf = [line.replace("203.0.113.9", "198.51.100.7") for line in PF]
    events, _ = _ingest(
        tmp_path,
        {
            "mail.log.1": [ROTATED_AUTH.format(session=",<s1>")],
            "mail.log": [*pf, ROTATED_LOGIN.format(host="mx", n=1, login_session="s1")],
        },
    )
    by_daemon = {r["daemon"]: r for r in events.iter_rows(named=True)}
    assert by_daemon["dovecot"]["service"] == "imap"
    assert by_daemon["postfix"]["account"] is None

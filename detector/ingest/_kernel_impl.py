"""The compiled code of :mod:`detector.ingest.kernel` (numba; imported only once the cache
location is set). Each ``_take_*`` function returns a line kind of the kernel or 0 (not taken);
a line is taken only when every byte of it was read by one of the shapes below."""

from __future__ import annotations

import numpy as np
from numba import njit, types

from detector.ingest.parsers.postfix import _AGENTS

_TEXT = types.Array(types.uint8, 1, "C", readonly=True)
_I64 = types.Array(types.int64, 1, "C")
_OFFSETS = types.Array(types.int64, 1, "C", readonly=True)
_I64_2D = types.Array(types.int64, 2, "C")
_I8 = types.Array(types.int8, 1, "C")
SCAN_SIG = types.void(_TEXT, _OFFSETS, types.int64, types.int64, _I8, _I64, _I8, _I64_2D, _I64_2D)
ALL_VIEWS_SIG = types.Array(types.uint8, 1, "C")(
    _TEXT,
    _I64_2D,
    _I64,
    _I64,
    _I64,
    types.Array(types.uint8, 3, "C"),
    types.Array(types.uint8, 2, "C"),
    _I64,
)
PLAIN_V6_SIG = types.void(_TEXT, _I64_2D, _I64, types.int64, types.Array(types.uint8, 1, "C"))
"""The one signature each entry point is compiled for, when the module is imported (from the cache)."""

# kinds, field and integer slots: the same numbers as detector.ingest.kernel
LOGIN_OK, LOGIN_FAIL, AUTH, LOGOUT = 1, 2, 3, 4
PF_CLIENT, PF_SASL_FAIL, PF_SASL_ABORT, PF_AFTER_AUTH, PF_DISC_AUTH, PF_BOUNDARY, PF_QMGR = (
    5,
    6,
    7,
    8,
    9,
    10,
    11,
)
LAST_ROW = 11
"""Kinds up to this one are rows of the output; the ones above are noise, only counted."""
FOREIGN = 19
"""Another program's line (``host tag[pid]: message``): program and message spans for Python's
test whether a parser may claim it."""
NOISE_LOGIN, NOISE_MAIL, NOISE_OTHER = 20, 21, 22
PN_CONNECT, PN_CLIENT, PN_SMTPD_OTHER, PN_OTHER, PN_AGENT = 23, 24, 25, 26, 27
"""Postfix noise; ``PN_AGENT + i`` is ``noise:postfix_<_AGENTS[i]>``."""
F_HOST, F_ACCOUNT, F_SOURCE_IP, F_LOCAL_IP, F_METHOD, F_SESSION, F_REASON, F_SMTPD = range(8)
I_ATTEMPTS, I_BYTES_IN, I_BYTES_OUT, I_MESSAGE_SIZE, I_OUTCOME, I_TLS, I_SERVICE, I_V6 = range(8)
I_RECIPIENTS, I_REASON = 8, 9
OUT_SUCCESS, OUT_FAILURE, OUT_UNKNOWN_USER, OUT_UNKNOWN, OUT_TEMPFAIL = 1, 2, 3, 4, 5
SVC_SUBMISSION, SVC_SMTP = 3, 5
# reason codes (I_REASON; -1: the F_REASON span)
R_AUTH_FAILURE, R_TEMPFAIL, R_ABORTED, R_AUTH_COMMAND = 1, 2, 3, 4
R_AFTER_AUTH = 5
"""``R_AFTER_AUTH + i``: the i-th phrase of :data:`AFTER_AUTH` followed by `` after AUTH``."""


def _b(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).copy()


MONTHS = _b("JanFebMarAprMayJunJulAugSepOctNovDec")
DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
P_DOVECOT = _b("dovecot")
P_COLON = _b(": ")
P_INFO = _b("Info: ")
P_WARNING = _b("Warning: ")
P_ERROR = _b("Error: ")
P_FATAL = _b("Fatal: ")
P_PANIC = _b("Panic: ")
P_DEBUG = _b("Debug: ")
P_LOGIN_SUFFIX = _b("-login")
P_AUTH = _b("auth")
P_IMAP = _b("imap")
P_POP3 = _b("pop3")
P_SUBMISSION = _b("submission")
P_MANAGESIEVE = _b("managesieve")
P_PAM = _b("pam_unix(")
P_LOGIN = _b("Login: ")
P_AUTH_FAILED = _b("(auth failed")
P_AUTH_FAILED_N = _b("(auth failed, ")
P_PLAINTEXT = _b("plaintext auth)")
P_PROXY_DEST = _b("(proxy dest auth failed)")
"""A failure the login process reports for its proxy destination: the polars parser reads it."""
P_PROXY_OPEN = _b("proxy(")
P_PROXY_FAILED = _b("): Login failed to ")
"""``proxy(<user>): Login failed to ...``, the destination's refusal: the polars parser reads it."""
P_PAREN_COLON = _b("): ")
P_USER = _b("user=<")
P_METHOD = _b(">, method=")
P_RIP = _b(", rip=")
P_LIP = _b(", lip=")
P_MPID = _b(", mpid=")
P_TLS = _b(", TLS")
P_SECURED = _b(", secured")
P_SESSION = _b(", session=<")
P_MISMATCH = _b("Password mismatch")
P_UNKNOWN = _b("unknown user")
P_IN = _b(" in=")
P_OUT = _b(" out=")
P_RETR = _b("retr=")
P_BYTES = _b(" bytes=")
P_SIZE = _b(" size=")
P_TOP = _b(" top=")
P_IN0 = _b("in=")
P_OUT0 = _b("out=")
P_BYTES0 = _b("bytes=")
P_SIZE0 = _b("size=")
P_TOP0 = _b("top=")

P_POSTFIX = _b("postfix")
P_SMTPD = _b("smtpd")
P_QMGR = _b("qmgr")
P_SUBMISSION_W = _b("submission")
P_SMTPS = _b("smtps")
P_CONNECT = _b("connect from ")
P_DISCONNECT = _b("disconnect from ")
P_WARNING_PF = _b("warning: ")
P_NOQUEUE = _b("NOQUEUE: ")
P_CLIENT = _b(": client=")
P_SASL_METHOD = _b(", sasl_method=")
P_SASL_USERNAME = _b(", sasl_username=")
P_SASL_SP = _b("]: SASL ")
P_AUTH_FAILED_PF = _b(" authentication failed: ")
P_AUTH_ABORTED = _b(" authentication aborted")
P_AUTH_EQ = _b(" auth=")
P_FROM_ANGLE = _b(": from=<")
P_QUEUE = _b(" (queue ")
P_NRCPT = _b(", nrcpt=")
P_SIZE_PF = _b(", size=")
P_AFTER_AUTH_FROM = _b(" after AUTH from ")
P_PW_PROMPT = _b("UGFzc3dvcmQ6")
P_USER_PROMPT = _b("VXNlcm5hbWU6")
P_AUTH_FAILURE = _b("authentication failure")
P_CONN_LOST = _b("Connection lost to authentication server")
M_CLIENT = _b(": client=")
M_AUTH_FAIL = _b("authentication fail")
M_AFTER_AUTH = _b("after AUTH from ")
M_AUTH0 = _b("auth=0")
M_FROM = _b(": from=<")
M_SASL = _b("SASL")
"""The Postfix parser's markers (``postfix._MARKERS``): a line with one of them is read by the
kernel only in the exact shapes below, else left to the parser."""

AFTER_AUTH = ("lost connection", "timeout", "too many errors", "improper command pipelining")
_AA = "".join(AFTER_AUTH)
AA_BYTES = _b(_AA)
AA_OFF = np.cumsum([0, *(len(w) for w in AFTER_AUTH)]).astype(np.int64)
AGENT_BYTES = _b("".join(_AGENTS))
AGENT_OFF = np.cumsum([0, *(len(a) for a in _AGENTS)]).astype(np.int64)
POSTSCREEN = _AGENTS.index("postscreen")


def _classes() -> np.ndarray:
    """A byte's classes as bits (one load per byte where chained comparisons cost several)."""
    table = np.zeros(256, np.uint8)
    alnum = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    for bit, chars in (
        (C_USER, alnum + b"._@+-"),
        (C_TOKEN, alnum + b"+/_-"),
        (C_HOST, alnum + b"._-"),
        (C_IP, b"0123456789ABCDEFabcdef:."),
        (C_NAME, alnum + b"_-"),
    ):
        for c in chars:
            table[c] |= bit
    return table


C_USER, C_TOKEN, C_HOST, C_IP, C_NAME = 1, 2, 4, 8, 16
"""Classes: a user name ``[A-Za-z0-9._@+-]``, a session or method ``[A-Za-z0-9+/_-]``, a client
name ``[A-Za-z0-9._-]``, address text ``[0-9A-Fa-f:.]``, a passdb name ``[A-Za-z0-9_-]``."""
CLASSES = _classes()


@njit(cache=True, nogil=True, inline="always")
def _starts(b, lo, hi, p):
    m = p.shape[0]
    if hi - lo < m:
        return False
    for j in range(m):  # noqa: SIM110 (a loop numba compiles)
        if b[lo + j] != p[j]:
            return False
    return True


@njit(cache=True, nogil=True)
def _find(b, lo, hi, p):
    """First position of ``p`` in ``b[lo:hi]``, or -1."""
    m = p.shape[0]
    first = p[0]
    i = lo
    last = hi - m
    while i <= last:
        if b[i] == first:
            j = 1
            while j < m and b[i + j] == p[j]:
                j += 1
            if j == m:
                return i
        i += 1
    return -1


@njit(cache=True, nogil=True)
def _find_byte(b, lo, hi, c):
    for i in range(lo, hi):
        if b[i] == c:
            return i
    return -1


@njit(cache=True, nogil=True, inline="always")
def _digit(c):
    return 48 <= c <= 57


@njit(cache=True, nogil=True, inline="always")
def _alnum(c):
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)


@njit(cache=True, nogil=True)
def _user_end(b, lo, hi):
    """End of a user name of ``[A-Za-z0-9._@+-]`` at ``lo`` (``lo`` when there is none)."""
    i = lo
    while i < hi and CLASSES[b[i]] & C_USER:
        i += 1
    return i


@njit(cache=True, nogil=True)
def _token_end(b, lo, hi):
    """End of a session id or method of ``[A-Za-z0-9+/_-]``."""
    i = lo
    while i < hi and CLASSES[b[i]] & C_TOKEN:
        i += 1
    return i


@njit(cache=True, nogil=True)
def _hexval(c):
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    return -1


@njit(cache=True, nogil=True)
def _plain_v6(b, lo, hi):
    """``b[lo:hi]`` is IPv6 text exactly as Python's ``str(ipaddress.ip_address(text))`` writes it
    (lower-case hex without leading zeros, the first longest run of two or more zero groups as
    ``::``) and not IPv4-mapped, so canonicalising it would change nothing. False for anything
    else (dots, upper case, other compressions: Python then reads it, as the parsers do)."""
    groups = np.zeros(8, np.int64)
    n = 0
    gap = -1  # index of the group where `::` stands
    i = lo
    if hi - lo >= 2 and b[lo] == 58 and b[lo + 1] == 58:
        gap = 0
        i = lo + 2
    while i < hi:
        if n == 8:
            return False
        v = 0
        j = i
        while j < hi and j - i < 5 and _hexval(b[j]) >= 0:
            v = v * 16 + _hexval(b[j])
            j += 1
        d = j - i
        if d == 0 or d > 4 or (d > 1 and b[i] == 48):
            return False
        groups[n] = v
        n += 1
        if j == hi:
            break
        if b[j] != 58:
            return False
        if j + 1 < hi and b[j + 1] == 58:
            if gap >= 0:
                return False
            gap = n
            i = j + 2
        elif j + 1 == hi:
            return False
        else:
            i = j + 1
    if gap < 0:
        if n != 8:
            return False
    else:
        if n > 6:
            return False  # `::` for a single zero group is not how Python writes it
        missing = 8 - n
        for k in range(n - 1, gap - 1, -1):
            groups[k + missing] = groups[k]
        for k in range(gap, gap + missing):
            groups[k] = 0
    head = groups[0] | groups[1] | groups[2] | groups[3] | groups[4]
    if head == 0 and groups[5] == 0xFFFF:
        return False  # IPv4-mapped: written as IPv4
    # the first longest run of zero groups (two or more) is the one Python compresses
    best, best_len, run, run_len = -1, 1, -1, 0
    for k in range(8):
        if groups[k] == 0:
            if run_len == 0:
                run = k
            run_len += 1
            if run_len > best_len:
                best, best_len = run, run_len
        else:
            run_len = 0
    if gap < 0:
        return best < 0
    return best == gap and best_len == 8 - n


@njit(cache=True, nogil=True)
def _ip_end(b, lo, hi, ints, row):
    """End of an address at ``lo``: canonical dotted IPv4 (no leading zero, octets <= 255), or
    IPv6 text of ``[0-9A-Fa-f:.]`` with a colon (``I_V6`` set where it is not already canonical
    text: made canonical afterwards, as the parsers do). Returns ``lo`` when there is none."""
    i = lo
    colon = False
    while i < hi and CLASSES[b[i]] & C_IP:
        colon |= b[i] == 58
        i += 1
    if i == lo or i - lo > 45:
        return lo
    if colon:
        # IPv6 text not written as Python writes it is made canonical afterwards, in Python
        if not _plain_v6(b, lo, i):
            ints[row, I_V6] = 1
        return i
    # IPv4: four octets
    j = lo
    for octet in range(4):
        start = j
        v = 0
        while j < i and _digit(b[j]):
            v = v * 10 + (b[j] - 48)
            j += 1
        n = j - start
        if n == 0 or n > 3 or v > 255 or (n > 1 and b[start] == 48):
            return lo
        if octet < 3:
            if j >= i or b[j] != 46:
                return lo
            j += 1
    if j != i:
        return lo
    return i


@njit(cache=True, nogil=True)
def _lead_int(b, lo, hi):
    """Leading digits at ``lo`` as an integer; -1 if there are none or more than 18."""
    v = 0
    i = lo
    while i < hi and _digit(b[i]):
        v = v * 10 + (b[i] - 48)
        i += 1
        if i - lo > 18:
            return -1
    if i == lo:
        return -1
    return v


@njit(cache=True, nogil=True)
def _days_from_civil(y, m, d):
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, nogil=True)
def _login_fields(b, lo, hi, row, spans, ints):
    """``user=<u>, method=M, rip=A, lip=B[, mpid=N][, TLS|, secured], session=<S>`` exactly, to
    the end of the line."""
    if not _starts(b, lo, hi, P_USER):
        return False
    u0 = lo + 6
    u1 = _user_end(b, u0, hi)
    if u1 == u0 or not _starts(b, u1, hi, P_METHOD):
        return False
    m0 = u1 + 10
    m1 = _token_end(b, m0, hi)
    if m1 == m0 or not _starts(b, m1, hi, P_RIP):
        return False
    r0 = m1 + 6
    r1 = _ip_end(b, r0, hi, ints, row)
    if r1 == r0 or not _starts(b, r1, hi, P_LIP):
        return False
    l0 = r1 + 6
    l1 = _ip_end(b, l0, hi, ints, row)
    if l1 == l0:
        return False
    i = l1
    if _starts(b, i, hi, P_MPID):
        j = i + 7
        while j < hi and _digit(b[j]):
            j += 1
        if j == i + 7:
            return False
        i = j
    tls = 0
    if _starts(b, i, hi, P_TLS) and not _starts(b, i, hi, P_SESSION):
        tls = 1
        i += 5
    elif _starts(b, i, hi, P_SECURED):
        tls = 1
        i += 9
    if not _starts(b, i, hi, P_SESSION):
        return False
    s0 = i + 11
    s1 = _token_end(b, s0, hi)
    if s1 == s0 or s1 != hi - 1 or b[s1] != 62:
        return False
    _span(spans, row, F_ACCOUNT, u0, u1)
    _span(spans, row, F_METHOD, m0, m1)
    _span(spans, row, F_SOURCE_IP, r0, r1)
    _span(spans, row, F_LOCAL_IP, l0, l1)
    _span(spans, row, F_SESSION, s0, s1)
    ints[row, I_TLS] = tls
    return True


@njit(cache=True, nogil=True)
def _after_level(b, pos, hi):
    """``pos`` moved past Dovecot's ``Info: `` level; -1 at any other level (those lines are left
    to the polars parsers); ``pos`` itself where there is none."""
    if _starts(b, pos, hi, P_INFO):
        return pos + 6
    if (
        _starts(b, pos, hi, P_WARNING)
        or _starts(b, pos, hi, P_DEBUG)
        or _starts(b, pos, hi, P_ERROR)
        or _starts(b, pos, hi, P_FATAL)
        or _starts(b, pos, hi, P_PANIC)
    ):
        return -1
    return pos


@njit(cache=True, nogil=True)
def _service(b, lo, hi):
    """Service code of a process name ``imap``, ``pop3``, ... ending at ``hi`` (0: another)."""
    n = hi - lo
    if n == 4 and _starts(b, lo, hi, P_IMAP):
        return 1
    if n == 4 and _starts(b, lo, hi, P_POP3):
        return 2
    if n == 10 and _starts(b, lo, hi, P_SUBMISSION):
        return 3
    if n == 11 and _starts(b, lo, hi, P_MANAGESIEVE):
        return 4
    return 0


@njit(cache=True, nogil=True)
def _take_login(b, proc, pend, body, hi, row, spans, ints):
    svc = _service(b, proc, pend - 6)
    if svc == 0:
        return 0
    if _starts(b, body, hi, P_PROXY_OPEN) and _find(b, body, hi, P_PROXY_FAILED) >= 0:
        return 0
    if _starts(b, body, hi, P_LOGIN):
        if not _login_fields(b, body + 7, hi, row, spans, ints):
            return 0
        ints[row, I_SERVICE] = svc
        ints[row, I_OUTCOME] = OUT_SUCCESS
        ints[row, I_ATTEMPTS] = 1
        return LOGIN_OK
    failed, refused = _login_marks(b, body, hi)
    if failed:
        a = _find(b, body, hi, P_AUTH_FAILED_N)
        if a < 0:
            return 0
        attempts = _lead_int(b, a + 14, hi)
        if attempts < 0 or attempts > 2147483647:
            return 0
        f = _find(b, body, hi, P_PAREN_COLON)
        if f < 0 or not _login_fields(b, f + 3, hi, row, spans, ints):
            return 0
        ints[row, I_SERVICE] = svc
        ints[row, I_OUTCOME] = OUT_FAILURE
        ints[row, I_ATTEMPTS] = attempts
        return LOGIN_FAIL
    if refused:
        return 0
    return NOISE_LOGIN


@njit(cache=True, nogil=True)
def _login_marks(b, lo, hi):
    """One pass over a login process's line: (``(auth failed`` occurs, ``plaintext auth)`` or
    ``(proxy dest auth failed)`` occurs)."""
    failed = refused = False
    for i in range(lo, hi):
        c = b[i]
        if c == 40:
            failed |= _starts(b, i, hi, P_AUTH_FAILED)
            refused |= _starts(b, i, hi, P_PROXY_DEST)
        elif c == 112:
            refused |= _starts(b, i, hi, P_PLAINTEXT)
    return failed, refused


@njit(cache=True, nogil=True)
def _take_auth(b, body, hi, row, spans, ints):
    """``<passdb>(user,address[,<session>]): Password mismatch|unknown user`` to the end."""
    i = body
    if i >= hi or not ((65 <= b[i] <= 90) or (97 <= b[i] <= 122)):
        return 0
    while i < hi and CLASSES[b[i]] & C_NAME:
        i += 1
    if i >= hi or b[i] != 40:
        return 0
    u0 = i + 1
    u1 = _user_end(b, u0, hi)
    if u1 == u0 or u1 >= hi or b[u1] != 44:
        return 0
    a0 = u1 + 1
    a1 = _ip_end(b, a0, hi, ints, row)
    if a1 == a0:
        return 0
    i = a1
    if i + 1 < hi and b[i] == 44 and b[i + 1] == 60:
        s0 = i + 2
        s1 = _token_end(b, s0, hi)
        if s1 == s0 or s1 >= hi or b[s1] != 62:
            return 0
        _span(spans, row, F_SESSION, s0, s1)
        i = s1 + 1
    if not _starts(b, i, hi, P_PAREN_COLON):
        return 0
    r0 = i + 3
    if hi - r0 == 17 and _starts(b, r0, hi, P_MISMATCH):
        ints[row, I_OUTCOME] = OUT_FAILURE
    elif hi - r0 == 12 and _starts(b, r0, hi, P_UNKNOWN):
        ints[row, I_OUTCOME] = OUT_UNKNOWN_USER
    else:
        return 0
    _span(spans, row, F_ACCOUNT, u0, u1)
    _span(spans, row, F_SOURCE_IP, a0, a1)
    _span(spans, row, F_REASON, r0, hi)
    ints[row, I_ATTEMPTS] = 1
    return AUTH


@njit(cache=True, nogil=True)
def _logout_keys(b, lo, hi):
    """One pass over a logout's body: the first position (-1: none) of `` in=``, `` out=``,
    ``retr=``, `` size=``, `` top=``, `` bytes=`` and ``:``, and whether one of the first five
    occurs twice."""
    f_in = f_out = f_retr = f_size = f_top = f_bytes = f_colon = -1
    twice = False
    for i in range(lo, hi):
        c = b[i]
        if c == 32:
            if _starts(b, i, hi, P_IN):
                twice |= f_in >= 0
                f_in = i if f_in < 0 else f_in
            elif _starts(b, i, hi, P_OUT):
                twice |= f_out >= 0
                f_out = i if f_out < 0 else f_out
            elif _starts(b, i, hi, P_SIZE):
                twice |= f_size >= 0
                f_size = i if f_size < 0 else f_size
            elif _starts(b, i, hi, P_TOP):
                twice |= f_top >= 0
                f_top = i if f_top < 0 else f_top
            elif f_bytes < 0 and _starts(b, i, hi, P_BYTES):
                f_bytes = i
        elif c == 114:
            if _starts(b, i, hi, P_RETR):
                twice |= f_retr >= 0
                f_retr = i if f_retr < 0 else f_retr
        elif c == 58 and f_colon < 0:
            f_colon = i
    return f_in, f_out, f_retr, f_size, f_top, f_bytes, f_colon, twice


@njit(cache=True, nogil=True)
def _take_logout(b, proc, pend, body, hi, row, spans, ints):
    """``imap(user)<pid><session>: ... in=N out=M ...`` / ``pop3(...)...: ... retr=N/SIZE, ..., size=S``.
    The body's keys are found in one pass (:func:`_logout_keys`); a key twice is refused."""
    p = _find_byte(b, proc, pend, 40)
    svc = _service(b, proc, p)
    if svc == 0:
        return 0
    f_in, f_out, retr, f_size, f_top, f_bytes, f_colon, twice = _logout_keys(b, body, hi)
    if f_in < 0 and retr < 0:
        return NOISE_MAIL
    u0 = p + 1
    u1 = _user_end(b, u0, pend)
    if u1 == u0 or u1 + 1 >= pend or b[u1] != 41 or b[u1 + 1] != 60:
        return 0
    i = u1 + 2
    j = i
    while j < pend and _digit(b[j]):
        j += 1
    if j == i or j + 1 >= pend or b[j] != 62 or b[j + 1] != 60:
        return 0
    s0 = j + 2
    s1 = _token_end(b, s0, pend)
    if s1 == s0 or s1 != pend - 1 or b[s1] != 62:
        return 0
    # an ambiguous body (a key twice: text a user name could smuggle in) is left to the parsers
    if twice:
        return 0
    # fields the parser reads from `" " + body`: none may start the body itself
    if (
        _starts(b, body, hi, P_IN0)
        or _starts(b, body, hi, P_OUT0)
        or _starts(b, body, hi, P_BYTES0)
        or _starts(b, body, hi, P_SIZE0)
        or _starts(b, body, hi, P_TOP0)
    ):
        return 0
    if retr >= 0:
        if f_bytes >= 0:
            return 0
        sz = f_size
        if sz < 0:
            return 0
        size = _lead_int(b, sz + 6, hi)
        comma = _find_byte(b, retr + 5, hi, 44)
        seg_end = hi if comma < 0 else comma
        slash = _find_byte(b, retr + 5, seg_end, 47)
        if slash < 0:
            return 0
        msg = _lead_int(b, slash + 1, seg_end)
        if size < 0 or msg < 0:
            return 0
        ints[row, I_BYTES_OUT] = size
        ints[row, I_MESSAGE_SIZE] = msg
    else:
        a = f_in
        o = f_out
        if o < 0:
            return 0
        bin_ = _lead_int(b, a + 4, hi)
        bout = _lead_int(b, o + 5, hi)
        if bin_ < 0 or bout < 0:
            return 0
        ints[row, I_BYTES_IN] = bin_
        ints[row, I_BYTES_OUT] = bout
    # reason: the body before " in=", then before " top=", then before ":"
    r1 = hi if f_in < 0 else f_in
    if 0 <= f_top < r1:
        r1 = f_top
    if 0 <= f_colon < r1:
        r1 = f_colon
    _span(spans, row, F_ACCOUNT, u0, u1)
    _span(spans, row, F_SESSION, s0, s1)
    _span(spans, row, F_REASON, body, r1)
    ints[row, I_SERVICE] = svc
    return LOGOUT


# --- Postfix ---


@njit(cache=True, nogil=True)
def _marked(b, lo, hi):
    """One of the Postfix parser's markers occurs in ``b[lo:hi]``."""
    return (
        _find(b, lo, hi, M_SASL) >= 0
        or _find(b, lo, hi, M_CLIENT) >= 0
        or _find(b, lo, hi, M_AUTH_FAIL) >= 0
        or _find(b, lo, hi, M_AFTER_AUTH) >= 0
        or _find(b, lo, hi, M_AUTH0) >= 0
        or _find(b, lo, hi, M_FROM) >= 0
    )


@njit(cache=True, nogil=True)
def _host_end(b, lo, hi):
    """End of a client name of ``[A-Za-z0-9._-]`` (Postfix's verified name or ``unknown``)."""
    i = lo
    while i < hi and CLASSES[b[i]] & C_HOST:
        i += 1
    return i


@njit(cache=True, nogil=True)
def _client_addr(b, lo, hi, row, spans, ints, keep):
    """``name[address]`` at ``lo`` (no port); returns the position after ``]`` or -1. The
    address span is kept when ``keep``."""
    h = _host_end(b, lo, hi)
    if h == lo or h >= hi or b[h] != 91:
        return -1
    a1 = _ip_end(b, h + 1, hi, ints, row)
    if a1 == h + 1 or a1 >= hi or b[a1] != 93:
        return -1
    if keep:
        _span(spans, row, F_SOURCE_IP, h + 1, a1)
    return a1 + 1


@njit(cache=True, nogil=True, inline="always")
def _span(spans, row, f, lo, hi):
    """Field ``f`` of ``row`` is ``b[lo:hi]`` (-1, -1: the row has no such field)."""
    spans[row, 2 * f] = lo
    spans[row, 2 * f + 1] = hi


@njit(cache=True, nogil=True)
def _pf_disconnect(b, lo, hi, row, spans, ints):
    """``disconnect from name[address]( cmd=N(/N)?)*``: the session's end (a boundary row for
    ``correlate``), or with ``auth=0/N`` N failed AUTH commands."""
    e = _client_addr(b, lo, hi, row, spans, ints, True)
    if e < 0:
        return 0
    i = e
    auth = -1
    while i < hi:
        if b[i] != 32:
            return 0
        n0 = i + 1
        j = n0
        while j < hi and 97 <= b[j] <= 122:
            j += 1
        if j == n0 or j >= hi or b[j] != 61:
            return 0
        v0 = j + 1
        k = v0
        while k < hi and _digit(b[k]):
            k += 1
        if k == v0:
            return 0
        if k < hi and b[k] == 47:
            k2 = k + 1
            while k2 < hi and _digit(b[k2]):
                k2 += 1
            if k2 == k + 1:
                return 0
            k = k2
        if j - n0 == 4 and _starts(b, i, hi, P_AUTH_EQ):
            if auth >= 0:
                return 0
            auth = v0
        i = k
    if auth < 0 or b[auth] != 48:
        # the parser's boundary row carries no address and no service
        _span(spans, row, F_SOURCE_IP, -1, -1)
        ints[row, I_SERVICE] = -1
        return PF_BOUNDARY
    # `auth=0/N`: N failed (the parser's `auth=0...` rule); other shapes are left to it
    if auth + 2 >= hi or b[auth + 1] != 47:
        return 0
    tried = _lead_int(b, auth + 2, hi)
    if tried < 1 or tried > 2147483647:
        return 0
    ints[row, I_ATTEMPTS] = tried
    ints[row, I_OUTCOME] = OUT_FAILURE
    ints[row, I_REASON] = R_AUTH_COMMAND
    return PF_DISC_AUTH


@njit(cache=True, nogil=True)
def _pf_warning(b, lo, hi, row, spans, ints):
    """``warning: name[address]: SASL M authentication failed: R[, sasl_username=u]`` (R one of
    the SASL servers' usual reasons) or ``... authentication aborted``."""
    e = _client_addr(b, lo, hi, row, spans, ints, True)
    if e < 0 or not _starts(b, e - 1, hi, P_SASL_SP):
        return 0
    m0 = e + 7
    m1 = _token_end(b, m0, hi)
    if m1 == m0:
        return 0
    _span(spans, row, F_METHOD, m0, m1)
    ints[row, I_ATTEMPTS] = 1
    if hi - m1 == 23 and _starts(b, m1, hi, P_AUTH_ABORTED):
        ints[row, I_OUTCOME] = OUT_UNKNOWN
        ints[row, I_REASON] = R_ABORTED
        return PF_SASL_ABORT
    if not _starts(b, m1, hi, P_AUTH_FAILED_PF):
        return 0
    r0 = m1 + 24
    u = _find(b, r0, hi, P_SASL_USERNAME)
    r1 = hi if u < 0 else u
    n = r1 - r0
    if (
        (n == 12 and (_starts(b, r0, r1, P_PW_PROMPT) or _starts(b, r0, r1, P_USER_PROMPT)))
        or (n == 22 and _starts(b, r0, r1, P_AUTH_FAILURE))
        or n == 0
    ):
        ints[row, I_OUTCOME] = OUT_FAILURE
        ints[row, I_REASON] = R_AUTH_FAILURE
    elif n == 40 and _starts(b, r0, r1, P_CONN_LOST):
        ints[row, I_OUTCOME] = OUT_TEMPFAIL
        ints[row, I_REASON] = R_TEMPFAIL
    else:
        return 0
    if u >= 0:
        u0 = u + 16
        if _user_end(b, u0, hi) != hi or u0 == hi:
            return 0
        _span(spans, row, F_ACCOUNT, u0, hi)
    return PF_SASL_FAIL


@njit(cache=True, nogil=True)
def _pf_after_auth(b, lo, hi, row, spans, ints):
    """``lost connection|timeout|too many errors|improper command pipelining after AUTH from
    name[address]``."""
    for w in range(AA_OFF.shape[0] - 1):
        n = AA_OFF[w + 1] - AA_OFF[w]
        if hi - lo < n:
            continue
        same = True
        for j in range(n):
            if b[lo + j] != AA_BYTES[AA_OFF[w] + j]:
                same = False
                break
        if same and _starts(b, lo + n, hi, P_AFTER_AUTH_FROM):
            e = _client_addr(b, lo + n + 17, hi, row, spans, ints, True)
            if e != hi:
                return 0
            ints[row, I_ATTEMPTS] = 1
            ints[row, I_OUTCOME] = OUT_UNKNOWN
            ints[row, I_REASON] = R_AFTER_AUTH + w
            return PF_AFTER_AUTH
    return -1


@njit(cache=True, nogil=True)
def _pf_client(b, lo, hi, row, spans, ints):
    """``QID: client=name[address]``: with ``, sasl_method=M, sasl_username=u`` (exactly, to the
    end) a login, without any ``, sasl_username=`` noise; -1 when the line has no such start."""
    q = lo
    while q < hi and _alnum(b[q]):
        q += 1
    if q == lo or not _starts(b, q, hi, P_CLIENT):
        return -1
    e = _client_addr(b, q + 9, hi, row, spans, ints, True)
    if e < 0:
        return 0
    if _find(b, e, hi, P_SASL_USERNAME) < 0:
        return PN_CLIENT
    if not _starts(b, e, hi, P_SASL_METHOD):
        return 0
    m0 = e + 14
    m1 = _token_end(b, m0, hi)
    if m1 == m0 or not _starts(b, m1, hi, P_SASL_USERNAME):
        return 0
    u0 = m1 + 16
    if u0 == hi or _user_end(b, u0, hi) != hi:
        return 0
    _span(spans, row, F_METHOD, m0, m1)
    _span(spans, row, F_ACCOUNT, u0, hi)
    _span(spans, row, F_SESSION, lo, q)
    ints[row, I_ATTEMPTS] = 1
    ints[row, I_OUTCOME] = OUT_SUCCESS
    return PF_CLIENT


@njit(cache=True, nogil=True, inline="always")
def _digits_back(b, lo, end):
    """Start of the run of digits that ends at ``end`` (not before ``lo``); ``end`` if none."""
    i = end
    while i > lo and _digit(b[i - 1]):
        i -= 1
    return i


@njit(cache=True, nogil=True)
def _pf_qmgr(b, lo, hi, row, spans, ints):
    """``QID: from=<sender>, size=N, nrcpt=N (queue name)``, size and recipients read from the
    end (the sender is written verbatim); -1 when the line has no ``QID: from=<`` start."""
    q = lo
    while q < hi and _alnum(b[q]):
        q += 1
    if q == lo or not _starts(b, q, hi, P_FROM_ANGLE):
        return -1
    if b[hi - 1] != 41:
        return 0
    i = hi - 2
    while i > q and 97 <= b[i] <= 122:
        i -= 1
    if i == hi - 2 or i - 7 < q or not _starts(b, i - 7, hi, P_QUEUE):
        return 0
    d1 = i - 7
    d0 = _digits_back(b, q, d1)
    if d0 == d1 or d1 - d0 > 9 or d0 - 8 < q or not _starts(b, d0 - 8, hi, P_NRCPT):
        return 0
    nrcpt = _lead_int(b, d0, d1)
    s1 = d0 - 8
    s0 = _digits_back(b, q, s1)
    if s0 == s1 or s1 - s0 > 18 or s0 - 7 < q or not _starts(b, s0 - 7, hi, P_SIZE_PF):
        return 0
    if nrcpt > 2147483647:
        return 0
    ints[row, I_RECIPIENTS] = nrcpt
    ints[row, I_MESSAGE_SIZE] = _lead_int(b, s0, s1)
    _span(spans, row, F_SESSION, lo, q)
    return PF_QMGR


@njit(cache=True, nogil=True)
def _take_postfix(b, t0, colon, hi, row, spans, ints):
    """A ``postfix...[pid]: message`` line (tag from ``t0`` to ``colon``)."""
    br = _find_byte(b, t0, colon, 91)
    if br < 0 or b[colon - 1] != 93 or colon - 1 - (br + 1) < 1 or colon - 1 - (br + 1) > 18:
        return 0
    if b[br + 1] == 48 and colon - 1 - (br + 1) > 1:
        return 0  # the pid is read as a number: a leading zero would not survive
    for k in range(br + 1, colon - 1):
        if not _digit(b[k]):
            return 0
    slash = -1
    for k in range(t0, br):
        c = b[k]
        if c == 47:
            slash = k
        elif not ((48 <= c <= 57) or (97 <= c <= 122) or c == 45 or c == 95 or c == 46):
            return 0
    msg = colon + 2
    if slash < 0:
        if _marked(b, msg, hi) or _starts(b, msg, hi, P_NOQUEUE):
            return 0
        return PN_OTHER
    a0 = slash + 1
    n = br - a0
    _span(spans, row, F_SMTPD, t0, colon)
    nslash = 0
    for k in range(t0, br):
        if b[k] == 47:
            nslash += 1
    if nslash >= 2 and (_find(b, t0, br, P_SUBMISSION_W) >= 0 or _find(b, t0, br, P_SMTPS) >= 0):
        ints[row, I_SERVICE] = SVC_SUBMISSION
    else:
        ints[row, I_SERVICE] = SVC_SMTP
    if n == 5 and _starts(b, a0, br, P_SMTPD):
        if _starts(b, msg, hi, P_CONNECT):
            return PN_CONNECT
        if _starts(b, msg, hi, P_DISCONNECT):
            return _pf_disconnect(b, msg + 16, hi, row, spans, ints)
        if _starts(b, msg, hi, P_WARNING_PF):
            k = _pf_warning(b, msg + 9, hi, row, spans, ints)
            if k != 0:
                return k
        k = _pf_after_auth(b, msg, hi, row, spans, ints)
        if k >= 0:
            return k
        k = _pf_client(b, msg, hi, row, spans, ints)
        if k >= 0:
            return k
        if _marked(b, msg, hi) or _starts(b, msg, hi, P_NOQUEUE):
            return 0
        return PN_SMTPD_OTHER
    if n == 4 and _starts(b, a0, br, P_QMGR):
        k = _pf_qmgr(b, msg, hi, row, spans, ints)
        if k >= 0:
            # qmgr's row names no smtpd process and no service
            spans[row, 2 * F_SMTPD] = -1
            ints[row, I_SERVICE] = -1
            return k
    if _marked(b, msg, hi) or _starts(b, msg, hi, P_NOQUEUE):
        return 0
    for g in range(AGENT_OFF.shape[0] - 1):
        if AGENT_OFF[g + 1] - AGENT_OFF[g] == n:
            same = True
            for j in range(n):
                if b[a0 + j] != AGENT_BYTES[AGENT_OFF[g] + j]:
                    same = False
                    break
            if same:
                if g == POSTSCREEN:
                    return 0  # postscreen's verdicts by its first words: the parser's
                return PN_AGENT + g
    return PN_OTHER


@njit(cache=True, nogil=True)
def _bsd(b, lo, hi, limit_key, limit_year):
    """RFC 3164 stamp at fixed positions, ``Mmm dd hh:mm:ss ``: (local time in us, start of the
    host), or (0, -1)."""
    mon = 0
    for m in range(12):
        if b[lo] == MONTHS[3 * m] and b[lo + 1] == MONTHS[3 * m + 1] and b[lo + 2] == MONTHS[3 * m + 2]:
            mon = m + 1
            break
    if mon == 0 or b[lo + 3] != 32 or b[lo + 6] != 32 or b[lo + 9] != 58 or b[lo + 12] != 58:
        return 0, -1
    if b[lo + 15] != 32 or not _digit(b[lo + 5]):
        return 0, -1
    if b[lo + 4] == 32:
        day = b[lo + 5] - 48
    elif _digit(b[lo + 4]):
        day = (b[lo + 4] - 48) * 10 + b[lo + 5] - 48
    else:
        return 0, -1
    for k in (7, 8, 10, 11, 13, 14):
        if not _digit(b[lo + k]):
            return 0, -1
    hh = (b[lo + 7] - 48) * 10 + b[lo + 8] - 48
    mm = (b[lo + 10] - 48) * 10 + b[lo + 11] - 48
    ss = (b[lo + 13] - 48) * 10 + b[lo + 14] - 48
    if day < 1 or hh > 23 or mm > 59 or ss > 59:
        return 0, -1
    key = (((mon * 100 + day) * 100 + hh) * 100 + mm) * 100 + ss
    year = limit_year if key <= limit_key else limit_year - 1
    leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
    if day > DAYS[mon - 1] + (1 if (mon == 2 and leap) else 0):
        return 0, -1
    return (_days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss) * 1000000, lo + 16


@njit(cache=True, nogil=True)
def _two(b, i):
    if not (_digit(b[i]) and _digit(b[i + 1])):
        return -1
    return (b[i] - 48) * 10 + b[i + 1] - 48


@njit(cache=True, nogil=True)
def _iso(b, lo, hi):
    """ISO 8601 stamp with an offset, ``YYYY-MM-DDThh:mm:ss[.ffffff](Z|+hh:mm|+hhmm) `` (rsyslog's
    high precision, RFC 3339): (UTC in us, start of the host), or (0, -1). Without an offset, with
    more than six fraction digits or a comma, the envelope reads the line."""
    if hi - lo < 22 or b[lo + 4] != 45 or b[lo + 7] != 45 or b[lo + 10] != 84:
        return 0, -1
    if b[lo + 13] != 58 or b[lo + 16] != 58:
        return 0, -1
    y1, y2 = _two(b, lo), _two(b, lo + 2)
    mon, day = _two(b, lo + 5), _two(b, lo + 8)
    hh, mm, ss = _two(b, lo + 11), _two(b, lo + 14), _two(b, lo + 17)
    if y1 < 0 or y2 < 0 or mon < 1 or mon > 12 or day < 1 or hh < 0 or hh > 23:
        return 0, -1
    if mm < 0 or mm > 59 or ss < 0 or ss > 59:
        return 0, -1
    year = y1 * 100 + y2
    leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
    if year < 1 or day > DAYS[mon - 1] + (1 if (mon == 2 and leap) else 0):
        return 0, -1
    i = lo + 19
    us = 0
    if i < hi and b[i] == 46:
        j = i + 1
        while j < hi and _digit(b[j]):
            us = us * 10 + (b[j] - 48)
            j += 1
        n = j - i - 1
        if n < 1 or n > 6:
            return 0, -1
        for _ in range(6 - n):
            us *= 10
        i = j
    if i >= hi:
        return 0, -1
    off = 0
    if b[i] == 90:
        i += 1
    elif b[i] == 43 or b[i] == 45:
        if i + 5 >= hi:
            return 0, -1
        oh = _two(b, i + 1)
        k = i + 3
        if b[k] == 58:
            k += 1
        om = _two(b, k)
        if oh < 0 or oh > 23 or om < 0 or om > 59:
            return 0, -1
        off = (oh * 3600 + om * 60) * (1 if b[i] == 43 else -1)
        i = k + 2
    else:
        return 0, -1
    if i >= hi or b[i] != 32:
        return 0, -1
    return (_days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss - off) * 1000000 + us, i + 1


@njit(cache=True, nogil=True, inline="always")
def _same_stamp(b, a, lo):
    """The 16 bytes of an RFC 3164 stamp and its space at ``lo`` are those at ``a``."""
    for j in range(16):  # noqa: SIM110 (a loop numba compiles)
        if b[a + j] != b[lo + j]:
            return False
    return True


@njit(cache=True, nogil=True)
def _take(b, lo, hi, limit_key, limit_year, row, stamps, zones, spans, ints, memo):
    if hi - lo < 24:
        return 0
    bad = 0
    for k in range(lo, hi):
        bad |= (b[k] < 32) | (b[k] > 126)
    if bad:
        return 0
    if _digit(b[lo]):
        stamp, r = _iso(b, lo, hi)
        zones[row] = 1
    elif memo[0] >= 0 and _same_stamp(b, memo[0], lo):
        # the stamp of the line before (a log has several lines per second)
        stamp, r = memo[1], lo + 16
    else:
        stamp, r = _bsd(b, lo, hi, limit_key, limit_year)
        if r >= 0:
            memo[0] = lo
            memo[1] = stamp
    if r < 0:
        return 0
    # host, then the tag `dovecot` or `dovecot[pid]`, then ": "
    sp = _find_byte(b, r, hi, 32)
    colon = _find(b, r, hi, P_COLON)
    if sp <= r or colon < 0 or colon < sp:
        return 0
    if _starts(b, sp + 1, colon, P_POSTFIX):
        kind = _take_postfix(b, sp + 1, colon, hi, row, spans, ints)
        return _stamped(kind, stamp, r, sp, row, stamps, spans)
    if not _starts(b, sp + 1, colon, P_DOVECOT):
        return _stamped(_foreign(b, sp + 1, colon, hi, row, spans), stamp, r, sp, row, stamps, spans)
    t = sp + 8
    if t != colon:
        if b[t] != 91 or b[colon - 1] != 93 or colon - 1 - (t + 1) < 1:
            return 0
        for k in range(t + 1, colon - 1):
            if not _digit(b[k]):
                return 0
    msg = _after_level(b, colon + 2, hi)
    if msg < 0:
        return 0
    # Dovecot's `proc: body`
    pend = _find(b, msg, hi, P_COLON)
    if pend <= msg:
        return 0
    body = _after_level(b, pend + 2, hi)
    if body < 0:
        return 0
    if pend - msg >= 6 and _starts(b, pend - 6, pend, P_LOGIN_SUFFIX):
        kind = _take_login(b, msg, pend, body, hi, row, spans, ints)
    elif _starts(b, msg, pend, P_AUTH):
        kind = _take_auth(b, body, hi, row, spans, ints)
    else:
        p = _find_byte(b, msg, pend, 40)
        if p > msg and _service(b, msg, p) > 0:
            kind = _take_logout(b, msg, pend, body, hi, row, spans, ints)
        elif _starts(b, msg, hi, P_PAM):
            return 0
        else:
            kind = NOISE_OTHER
    return _stamped(kind, stamp, r, sp, row, stamps, spans)


@njit(cache=True, nogil=True)
def _foreign(b, t0, colon, hi, row, spans):
    """A line whose tag ``b[t0:colon]`` is neither Postfix's nor Dovecot's: FOREIGN, with the
    program (the tag before any ``[``) in the account slot and the message in the reason slot, as
    the polars envelope cuts them; 0 (left to the polars path) where it would cut them otherwise:
    a tag with a space or starting with ``[``, a message starting with a level (``Info: ``, ...)."""
    if t0 >= colon or b[t0] == 91:
        return 0
    end = colon
    for k in range(t0, colon):
        if b[k] == 32:
            return 0
        if b[k] == 91 and end == colon:
            end = k
    m = colon + 2
    if _after_level(b, m, hi) != m:
        return 0
    _span(spans, row, F_ACCOUNT, t0, end)
    _span(spans, row, F_REASON, m, hi)
    return FOREIGN


@njit(cache=True, nogil=True)
def _stamped(kind, stamp, r, sp, row, stamps, spans):
    """A taken line's stamp (and host, for rows)."""
    if kind != 0:
        stamps[row] = stamp
    if kind >= 1 and kind <= LAST_ROW:
        _span(spans, row, F_HOST, r, sp)
    return kind


@njit(SCAN_SIG, cache=True, nogil=True)
def scan(data, offsets, limit_key, limit_year, kinds, stamps, zones, spans, ints):
    """Every line ``data[offsets[i]:offsets[i + 1]]``: its kind (0: not taken), its stamp (local
    time, or UTC where ``zones`` is 1) and fields (-1 where the line has none; a line that is not
    a row may leave fields behind, which are never read)."""
    memo = np.full(2, -1, np.int64)  # the last RFC 3164 stamp read: its line's start, its value
    for i in range(offsets.shape[0] - 1):
        # every slot of the line is written here first: the arrays need no filling beforehand
        for f in range(spans.shape[1]):
            spans[i, f] = -1
        for f in range(ints.shape[1]):
            ints[i, f] = -1
        zones[i] = 0
        stamps[i] = 0
        kinds[i] = _take(
            data, offsets[i], offsets[i + 1], limit_key, limit_year, i, stamps, zones, spans, ints, memo
        )


@njit(cache=True, nogil=True, inline="always")
def _cased(c, case):
    if case == 1 and 65 <= c <= 90:
        return c + 32
    if case == 2 and 97 <= c <= 122:
        return c - 32
    return c


@njit(ALL_VIEWS_SIG, cache=True, nogil=True)
def all_views(data, spans, rows, fields, cases, out, valid, starts):
    """Arrow string views (16 bytes each) of ``data[start:end]`` for the given rows and fields:
    field ``fields[f]``, case changed by ``cases[f]`` (1 lower, 2 upper), into ``out[f]``, and
    ``valid[f]`` (1 where the row has the field). Values of up to 12 bytes live in the view
    itself; longer ones are copied to the returned buffer, so the columns never hold on to the
    batch's text. All fields in one pass over the rows: the spans of a batch are a few MiB, and
    a pass per field was most of the cost of building the columns. Long values of field ``f``
    go to ``extra[starts[f]:starts[f + 1]]`` (the returned buffer), offsets counted from
    ``starts[f]``."""
    nf = fields.shape[0]
    for f in range(nf + 1):
        starts[f] = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        for f in range(nf):
            s = spans[r, 2 * fields[f]]
            if s >= 0:
                n = spans[r, 2 * fields[f] + 1] - s
                if n > 12:
                    starts[f + 1] += n
    for f in range(nf):
        starts[f + 1] += starts[f]
    extra = np.empty(starts[nf], np.uint8)
    used = starts[:nf].copy()
    words = out.view(np.uint32)
    for i in range(rows.shape[0]):
        r = rows[i]
        for f in range(nf):
            s = spans[r, 2 * fields[f]]
            n = spans[r, 2 * fields[f] + 1] - s
            if s < 0:
                n = 0
            valid[f, i] = 1 if s >= 0 else 0
            words[f, i, 0] = n
            words[f, i, 1] = 0
            words[f, i, 2] = 0
            words[f, i, 3] = 0
            case = cases[f]
            if n <= 12:
                if case == 0:
                    for j in range(n):
                        out[f, i, 4 + j] = data[s + j]
                else:
                    for j in range(n):
                        out[f, i, 4 + j] = _cased(data[s + j], case)
                continue
            u = used[f]
            if case == 0:
                extra[u : u + n] = data[s : s + n]
            else:
                for j in range(n):
                    extra[u + j] = _cased(data[s + j], case)
            for j in range(4):
                out[f, i, 4 + j] = extra[u + j]
            words[f, i, 3] = u - starts[f]
            used[f] = u + n
    return extra


@njit(PLAIN_V6_SIG, cache=True, nogil=True)
def plain_v6(data, spans, rows, field, out):
    """``out[i]`` = 1 where field ``field`` of ``rows[i]`` is absent, IPv4 (the scan took only
    canonical dotted quads) or :func:`_plain_v6` IPv6 text; 0 where Python must read it."""
    for i in range(rows.shape[0]):
        s = spans[rows[i], 2 * field]
        e = spans[rows[i], 2 * field + 1]
        if s < 0 or _find_byte(data, s, e, 58) < 0:
            out[i] = 1
        else:
            out[i] = 1 if _plain_v6(data, s, e) else 0

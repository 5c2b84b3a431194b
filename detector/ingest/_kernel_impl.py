"""The compiled code of :mod:`detector.ingest.kernel` (numba; imported only once the cache
location is set). Each ``_take_*`` function returns a line kind of the kernel or 0 (not taken);
a line is taken only when every byte of it was read by one of the shapes below."""

from __future__ import annotations

import numpy as np
from numba import njit, types

_TEXT = types.Array(types.uint8, 1, "C", readonly=True)
_I64 = types.Array(types.int64, 1, "C")
_OFFSETS = types.Array(types.int64, 1, "C", readonly=True)
_I64_2D = types.Array(types.int64, 2, "C")
SCAN_SIG = types.void(
    _TEXT, _OFFSETS, types.int64, types.int64, types.Array(types.int8, 1, "C"), _I64, _I64_2D, _I64_2D
)
VIEWS_SIG = types.int64(
    _TEXT,
    _I64_2D,
    _I64,
    types.int64,
    types.int64,
    types.Array(types.uint8, 2, "C"),
    types.Array(types.uint8, 1, "C"),
)
"""The one signature each entry point is compiled for, when the module is imported (from the cache)."""

# kinds, field and integer slots: the same numbers as detector.ingest.kernel
LOGIN_OK, LOGIN_FAIL, AUTH, LOGOUT, NOISE_LOGIN, NOISE_MAIL, NOISE_OTHER = 1, 2, 3, 4, 5, 6, 7
F_HOST, F_ACCOUNT, F_SOURCE_IP, F_LOCAL_IP, F_METHOD, F_SESSION, F_REASON = 0, 1, 2, 3, 4, 5, 6
I_ATTEMPTS, I_BYTES_IN, I_BYTES_OUT, I_MESSAGE_SIZE, I_OUTCOME, I_TLS, I_SERVICE, I_V6 = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
)
OUT_SUCCESS, OUT_FAILURE, OUT_UNKNOWN_USER = 1, 2, 3


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
def _twice(b, lo, hi, p):
    """``p`` occurs more than once in ``b[lo:hi]``."""
    i = _find(b, lo, hi, p)
    return i >= 0 and _find(b, i + 1, hi, p) >= 0


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
    while i < hi:
        c = b[i]
        if not (_alnum(c) or c == 46 or c == 95 or c == 64 or c == 43 or c == 45):
            break
        i += 1
    return i


@njit(cache=True, nogil=True)
def _token_end(b, lo, hi):
    """End of a session id or method of ``[A-Za-z0-9+/_-]``."""
    i = lo
    while i < hi:
        c = b[i]
        if not (_alnum(c) or c == 43 or c == 47 or c == 95 or c == 45):
            break
        i += 1
    return i


@njit(cache=True, nogil=True)
def _ip_end(b, lo, hi, ints, row):
    """End of an address at ``lo``: canonical dotted IPv4 (no leading zero, octets <= 255), or
    IPv6 text of ``[0-9A-Fa-f:.]`` with a colon (made canonical afterwards, as the parsers do).
    Returns ``lo`` when there is none."""
    i = lo
    colon = False
    while i < hi:
        c = b[i]
        if c == 58:
            colon = True
        elif not (_digit(c) or c == 46 or (65 <= c <= 70) or (97 <= c <= 102)):
            break
        i += 1
    if i == lo or i - lo > 45:
        return lo
    if colon:
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
    spans[row, 2 * F_ACCOUNT] = u0
    spans[row, 2 * F_ACCOUNT + 1] = u1
    spans[row, 2 * F_METHOD] = m0
    spans[row, 2 * F_METHOD + 1] = m1
    spans[row, 2 * F_SOURCE_IP] = r0
    spans[row, 2 * F_SOURCE_IP + 1] = r1
    spans[row, 2 * F_LOCAL_IP] = l0
    spans[row, 2 * F_LOCAL_IP + 1] = l1
    spans[row, 2 * F_SESSION] = s0
    spans[row, 2 * F_SESSION + 1] = s1
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
    if _find(b, body, hi, P_AUTH_FAILED) >= 0:
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
    if _find(b, body, hi, P_PLAINTEXT) >= 0 or _find(b, body, hi, P_PROXY_DEST) >= 0:
        return 0
    return NOISE_LOGIN


@njit(cache=True, nogil=True)
def _take_auth(b, body, hi, row, spans, ints):
    """``<passdb>(user,address[,<session>]): Password mismatch|unknown user`` to the end."""
    i = body
    if i >= hi or not ((65 <= b[i] <= 90) or (97 <= b[i] <= 122)):
        return 0
    while i < hi and (_alnum(b[i]) or b[i] == 95 or b[i] == 45):
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
        spans[row, 2 * F_SESSION] = s0
        spans[row, 2 * F_SESSION + 1] = s1
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
    spans[row, 2 * F_ACCOUNT] = u0
    spans[row, 2 * F_ACCOUNT + 1] = u1
    spans[row, 2 * F_SOURCE_IP] = a0
    spans[row, 2 * F_SOURCE_IP + 1] = a1
    spans[row, 2 * F_REASON] = r0
    spans[row, 2 * F_REASON + 1] = hi
    ints[row, I_ATTEMPTS] = 1
    return AUTH


@njit(cache=True, nogil=True)
def _take_logout(b, proc, pend, body, hi, row, spans, ints):
    """``imap(user)<pid><session>: ... in=N out=M ...`` / ``pop3(...)...: ... retr=N/SIZE, ..., size=S``."""
    p = _find_byte(b, proc, pend, 40)
    svc = _service(b, proc, p)
    if svc == 0:
        return 0
    retr = _find(b, body, hi, P_RETR)
    if _find(b, body, hi, P_IN) < 0 and retr < 0:
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
    if (
        _twice(b, body, hi, P_IN)
        or _twice(b, body, hi, P_OUT)
        or _twice(b, body, hi, P_RETR)
        or _twice(b, body, hi, P_SIZE)
        or _twice(b, body, hi, P_TOP)
    ):
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
        if _find(b, body, hi, P_BYTES) >= 0:
            return 0
        sz = _find(b, body, hi, P_SIZE)
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
        a = _find(b, body, hi, P_IN)
        o = _find(b, body, hi, P_OUT)
        if o < 0:
            return 0
        bin_ = _lead_int(b, a + 4, hi)
        bout = _lead_int(b, o + 5, hi)
        if bin_ < 0 or bout < 0:
            return 0
        ints[row, I_BYTES_IN] = bin_
        ints[row, I_BYTES_OUT] = bout
    # reason: the body before " in=", then before " top=", then before ":"
    r1 = _find(b, body, hi, P_IN)
    if r1 < 0:
        r1 = hi
    t = _find(b, body, r1, P_TOP)
    if t >= 0:
        r1 = t
    c = _find_byte(b, body, r1, 58)
    if c >= 0:
        r1 = c
    spans[row, 2 * F_ACCOUNT] = u0
    spans[row, 2 * F_ACCOUNT + 1] = u1
    spans[row, 2 * F_SESSION] = s0
    spans[row, 2 * F_SESSION + 1] = s1
    spans[row, 2 * F_REASON] = body
    spans[row, 2 * F_REASON + 1] = r1
    ints[row, I_SERVICE] = svc
    return LOGOUT


@njit(cache=True, nogil=True)
def _take(b, lo, hi, limit_key, limit_year, row, stamps, spans, ints):
    if hi - lo < 24:
        return 0
    bad = 0
    for k in range(lo, hi):
        bad |= (b[k] < 32) | (b[k] > 126)
    if bad:
        return 0
    # RFC 3164 stamp at fixed positions: "Mmm dd hh:mm:ss "
    mon = 0
    for m in range(12):
        if b[lo] == MONTHS[3 * m] and b[lo + 1] == MONTHS[3 * m + 1] and b[lo + 2] == MONTHS[3 * m + 2]:
            mon = m + 1
            break
    if mon == 0 or b[lo + 3] != 32 or b[lo + 6] != 32 or b[lo + 9] != 58 or b[lo + 12] != 58:
        return 0
    if b[lo + 15] != 32 or not _digit(b[lo + 5]):
        return 0
    if b[lo + 4] == 32:
        day = b[lo + 5] - 48
    elif _digit(b[lo + 4]):
        day = (b[lo + 4] - 48) * 10 + b[lo + 5] - 48
    else:
        return 0
    for k in (7, 8, 10, 11, 13, 14):
        if not _digit(b[lo + k]):
            return 0
    hh = (b[lo + 7] - 48) * 10 + b[lo + 8] - 48
    mm = (b[lo + 10] - 48) * 10 + b[lo + 11] - 48
    ss = (b[lo + 13] - 48) * 10 + b[lo + 14] - 48
    if day < 1 or hh > 23 or mm > 59 or ss > 59:
        return 0
    key = (((mon * 100 + day) * 100 + hh) * 100 + mm) * 100 + ss
    year = limit_year if key <= limit_key else limit_year - 1
    leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
    if day > DAYS[mon - 1] + (1 if (mon == 2 and leap) else 0):
        return 0
    # host, then the tag `dovecot` or `dovecot[pid]`, then ": "
    r = lo + 16
    sp = _find_byte(b, r, hi, 32)
    colon = _find(b, r, hi, P_COLON)
    if sp <= r or colon < 0 or colon < sp:
        return 0
    if not _starts(b, sp + 1, colon, P_DOVECOT):
        return 0
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
    if kind != 0:
        stamps[row] = (_days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss) * 1000000
    if kind >= LOGIN_OK and kind <= LOGOUT:
        spans[row, 2 * F_HOST] = r
        spans[row, 2 * F_HOST + 1] = sp
    return kind


@njit(SCAN_SIG, cache=True, nogil=True)
def scan(data, offsets, limit_key, limit_year, kinds, stamps, spans, ints):
    """Every line ``data[offsets[i]:offsets[i + 1]]``: its kind (0: not taken) and fields."""
    for i in range(offsets.shape[0] - 1):
        k = _take(data, offsets[i], offsets[i + 1], limit_key, limit_year, i, stamps, spans, ints)
        if k == 0 or k > LOGOUT:
            # a line not taken (or noise) leaves nothing behind
            for f in range(spans.shape[1]):
                spans[i, f] = -1
            for f in range(ints.shape[1]):
                ints[i, f] = -1
        kinds[i] = k


@njit(cache=True, nogil=True, inline="always")
def _cased(c, case):
    if case == 1 and 65 <= c <= 90:
        return c + 32
    if case == 2 and 97 <= c <= 122:
        return c - 32
    return c


@njit(VIEWS_SIG, cache=True, nogil=True)
def views(data, spans, rows, field, case, out, extra):
    """Arrow string views (16 bytes each, ``out``) of ``data[start:end]`` for the given rows'
    field, case changed (``case`` 1 lower, 2 upper). Values of up to 12 bytes live in the view
    itself, longer ones are copied to ``extra`` (the array's one data buffer): the column never
    holds on to the batch's text. Returns the bytes used in ``extra``."""
    used = 0
    words = out.view(np.uint32)
    for i in range(rows.shape[0]):
        s = spans[rows[i], 2 * field]
        n = spans[rows[i], 2 * field + 1] - s
        if s < 0:
            n = 0
        words[i, 0] = n
        words[i, 1] = 0
        words[i, 2] = 0
        words[i, 3] = 0
        if n <= 12:
            if case == 0:
                for j in range(n):
                    out[i, 4 + j] = data[s + j]
            else:
                for j in range(n):
                    out[i, 4 + j] = _cased(data[s + j], case)
            continue
        if case == 0:
            extra[used : used + n] = data[s : s + n]
        else:
            for j in range(n):
                extra[used + j] = _cased(data[s + j], case)
        for j in range(4):
            out[i, 4 + j] = extra[used + j]
        words[i, 3] = used
        used += n
    return used

"""Text on its way to a terminal: the one place control sequences are taken out.

Account names, HELO names and other log fields are written by attackers and reach the summary,
``detector explain``, warnings and errors. An escape sequence among them could rewrite the screen
(hide a line, fake a verdict, set the window title) or, with bidirectional overrides, show a
different name than the one stored. :func:`safe` turns every such character into a visible escape
(``\\x1b``, ``\\u202e``) and keeps newlines and tabs.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff]"
)
"""C0 controls but tab and newline, DEL, C1 controls (CSI included), zero-width and bidi marks,
line and paragraph separators, the byte-order mark."""


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def safe(text: object) -> str:
    """``text`` with every control or invisible formatting character shown as an escape."""
    return _UNSAFE.sub(_escape, str(text))


def safe_line(text: object) -> str:
    """:func:`safe`, and newlines shown as ``\\n`` too: a value that must stay on one line."""
    return safe(text).replace("\n", "\\n")

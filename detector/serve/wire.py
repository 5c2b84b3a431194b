"""The two wire protocols: Dovecot's auth policy (HTTP/1.1 + JSON) and Postfix's policy delegation.

Both are read with hard bounds (header block, body, line and attribute counts), with timeouts,
and both fail open: a request that cannot be understood is answered "allow" (``{"status":0}``,
``action=DUNNO``) when the peer can take an answer, and the connection is closed when it cannot.
Only the minimal HTTP/1.1 a policy client needs is spoken: ``Content-Length`` bodies, keep-alive,
no chunked uploads, no pipelining beyond reading requests one after the other.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
MAX_HEADERS = 64
MAX_POSTFIX_LINE = 4096
MAX_POSTFIX_ATTRIBUTES = 100
IDLE_SECONDS = 60.0
READ_SECONDS = 10.0

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"


HttpHandler = Callable[[HttpRequest], HttpResponse]
PostfixHandler = Callable[[dict[str, str]], str]


def parse_head(head: bytes) -> tuple[str, str, dict[str, list[str]], dict[str, str]] | None:
    """Request line and headers (names lower-cased) of one request, or ``None`` if malformed."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    method, target = parts[0], parts[1]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or len(headers) >= MAX_HEADERS:
            return None
        headers[name.lower()] = value.strip()
    split = urlsplit(target)
    return method, split.path or "/", parse_qs(split.query, max_num_fields=16), headers


def _response(resp: HttpResponse, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'OK')}\r\n"
        f"Content-Type: {resp.content_type}\r\n"
        f"Content-Length: {len(resp.body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("ascii") + resp.body


def json_response(status: int, doc: dict) -> HttpResponse:
    return HttpResponse(status, json.dumps(doc, separators=(",", ":")).encode())


BAD_REQUEST = json_response(400, {"status": 0, "msg": ""})


class Limiter:
    """At most ``limit`` connections at once per listener; the rest are closed on arrival."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self.tasks: set[asyncio.Task] = set()

    def enter(self) -> bool:
        if self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        return True

    def leave(self) -> None:
        self.open -= 1
        task = asyncio.current_task()
        if task is not None:
            self.tasks.discard(task)

    async def close(self) -> None:
        """Cancel the connections still open (shutdown)."""
        tasks = [t for t in self.tasks if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def http_connection(
    handler: HttpHandler, limiter: Limiter, on_error: Callable[[str], None]
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """An ``asyncio.start_server`` callback serving ``handler`` over keep-alive HTTP/1.1."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not limiter.enter():
            writer.close()
            return
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_SECONDS)
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                    break
                except asyncio.LimitOverrunError:
                    on_error("http_head_too_large")
                    writer.write(_response(BAD_REQUEST, False))
                    break
                parsed = parse_head(head)
                if parsed is None:
                    on_error("http_malformed")
                    writer.write(_response(BAD_REQUEST, False))
                    break
                method, path, query, headers = parsed
                length_text = headers.get("content-length", "0")
                if "transfer-encoding" in headers or not length_text.isdigit() or int(length_text) > MAX_BODY:
                    on_error("http_body_refused")
                    writer.write(_response(BAD_REQUEST, False))
                    break
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    body = await asyncio.wait_for(reader.readexactly(int(length_text)), READ_SECONDS)
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                    break
                keep = headers.get("connection", "").lower() != "close"
                resp = handler(HttpRequest(method, path, query, headers, body))
                writer.write(_response(resp, keep))
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass  # a cancelled connection (shutdown) ends quietly: Python 3.11 logs a re-raised cancel
        finally:
            limiter.leave()
            writer.close()

    return serve


def parse_postfix_line(line: bytes) -> tuple[str, str] | None:
    """One ``name=value`` attribute line (without its newline), or ``None`` if malformed."""
    text = line.decode("utf-8", "replace")
    name, sep, value = text.partition("=")
    if not sep or not name or not name.replace("_", "").isalnum():
        return None
    return name, value


def postfix_connection(
    handler: PostfixHandler, limiter: Limiter, on_error: Callable[[str], None]
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """An ``asyncio.start_server`` callback for ``check_policy_service`` (many requests per connection)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not limiter.enter():
            writer.close()
            return
        attrs: dict[str, str] = {}
        broken = False
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_SECONDS)
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                    break
                except asyncio.LimitOverrunError:
                    on_error("postfix_line_too_long")
                    writer.write(b"action=DUNNO\n\n")
                    break
                line = line.rstrip(b"\r\n")
                if line:
                    pair = parse_postfix_line(line)
                    if pair is None or len(attrs) >= MAX_POSTFIX_ATTRIBUTES:
                        broken = True
                    else:
                        attrs[pair[0]] = pair[1]
                    continue
                if broken:
                    on_error("postfix_malformed")
                    action = "DUNNO"
                else:
                    action = handler(attrs)
                writer.write(f"action={action}\n\n".encode())
                await writer.drain()
                attrs, broken = {}, False
        except (ConnectionError, asyncio.CancelledError):
            pass  # a cancelled connection (shutdown) ends quietly: Python 3.11 logs a re-raised cancel
        finally:
            limiter.leave()
            writer.close()

    return serve

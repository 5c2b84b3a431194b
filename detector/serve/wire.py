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
        self.transports: set[asyncio.BaseTransport | None] = set()

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
        """Close the connections still open (shutdown)."""
        for transport in list(self.transports):
            if transport is not None:
                transport.close()
        tasks = [t for t in self.tasks if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class HttpProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1 serving ``handler``, one request after the other on a connection.

    A protocol rather than streams: no task, coroutine or future per request, which halves the
    CPU a request costs (the whole budget at thousands of requests a second is ~100 us).
    """

    def __init__(self, handler: HttpHandler, limiter: Limiter, on_error: Callable[[str], None]) -> None:
        self.handler = handler
        self.limiter = limiter
        self.on_error = on_error
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: tuple[str, str, dict[str, list[str]], dict[str, str], int] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.entered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.limiter.enter():
            transport.close()
            return
        self.entered = True
        self.limiter.transports.add(transport)
        self._arm(IDLE_SECONDS)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.entered:
            self.entered = False
            self.limiter.leave()
            self.limiter.transports.discard(self.transport)

    def _arm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, kind: str) -> None:
        self.on_error(kind)
        assert self.transport is not None
        self.transport.write(_response(BAD_REQUEST, False))
        self.transport.close()
        self.buffer.clear()

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.buffer += data
        while True:
            if self.pending is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_HEAD:
                        self._refuse("http_head_too_large")
                    else:
                        self._arm(READ_SECONDS if self.buffer else IDLE_SECONDS)
                    return
                if end + 4 > MAX_HEAD:
                    self._refuse("http_head_too_large")
                    return
                parsed = parse_head(bytes(self.buffer[: end + 4]))
                del self.buffer[: end + 4]
                if parsed is None:
                    self._refuse("http_malformed")
                    return
                method, path, query, headers = parsed
                length_text = headers.get("content-length", "0")
                if "transfer-encoding" in headers or not length_text.isdigit() or int(length_text) > MAX_BODY:
                    self._refuse("http_body_refused")
                    return
                if headers.get("expect", "").lower() == "100-continue":
                    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.pending = (method, path, query, headers, int(length_text))
            method, path, query, headers, length = self.pending
            if len(self.buffer) < length:
                self._arm(READ_SECONDS)
                return
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
            self.pending = None
            keep = headers.get("connection", "").lower() != "close"
            transport.write(_response(self.handler(HttpRequest(method, path, query, headers, body)), keep))
            if not keep or transport.get_write_buffer_size() > MAX_BODY:
                transport.close()  # a client that does not read its answers is not served further
                return
            if not self.buffer:
                self._arm(IDLE_SECONDS)
                return


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

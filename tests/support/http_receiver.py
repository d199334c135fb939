"""A webhook receiver on loopback for the notification tests: a real HTTP/1.1 server (asyncio streams,
keep-alive), that checks each request's signature, acts once per ``Idempotency-Key`` (the idempotent
receiver the dispatcher's contract is written for) and counts every delivery.

Scripted: ``script`` holds the answers for the next requests (status, headers, body), consumed in
order, then ``default`` answers; ``delay_s`` holds every answer back (after the request was recorded,
so a dispatcher killed meanwhile has delivered without hearing back); ``stop()`` closes the listening
socket and every open connection, so the next attempt finds the port refusing, and ``start()`` opens
the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.notify.signing import SIGNATURE_HEADER, SignatureInvalid, verify

REASONS = {
    200: "OK",
    202: "Accepted",
    204: "No Content",
    301: "Moved",
    400: "Bad Request",
    401: "Unauthorized",
}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    body: Any = None  # JSON-encoded when not bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Delivery:
    """One request as received: its key, headers (lower-case names), raw body and whether its
    signature verified."""

    key: str | None
    headers: dict[str, str]
    body: bytes
    signed: bool

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    secret: str
    host: str = "127.0.0.1"
    port: int = 0
    delay_s: float = 0.0
    default: Answer = field(default_factory=Answer)
    script: list[Answer] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    # The first body acted on per idempotency key: what an idempotent receiver did.
    effects: dict[str, Any] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            for task in list(self._handlers):  # answers still held back by delay_s
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def counts(self) -> Counter[str | None]:
        """Deliveries per idempotency key."""
        return Counter(d.key for d in self.deliveries)

    async def wait_for(self, n: int, *, timeout_s: float = 30.0) -> None:
        """Until at least ``n`` requests have arrived."""
        deadline = time.monotonic() + timeout_s
        while len(self.deliveries) < n:
            self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.deliveries)} of {n} requests arrived")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                headers, body = request
                answer = self._record(headers, body)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(_response(answer))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    def _record(self, headers: dict[str, str], body: bytes) -> Answer:
        key = headers.get("idempotency-key")
        try:
            verify(self.secret, headers.get(SIGNATURE_HEADER.lower()), body, now_s=int(time.time()))
            signed = True
        except SignatureInvalid:
            signed = False
        self.deliveries.append(Delivery(key, headers, body, signed))
        self.arrived.set()
        answer = self.script.pop(0) if self.script else self.default
        if not signed:
            return Answer(401, {"error": "bad signature"})
        if 200 <= answer.status < 300 and key is not None and key not in self.effects:
            self.effects[key] = json.loads(body)
        return answer


async def _read_request(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return headers, body


def _response(answer: Answer) -> bytes:
    if isinstance(answer.body, bytes):
        body = answer.body
    else:
        body = json.dumps(answer.body if answer.body is not None else {"ok": True}).encode()
    lines = [
        f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, 'Status')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in answer.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

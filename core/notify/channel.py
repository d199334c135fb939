"""The channel interface: what a notification is when it leaves the outbox, what a delivery attempt
returns, and the registry of channels by name.

A channel turns one :class:`Message` into one request to a receiver and says how it went:

* :meth:`DeliveryResult.sent` — the receiver took it (the row is marked ``sent``);
* :meth:`DeliveryResult.retry` — it may work later (a 5xx, a timeout, a refused connection, a
  vendor's "busy"): the dispatcher tries again after a back-off, until the last attempt;
* :meth:`DeliveryResult.permanent` — it never will (a 4xx, a malformed recipient, a channel that is not
  configured): the row goes ``dead`` at once, with the reason in ``last_error``.

A channel never raises for a failed delivery; the dispatcher treats an exception escaping ``send`` as a
retryable failure all the same, so a bug in one channel cannot lose a row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """One outbox row as a channel sees it. ``attempt`` counts from 1 (this delivery's number)."""

    id: int
    channel: str
    recipient: str
    kind: str
    ref: str | None
    payload: Mapping[str, Any]
    idempotency_key: str
    created_at: dt.datetime
    attempt: int = 1


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How one attempt went. ``error`` says why it failed (kept as the row's ``last_error``);
    ``retry_after_s`` is the receiver's own wish (``Retry-After``), honoured within the policy's limit."""

    outcome: Outcome
    error: str | None = None
    retry_after_s: float | None = None
    status: int | None = None  # the HTTP status, when there was one

    @classmethod
    def sent(cls, *, status: int | None = None) -> DeliveryResult:
        return cls(Outcome.SENT, status=status)

    @classmethod
    def retry(
        cls, error: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> DeliveryResult:
        return cls(Outcome.RETRY, error=error, status=status, retry_after_s=retry_after_s)

    @classmethod
    def permanent(cls, error: str, *, status: int | None = None) -> DeliveryResult:
        return cls(Outcome.PERMANENT, error=error, status=status)


class Channel(Protocol):
    """A way of delivering a message (``name`` is the outbox row's ``channel``)."""

    @property
    def name(self) -> str: ...

    async def send(self, message: Message) -> DeliveryResult:
        """One attempt; never raises for a failed delivery (see the module docstring)."""
        ...


@dataclass(slots=True)
class ChannelRegistry:
    """Channels by name. A row whose channel is not registered fails permanently."""

    _channels: dict[str, Channel] = field(default_factory=dict)

    def add(self, channel: Channel) -> None:
        if channel.name in self._channels:
            raise ValueError(f"channel {channel.name!r} is already registered")
        self._channels[channel.name] = channel

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def names(self) -> list[str]:
        return sorted(self._channels)

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._channels.values())

    async def send(self, message: Message) -> DeliveryResult:
        """Deliver through the message's channel; an unknown channel or an exception escaping the
        channel becomes a result (permanent and retryable respectively), never an exception."""
        channel = self._channels.get(message.channel)
        if channel is None:
            return DeliveryResult.permanent(
                f"no channel {message.channel!r} (known: {', '.join(self.names()) or 'none'})"
            )
        try:
            return await channel.send(message)
        except Exception as exc:  # a channel bug must not lose the row: try again later
            return DeliveryResult.retry(f"{message.channel} raised {type(exc).__name__}: {exc}")

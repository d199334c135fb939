"""Delivering the notification outbox (``core.outbox``): channels, signing, retries, the dispatcher.

* :mod:`core.notify.channel` — the :class:`~core.notify.channel.Channel` interface every channel
  implements (``send(message) -> DeliveryResult``: sent, retryable or permanent failure) and the registry
  of channels by name (``webhook``, ``sms``, ``wechat``).
* :mod:`core.notify.signing` — the HMAC-SHA256 signature over timestamp and body that every outgoing
  request carries (``X-Eldercare-Signature: t=…,v1=…``) and its verification, for receivers.
* :mod:`core.notify.webhook`, :mod:`core.notify.sms`, :mod:`core.notify.wechat` — the channels.
* :mod:`core.notify.retry` — the pure back-off rule and the dated ``notify.retry`` policy it reads.
* :mod:`core.notify.dispatcher` — claims due rows under a lease, delivers, marks them sent, retried or
  dead; wakes on ``LISTEN outbox`` and polls as a fallback.
* :mod:`core.notify.stats` — the outbox's counts for ``/metrics``.

Part of the kernel: it names no domain. docs/notifications.md describes the wire contracts.
"""

"""The dispatcher as a long-running task: its database pool, HTTP client and channels, from the settings.

``eldercare scheduler`` runs it beside the scheduled jobs (and so does ``eldercare demo``, which runs
the scheduler); ``eldercare notify`` runs it alone, for a deployment that wants it in a unit of its
own. Several may run at once, against one database: the claim's ``SKIP LOCKED`` and the lease keep
them off each other's rows.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import structlog

from core.clock import Clock, utc_now
from core.notify.channel import ChannelRegistry
from core.notify.dispatcher import Dispatcher, DispatcherConfig
from core.notify.sms import SmsChannel, SmsConfig
from core.notify.webhook import WebhookChannel
from core.notify.wechat import WeChatChannel, WeChatConfig
from core.settings import Settings

log = structlog.get_logger(__name__)


def dispatcher_config(settings: Settings) -> DispatcherConfig:
    """The settings' ``notify_*`` values; the lease must outlast one attempt's timeout, or a slow
    receiver's row could be leased to a second dispatcher while the first is still sending it."""
    if settings.notify_lease_s <= settings.notify_timeout_s:
        raise ValueError(
            f"notify_lease_s ({settings.notify_lease_s}) must exceed "
            f"notify_timeout_s ({settings.notify_timeout_s})"
        )
    return DispatcherConfig(
        batch_size=settings.notify_batch_size,
        lease_s=settings.notify_lease_s,
        concurrency=settings.notify_concurrency,
        poll_s=settings.notify_poll_s,
        drain_s=settings.notify_timeout_s + 5,
    )


def build_channels(
    settings: Settings, client: httpx.AsyncClient, *, clock: Clock = utc_now
) -> ChannelRegistry:
    """``webhook``, ``sms`` and ``wechat``, signing with the settings' secret. An SMS or WeChat channel
    without a gateway is still registered: its rows fail permanently, saying what is missing."""
    secret = settings.notify_webhook_secret
    channels = ChannelRegistry()
    channels.add(WebhookChannel(client, secret=secret, clock=clock))
    channels.add(
        SmsChannel(
            client,
            SmsConfig.parse(
                gateway_url=settings.notify_sms_gateway_url,
                sign_name=settings.notify_sms_sign_name,
                templates_json=settings.notify_sms_templates,
            ),
            secret=secret,
            clock=clock,
        )
    )
    channels.add(
        WeChatChannel(
            client,
            WeChatConfig.parse(
                gateway_url=settings.notify_wechat_gateway_url,
                templates_json=settings.notify_wechat_templates,
            ),
            secret=secret,
            clock=clock,
        )
    )
    return channels


def http_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client for every channel: the attempt's timeout, no redirects, no proxy from the
    environment (a receiver on a private network must not be sent through a proxy by accident)."""
    limits = httpx.Limits(
        max_connections=settings.notify_concurrency * 2, max_keepalive_connections=settings.notify_concurrency
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.notify_timeout_s),
        limits=limits,
        follow_redirects=False,
        trust_env=False,
    )


async def run_dispatcher(settings: Settings, *, stop: asyncio.Event, clock: Clock = utc_now) -> None:
    """Deliver the outbox until ``stop`` is set."""
    config = dispatcher_config(settings)
    pool = await asyncpg.create_pool(settings.asyncpg_dsn, min_size=1, max_size=4)
    try:
        async with http_client(settings) as client:
            dispatcher = Dispatcher(
                pool,
                build_channels(settings, client, clock=clock),
                config=config,
                clock=clock,
                listen_dsn=settings.asyncpg_dsn,
            )
            await dispatcher.run(stop)
    finally:
        await pool.close()

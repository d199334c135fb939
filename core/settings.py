"""One settings object, built once from the environment and passed into ``create_app``."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_ROOT / ".eldercare"


def _secret(name: str = "secret_key") -> str:
    """A persistent per-checkout secret (``.eldercare/<name>``) so it survives a restart."""
    path = STATE_DIR / name
    if path.exists():
        return path.read_text().strip()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/eldercare"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    secret_key: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    debug: bool = False
    log_json: bool = True
    log_level: str = "INFO"
    display_timezone: str = "Asia/Shanghai"
    session_ttl_seconds: int = 12 * 3600
    secure_cookies: bool = False
    # The ingest worker's MQTT client id; the broker keys its persistent sessions on it, so a worker
    # restarted with the same id is handed what was queued for it meanwhile. Empty: one per process.
    ingest_client_id: str = ""
    # Notifications (core.notify, docs/notifications.md). The shared secret that signs every webhook
    # and gateway request (HMAC-SHA256, ``X-Eldercare-Signature``); like ``secret_key``, generated once
    # per checkout into .eldercare/notify_webhook_secret when the environment gives none.
    notify_webhook_secret: str = field(default="", repr=False)
    notify_timeout_s: float = 10.0  # one delivery attempt, connection included
    # A claimed row is leased for this long: no other dispatcher takes it meanwhile. Longer than the
    # timeout, so a slow receiver's attempt ends (with an outcome) before anyone else may try.
    notify_lease_s: float = 60.0
    notify_batch_size: int = 20  # rows claimed per round trip
    notify_concurrency: int = 16  # deliveries in flight at once per dispatcher
    notify_poll_s: float = 5.0  # the fallback poll when no NOTIFY arrives
    # The vendor gateways (empty: not configured; their rows fail permanently, saying so). Templates
    # map a notification kind to the vendor's template, as JSON (see docs/notifications.md).
    notify_sms_gateway_url: str = ""
    notify_sms_sign_name: str = ""
    notify_sms_templates: str = "{}"
    notify_wechat_gateway_url: str = ""
    notify_wechat_templates: str = "{}"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        d = cls()  # the defaults (with slots=True, class attributes are slot descriptors, not defaults)
        s = cls(
            database_url=env.get("ELDERCARE_DATABASE_URL", d.database_url),
            mqtt_url=env.get("ELDERCARE_MQTT_URL", d.mqtt_url),
            secret_key=env.get("ELDERCARE_SECRET_KEY") or _secret(),
            host=env.get("ELDERCARE_HOST", d.host),
            port=int(env.get("ELDERCARE_PORT", str(d.port))),
            debug=env.get("ELDERCARE_DEBUG", "") == "1",
            log_json=env.get("ELDERCARE_LOG_JSON", "1") == "1",
            log_level=env.get("ELDERCARE_LOG_LEVEL", d.log_level),
            secure_cookies=env.get("ELDERCARE_SECURE_COOKIES", "") == "1",
            ingest_client_id=env.get("ELDERCARE_INGEST_CLIENT_ID", d.ingest_client_id),
            notify_webhook_secret=env.get("ELDERCARE_NOTIFY_WEBHOOK_SECRET")
            or _secret("notify_webhook_secret"),
            notify_timeout_s=float(env.get("ELDERCARE_NOTIFY_TIMEOUT_S", str(d.notify_timeout_s))),
            notify_lease_s=float(env.get("ELDERCARE_NOTIFY_LEASE_S", str(d.notify_lease_s))),
            notify_batch_size=int(env.get("ELDERCARE_NOTIFY_BATCH_SIZE", str(d.notify_batch_size))),
            notify_concurrency=int(env.get("ELDERCARE_NOTIFY_CONCURRENCY", str(d.notify_concurrency))),
            notify_poll_s=float(env.get("ELDERCARE_NOTIFY_POLL_S", str(d.notify_poll_s))),
            notify_sms_gateway_url=env.get("ELDERCARE_NOTIFY_SMS_GATEWAY_URL", ""),
            notify_sms_sign_name=env.get("ELDERCARE_NOTIFY_SMS_SIGN_NAME", ""),
            notify_sms_templates=env.get("ELDERCARE_NOTIFY_SMS_TEMPLATES", d.notify_sms_templates),
            notify_wechat_gateway_url=env.get("ELDERCARE_NOTIFY_WECHAT_GATEWAY_URL", ""),
            notify_wechat_templates=env.get("ELDERCARE_NOTIFY_WECHAT_TEMPLATES", d.notify_wechat_templates),
        )
        return replace(s, **overrides)  # type: ignore[arg-type]

    @property
    def asyncpg_dsn(self) -> str:
        """The database URL without SQLAlchemy's driver suffix, for raw asyncpg/COPY paths."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

"""One settings object, built once from the environment and passed into ``create_app``."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_ROOT / ".eldercare"


def _secret() -> str:
    """A persistent per-checkout secret so sessions survive a restart."""
    path = STATE_DIR / "secret_key"
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
        )
        return replace(s, **overrides)  # type: ignore[arg-type]

    @property
    def asyncpg_dsn(self) -> str:
        """The database URL without SQLAlchemy's driver suffix, for raw asyncpg/COPY paths."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

"""The deploy broker config made local (demo.broker.local_mosquitto_config), and the rule that
keeps service client ids out of the device listener's reach."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.broker import (
    DEPLOY_CONFIG,
    DEVICE_PORT,
    SERVICE_PORT,
    local_mosquitto_config,
)
from iot_ingest.consumer import IngestConfig
from iot_ingest.wire import INGEST_CLIENT_ID_PREFIX, RESERVED_USERNAME_PREFIX


def _listeners(config: str) -> dict[str, list[str]]:
    """Each listener line with the settings that follow it (up to the next listener)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in config.splitlines():
        if line.startswith("listener "):
            current = blocks.setdefault(line, [])
        elif current is not None:
            current.append(line)
    return blocks


def test_deploy_config_binds_device_client_ids_to_usernames() -> None:
    work = Path("/srv/broker-work")
    config = local_mosquitto_config(
        DEPLOY_CONFIG.read_text(), workdir=work, ports={DEVICE_PORT: 41883, SERVICE_PORT: 41884}
    )
    blocks = _listeners(config)
    assert set(blocks) == {"listener 41883 127.0.0.1", "listener 41884 127.0.0.1"}
    devices, services = blocks["listener 41883 127.0.0.1"], blocks["listener 41884 127.0.0.1"]
    assert "use_username_as_clientid true" in devices
    assert f"password_file {work / 'passwd'}" in devices
    assert f"acl_file {work / 'acl'}" in devices
    assert f"password_file {work / 'service-passwd'}" in services
    assert "use_username_as_clientid true" not in services
    assert config.splitlines().count("per_listener_settings true") == 1
    assert f"pid_file {work / 'mosquitto.pid'}" in config
    assert "/etc/mosquitto" not in config
    assert "/run/mosquitto" not in config


def test_local_config_can_drop_directives_and_needs_every_port() -> None:
    base = DEPLOY_CONFIG.read_text()
    dropped = local_mosquitto_config(
        base, workdir=Path("/w"), ports={DEVICE_PORT: 1, SERVICE_PORT: 2}, drop={"acl_file"}
    )
    assert "acl_file" not in dropped
    with pytest.raises(ValueError, match="listener 1884"):
        local_mosquitto_config(base, workdir=Path("/w"), ports={DEVICE_PORT: 1})


def test_ingest_client_ids_are_in_the_reserved_namespace() -> None:
    assert INGEST_CLIENT_ID_PREFIX.startswith(RESERVED_USERNAME_PREFIX)
    assert IngestConfig().client_id.startswith(INGEST_CLIENT_ID_PREFIX)
    assert IngestConfig(client_id=f"{INGEST_CLIENT_ID_PREFIX}-1").client_id.endswith("-1")
    with pytest.raises(ValueError, match="must start with"):
        IngestConfig(client_id="ingest-1")

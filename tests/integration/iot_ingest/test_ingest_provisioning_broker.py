"""Provisioning through the API against a private Mosquitto running our deploy/ configuration: the
password returned once lets the device in, only under its own topic, and revocation locks it out."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.settings import Settings
from tests.integration.iot_ingest.test_ingest_api import device_body, iot_client
from tests.integration.iot_ingest.test_ingest_broker import Conn
from tests.integration.iot_ingest.test_ingest_broker import broker as broker  # the fixture, re-exported
from tests.support.ingest_faults import PrivateBroker
from tests.support.registry import elder_in, headers_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto binary not installed"),
]


def connect_when_reloaded(port: int, username: str, password: str) -> Conn:
    """The broker re-reads its password file on SIGHUP asynchronously: retry briefly."""
    deadline = time.monotonic() + 5
    while True:
        conn = Conn(port, username, password)
        if conn.ok or time.monotonic() > deadline:
            return conn
        conn.close()
        time.sleep(0.1)


async def test_issued_password_connects_to_own_topic_only_until_revoked(
    broker: PrivateBroker,
    test_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    db: AsyncSession,
) -> None:
    port, files, accounts = broker.port, broker.files, broker.passwords
    admin = await headers_for(db, "demo_admin")
    elder = await elder_in(db, "420902")
    async with iot_client(test_settings, sessionmaker, files) as client:
        r = await client.post("/api/v1/devices", json=device_body("band-live", elder.id), headers=admin)
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["broker_updated"], body["broker_reloaded"]) == (True, True)
        password = body["credential"]["password"]
        line = next(x for x in files.password_file.read_text().splitlines() if x.startswith("band-live:"))
        assert password not in line

        ingest = Conn(broker.service_port, "eldercare-ingest", accounts["eldercare-ingest"])
        device = connect_when_reloaded(port, "band-live", password)
        wrong = Conn(port, "band-live", password[:-1] + ("A" if password[-1] != "A" else "B"))
        try:
            assert ingest.ok
            assert device.ok, device.result
            assert not wrong.ok
            ingest.client.subscribe("$share/ingest/eldercare/v1/#", qos=1)
            await asyncio.sleep(0.3)
            own = device.publish("eldercare/v1/dev/band-live/telemetry", b'{"values":{"hr":72}}')
            assert not own.is_failure
            assert device.publish("eldercare/v1/dev/devA/telemetry", b"spoofed").is_failure
            await asyncio.sleep(0.5)
            assert ingest.received == [("eldercare/v1/dev/band-live/telemetry", b'{"values":{"hr":72}}')]

            r = await client.post(f"/api/v1/devices/{body['device']['id']}/revoke", headers=admin)
            assert r.status_code == 200, r.text
            assert (r.json()["broker_updated"], r.json()["broker_reloaded"]) == (True, True)
            assert device.disconnected.wait(5), "the connected, revoked device is dropped on reload"
            assert "band-live:" not in files.password_file.read_text()
            again = Conn(port, "band-live", password)
            assert not again.ok
            again.close()
            # The other accounts in the file were left alone.
            assert Conn(port, "devA", accounts["devA"]).ok
        finally:
            for c in (ingest, device, wrong):
                c.close()

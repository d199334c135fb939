"""The ingest's in-memory device registry: what routing and the alarm rules need to know per device.

The router looks every message's device up here, so the lookup must not touch the database: the whole
registry is loaded at start and every ``cache_refresh_s`` (:class:`iot_ingest.consumer.IngestConfig`);
a device registered since is looked up once when its first message arrives, and an unknown one is
remembered as unknown for 30 seconds so that a flood from it does not become a flood of queries.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from iot_ingest.monitoring.rules import ThresholdOverrides, apply_overrides, overrides_from_row
from iot_ingest.normalise import DeviceInfo, Message
from iot_ingest.rules import AlarmThresholds, DeviceContext


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as routing sees it: registry checks (``info``), rule context (``ctx``), and its elder's
    own monitoring settings: the safe zone and the thresholds they override (``overrides``: vital
    signs, the night window for doors; ``None`` when the policy's apply unchanged)."""

    info: DeviceInfo
    ctx: DeviceContext
    safe_zone: dict[str, Any] | None
    overrides: ThresholdOverrides | None = None
    # The last policy given to :meth:`thresholds` and what it made of it: the policy of a day is one
    # object until it is reloaded, so the copy is made once, not per message.
    _last: list[tuple[AlarmThresholds, AlarmThresholds]] = field(default_factory=list, compare=False)

    def thresholds(self, policy: AlarmThresholds) -> AlarmThresholds:
        """The thresholds the rules apply to this device's messages: the policy's, with the elder's
        own values in place (a copy only for elders that have some)."""
        if self.overrides is None:
            return policy
        last = self._last
        if last and last[0][0] is policy:
            return last[0][1]
        own = apply_overrides(policy, self.overrides)
        last[:] = [(policy, own)]
        return own


_MISS_MEMORY_S = 30.0  # how long a device found unknown stays unknown without another query

_DEVICE_QUERY = """
    SELECT d.id, d.uid, d.serial, d.status, g.uid AS gateway_uid, d.friendly_name, d.elder_id, d.kind,
           d.power, coalesce(e.has_dementia, false) AS has_dementia, m.safe_zone, m.vital_overrides,
           m.night_start_minute, m.night_end_minute
    FROM device d
    LEFT JOIN gateway g ON g.id = d.gateway_id
    LEFT JOIN elder e ON e.id = d.elder_id
    LEFT JOIN elder_monitoring m ON m.elder_id = d.elder_id
"""


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _record(row: asyncpg.Record) -> DeviceRecord:
    info = DeviceInfo(row["id"], row["uid"], row["serial"], row["status"], row["gateway_uid"])
    ctx = DeviceContext(row["id"], row["elder_id"], row["kind"], row["power"], row["has_dementia"])
    overrides = overrides_from_row(
        _json(row["vital_overrides"]), row["night_start_minute"], row["night_end_minute"]
    )
    return DeviceRecord(info, ctx, _json(row["safe_zone"]), overrides)


class DeviceCache:
    """Devices by uid and by (gateway uid, friendly name); misses are looked up once and remembered."""

    def __init__(self) -> None:
        self.by_uid: dict[str, DeviceRecord] = {}
        self.by_z2m: dict[tuple[str, str], DeviceRecord] = {}
        self._misses: dict[tuple[str, str, str | None], float] = {}

    def _add(self, row: asyncpg.Record) -> DeviceRecord:
        rec = _record(row)
        self.by_uid[rec.info.uid] = rec
        if row["gateway_uid"] and row["friendly_name"]:
            self.by_z2m[(row["gateway_uid"], row["friendly_name"])] = rec
        return rec

    async def load(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(_DEVICE_QUERY)
        self.by_uid.clear()
        self.by_z2m.clear()
        self._misses.clear()
        for row in rows:
            self._add(row)

    def peek(self, message: Message) -> DeviceRecord | None:
        src = message.source
        if src.scheme == "z2m":
            if src.friendly_name is None:
                return None
            return self.by_z2m.get((src.uid, src.friendly_name))
        return self.by_uid.get(src.uid)

    async def get(self, conn: asyncpg.Connection, message: Message) -> DeviceRecord | None:
        found = self.peek(message)
        if found is not None:
            return found
        src = message.source
        miss_key = (src.scheme, src.uid, src.friendly_name)
        if time.monotonic() - self._misses.get(miss_key, -1e9) < _MISS_MEMORY_S:
            return None
        if src.scheme == "z2m":
            row = await conn.fetchrow(
                _DEVICE_QUERY + " WHERE g.uid = $1 AND d.friendly_name = $2", src.uid, src.friendly_name
            )
        else:
            row = await conn.fetchrow(_DEVICE_QUERY + " WHERE d.uid = $1", src.uid)
        if row is None:
            self._misses[miss_key] = time.monotonic()
            return None
        return self._add(row)

"""The MQTT wire contract between devices and the platform (DOMAIN §8): topics and native payloads.

This is the only module of ours that ``simulators/`` may import (an import-linter contract in
``pyproject.toml`` says so), so it imports nothing but the standard library and msgspec. The ingest's
normaliser (:mod:`iot_ingest.normalise`) parses what is described here; the simulator builds it.

Topics, all under :data:`TOPIC_ROOT`:

* native devices: ``{root}/dev/{uid}/telemetry``, ``…/event``, ``…/status`` (payloads below) and
  ``…/senml`` (an RFC 8428 SenML JSON pack, or the draft-era object with ``e``; what is read is in
  docs/ingest.md); ``…/cmd/…`` are commands to the device, never ingested;
* Zigbee2MQTT gateways: base topic ``{root}/z2m/{gateway uid}``, so a device's state is on
  ``{root}/z2m/{gateway}/{friendly_name}`` (plus ``…/availability`` and ``…/bridge/state``);
* OwnTracks: ``{root}/owntracks/{uid}/{device}``.

The device's uid is its broker username, and the broker's pattern ACL (``deploy/mosquitto/acl``) lets
an account publish only under its own subtree (:func:`account_prefix`).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

TOPIC_ROOT: Final = "eldercare/v1"

# Broker accounts starting with this are the platform's own, never a device's or gateway's
# (iot_ingest.provisioning refuses such uids). The ingest's client ids start with
# INGEST_CLIENT_ID_PREFIX, which no account on the device listener has as its username: so no
# client there, whose client id is its username, can take over an ingest session
# (deploy/mosquitto/README.md).
RESERVED_USERNAME_PREFIX: Final = "eldercare"
INGEST_CLIENT_ID_PREFIX: Final = "eldercare-ingest"

# --- Topics ----------------------------------------------------------------------------------------


def device_topic(uid: str, kind: Literal["telemetry", "event", "status", "senml"]) -> str:
    """The topic a native device publishes ``kind`` messages on."""
    return f"{TOPIC_ROOT}/dev/{uid}/{kind}"


def z2m_topic(gateway: str, friendly_name: str, *, availability: bool = False) -> str:
    """The state (or availability) topic of a Zigbee device behind a Zigbee2MQTT gateway."""
    topic = f"{TOPIC_ROOT}/z2m/{gateway}/{friendly_name}"
    return topic + "/availability" if availability else topic


def owntracks_topic(uid: str, device: str) -> str:
    """The location topic of an OwnTracks user ``uid`` (the device's account) and its device name."""
    return f"{TOPIC_ROOT}/owntracks/{uid}/{device}"


def account_prefix(*, uid: str, gateway: bool) -> str:
    """The topic subtree the broker's ACL lets the account ``uid`` publish under."""
    return f"{TOPIC_ROOT}/z2m/{uid}/" if gateway else f"{TOPIC_ROOT}/dev/{uid}/"


# --- Native payloads -------------------------------------------------------------------------------
# ``ts`` is the device's clock in epoch milliseconds (absent: the platform's receive time); ``seq`` a
# per-device sequence number (with ``ts`` it identifies a retried message as a duplicate);
# ``device_id`` (or ``device``) may name the device inside the payload, and must then match the topic.
# Unset fields are left out of the encoded JSON (``omit_defaults``).


class NativeTelemetry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``…/dev/{uid}/telemetry``: readings by canonical metric name (hr, spo2, battery…) taken at ``ts``."""

    ts: int | float | None = None
    seq: int | None = None
    values: dict[str, float]
    device_id: str | None = None
    device: str | None = None


class NativeEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``…/dev/{uid}/event``: one event (``sos``, ``fall``, ``door_open``…) with free-form ``data``."""

    ts: int | float | None = None
    seq: int | None = None
    type: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    device_id: str | None = None
    device: str | None = None


class NativeStatus(msgspec.Struct):
    """``…/dev/{uid}/status`` (and Zigbee2MQTT's ``…/availability``): the device's availability."""

    state: Literal["online", "offline"]


def encode(payload: NativeTelemetry | NativeEvent | NativeStatus) -> bytes:
    """The JSON bytes of a native payload."""
    return msgspec.json.encode(payload)

"""Broker accounts for devices and gateways: create (password returned once), revoke, reload.

The broker reads a Mosquitto password file and a static pattern ACL (``deploy/mosquitto/acl``): the
username *is* the device or gateway uid, so the ACL needs no per-device lines. The password is hashed
here in Mosquitto's own ``$7$`` format (PBKDF2-SHA512, what ``mosquitto_passwd`` writes); the same hash
goes into ``device_credential.password_hash`` and into the password file, so the file can always be
rebuilt from the database. After each change the broker is sent ``SIGHUP``; Mosquitto then reloads the
password file and re-checks connected clients, so a revoked device is dropped.

The broker step is optional: with no password file configured (``ELDERCARE_MOSQUITTO_PASSWORD_FILE``
unset) only the database is updated and callers report ``broker_updated = False``.

The service functions take the session (keyword-only) and flush; the caller commits. The database is
changed first and the password file second, so a refused insert never leaves a broker account behind;
if the transaction fails after the file was written, the account exists on the broker without a live
``device_credential`` row, which :func:`revoke_credential` / re-provisioning overwrite.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import fcntl
import hashlib
import os
import secrets
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import structlog
from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.crud import add_and_audit, update_and_audit
from core.errors import Conflict, Invalid
from core.identity.authz import Principal
from iot_ingest.inventory import check_new_elder, editable, visible_gateway_ref
from iot_ingest.models import Device, DeviceCredential, Gateway
from iot_ingest.wire import RESERVED_USERNAME_PREFIX

log = structlog.get_logger("iot_ingest.provisioning")

Item = TypeVar("Item", Device, Gateway)

# Mosquitto 2.0's default. Passwords are 192 random bits, so more iterations would buy nothing against
# guessing and only cost broker CPU when thousands of devices reconnect at once.
HASH_ITERATIONS: Final = 101
HASH_SALT_BYTES: Final = 12

_LOCK = asyncio.Lock()


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS) -> str:
    """``$7$<iterations>$<salt b64>$<PBKDF2-SHA512 b64>``, the format of Mosquitto 2 password files."""
    salt = secrets.token_bytes(HASH_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_mosquitto_hash(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (constant-time comparison)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    expected = mosquitto_hash(password, salt=base64.b64decode(parts[3]), iterations=int(parts[2]))
    return secrets.compare_digest(expected, hashed)


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Where the broker's password file lives and how to tell it to reload."""

    password_file: Path
    pid_file: Path | None = None

    def _apply(self, changes: Mapping[str, str | None]) -> set[str]:
        """Set (hash) or remove (``None``) these users' lines, leaving every other line alone;
        returns the users that were present before.

        Read-modify-write under an exclusive ``flock`` so several API workers never lose each
        other's changes; the new file replaces the old one atomically (mode 0640: the broker reads it
        through a shared group).
        """
        lock_path = self.password_file.with_name(self.password_file.name + ".lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            lines = self.password_file.read_text().splitlines() if self.password_file.exists() else []
            present = {line.split(":", 1)[0] for line in lines} & changes.keys()
            kept = [line for line in lines if line.split(":", 1)[0] not in changes]
            kept += [f"{user}:{hashed}" for user, hashed in sorted(changes.items()) if hashed is not None]
            tmp = self.password_file.with_name(self.password_file.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            with os.fdopen(fd, "w") as out:
                out.write("".join(line + "\n" for line in kept))
            os.replace(tmp, self.password_file)
        return present

    async def apply(self, changes: Mapping[str, str | None]) -> set[str]:
        return await asyncio.to_thread(self._apply, changes)

    async def set_hash(self, username: str, hashed: str) -> None:
        await self.apply({username: hashed})

    async def set_password(self, username: str, password: str) -> None:
        await self.set_hash(username, mosquitto_hash(password))

    async def delete(self, username: str) -> bool:
        """Remove the account; returns whether it was in the file."""
        return bool(await self.apply({username: None}))

    def reload(self) -> bool:
        """Send SIGHUP to the broker; returns False when there is no pid file (e.g. broker elsewhere)."""
        if self.pid_file is None or not self.pid_file.exists():
            return False
        pid = int(self.pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
        return True


def broker_from_env(env: Mapping[str, str]) -> BrokerFiles | None:
    """The broker files named by ``ELDERCARE_MOSQUITTO_PASSWORD_FILE`` and ``ELDERCARE_MOSQUITTO_PID_FILE``,
    or ``None`` when no password file is configured (credentials are then recorded in the database only)."""
    password_file = env.get("ELDERCARE_MOSQUITTO_PASSWORD_FILE", "").strip()
    if not password_file:
        return None
    pid_file = env.get("ELDERCARE_MOSQUITTO_PID_FILE", "").strip()
    return BrokerFiles(password_file=Path(password_file), pid_file=Path(pid_file) if pid_file else None)


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """Returned once to the installer; the platform keeps only the hash of the password.

    ``broker_updated``: the broker's password file now holds the account; ``broker_reloaded``: the
    broker was signalled to re-read it (False when the broker is elsewhere and reloads on its own).
    """

    username: str
    password: str
    broker_updated: bool
    broker_reloaded: bool


@dataclass(frozen=True, slots=True)
class RevokedCredential:
    username: str
    known: bool
    broker_updated: bool
    broker_reloaded: bool


def new_password() -> str:
    """A random password of 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


async def issue_credential(
    *,
    session: AsyncSession,
    broker: BrokerFiles | None,
    username: str,
    device_id: int | None = None,
    gateway_id: int | None = None,
) -> IssuedCredential:
    """Create (or rotate) the broker account ``username`` for a device or gateway."""
    if (device_id is None) == (gateway_id is None):
        raise ValueError("exactly one of device_id and gateway_id")
    password = new_password()
    hashed = mosquitto_hash(password)
    row = await session.get(DeviceCredential, username)
    if row is None:
        session.add(
            DeviceCredential(
                username=username, device_id=device_id, gateway_id=gateway_id, password_hash=hashed
            )
        )
    else:
        row.device_id, row.gateway_id, row.password_hash, row.revoked_at = device_id, gateway_id, hashed, None
    await session.flush()
    reloaded = False
    if broker is not None:
        async with _LOCK:
            await broker.set_hash(username, hashed)
            reloaded = broker.reload()
    log.info(
        "device.credential_issued",
        username=username,
        device_id=device_id,
        gateway_id=gateway_id,
        broker_updated=broker is not None,
    )
    return IssuedCredential(username, password, broker is not None, reloaded)


async def revoke_credential(
    *, session: AsyncSession, broker: BrokerFiles | None, username: str, now: dt.datetime
) -> RevokedCredential:
    """Mark the credential revoked and delete the broker account (also when the row is unknown, so a
    half-provisioned account is cleaned up)."""
    row = await session.get(DeviceCredential, username)
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
        await session.flush()
    reloaded = False
    if broker is not None:
        async with _LOCK:
            await broker.delete(username)
            reloaded = broker.reload()
    log.info("device.credential_revoked", username=username, broker_updated=broker is not None)
    return RevokedCredential(username, row is not None, broker is not None, reloaded)


# --- Registration use cases (HTTP: POST /devices, /gateways, …/revoke) ---------------------------


@dataclass(frozen=True, slots=True)
class NewDevice:
    uid: str
    kind: str
    model: str
    serial: str
    elder_id: int | None = None
    gateway_id: int | None = None
    friendly_name: str | None = None
    power: str = "battery"


async def _check_uid_and_serial(session: AsyncSession, *, uid: str, serial: str, model: type[Item]) -> None:
    """The uid is a broker username: unique across devices, gateways and past credentials."""
    if uid.lower().startswith(RESERVED_USERNAME_PREFIX):
        raise Invalid(
            f"uid may not start with {RESERVED_USERNAME_PREFIX!r} (reserved for services).",
            code="device.uid_reserved",
            field="uid",
        )
    taken = await session.scalar(
        select(
            or_(
                exists().where(Device.uid == uid),
                exists().where(Gateway.uid == uid),
                exists().where(DeviceCredential.username == uid),
            )
        )
    )
    if taken:
        raise Conflict(f"The uid {uid!r} is already in use.", code="device.uid_taken", field="uid")
    if await session.scalar(select(exists().where(model.serial == serial))):
        raise Conflict(
            f"The serial {serial!r} is already registered.", code="device.serial_taken", field="serial"
        )


async def _check_gateway_slot(session: AsyncSession, actor: Principal, new: NewDevice) -> None:
    if new.gateway_id is None:
        if new.friendly_name is not None:
            raise Invalid(
                "friendly_name names a device on a Zigbee gateway; give gateway_id too.",
                code="device.friendly_name_without_gateway",
                field="friendly_name",
            )
        return
    if new.friendly_name is None:
        raise Invalid(
            "A device behind a gateway needs its Zigbee2MQTT friendly_name.",
            code="device.friendly_name_required",
            field="friendly_name",
        )
    gateway = await visible_gateway_ref(session, actor, new.gateway_id)
    if gateway.elder_id is not None and new.elder_id is not None and gateway.elder_id != new.elder_id:
        raise Conflict("The gateway is installed in another home.", code="device.gateway_home_mismatch")
    clash = await session.scalar(
        select(exists().where(Device.gateway_id == new.gateway_id, Device.friendly_name == new.friendly_name))
    )
    if clash:
        raise Conflict("Another device on this gateway has this friendly name.", code="conflict.duplicate")


async def register_device(
    *, session: AsyncSession, actor: Principal, broker: BrokerFiles | None, new: NewDevice
) -> tuple[Device, IssuedCredential | None]:
    """Add a device to a home and, unless it sits behind a Zigbee gateway, its broker account.

    Scope as for moving a device (:func:`iot_ingest.inventory.update_device`): admins anywhere, a
    civil-affairs officer only into homes of their districts. The password is in the result only.
    """
    await check_new_elder(session, actor, new.elder_id)
    await _check_uid_and_serial(session, uid=new.uid, serial=new.serial, model=Device)
    await _check_gateway_slot(session, actor, new)
    device = await add_and_audit(
        session,
        Device(
            uid=new.uid,
            kind=new.kind,
            model=new.model,
            serial=new.serial,
            elder_id=new.elder_id,
            gateway_id=new.gateway_id,
            friendly_name=new.friendly_name,
            power=new.power,
            status="active",
        ),
        actor=actor,
        entity="device",
    )
    issued = None
    if new.gateway_id is None:
        issued = await issue_credential(
            session=session, broker=broker, username=device.uid, device_id=device.id
        )
    log.info("device.registered", device_id=device.id, uid=device.uid, by=actor.user_id)
    return device, issued


async def register_gateway(
    *,
    session: AsyncSession,
    actor: Principal,
    broker: BrokerFiles | None,
    uid: str,
    model: str,
    serial: str,
    elder_id: int | None,
) -> tuple[Gateway, IssuedCredential]:
    """Add a Zigbee2MQTT gateway (base topic ``{root}/z2m/{uid}``, :mod:`iot_ingest.wire`) and its
    broker account."""
    await check_new_elder(session, actor, elder_id)
    await _check_uid_and_serial(session, uid=uid, serial=serial, model=Gateway)
    gateway = await add_and_audit(
        session,
        Gateway(uid=uid, model=model, serial=serial, elder_id=elder_id, status="active"),
        actor=actor,
        entity="gateway",
    )
    issued = await issue_credential(
        session=session, broker=broker, username=gateway.uid, gateway_id=gateway.id
    )
    log.info("gateway.registered", gateway_id=gateway.id, uid=gateway.uid, by=actor.user_id)
    return gateway, issued


async def revoke_device(
    *, session: AsyncSession, actor: Principal, broker: BrokerFiles | None, device_id: int, now: dt.datetime
) -> tuple[Device, RevokedCredential]:
    """Lock a device out: status ``revoked`` (audited) and its broker account deleted. Idempotent."""
    device: Device = await editable(session, actor, Device, device_id)
    await update_and_audit(session, device, {"status": "revoked"}, actor=actor, entity="device")
    revoked = await revoke_credential(session=session, broker=broker, username=device.uid, now=now)
    return device, revoked


async def revoke_gateway(
    *, session: AsyncSession, actor: Principal, broker: BrokerFiles | None, gateway_id: int, now: dt.datetime
) -> tuple[Gateway, RevokedCredential]:
    """Lock a gateway (and so every Zigbee device behind it) out of the broker. Idempotent."""
    gateway: Gateway = await editable(session, actor, Gateway, gateway_id)
    await update_and_audit(session, gateway, {"status": "revoked"}, actor=actor, entity="gateway")
    revoked = await revoke_credential(session=session, broker=broker, username=gateway.uid, now=now)
    return gateway, revoked


@dataclass(frozen=True, slots=True)
class BrokerSync:
    live: int
    removed: int
    reloaded: bool


async def sync_broker_accounts(*, session: AsyncSession, broker: BrokerFiles) -> BrokerSync:
    """Make the password file agree with ``device_credential``: every live credential's hash is
    written, every revoked one removed; other lines (the ingest service's account, credentials issued
    before hashes were kept) are left alone. For deployments that provisioned with no password file
    configured (``broker_updated: false``) or restored the broker from an old backup. Idempotent."""
    rows = (
        await session.execute(
            select(DeviceCredential.username, DeviceCredential.password_hash, DeviceCredential.revoked_at)
        )
    ).all()
    changes: dict[str, str | None] = {}
    for username, hashed, revoked_at in rows:
        if revoked_at is not None:
            changes[username] = None
        elif hashed is not None:
            changes[username] = hashed
    async with _LOCK:
        present = await broker.apply(changes)
        reloaded = broker.reload()
    removed = sum(1 for user, hashed in changes.items() if hashed is None and user in present)
    live = sum(1 for hashed in changes.values() if hashed is not None)
    log.info("broker.accounts_synced", live=live, removed=removed)
    return BrokerSync(live, removed, reloaded)

"""Broker accounts for devices and gateways: create (password returned once), revoke, reload.

The broker reads a Mosquitto password file (hashes written by ``mosquitto_passwd``) and a static
pattern ACL (``deploy/mosquitto/acl``): the username *is* the device or gateway uid, so the ACL needs
no per-device lines. After each change the broker is sent ``SIGHUP``; Mosquitto then reloads the
password file and re-checks connected clients, so a revoked device is dropped.

The service functions take the session (keyword-only) and flush; the caller commits. The password
file is changed before the caller commits: if the transaction then fails, the account exists on the
broker without a ``device_credential`` row, which :func:`revoke` / re-provisioning overwrite.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from iot_ingest.models import DeviceCredential

log = structlog.get_logger("iot_ingest.provisioning")

_LOCK = asyncio.Lock()


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Where the broker's password file lives and how to tell it to reload."""

    password_file: Path
    pid_file: Path | None = None
    mosquitto_passwd: str = "mosquitto_passwd"  # noqa: S105 - the tool, not a password

    async def _run(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            self.mosquitto_passwd,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"mosquitto_passwd failed: {err.decode(errors='replace').strip()}")

    async def set_password(self, username: str, password: str) -> None:
        if not self.password_file.exists():
            self.password_file.touch(mode=0o600)
        await self._run("-b", str(self.password_file), username, password)

    async def delete(self, username: str) -> None:
        if self.password_file.exists():
            await self._run("-D", str(self.password_file), username)

    def reload(self) -> bool:
        """Send SIGHUP to the broker; returns False when there is no pid file (e.g. broker elsewhere)."""
        if self.pid_file is None or not self.pid_file.exists():
            return False
        pid = int(self.pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
        return True


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """Returned once to the installer; only the broker keeps (a hash of) the password."""

    username: str
    password: str


def new_password() -> str:
    """A random password of 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


async def issue_credential(
    *,
    session: AsyncSession,
    broker: BrokerFiles,
    username: str,
    device_id: int | None = None,
    gateway_id: int | None = None,
) -> IssuedCredential:
    """Create (or rotate) the broker account ``username`` for a device or gateway."""
    if (device_id is None) == (gateway_id is None):
        raise ValueError("exactly one of device_id and gateway_id")
    password = new_password()
    async with _LOCK:
        await broker.set_password(username, password)
        broker.reload()
    row = await session.get(DeviceCredential, username)
    if row is None:
        session.add(DeviceCredential(username=username, device_id=device_id, gateway_id=gateway_id))
    else:
        row.device_id, row.gateway_id, row.revoked_at = device_id, gateway_id, None
    await session.flush()
    log.info("device.credential_issued", username=username, device_id=device_id, gateway_id=gateway_id)
    return IssuedCredential(username, password)


async def revoke_credential(
    *, session: AsyncSession, broker: BrokerFiles, username: str, now: dt.datetime
) -> bool:
    """Delete the broker account and mark the credential revoked; returns False if it was unknown."""
    async with _LOCK:
        await broker.delete(username)
        broker.reload()
    row = (
        await session.execute(select(DeviceCredential).where(DeviceCredential.username == username))
    ).scalar_one_or_none()
    if row is None:
        return False
    row.revoked_at = now
    await session.flush()
    log.info("device.credential_revoked", username=username)
    return True

"""SenML (RFC 8428) packs resolved exactly as the RFC says, and the names they give to our telemetry.

:func:`resolve` turns a decoded JSON pack into resolved records (§4.6): the base name is prepended to
each name (§4.5.1), base time added to time and times below 2**28 taken relative to ``now``, the
message's receive time (§4.5.3), base unit used where a record has no unit (§4.5.2), base value
added to the value and base sum to the sum (§4.5.4); the base fields carry forward to later records
until a record sets them again (§4). It checks what the RFC requires of a receiver:

* §4.5.1 the resolved name starts with a letter or digit and holds only ``A-Z a-z 0-9 - : . / _``;
* §4.2 exactly one Value field (``v``, ``vs``, ``vb``, ``vd``) unless there is a Sum, and a record
  with neither is an error. A record holding base fields only (no regular field at all) just sets
  the bases for the records after it, as in the RFC's own example of §5.1.7;
* §4.4 a version (``bver``) above 10, the version this ingest understands, is refused, and so is a
  pack whose records disagree on the version; a field whose label ends with ``_`` must be
  understood, so an unknown one is an error (other unknown fields are ignored);
* §5 each field has the JSON type of Table 2; ``vd`` is base64url without padding (RFC 4648 §5).

Two JSON forms are read: the RFC's array of records, and the object ``{"bn": …, "bt": …, "e": [...]}``
of the draft era (draft-jennings-core-senml, OMA LwM2M 1.0 JSON), whose top-level fields are the base
fields of the pack (``ver`` its version) and whose entries write a string value ``sv`` and a boolean
value ``bv``. The CBOR representation (§6) is recognised and refused: the ``…/senml`` topic carries
JSON (DOMAIN §8).

:func:`split_name` says which device a resolved name names and which of its resources; the
normaliser (:mod:`iot_ingest.normalise`) maps resolved records to readings and events with it.

Everything here is pure: no clock (``now`` is an argument), no I/O.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

MAX_VERSION: Final = 10  # RFC 8428 is version 10, the default (§4.1)
RELATIVE_BELOW: Final = 2**28  # times below this are seconds relative to "now" (§4.5.3)
RFC: Final = "RFC 8428 "

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")
_NAME_RULE: Final = "must start with A-Z, a-z or 0-9 and hold only A-Z a-z 0-9 - : . / _"
_BASE64URL = re.compile(r"[A-Za-z0-9_\-]*")
_VALUE_LABELS: Final = ("v", "vs", "vb", "vd")
_REGULAR_LABELS: Final = frozenset({"n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"})
_DRAFT_BASE_LABELS: Final = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_DEVICE_ID_END = re.compile(r"[:/]")

# The metric a record names when its name names only the device (RFC 8428 §5.1.1, §5.1.3: one
# 1-wire sensor whose records differ by unit). Units are RFC 8428 §12.1 symbols.
UNIT_METRICS: Final[Mapping[str, str]] = {
    "Cel": "temperature",
    "%RH": "humidity",
    "%EL": "battery",
    "lat": "lat",
    "lon": "lon",
    "beat/min": "hr",
}


class SenMLError(Exception):
    """A pack the RFC does not let us use. ``reason`` is a dead-letter reason code; ``detail``
    names the rule (``RFC 8428 §4.5.1: …``)."""

    def __init__(self, detail: str, reason: str = "senml") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Record(msgspec.Struct, frozen=True, omit_defaults=True):
    """A resolved record (§4.6): full name, absolute time, no base fields.

    ``t`` is seconds since the Unix epoch (UTC), a relative time already resolved against ``now``.
    At most one of ``v``, ``vs``, ``vb``, ``vd`` is set; ``s`` is the sum, in ``u`` × seconds.
    """

    n: str
    t: float
    u: str | None = None
    v: float | None = None
    vs: str | None = None
    vb: bool | None = None
    vd: str | None = None
    s: float | None = None
    ut: float | None = None


def resolve(pack: Any, *, now: dt.datetime, max_records: int = 500) -> list[Record]:
    """Resolve a decoded SenML JSON pack (§4.6) received at ``now`` (UTC)."""
    records = _records(pack)
    if len(records) > max_records:
        raise SenMLError(f"{len(records)} records, above {max_records}", reason="too_large")
    bases = _Bases(now.timestamp())
    out: list[Record] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise SenMLError(f"{RFC}§5: record {i} must be a JSON object")
        bases.update(rec, i)
        kinds = [k for k in _VALUE_LABELS if k in rec]
        if len(kinds) > 1:
            raise SenMLError(
                f"{RFC}§4.2: record {i} has {', '.join(kinds)}; exactly one Value field may appear"
            )
        if not kinds and "s" not in rec and bases.bs is None:
            if _REGULAR_LABELS.isdisjoint(rec):
                continue  # base fields only: they apply to the records after it
            raise SenMLError(f"{RFC}§4.2: record {i} has no value (v, vs, vb or vd) and no sum (s)")
        out.append(bases.resolve(rec, i, kinds[0] if kinds else None))
    return out


@dataclass(slots=True)
class _Bases:
    """The base fields in effect (§4: each applies from its record up to the next that sets it)."""

    now_s: float
    bn: str = ""
    bt: float = 0.0
    bu: str | None = None
    bv: float = 0.0
    bs: float | None = None
    version: int = 0  # of the pack; 0 before the first record

    def update(self, rec: dict[str, Any], i: int) -> None:
        for label in rec:
            if label.endswith("_"):
                raise SenMLError(
                    f"{RFC}§4.4: record {i} has {label!r}, a field that must be understood"
                    " (its label ends with '_') and is not known here"
                )
        self.version = _check_version(rec, i, self.version)
        if "bn" in rec:
            self.bn = _string(rec, "bn", i)
        if "bt" in rec:
            self.bt = _number(rec, "bt", i)
        if "bu" in rec:
            self.bu = _string(rec, "bu", i)
        if "bv" in rec:
            self.bv = _number(rec, "bv", i)
        if "bs" in rec:
            self.bs = _number(rec, "bs", i)

    def resolve(self, rec: dict[str, Any], i: int, kind: str | None) -> Record:
        """The record with these bases applied; ``kind`` is its Value label, if it has one."""
        name = self.bn + _string(rec, "n", i) if "n" in rec else self.bn
        if not _NAME.fullmatch(name):
            what = f"name {name[:80]!r}" if name else "no name (no n and no base name)"
            raise SenMLError(f"{RFC}§4.5.1: record {i} has {what}; a name {_NAME_RULE}")
        unit = _string(rec, "u", i) if "u" in rec else self.bu
        t = self.bt + _number(rec, "t", i) if "t" in rec else self.bt
        if t < RELATIVE_BELOW:
            t += self.now_s  # relative to now (§4.5.3): zero is now, negative the past
        s = None
        if "s" in rec or self.bs is not None:
            s = (_number(rec, "s", i) if "s" in rec else 0.0) + (self.bs or 0.0)
        ut = _number(rec, "ut", i) if "ut" in rec else None
        if kind == "v":
            return Record(name, t, unit, v=_number(rec, "v", i) + self.bv, s=s, ut=ut)
        if kind == "vs":
            return Record(name, t, unit, vs=_string(rec, "vs", i), s=s, ut=ut)
        if kind == "vb":
            vb = rec["vb"]
            if not isinstance(vb, bool):
                raise SenMLError(f"{RFC}§5: record {i}: vb must be a JSON Boolean")
            return Record(name, t, unit, vb=vb, s=s, ut=ut)
        if kind == "vd":
            vd = _string(rec, "vd", i)
            if not _BASE64URL.fullmatch(vd) or len(vd) % 4 == 1:
                raise SenMLError(f"{RFC}§5: record {i}: vd must be base64url (RFC 4648 §5) without padding")
            return Record(name, t, unit, vd=vd, s=s, ut=ut)
        return Record(name, t, unit, s=s, ut=ut)


def _records(pack: Any) -> list[Any]:
    if isinstance(pack, list):
        if not pack:
            raise SenMLError(f"{RFC}§3: a pack holds one or more records")
        return pack
    if isinstance(pack, dict) and "e" in pack:
        return _draft_records(pack)
    raise SenMLError(
        f"{RFC}§5: a pack is a JSON array of records (or, from a draft-era gateway, an object with 'e')"
    )


def _draft_records(pack: dict[str, Any]) -> list[Any]:
    """The draft-era object form as an RFC pack: its base fields go onto the first record."""
    entries = pack["e"]
    if not isinstance(entries, list) or not entries:
        raise SenMLError(f"{RFC}§5: 'e' of a draft-era pack must be a non-empty array of records")
    base: dict[str, Any] = {}
    for label, value in pack.items():
        key = "bver" if label == "ver" else label  # the draft's name for the version
        if key in _DRAFT_BASE_LABELS or key.endswith("_"):
            base[key] = value
    records: list[Any] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise SenMLError(f"{RFC}§5: record {i} must be a JSON object")
        rec = dict(entry)
        if "sv" in rec:  # the draft's String Value
            if "vs" in rec:
                raise SenMLError(f"{RFC}§4.2: record {i} has sv and vs; exactly one Value field may appear")
            rec["vs"] = rec.pop("sv")
        if "bv" in rec:  # in a draft entry, the Boolean Value (base fields sit on the object)
            if not isinstance(rec["bv"], bool):
                raise SenMLError(f"{RFC}§5: record {i}: bv in a draft-era entry is a Boolean Value")
            if "vb" in rec:
                raise SenMLError(f"{RFC}§4.2: record {i} has bv and vb; exactly one Value field may appear")
            rec["vb"] = rec.pop("bv")
        records.append(rec)
    records[0] = {**records[0], **base}
    return records


def _check_version(rec: dict[str, Any], i: int, pack_version: int) -> int:
    """The pack's version (0 before the first record): §4.4 refuses a newer one and a mix."""
    if "bver" not in rec:
        return pack_version or MAX_VERSION
    raw = rec["bver"]
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw) or raw < 1:
        raise SenMLError(f"{RFC}§4.1: record {i}: bver must be a positive integer")
    version = int(raw)
    if version > MAX_VERSION:
        raise SenMLError(
            f"{RFC}§4.4: version {version} is newer than {MAX_VERSION}, the version understood here;"
            " the pack must not be used"
        )
    if pack_version and version != pack_version:
        raise SenMLError(
            f"{RFC}§4.4: record {i} has version {version} and an earlier record {pack_version};"
            " all records of a pack have the same version"
        )
    return version


def _string(rec: dict[str, Any], label: str, i: int) -> str:
    value = rec[label]
    if not isinstance(value, str):
        raise SenMLError(f"{RFC}§5: record {i}: {label} must be a JSON String")
    return value


def _number(rec: dict[str, Any], label: str, i: int) -> float:
    value = rec[label]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SenMLError(f"{RFC}§5: record {i}: {label} must be a JSON Number")
    try:
        f = float(value)
    except OverflowError:  # a JSON integer too large for a double
        f = math.inf
    if not math.isfinite(f):
        raise SenMLError(f"record {i}: {label}={str(value)[:40]}", reason="impossible_value")
    return f


def is_cbor_pack(payload: bytes) -> bool:
    """Whether ``payload`` opens like a CBOR pack (§6: a definite-length array, major type 4)
    rather than JSON (which opens with ``[``, ``{`` or white space)."""
    return bool(payload) and 0x80 <= payload[0] <= 0x9F


# --- Names -------------------------------------------------------------------------------------------


def split_name(name: str, uid: str) -> tuple[str | None, str]:
    """``(device, resource)`` of a resolved name published on the topic of device ``uid``.

    ``device`` is the device the name names, when it names one other than by the topic's uid:
    the id of a device URN (``urn:dev:ow:10e2073a01080063:temp`` → ``10e2073a01080063``, RFC 9039,
    the examples of RFC 8428 §5) or an IP address before the first ``/`` (``2001:db8::2/temperature``,
    RFC 8428 §4.5.1 and §5.1.6); the caller checks it is this device. ``resource`` is what follows
    (``temp``, ``temperature``); a name that begins with ``uid`` followed by ``:`` or ``/`` names the
    resource after it; any other name is a resource of the device as a whole. A name that names
    only the device gives an empty resource (§5.1.1).
    """
    if name.startswith("urn:dev:"):
        kind, sep, rest = name[8:].partition(":")
        if sep and kind:
            end = _DEVICE_ID_END.search(rest)
            ident, resource = (rest[: end.start()], rest[end.end() :]) if end else (rest, "")
            return ident or None, resource
        return None, name
    head, sep, tail = name.partition("/")
    if sep and (":" in head or "." in head) and _is_ip(head):
        return head, tail
    n = len(uid)
    if name[:n].lower() == uid.lower() and (len(name) == n or name[n] in ":/"):
        return None, name[n + 1 :]
    return None, name


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

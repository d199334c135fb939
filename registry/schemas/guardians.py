"""Guardians (家属/监护人) and their links to elders."""

from __future__ import annotations

import datetime as dt

import msgspec

from api.schemas.common import UNSET, Id64, Name, PhoneIn, Relation, Unset
from core.registry.guardians import GuardianView, LinkView
from core.types import Input


class GuardianCreate(Input):
    """With ``elder_id`` the guardian is linked to that elder at once (required for civil-affairs
    officers)."""

    name: Name
    phone: PhoneIn
    elder_id: Id64 | None = None
    relation: Relation | None = None
    is_primary: bool = False


class GuardianUpdate(Input):
    name: Name | Unset = UNSET
    phone: PhoneIn | Unset = UNSET


class GuardianRead(msgspec.Struct):
    id: int
    name: str
    phone: str
    elder_ids: list[int]
    created_at: dt.datetime


class LinkCreate(Input):
    guardian_id: Id64
    relation: Relation
    is_primary: bool = False


class ElderGuardianRead(msgspec.Struct):
    guardian_id: int
    name: str
    phone: str
    relation: str
    is_primary: bool


def guardian_read(v: GuardianView) -> GuardianRead:
    g = v.guardian
    return GuardianRead(id=g.id, name=g.name, phone=g.phone, elder_ids=v.elder_ids, created_at=g.created_at)


def link_read(v: LinkView) -> ElderGuardianRead:
    g = v.guardian
    return ElderGuardianRead(
        guardian_id=g.id, name=g.name, phone=g.phone, relation=v.relation, is_primary=v.is_primary
    )

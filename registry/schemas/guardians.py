"""Guardians (家属/监护人) and their links to elders."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import msgspec

from core.http import Page, component_key
from core.types import UNSET, Id64, Input, Name, PhoneIn, Unset
from registry.schemas.common import Relation

if TYPE_CHECKING:
    # The service takes this module's request bodies as its commands; its views appear here only in
    # the read converters' annotations, so the import is the type checker's alone (no cycle).
    from registry.service.guardians import GuardianView, LinkView


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


# Paged lists keep the OpenAPI component names they had when these schemas were in api/schemas/
# (clients see them; see core.http.component_key).
GuardianPage = Annotated[Page[GuardianRead], component_key("Page_api.schemas.guardians.GuardianRead_")]

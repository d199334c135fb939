"""Users, roles (DOMAIN §9) and scopes: the request bodies of ``/api/v1/users``, which the user
service (:mod:`core.identity.users`) takes as its commands, and the user as the API shows it."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from core.http import Page, component_key
from core.identity.models import Role
from core.identity.passwords import Password
from core.types import UNSET, Id32, Id64, Input, Name, PhoneIn, Unset

if TYPE_CHECKING:
    # The service takes this module's request bodies as its commands; its view appears here only in
    # the read converter's annotation, so the import is the type checker's alone (no cycle).
    from core.identity.users import UserView

Username = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.\-]{2,39}$")]
Locale = Literal["zh-CN", "en"]
DistrictIds = Annotated[list[Id32], msgspec.Meta(max_length=20)]


class UserCreate(Input):
    """Scope fields by role: provider_admin → ``provider_id``; caregiver → ``caregiver_id``;
    elder → ``elder_id``; family → ``guardian_id``; civil_affairs → ``district_ids`` (≥ 1);
    operator/supervisor → optional ``district_ids``; admin → none."""

    username: Username
    display_name: Name
    password: Password
    role: Role
    phone: PhoneIn | None = None
    provider_id: Id32 | None = None
    caregiver_id: Id64 | None = None
    elder_id: Id64 | None = None
    guardian_id: Id64 | None = None
    district_ids: DistrictIds = msgspec.field(default_factory=list)
    locale: Locale = "zh-CN"
    is_active: bool = True


class UserUpdate(Input):
    """A new role clears the scope fields it does not take; ``unlock: true`` ends a lock-out."""

    display_name: Name | Unset = UNSET
    password: Password | Unset = UNSET
    role: Role | Unset = UNSET
    phone: PhoneIn | Unset | None = UNSET
    provider_id: Id32 | Unset | None = UNSET
    caregiver_id: Id64 | Unset | None = UNSET
    elder_id: Id64 | Unset | None = UNSET
    guardian_id: Id64 | Unset | None = UNSET
    district_ids: DistrictIds | Unset = UNSET
    locale: Locale | Unset = UNSET
    is_active: bool | Unset = UNSET
    unlock: bool | Unset = UNSET


class PasswordReset(Input):
    """Without ``new_password`` a temporary one is generated and returned once."""

    new_password: Password | None = None


class PasswordResetRead(msgspec.Struct):
    user_id: int
    # Only when generated: hand it to the user; it is not stored in clear and cannot be shown again.
    temporary_password: str | None
    password_change_required: bool


class UserRead(msgspec.Struct):
    id: int
    username: str
    display_name: str
    phone: str | None
    role: str
    provider_id: int | None
    caregiver_id: int | None
    elder_id: int | None
    guardian_id: int | None
    district_ids: list[int]
    locale: str
    is_active: bool
    failed_logins: int
    locked_until: dt.datetime | None
    password_change_required: bool
    created_at: dt.datetime


def user_read(v: UserView) -> UserRead:
    u = v.user
    return UserRead(
        id=u.id,
        username=u.username,
        display_name=u.display_name,
        phone=u.phone,
        role=u.role,
        provider_id=u.provider_id,
        caregiver_id=u.caregiver_id,
        elder_id=u.elder_id,
        guardian_id=u.guardian_id,
        district_ids=v.district_ids,
        locale=u.locale,
        is_active=u.is_active,
        failed_logins=u.failed_logins,
        locked_until=u.locked_until,
        password_change_required=u.password_change_required,
        created_at=u.created_at,
    )


# The paged list keeps the OpenAPI component name it had when these schemas were in api/schemas/
# (clients see it; see core.http.component_key).
UserPage = Annotated[Page[UserRead], component_key("Page_api.schemas.users.UserRead_")]

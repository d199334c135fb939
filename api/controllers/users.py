"""``/api/v1/users``: admins manage logins, roles and scopes."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody

from core.http import PAGINATION, CurrentPrincipal, Db, Now, PageWindow, page
from core.identity import users
from core.identity.authz import allow
from core.identity.models import Role
from core.identity.schemas import (
    PasswordReset,
    PasswordResetRead,
    UserCreate,
    UserPage,
    UserRead,
    UserUpdate,
    user_read,
)
from core.identity.users import UserFilter
from registry.routes.params import Id32Query, NamePrefix

ADMIN = allow(Role.ADMIN)


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]  # noqa: RUF012
    dependencies = PAGINATION

    @get("/", opt=ADMIN, summary="List users")
    async def list_users(
        self,
        db: Db,
        window: PageWindow,
        role: FromQuery[Role | None] = None,
        provider_id: Id32Query = None,
        district_id: Id32Query = None,
        is_active: FromQuery[bool | None] = None,
        name: NamePrefix = None,
    ) -> UserPage:
        filters = UserFilter(
            role=role.value if role else None,
            provider_id=provider_id,
            district_id=district_id,
            is_active=is_active,
            name_prefix=name,
        )
        return page(await users.list_users(session=db, filters=filters, window=window), user_read)

    @get("/{user_id:int}", opt=ADMIN, summary="One user")
    async def get_user(self, db: Db, user_id: FromPath[int]) -> UserRead:
        return user_read(await users.get_user(session=db, user_id=user_id))

    @post("/", opt=ADMIN, summary="Create a user with a role and scope")
    async def create_user(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[UserCreate]
    ) -> UserRead:
        return user_read(await users.create_user(session=db, actor=principal, data=data, now=now))

    @patch("/{user_id:int}", opt=ADMIN, summary="Change a user (role, scope, password, lock)")
    async def update_user(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        user_id: FromPath[int],
        data: JSONBody[UserUpdate],
    ) -> UserRead:
        view = await users.update_user(session=db, actor=principal, user_id=user_id, changes=data, now=now)
        return user_read(view)

    @post("/{user_id:int}/unlock", opt=ADMIN, status_code=200, summary="End a sign-in lock-out")
    async def unlock_user(self, db: Db, principal: CurrentPrincipal, user_id: FromPath[int]) -> UserRead:
        return user_read(await users.unlock_user(session=db, actor=principal, user_id=user_id))

    @post(
        "/{user_id:int}/password",
        opt=ADMIN,
        status_code=200,
        summary="Reset a user's password; all their sessions end, a new password is required at sign-in",
    )
    async def reset_password(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        user_id: FromPath[int],
        data: JSONBody[PasswordReset],
    ) -> PasswordResetRead:
        temporary = await users.reset_password(
            session=db, actor=principal, user_id=user_id, password=data.new_password, now=now
        )
        return PasswordResetRead(user_id=user_id, temporary_password=temporary, password_change_required=True)

    @delete("/{user_id:int}", opt=ADMIN, summary="Delete a user who never acted")
    async def delete_user(self, db: Db, principal: CurrentPrincipal, user_id: FromPath[int]) -> None:
        await users.delete_user(session=db, actor=principal, user_id=user_id)

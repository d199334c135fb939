"""Web sign-in: HttpOnly SameSite cookie, CSRF on forms, cookie not enough for API writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from core.identity.models import AppUser
from tests.conftest import DEMO_PASSWORD, Client
from tests.integration.web.conftest import PASSWORD

pytestmark = pytest.mark.integration


async def _csrf(client: Client) -> str:
    r = await client.get("/login")
    assert r.status_code == 200
    token = client.cookies.get("ec_csrf")
    assert token
    return token


async def test_anonymous_home_redirects_to_login(client: Client) -> None:
    r = await client.get("/", follow_redirects=False)
    assert r.status_code in (302, 303, 307)
    assert r.headers["location"] == "/login"


async def test_login_page_is_chinese_by_default_and_english_on_request(client: Client) -> None:
    zh = await client.get("/login")
    assert 'lang="zh-CN"' in zh.text
    assert "用户名或手机号" in zh.text
    en = await client.get("/login?lang=en")
    assert "Username or phone" in en.text
    assert 'lang="en"' in en.text


async def test_form_without_csrf_token_is_refused(client: Client, web_user: AppUser) -> None:
    await _csrf(client)
    r = await client.post("/login", data={"login": web_user.username, "password": PASSWORD})
    assert r.status_code == 403
    assert r.json()["code"] == "auth.csrf"


async def test_cookie_login_flow_and_logout(client: Client, web_user: AppUser) -> None:
    token = await _csrf(client)
    r = await client.post(
        "/login",
        data={"login": web_user.username, "password": PASSWORD, "_csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    set_cookie = r.headers["set-cookie"].lower()
    assert "ec_session=" in set_cookie
    assert "httponly" in set_cookie
    assert "samesite=lax" in set_cookie

    home = await client.get("/")
    assert home.status_code == 200
    assert "网页测试" in home.text
    assert "系统管理员" in home.text

    # The cookie reads the API but cannot write through it (no CSRF on /api; writes need the bearer token).
    assert (await client.get("/api/v1/auth/me")).json()["username"] == web_user.username
    write = await client.post("/api/v1/auth/logout")
    assert write.status_code == 401

    out = await client.post(
        "/logout", data={"_csrf_token": client.cookies.get("ec_csrf")}, follow_redirects=False
    )
    assert out.status_code == 303
    assert (await client.get("/api/v1/auth/me")).status_code == 401


async def test_wrong_password_shows_message_not_500(client: Client, web_user: AppUser) -> None:
    token = await _csrf(client)
    r = await client.post(
        "/login", data={"login": web_user.username, "password": "nope", "_csrf_token": token}
    )
    assert r.status_code == 401
    assert "用户名或密码错误" in r.text


async def test_the_web_form_and_the_api_share_one_lock_out(client: Client, web_user: AppUser) -> None:
    """The sign-in page counts failures like the API does (one mechanism), and says when to return."""
    token = await _csrf(client)
    form = {"login": web_user.username, "password": "nope", "_csrf_token": token}
    statuses = [(await client.post("/login", data=form)).status_code for _ in range(4)]
    assert statuses == [401] * 4
    locked = await client.post("/login", data=form)
    assert (locked.status_code, locked.headers["retry-after"]) == (423, "30")
    assert "账户已临时锁定" in locked.text
    api = await client.post("/api/v1/auth/login", json={"login": web_user.username, "password": PASSWORD})
    assert (api.status_code, api.json()["code"]) == (423, "auth.locked")


async def test_audit_rows_carry_the_request_id_and_client_address(
    client: Client, web_user: AppUser, db: AsyncSession
) -> None:
    r = await client.post(
        "/api/v1/auth/login",
        json={"login": web_user.username, "password": PASSWORD},
        headers={"X-Request-ID": "req-audit-0001"},
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "req-audit-0001"
    row = (
        await db.execute(
            select(AuditLog.ip, AuditLog.request_id).where(
                AuditLog.action == "login", AuditLog.entity_id == str(web_user.id)
            )
        )
    ).one()
    assert (str(row.ip), row.request_id) == ("127.0.0.1", "req-audit-0001")

    # A malformed caller id is replaced by a fresh one.
    r = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert len(r.headers["x-request-id"]) == 32


async def _web_login(client: Client, login: str, password: str) -> None:
    token = await _csrf(client)
    r = await client.post(
        "/login", data={"login": login, "password": password, "_csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303, r.text


async def test_after_an_admin_reset_the_web_asks_for_a_new_password_first(
    client: Client, web_user: AppUser, login: Callable[..., Awaitable[dict[str, str]]]
) -> None:
    admin = await login("demo_admin")
    r = await client.post(f"/api/v1/users/{web_user.id}/password", json={}, headers=admin)
    assert r.status_code == 200, r.text
    temporary = r.json()["temporary_password"]

    await _web_login(client, web_user.username, temporary)
    home = await client.get("/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) in ((302, "/password"), (303, "/password"))
    page = await client.get("/password")
    assert page.status_code == 200
    assert "管理员已重置您的密码" in page.text

    new = "web-own-passphrase-2026"
    form = {"current_password": temporary, "new_password": new, "confirm_password": new}
    r = await client.post("/password", data={**form, "_csrf_token": client.cookies["ec_csrf"]})
    assert r.status_code == 200, r.text
    assert "密码已修改" in r.text
    assert (await client.get("/", follow_redirects=False)).status_code == 200
    me = await client.get("/api/v1/auth/me")
    assert me.json()["password_change_required"] is False
    fresh = await client.post("/api/v1/auth/login", json={"login": web_user.username, "password": new})
    assert fresh.status_code == 200


async def test_the_web_password_form_checks_like_the_api_and_ends_other_sessions(
    client: Client, web_user: AppUser, db: AsyncSession
) -> None:
    other = await client.post("/api/v1/auth/login", json={"login": web_user.username, "password": PASSWORD})
    other_headers = {"Authorization": f"Bearer {other.json()['access_token']}"}
    await _web_login(client, web_user.username, PASSWORD)
    csrf = client.cookies["ec_csrf"]

    without = await client.post("/password", data={"current_password": PASSWORD, "new_password": "x" * 12})
    assert without.status_code == 403  # CSRF, as every form

    mismatch = {"current_password": PASSWORD, "new_password": "a" * 12, "confirm_password": "b" * 12}
    r = await client.post("/password", data={**mismatch, "_csrf_token": csrf})
    assert r.status_code == 422
    assert "两次输入的新密码不一致" in r.text

    short = {"current_password": PASSWORD, "new_password": "short", "confirm_password": "short"}
    assert (await client.post("/password", data={**short, "_csrf_token": csrf})).status_code == 422

    wrong = {"current_password": "not-the-password", "new_password": "c" * 12, "confirm_password": "c" * 12}
    r = await client.post("/password", data={**wrong, "_csrf_token": csrf})
    assert r.status_code == 422
    assert "当前密码错误" in r.text
    failed = await db.scalar(
        select(AuditLog).where(
            AuditLog.action == "password_change_failed", AuditLog.entity_id == str(web_user.id)
        )
    )
    assert failed is not None  # a wrong current password counts, as on the API

    good = {"current_password": PASSWORD, "new_password": "d" * 12, "confirm_password": "d" * 12}
    r = await client.post("/password", data={**good, "_csrf_token": csrf})
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/auth/me", headers=other_headers)).status_code == 401
    assert (await client.get("/", follow_redirects=False)).status_code == 200  # this session stays
    changed = await db.scalar(
        select(AuditLog).where(AuditLog.action == "password_change", AuditLog.entity_id == str(web_user.id))
    )
    assert changed is not None


async def test_the_home_page_shows_figures_to_staff_only_as_the_service_decides(client: Client) -> None:
    """The figures service refuses non-staff (403 on the API); the page then shows the user's own
    scope and no figures, without a role rule of its own."""
    for username, figures_shown in (("demo_caregiver", False), ("demo_civil_affairs", True)):
        client.cookies.clear()
        token = await _csrf(client)
        r = await client.post(
            "/login",
            data={"login": username, "password": DEMO_PASSWORD, "_csrf_token": token},
            follow_redirects=False,
        )
        assert r.status_code == 303, username
        home = await client.get("/")
        assert home.status_code == 200, username
        assert ('data-figure="fig.elders"' in home.text) is figures_shown, username
        assert ("本人相关" in home.text) is not figures_shown, username

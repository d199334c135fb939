"""The ledger's guarantees against the real database: idempotency keys (same fields answer the
original, other fields are refused), reversals (once), append-only rows, balances as of any instant,
concurrent postings over shared accounts in every order (no deadlock, nothing lost, nothing twice),
and the check finding a planted imbalance and a paid line whose visit is not verified."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing import ledger
from billing.ledger_check import run_check
from billing.ledger_models import AccountKind, LedgerAccount, TransferKind
from billing.settlement import close_period, ensure_period
from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.models import Visit
from tests.conftest import TEST_NOW, Client
from tests.factories import Factory
from tests.support import billing as sb
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration

URL = "/api/v1/billing/ledger"


async def _accounts(db: AsyncSession, *names: str) -> list[int]:
    ids = await ledger.open_accounts(
        db, [ledger.AccountSpec(f"manual:{n}", AccountKind.MANUAL) for n in names]
    )
    return [ids[f"manual:{n}"] for n in names]


async def test_idempotency_keys_and_reversals_over_the_api(make: Factory, client: Client) -> None:
    admin = (await make.admin()).headers
    a = (await client.post(f"{URL}/accounts", headers=admin, json={"code": "t-a", "name": "A"})).json()
    b = (await client.post(f"{URL}/accounts", headers=admin, json={"code": "t-b", "name": "B"})).json()
    a_id, b_id = a["account_id"], b["account_id"]
    batch: dict[str, Any] = {
        "key": "batch-1",
        "transfers": [
            {"key": "t-1", "debit_account_id": a_id, "credit_account_id": b_id, "amount_fen": 500},
            {"key": "t-2", "debit_account_id": b_id, "credit_account_id": a_id, "amount_fen": 200},
        ],
    }
    first = await client.post(f"{URL}/transfers", headers=admin, json=batch)
    assert first.status_code == 200, first.text
    assert first.json()["replayed"] is False
    # The same request again: the original, nothing new.
    again = await client.post(f"{URL}/transfers", headers=admin, json=batch)
    assert again.json()["replayed"] is True
    assert [t["id"] for t in again.json()["transfers"]] == [t["id"] for t in first.json()["transfers"]]
    # The same batch key with other fields: refused, not applied.
    changed = {**batch, "transfers": [{**batch["transfers"][0], "amount_fen": 501}, batch["transfers"][1]]}
    r = await client.post(f"{URL}/transfers", headers=admin, json=changed)
    assert (r.status_code, problem_code(r)) == (409, "ledger.idempotency_conflict")
    # A transfer key reused under a new batch key with other fields: refused; with the same: answered.
    r = await client.post(f"{URL}/transfers", headers=admin, json={**changed, "key": "batch-2"})
    assert (r.status_code, problem_code(r)) == (409, "ledger.idempotency_conflict")
    r = await client.post(f"{URL}/transfers", headers=admin, json={**batch, "key": "batch-3"})
    assert r.json()["replayed"] is True
    balance = (await client.get(f"{URL}/accounts/{a_id}", headers=admin)).json()
    assert (balance["debits_posted"], balance["credits_posted"]) == (500, 200)
    # Reversal: once. The same reversal key again is answered; another key is refused.
    t1 = first.json()["transfers"][0]["id"]
    r = await client.post(f"{URL}/transfers/{t1}/reverse", headers=admin, json={"key": "rev-1"})
    assert r.status_code == 200, r.text
    reversal = r.json()["transfers"][0]
    assert (reversal["debit_account_id"], reversal["credit_account_id"], reversal["reverses_id"]) == (
        b_id,
        a_id,
        t1,
    )
    assert (await client.post(f"{URL}/transfers/{t1}/reverse", headers=admin, json={"key": "rev-1"})).json()[
        "replayed"
    ] is True
    r = await client.post(f"{URL}/transfers/{t1}/reverse", headers=admin, json={"key": "rev-2"})
    assert (r.status_code, problem_code(r)) == (409, "ledger.already_reversed")
    balance = (await client.get(f"{URL}/accounts/{a_id}", headers=admin)).json()
    assert (balance["debits_posted"], balance["credits_posted"]) == (500, 700)  # t-1 undone, t-2 stands
    # Bad transfers: an unknown account, the same account twice.
    bad = {
        "key": "b-x",
        "transfers": [
            {"key": "x", "debit_account_id": a_id, "credit_account_id": 2_000_000_000, "amount_fen": 1}
        ],
    }
    r = await client.post(f"{URL}/transfers", headers=admin, json=bad)
    assert (r.status_code, problem_code(r)) == (422, "ledger.account_unknown")
    bad["transfers"][0]["credit_account_id"] = a_id  # type: ignore[index]
    r = await client.post(f"{URL}/transfers", headers=admin, json=bad)
    assert (r.status_code, problem_code(r)) == (422, "ledger.same_account")
    # Only admins post.
    officer = (await make.civil_affairs()).headers
    r = await client.post(f"{URL}/transfers", headers=officer, json=batch)
    assert r.status_code == 403


async def test_transfers_are_append_only(db: AsyncSession) -> None:
    a, b = await _accounts(db, "ao-a", "ao-b")
    posted = await ledger.post_batch(
        db, key="ao", kind="manual", transfers=[ledger.TransferIn("ao-1", a, b, 100)], now=TEST_NOW
    )
    tid = posted.transfers[0].id
    for sql in (
        "UPDATE ledger_transfer SET amount_fen = 1 WHERE id = :t",
        "DELETE FROM ledger_transfer WHERE id = :t",
        "UPDATE ledger_batch SET memo = 'x' WHERE id = (SELECT batch_id FROM ledger_transfer WHERE id = :t)",
        "DELETE FROM ledger_balance WHERE batch_id = (SELECT batch_id FROM ledger_transfer WHERE id = :t)",
        "TRUNCATE ledger_transfer",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.begin_nested():
                await db.execute(text(sql), {"t": tid})


async def test_balances_as_of_any_instant(db: AsyncSession, make: Factory, client: Client) -> None:
    a, b = await _accounts(db, "asof-a", "asof-b")
    t1, t2 = TEST_NOW - dt.timedelta(days=2), TEST_NOW - dt.timedelta(days=1)
    await ledger.post_batch(
        db, key="asof-1", kind="manual", transfers=[ledger.TransferIn("asof-1", a, b, 700)], now=t1
    )
    await ledger.post_batch(
        db, key="asof-2", kind="manual", transfers=[ledger.TransferIn("asof-2", b, a, 300)], now=t2
    )
    account = await db.get(LedgerAccount, a)
    assert account is not None
    await db.refresh(account)
    before, between, after = [
        (await ledger.balances_as_of(db, [account], when))[0]
        for when in (t1 - dt.timedelta(seconds=1), t1 + dt.timedelta(hours=1), None)
    ]
    assert (before.debits_posted, before.credits_posted) == (0, 0)
    assert (between.debits_posted, between.credits_posted) == (700, 0)
    assert (after.debits_posted, after.credits_posted) == (700, 300)
    await db.commit()
    admin = (await make.admin()).headers
    r = await client.get(
        f"{URL}/accounts/{a}", headers=admin, params={"as_of": (t1 + dt.timedelta(hours=1)).isoformat()}
    )
    assert (r.json()["debits_posted"], r.json()["credits_posted"]) == (700, 0)
    r = await client.get(f"{URL}/accounts/{a}", headers=admin, params={"as_of": "2026-11-01T00:00:00"})
    assert r.status_code == 422  # an instant needs its offset


async def test_the_check_reports_a_planted_imbalance_and_an_unverified_paid_line(
    db: AsyncSession, make: Factory
) -> None:
    w = await sb.world(make)
    e = await sb.elder(make, w, categories=("subsistence",))
    paid = await sb.visit(db, w, e, service="CLEAN", day=dt.date(2026, 10, 3))
    period = await ensure_period(session=db, month=sb.OCTOBER)
    admin = Principal(user_id=w.admin.user_id, username="a", role=Role.ADMIN)
    await close_period(
        session=db, actor=admin, period_id=period.id, now=dt.datetime(2026, 11, 6, tzinfo=dt.UTC)
    )
    check = await run_check(db, now=TEST_NOW)
    assert check.ok, check.findings
    assert check.debits_fen == check.credits_fen > 0
    # Plant an imbalance: an account's totals moved without a transfer. The check reports it and
    # repairs nothing.
    account = await db.scalar(
        select(LedgerAccount).where(LedgerAccount.code == f"provider_receivable:{w.provider.id}")
    )
    assert account is not None
    await db.execute(
        text("UPDATE ledger_account SET credits_posted = credits_posted + 1 WHERE id = :a"), {"a": account.id}
    )
    # And a paid line whose visit is no longer verified.
    visit = await db.get(Visit, paid.id)
    assert visit is not None
    visit.verification = "exception"
    await db.flush()
    check = await run_check(db, now=TEST_NOW)
    assert not check.ok
    assert {"totals", "accounts", "paid_lines"} <= set(check.findings)
    assert check.findings["accounts"]["examples"][0]["account_id"] == account.id
    assert check.findings["paid_lines"]["examples"][0]["visit_id"] == paid.id
    await db.refresh(account)
    assert account.credits_posted - 1 == await db.scalar(
        text("SELECT coalesce(sum(amount_fen), 0) FROM ledger_transfer WHERE credit_account_id = :a"),
        {"a": account.id},
    )


# --- Concurrency: committed transactions on their own connections ------------------------------------


@pytest.fixture
async def committed(engine: AsyncEngine, seeded: object) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions that commit. Afterwards the rows these tests made are removed as a superuser may, with
    triggers off (``session_replication_role = replica``): the ledger itself refuses any delete."""
    factory = async_sessionmaker(engine, expire_on_commit=False)
    yield factory
    async with factory() as s, s.begin():
        await s.execute(text("SET LOCAL session_replication_role = replica"))
        batches = "SELECT id FROM ledger_batch WHERE idempotency_key LIKE 'cc-%'"
        await s.execute(text(f"DELETE FROM ledger_balance WHERE batch_id IN ({batches})"))
        await s.execute(text(f"DELETE FROM ledger_transfer WHERE batch_id IN ({batches})"))
        await s.execute(text("DELETE FROM ledger_batch WHERE idempotency_key LIKE 'cc-%'"))
        await s.execute(text("DELETE FROM ledger_account WHERE code LIKE 'manual:cc-%'"))


async def test_concurrent_postings_in_every_order_never_deadlock(
    committed: async_sessionmaker[AsyncSession],
) -> None:
    async with committed() as s, s.begin():
        ids = await _accounts(s, *(f"cc-{i}" for i in range(4)))
    rnd = random.Random(7)
    plans: list[list[tuple[int, int, int]]] = []
    for _ in range(24):
        legs = []
        for _ in range(3):  # each batch touches up to three accounts, in a random order
            d, c = rnd.sample(ids, 2)
            legs.append((d, c, rnd.randint(1, 1000)))
        plans.append(legs)

    async def post(n: int, legs: list[tuple[int, int, int]]) -> None:
        async with committed() as s, s.begin():
            await ledger.post_batch(
                s,
                key=f"cc-{n}",
                kind=TransferKind.MANUAL.value,
                transfers=[ledger.TransferIn(f"cc-{n}-{i}", d, c, amt) for i, (d, c, amt) in enumerate(legs)],
                now=TEST_NOW,
            )
            await asyncio.sleep(0.01)  # hold the locks a little, so that batches overlap

    # Every batch twice at once: the second of each pair answers the first's (or waits and replays).
    await asyncio.gather(
        *(post(n, legs) for n, legs in enumerate(plans)), *(post(n, legs) for n, legs in enumerate(plans))
    )
    async with committed() as s:
        rows = (
            await s.execute(
                select(LedgerAccount.id, LedgerAccount.debits_posted, LedgerAccount.credits_posted).where(
                    LedgerAccount.id.in_(ids)
                )
            )
        ).all()
        expected_d = {i: sum(a for legs in plans for d, _, a in legs if d == i) for i in ids}
        expected_c = {i: sum(a for legs in plans for _, c, a in legs if c == i) for i in ids}
        assert {r[0]: r[1] for r in rows} == expected_d
        assert {r[0]: r[2] for r in rows} == expected_c
        count = await s.scalar(text("SELECT count(*) FROM ledger_batch WHERE idempotency_key LIKE 'cc-%'"))
        assert count == len(plans)  # nothing twice

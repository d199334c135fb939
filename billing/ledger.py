"""The ledger: TigerBeetle's guarantees on PostgreSQL, in integer fen.

* **Double entry.** A transfer moves ``amount_fen`` (> 0) from one account (debited) to another
  (credited); each account keeps ``debits_posted`` and ``credits_posted``, so the sum of all debits
  equals the sum of all credits at every commit.
* **Append-only.** Transfers, batches and balance history are never updated or deleted (triggers of
  migration 0020 refuse it). A correction is a reversal (:func:`reverse`: the same amount between the
  same accounts the other way, naming the transfer it undoes, at most once) plus new transfers.
* **Idempotent.** Every transfer has an idempotency key. Posting a key again with the same fields
  returns the transfer already posted; with different fields it is refused (409
  ``ledger.idempotency_conflict``), never applied. A batch has a key of its own the same way.
* **All or nothing.** A batch (:func:`post_batch`: a visit's whole waterfall, a correction, a period's
  postings) is inserted in one transaction with its accounts' new totals; any failure leaves none of it.
* **No deadlocks.** Before changing totals, a batch locks every account it touches with one
  ``SELECT … ORDER BY id FOR UPDATE``: every writer takes the locks in ascending id order, so two
  concurrent batches wait for each other but never deadlock.
* **As of any instant.** After each batch every account it moved gets a ``ledger_balance`` row with
  its new totals at ``posted_at``; :func:`balances_as_of` reads the latest row at or before an instant.

Set-based posting for many transfers at once (a period's close) goes through the same steps with
SQL over a staging table (:func:`post_staged`); :func:`post_batch` is its small, typed form.

Services flush; the caller's transaction (request, job) commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger_models import (
    AccountKind,
    LedgerAccount,
    LedgerBalance,
    LedgerBatch,
    LedgerTransfer,
    TransferKind,
)
from core.crud import MAX_BIGINT
from core.errors import Conflict, Invalid, NotFound

log = structlog.get_logger(__name__)

# Transfers a batch posted through the API may hold (a period's close posts millions set-based).
MAX_BATCH: Final = 1000


class IdempotencyConflict(Conflict):
    """The key was used before for a transfer (or batch) with other fields: refused, not applied."""

    code = "ledger.idempotency_conflict"
    title = "Idempotency key reused with different fields"


class AlreadyReversed(Conflict):
    code = "ledger.already_reversed"
    title = "Transfer already reversed"


class UnknownAccount(Invalid):
    code = "ledger.account_unknown"
    title = "Unknown ledger account"


# --- Accounts ---------------------------------------------------------------------------------------


def payer_fund_code(payer: str, district_id: int) -> str:
    return f"{AccountKind.PAYER_FUND.value}:{payer}:{district_id}"


def provider_code(provider_id: int) -> str:
    return f"{AccountKind.PROVIDER_RECEIVABLE.value}:{provider_id}"


def copay_code(elder_id: int) -> str:
    return f"{AccountKind.ELDER_COPAY.value}:{elder_id}"


def bank_code(payer: str) -> str:
    return f"{AccountKind.BANK.value}:{payer}"


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """An account to open if it does not exist (by ``code``)."""

    code: str
    kind: AccountKind
    payer: str | None = None
    district_id: int | None = None
    provider_id: int | None = None
    elder_id: int | None = None
    name: str = ""


async def open_accounts(session: AsyncSession, specs: Sequence[AccountSpec]) -> dict[str, int]:
    """The ids of the accounts with these codes, opening those that do not exist (concurrent openers
    of one code both get the one row)."""
    if not specs:
        return {}
    await session.execute(
        pg_insert(LedgerAccount)
        .values(
            [
                {
                    "code": s.code,
                    "kind": s.kind.value,
                    "payer": s.payer,
                    "district_id": s.district_id,
                    "provider_id": s.provider_id,
                    "elder_id": s.elder_id,
                    "name": s.name,
                }
                for s in specs
            ]
        )
        .on_conflict_do_nothing(index_elements=["code"])
    )
    rows = await session.execute(
        select(LedgerAccount.code, LedgerAccount.id).where(LedgerAccount.code.in_([s.code for s in specs]))
    )
    return {c: int(i) for c, i in rows}


async def open_manual_account(session: AsyncSession, *, code: str, name: str) -> Balance:
    """A manual account for corrections (``manual:<code>``), opened if it does not exist."""
    full = f"{AccountKind.MANUAL.value}:{code}"
    ids = await open_accounts(session, [AccountSpec(full, AccountKind.MANUAL, name=name)])
    account = await session.get(LedgerAccount, ids[full])
    assert account is not None
    return Balance(account, account.debits_posted, account.credits_posted)


# --- Posting ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransferIn:
    """A transfer to post. ``key`` is its idempotency key."""

    key: str
    debit_account_id: int
    credit_account_id: int
    amount_fen: int
    kind: TransferKind = TransferKind.MANUAL
    part: str | None = None
    period_id: int | None = None
    line_id: int | None = None
    reverses_id: int | None = None
    memo: str = ""

    def same_as(self, t: LedgerTransfer) -> bool:
        """Whether ``t`` (posted under the same key) has exactly these fields."""
        return (
            t.debit_account_id == self.debit_account_id
            and t.credit_account_id == self.credit_account_id
            and t.amount_fen == self.amount_fen
            and t.kind == self.kind.value
            and t.part == self.part
            and t.period_id == self.period_id
            and t.line_id == self.line_id
            and t.reverses_id == self.reverses_id
            and t.memo == self.memo
        )


@dataclass(frozen=True, slots=True)
class Posted:
    """A batch as posted (or as found, when its key had been posted before: ``replayed``)."""

    batch: LedgerBatch
    transfers: list[LedgerTransfer]
    replayed: bool


def _check(transfers: Sequence[TransferIn]) -> None:
    if not transfers:
        raise Invalid("A batch needs at least one transfer.", code="ledger.batch_empty")
    if len(transfers) > MAX_BATCH:
        raise Invalid(f"A batch holds at most {MAX_BATCH} transfers.", code="ledger.batch_too_large")
    keys = [t.key for t in transfers]
    if len(set(keys)) != len(keys):
        raise Invalid("A batch names an idempotency key twice.", code="ledger.key_repeated")
    for t in transfers:
        if t.amount_fen <= 0:
            raise Invalid(
                "A transfer moves a positive amount.", code="ledger.amount_invalid", field="amount_fen"
            )
        if t.debit_account_id == t.credit_account_id:
            raise Invalid("A transfer needs two different accounts.", code="ledger.same_account")


async def lock_accounts(session: AsyncSession, account_ids: Sequence[int]) -> list[int]:
    """Lock these accounts' rows in ascending id order (the one order every writer uses); the ids
    found. Unknown ids are absent from the answer."""
    ids = sorted(set(account_ids))
    rows = await session.scalars(
        select(LedgerAccount.id).where(LedgerAccount.id.in_(ids)).order_by(LedgerAccount.id).with_for_update()
    )
    return list(rows)


async def post_batch(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    transfers: Sequence[TransferIn],
    now: dt.datetime,
    user_id: int | None = None,
    period_id: int | None = None,
    memo: str = "",
) -> Posted:
    """Post ``transfers`` as one batch under the batch key ``key`` (module docstring).

    A batch key seen before returns that batch when every transfer matches its own key's, else
    :class:`IdempotencyConflict`; a new batch whose transfer keys were posted before (in another
    batch) is refused the same way when any differs, and otherwise also returns what was posted."""
    _check(transfers)
    if await session.scalar(select(LedgerBatch.id).where(LedgerBatch.idempotency_key == key)) is not None:
        return await _replay(session, key=key, transfers=transfers)
    earlier = await _posted_before(session, transfers)
    if earlier is not None:
        return earlier
    async with session.begin_nested():
        # The batch key is the first claim: two posters of one key serialise on its unique index, and
        # the one that waited replays what the other committed.
        batch_id = await session.scalar(
            pg_insert(LedgerBatch)
            .values(
                idempotency_key=key,
                kind=kind,
                period_id=period_id,
                posted_at=now,
                posted_by_user_id=user_id,
                transfer_count=len(transfers),
                amount_fen=sum(t.amount_fen for t in transfers),
                memo=memo,
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(LedgerBatch.id)
        )
    if batch_id is None:
        return await _replay(session, key=key, transfers=transfers)
    account_ids = {t.debit_account_id for t in transfers} | {t.credit_account_id for t in transfers}
    locked = await lock_accounts(session, sorted(account_ids))
    missing = sorted(account_ids - set(locked))
    if missing:
        raise UnknownAccount(f"No ledger account {missing[0]}.", account_ids=missing)
    await _check_reversals(session, transfers)
    rows = [
        {
            "idempotency_key": t.key,
            "batch_id": batch_id,
            "debit_account_id": t.debit_account_id,
            "credit_account_id": t.credit_account_id,
            "amount_fen": t.amount_fen,
            "kind": t.kind.value,
            "part": t.part,
            "period_id": t.period_id,
            "line_id": t.line_id,
            "reverses_id": t.reverses_id,
            "posted_at": now,
            "memo": t.memo,
        }
        for t in transfers
    ]
    try:
        async with session.begin_nested():
            await session.execute(pg_insert(LedgerTransfer), rows)
    except IntegrityError:
        # A concurrent batch under another key committed some of these transfer keys first.
        earlier = await _posted_before(session, transfers)
        if earlier is not None:
            raise IdempotencyConflict(
                "These transfers were posted concurrently under another batch key.", key=key
            ) from None
        raise
    await apply_batch_totals(session, batch_id=int(batch_id), now=now)
    batch = await session.get(LedgerBatch, batch_id)
    assert batch is not None
    posted = list(
        await session.scalars(
            select(LedgerTransfer).where(LedgerTransfer.batch_id == batch_id).order_by(LedgerTransfer.id)
        )
    )
    log.info("ledger.batch_posted", batch_id=batch_id, kind=kind, transfers=len(posted))
    return Posted(batch, posted, replayed=False)


async def _posted_before(session: AsyncSession, transfers: Sequence[TransferIn]) -> Posted | None:
    """When these transfer keys were all posted before with the same fields (a retry under another
    batch key), what was posted; None when none was. Some posted, or any with other fields: refused."""
    known = {
        t.idempotency_key: t
        for t in await session.scalars(
            select(LedgerTransfer).where(LedgerTransfer.idempotency_key.in_([t.key for t in transfers]))
        )
    }
    if not known:
        return None
    for t in transfers:
        if t.key in known and not t.same_as(known[t.key]):
            raise IdempotencyConflict(
                f"Transfer key {t.key!r} was posted before with other fields.", key=t.key
            )
    if len(known) != len(transfers):
        raise IdempotencyConflict(
            "Some of these transfer keys were posted before and some not: post them under their original "
            "batch key.",
            keys=sorted(known),
        )
    posted = [known[t.key] for t in transfers]
    batch = await session.get(LedgerBatch, posted[0].batch_id)
    assert batch is not None
    return Posted(batch, posted, replayed=True)


async def _replay(session: AsyncSession, *, key: str, transfers: Sequence[TransferIn]) -> Posted:
    batch = await session.scalar(select(LedgerBatch).where(LedgerBatch.idempotency_key == key))
    if batch is None:  # pragma: no cover - the conflicting insert saw a committed row
        raise Conflict("The batch key is being posted concurrently; retry.", code="ledger.busy")
    posted = list(
        await session.scalars(
            select(LedgerTransfer).where(LedgerTransfer.batch_id == batch.id).order_by(LedgerTransfer.id)
        )
    )
    by_key = {t.idempotency_key: t for t in posted}
    if len(posted) != len(transfers) or any(
        t.key not in by_key or not t.same_as(by_key[t.key]) for t in transfers
    ):
        raise IdempotencyConflict(f"Batch key {key!r} was posted before with other transfers.", key=key)
    return Posted(batch, posted, replayed=True)


async def _check_reversals(session: AsyncSession, transfers: Sequence[TransferIn]) -> None:
    """A reversal names a posted transfer, moves its amount between its accounts the other way, and
    is its only one (the unique ``reverses_id`` backs this up between concurrent reversers)."""
    targets = [t for t in transfers if t.reverses_id is not None]
    if not targets:
        return
    originals = {
        o.id: o
        for o in await session.scalars(
            select(LedgerTransfer).where(LedgerTransfer.id.in_([t.reverses_id for t in targets]))
        )
    }
    done = set(
        await session.scalars(
            select(LedgerTransfer.reverses_id).where(
                LedgerTransfer.reverses_id.in_([t.reverses_id for t in targets])
            )
        )
    )
    for t in targets:
        o = originals.get(t.reverses_id or 0)
        if o is None:
            raise NotFound(f"No transfer {t.reverses_id} to reverse.", code="ledger_transfer.not_found")
        if o.id in done:
            raise AlreadyReversed(f"Transfer {o.id} is already reversed.", transfer_id=o.id)
        if (t.debit_account_id, t.credit_account_id, t.amount_fen) != (
            o.credit_account_id,
            o.debit_account_id,
            o.amount_fen,
        ):
            raise Invalid(
                f"A reversal of transfer {o.id} moves {o.amount_fen} fen from account "
                f"{o.credit_account_id} back to {o.debit_account_id}.",
                code="ledger.reversal_mismatch",
            )


async def apply_batch_totals(session: AsyncSession, *, batch_id: int, now: dt.datetime) -> int:
    """Add a posted batch's transfers to its accounts' totals (locked by the caller, ascending) and
    record each account's new totals in the balance history. Returns the accounts moved."""
    result = await session.execute(
        text(
            """
            WITH moved AS (
                SELECT account_id, sum(debit) AS debit, sum(credit) AS credit FROM (
                    SELECT debit_account_id AS account_id, amount_fen AS debit, 0::bigint AS credit
                      FROM ledger_transfer WHERE batch_id = :batch
                    UNION ALL
                    SELECT credit_account_id, 0::bigint, amount_fen
                      FROM ledger_transfer WHERE batch_id = :batch
                ) legs GROUP BY account_id
            ), updated AS (
                UPDATE ledger_account a
                   SET debits_posted = a.debits_posted + m.debit,
                       credits_posted = a.credits_posted + m.credit
                  FROM moved m WHERE a.id = m.account_id
                RETURNING a.id, a.debits_posted, a.credits_posted
            )
            INSERT INTO ledger_balance (account_id, batch_id, debits_posted, credits_posted, posted_at)
            SELECT id, :batch, debits_posted, credits_posted, :now FROM updated
            """
        ),
        {"batch": batch_id, "now": now},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def reverse(
    session: AsyncSession,
    *,
    transfer_id: int,
    key: str,
    now: dt.datetime,
    user_id: int | None = None,
    memo: str = "",
) -> Posted:
    """Reverse one transfer under idempotency key ``key`` (also the batch's key)."""
    original = await session.get(LedgerTransfer, transfer_id) if 0 < transfer_id <= MAX_BIGINT else None
    if original is None:
        raise NotFound(f"No transfer {transfer_id}.", code="ledger_transfer.not_found")
    return await post_batch(
        session,
        key=key,
        kind=TransferKind.REVERSAL.value,
        transfers=[
            TransferIn(
                key=key,
                debit_account_id=original.credit_account_id,
                credit_account_id=original.debit_account_id,
                amount_fen=original.amount_fen,
                kind=TransferKind.REVERSAL,
                part=original.part,
                period_id=original.period_id,
                line_id=original.line_id,
                reverses_id=original.id,
                memo=memo,
            )
        ],
        now=now,
        user_id=user_id,
        period_id=original.period_id,
        memo=memo,
    )


# --- Reading ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's totals as they stood (``as_of``; None: now). ``net_fen`` is credits − debits."""

    account: LedgerAccount
    debits_posted: int
    credits_posted: int

    @property
    def net_fen(self) -> int:
        return self.credits_posted - self.debits_posted


async def balances_as_of(
    session: AsyncSession, accounts: Sequence[LedgerAccount], as_of: dt.datetime | None
) -> list[Balance]:
    """Each account's totals now (``as_of`` None) or as they stood at ``as_of``: its latest balance
    history row posted at or before then (none: 0, 0)."""
    if as_of is None:
        return [Balance(a, a.debits_posted, a.credits_posted) for a in accounts]
    ids = [a.id for a in accounts]
    if not ids:
        return []
    latest = (
        select(LedgerBalance.account_id, LedgerBalance.debits_posted, LedgerBalance.credits_posted)
        .ext(distinct_on(LedgerBalance.account_id))
        .where(LedgerBalance.account_id.in_(ids), LedgerBalance.posted_at <= as_of)
        .order_by(LedgerBalance.account_id, LedgerBalance.posted_at.desc(), LedgerBalance.batch_id.desc())
    )
    found = {int(a): (int(d), int(c)) for a, d, c in await session.execute(latest)}
    return [Balance(a, *found.get(a.id, (0, 0))) for a in accounts]


async def totals(session: AsyncSession) -> tuple[int, int, int]:
    """(Σ debits, Σ credits, transfers) over every transfer posted."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(LedgerTransfer.amount_fen), 0),
                func.coalesce(func.sum(LedgerTransfer.amount_fen), 0),
                func.count(),
            )
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def transfer_row(t: LedgerTransfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "key": t.idempotency_key,
        "batch_id": t.batch_id,
        "debit_account_id": t.debit_account_id,
        "credit_account_id": t.credit_account_id,
        "amount_fen": t.amount_fen,
        "kind": t.kind,
        "part": t.part,
        "period_id": t.period_id,
        "line_id": t.line_id,
        "reverses_id": t.reverses_id,
        "posted_at": t.posted_at,
        "memo": t.memo,
    }

"""The operators' console: the use cases behind the call centre's API and its pages (issue #11).

Every function takes the request's session and the signed-in principal, enforces the role and the
district scope itself (:mod:`callcentre.lifecycle`; an alarm outside one's districts is
``alarm.not_found``), and raises :class:`core.errors.DomainError` s with stable codes. ``now`` is
passed in. Services never commit: the request (or job) owns the transaction.

Writes are conditional: the alarm's facts are read, :func:`callcentre.lifecycle.decide` answers the
change, and one ``UPDATE alarm … WHERE id = $1`` holds only while the alarm is still in the state
decided on (active or not, acknowledged or not, the same assignee). Of two operators claiming one
alarm at once, PostgreSQL lets one update through and re-checks the other's condition on the winner's
row, which then fails: the loser reads the alarm again and is refused (``alarm.already_claimed``).
Every change writes its timeline events (:mod:`callcentre.timeline`, with the actor and ``now``) and
an audit row in the same transaction.

The queue is one statement on a partial index of the open alarms in queue order (severity, then
age: migration 0020), keyset-paged, rows straight into :class:`~callcentre.schemas.QueueItem` s.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Final

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre import context as alarm_context_reads
from callcentre import kpis as kpi_reads
from callcentre.alarms import ALARM_COLUMNS, alarm_state, facts_of, load, raw_connection, timeline_of, visible
from callcentre.contract import AlarmType, Severity
from callcentre.lifecycle import (
    Action,
    ActionInvalid,
    ActionResult,
    Assignee,
    Change,
    Outcome,
    ResponseAction,
    check_action,
    check_role,
    decide,
    not_found,
)
from callcentre.schemas import AlarmContext, AlarmState, Kpis, QueueItem, QueuePage, TimelineEvent
from callcentre.timeline import EventKind, record
from core import audit
from core.crud import MAX_BIGINT, MAX_LIMIT, in_key_range
from core.errors import Conflict, Invalid
from core.identity.authz import Principal
from core.identity.models import Role
from registry.scope import by_district, sees_all_elders

# Attempts at a conditional update before giving up (each miss means the alarm changed meanwhile and
# was decided again; a third miss in a row is contention no operator should see).
_ATTEMPTS: Final = 3
_RANK: Final = {s.value: i for i, s in enumerate(Severity)}
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class QueueStatus(enum.StrEnum):
    """Which alarms the queue lists: the open ones (all, unacknowledged, acknowledged, unassigned, the
    caller's own), by severity then age; or the cleared ones, the most recently cleared first."""

    OPEN = "open"
    UNACKNOWLEDGED = "unacknowledged"
    ACKNOWLEDGED = "acknowledged"
    UNASSIGNED = "unassigned"
    MINE = "mine"
    CLEARED = "cleared"


class AlarmSuperseded(Conflict):
    code = "alarm.superseded"


class AlarmBusy(Conflict):
    code = "alarm.busy"


class CursorInvalid(Invalid):
    code = "alarm.cursor_invalid"


class ContactUnknown(Invalid):
    code = "alarm.contact_unknown"


# --- The queue -------------------------------------------------------------------------------------

_QUEUE_COLUMNS: Final = """a.id, a.type, a.severity, a.count, a.district_id, a.elder_id, e.name, a.device_id,
    a.received_at, a.last_seen_at, a.presented_at, a.acknowledged_at, a.assignee_id, u.display_name,
    a.cleared_at, a.outcome"""


def _encode_cursor(item: QueueItem, *, cleared: bool) -> str:
    if cleared:
        assert item.cleared_at is not None
        raw = f"c:{_micros(item.cleared_at)}:{item.id}"
    else:
        raw = f"o:{_RANK[item.severity]}:{_micros(item.received_at)}:{item.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _micros(at: dt.datetime) -> int:
    return (at - _EPOCH) // dt.timedelta(microseconds=1)


def _decode_cursor(cursor: str, *, cleared: bool) -> list[Any]:
    """The keyset position a cursor names: (rank, received_at, id) in the open queue, (cleared_at, id)
    in the cleared one; a cursor of the other view, or garbage, is a 422 ``alarm.cursor_invalid``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, *parts = raw.split(":")
        numbers = [int(p) for p in parts]
        if kind != ("c" if cleared else "o") or len(numbers) != (2 if cleared else 3):
            raise ValueError(raw)
        *head, micros, alarm_id = numbers
        if not (0 <= micros < 2**62 and in_key_range(alarm_id, limit=MAX_BIGINT)):
            raise ValueError(raw)
        if head and not 0 <= head[0] < len(_RANK):
            raise ValueError(raw)
        at = _EPOCH + dt.timedelta(microseconds=micros)
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
        raise CursorInvalid("after is not a cursor of this view of the queue.", field="after") from None
    return [*head, at, alarm_id]


def queue_statement(
    status: QueueStatus,
    *,
    districts: Sequence[int] | None,
    types: Sequence[str] | None,
    ranks: Sequence[int] | None,
    me: int,
    after: list[Any] | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """The queue's one statement and its arguments (filters only where given, so each combination is
    a statement PostgreSQL plans for what it is)."""
    n = itertools.count(1)
    args: list[Any] = []

    def param(value: Any, cast: str = "") -> str:
        args.append(value)
        return f"${next(n)}{cast}"

    cleared = status == QueueStatus.CLEARED
    where = ["a.cleared_at IS NOT NULL" if cleared else "a.cleared_at IS NULL"]
    if districts is not None and len(districts) == 1:  # the district's own index gives the order
        where.append(f"a.district_id = {param(districts[0], '::int')}")
    elif districts is not None:
        where.append(f"a.district_id = ANY({param(list(districts), '::int[]')})")
    if types is not None:
        where.append(f"a.type = ANY({param(list(types), '::text[]')})")
    if ranks is not None:
        where.append(f"a.severity_rank = ANY({param(list(ranks), '::smallint[]')})")
    if status == QueueStatus.UNACKNOWLEDGED:
        where.append("a.acknowledged_at IS NULL")
    elif status == QueueStatus.ACKNOWLEDGED:
        where.append("a.acknowledged_at IS NOT NULL")
    elif status == QueueStatus.UNASSIGNED:
        where.append("a.assignee_id IS NULL")
    elif status == QueueStatus.MINE:
        where.append(f"a.assignee_id = {param(me, '::bigint')}")
    if after is not None and cleared:
        at, alarm_id = after
        where.append(f"(a.cleared_at, a.id) < ({param(at, '::timestamptz')}, {param(alarm_id, '::bigint')})")
    elif after is not None:
        rank, at, alarm_id = after
        where.append(
            f"(a.severity_rank, a.received_at, a.id) > ({param(rank, '::smallint')},"
            f" {param(at, '::timestamptz')}, {param(alarm_id, '::bigint')})"
        )
    order = "a.cleared_at DESC, a.id DESC" if cleared else "a.severity_rank, a.received_at, a.id"
    sql = f"""SELECT {_QUEUE_COLUMNS}
FROM alarm a LEFT JOIN elder e ON e.id = a.elder_id LEFT JOIN app_user u ON u.id = a.assignee_id
WHERE {" AND ".join(where)}
ORDER BY {order}
LIMIT {param(limit + 1, "::int")}"""  # noqa: S608 - fixed fragments; every value is a parameter
    return sql, args


def _queue_districts(principal: Principal, wanted: Sequence[int] | None) -> list[int] | None:
    """The districts the queue may list for the principal (``None``: every one), narrowed to those
    asked for; an empty list when none remain."""
    asked = None if wanted is None else sorted(set(wanted))
    if sees_all_elders(principal):
        return asked
    if by_district(principal):
        mine = principal.district_ids
        return sorted(mine if asked is None else mine.intersection(asked))
    return []


async def queue(
    session: AsyncSession,
    principal: Principal,
    *,
    now: dt.datetime,
    status: str = "open",
    district_ids: Sequence[int] | None = None,
    types: Sequence[str] | None = None,
    severities: Sequence[str] | None = None,
    limit: int = 50,
    after: str | None = None,
) -> QueuePage:
    """A page of the queue (:class:`QueueStatus`): open alarms by severity (CRITICAL first), then age
    (oldest first); cleared ones most recently cleared first. Filtered by district (within the
    principal's), alarm type and severity; ``after`` is the ``next`` of the page before. ``limit`` is
    1-200. Readers: operators, supervisors, admins and civil-affairs officers."""
    del now  # the queue is what the database holds; kept for the contract's uniformity
    check_role(principal, Action.VIEW)
    try:
        view = QueueStatus(status)
    except ValueError:
        raise Invalid(f"status must be one of {', '.join(QueueStatus)}.", field="status") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be 1-{MAX_LIMIT}.", field="limit")
    type_values = None if types is None else sorted(set(types))
    if type_values is not None and not set(type_values) <= set(AlarmType):
        raise Invalid("type must be alarm types such as SOS or FALL.", field="type")
    ranks = None if severities is None else sorted({_RANK.get(s, -1) for s in severities})
    if ranks is not None and -1 in ranks:
        raise Invalid("severity must be CRITICAL, MAJOR, MINOR or WARNING.", field="severity")
    cleared = view == QueueStatus.CLEARED
    position = None if after is None else _decode_cursor(after, cleared=cleared)
    districts = _queue_districts(principal, district_ids)
    if districts == [] or type_values == [] or ranks == []:
        return QueuePage(items=[], has_more=False, next=None)
    sql, args = queue_statement(
        view,
        districts=districts,
        types=type_values,
        ranks=ranks,
        me=principal.user_id,
        after=position,
        limit=limit,
    )
    conn = await raw_connection(session)
    items = [QueueItem(*row) for row in await conn.fetch(sql, *args)]
    has_more = len(items) > limit
    items = items[:limit]
    cursor = _encode_cursor(items[-1], cleared=cleared) if has_more else None
    return QueuePage(items=items, has_more=has_more, next=cursor)


# --- Presented -------------------------------------------------------------------------------------

_PRESENT: Final = """WITH shown AS (
    UPDATE alarm a SET presented_at = $2
    WHERE a.id = ANY($1::bigint[]) AND a.presented_at IS NULL AND a.cleared_at IS NULL
      AND ($3::int[] IS NULL OR a.district_id = ANY($3::int[]))
    RETURNING a.id, a.district_id
)
INSERT INTO alarm_event (alarm_id, at, kind, actor_id, district_id, data)
SELECT shown.id, $2, 'presented', $4, shown.district_id, '{}'::jsonb FROM shown
RETURNING alarm_id"""


async def mark_presented(
    session: AsyncSession, principal: Principal, alarm_ids: Sequence[int], *, now: dt.datetime
) -> list[int]:
    """Record that these alarms reached the principal's console: ``presented_at`` is set (to ``now``)
    on those not presented before, still active and in the principal's districts, each with a
    ``presented`` event. Returns their ids (ascending); the others are left as they are. One
    statement. Operators, supervisors and admins."""
    check_role(principal, Action.PRESENT)
    ids = sorted({i for i in alarm_ids if in_key_range(i, limit=MAX_BIGINT)})
    districts = _queue_districts(principal, None)
    if not ids or districts == []:
        return []
    conn = await raw_connection(session)
    shown = sorted(r["alarm_id"] for r in await conn.fetch(_PRESENT, ids, now, districts, principal.user_id))
    for alarm_id in shown:
        audit.record(
            session,
            actor=principal,
            action="present",
            entity="alarm",
            entity_id=alarm_id,
            after={"presented_at": now},
        )
    return shown


# --- Changes ---------------------------------------------------------------------------------------

_UPDATE: Final = f"""UPDATE alarm a SET
    assignee_id = $5,
    assigned_at = CASE WHEN $6 THEN $7 ELSE a.assigned_at END,
    acknowledged_at = CASE WHEN $8 THEN $7 ELSE a.acknowledged_at END,
    acknowledged_by = CASE WHEN $8 THEN $9 ELSE a.acknowledged_by END,
    cleared_at = CASE WHEN $10 THEN $7 WHEN $11 THEN NULL ELSE a.cleared_at END,
    cleared_by = CASE WHEN $10 THEN $9 WHEN $11 THEN NULL ELSE a.cleared_by END,
    outcome = CASE WHEN $10 THEN $12 WHEN $11 THEN NULL ELSE a.outcome END
WHERE a.id = $1 AND (a.cleared_at IS NULL) = $2 AND (a.acknowledged_at IS NOT NULL) = $3
  AND a.assignee_id IS NOT DISTINCT FROM $4::bigint
RETURNING {ALARM_COLUMNS}"""  # noqa: S608 - constants

# Whether another alarm of the same subject (device, or elder without a device) and type is active:
# reopening this one would make two (the partial unique indexes of ``alarm`` forbid it).
_SUPERSEDED: Final = """SELECT EXISTS (
    SELECT 1 FROM alarm o
    WHERE o.cleared_at IS NULL AND o.id <> a.id AND o.type = a.type
      AND CASE WHEN a.device_id IS NOT NULL THEN o.device_id = a.device_id
               ELSE o.device_id IS NULL AND o.elder_id = a.elder_id END)
FROM alarm a WHERE a.id = $1"""

_AUDITED: Final = ("active", "acknowledged", "assignee_id", "outcome")


async def _change(
    session: AsyncSession,
    principal: Principal,
    alarm_id: int,
    action: Action,
    *,
    now: dt.datetime,
    data: Mapping[EventKind, Mapping[str, Any]] | None = None,
    outcome: str | None = None,
    assignee: Assignee | None = None,
) -> AlarmState:
    """Decide ``action`` on the alarm and write it: the conditional update, the events (``data`` per
    kind; an acknowledgement or claim implied by another action says which), an audit row."""
    conn = await raw_connection(session)
    for _ in range(_ATTEMPTS):
        row = await load(conn, alarm_id)
        if row is None:
            check_role(principal, action)
            raise not_found(alarm_id)
        change = decide(facts_of(row), principal, action, assignee=assignee)
        if not change.changed:
            return alarm_state(row)
        if change.after == change.before:  # a comment: nothing on the alarm itself changes
            updated = row
        else:
            if action == Action.REOPEN and await conn.fetchval(_SUPERSEDED, alarm_id):
                raise AlarmSuperseded(
                    "A newer alarm of the same device (or elder) and type is active; work that one.",
                )
            try:
                updated = await _write(conn, change, principal, now=now, outcome=outcome)
            except asyncpg.UniqueViolationError:  # a newer alarm was raised meanwhile
                raise AlarmSuperseded("A newer alarm of the same subject and type is active.") from None
            if updated is None:
                continue  # changed meanwhile: decide again on what it is now
        await _record_events(conn, change, principal, action, row, now=now, data=data or {})
        audit.record(
            session,
            actor=principal,
            action=action.value,
            entity="alarm",
            entity_id=alarm_id,
            before={k: row[k] for k in _AUDITED},
            after={
                **{k: updated[k] for k in _AUDITED},
                **{kind.value: dict(v) for kind, v in (data or {}).items() if kind in change.events},
            },
        )
        return alarm_state(updated)
    raise AlarmBusy(f"Alarm {alarm_id} keeps changing; try again.")


async def _write(
    conn: asyncpg.Connection, change: Change, principal: Principal, *, now: dt.datetime, outcome: str | None
) -> asyncpg.Record | None:
    before, after = change.before, change.after
    row: asyncpg.Record | None = await conn.fetchrow(
        _UPDATE,
        before.id,
        before.active,
        before.acknowledged,
        before.assignee_id,
        after.assignee_id,
        change.claimed,
        now,
        change.acknowledges,
        principal.user_id,
        before.active and not after.active,  # clears
        not before.active and after.active,  # reopens
        outcome,
    )
    return row


async def _record_events(
    conn: asyncpg.Connection,
    change: Change,
    principal: Principal,
    action: Action,
    before: asyncpg.Record,
    *,
    now: dt.datetime,
    data: Mapping[EventKind, Mapping[str, Any]],
) -> None:
    """The change's events, each with what the caller gave for its kind and what the alarm was
    before (the previous assignee, outcome; the seconds from receipt to acknowledgement)."""
    implied = {EventKind.CLAIMED: Action.CLAIM, EventKind.ACKNOWLEDGED: Action.ACKNOWLEDGE}
    for kind in change.events:
        values = dict(data.get(kind, {}))
        if implied.get(kind, action) != action:
            values["with"] = action.value  # claimed or acknowledged by acting on the alarm
        if kind == EventKind.ACKNOWLEDGED:
            values["seconds"] = round((now - before["received_at"]).total_seconds(), 3)
        elif kind == EventKind.ASSIGNED:
            values["previous_assignee_id"] = before["assignee_id"]
        elif kind == EventKind.REOPENED:
            values |= {"previous_outcome": before["outcome"], "previous_cleared_at": before["cleared_at"]}
        await record(conn, change.before.id, kind, actor_id=principal.user_id, data=values, at=now)


# --- The use cases ---------------------------------------------------------------------------------


async def claim(
    session: AsyncSession, principal: Principal, alarm_id: int, *, now: dt.datetime
) -> AlarmState:
    """Take an unassigned active alarm: the caller becomes its assignee. Of concurrent claims exactly
    one wins; the others get ``alarm.already_claimed``. Claiming one's own alarm changes nothing."""
    return await _change(session, principal, alarm_id, Action.CLAIM, now=now)


_ASSIGNEE: Final = """SELECT u.id, u.role, u.is_active,
    coalesce(array_agg(d.district_id) FILTER (WHERE d.district_id IS NOT NULL), '{}') AS districts
FROM app_user u LEFT JOIN user_district d ON d.user_id = u.id
WHERE u.id = $1 GROUP BY u.id"""


async def assign(
    session: AsyncSession, principal: Principal, alarm_id: int, *, user_id: int, now: dt.datetime
) -> AlarmState:
    """Give an active alarm to an operator or supervisor who works its district (supervisors and
    admins; ``alarm.assignee_invalid`` for anyone else, or an unknown user)."""
    check_role(principal, Action.ASSIGN)
    conn = await raw_connection(session)
    row = await conn.fetchrow(_ASSIGNEE, user_id) if in_key_range(user_id, limit=MAX_BIGINT) else None
    assignee = (
        Assignee(
            user_id=row["id"],
            role=Role(row["role"]),
            district_ids=frozenset(row["districts"]),
            is_active=row["is_active"],
        )
        if row is not None
        else Assignee(user_id=user_id, role=Role.ELDER, district_ids=frozenset(), is_active=False)
    )
    data = {EventKind.ASSIGNED: {"user_id": user_id}}
    return await _change(session, principal, alarm_id, Action.ASSIGN, now=now, data=data, assignee=assignee)


async def acknowledge(
    session: AsyncSession, principal: Principal, alarm_id: int, *, now: dt.datetime
) -> AlarmState:
    """Answer an active alarm (``alarm.not_active`` once cleared, ``alarm.already_acknowledged`` the
    second time); an unassigned alarm is claimed by it."""
    return await _change(session, principal, alarm_id, Action.ACKNOWLEDGE, now=now)


async def comment(
    session: AsyncSession, principal: Principal, alarm_id: int, *, text: str, now: dt.datetime
) -> AlarmState:
    """Add a note to an alarm's record (active or cleared)."""
    note = _text(text, field="text", longest=2000)
    return await _change(
        session, principal, alarm_id, Action.COMMENT, now=now, data={EventKind.COMMENT: {"text": note}}
    )


_CONTACT: Final = """SELECT c.name, c.relation
FROM emergency_contact c JOIN alarm a ON a.elder_id = c.elder_id
WHERE a.id = $1 AND c.position = $2"""


async def record_action(
    session: AsyncSession,
    principal: Principal,
    alarm_id: int,
    *,
    action: str,
    result: str,
    contact_position: int | None = None,
    note: str = "",
    now: dt.datetime,
) -> AlarmState:
    """Record a call-back or a responder sent, with its result (:data:`callcentre.lifecycle.RESULTS`
    says which results an action has; ``alarm.action_invalid`` otherwise). ``call_contact`` names the
    elder's emergency contact by position (``alarm.contact_unknown`` if the elder has none there).
    Acknowledges (and claims) the alarm if nobody had."""
    try:
        what, outcome = ResponseAction(action), ActionResult(result)
    except ValueError:
        raise ActionInvalid(f"Unknown action {action!r} or result {result!r}.", field="action") from None
    check_action(what, outcome, contact_position)
    data: dict[str, Any] = {"action": what.value, "result": outcome.value, "note": _text(note, field="note")}
    if contact_position is not None:
        check_role(principal, Action.RECORD_ACTION)
        conn = await raw_connection(session)
        contact = await conn.fetchrow(_CONTACT, alarm_id, contact_position) if _key(alarm_id) else None
        if contact is None:
            await visible(conn, principal, alarm_id)  # a 404 first, for an alarm the caller cannot see
            raise ContactUnknown(
                f"The elder has no emergency contact at position {contact_position}.",
                field="contact_position",
            )
        data |= {"contact_position": contact_position, "contact_name": contact["name"]}
        data["contact_relation"] = contact["relation"]
    return await _change(
        session, principal, alarm_id, Action.RECORD_ACTION, now=now, data={EventKind.ACTION: data}
    )


async def clear(
    session: AsyncSession,
    principal: Principal,
    alarm_id: int,
    *,
    outcome: str,
    note: str = "",
    now: dt.datetime,
) -> AlarmState:
    """Clear an active alarm with an outcome (:class:`callcentre.lifecycle.Outcome`);
    ``alarm.already_cleared`` the second time. Acknowledges (and claims) it if nobody had."""
    try:
        code = Outcome(outcome)
    except ValueError:
        raise Invalid(f"outcome must be one of {', '.join(Outcome)}.", field="outcome") from None
    data = {EventKind.CLEARED: {"outcome": code.value, "note": _text(note, field="note")}}
    return await _change(session, principal, alarm_id, Action.CLEAR, now=now, data=data, outcome=code.value)


async def reopen(
    session: AsyncSession, principal: Principal, alarm_id: int, *, reason: str, now: dt.datetime
) -> AlarmState:
    """Make a cleared alarm active again, with the reason (``alarm.not_cleared`` for an active one;
    ``alarm.superseded`` when a newer alarm of the same device or elder and type is active)."""
    data = {EventKind.REOPENED: {"reason": _text(reason, field="reason", longest=500)}}
    return await _change(session, principal, alarm_id, Action.REOPEN, now=now, data=data)


# --- Reads -----------------------------------------------------------------------------------------


async def alarm_context(
    session: AsyncSession, principal: Principal, alarm_id: int, *, now: dt.datetime
) -> AlarmContext:
    """The alarm and everything needed to handle it, in one call (:mod:`callcentre.context`)."""
    return await alarm_context_reads.alarm_context(session, principal, alarm_id, now=now)


async def timeline(
    session: AsyncSession, principal: Principal, alarm_id: int, *, now: dt.datetime
) -> list[TimelineEvent]:
    """The alarm's timeline, oldest event first."""
    del now
    conn = await raw_connection(session)
    await visible(conn, principal, alarm_id)
    return await timeline_of(conn, alarm_id)


async def kpis(
    session: AsyncSession, principal: Principal, *, start: dt.datetime, end: dt.datetime, now: dt.datetime
) -> Kpis:
    """The service-level figures of alarms received in ``[start, end)`` (:mod:`callcentre.kpis`)."""
    return await kpi_reads.kpis(session, principal, start=start, end=end, now=now)


# --- Helpers ---------------------------------------------------------------------------------------


def _key(alarm_id: int) -> bool:
    return in_key_range(alarm_id, limit=MAX_BIGINT)


def _text(value: str, *, field: str, longest: int = 500) -> str:
    """Free text as stored: stripped, at most ``longest`` characters, no NUL; required where ``field``
    is a comment or reason."""
    text = value.strip()
    if "\x00" in text or len(text) > longest:
        raise Invalid(f"{field} must be at most {longest} characters, without NUL.", field=field)
    if not text and field in ("text", "reason"):
        raise Invalid(f"{field} must not be empty.", field=field)
    return text

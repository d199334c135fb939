"""The call centre's wire types: the queue, an alarm's state and context, its timeline, the service-level
figures, and the operators' request bodies. :mod:`callcentre.console` answers in these structs
directly (rows go straight into them, no ORM objects), and the API and the web pages serialise them.

Times are UTC instants; durations are seconds; shares are basis points (1/100 of a percent, integers
rounded half-up: 9750 = 97.5 %).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final

import msgspec

from callcentre.lifecycle import ActionResult, Outcome, ResponseAction
from core.types import Id64, Input
from registry.schemas.elders import ElderRead

# Free text: not empty, not only white space, no NUL (PostgreSQL text cannot hold it).
_TEXT: Final = r"^[^\x00]*[^\s\x00][^\x00]*$"
CommentText = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=_TEXT)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=_TEXT)]
Note = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00]*$")]
ContactPosition = Annotated[int, msgspec.Meta(ge=1, le=20, description="Emergency contact, 1 = called first")]
# How many alarms one console reports as shown at once.
MAX_PRESENTED: Final = 200


# --- The queue -------------------------------------------------------------------------------------


class QueueItem(msgspec.Struct):
    """One alarm in the queue: what a console row shows. ``elder_name`` is null for an alarm of a
    device installed in no home; ``assignee_name`` the holder's display name."""

    id: int
    type: str
    severity: str
    count: int
    district_id: int | None
    elder_id: int | None
    elder_name: str | None
    device_id: int | None
    received_at: dt.datetime
    last_seen_at: dt.datetime
    presented_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    assignee_id: int | None
    assignee_name: str | None
    cleared_at: dt.datetime | None
    outcome: str | None


class QueuePage(msgspec.Struct):
    """A page of the queue; pass ``next`` as ``after`` for the page that follows (null: none)."""

    items: list[QueueItem]
    has_more: bool
    next: str | None


# --- An alarm --------------------------------------------------------------------------------------


class AlarmState(msgspec.Struct):
    """An alarm as it stands: ``active`` until cleared, ``acknowledged`` once answered; the times of
    each step (received by the platform, first presented on a console, acknowledged, cleared) and who
    took them."""

    id: int
    type: str
    severity: str
    count: int
    active: bool
    acknowledged: bool
    district_id: int | None
    elder_id: int | None
    device_id: int | None
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    received_at: dt.datetime
    presented_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    acknowledged_by: int | None
    assignee_id: int | None
    assigned_at: dt.datetime | None
    cleared_at: dt.datetime | None
    cleared_by: int | None
    outcome: str | None
    details: dict[str, Any]


class TimelineEvent(msgspec.Struct):
    """One change of an alarm (``kind``: :class:`callcentre.timeline.EventKind`), by ``actor_id``
    (null: the platform), with what it recorded (``data``: e.g. the action and its result)."""

    id: int
    at: dt.datetime
    kind: str
    actor_id: int | None
    actor_name: str | None
    data: dict[str, Any]


class PresentedIn(Input):
    """Alarms that have just reached the caller's console."""

    alarm_ids: Annotated[list[Id64], msgspec.Meta(min_length=1, max_length=MAX_PRESENTED)]


class PresentedRead(msgspec.Struct):
    """The alarms whose ``presented_at`` this report set (those not presented before and still active)."""

    alarm_ids: list[int]


class AssignIn(Input):
    user_id: Id64


class CommentIn(Input):
    text: CommentText


class ActionIn(Input):
    """A call-back or a responder sent, with its result; ``contact_position`` only with
    ``call_contact`` (the elder's emergency contact at that position)."""

    action: ResponseAction
    result: ActionResult
    contact_position: ContactPosition | None = None
    note: Note = ""


class ClearIn(Input):
    outcome: Outcome
    note: Note = ""


class ReopenIn(Input):
    reason: Reason


# --- The context of one alarm ------------------------------------------------------------------------


class DeviceState(msgspec.Struct):
    """A device of the elder's home: inventory status, connectivity, last message, battery (its latest
    ``battery`` reading, %, null when none in the last days)."""

    id: int
    uid: str
    kind: str
    model: str
    power: str
    status: str
    online: bool | None
    last_seen_at: dt.datetime | None
    battery_pct: float | None
    battery_at: dt.datetime | None


class VitalPoint(msgspec.Struct):
    at: dt.datetime
    avg: float
    min: float
    max: float
    count: int


class VitalSeries(msgspec.Struct):
    """One vital sign over the window, bucketed (``bucket_s`` seconds each); only metrics with readings."""

    metric: str
    unit: str
    bucket_s: int
    points: list[VitalPoint]


class ActivityBucket(msgspec.Struct):
    """Motion and door events in one bucket of the window."""

    at: dt.datetime
    motion: int
    door_open: int


class Activity(msgspec.Struct):
    bucket_s: int
    last_activity_at: dt.datetime | None
    buckets: list[ActivityBucket]


class PreviousAlarm(msgspec.Struct):
    id: int
    type: str
    severity: str
    count: int
    received_at: dt.datetime
    acknowledged_at: dt.datetime | None
    cleared_at: dt.datetime | None
    outcome: str | None


class NearbyCaregiver(msgspec.Struct):
    """A caregiver on shift who could go now, from dispatch's matching (best first): straight-line
    distance in metres and the travel estimate in seconds."""

    caregiver_id: int
    name: str
    phone: str
    provider_id: int
    provider_name: str
    distance_m: int
    eta_s: int
    score: float


class AlarmContext(msgspec.Struct):
    """Everything an operator needs to handle an alarm, in one call. ``elder`` is the elder's record
    with the resident ID number masked (null: a device of no elder, or an elder the reader may no
    longer see); its ``contacts`` are the emergency contacts in calling order, ``medical_notes`` the
    notes. ``vitals`` and ``activity`` cover ``[window_start, window_end)``."""

    alarm: AlarmState
    elder: ElderRead | None
    devices: list[DeviceState]
    window_start: dt.datetime
    window_end: dt.datetime
    vitals: list[VitalSeries]
    activity: Activity | None
    previous_alarms: list[PreviousAlarm]
    caregivers: list[NearbyCaregiver]
    timeline: list[TimelineEvent]


# --- Service-level figures -------------------------------------------------------------------------


class Share(msgspec.Struct):
    """``met`` of ``counted`` alarms, as ``share_bp`` (null when none counted), against ``target_bp``.

    For an acknowledgement target of N seconds an alarm is counted once it was acknowledged or its N
    seconds have passed unanswered while it was active; it is met if acknowledged within N seconds."""

    met: int
    counted: int
    share_bp: int | None
    target_bp: int
    meets_target: bool | None


class Figures(msgspec.Struct):
    """Alarms received in the period: how many, how many acknowledged and cleared, the shares
    acknowledged within 60 s and 180 s, median and 90th percentile of the time to acknowledge
    (acknowledged − received) and to clear (cleared − received), in seconds, and the false-alarm share
    of the alarms cleared with an outcome."""

    alarms: int
    acknowledged: int
    cleared: int
    ack_within_60s: Share
    ack_within_180s: Share
    ack_median_s: float | None
    ack_p90_s: float | None
    clear_median_s: float | None
    clear_p90_s: float | None
    false_alarms: int
    false_alarm_share_bp: int | None


class OperatorFigures(msgspec.Struct):
    """Figures of the alarms an operator acknowledged (``operator_id`` null: acknowledged by nobody)."""

    operator_id: int | None
    operator_name: str | None
    figures: Figures


class TypeFigures(msgspec.Struct):
    type: str
    figures: Figures


class DistrictFigures(msgspec.Struct):
    district_id: int | None
    district_name: str | None
    figures: Figures


class Kpis(msgspec.Struct):
    """The service levels of alarms received in ``[start, end)``; ``scope`` says whose: ``all`` (the
    reader's districts, city-wide when unscoped) or ``own`` (an operator: the alarms they answered)."""

    start: dt.datetime
    end: dt.datetime
    scope: str
    overall: Figures
    by_operator: list[OperatorFigures]
    by_type: list[TypeFigures]
    by_district: list[DistrictFigures]

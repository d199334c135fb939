"""What the call-centre pages call the call centre's codes: alarm types, severities, the queue's views,
actions and their results, outcomes, timeline events, vital signs (msgids; the pages translate them).

One table per vocabulary, keyed by the domain's own enums, so a code the domain adds and this module
lacks fails ``tests/unit/web/test_labels.py`` instead of showing a raw code to an operator.
"""

from __future__ import annotations

from typing import Final

from callcentre.console import QueueStatus
from callcentre.contract import AlarmType, Severity
from callcentre.lifecycle import ActionResult, Outcome, ResponseAction
from callcentre.timeline import EventKind
from web.i18n import N_

ALARM_TYPES: Final[dict[str, str]] = {
    AlarmType.SOS: N_("SOS button"),
    AlarmType.FALL: N_("Fall"),
    AlarmType.SMOKE: N_("Smoke"),
    AlarmType.GAS: N_("Gas leak"),
    AlarmType.WANDERING: N_("Left the safe zone"),
    AlarmType.WATER_LEAK: N_("Water leak"),
    AlarmType.VITALS: N_("Vital signs"),
    AlarmType.INACTIVITY: N_("No activity"),
    AlarmType.DOOR_OPEN_NIGHT: N_("Door open at night"),
    AlarmType.TAMPER: N_("Device tampered with"),
    AlarmType.DEVICE_OFFLINE: N_("Device offline"),
    AlarmType.LOW_BATTERY: N_("Low battery"),
}

SEVERITIES: Final[dict[str, str]] = {
    Severity.CRITICAL: N_("Critical"),
    Severity.MAJOR: N_("Major"),
    Severity.MINOR: N_("Minor"),
    Severity.WARNING: N_("Warning"),
}

QUEUE_VIEWS: Final[dict[str, str]] = {
    QueueStatus.OPEN: N_("All open"),
    QueueStatus.UNACKNOWLEDGED: N_("Not acknowledged"),
    QueueStatus.ACKNOWLEDGED: N_("Acknowledged, not cleared"),
    QueueStatus.UNASSIGNED: N_("Nobody's yet"),
    QueueStatus.MINE: N_("Mine"),
    QueueStatus.CLEARED: N_("Cleared"),
}

ACTIONS: Final[dict[str, str]] = {
    ResponseAction.CALL_ELDER: N_("Called the elder"),
    ResponseAction.CALL_CONTACT: N_("Called an emergency contact"),
    ResponseAction.SEND_CAREGIVER: N_("Sent a caregiver"),
    ResponseAction.SEND_COMMUNITY_WORKER: N_("Sent a community worker"),
    ResponseAction.CALL_120: N_("Called 120 (ambulance)"),
    ResponseAction.CALL_119: N_("Called 119 (fire)"),
    ResponseAction.CALL_110: N_("Called 110 (police)"),
}

RESULTS: Final[dict[str, str]] = {
    ActionResult.REACHED: N_("Reached"),
    ActionResult.NO_ANSWER: N_("No answer"),
    ActionResult.BUSY: N_("Busy"),
    ActionResult.WRONG_NUMBER: N_("Wrong number"),
    ActionResult.DISPATCHED: N_("On the way"),
    ActionResult.ARRIVED: N_("Arrived"),
    ActionResult.DECLINED: N_("Declined"),
}

OUTCOMES: Final[dict[str, str]] = {
    Outcome.REAL_EMERGENCY: N_("Real emergency"),
    Outcome.RESOLVED_ON_PHONE: N_("Real emergency, resolved on the phone"),
    Outcome.RESOLVED_ON_SITE: N_("Real emergency, resolved on site"),
    Outcome.SENT_TO_HOSPITAL: N_("Real emergency, sent to hospital"),
    Outcome.FALSE_ALARM: N_("False alarm"),
    Outcome.TEST: N_("Test"),
    Outcome.TECHNICAL: N_("Technical fault"),
}

EVENTS: Final[dict[str, str]] = {
    EventKind.RAISED: N_("Raised"),
    EventKind.REPEATED: N_("Repeated"),
    EventKind.PRESENTED: N_("Shown on a console"),
    EventKind.CLAIMED: N_("Taken"),
    EventKind.ASSIGNED: N_("Assigned"),
    EventKind.ACKNOWLEDGED: N_("Acknowledged"),
    EventKind.COMMENT: N_("Comment"),
    EventKind.ACTION: N_("Action"),
    EventKind.ESCALATED: N_("Escalated"),
    EventKind.NOTIFIED: N_("Notified"),
    EventKind.REQUEUED: N_("Back in the queue"),
    EventKind.GROUPED: N_("Grouped with a storm"),
    EventKind.CLEARED: N_("Cleared"),
    EventKind.REOPENED: N_("Reopened"),
}

# The vital signs the context charts (the ingest's metric names, iot_ingest.queries.VITAL_UNITS).
VITALS: Final[dict[str, str]] = {
    "hr": N_("Heart rate"),
    "spo2": N_("Blood oxygen"),
    "body_temp": N_("Body temperature"),
    "bp_sys": N_("Blood pressure, systolic"),
    "bp_dia": N_("Blood pressure, diastolic"),
    "resp_rate": N_("Breathing rate"),
}

LABELS: Final = {
    "alarm_types": ALARM_TYPES,
    "severities": SEVERITIES,
    "queue_views": QUEUE_VIEWS,
    "actions": ACTIONS,
    "results": RESULTS,
    "outcomes": OUTCOMES,
    "events": EVENTS,
    "vitals": VITALS,
}

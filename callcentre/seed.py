"""The call centre's seed: the alarm policy defaults (DOMAIN §7), written to ``policy_value``.

Each alarm type's severity (a wandering person with dementia is critical), the detection thresholds the
ingest applies (vitals, inactivity, a door open at night, devices offline, low battery) and the operators'
acknowledgement targets. Tags as in DOMAIN.md: [R] official, [S] secondary source, [E] estimate.
"""

from __future__ import annotations

from callcentre.contract import AlarmType, Severity
from core.seed import DomainSeed, PolicyDefault

_SRC_ALARM = "DOMAIN §7 alarm defaults"


def _severity(
    alarm_type: AlarmType, severity: Severity, *, dementia: Severity | None = None
) -> PolicyDefault:
    """The ``alarm.severity`` row of one alarm type: ``{"severity": …}``, plus ``"dementia_severity"``
    where the elder's dementia raises it. The ingest reads these rows (never a table in code)."""
    value = {"severity": severity.value}
    if dementia is not None:
        value["dementia_severity"] = dementia.value
    return PolicyDefault("alarm.severity", alarm_type.value, value, _SRC_ALARM + " [R/E]")


POLICY_DEFAULTS: tuple[PolicyDefault, ...] = (
    _severity(AlarmType.SOS, Severity.CRITICAL),
    _severity(AlarmType.FALL, Severity.CRITICAL),
    _severity(AlarmType.SMOKE, Severity.CRITICAL),
    _severity(AlarmType.GAS, Severity.CRITICAL),
    _severity(AlarmType.WANDERING, Severity.MAJOR, dementia=Severity.CRITICAL),
    _severity(AlarmType.WATER_LEAK, Severity.MAJOR),
    _severity(AlarmType.VITALS, Severity.MAJOR),
    _severity(AlarmType.INACTIVITY, Severity.MAJOR),
    _severity(AlarmType.DOOR_OPEN_NIGHT, Severity.MINOR),
    _severity(AlarmType.TAMPER, Severity.MINOR),
    _severity(AlarmType.DEVICE_OFFLINE, Severity.WARNING),
    _severity(AlarmType.LOW_BATTERY, Severity.WARNING),
    PolicyDefault(
        "alarm.vitals.heart_rate",
        "*",
        {"low_bpm": 40, "high_bpm": 130, "sustain_seconds": 120},
        _SRC_ALARM + " [E]",
    ),
    PolicyDefault("alarm.vitals.spo2", "*", {"low_pct": 90, "sustain_seconds": 0}, _SRC_ALARM + " [E]"),
    PolicyDefault(
        "alarm.vitals.temperature", "*", {"high_centi_c": 3850, "sustain_seconds": 0}, _SRC_ALARM + " [E]"
    ),
    PolicyDefault(
        "alarm.door_open_night", "*", {"start": "00:00", "end": "05:00"}, _SRC_ALARM + " [E], dementia"
    ),
    PolicyDefault(
        "alarm.device_offline", "mains", {"seconds": 600}, _SRC_ALARM + "; Zigbee2MQTT default [R]"
    ),
    PolicyDefault(
        "alarm.device_offline",
        "battery",
        {"seconds": 25 * 3600},
        _SRC_ALARM + "; Zigbee2MQTT default [R]",
    ),
    PolicyDefault("alarm.low_battery", "*", {"pct": 15}, _SRC_ALARM + " [E]"),
    PolicyDefault(
        "alarm.ack_sla",
        "*",
        {"escalate_after_seconds": 60, "within_60s_bp": 9750, "within_180s_bp": 9900},
        "DOMAIN §7 TSA code of practice [S]",
    ),
    # Who the operators' alarm view offers to send round (callcentre.context): the caregivers on shift
    # nearest the elder who could make a visit of this catalogue service and length now, best first.
    PolicyDefault(
        "alarm.responders",
        "*",
        {"service_code": "VISIT", "visit_minutes": 30, "count": 5},
        "issue #11 [E]: a caring visit (探访关爱) by the nearest available caregivers",
    ),
    # The inactivity watch every elder living alone gets without settings of their own (scope: the
    # living situation; add a scope to extend it, e.g. to empty-nest elders). An elder's own settings
    # (iot_ingest.monitoring) replace it; the night window for doors is alarm.door_open_night's.
    PolicyDefault(
        "alarm.monitoring_default",
        "alone",
        {"day_start": "07:00", "day_end": "22:00", "inactivity_hours": 12},
        _SRC_ALARM + " [E]: no motion or door event for 12 h of the waking day",
    ),
)

# --- Escalation (issue #11): chains per alarm type, on-call lists, family notifications, storms -----
# Read by callcentre.escalation (the pure rules) through the runner; a chain is frozen on each alarm
# when the runner first sees it (``alarm.escalation_chain``, with the ``key[scope]@date`` it came
# from), so a later change applies to later alarms only.
#
# A chain's steps run in order, each ``wait_s`` seconds after the one before (the first after the
# raise); after the last step the chain starts again, ``rounds`` times in all. ``requeue_after_s``:
# an alarm acknowledged that long ago and still open returns to the queue and escalates again (0:
# never). ``staff_channel``: how supervisors are reached (the operators see the ``escalated`` event
# on their consoles). Actions: notify_operators, notify_supervisors, notify_oncall, webhook.
_SRC_ESC = "issue #11 escalation; DOMAIN §7: unacknowledged after 60 s → supervisor, notify again [S/E]"
# The acknowledgement target's 60 s (alarm.ack_sla) is also when an unanswered alarm first escalates.
_ACK_ESCALATE_S = 60


def _chain(steps: tuple[tuple[str, int], ...], *, rounds: int, requeue_after_s: int) -> dict[str, object]:
    return {
        "steps": [{"action": action, "wait_s": wait_s} for action, wait_s in steps],
        "rounds": rounds,
        "requeue_after_s": requeue_after_s,
        "staff_channel": "sms",
    }


# Someone may be hurt or in danger: re-alert at 60 s with the supervisors, then the district's
# on-call list, then the webhook (an incident system); acknowledged but open for 10 minutes: back.
_URGENT_CHAIN = _chain(
    (
        ("notify_operators", _ACK_ESCALATE_S),
        ("notify_supervisors", 0),
        ("notify_oncall", 120),
        ("webhook", 300),
    ),
    rounds=3,
    requeue_after_s=600,
)
_URGENT_TYPES = (AlarmType.SOS, AlarmType.FALL, AlarmType.SMOKE, AlarmType.GAS, AlarmType.WANDERING)
# A device problem: one reminder an hour on, back in the queue a day after an acknowledgement.
_TECHNICAL_CHAIN = _chain((("notify_operators", 3600),), rounds=1, requeue_after_s=86_400)
_TECHNICAL_TYPES = (AlarmType.DEVICE_OFFLINE, AlarmType.LOW_BATTERY)

ESCALATION_POLICY_DEFAULTS: tuple[PolicyDefault, ...] = (
    PolicyDefault(
        "callcentre.escalation",
        "*",
        _chain(
            (("notify_operators", _ACK_ESCALATE_S), ("notify_supervisors", 120), ("notify_oncall", 600)),
            rounds=2,
            requeue_after_s=1800,
        ),
        _SRC_ESC + " [E]",
    ),
    *(
        PolicyDefault("callcentre.escalation", t.value, _URGENT_CHAIN, _SRC_ESC + " [E]")
        for t in _URGENT_TYPES
    ),
    *(
        PolicyDefault("callcentre.escalation", t.value, _TECHNICAL_CHAIN, _SRC_ESC + " [E]")
        for t in _TECHNICAL_TYPES
    ),
    # Who is called beyond the call centre, per district (scope: the district code, ``*`` for the
    # rest): ``contacts`` as "channel:recipient" ("sms:13912345678", "wechat:<open id>",
    # "webhook:https://…"), ``webhook`` the incident system's URL for the chain's webhook step. A
    # deployment fills these in; empty, the steps are recorded as having reached nobody.
    PolicyDefault("callcentre.oncall", "*", {"contacts": [], "webhook": ""}, "issue #11; per deployment [E]"),
    # The elder's emergency contacts and guardians are told of an alarm of these severities, when the
    # call centre first sees it (DOMAIN §7: call family).
    PolicyDefault(
        "callcentre.family_notify",
        "*",
        {"severities": [Severity.CRITICAL.value], "channel": "sms"},
        "issue #11 family notifications [E]",
    ),
    # The auditor: an active alarm's next step more than ``grace_s`` late, an alarm not given its chain
    # within ``grace_s`` of its raise, or a runner silent that long, is a problem it reports.
    PolicyDefault("callcentre.escalation_audit", "*", {"grace_s": 30}, "issue #11 auditor [E]"),
    # A device raising more than ``alarms`` alarms (new ones and repeats) within ``minutes`` is in a
    # storm: its alarms are grouped and flagged (issue #11).
    PolicyDefault("alarm.storm", "*", {"alarms": 5, "minutes": 10}, "issue #11 storms [E]"),
)


# Welfare visits (探访关爱, issue #11; callcentre.welfare reads them). Who is in the programme and how
# often they are visited are [E] defaults for the civil-affairs bureau to edit by date.
_SRC_WELFARE = "issue #11 welfare visits [E]"
_LIVING_APART = ["alone", "empty_nest"]  # 独居 / 空巢
_HARDSHIP = ["destitute", "subsistence", "low_income"]  # 特困 / 低保 / 低保边缘
WELFARE_DEFAULTS: tuple[PolicyDefault, ...] = (
    PolicyDefault(
        "welfare.risk",
        "high",
        {
            "any": [
                {"living": ["alone"], "min_age": 80},
                {"living": _LIVING_APART, "dementia": True},
                {"living": _LIVING_APART, "min_level": 3},
                {"categories": _HARDSHIP, "min_level": 3},
                {"categories": ["destitute"], "living": _LIVING_APART},
                {"living": _LIVING_APART, "min_critical_alarms": 2},
            ]
        },
        _SRC_WELFARE + ": weekly",
    ),
    PolicyDefault(
        "welfare.risk",
        "medium",
        {
            "any": [
                {"living": ["alone"]},
                {"living": ["empty_nest"], "min_age": 80},
                {"living": _LIVING_APART, "min_level": 2},
                {"categories": _HARDSHIP, "dementia": True},
                {"categories": ["destitute", "subsistence"], "living": _LIVING_APART},
                {"categories": _HARDSHIP, "min_critical_alarms": 1},
            ]
        },
        _SRC_WELFARE + ": monthly",
    ),
    PolicyDefault(
        "welfare.risk",
        "low",
        {"any": [{"living": _LIVING_APART}, {"categories": _HARDSHIP}]},
        _SRC_WELFARE + ": quarterly",
    ),
    PolicyDefault(
        "welfare.cadence",
        "*",
        {
            "high": {"days": 7},
            "medium": {"months": 1},
            "low": {"months": 3},
            "after_critical_hours": 24,
            "window": {"start": "09:00", "end": "17:00"},
        },
        _SRC_WELFARE,
    ),
    PolicyDefault("welfare.recent_alarms", "*", {"days": 90}, _SRC_WELFARE + ": alarms counted by the rules"),
)


SEED = DomainSeed(policies=(*POLICY_DEFAULTS, *ESCALATION_POLICY_DEFAULTS, *WELFARE_DEFAULTS))

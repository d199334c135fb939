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

SEED = DomainSeed(policies=POLICY_DEFAULTS)

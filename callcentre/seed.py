"""The call centre's seed: the alarm policy defaults (DOMAIN §7), written to ``policy_value``.

Each alarm type's severity (a wandering person with dementia is critical), the detection thresholds the
ingest applies (vitals, inactivity, a door open at night, devices offline, low battery) and the operators'
acknowledgement targets. Tags as in DOMAIN.md: [R] official, [S] secondary source, [E] estimate.
"""

from __future__ import annotations

from callcentre.contract import severity_policy
from core.seed import DomainSeed, PolicyDefault

_SRC_ALARM = "DOMAIN §7 alarm defaults"


def _severity_defaults() -> tuple[PolicyDefault, ...]:
    """One ``alarm.severity`` row per alarm type, from the one home of the severities
    (:mod:`callcentre.contract`)."""
    return tuple(
        PolicyDefault("alarm.severity", alarm_type, value, _SRC_ALARM + " [R/E]")
        for alarm_type, value in severity_policy().items()
    )


POLICY_DEFAULTS: tuple[PolicyDefault, ...] = (
    *_severity_defaults(),
    PolicyDefault(
        "alarm.vitals.heart_rate",
        "*",
        {"low_bpm": 40, "high_bpm": 130, "sustain_seconds": 120},
        _SRC_ALARM + " [E]",
    ),
    PolicyDefault("alarm.vitals.spo2", "*", {"low_pct": 90}, _SRC_ALARM + " [E]"),
    PolicyDefault("alarm.vitals.temperature", "*", {"high_centi_c": 3850}, _SRC_ALARM + " [E]"),
    PolicyDefault("alarm.inactivity", "*", {"seconds": 12 * 3600}, _SRC_ALARM + " [E], per-elder override"),
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
)

SEED = DomainSeed(policies=POLICY_DEFAULTS)

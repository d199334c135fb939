"""Static data for seeding: Xiaogan's divisions, policy defaults (DOMAIN §1-§7), name lists, device models.

Everything here is *default data*: the seed writes it to the database, and the running system reads
the database (policy values are dated rows, editable later), never these constants.
Tags as in DOMAIN.md: [R] official, [S] secondary source, [E] estimate / sensible default.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

# --- Places (DOMAIN §1) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreetSpec:
    """A street (街道) or township (镇/乡/农场) and how many communities (社区) and villages (村) it has."""

    name: str
    communities: int
    villages: int

    @property
    def is_township(self) -> bool:
        return not self.name.endswith("街道")


@dataclass(frozen=True, slots=True)
class DistrictSpec:
    code: str
    name: str
    name_en: str
    kind: str  # urban | mixed | rural
    lat: float
    lon: float
    population: int  # residents; 孝南 from the 2020 census [R], the others [E]
    town_radius_km: float  # how far townships lie from the centre, for placing them [E]
    streets: tuple[StreetSpec, ...]


def _words(text: str) -> tuple[str, ...]:
    """Space-separated names; easier to read and edit than a long list of one-character literals."""
    return tuple(text.split())


def _s(name: str, communities: int, villages: int) -> StreetSpec:
    return StreetSpec(name, communities, villages)


# Street/township names are the real ones as far as known; community counts are [E] and sum to the
# 209 urban communities (社区) of the seed plan [R]. Villages are generated names.
DISTRICTS: tuple[DistrictSpec, ...] = (
    DistrictSpec(
        "420902", "孝南区", "Xiaonan District", "urban", 30.92, 113.91, 988_479, 14.0,
        (
            _s("书院街道", 15, 0), _s("新华街道", 14, 0), _s("广场街道", 15, 0), _s("车站街道", 13, 2),
            _s("孝天街道", 10, 6), _s("新铺镇", 2, 14), _s("西河镇", 1, 12), _s("杨店镇", 2, 15),
            _s("陡岗镇", 1, 12), _s("肖港镇", 2, 14), _s("毛陈镇", 2, 13), _s("三汊镇", 1, 12),
            _s("祝站镇", 1, 14), _s("朱湖农场", 1, 5), _s("卧龙乡", 1, 10), _s("闵集乡", 1, 9),
        ),
    ),
    DistrictSpec(
        "420984", "汉川市", "Hanchuan", "mixed", 30.66, 113.84, 930_000, 22.0,
        (
            _s("仙女山街道", 14, 6), _s("马口镇", 4, 18), _s("脉旺镇", 2, 16), _s("城隍镇", 1, 14),
            _s("分水镇", 1, 15), _s("沉湖镇", 1, 16), _s("田二河镇", 1, 14), _s("回龙镇", 1, 13),
            _s("新堰镇", 1, 12), _s("垌冢镇", 1, 14), _s("麻河镇", 1, 13), _s("刘隔镇", 1, 12),
            _s("新河镇", 1, 11), _s("庙头镇", 1, 12), _s("杨林沟镇", 1, 11), _s("韩集乡", 1, 10),
            _s("里潭乡", 1, 10), _s("南河乡", 1, 10), _s("西江乡", 1, 9),
        ),
    ),
    DistrictSpec(
        "420981", "应城市", "Yingcheng", "mixed", 30.93, 113.57, 530_000, 18.0,
        (
            _s("城中街道", 10, 2), _s("城北街道", 8, 4), _s("东马坊街道", 5, 8), _s("四里棚街道", 4, 6),
            _s("长江埠街道", 4, 6), _s("田店镇", 1, 12), _s("杨河镇", 1, 13), _s("三合镇", 1, 12),
            _s("郎君镇", 1, 11), _s("黄滩镇", 1, 12), _s("天鹅镇", 1, 10), _s("义和镇", 1, 10),
            _s("陈河镇", 1, 11), _s("杨岭镇", 1, 10), _s("汤池镇", 2, 12),
        ),
    ),
    DistrictSpec(
        "420982", "安陆市", "Anlu", "mixed", 31.26, 113.69, 500_000, 20.0,
        (
            _s("府城街道", 8, 6), _s("南城街道", 5, 8), _s("巡店镇", 1, 14), _s("棠棣镇", 1, 13),
            _s("雷公镇", 1, 12), _s("王义贞镇", 1, 12), _s("烟店镇", 1, 13), _s("李店镇", 1, 11),
            _s("赵棚镇", 1, 12), _s("孛畈镇", 1, 11), _s("洑水镇", 1, 10), _s("陈店乡", 1, 9),
            _s("辛榨乡", 1, 9), _s("木梓乡", 1, 8), _s("接官乡", 1, 8),
        ),
    ),
    DistrictSpec(
        "420923", "云梦县", "Yunmeng", "rural", 31.02, 113.75, 440_000, 14.0,
        (
            _s("城关镇", 7, 10), _s("义堂镇", 0, 16), _s("曾店镇", 0, 12), _s("吴铺镇", 0, 13),
            _s("伍洛镇", 0, 14), _s("下辛店镇", 0, 13), _s("道桥镇", 0, 11), _s("隔蒲潭镇", 0, 12),
            _s("胡金店镇", 0, 12), _s("倒店乡", 0, 10), _s("沙河乡", 0, 9), _s("清明河乡", 0, 9),
        ),
    ),
    DistrictSpec(
        "420921", "孝昌县", "Xiaochang", "rural", 31.26, 113.99, 450_000, 20.0,
        (
            _s("花园镇", 7, 14), _s("丰山镇", 0, 13), _s("周巷镇", 1, 14), _s("小河镇", 0, 15),
            _s("王店镇", 0, 12), _s("卫店镇", 0, 12), _s("白沙镇", 0, 12), _s("邹岗镇", 0, 13),
            _s("陡山乡", 0, 9), _s("小悟乡", 0, 8), _s("季店乡", 0, 10), _s("花西乡", 0, 8),
        ),
    ),
    DistrictSpec(
        "420922", "大悟县", "Dawu", "rural", 31.56, 114.13, 450_000, 26.0,
        (
            _s("城关镇", 7, 12), _s("阳平镇", 0, 14), _s("芳畈镇", 0, 12), _s("新城镇", 0, 13),
            _s("夏店镇", 0, 12), _s("刘集镇", 0, 12), _s("河口镇", 0, 14), _s("四姑镇", 0, 13),
            _s("吕王镇", 0, 12), _s("黄站镇", 0, 11), _s("宣化店镇", 1, 14), _s("丰店镇", 0, 10),
            _s("大新镇", 0, 11), _s("三里城镇", 0, 10), _s("高店乡", 0, 8), _s("彭店乡", 0, 8),
            _s("东新乡", 0, 9),
        ),
    ),
)  # fmt: skip

# Which divisions border which (roughly), for the districts a provider may also serve [E].
NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "420902": ("420921", "420923", "420984"),
    "420984": ("420902", "420981", "420923"),
    "420981": ("420984", "420923", "420982"),
    "420982": ("420923", "420981", "420921"),
    "420923": ("420902", "420982", "420981", "420984"),
    "420921": ("420902", "420982", "420922"),
    "420922": ("420921",),
}

URBAN_COMMUNITY_TOTAL = 209  # the seed plan's count of urban communities [R]

COMMUNITY_STEMS: tuple[str, ...] = _words(
    "槐荫 董永 文昌 玉泉 丹阳 长征 乾坤 三里棚 航天 天仙 仙女 澴河 城站 北京路 交通路 青年路 复兴 光明 "
    "民主 和平 建设 人民 新华 书院 广场 体育 南大 长兴 东方 银湖 金卉 朝阳 滨湖 东风 前进 胜利 振兴 红旗 "
    "兴隆 解放 团结 鸿福 福星 双峰 凤凰 桂花 梧桐 丽景 翠竹 南湖 春晖 新城 阳光 锦绣 花园 北门 南门 东门 "
    "西门 城南 城北 城东 城西 车站 铁路 天宝 龙岗 古城 永安 孝子 安康 惠民 幸福"
)
# Village names are a family name plus a landform, the usual pattern in the Jianghan plain (王家湾村).
VILLAGE_FAMILIES: tuple[str, ...] = _words(
    "王 李 张 刘 陈 杨 黄 胡 周 吴 徐 熊 汪 程 彭 余 万 邓 涂 喻 罗 朱 肖 郭 何 高 孙 马 夏 雷 付 姚 曾 鲁 舒"
)
VILLAGE_LANDFORMS: tuple[str, ...] = _words(
    "湾 岗 店 河 集 庙 畈 冲 台 岭 塘 桥 堰 垸 港 咀 墩 楼 铺 坡 山 寨 庄 林 庵 湖 垄 洼"
)

# --- Services (DOMAIN §3) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    code: str
    name_zh: str
    name_en: str
    unit: str
    price_fen: int
    min_minutes: int | None
    certificate: str | None  # certificate kind required, if any
    max_cert_level: int | None  # 养老护理员 level required ("level 4 or above" = level <= 4)
    same_gender: bool  # same gender as the elder unless the elder allows otherwise


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("MEAL", "助餐", "Meal delivery", "meal", 1200, None, "health", None, False),
    ServiceSpec("CLEAN", "助洁", "Cleaning", "hour", 4000, 60, None, None, False),
    ServiceSpec("BATH", "助浴", "Bathing", "visit", 8000, 45, "eldercare_worker", 4, True),
    ServiceSpec("ESCORT", "助行", "Walking / outing escort", "hour", 3500, 60, None, None, False),
    ServiceSpec("MEDESC", "助医", "Escort to the doctor", "hour", 4000, 60, None, None, False),
    ServiceSpec("VISIT", "探访关爱", "Caring visit", "visit", 3000, 30, None, None, False),
    ServiceSpec("ERRAND", "委托代办", "Errands / shopping", "visit", 1500, None, None, None, False),
    ServiceSpec("CARE", "基础照护", "Basic nursing care", "hour", 6000, 60, "eldercare_worker", 4, False),
)
SERVICE_CODES: tuple[str, ...] = tuple(s.code for s in SERVICES)

# --- Policy defaults (DOMAIN §3-§7), written to ``policy_value`` ----------------------------------

POLICY_EPOCH = dt.date(2026, 1, 1)  # the national care voucher starts nationwide on this day [R]


@dataclass(frozen=True, slots=True)
class PolicyDefault:
    key: str
    scope: str
    value: dict[str, Any]
    source: str


_SRC_CATALOGUE = "DOMAIN §3 default catalogue [E]; process per GB/T 43153-2023 [R]"
_SRC_LTC = "DOMAIN §4.1 长护险: rate per Shanghai [S], budgets by level [E]"
_SRC_VOUCHER = "DOMAIN §4.2 养老服务消费补贴 from 2026-01-01 [R]; rate/services [E]"
_SRC_LOCAL = "DOMAIN §4.3 政府购买居家养老服务 category defaults [E]"
_SRC_VERIFY = "DOMAIN §5 visit verification thresholds [E]"
_SRC_DISPATCH = "DOMAIN §6 dispatch norms [E]"
_SRC_CANCEL = "cancellation terms, project default [E] (not in DOMAIN)"
_SRC_ALARM = "DOMAIN §7 alarm defaults"
_SRC_SIGN_IN = "sign-in throttling, project default [E]: only failures count (OWASP authentication)"


def _policy_defaults() -> tuple[PolicyDefault, ...]:
    out: list[PolicyDefault] = []
    for s in SERVICES:
        out.append(
            PolicyDefault(
                "service.price_fen",
                s.code,
                {"fen": s.price_fen, "unit": s.unit, "min_minutes": s.min_minutes},
                _SRC_CATALOGUE,
            )
        )
        out.append(
            PolicyDefault(
                "service.requirement",
                s.code,
                {"certificate": s.certificate, "max_level": s.max_cert_level, "same_gender": s.same_gender},
                _SRC_CATALOGUE,
            )
        )
    out.append(
        PolicyDefault(
            "subsidy.waterfall", "*", {"order": ["ltc", "voucher", "local"]}, "DOMAIN §4 payer order [R]"
        )
    )
    for level, budget_yuan in ((2, 600), (3, 900), (4, 1200)):
        out.append(
            PolicyDefault(
                "subsidy.ltc",
                str(level),
                {"rate_bp": 9000, "budget_fen": budget_yuan * 100, "services": ["CARE", "BATH", "CLEAN"]},
                _SRC_LTC,
            )
        )
    out.append(
        PolicyDefault(
            "subsidy.voucher",
            "*",
            {
                "rate_bp": 5000,
                "budget_fen": 80_000,
                "min_level": 2,
                "services": ["MEAL", "CLEAN", "BATH", "ESCORT", "MEDESC", "CARE"],
            },
            _SRC_VOUCHER,
        )
    )
    local = (
        ("destitute", 10_000, 600, None),  # 特困供养
        ("subsistence", 9000, 400, None),  # 低保
        ("low_income", 7000, 300, None),  # 低保边缘 / 低收入
        ("family_planning", 7000, 300, None),  # 计划生育特殊家庭
        ("veteran", 7000, 300, None),  # 重点优抚对象
        ("elderly_alone", 5000, 200, 80),  # 高龄独居/空巢
    )
    for category, rate_bp, budget_yuan, min_age in local:
        value: dict[str, Any] = {
            "rate_bp": rate_bp,
            "budget_fen": budget_yuan * 100,
            "services": list(SERVICE_CODES),
        }
        if min_age is not None:
            value["min_age"] = min_age
        out.append(PolicyDefault("subsidy.local", category, value, _SRC_LOCAL))
    for scope, lo, hi, yuan in (("80-89", 80, 89, 50), ("90-99", 90, 99, 100), ("100+", 100, None, 300)):
        out.append(
            PolicyDefault(
                "allowance.old_age",
                scope,
                {"min_age": lo, "max_age": hi, "fen": yuan * 100},
                "DOMAIN §4 高龄津贴 Hubei default [E]",
            )
        )
    for level, yuan in ((2, 100), (3, 200), (4, 300)):
        out.append(
            PolicyDefault(
                "allowance.disability",
                str(level),
                {"fen": yuan * 100, "categories": ["destitute", "subsistence", "low_income"]},
                "DOMAIN §4 经济困难失能老年人护理补贴 [E]",
            )
        )
    out += [
        # Who the registry takes: elders of 60 or over (老年人, Law on the Protection of the Rights and
        # Interests of the Elderly, art. 2 [R]); people with an assessed disability (long-term-care
        # insurance coverage) from 16, the working age, as the documented exception [E].
        PolicyDefault("registry.min_age", "*", {"years": 60}, "老年人权益保障法 art. 2: aged 60+ [R]"),
        PolicyDefault(
            "registry.min_age", "disability", {"years": 16}, "disability exception, project default [E]"
        ),
        PolicyDefault("verification.checkin_radius", "urban", {"metres": 200}, _SRC_VERIFY),
        PolicyDefault("verification.checkin_radius", "rural", {"metres": 500}, _SRC_VERIFY),
        PolicyDefault("verification.min_onsite", "*", {"bp": 8000}, _SRC_VERIFY),
        PolicyDefault("verification.signoff_window", "*", {"seconds": 24 * 3600}, _SRC_VERIFY),
        # The time element of EVV: a check-in this long before the scheduled start, or after the latest
        # start promised (the order's window end), is an exception.
        PolicyDefault("verification.checkin_early", "*", {"seconds": 30 * 60}, _SRC_VERIFY),
        PolicyDefault("verification.checkin_late", "*", {"seconds": 30 * 60}, _SRC_VERIFY),
        # After this many wrong sign-off PINs for one visit, PIN sign-off of it is refused for a while:
        # a 6-digit PIN cannot be guessed by trying (family confirmation still works).
        PolicyDefault(
            "verification.signoff_pin",
            "*",
            {"max_failures": 5, "lock_minutes": 15},
            "sign-off PIN guessing limit [E]",
        ),
        PolicyDefault("verification.callback_sample", "*", {"bp": 1000}, _SRC_VERIFY),
        # Sign-in failures. Per account: from the ``max_failures``-th failure in a row, each failure
        # locks the account, first for ``lock_seconds``, then twice as long per further failure, at most
        # ``max_lock_seconds``; a count idle for ``forget_after_seconds`` starts again. Per source
        # address: ``max_failures`` in ``window_seconds``, sized for a call centre of ~50 operators
        # behind one NAT address who all sign in at the start of a shift (successes never count).
        PolicyDefault(
            "auth.login_failures",
            "account",
            {"max_failures": 5, "lock_seconds": 30, "max_lock_seconds": 900, "forget_after_seconds": 86_400},
            _SRC_SIGN_IN,
        ),
        PolicyDefault(
            "auth.login_failures", "address", {"max_failures": 100, "window_seconds": 600}, _SRC_SIGN_IN
        ),
        PolicyDefault(
            "dispatch.urgent_eta_max", "urban", {"seconds": 15 * 60}, _SRC_DISPATCH + "; [R] 15-min circle"
        ),
        PolicyDefault("dispatch.urgent_eta_max", "rural", {"seconds": 30 * 60}, _SRC_DISPATCH),
        PolicyDefault(
            "dispatch.walk_circle", "urban", {"metres": 1000}, "DOMAIN §6 一刻钟居家养老服务圈 [R]"
        ),
        PolicyDefault("dispatch.speed", "urban", {"kmh": 15}, _SRC_DISPATCH),
        PolicyDefault("dispatch.speed", "rural", {"kmh": 30}, _SRC_DISPATCH),
        PolicyDefault("dispatch.detour", "*", {"bp": 13_000}, _SRC_DISPATCH),
        PolicyDefault("dispatch.offer_window", "*", {"seconds": 60}, _SRC_DISPATCH),
        PolicyDefault("dispatch.max_offers", "*", {"count": 3}, _SRC_DISPATCH),
        PolicyDefault("dispatch.continuity_window", "*", {"days": 30}, _SRC_DISPATCH),
        # The call centre undertakes to assign an order from its queue (nobody could take it at once)
        # within this time; the person ordering is told so.
        PolicyDefault(
            "dispatch.operator_pickup", "*", {"seconds": 15 * 60}, "operator queue response time [E]"
        ),
        # The day planner's search budget per provider: min + per visit, capped (wall milliseconds);
        # from escalate_at_minute (20:00) the evening before, orders no plan placed go to the operators.
        PolicyDefault(
            "dispatch.dayplan",
            "*",
            {"max_ms": 5000, "min_ms": 200, "per_visit_ms": 20, "escalate_at_minute": 1200},
            "planner budget; unplaced orders go to the operator queue from 20:00 the evening before [E]",
        ),
        # A customer cancelling an accepted visit less than this before its start pays the late fee.
        PolicyDefault("dispatch.cancel_notice", "*", {"seconds": 2 * 3600}, _SRC_CANCEL),
        PolicyDefault("dispatch.late_cancel_fee", "*", {"fen": 1000}, _SRC_CANCEL),
        # How far ahead a visit may be ordered, and how far back a recurring series may start
        # (dispatch.orders; beyond these a request is a 422 naming the field).
        PolicyDefault("dispatch.order_horizon", "*", {"days": 180}, "ordering horizon, project default [E]"),
        # A window may start this little in the past (a request in flight) and last at most this long.
        PolicyDefault(
            "dispatch.order_window",
            "*",
            {"past_grace_minutes": 5, "max_hours": 12},
            "order window bounds, project default [E]",
        ),
        PolicyDefault(
            "dispatch.series_lookback", "*", {"days": 31}, "series start lookback, project default [E]"
        ),
        # Soft-preference weights of matching (DOMAIN §6) and of the provider quality score [E].
        PolicyDefault(
            "dispatch.match_weights",
            "*",
            {"travel_bp": 5000, "continuity_bp": 2500, "fairness_bp": 1500, "rating_bp": 1000},
            _SRC_DISPATCH,
        ),
        PolicyDefault(
            "dispatch.quality_weights",
            "*",
            {"rating_bp": 3500, "callback_bp": 2500, "exceptions_bp": 2000, "complaints_bp": 2000},
            "DOMAIN §3/§5 evaluation [E]",
        ),
    ]
    # DOMAIN §9: a caregiver sees the elders of their current and upcoming visits and of their visits
    # in the last 30 days (registry.scope.visit_opens_elder).
    out.append(
        PolicyDefault(
            "privacy.caregiver_recent_visits", "*", {"days": 30}, "DOMAIN §9 least privilege, caregiver"
        )
    )
    severities = {
        "SOS": "CRITICAL",
        "FALL": "CRITICAL",
        "SMOKE": "CRITICAL",
        "GAS": "CRITICAL",
        "WANDERING": "MAJOR",
        "WATER_LEAK": "MAJOR",
        "VITALS": "MAJOR",
        "INACTIVITY": "MAJOR",
        "DOOR_OPEN_NIGHT": "MINOR",
        "TAMPER": "MINOR",
        "DEVICE_OFFLINE": "WARNING",
        "LOW_BATTERY": "WARNING",
    }
    for alarm_type, severity in severities.items():
        value = {"severity": severity}
        if alarm_type == "WANDERING":
            value["dementia_severity"] = "CRITICAL"
        out.append(PolicyDefault("alarm.severity", alarm_type, value, _SRC_ALARM + " [R/E]"))
    out += [
        PolicyDefault(
            "alarm.vitals.heart_rate",
            "*",
            {"low_bpm": 40, "high_bpm": 130, "sustain_seconds": 120},
            _SRC_ALARM + " [E]",
        ),
        PolicyDefault("alarm.vitals.spo2", "*", {"low_pct": 90}, _SRC_ALARM + " [E]"),
        PolicyDefault("alarm.vitals.temperature", "*", {"high_centi_c": 3850}, _SRC_ALARM + " [E]"),
        PolicyDefault(
            "alarm.inactivity", "*", {"seconds": 12 * 3600}, _SRC_ALARM + " [E], per-elder override"
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
    ]
    return tuple(out)


POLICY_DEFAULTS: tuple[PolicyDefault, ...] = _policy_defaults()

# --- People ------------------------------------------------------------------------------------------

# Common family names in Hubei, most frequent first (weights fall off with rank).
FAMILY_NAMES: tuple[str, ...] = _words(
    "王 李 张 刘 陈 杨 黄 胡 周 吴 徐 熊 汪 程 彭 余 万 邓 涂 喻 罗 朱 肖 郭 何 高 孙 马 夏 雷 付 方 "
    "姚 曾 鲁 舒 严 袁 谢 龚 童 魏 蔡 冯 潘 丁 宋 沈 江 董"
)
ELDER_MALE_GIVEN: tuple[str, ...] = _words(
    "建国 国强 志明 德华 家福 学文 金山 长林 水生 汉生 春生 明德 炳坤 国华 建华 解放 援朝 国庆 "
    "新民 立新 桂林 德胜 有才 先进 正清 光明 振华 宏伟 文斌 忠诚 茂林 永贵 世昌 福海 贵生 松柏 "
    "清泉 守仁 双喜 长庚 爱国 卫东 红兵 胜利 克勤 家祥 大兵 汉清 楚才 义和"
)
ELDER_FEMALE_GIVEN: tuple[str, ...] = _words(
    "桂英 秀英 淑珍 玉兰 凤英 秀兰 桂兰 翠花 春梅 美华 菊香 素珍 金枝 月娥 冬梅 秋菊 桂香 玉梅 "
    "淑华 秀珍 兰英 凤兰 爱华 素芳 丽华 巧云 腊梅 银凤 春兰 金凤 桂芝 玉珍 彩云 淑英 秀芳 梅英 "
    "荷花 新华 雪梅 翠英 银娥 德珍 小英 惠兰 凤仙 秀云 桂芳 润珍 春香"
)
YOUNG_MALE_GIVEN: tuple[str, ...] = _words(
    "伟 强 军 勇 磊 涛 斌 杰 波 超 鹏 刚 明 浩 志刚 海波 建军 小平 文华 俊 晓东 卫国 红军 "
    "国平 建平 新华 志勇 宏 剑 峰 亮 凯 海涛 德军 永刚 立军 春雷 振宇 家俊"
)
YOUNG_FEMALE_GIVEN: tuple[str, ...] = _words(
    "丽 敏 静 芳 霞 娟 艳 红梅 丽华 晓燕 玲 英 琴 莉 萍 慧 洁 红 燕 丹 晓红 春燕 海燕 丽娟 "
    "小红 凤 梅 雪 琳 倩 秀丽 玉洁 晓梅 文静 婷 佳 慧敏 春花 桂芳"
)
MOBILE_PREFIXES: tuple[str, ...] = _words(
    "133 135 136 137 138 139 147 150 151 152 155 157 158 159 166 177 178 180 181 182 186 187 189 198 199"
)
MEDICAL_CONDITIONS: tuple[str, ...] = (
    "高血压",
    "2型糖尿病",
    "冠心病",
    "慢性阻塞性肺疾病",
    "脑卒中后遗症",
    "骨质疏松",
    "骨关节炎",
    "白内障",
    "帕金森病",
    "慢性肾病",
    "听力下降",
    "前列腺增生",
)
CHILD_RELATIONS_M: tuple[str, ...] = ("儿子", "儿子", "儿子", "女婿", "孙子", "侄子")
CHILD_RELATIONS_F: tuple[str, ...] = ("女儿", "女儿", "女儿", "儿媳", "孙女", "侄女")
OTHER_CONTACT_RELATIONS: tuple[str, ...] = ("邻居", "社区网格员", "朋友")
VILLAGE_CONTACT_RELATIONS: tuple[str, ...] = ("邻居", "村委会委员", "亲戚")

# --- Providers -----------------------------------------------------------------------------------

# (name, home district code); 20 organisations, more in the larger divisions.
PROVIDERS: tuple[tuple[str, str], ...] = (
    ("孝感市孝南区康乐居家养老服务中心", "420902"),
    ("孝南区福寿康养老服务有限公司", "420902"),
    ("孝感市夕阳红居家养老服务中心", "420902"),
    ("孝南区安康护理服务站", "420902"),
    ("孝感市仁爱社区养老服务有限公司", "420902"),
    ("孝感市颐和家政养老服务有限公司", "420902"),
    ("汉川市福星居家养老服务中心", "420984"),
    ("汉川市汉江康养服务有限公司", "420984"),
    ("汉川市仙女山社区养老服务站", "420984"),
    ("汉川市惠民护理服务有限公司", "420984"),
    ("应城市汤池康养居家服务中心", "420981"),
    ("应城市温泉颐养服务有限公司", "420981"),
    ("安陆市银杏居家养老服务中心", "420982"),
    ("安陆市府城康护服务有限公司", "420982"),
    ("云梦县梦泽居家养老服务中心", "420923"),
    ("云梦县福康护理服务有限公司", "420923"),
    ("孝昌县观音湖康养服务中心", "420921"),
    ("孝昌县花园居家养老服务有限公司", "420921"),
    ("大悟县仁和养老服务中心", "420922"),
    ("大悟县宣化居家护理服务有限公司", "420922"),
)

# --- Devices (DOMAIN §8) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    kind: str
    model: str
    power: str  # mains | battery


GATEWAY_MODEL = "SLZB-06 Zigbee coordinator + Zigbee2MQTT"
# Zigbee devices behind a home gateway, by friendly name (models as named in zigbee-herdsman-converters).
Z2M_DEVICES: dict[str, DeviceSpec] = {
    "smoke": DeviceSpec("smoke", "Aqara JY-GZ-01AQ", "battery"),
    "water_leak": DeviceSpec("water_leak", "Aqara SJCGQ11LM", "battery"),
    "door": DeviceSpec("door", "Aqara MCCGQ11LM", "battery"),
    "motion": DeviceSpec("motion", "Aqara RTCGQ11LM", "battery"),
    "sos_button": DeviceSpec("sos_button", "Heiman HS1EB-E", "battery"),
    "gas": DeviceSpec("gas", "Heiman HS1CG-M", "mains"),
    "motion_bedroom": DeviceSpec("motion", "Aqara RTCGQ11LM", "battery"),
}
Z2M_ALWAYS: tuple[str, ...] = ("smoke", "water_leak", "door", "motion", "sos_button")
# Devices that speak MQTT themselves (``eldercare/v1/dev/{uid}/…``).
NATIVE_DEVICES: dict[str, DeviceSpec] = {
    "fall_sensor": DeviceSpec("fall_sensor", "mmWave fall radar FR-60", "mains"),
    "vitals_band": DeviceSpec("vitals_band", "Vitals band VB-2", "battery"),
    "gps_watch": DeviceSpec("gps_watch", "4G GPS watch GW-4", "battery"),
}

DEMO_PASSWORD = "Eldercare-demo-2026"  # noqa: S105 - the published demo password, seeded only by seed_demo

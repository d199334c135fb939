"""Static data for the demo data set: name lists, providers, device models, the demo password.

Everything here is *demo data*: ``demo.seed`` writes rows built from it, and the running system reads the
database, never these constants. Tags as in DOMAIN.md: [R] official, [S] secondary source, [E] estimate.
"""

from __future__ import annotations

from dataclasses import dataclass


def _words(text: str) -> tuple[str, ...]:
    """Space-separated names; easier to read and edit than a long list of one-character literals."""
    return tuple(text.split())


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

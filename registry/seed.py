"""The registry's reference data: Xiaogan's divisions (区县), streets and townships (街道/乡镇), and
communities and villages (社区/村), plus the registry's policy defaults. Every install gets these rows.

The geography is deterministic: names are the real ones as far as known, positions come from a fixed
layout seed, so every install gets the same places. Tags as in DOMAIN.md: [R] official, [S] secondary
source, [E] estimate / sensible default.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.geo import LatLon, ring_point
from core.seed import DomainSeed, PolicyDefault, table_counts
from registry.models import Community, District, Street

_LAYOUT_SEED = "eldercare-reference-layout-v1"  # reference geometry never depends on the demo seed

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


def _street_block(spec: StreetSpec) -> int:
    """First code of a street's block in GB/T 10114 style: 街道 001-099, 镇 1xx, 乡 2xx, 农场 4xx."""
    if not spec.is_township:
        return 0
    if spec.name.endswith("镇"):
        return 100
    if spec.name.endswith("乡"):
        return 200
    return 400


def reference_geography() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for districts, streets (with ``district_code``) and communities (with ``street_code``).

    Deterministic: positions come from a fixed layout seed, so every install gets the same places.
    """
    districts: list[dict[str, Any]] = []
    streets: list[dict[str, Any]] = []
    communities: list[dict[str, Any]] = []
    for d in DISTRICTS:
        rng = random.Random(f"{_LAYOUT_SEED}:{d.code}")
        centre = LatLon(d.lat, d.lon)
        districts.append(
            {"code": d.code, "name": d.name, "name_en": d.name_en, "kind": d.kind, "lat": d.lat, "lon": d.lon}
        )
        per_block: dict[int, int] = {}
        for spec in d.streets:
            block = _street_block(spec)
            per_block[block] = per_block.get(block, 0) + 1
            code = f"{d.code}{block + per_block[block]:03d}000"  # 12-digit statistical code
            streets.append(
                {"district_code": d.code, "code": code, "name": spec.name, "is_township": spec.is_township}
            )
            # Urban streets ring the centre; a county seat (a town with several communities) sits at it.
            if not spec.is_township:
                street_centre = ring_point(rng, centre, 3500.0, 500.0)
            elif spec.communities >= 5:
                street_centre = ring_point(rng, centre, 1000.0)
            else:
                street_centre = ring_point(rng, centre, d.town_radius_km * 1000.0, d.town_radius_km * 350.0)
            stems = rng.sample(COMMUNITY_STEMS, spec.communities)
            for i, stem in enumerate(stems):
                p = ring_point(rng, street_centre, 1200.0)
                communities.append(
                    {
                        "street_code": code,
                        "code": f"{code[:9]}{i + 1:03d}",
                        "name": f"{stem}社区",
                        "is_village": False,
                        "lat": p.lat,
                        "lon": p.lon,
                    }
                )
            village_names = rng.sample(
                [f + (rng.choice(("", "家")) + g) for f in VILLAGE_FAMILIES for g in VILLAGE_LANDFORMS],
                spec.villages,
            )
            for j, vname in enumerate(village_names):
                p = ring_point(rng, street_centre, 4000.0 if spec.is_township else 2500.0, 300.0)
                communities.append(
                    {
                        "street_code": code,
                        "code": f"{code[:9]}{200 + j:03d}",
                        "name": f"{vname}村",
                        "is_village": True,
                        "lat": p.lat,
                        "lon": p.lon,
                    }
                )
    return districts, streets, communities


async def code_ids(session: AsyncSession, model: type[District] | type[Street]) -> dict[str, int]:
    """Ids of the divisions (or streets) by their statistical code."""
    rows = (await session.execute(select(model.code, model.id))).all()
    return dict(rows)


async def seed_places(session: AsyncSession, *, today: dt.date) -> dict[str, int]:
    """Insert the 7 Xiaogan divisions, their streets and communities (``ON CONFLICT DO NOTHING`` on
    their codes). Returns the three tables' row counts after seeding."""
    districts, streets, communities = reference_geography()
    await session.execute(pg_insert(District).on_conflict_do_nothing(index_elements=["code"]), districts)
    district_ids = await code_ids(session, District)
    await session.execute(
        pg_insert(Street).on_conflict_do_nothing(index_elements=["code"]),
        [
            {
                "district_id": district_ids[s["district_code"]],
                **{k: v for k, v in s.items() if k != "district_code"},
            }
            for s in streets
        ],
    )
    street_ids = await code_ids(session, Street)
    await session.execute(
        pg_insert(Community).on_conflict_do_nothing(index_elements=["code"]),
        [
            {"street_id": street_ids[c["street_code"]], **{k: v for k, v in c.items() if k != "street_code"}}
            for c in communities
        ],
    )
    return await table_counts(session, (District, Street, Community))


# --- Policy defaults ---------------------------------------------------------------------------------

POLICY_DEFAULTS: tuple[PolicyDefault, ...] = (
    # Who the registry takes: elders of 60 or over (老年人, Law on the Protection of the Rights and
    # Interests of the Elderly, art. 2 [R]); people with an assessed disability (long-term-care
    # insurance coverage) from 16, the working age, as the documented exception [E].
    PolicyDefault("registry.min_age", "*", {"years": 60}, "老年人权益保障法 art. 2: aged 60+ [R]"),
    PolicyDefault(
        "registry.min_age", "disability", {"years": 16}, "disability exception, project default [E]"
    ),
    # DOMAIN §9: a caregiver sees the elders of their current and upcoming visits and of their visits
    # in the last 30 days (registry scope: visit_opens_elder).
    PolicyDefault(
        "privacy.caregiver_recent_visits", "*", {"days": 30}, "DOMAIN §9 least privilege, caregiver"
    ),
)

SEED = DomainSeed(policies=POLICY_DEFAULTS, reference=seed_places)

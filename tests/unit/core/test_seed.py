"""Seeding's data: the registry's reference geography, and every domain's policy defaults as the
composition root gathers them (``core.seed.policy_defaults``)."""

from __future__ import annotations

from collections import Counter

import pytest

from api.bootstrap import domain_seeds
from core.geo import haversine_m
from core.seed import DomainSeed, PolicyDefault, policy_defaults
from dispatch.seed import SERVICE_CODES, SERVICES
from registry.seed import DISTRICTS, URBAN_COMMUNITY_TOTAL, reference_geography

pytestmark = pytest.mark.unit


def test_reference_geography_is_deterministic_and_consistent() -> None:
    districts, streets, communities = reference_geography()
    assert (districts, streets, communities) == reference_geography()
    assert [d["code"] for d in districts] == [
        "420902",
        "420984",
        "420981",
        "420982",
        "420923",
        "420921",
        "420922",
    ]
    assert sum(not c["is_village"] for c in communities) == URBAN_COMMUNITY_TOTAL == 209
    for rows in (streets, communities):
        assert len({r["code"] for r in rows}) == len(rows)
    street_codes = {s["code"]: s for s in streets}
    centre = {d["code"]: (d["lat"], d["lon"]) for d in districts}
    for s in streets:
        assert len(s["code"]) == 12
        assert s["code"].startswith(s["district_code"])
        assert s["is_township"] == (not s["name"].endswith("街道"))
    for c in communities:
        street = street_codes[c["street_code"]]
        assert len(c["code"]) == 12
        assert c["code"][:9] == street["code"][:9]
        assert c["name"].endswith("村" if c["is_village"] else "社区")
        assert haversine_m(c["lat"], c["lon"], *centre[street["district_code"]]) < 40_000
    names_per_street = Counter((c["street_code"], c["name"]) for c in communities)
    assert max(names_per_street.values()) == 1


POLICY_DEFAULTS = policy_defaults(domain_seeds())


def test_policy_defaults_are_integers_in_fen_and_basis_points() -> None:
    keys = Counter((p.key, p.scope) for p in POLICY_DEFAULTS)
    assert max(keys.values()) == 1  # (key, scope) is unique, as the table's unique key needs
    prices = {p.scope: p.value for p in POLICY_DEFAULTS if p.key == "service.price_fen"}
    assert set(prices) == set(SERVICE_CODES)
    assert prices["MEAL"] == {"fen": 1200, "unit": "meal", "min_minutes": None}
    assert prices["BATH"] == {"fen": 8000, "unit": "visit", "min_minutes": 45}
    for p in POLICY_DEFAULTS:
        assert p.source
        for k, v in p.value.items():
            if k.endswith(("_fen", "_bp")) or k in ("fen", "bp", "seconds", "metres"):
                assert type(v) is int, (p.key, k, v)
    ltc = {p.scope: p.value["budget_fen"] for p in POLICY_DEFAULTS if p.key == "subsidy.ltc"}
    assert ltc == {"2": 60_000, "3": 90_000, "4": 120_000}
    local = {
        p.scope: (p.value["rate_bp"], p.value["budget_fen"])
        for p in POLICY_DEFAULTS
        if p.key == "subsidy.local"
    }
    assert local["destitute"] == (10_000, 60_000)
    assert local["elderly_alone"] == (5000, 20_000)
    assert len(SERVICES) == 8
    assert len(DISTRICTS) == 7


def test_a_policy_seeded_by_two_domains_is_refused() -> None:
    """``ON CONFLICT DO NOTHING`` would keep one of them silently; the seed says which instead."""
    one = PolicyDefault("x.limit", "*", {"count": 1}, "test")
    other = PolicyDefault("x.limit", "*", {"count": 2}, "test")
    with pytest.raises(ValueError, match=r"x\.limit"):
        policy_defaults([DomainSeed(policies=(one,)), DomainSeed(policies=(other,))])

from __future__ import annotations

import pytest

from core.geo import (
    LatLon,
    bbox_around,
    distance_m,
    estimate_travel_seconds,
    haversine_m,
    offset,
    travel_seconds,
    within_m,
)

pytestmark = pytest.mark.unit

XIAONAN = LatLon(30.92, 113.91)


@pytest.mark.parametrize(
    ("a", "b", "metres", "tolerance"),
    [
        (XIAONAN, XIAONAN, 0.0, 1e-6),
        # one degree of latitude is about 111.2 km everywhere
        (LatLon(30.0, 113.0), LatLon(31.0, 113.0), 111_195.0, 50.0),
        # one degree of longitude shrinks with cos(latitude)
        (LatLon(30.92, 113.0), LatLon(30.92, 114.0), 95_425.0, 100.0),
        # Xiaonan to Dawu district centres (DOMAIN §1), about 70 km
        (XIAONAN, LatLon(31.56, 114.13), 73_700.0, 500.0),
        # quarter of the equator
        (LatLon(0.0, 0.0), LatLon(0.0, 90.0), 10_007_557.0, 10.0),
        # antipodes do not blow up
        (LatLon(0.0, 0.0), LatLon(0.0, 180.0), 20_015_114.0, 10.0),
    ],
)
def test_haversine(a: LatLon, b: LatLon, metres: float, tolerance: float) -> None:
    assert haversine_m(a.lat, a.lon, b.lat, b.lon) == pytest.approx(metres, abs=tolerance)
    assert distance_m(b, a) == pytest.approx(distance_m(a, b))


@pytest.mark.parametrize(("lat", "lon"), [(91.0, 0.0), (-90.5, 0.0), (0.0, 181.0), (0.0, -180.1)])
def test_rejects_non_coordinates(lat: float, lon: float) -> None:
    with pytest.raises(ValueError, match="not a coordinate"):
        haversine_m(lat, lon, 0.0, 0.0)


@pytest.mark.parametrize(
    ("distance", "speed", "detour", "seconds"),
    [
        (1000.0, 15.0, 1.3, 312.0),  # 1.3 km at 15 km/h = 5.2 min
        (0.0, 15.0, 1.3, 0.0),
        (10_000.0, 30.0, 1.3, 1560.0),  # rural: 13 km at 30 km/h = 26 min
        (2885.0, 15.0, 1.3, 900.12),  # just beyond the 15-minute urban circle
        (1000.0, 5.0, 1.0, 720.0),  # a walk without detour
    ],
)
def test_travel_seconds(distance: float, speed: float, detour: float, seconds: float) -> None:
    assert travel_seconds(distance, speed_kmh=speed, detour=detour) == pytest.approx(seconds, abs=0.01)


@pytest.mark.parametrize(
    ("distance", "speed", "detour"),
    [(-1.0, 15.0, 1.3), (100.0, 0.0, 1.3), (100.0, -5.0, 1.3), (100.0, 15.0, 0.9)],
)
def test_travel_seconds_rejects_bad_input(distance: float, speed: float, detour: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        travel_seconds(distance, speed_kmh=speed, detour=detour)


def test_estimate_between_points() -> None:
    b = offset(XIAONAN, north_m=0.0, east_m=1000.0)
    assert estimate_travel_seconds(XIAONAN, b, speed_kmh=15.0, detour=1.3) == pytest.approx(312.0, abs=0.5)


@pytest.mark.parametrize(("north", "east"), [(0.0, 0.0), (200.0, 0.0), (0.0, -500.0), (3000.0, 4000.0)])
def test_offset_moves_by_the_requested_distance(north: float, east: float) -> None:
    moved = offset(XIAONAN, north_m=north, east_m=east)
    assert distance_m(XIAONAN, moved) == pytest.approx((north**2 + east**2) ** 0.5, rel=1e-3, abs=0.01)
    assert (moved.lat > XIAONAN.lat) == (north > 0)
    assert (moved.lon < XIAONAN.lon) == (east < 0)


def test_bbox_contains_the_circle() -> None:
    box = bbox_around(XIAONAN, 1000.0)
    assert box.min_lat < XIAONAN.lat < box.max_lat
    assert box.min_lon < XIAONAN.lon < box.max_lon
    for north, east in [(999.0, 0.0), (0.0, 999.0), (-999.0, 0.0), (0.0, -999.0), (700.0, -700.0)]:
        p = offset(XIAONAN, north_m=north, east_m=east)
        assert box.min_lat <= p.lat <= box.max_lat
        assert box.min_lon <= p.lon <= box.max_lon
    with pytest.raises(ValueError, match="radius"):
        bbox_around(XIAONAN, -1.0)


@pytest.mark.parametrize(
    ("metres", "radius", "inside"), [(199.0, 200.0, True), (201.0, 200.0, False), (0.0, 0.0, True)]
)
def test_within(metres: float, radius: float, inside: bool) -> None:
    assert within_m(XIAONAN, offset(XIAONAN, north_m=metres, east_m=0.0), radius) is inside

"""Small geodesy helpers: great-circle distance, travel-time estimates, offsets. Pure; metres and seconds.

Good to a few metres at city scale, which is all travel estimates and check-in radii need.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean Earth radius


class LatLon(NamedTuple):
    lat: float
    lon: float


class BBox(NamedTuple):
    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float


def _check(lat: float, lon: float) -> None:
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"not a coordinate: lat={lat}, lon={lon}")


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS-84 points (degrees).

    The range check is inline, not two ``_check`` calls: the matcher's ring search calls this for every
    caregiver in the cells it scans, and the calls alone cost it about 5 % (bench dispatch, #9)."""
    if not (
        -90.0 <= lat1 <= 90.0
        and -90.0 <= lat2 <= 90.0
        and -180.0 <= lon1 <= 180.0
        and -180.0 <= lon2 <= 180.0
    ):
        _check(lat1, lon1)
        _check(lat2, lon2)
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def distance_m(a: LatLon, b: LatLon) -> float:
    return haversine_m(a.lat, a.lon, b.lat, b.lon)


def travel_seconds(distance_m: float, *, speed_kmh: float, detour: float) -> float:
    """Estimated travel time in seconds: ``distance_m × detour / speed``.

    ``detour`` (road / straight-line distance, e.g. 1.3) and ``speed_kmh`` are the caller's dated
    policy, so callers pass them in.
    """
    if distance_m < 0:
        raise ValueError("distance must be >= 0")
    if speed_kmh <= 0:
        raise ValueError("speed must be > 0")
    if detour < 1:
        raise ValueError("detour factor must be >= 1")
    return distance_m * detour / (speed_kmh / 3.6)


def estimate_travel_seconds(origin: LatLon, destination: LatLon, *, speed_kmh: float, detour: float) -> float:
    """Travel time in seconds between two points by haversine distance × detour at ``speed_kmh``."""
    return travel_seconds(distance_m(origin, destination), speed_kmh=speed_kmh, detour=detour)


def offset(point: LatLon, *, north_m: float, east_m: float) -> LatLon:
    """The point ``north_m`` metres north and ``east_m`` metres east (flat-earth; fine below ~50 km)."""
    _check(point.lat, point.lon)
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(point.lat))))
    return LatLon(point.lat + dlat, point.lon + dlon)


def bbox_around(point: LatLon, radius_m: float) -> BBox:
    """A lat/lon box containing every point within ``radius_m`` metres, for index pre-filtering."""
    if radius_m < 0:
        raise ValueError("radius must be >= 0")
    sw = offset(point, north_m=-radius_m, east_m=-radius_m)
    ne = offset(point, north_m=radius_m, east_m=radius_m)
    return BBox(sw.lat, sw.lon, ne.lat, ne.lon)


def within_m(a: LatLon, b: LatLon, radius_m: float) -> bool:
    """True when ``b`` is at most ``radius_m`` metres from ``a``."""
    return distance_m(a, b) <= radius_m


def ring_point(rng: random.Random, centre: LatLon, radius_m: float, min_m: float = 0.0) -> LatLon:
    """A uniformly random point in the ring ``min_m``..``radius_m`` metres around ``centre``, rounded to
    6 decimals (about 0.1 m). For generating places and homes; the caller owns the ``rng`` (and its seed)."""
    r = math.sqrt(rng.uniform((min_m / radius_m) ** 2, 1.0)) * radius_m if radius_m > 0 else 0.0
    bearing = rng.uniform(0.0, 2 * math.pi)
    p = offset(centre, north_m=r * math.cos(bearing), east_m=r * math.sin(bearing))
    return LatLon(round(p.lat, 6), round(p.lon, 6))

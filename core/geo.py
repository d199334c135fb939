"""Small geodesy helpers: great-circle distance, travel-time estimates, offsets. Pure; metres and seconds.

Good to a few metres at city scale, which is all travel estimates and check-in radii need.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
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


# --- Polygons (safe zones) -------------------------------------------------------------------------
# Vertices are (lat, lon) pairs in degrees. The geometry is planar in a local east/north frame around a
# reference point (equirectangular), which is good to well under 1 % across the few kilometres of a
# neighbourhood and keeps every test below exact for the cases that matter: the vertices themselves.


def _xy(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    """Metres east and north of (``lat0``, ``lon0``) in the local equirectangular frame."""
    k = math.pi / 180 * EARTH_RADIUS_M
    return (lon - lon0) * k * math.cos(math.radians(lat0)), (lat - lat0) * k


def _ring(polygon: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """The vertices as (lat, lon) tuples, without a closing vertex that repeats the first."""
    ring = [(float(p[0]), float(p[1])) for p in polygon]
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring.pop()
    return ring


def _on_segment(py: float, px: float, y1: float, x1: float, y2: float, x2: float) -> bool:
    """Whether (py, px) lies on the segment (exactly, up to float rounding of the cross product)."""
    cross = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    scale = max(abs(x2 - x1), abs(y2 - y1), 1e-300)
    if abs(cross) > 1e-12 * scale:
        return False
    return min(x1, x2) <= px <= max(x1, x2) and min(y1, y2) <= py <= max(y1, y2)


def point_in_polygon(lat: float, lon: float, polygon: Sequence[Sequence[float]]) -> bool:
    """Whether a point lies inside or on the boundary of a simple polygon of (lat, lon) vertices.

    Even-odd ray casting with half-open edges, so a ray through a vertex counts it once; a point on
    an edge or a vertex is inside (a safe zone's fence is part of the zone). A closing vertex equal
    to the first is allowed. Fine for neighbourhood-sized zones away from the poles and the
    antimeridian; fewer than 3 vertices contain nothing."""
    ring = _ring(polygon)
    n = len(ring)
    if n < 3:
        return False
    inside = False
    for i in range(n):
        y1, x1 = ring[i]
        y2, x2 = ring[(i + 1) % n]
        if _on_segment(lat, lon, y1, x1, y2, x2):
            return True
        if (y1 > lat) != (y2 > lat):
            x_cross = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lon < x_cross:
                inside = not inside
    return inside


def _segment_distance(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def distance_to_boundary_m(lat: float, lon: float, polygon: Sequence[Sequence[float]]) -> float:
    """Metres from a point to the nearest edge of the polygon (whether the point is inside or not)."""
    ring = _ring(polygon)
    if not ring:
        raise ValueError("a polygon needs at least one vertex")
    pts = [_xy(y, x, lat, lon) for y, x in ring]
    n = len(pts)
    if n == 1:
        return math.hypot(*pts[0])
    return min(_segment_distance(0.0, 0.0, *pts[i], *pts[(i + 1) % n]) for i in range(n))


def _orientation(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> int:
    v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return (v > 0) - (v < 0)


def _within(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> bool:
    """For collinear a, b, c: whether c lies on the segment a-b."""
    return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])


def _segments_meet(
    p1: tuple[float, float], p2: tuple[float, float], q1: tuple[float, float], q2: tuple[float, float]
) -> bool:
    """Whether two closed segments share at least one point."""
    o1, o2 = _orientation(p1, p2, q1), _orientation(p1, p2, q2)
    o3, o4 = _orientation(q1, q2, p1), _orientation(q1, q2, p2)
    if o1 != o2 and o3 != o4:
        return True
    return (
        (o1 == 0 and _within(p1, p2, q1))
        or (o2 == 0 and _within(p1, p2, q2))
        or (o3 == 0 and _within(q1, q2, p1))
        or (o4 == 0 and _within(q1, q2, p2))
    )


def polygon_problem(polygon: Sequence[Sequence[float]]) -> str | None:
    """Why the polygon is not a simple polygon, or ``None`` when it is.

    Reasons: ``too_few_vertices`` (fewer than 3 distinct), ``repeated_vertex`` (the same vertex twice,
    apart from a closing one), ``self_intersecting`` (two edges cross or touch other than where
    neighbours meet, or neighbours fold back on each other; vertices all on one line always do)."""
    ring = _ring(polygon)
    n = len(ring)
    if n < 3:
        return "too_few_vertices"
    if len(set(ring)) != n:
        return "repeated_vertex"
    for i in range(n):
        a1, a2 = ring[i], ring[(i + 1) % n]
        for j in range(i + 1, n):
            b1, b2 = ring[j], ring[(j + 1) % n]
            if j == i + 1 or (i == 0 and j == n - 1):
                # Neighbours share one vertex; they must not overlap beyond it (a fold back).
                shared, other_a, other_b = (a2, a1, b2) if j == i + 1 else (a1, a2, b1)
                if _orientation(other_a, shared, other_b) == 0 and (
                    _within(shared, other_a, other_b) or _within(shared, other_b, other_a)
                ):
                    return "self_intersecting"
                continue
            if _segments_meet(a1, a2, b1, b2):
                return "self_intersecting"
    return None

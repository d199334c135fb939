"""Polygons of safe zones (core.geo): containment with its edge cases, distance to the fence, and what
makes a polygon unfit for a zone."""

from __future__ import annotations

import pytest

from core.geo import LatLon, distance_to_boundary_m, offset, point_in_polygon, polygon_problem

pytestmark = pytest.mark.unit

SQUARE = [(30.91, 113.90), (30.93, 113.90), (30.93, 113.92), (30.91, 113.92)]
# A "U" open to the north: the notch (30.915..30.93, 113.905..113.915) is outside.
U_SHAPE = [
    (30.90, 113.90),
    (30.93, 113.90),
    (30.93, 113.905),
    (30.915, 113.905),
    (30.915, 113.915),
    (30.93, 113.915),
    (30.93, 113.92),
    (30.90, 113.92),
]
# A diamond: its left and right vertices lie on the horizontal ray of a point at their latitude.
DIAMOND = [(30.90, 113.91), (30.92, 113.93), (30.94, 113.91), (30.92, 113.89)]


@pytest.mark.parametrize(
    ("polygon", "point", "inside"),
    [
        (SQUARE, (30.92, 113.91), True),
        (SQUARE, (30.95, 113.91), False),
        (SQUARE, (30.92, 113.93), False),
        (SQUARE, (30.92, 113.89), False),
        # On the fence: an edge, a vertex (both count as inside).
        (SQUARE, (30.91, 113.91), True),
        (SQUARE, (30.92, 113.92), True),
        (SQUARE, (30.93, 113.92), True),
        (SQUARE, (30.91, 113.90), True),
        # Just outside an edge, beyond float noise.
        (SQUARE, (30.92, 113.92 + 1e-9), False),
        # A closing vertex that repeats the first changes nothing.
        ([*SQUARE, SQUARE[0]], (30.92, 113.91), True),
        ([*SQUARE, SQUARE[0]], (30.95, 113.91), False),
        # Concave: the notch is outside, the arms inside.
        (U_SHAPE, (30.925, 113.91), False),
        (U_SHAPE, (30.925, 113.902), True),
        (U_SHAPE, (30.925, 113.918), True),
        (U_SHAPE, (30.91, 113.91), True),
        # The ray from the point passes exactly through vertices (counted once, not twice).
        (DIAMOND, (30.92, 113.91), True),
        (DIAMOND, (30.92, 113.88), False),
        (DIAMOND, (30.92, 113.94), False),
        (DIAMOND, (30.90, 113.90), False),  # level with the bottom vertex, to its left
        # The ray runs along a horizontal edge of the U (latitude 30.915).
        (U_SHAPE, (30.915, 113.901), True),
        (U_SHAPE, (30.915, 113.91), True),  # on that edge
        (U_SHAPE, (30.915, 113.925), False),
        # Fewer than 3 vertices contain nothing.
        ([(30.91, 113.90), (30.93, 113.92)], (30.92, 113.91), False),
        ([], (30.92, 113.91), False),
    ],
)
def test_point_in_polygon(
    polygon: list[tuple[float, float]], point: tuple[float, float], inside: bool
) -> None:
    assert point_in_polygon(point[0], point[1], polygon) is inside


def test_distance_to_boundary() -> None:
    centre = LatLon(30.92, 113.91)
    # A square of 200 m sides around the centre: 100 m from the centre to each edge.
    corners = [
        offset(centre, north_m=n, east_m=e) for n, e in ((-100, -100), (100, -100), (100, 100), (-100, 100))
    ]
    ring = [(c.lat, c.lon) for c in corners]
    assert distance_to_boundary_m(centre.lat, centre.lon, ring) == pytest.approx(100, rel=1e-3)
    east = offset(centre, north_m=0, east_m=250)
    assert distance_to_boundary_m(east.lat, east.lon, ring) == pytest.approx(150, rel=1e-3)
    # Nearest to a corner: the diagonal.
    ne = offset(centre, north_m=130, east_m=140)
    assert distance_to_boundary_m(ne.lat, ne.lon, ring) == pytest.approx((30**2 + 40**2) ** 0.5, rel=1e-2)
    assert distance_to_boundary_m(corners[0].lat, corners[0].lon, ring) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="vertex"):
        distance_to_boundary_m(30.0, 113.0, [])


@pytest.mark.parametrize(
    ("polygon", "problem"),
    [
        (SQUARE, None),
        ([*SQUARE, SQUARE[0]], None),
        (U_SHAPE, None),
        (DIAMOND, None),
        (SQUARE[::-1], None),  # either orientation
        ([(30.91, 113.90), (30.93, 113.90)], "too_few_vertices"),
        ([(30.91, 113.90), (30.93, 113.90), (30.91, 113.90)], "too_few_vertices"),  # closed 2-gon
        ([(30.91, 113.90), (30.93, 113.90), (30.93, 113.92), (30.93, 113.90)], "repeated_vertex"),
        # A bow tie: two edges cross.
        ([(30.91, 113.90), (30.93, 113.92), (30.93, 113.90), (30.91, 113.92)], "self_intersecting"),
        # A vertex touching a non-adjacent edge.
        (
            [
                (30.91, 113.90),
                (30.93, 113.90),
                (30.92, 113.91),
                (30.93, 113.92),
                (30.91, 113.92),
                (30.92, 113.90),
            ],
            "self_intersecting",
        ),
        # An edge folding back along its neighbour (a spike).
        ([(30.91, 113.90), (30.93, 113.90), (30.93, 113.92), (30.93, 113.91)], "self_intersecting"),
        # All on one line.
        ([(30.91, 113.90), (30.92, 113.90), (30.93, 113.90), (30.94, 113.90)], "self_intersecting"),
    ],
)
def test_polygon_problem(polygon: list[tuple[float, float]], problem: str | None) -> None:
    assert polygon_problem(polygon) == problem

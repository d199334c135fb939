"""Dispatch's API tests: the real app on a movable clock (``clock``, ``api``), headers of the demo
users (``as_user``) and the demo world, an elder and a caregiver made able to meet (``world``); see
:mod:`tests.support.dispatch`, which also has the steps that bring a visit to an offer or to
check-out. Each test runs inside the rolled-back test transaction; the few that need committed rows
(a second connection, a job) make them in fixtures of their own and remove them after.
"""

from __future__ import annotations

from tests.support import dispatch as support

clock = support.clock
api = support.api
as_user = support.as_user
world = support.world

"""``/api/v1/figures``: headline figures of the caller's area.

Civil-affairs officers get their own districts; admins and call-centre staff (operator, supervisor,
who act on alarms city-wide and watch devices online) the whole city. Any of them may narrow it to
one district with ``district_id``; a district outside their area is a 404. Other roles: 403.
"""

from __future__ import annotations

from litestar import Controller, get

from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import STAFF, allow
from registry.routes.params import Id32Query
from registry.schemas.figures import FiguresRead, figures_read
from registry.service import figures

# Staff: admin, civil_affairs, operator, supervisor (the service refuses anyone else, too).
FIGURES = allow(*sorted(STAFF))


class FiguresController(Controller):
    path = "/api/v1/figures"
    tags = ["figures"]  # noqa: RUF012

    @get(
        "/",
        opt=FIGURES,
        summary="Elders (by living situation and subsidy category), providers, caregivers and devices "
        "of your area today",
    )
    async def get_figures(
        self, db: Db, principal: CurrentPrincipal, now: Now, district_id: Id32Query = None
    ) -> FiguresRead:
        return figures_read(
            await figures.area_figures(session=db, actor=principal, now=now, district_id=district_id)
        )

"""HTTP edge of billing: ``/api/v1/billing``. Handlers parse, call one use case and serialise; the use
cases apply the elder scope (:func:`registry.scope.sees_elder`: out of scope is a 404).

Other billing route modules (settlement, allowances) add their controllers beside :data:`CONTROLLERS`
in the composition root (``api.bootstrap``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Final

from litestar import Controller, get
from litestar.params import FromQuery, QueryParameter

from billing import quote, vouchers
from billing.pricing import month_of
from billing.quote_schemas import QuoteRead, quote_read
from billing.vouchers_schemas import VoucherAccountRead, voucher_account_read
from core.clock import local_date
from core.errors import Invalid
from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import allow
from core.identity.models import Role
from core.types import INT64_MAX, check_day, parse_day

R = Role
# The elder, their family, and staff who arrange or pay for visits in their scope; admins for all.
QUOTING = allow(R.ELDER, R.FAMILY, R.PROVIDER_ADMIN, R.OPERATOR, R.CIVIL_AFFAIRS, R.ADMIN)
# The voucher is the elder's account: the elder, their family, civil affairs (their districts), admins.
VOUCHER_READERS = allow(R.ELDER, R.FAMILY, R.CIVIL_AFFAIRS, R.ADMIN)

# At most a day of hours (or 24 meals or visits) in one quote.
MAX_UNITS: Final = 24

ElderIdQuery = Annotated[int, QueryParameter(ge=1, le=INT64_MAX, description="The elder's id")]
ServiceQuery = Annotated[
    str, QueryParameter(pattern=r"^[A-Z]{2,10}$", max_length=10, description="Service code, e.g. CARE")
]
UnitsQuery = Annotated[
    str,
    QueryParameter(
        pattern=r"^[0-9]{1,2}(\.[0-9]{1,2})?$",
        max_length=5,
        description=f"Units (hours for hourly services, up to 2 decimals), 0 < units ≤ {MAX_UNITS}",
    ),
]
MonthQuery = Annotated[
    str | None,
    QueryParameter(
        pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", max_length=7, description="YYYY-MM (default: this month)"
    ),
]


def parse_units(text: str) -> Fraction:
    """``units`` as an exact fraction (``1.5`` → 3/2), 0 < units ≤ :data:`MAX_UNITS`, else a 422."""
    units = Fraction(Decimal(text))
    if not 0 < units <= MAX_UNITS:
        raise Invalid(
            f"units must be above 0 and at most {MAX_UNITS}.", code="billing.units_invalid", field="units"
        )
    return units


class BillingController(Controller):
    path = "/api/v1/billing"
    tags = ["billing"]  # noqa: RUF012

    @get(
        "/quote",
        opt=QUOTING,
        summary="What one visit would cost each payer and the elder, on a day",
        description=(
            "The visit is priced through the payer waterfall (DOMAIN §4: long-term-care insurance, the"
            " national care voucher, the local category, then the co-pay) as the last visit of its month"
            " so far: each payer's cap is its budget less what the elder's verified visits from the 1st"
            " to `on` used. Its price is the catalogue unit price on `on` × `units`. Amounts in fen."
            " Problem codes: `elder.not_found` (404, also outside your scope), `billing.unknown_service`"
            " (422), `billing.units_invalid` (422), `dispatch.invalid` (422, no price that day)."
        ),
    )
    async def get_quote(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        elder_id: ElderIdQuery,
        service: ServiceQuery,
        units: UnitsQuery = "1",
        on: FromQuery[dt.date | None] = None,
    ) -> QuoteRead:
        day = local_date(now) if on is None else check_day(on, field="on")
        result = await quote.quote_visit(
            session=db, actor=principal, elder_id=elder_id, service=service, units=parse_units(units), on=day
        )
        return quote_read(result)

    @get(
        "/vouchers",
        opt=VOUCHER_READERS,
        summary="An elder's care voucher for a month: issued, consumed, balance, expiry",
        description=(
            "养老服务消费补贴: issued on the 1st to elders entitled that day (later in the month to those"
            " entitled since), consumed by the voucher's shares of the month's verified visits (each"
            " listed), expiring at the month's end (Asia/Shanghai; policy `subsidy.voucher_expiry` may add"
            " grace days). Amounts in fen. Problem codes: `elder.not_found` (404, also outside your scope)."
        ),
    )
    async def get_vouchers(
        self, db: Db, principal: CurrentPrincipal, now: Now, elder_id: ElderIdQuery, month: MonthQuery = None
    ) -> VoucherAccountRead:
        first = month_of(local_date(now))[0] if month is None else parse_day(f"{month}-01", field="month")
        account = await vouchers.voucher_account(
            session=db, actor=principal, elder_id=elder_id, month_on=first, now=now
        )
        return voucher_account_read(account)


CONTROLLERS: Final = (BillingController,)

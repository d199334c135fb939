"""dispatch (dispol): service requirements and minimum time on site are dated policy only

The ``service`` table (migration 0003) kept a second, undated copy of what each service asks of the
caregiver (certificate kind, maximum certificate level, same-gender bathing) and of its minimum time
on site, beside the dated ``service.requirement[<code>]`` and ``service.price_fen[<code>]`` policy rows
that dispatch/seed.py writes. Matching, day plans and verification now read the dated rows valid on
the service day (dispatch.policies), so the copy goes: the table keeps the catalogue's identity (code,
names, unit), the skill a caregiver needs for it and whether it is offered.

Downgrade restores the columns from the policy rows valid on the day it runs (none: no requirement,
no minimum).

Revision ID: 0016_dispol
Revises: 0015_monit
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_dispol"
down_revision: str | Sequence[str] | None = "0015_monit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_service_level"), "service", type_="check")
    op.drop_column("service", "same_gender")
    op.drop_column("service", "max_certificate_level")
    op.drop_column("service", "certificate_kind")
    op.drop_column("service", "min_minutes")


# Each service's latest price and requirement rows valid today (none: no minimum, no requirement).
_RESTORE = """UPDATE service SET
  min_minutes = coalesce((price.value ->> 'min_minutes')::smallint, 0),
  certificate_kind = req.value ->> 'certificate',
  max_certificate_level = (req.value ->> 'max_level')::smallint,
  same_gender = coalesce((req.value ->> 'same_gender')::boolean, false)
FROM service AS s
LEFT JOIN LATERAL (
  SELECT p.value FROM policy_value p
  WHERE p.key = 'service.price_fen' AND p.scope = s.code AND p.valid_from <= current_date
    AND (p.valid_to IS NULL OR p.valid_to >= current_date)
  ORDER BY p.valid_from DESC LIMIT 1) AS price ON true
LEFT JOIN LATERAL (
  SELECT p.value FROM policy_value p
  WHERE p.key = 'service.requirement' AND p.scope = s.code AND p.valid_from <= current_date
    AND (p.valid_to IS NULL OR p.valid_to >= current_date)
  ORDER BY p.valid_from DESC LIMIT 1) AS req ON true
WHERE s.code = service.code"""


def downgrade() -> None:
    op.add_column("service", sa.Column("min_minutes", sa.SmallInteger(), nullable=True))
    op.add_column("service", sa.Column("certificate_kind", sa.String(length=20), nullable=True))
    op.add_column("service", sa.Column("max_certificate_level", sa.SmallInteger(), nullable=True))
    op.add_column("service", sa.Column("same_gender", sa.Boolean(), nullable=True))
    op.execute(_RESTORE)
    op.alter_column("service", "min_minutes", nullable=False)
    op.alter_column("service", "same_gender", nullable=False)
    op.create_check_constraint(
        op.f("ck_service_level"),
        "service",
        "max_certificate_level IS NULL OR max_certificate_level BETWEEN 1 AND 5",
    )

"""dispatch (dispa): the history of a visit exception, and the early and late check-in exceptions

* ``visit_exception_note``: explanations and contests by the provider side and the resolver's note,
  each by a named user in a role at a time (the provider may explain or contest an exception that
  holds its visit from payment, but only an independent user resolves it).
* ``visit_exception.code`` also admits ``early_check_in`` and ``late_check_in`` (the time element of
  EVV, DOMAIN §5; tolerances: policies ``verification.checkin_early`` and ``verification.checkin_late``).

Revision ID: 0009_dispa
Revises: 0008
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_dispa"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CODES = (
    "missing_check_in",
    "missing_check_out",
    "check_in_too_far",
    "short_on_site",
    "overlap",
    "certificate",
    "no_sign_off",
    "manual_entry",
)


def _code_check(codes: Sequence[str]) -> None:
    op.drop_constraint(op.f("ck_visit_exception_code_valid"), "visit_exception", type_="check")
    allowed = ", ".join(f"'{c}'" for c in codes)
    op.create_check_constraint(
        op.f("ck_visit_exception_code_valid"), "visit_exception", f"code IN ({allowed})"
    )


def upgrade() -> None:
    _code_check((*_CODES, "early_check_in", "late_check_in"))
    op.create_table(
        "visit_exception_note",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("exception_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("text", sa.String(length=400), nullable=False),
        sa.Column("by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("by_role", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('explanation', 'contest', 'resolution')",
            name=op.f("ck_visit_exception_note_kind_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["by_user_id"],
            ["app_user.id"],
            name=op.f("fk_visit_exception_note_by_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["exception_id"],
            ["visit_exception.id"],
            name=op.f("fk_visit_exception_note_exception_id_visit_exception"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_exception_note")),
    )
    op.create_index(
        op.f("ix_visit_exception_note_exception_id"), "visit_exception_note", ["exception_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_visit_exception_note_exception_id"), table_name="visit_exception_note")
    op.drop_table("visit_exception_note")
    op.execute("DELETE FROM visit_exception WHERE code IN ('early_check_in', 'late_check_in')")
    _code_check(_CODES)

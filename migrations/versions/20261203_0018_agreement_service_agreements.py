"""dispatch (agreement): service agreements between an elder (or guardian) and a provider

* ``service_agreement``: the agreement (服务协议, GB/T 43153): elder, provider, the guardian signing for
  the elder if any, valid dates, the day of the price list quoted, state (``draft`` → ``signed`` →
  ``terminated``) and its termination (when, with effect from which day, by whom, why).
* ``service_agreement_item``: the services it covers, each with the unit price quoted (fen) and the
  policy row it came from.
* ``agreement_signature``: one signature per party (elder | guardian | provider): signer, account
  when signed in the app, method (``in_app`` / ``paper_scan`` with a document reference), time.
* Triggers: the terms of an agreement that is no longer a draft (parties, dates, price list, items)
  cannot change; amending is a new agreement.
* ``recurring_order.provider_id``: the provider a series is agreed with (NULL for older series).

Revision ID: 0018_agreement
Revises: 0017_auth_epoch
Create Date: 2026-12-03 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_agreement"
down_revision: str | Sequence[str] | None = "0017_auth_epoch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FROZEN_TERMS = """
CREATE OR REPLACE FUNCTION service_agreement_terms_frozen() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state <> 'draft' AND (
        NEW.elder_id, NEW.provider_id, NEW.guardian_id, NEW.valid_from, NEW.valid_to, NEW.price_list_on
    ) IS DISTINCT FROM (
        OLD.elder_id, OLD.provider_id, OLD.guardian_id, OLD.valid_from, OLD.valid_to, OLD.price_list_on
    ) THEN
        RAISE EXCEPTION 'service agreement % is %: its terms cannot change', OLD.id, OLD.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
"""

# An item row of an agreement that is no longer a draft cannot be added, changed or removed. When
# the agreement itself is deleted (its elder is), the cascade runs after the agreement row is gone,
# so the lookup finds nothing and lets it through.
_FROZEN_ITEMS = """
CREATE OR REPLACE FUNCTION service_agreement_item_frozen() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    agreement bigint := CASE WHEN TG_OP = 'INSERT' THEN NEW.agreement_id ELSE OLD.agreement_id END;
    current_state text;
BEGIN
    SELECT state INTO current_state FROM service_agreement WHERE id = agreement;
    IF current_state IS NOT NULL AND current_state <> 'draft' THEN
        RAISE EXCEPTION 'service agreement % is %: its services cannot change', agreement, current_state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
"""


def upgrade() -> None:
    op.create_table(
        "service_agreement",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("elder_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("guardian_id", sa.BigInteger(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=False),
        sa.Column("price_list_on", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("created_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("terminated_on", sa.Date(), nullable=True),
        sa.Column("terminated_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("termination_reason", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "(state = 'terminated') = (terminated_at IS NOT NULL AND terminated_on IS NOT NULL)",
            name=op.f("ck_service_agreement_termination_complete"),
        ),
        sa.CheckConstraint(
            "state <> 'signed' OR signed_at IS NOT NULL", name=op.f("ck_service_agreement_signed_dated")
        ),
        sa.CheckConstraint(
            "state IN ('draft', 'signed', 'terminated')", name=op.f("ck_service_agreement_state_valid")
        ),
        sa.CheckConstraint("valid_to >= valid_from", name=op.f("ck_service_agreement_range_valid")),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["app_user.id"],
            name=op.f("fk_service_agreement_created_by_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elder.id"], name=op.f("fk_service_agreement_elder_id_elder"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["guardian_id"], ["guardian.id"], name=op.f("fk_service_agreement_guardian_id_guardian")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["provider.id"], name=op.f("fk_service_agreement_provider_id_provider")
        ),
        sa.ForeignKeyConstraint(
            ["terminated_by_user_id"],
            ["app_user.id"],
            name=op.f("fk_service_agreement_terminated_by_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_agreement")),
    )
    op.create_index("ix_service_agreement_elder_provider", "service_agreement", ["elder_id", "provider_id"])
    op.create_index(op.f("ix_service_agreement_provider_id"), "service_agreement", ["provider_id"])
    op.create_table(
        "agreement_signature",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("agreement_id", sa.BigInteger(), nullable=False),
        sa.Column("party", sa.String(length=10), nullable=False),
        sa.Column("signer_name", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("method", sa.String(length=12), nullable=False),
        sa.Column("document_ref", sa.String(length=200), nullable=True),
        sa.Column("recorded_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "method <> 'paper_scan' OR document_ref IS NOT NULL",
            name=op.f("ck_agreement_signature_paper_has_document"),
        ),
        sa.CheckConstraint(
            "method IN ('in_app', 'paper_scan')", name=op.f("ck_agreement_signature_method_valid")
        ),
        sa.CheckConstraint(
            "party IN ('elder', 'guardian', 'provider')", name=op.f("ck_agreement_signature_party_valid")
        ),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["service_agreement.id"],
            name=op.f("fk_agreement_signature_agreement_id_service_agreement"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_user_id"],
            ["app_user.id"],
            name=op.f("fk_agreement_signature_recorded_by_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_agreement_signature_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreement_signature")),
        sa.UniqueConstraint("agreement_id", "party", name="uq_agreement_signature_party"),
    )
    op.create_index(op.f("ix_agreement_signature_agreement_id"), "agreement_signature", ["agreement_id"])
    op.create_table(
        "service_agreement_item",
        sa.Column("agreement_id", sa.BigInteger(), nullable=False),
        sa.Column("service_code", sa.String(length=10), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=8), nullable=False),
        sa.Column("price_ref", sa.String(length=80), nullable=False),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_service_agreement_item_price_nonnegative")),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["service_agreement.id"],
            name=op.f("fk_service_agreement_item_agreement_id_service_agreement"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_code"], ["service.code"], name=op.f("fk_service_agreement_item_service_code_service")
        ),
        sa.PrimaryKeyConstraint("agreement_id", "service_code", name=op.f("pk_service_agreement_item")),
    )
    op.execute(_FROZEN_TERMS)
    op.execute(
        "CREATE TRIGGER trg_service_agreement_terms_frozen BEFORE UPDATE ON service_agreement "
        "FOR EACH ROW EXECUTE FUNCTION service_agreement_terms_frozen()"
    )
    op.execute(_FROZEN_ITEMS)
    op.execute(
        "CREATE TRIGGER trg_service_agreement_item_frozen BEFORE INSERT OR UPDATE OR DELETE "
        "ON service_agreement_item FOR EACH ROW EXECUTE FUNCTION service_agreement_item_frozen()"
    )
    op.add_column("recurring_order", sa.Column("provider_id", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_recurring_order_provider_id"), "recurring_order", ["provider_id"])
    op.create_foreign_key(
        op.f("fk_recurring_order_provider_id_provider"),
        "recurring_order",
        "provider",
        ["provider_id"],
        ["id"],
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_recurring_order_provider_id_provider"), "recurring_order", type_="foreignkey")
    op.drop_index(op.f("ix_recurring_order_provider_id"), table_name="recurring_order")
    op.drop_column("recurring_order", "provider_id")
    op.drop_table("service_agreement_item")
    op.execute("DROP FUNCTION IF EXISTS service_agreement_item_frozen()")
    op.drop_index(op.f("ix_agreement_signature_agreement_id"), table_name="agreement_signature")
    op.drop_table("agreement_signature")
    op.drop_index(op.f("ix_service_agreement_provider_id"), table_name="service_agreement")
    op.drop_index("ix_service_agreement_elder_provider", table_name="service_agreement")
    op.drop_table("service_agreement")
    op.execute("DROP FUNCTION IF EXISTS service_agreement_terms_frozen()")

"""auth: ``app_user.scope_epoch``, moved on by the database whenever what a principal is built from changes

The API keeps the principal of each live token in memory (``core.identity.sessions.PrincipalCache``)
and checks on every request, in the one query that also checks the token is live, that the account's
``scope_epoch`` is still the one it was built at. Triggers move the epoch on, in the transaction of the
change, so every API process sees it on its very next request:

* any change to the ``app_user`` row other than the sign-in throttling columns and the password hash
  (role, provider, caregiver, elder, guardian, names, ``is_active``, ``password_change_required``);
* a row of ``user_district`` added, changed or removed (an officer's districts);
* a row of ``elder_guardian`` added, changed or removed (a family member's elders, the registry's
  scope loader ``registry.scope.load_elder_scope``), for the accounts of that guardian.

Revision ID: 0017_auth_epoch
Revises: 0016_dispol
Create Date: 2026-12-03 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_auth_epoch"
down_revision: str | Sequence[str] | None = "0016_dispol"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Columns of app_user that a principal is not built from: they change on sign-in attempts and
# password changes (which revoke sessions themselves), and must not evict the cached principal.
_NOT_SCOPE = "ARRAY['failed_logins', 'failed_login_at', 'locked_until', 'password_hash', 'scope_epoch']"

UPGRADE = (
    f"""
CREATE FUNCTION app_user_scope_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF to_jsonb(NEW) - {_NOT_SCOPE} IS DISTINCT FROM to_jsonb(OLD) - {_NOT_SCOPE} THEN
        NEW.scope_epoch := OLD.scope_epoch + 1;
    END IF;
    RETURN NEW;
END $$""",
    """CREATE TRIGGER app_user_scope_epoch BEFORE UPDATE ON app_user
    FOR EACH ROW EXECUTE FUNCTION app_user_scope_epoch()""",
    """
CREATE FUNCTION user_district_scope_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- OLD is NULL on INSERT and NEW on DELETE.
    UPDATE app_user SET scope_epoch = scope_epoch + 1 WHERE id IN (NEW.user_id, OLD.user_id);
    RETURN NULL;
END $$""",
    """CREATE TRIGGER user_district_scope_epoch AFTER INSERT OR UPDATE OR DELETE ON user_district
    FOR EACH ROW EXECUTE FUNCTION user_district_scope_epoch()""",
    """
CREATE FUNCTION elder_guardian_scope_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE app_user SET scope_epoch = scope_epoch + 1 WHERE guardian_id IN (NEW.guardian_id, OLD.guardian_id);
    RETURN NULL;
END $$""",
    """CREATE TRIGGER elder_guardian_scope_epoch AFTER INSERT OR UPDATE OR DELETE ON elder_guardian
    FOR EACH ROW EXECUTE FUNCTION elder_guardian_scope_epoch()""",
)

DOWNGRADE = (
    "DROP TRIGGER elder_guardian_scope_epoch ON elder_guardian",
    "DROP FUNCTION elder_guardian_scope_epoch()",
    "DROP TRIGGER user_district_scope_epoch ON user_district",
    "DROP FUNCTION user_district_scope_epoch()",
    "DROP TRIGGER app_user_scope_epoch ON app_user",
    "DROP FUNCTION app_user_scope_epoch()",
)


def upgrade() -> None:
    op.add_column(
        "app_user", sa.Column("scope_epoch", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
    )
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
    op.drop_column("app_user", "scope_epoch")

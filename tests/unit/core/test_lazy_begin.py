"""Which statements a lazily begun connection (``core.db.begin_lazily``) runs outside a transaction:
plain SELECTs only; anything that writes, locks, notifies or sets begins one first."""

from __future__ import annotations

import pytest

from core.db import runs_without_transaction

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT app_user.id, app_user.scope_epoch FROM app_user JOIN auth_session ON true",
        "  select 1",
        "SELECT elder.updated_at, elder.created_at FROM elder WHERE elder.id = $1::BIGINT",
        "SELECT json_agg(x) FROM (SELECT 'deleted' AS updatedness) AS x",
    ],
)
def test_plain_reads_run_without_a_transaction(statement: str) -> None:
    assert runs_without_transaction(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO audit_log (action) VALUES ($1::VARCHAR) RETURNING audit_log.id",
        "UPDATE service_order SET state=$1 WHERE service_order.id = $2",
        "DELETE FROM visit WHERE visit.id = $1",
        "WITH moved AS (UPDATE service_order SET state = 'x' RETURNING id) SELECT id FROM moved",
        "WITH ids AS (SELECT 1) SELECT * FROM ids",  # not a plain SELECT: begins, to be safe
        "SELECT service_order.id FROM service_order WHERE service_order.id = $1 FOR UPDATE",
        "SELECT id FROM service_order FOR NO KEY UPDATE SKIP LOCKED",
        "SELECT id FROM service_order FOR SHARE",
        "SELECT pg_advisory_xact_lock($1)",
        "SELECT pg_notify('policy_changed', $1)",
        "SELECT set_config('app.user', $1, true)",
        "SELECT nextval('audit_log_id_seq')",
        "SELECT * INTO copy_of FROM elder",
        "SAVEPOINT sa_savepoint_1",
        "SET LOCAL statement_timeout = 1000",
        "LOCK TABLE elder",
        "CREATE TEMP TABLE t (x int)",
    ],
)
def test_anything_else_begins_a_transaction_first(statement: str) -> None:
    assert not runs_without_transaction(statement)

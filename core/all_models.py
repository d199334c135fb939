"""Imports every module that declares tables, so Alembic and tests see one complete metadata.

The kernel may not import domains (import-linter), so domains' model modules are loaded by name.
"""

from __future__ import annotations

import importlib

# The kernel's own tables: audit_log; app_user, its sessions and sign-in attempts; policy_value.
import core.audit
import core.identity.models
import core.policy  # noqa: F401

DOMAIN_MODEL_MODULES: tuple[str, ...] = (
    "registry.models",
    "iot_ingest.models",
    "callcentre.models",
    "dispatch.models",
)

for _name in DOMAIN_MODEL_MODULES:
    importlib.import_module(_name)

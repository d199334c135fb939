"""Imports every module that declares tables, so Alembic and tests see one complete metadata.

The kernel may not import domains (import-linter), so domains' model modules are loaded by name.
"""

from __future__ import annotations

import importlib

import core.models  # noqa: F401

DOMAIN_MODEL_MODULES: tuple[str, ...] = ("iot_ingest.models", "callcentre.models", "dispatch.models")

for _name in DOMAIN_MODEL_MODULES:
    importlib.import_module(_name)

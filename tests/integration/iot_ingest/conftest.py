"""The ingest's integration tests: the device API over the real app (``client``, from
:mod:`tests.support.registry`), and the MQTT consumer against a real broker and PostgreSQL, with
private brokers and databases of their own where a test stops, kills or floods them
(:mod:`tests.support.ingest_faults`). Rows a test needs for itself come from the factories
(``make``, :mod:`tests.factories`).
"""

from __future__ import annotations

from tests.support import registry

client = registry.client

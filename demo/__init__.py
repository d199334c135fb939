"""The demo: the platform on one machine, with a deterministic data set to look at.

Finding (or starting) PostgreSQL and an MQTT broker (``postgres``, ``broker``, ``net``), supervising
the platform's processes (``supervisor``), and the demo data set (``seed``, ``builder``, ``data``). Used
by ``eldercare demo`` and ``eldercare seed --demo``; no domain and not the kernel imports it.

Discovery order, for both the database and the broker: the URL in the environment, then the usual
local port, then an embedded fallback whose state lives under the project's ``.eldercare/``.
"""

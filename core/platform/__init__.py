"""Running the platform on one machine: finding (or starting) PostgreSQL and an MQTT broker, and
supervising the platform's processes. Used by ``eldercare demo`` and by the CLI's service commands.

Discovery order, for both the database and the broker: the URL in the environment, then the usual
local port, then an embedded fallback whose state lives under the project's ``.eldercare/``.
"""

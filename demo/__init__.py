"""The demo: the platform on one machine. Finding (or starting) PostgreSQL and an MQTT broker, and
supervising the platform's processes; used by ``eldercare demo`` and by the CLI's service commands.
Not part of the kernel: production runs the same processes under systemd or containers.

Discovery order, for both the database and the broker: the URL in the environment, then the usual
local port, then an embedded fallback whose state lives under the project's ``.eldercare/``.
"""

"""The kernel's integration tests: sign-in, users, the scheduler and the migrations.

The API tests here use the real app over an in-process client that presents no IP address (the
per-address sign-in limit never applies; ``test_api_auth`` makes its own clients, with addresses and
a movable clock, to test that limit) and the factories of :mod:`tests.factories` for the accounts and
records they act on.
"""

from __future__ import annotations

from tests.support import registry

client = registry.client

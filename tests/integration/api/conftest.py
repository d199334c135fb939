"""Tests of the API as a whole: every route's role rule, bad input answered with problem details, the
schemathesis run over the OpenAPI document as each demo role, and the ``eldercare`` command line.

They act as the demo users (the fuzz run and the role matrix cover what each demo role may do) over
the real app in the test's transaction, from a client with no IP address (``client``).
"""

from __future__ import annotations

from tests.support import registry

client = registry.client

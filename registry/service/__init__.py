"""Registry use cases: the master data of places, elders, guardians, providers and caregivers.
Async service functions with keyword-only arguments; they flush, never commit.

Every function takes the acting :class:`~core.identity.authz.Principal` and applies the scoping rules
of :mod:`registry.scope` itself, so a caller cannot forget them.
"""

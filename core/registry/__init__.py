"""Registry use cases: the master data of places, elders, guardians, providers, caregivers, devices
and users. Async service functions with keyword-only arguments; they flush, never commit.

Every function takes the acting :class:`~core.authz.Principal` and applies the scoping rules of
:mod:`core.authz` (and :mod:`core.registry.scope`) itself, so a caller cannot forget them.
"""

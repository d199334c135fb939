"""Identity: who is signed in and what their role lets them do.

Users and their roles (``models.py``, ``users.py``, whose commands and wire types are in
``schemas.py``), passwords (``passwords.py``, ``credentials.py``), sessions and sign-in throttling
(``sessions.py``, ``login_rules.py``, ``signin.py``) and the route rules (``authz.py``). The kernel
part every domain relies on; it names no domain. What a role may *see* of a domain's records is that
domain's rule; the domain contributes it to the principal through a
:class:`~core.identity.sessions.ScopeLoader` that the composition root passes in.
"""

"""Controllers the API edge itself serves: user accounts (:mod:`core.identity`) and dated policy
(:mod:`core.policy_service`). Handlers parse, call one service, serialise."""

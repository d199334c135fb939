"""Controllers the API edge itself serves: user accounts (:mod:`core.identity`), and the devices.
Handlers parse, call one service, serialise."""

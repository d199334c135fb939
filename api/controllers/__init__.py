"""Registry controllers (one module per area). Handlers parse, call one service, serialise."""

"""Wire types of the registry API: ``XCreate`` / ``XUpdate`` (every field optional, unset = keep) /
``XRead``. Length and range limits live here, so over-long or out-of-range input is a 422 before
any service code runs; domain rules (ID check digit, phone format, references) are checked by the
services with their own stable codes."""

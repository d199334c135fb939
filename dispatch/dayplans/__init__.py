"""Day plans (see :mod:`dispatch.dayplans.plan`)."""

"""An elder's monitoring settings: the daytime window and inactivity allowance, the night window for
doors, the safe zone and vital-sign overrides; what applies when the elder has none of their own (the
dated living-alone default); and the HTTP resource that reads and changes them.

``rules`` is the pure core (the ingest's hot path and the inactivity job use it), ``service`` the use
cases, ``schemas`` and ``routes`` the HTTP edge."""

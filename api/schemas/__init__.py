"""Wire types the API edge itself serves: the user accounts of :mod:`core.identity`, and the devices."""

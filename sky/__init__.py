"""The sky as PyROS sees it from its site, without Django (layer 1, beside ``devices``).

- :mod:`sky.astro`: astropy configured for an observatory with no internet (one place);
- :mod:`sky.observability`: night bounds and observability of many targets at once (vectorised);
- :mod:`sky.sun`: the one Sun altitude computation and cache (majordome phases, alert visibility,
  the dashboard's night, the demo site).
"""

"""Fixed-window counters in the shared cache, for limits that are not the API's (password-reset
e-mails per address, registrations per client address)."""

from __future__ import annotations

import time

from django.core.cache import cache


def client_address(request) -> str:
    # Behind a proxy REMOTE_ADDR is the proxy: deployments set the real one (deploy/ uses X-Forwarded-For
    # only through the proxy's own configuration); a spoofable header is not trusted here.
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def limit_reached(*, scope: str, key: str, limit: int, period_s: int = 3600) -> bool:
    """Count one more event of ``scope``/``key`` in the current window; True when it is over ``limit``."""
    window = int(time.time() // period_s)
    cache_key = f"pyros-limit:{scope}:{window}:{key}"
    if cache.add(cache_key, 1, timeout=period_s + 60):
        count = 1
    else:
        try:
            count = cache.incr(cache_key)
        except ValueError:  # expired between add and incr
            cache.set(cache_key, 1, timeout=period_s + 60)
            count = 1
    return count > limit

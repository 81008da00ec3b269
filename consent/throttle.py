"""A per-user limit on how often the setting can be changed, counted in Django's cache."""

import time

from django.conf import settings
from django.core.cache import cache

from accounts.models import User


def toggle_throttled(user: User) -> bool:
    """Count one attempt to change the setting; tell whether it goes over the user's limit."""
    limit, period = settings.CONSENT_TOGGLE_RATE
    window = int(time.time() // period)
    key = f"consent:toggle:{user.subject_id}:{window}"
    try:  # one round trip but for the first attempt in a window
        count = cache.incr(key)
    except ValueError:
        count = 1 if cache.add(key, 1, timeout=period) else _incr_or_start(key, period)
    return count > limit


def _incr_or_start(key: str, period: int) -> int:
    """Count on a key another request has just added, or start again if it has just expired."""
    try:
        return cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=period)
        return 1


def toggle_retry_after() -> int:
    """Return the seconds until the current window ends."""
    period = settings.CONSENT_TOGGLE_RATE[1]
    return period - int(time.time()) % period or period

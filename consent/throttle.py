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
    if cache.add(key, 1, timeout=period):
        return limit < 1
    try:
        count = cache.incr(key)
    except ValueError:  # the window's key expired between add() and incr()
        cache.set(key, 1, timeout=period)
        count = 1
    return count > limit


def toggle_retry_after() -> int:
    """Return the seconds until the current window ends."""
    period = settings.CONSENT_TOGGLE_RATE[1]
    return period - int(time.time()) % period or period

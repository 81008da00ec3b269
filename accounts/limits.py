import hashlib
import logging

from django.core.cache import cache

logger = logging.getLogger(__name__)


def counted_over(what: str, rate: tuple[int, int]) -> bool:
    """Count one more of `what` (an address, say); return whether rate's limit is passed."""
    limit, seconds = rate
    key = "counted:" + hashlib.sha256(what.encode()).hexdigest()
    # The window of seconds runs from the first. A cache that is away counts nothing: it never
    # refuses.
    try:
        cache.add(key, 0, timeout=seconds)
        return cache.incr(key) > limit
    except Exception:  # Redis away, or the file cache's directory: the limit waits for it
        logger.warning("Counted by no limit: the cache is not answering", exc_info=True)
        return False

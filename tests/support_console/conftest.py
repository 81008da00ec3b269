from datetime import timedelta

from django.utils import timezone

from accounts.models import User
from consent import services
from consent.services import Channel


def flip(user: User, times: int, *, start=None, channel: str = Channel.SETTINGS) -> None:
    """Record `times` alternating decisions, a minute apart, the first one allowing."""
    start = start or timezone.now() - timedelta(days=1)
    for n in range(times):
        services.consent_change(
            user=user, allowed=n % 2 == 0, channel=channel, now=start + timedelta(minutes=n)
        )

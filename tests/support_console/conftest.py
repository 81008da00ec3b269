from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from consent import services
from consent.services import Channel


@pytest.fixture
def agent_client(client, support_agent):
    client.force_login(support_agent)
    return client


def flip(user: User, times: int, *, start=None, channel: str = Channel.SETTINGS) -> None:
    """Record `times` alternating decisions, a minute apart, the first one allowing."""
    start = start or timezone.now() - timedelta(days=1)
    for n in range(times):
        services.consent_change(
            user=user, allowed=n % 2 == 0, channel=channel, now=start + timedelta(minutes=n)
        )

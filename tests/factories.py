from datetime import datetime, timedelta
from typing import Any

import factory
from django.utils import timezone

from accounts.models import User
from consent import policies, services
from consent.models import ConsentPolicy

PASSWORD = "a-long-password-123"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    plan = User.Plan.FREE

    @classmethod
    def _create(cls, model_class: type[User], *args: object, **kwargs: object) -> User:
        kwargs.setdefault("password", PASSWORD)
        return model_class.objects.create_user(*args, **kwargs)  # type: ignore[arg-type]


def terms_published(
    title: str,
    *,
    effective_in: timedelta = timedelta(0),
    requires_new_choice: bool = True,
    decision_deadline_in: timedelta = timedelta(days=30),
    now: datetime | None = None,
    **fields: Any,
) -> ConsentPolicy:
    """Publish the next terms, in force from now (or later), with a deadline a month after."""
    now = now or timezone.now()
    return policies.policy_publish(
        title=title,
        text=f"{title}: the text users read.",
        effective_at=now + effective_in,
        decision_deadline=now + effective_in + decision_deadline_in,
        defer_for=timedelta(days=1),
        requires_new_choice=requires_new_choice,
        now=now,
        **fields,
    )


def choice_then_terms_asking_again(user: User) -> ConsentPolicy:
    """Record the user's choice, then terms that ask again, in force for two hours since."""
    services.consent_change(
        user=user,
        allowed=True,
        channel=services.Channel.SETTINGS,
        now=timezone.now() - timedelta(hours=3),
    )
    return terms_published("Choose again", now=timezone.now() - timedelta(hours=2))

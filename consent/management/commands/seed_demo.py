from datetime import datetime, timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from consent import policies, services
from consent.models import ConsentPolicy
from consent.selectors import consent_for
from support.services import support_group_ensure

PASSWORD = "demo-password-123"  # noqa: S105 - documented demo credential
POLICY_TITLE = "Updates to our Consumer Terms and Privacy Policy"
POLICY_TEXT = """\
We are giving you the choice to allow your chats and coding sessions to be used to improve our
models. If you allow it, new and resumed chats and coding sessions may be used for model training,
and that data is kept for up to 5 years after you last use it. If you do not, they are not used
for training, and we keep them for 30 days after you delete them. You can change your choice at
any time in your privacy settings; a change applies from then on and does not change models
already trained.
Users of our commercial plans (Team, Enterprise, Education, Government, API) are not affected."""
Plan = User.Plan
Channel = services.Channel


class Command(BaseCommand):
    help = "Load the reference policy and the demo users (idempotent)."

    @transaction.atomic
    def handle(self, *args: object, **options: object) -> None:
        now = timezone.now()
        # The demo's past is backdated only into an empty database. Later, a demo user deleted
        # meanwhile comes back with its history dated now: an event dated before others a
        # checkpoint has signed, or before the terms it names were published, would be false.
        backdate = not ConsentPolicy.objects.exists()
        if backdate:
            policies.policy_publish(
                title=POLICY_TITLE,
                text=POLICY_TEXT,
                effective_at=now - timedelta(days=30),
                decision_deadline=now + timedelta(days=60),
                default_allowed=True,
                now=now - timedelta(days=30),
            )
        free = self._user("free@example.com", Plan.FREE)
        pro = self._user("pro@example.com", Plan.PRO)
        max_ = self._user("max@example.com", Plan.MAX)
        self._user("team@example.com", Plan.TEAM)
        self._user("enterprise@example.com", Plan.ENTERPRISE)
        support = self._user("support@example.com", Plan.TEAM, name="Sam Support")
        support.groups.add(support_group_ensure())
        self._user("admin@example.com", Plan.TEAM, name="Ada Admin", superuser=True)

        def ago(days: int, seconds: int = 0) -> datetime:
            return now - timedelta(days=days, seconds=seconds) if backdate else now

        if consent_for(pro).head_number == 0:
            services.notice_record_served(user=pro, now=ago(20))
            services.consent_change(
                user=pro,
                allowed=True,
                channel=Channel.POPUP,
                shown_default=True,
                now=ago(20, seconds=-40),
            )
        if consent_for(max_).head_number == 0:
            services.notice_record_served(user=max_, now=ago(25))
            services.consent_defer(user=max_, now=ago(25, seconds=-30))
            services.consent_change(
                user=max_,
                allowed=True,
                channel=Channel.POPUP,
                shown_default=True,
                now=ago(24, seconds=-20),
            )
            for days_ago, allowed in ((12, False), (7, True), (2, False)):
                services.consent_change(
                    user=max_, allowed=allowed, channel=Channel.SETTINGS, now=ago(days_ago)
                )
        self.stdout.write(self.style.SUCCESS(self._summary(free)))

    def _user(self, email: str, plan: str, *, name: str = "", superuser: bool = False) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            create = User.objects.create_superuser if superuser else User.objects.create_user
            user = create(email, PASSWORD, plan=plan, name=name)
        return user

    def _summary(self, free: User) -> str:
        return (
            f"Demo data ready: {User.objects.count()} users, "
            f"{ConsentPolicy.objects.count()} policy; sign in as {free.email} / {PASSWORD}."
        )

"""The auth backend's one-query permissions answer what Django's own ModelBackend answers."""

import pytest
from django.contrib.auth import backends
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.backends import ModelBackend
from accounts.models import User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def fresh(user: User) -> User:
    return User.objects.get(pk=user.pk)  # no permission cache carried over


@pytest.fixture
def users(support_agent, admin_user):
    direct = UserFactory()
    direct.user_permissions.add(Permission.objects.get(codename="view_user"))
    both = UserFactory()
    both.user_permissions.add(Permission.objects.get(codename="view_group"))
    both.groups.add(support_agent.groups.get(), Group.objects.create(name="Empty"))
    inactive = UserFactory(is_active=False)
    inactive.user_permissions.add(Permission.objects.get(codename="view_user"))
    return [UserFactory(), direct, both, support_agent, admin_user, inactive]


def test_it_answers_as_djangos_own_backend(users):
    for user in users:
        expected = backends.ModelBackend().get_all_permissions(fresh(user))
        assert ModelBackend().get_all_permissions(fresh(user)) == expected, user.email
    assert ModelBackend().get_all_permissions(fresh(users[2])) == {
        "auth.view_group",
        "consent.view_consent_history",
    }


def test_it_reads_them_in_one_query_and_once_per_request(support_agent):
    user = fresh(support_agent)
    with CaptureQueriesContext(connection) as queries:
        assert user.has_perm("consent.view_consent_history")
        assert not user.has_perm("auth.view_user")

    assert len(queries) == 1

"""Migrations that change data: run on the real database, from the state before them."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE_UNIQUE_NAMES = [("consent", "0014_delivery_request_id")]
UNIQUE_NAMES = [("consent", "0015_training_run_name_unique")]


@pytest.mark.django_db(transaction=True)
def test_runs_registered_twice_under_a_name_keep_their_place_under_names_made_unique():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_UNIQUE_NAMES)
    TrainingRun = executor.loader.project_state(BEFORE_UNIQUE_NAMES).apps.get_model(
        "consent", "TrainingRun"
    )
    now = timezone.now()
    for minutes, name in enumerate(["model", "model", "other", "model", "x" * 200, "x" * 200]):
        TrainingRun.objects.create(
            name=name, as_of=now, snapshot={}, created_at=now + timezone.timedelta(minutes=minutes)
        )

    executor.loader.build_graph()
    try:
        executor.migrate(UNIQUE_NAMES)
        names = list(TrainingRun.objects.order_by("created_at").values_list("name", flat=True))
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())  # as the other tests need it

    assert names == ["model", "model (2)", "other", "model (3)", "x" * 200, "x" * 196 + " (2)"]


@pytest.mark.django_db(transaction=True)
def test_accounts_switched_off_before_sign_ups_were_marked_are_not_taken_for_sign_ups():
    before, after = [("accounts", "0004_email_in_any_case")], [("accounts", "0005_signup_pending")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    User, Group = apps.get_model("accounts", "User"), apps.get_model("auth", "Group")
    now = timezone.now()
    for email, fields in [
        ("pending@example.com", {}),
        ("staff@example.com", {"is_staff": True}),
        ("signed-in@example.com", {"last_login": now}),
        ("agent@example.com", {}),
        ("active@example.com", {"is_active": True}),
    ]:
        User.objects.create(email=email, is_active=fields.pop("is_active", False), **fields)
    User.objects.get(email="agent@example.com").groups.add(Group.objects.create(name="Agents"))

    executor.loader.build_graph()
    try:
        executor.migrate(after)
        User = executor.loader.project_state(after).apps.get_model("accounts", "User")
        pending = list(User.objects.filter(signup_pending=True).values_list("email", flat=True))
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert pending == ["pending@example.com"]

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

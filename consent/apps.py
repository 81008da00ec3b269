from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _sqlite_triggers(*, using: str, **kwargs: object) -> None:
    from consent.triggers import sqlite_triggers_install

    sqlite_triggers_install(connections[using])


class ConsentConfig(AppConfig):
    name = "consent"

    def ready(self) -> None:
        from consent import checks  # noqa: F401 - registers the checks

        post_migrate.connect(_sqlite_triggers, dispatch_uid="consent.sqlite_triggers")

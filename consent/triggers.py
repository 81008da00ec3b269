"""SQLite's refusals of UPDATE and DELETE on the audit tables, as pgtrigger's on PostgreSQL."""

from django.apps import apps
from django.db.backends.base.base import BaseDatabaseWrapper

APPEND_ONLY = [
    ("consent", "ConsentEvent"),
    ("consent", "PolicyEvent"),
    ("consent", "AuditCheckpoint"),
    ("consent", "AuditNode"),
    ("consent", "AuditVerification"),
    ("consent", "AuditRestore"),
    ("support", "AccessRecord"),
]


def _refuse(name: str, table: str, operation: str, when: str, why: str) -> str:
    return (
        f'CREATE TRIGGER IF NOT EXISTS "{name}" BEFORE {operation} ON "{table}" '
        f"{when} BEGIN SELECT RAISE(ABORT, '{why}'); END"
    )


def sqlite_triggers() -> list[str]:
    """Return the statements that make the refusals."""
    statements = []
    for app_label, model_name in APPEND_ONLY:
        table = apps.get_model(app_label, model_name)._meta.db_table
        for operation in ("UPDATE", "DELETE"):
            name = f"{table}_append_only_{operation.lower()}"
            statements.append(_refuse(name, table, operation, "", f"{table} is append-only"))
    policy = apps.get_model("consent", "ConsentPolicy")
    from consent.models import FIXED_ON_PUBLISH

    columns = [
        field.column for field in policy._meta.concrete_fields if field.name in FIXED_ON_PUBLISH
    ]
    changed = " OR ".join(f'OLD."{column}" IS NOT NEW."{column}"' for column in columns)
    table = policy._meta.db_table
    statements.append(
        _refuse(
            f"{table}_published_terms_fixed",
            table,
            "UPDATE",
            f'WHEN OLD."published_at" IS NOT NULL AND ({changed} '
            f'OR NEW."decision_deadline" < OLD."decision_deadline")',
            "a published policy is fixed; its deadline only moves later",
        )
    )
    statements.append(
        _refuse(
            f"{table}_published_policy_kept",
            table,
            "DELETE",
            'WHEN OLD."published_at" IS NOT NULL',
            "a published policy is kept",
        )
    )
    return statements


def sqlite_triggers_install(connection: BaseDatabaseWrapper) -> None:
    """Make the refusals on a SQLite database that has the tables; elsewhere, do nothing."""
    # SQLite drops a table's triggers when a migration rebuilds the table: after every migrate
    # they are made again, if missing.
    if connection.vendor != "sqlite":
        return
    tables = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        for statement in sqlite_triggers():
            table = statement.split(" ON ", 1)[1].split('"')[1]
            if table in tables:
                cursor.execute(statement)

"""The reads and writes on the toggle's path, as plain SQL built once from the models.

Django's ORM compiles every query anew, about 0.8 ms of CPU a statement on the benchmark machine,
more than the statement costs PostgreSQL. The one writer makes four statements per change of the
setting (the lock, read with the current policy; the event; its outbox rows; the new state), so
it makes them here instead. Column lists and value conversions come from the models' fields: the
SQL follows the models and runs on PostgreSQL and on the SQLite try-out alike.
"""

from collections.abc import Callable, Sequence
from functools import cache

from django.db import connection
from django.db.models import Field, Model
from django.db.models.expressions import Col

from consent.models import ConsentPolicy, TrainingConsent


def _fields(model: type[Model], names: Sequence[str] = ()) -> list[Field]:
    """Return the model's columns but its primary key (or only the named ones), in order."""
    fields = [field for field in model._meta.concrete_fields if field is not model._meta.pk]
    return [field for field in fields if field.name in names] if names else fields


def _columns(fields: Sequence[Field], table: str = "") -> str:
    prefix = f"{table}." if table else ""
    return ", ".join(f'{prefix}"{field.column}"' for field in fields)


def _row_fields(model: type[Model]) -> list[Field]:
    return [model._meta.pk, *_fields(model)]


@cache
def _reader(model: type[Model], vendor: str) -> tuple[list[str], list[tuple[Col, list[Callable]]]]:
    """Return the row's attribute names, and each column with the ORM's conversions of it."""
    columns = [field.get_col(model._meta.db_table) for field in _row_fields(model)]
    conversions = [
        (column, connection.ops.get_db_converters(column) + column.get_db_converters(connection))
        for column in columns
    ]
    return [field.attname for field in _row_fields(model)], conversions


def _from_row[M: Model](model: type[M], values: Sequence[object]) -> M:
    names, conversions = _reader(model, connection.vendor)
    converted = []
    for value, (column, converters) in zip(values, conversions, strict=True):
        for convert in converters:
            value = convert(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, names, converted)


POLICY_NEWEST = (
    f"SELECT {_columns(_row_fields(ConsentPolicy))} FROM {ConsentPolicy._meta.db_table} "  # noqa: S608
    "WHERE published_at IS NOT NULL ORDER BY version DESC LIMIT 1"
)
CONSENT_LOCK = (
    f"SELECT {_columns(_row_fields(TrainingConsent), 'c')}, "  # noqa: S608
    f"{_columns(_row_fields(ConsentPolicy), 'p')} "
    f"FROM {TrainingConsent._meta.db_table} c LEFT JOIN ({POLICY_NEWEST}) p ON TRUE "
    "WHERE c.user_id = %s"
)


@cache
def _insert_sql(model: type[Model], rows: int) -> str:
    fields = _fields(model)
    row = f"({', '.join(['%s'] * len(fields))})"
    return (
        f"INSERT INTO {model._meta.db_table} ({_columns(fields)}) "  # noqa: S608
        f"VALUES {', '.join([row] * rows)} RETURNING {_columns([model._meta.pk])}"
    )


@cache
def _update_sql(model: type[Model], names: tuple[str, ...]) -> str:
    assignments = ", ".join(f'"{field.column}" = %s' for field in _fields(model, names))
    return f'UPDATE {model._meta.db_table} SET {assignments} WHERE "{model._meta.pk.column}" = %s'  # noqa: S608


def rows_insert(objects: Sequence[Model]) -> None:
    """Insert new rows of one model in one statement and give each its primary key."""
    if not objects:
        return
    model, fields = type(objects[0]), _fields(type(objects[0]))
    params = [
        field.get_db_prep_save(field.pre_save(obj, add=True), connection)
        for obj in objects
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(model, len(objects)), params)
        keys = cursor.fetchall()
    for obj, (key,) in zip(objects, keys, strict=True):
        obj.pk = key
        obj._state.adding, obj._state.db = False, connection.alias


def row_update(obj: Model, names: tuple[str, ...]) -> None:
    """Write the named fields of a saved row (and any auto_now field among them)."""
    model = type(obj)
    fields = _fields(model, names)
    params = [field.get_db_prep_save(field.pre_save(obj, False), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(model, names), [*params, obj.pk])


def policy_newest_published() -> ConsentPolicy | None:
    with connection.cursor() as cursor:
        cursor.execute(POLICY_NEWEST)
        row = cursor.fetchone()
    return None if row is None else _from_row(ConsentPolicy, row)


def consent_lock(user_id: int) -> tuple[TrainingConsent, ConsentPolicy | None] | None:
    """Return the user's consent row, locked until the transaction ends, and the current policy."""
    lock = " FOR UPDATE OF c" if connection.features.has_select_for_update_of else ""
    with connection.cursor() as cursor:
        cursor.execute(CONSENT_LOCK + lock, [user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(_row_fields(TrainingConsent))
    policy = None if row[split] is None else _from_row(ConsentPolicy, row[split:])
    return _from_row(TrainingConsent, row[:split]), policy

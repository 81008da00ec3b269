"""The reads and writes on the hot paths, as plain SQL built from the models.

Django's ORM compiles every query anew, about 0.8 ms of CPU a statement on the benchmark machine,
more than the statement costs PostgreSQL. A change of the setting is two statements (the read of
the consent with its policies, or the lock; then the event, its outbox rows and the new state in
one), and every history page reads a page of events and their deliveries, so they are made here.
Column lists and value conversions come from the models' fields: the SQL follows the models and
runs on PostgreSQL and on the SQLite try-out alike.
"""

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import CharField, Field, Model, TextField
from django.db.models.expressions import Col

from consent.models import ConsentEvent, ConsentPolicy, Delivery, TrainingConsent


def _db() -> BaseDatabaseWrapper:
    """Return the default database's connection itself: each attribute read through the
    `connection` proxy costs a context-local lookup, dozens of them per statement."""
    return connections[DEFAULT_DB_ALIAS]


def _cursor(db: BaseDatabaseWrapper, *, numbered: bool = False) -> CursorWrapper:
    """Return a cursor that, on PostgreSQL, binds parameters on the server: psycopg then prepares
    each statement once it has run a few times on the connection (OPTIONS prepare_threshold).

    A numbered cursor takes PostgreSQL's own placeholders ($1, $2...) and passes the statement on
    as it is; with %s, psycopg parses anew on every run a statement of more than 50 parameters or
    4096 bytes.
    """
    if db.vendor != "postgresql":
        return db.cursor()
    import psycopg

    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    cursor: Any = (psycopg.RawCursor if numbered else psycopg.Cursor)(db.connection)
    return db.make_debug_cursor(cursor) if db.queries_logged else db.make_cursor(cursor)


def _fields(model: type[Model], names: Sequence[str] = ()) -> list[Field]:
    """Return the model's columns but its primary key (or only the named ones), in order."""
    fields = [field for field in model._meta.concrete_fields if field is not model._meta.pk]
    return [field for field in fields if field.name in names] if names else fields


def _columns(fields: Sequence[Field], table: str = "") -> str:
    prefix = f"{table}." if table else ""
    return ", ".join(f'{prefix}"{field.column}"' for field in fields)


def _field(model: type[Model], name: str) -> Field:
    field = model._meta.get_field(name)
    assert isinstance(field, Field), name
    return field


def _row_fields(model: type[Model]) -> list[Field]:
    return [model._meta.pk, *_fields(model)]


@cache
def _reader(
    model: type[Model], vendor: str, names: tuple[str, ...] = ()
) -> tuple[list[str], list[tuple[Col, list[Callable]]]]:
    """Return a row's attribute names (all fields, or those named) and each column's converters."""
    fields = [_field(model, name) for name in names] if names else _row_fields(model)
    columns = [field.get_col(model._meta.db_table) for field in fields]
    conversions = [
        (column, connection.ops.get_db_converters(column) + column.get_db_converters(connection))
        for column in columns
    ]
    return [field.attname for field in fields], conversions


def _converted(
    db: BaseDatabaseWrapper,
    model: type[Model],
    values: Sequence[object],
    names: tuple[str, ...] = (),
) -> list:
    converted = []
    for value, (column, converters) in zip(
        values, _reader(model, db.vendor, names)[1], strict=True
    ):
        for convert in converters:
            value = convert(value, column, db)
        converted.append(value)
    return converted


def _from_row[M: Model](db: BaseDatabaseWrapper, model: type[M], values: Sequence[object]) -> M:
    names = _reader(model, db.vendor)[0]
    return model.from_db(db.alias, names, _converted(db, model, values))


NEWEST_PUBLISHED = (
    f"FROM {ConsentPolicy._meta.db_table} "
    "WHERE published_at IS NOT NULL ORDER BY version DESC LIMIT 1"
)
POLICY_NEWEST = f"SELECT {_columns(_row_fields(ConsentPolicy))} {NEWEST_PUBLISHED}"
POLICY_NEWEST_ID = f"SELECT {_columns([ConsentPolicy._meta.pk])} {NEWEST_PUBLISHED}"
CONSENT_LOCK = (
    f"SELECT {_columns(_row_fields(TrainingConsent), 'c')}, "
    f"{_columns(_row_fields(ConsentPolicy), 'p')} "
    f"FROM {TrainingConsent._meta.db_table} c LEFT JOIN ({POLICY_NEWEST}) p ON TRUE "
    "WHERE c.user_id = %s"
)

CONSENT_READ_FROM = (
    f"FROM (SELECT 1) one "
    f"LEFT JOIN {TrainingConsent._meta.db_table} c ON c.user_id = %s "
    f"LEFT JOIN {ConsentPolicy._meta.db_table} cp ON cp.id = c.policy_id "
    f"LEFT JOIN ({POLICY_NEWEST}) p ON TRUE"
)
CONSENT_READ = (
    f"SELECT {_columns(_row_fields(TrainingConsent), 'c')}, "
    f"{_columns(_row_fields(ConsentPolicy), 'cp')}, {_columns(_row_fields(ConsentPolicy), 'p')} "
    f"{CONSENT_READ_FROM}"
)
# The time of the n-th latest decision a subject made themselves (n counted from 0), read backwards
# along the own_decisions index. Kind and role are written out, not parameters, so that a
# prepared plan can use that partial index.
DECISION_NTH_LATEST = (
    f"SELECT created_at FROM {ConsentEvent._meta.db_table} "
    f"WHERE subject_id = %s AND kind = '{ConsentEvent.Kind.DECISION.value}' "
    f"AND actor_role = '{ConsentEvent.Role.USER.value}' "
    "ORDER BY number DESC LIMIT 1 OFFSET %s"
)
CONSENT_READ_WITH_DECISION = (
    f"SELECT {_columns(_row_fields(TrainingConsent), 'c')}, "
    f"{_columns(_row_fields(ConsentPolicy), 'cp')}, {_columns(_row_fields(ConsentPolicy), 'p')}, "
    f"({DECISION_NTH_LATEST}) {CONSENT_READ_FROM}"
)


@cache
def _insert_sql(model: type[Model], rows: int) -> str:
    fields = _fields(model)
    row = f"({', '.join(['%s'] * len(fields))})"
    return (
        f"INSERT INTO {model._meta.db_table} ({_columns(fields)}) "
        f"VALUES {', '.join([row] * rows)} RETURNING {_columns([model._meta.pk])}"
    )


@cache
def _update_sql(model: type[Model], names: tuple[str, ...]) -> str:
    assignments = ", ".join(f'"{field.column}" = %s' for field in _fields(model, names))
    return f'UPDATE {model._meta.db_table} SET {assignments} WHERE "{model._meta.pk.column}" = %s'


def _insert_params(db: BaseDatabaseWrapper, objects: Sequence[Model], fields: list[Field]) -> list:
    return [
        field.get_db_prep_save(field.pre_save(obj, add=True), db)
        for obj in objects
        for field in fields
    ]


def _assignment_params(db: BaseDatabaseWrapper, obj: Model, names: tuple[str, ...]) -> list:
    return [
        field.get_db_prep_save(field.pre_save(obj, False), db)
        for field in _fields(type(obj), names)
    ]


def _update_params(db: BaseDatabaseWrapper, obj: Model, names: tuple[str, ...]) -> list:
    return [*_assignment_params(db, obj, names), obj.pk]


def _saved(db: BaseDatabaseWrapper, objects: Sequence[Model], keys: Sequence[object]) -> None:
    for obj, key in zip(objects, keys, strict=True):
        obj.pk = key
        obj._state.adding, obj._state.db = False, db.alias


def rows_insert(objects: Sequence[Model]) -> None:
    """Insert new rows of one model in one statement and give each its primary key."""
    if not objects:
        return
    db, model = _db(), type(objects[0])
    with _cursor(db) as cursor:
        cursor.execute(
            _insert_sql(model, len(objects)), _insert_params(db, objects, _fields(model))
        )
        _saved(db, objects, [key for (key,) in cursor.fetchall()])


def row_update(obj: Model, names: tuple[str, ...]) -> None:
    """Write the named fields of a saved row (and any auto_now field among them)."""
    db = _db()
    with _cursor(db) as cursor:
        cursor.execute(_update_sql(type(obj), names), _update_params(db, obj, names))


def _cast_type(db: BaseDatabaseWrapper, field: Field) -> str:
    # Text for a text column of any length: a cast to varchar(n) would cut a longer value short
    # without an error, where the column itself refuses it.
    if isinstance(field, CharField | TextField):
        return "text"
    cast = field.cast_db_type(db)
    if cast is None:
        raise ValueError(f"No database type for {field}")
    return cast


@cache
def _change_sql(deliveries: int, names: tuple[str, ...], claimed: bool, rated: bool) -> str:
    """Return one PostgreSQL statement that updates the user's consent row's named fields only if
    its version is still the one read (and, if claimed or rated, what change_save says of those
    holds), and only then inserts the event and its deliveries; it returns the event's
    key and then the deliveries', or no row at all. Its placeholders are numbered ($1, $2...)."""
    db = _db()
    key, delivery_key = _columns([ConsentEvent._meta.pk]), _columns([Delivery._meta.pk])
    user, version, state, head_hash = (
        _columns([_field(TrainingConsent, name)])
        for name in ("user", "version", "state", "head_hash")
    )
    assignments = ", ".join(f'"{field.column}" = %s' for field in _fields(TrainingConsent, names))
    event_fields, delivery_fields = _fields(ConsentEvent), _fields(Delivery)
    guard = f"{user} = %s AND {version} = %s"
    if claimed:
        # The state as well as the head whose hash covers it: the event takes its "before" from
        # the claim, and a claim is held to everything the event takes from it.
        guard += f" AND {state} = %s AND {head_hash} = %s AND ({POLICY_NEWEST_ID}) = %s"
    if rated:
        guard += f" AND COALESCE(({DECISION_NTH_LATEST}), '-infinity') <= CAST(%s AS timestamptz)"

    def values(fields: list[Field], source: str) -> str:
        # Selected values take no type from the column they go to: each says its own.
        typed = (
            f"{source}.{key}" if field.name == "event" else f"CAST(%s AS {_cast_type(db, field)})"
            for field in fields
        )
        return f"SELECT {', '.join(typed)} FROM {source}"

    parts = [
        f"consent AS (UPDATE {TrainingConsent._meta.db_table} SET {assignments} "
        f"WHERE {guard} RETURNING {user})",
        f"event AS (INSERT INTO {ConsentEvent._meta.db_table} ({_columns(event_fields)}) "
        f"{values(event_fields, 'consent')} RETURNING {key})",
    ]
    returned = f"SELECT {key} FROM event"
    if deliveries:
        rows = " UNION ALL ".join([values(delivery_fields, "event")] * deliveries)
        parts.append(
            f"deliveries AS (INSERT INTO {Delivery._meta.db_table} ({_columns(delivery_fields)}) "
            f"{rows} RETURNING {delivery_key})"
        )
        returned += f" UNION ALL SELECT {delivery_key} FROM deliveries"
    return _numbered(f"WITH {', '.join(parts)} {returned}")


def _numbered(sql: str) -> str:
    """Return the statement with its %s placeholders numbered as PostgreSQL's: $1, $2..."""
    pieces = sql.split("%s")
    return "".join(f"{piece}${n}" for n, piece in enumerate(pieces[:-1], 1)) + pieces[-1]


def guarded_writes() -> bool:
    """Tell whether change_save can be used without the consent row's lock: on PostgreSQL."""
    return _db().vendor == "postgresql"


def change_save(
    event: ConsentEvent,
    deliveries: Sequence[Delivery],
    consent: TrainingConsent,
    names: tuple[str, ...],
    *,
    read_version: int,
    claimed: bool = False,
    nth_decision_by: tuple[int, datetime] | None = None,
) -> bool:
    """Insert a change's event and outbox deliveries and write the consent row's named fields,
    if the row is still at the version it was read at; tell whether the change was written.

    A change made without reading the row (claimed) is written only if, besides, the row's state
    and head are the ones the event follows and the event's policy is the newest published one.
    With nth_decision_by, (n, t), it is written only if the subject's n-th latest decision of
    their own (n counted from 0) is from t or before.

    On PostgreSQL one statement does it all, and needs no lock. Elsewhere three do, and the
    caller must hold the row's lock (and cannot ask for the other conditions).
    """
    db = _db()
    if db.vendor != "postgresql":
        if claimed or nth_decision_by is not None:
            raise ValueError("These conditions are checked only on PostgreSQL.")
        rows_insert([event])
        for delivery in deliveries:
            delivery.event = event
        rows_insert(deliveries)
        row_update(consent, names)
        return True
    delivery_fields = [field for field in _fields(Delivery) if field.name != "event"]
    guard: list[Any] = [consent.user_id, read_version]
    if claimed:
        guard += [event.before, event.prev_hash, event.policy_id]
    if nth_decision_by is not None:
        nth_latest, by = nth_decision_by
        guard += [_prep(db, ConsentEvent, "subject_id", event.subject_id), nth_latest]
        guard.append(_prep(db, ConsentEvent, "created_at", by))
    params = [
        *_assignment_params(db, consent, names),
        *guard,
        *_insert_params(db, [event], _fields(ConsentEvent)),
        *_insert_params(db, deliveries, delivery_fields),
    ]
    with _cursor(db, numbered=True) as cursor:
        sql = _change_sql(len(deliveries), names, claimed, nth_decision_by is not None)
        cursor.execute(sql, params)
        keys = [key for (key,) in cursor.fetchall()]
    if not keys:
        return False
    _saved(db, [event], keys[:1])
    for delivery in deliveries:
        delivery.event = event
    _saved(db, deliveries, keys[1:])
    return True


def policy_newest_published() -> ConsentPolicy | None:
    db = _db()
    with _cursor(db) as cursor:
        cursor.execute(POLICY_NEWEST)
        row = cursor.fetchone()
    return None if row is None else _from_row(db, ConsentPolicy, row)


def consent_lock(user_id: int) -> tuple[TrainingConsent, ConsentPolicy | None] | None:
    """Return the user's consent row, locked until the transaction ends, and the current policy."""
    db = _db()
    lock = " FOR UPDATE OF c" if db.features.has_select_for_update_of else ""
    with _cursor(db) as cursor:
        cursor.execute(CONSENT_LOCK + lock, [user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(_row_fields(TrainingConsent))
    policy = None if row[split] is None else _from_row(db, ConsentPolicy, row[split:])
    return _from_row(db, TrainingConsent, row[:split]), policy


def consent_read(
    user_id: int,
) -> tuple[TrainingConsent | None, ConsentPolicy | None, ConsentPolicy | None]:
    """Return the user's consent row, the policy it was decided under, and the current policy."""
    db = _db()
    with _cursor(db) as cursor:
        cursor.execute(CONSENT_READ, [user_id])
        row = cursor.fetchone()
    return _consent_and_policies(db, row)


def consent_read_with_decision(
    user_id: int, subject_id: UUID, nth_latest: int
) -> tuple[TrainingConsent | None, ConsentPolicy | None, ConsentPolicy | None, datetime | None]:
    """Return what consent_read does and the time of the n-th latest decision (0 the latest)."""
    db = _db()
    params: list[Any] = [_prep(db, ConsentEvent, "subject_id", subject_id), nth_latest]
    with _cursor(db) as cursor:
        cursor.execute(CONSENT_READ_WITH_DECISION, [*params, user_id])
        row = cursor.fetchone()
    decided_at = _converted(db, ConsentEvent, row[-1:], ("created_at",))[0]
    return *_consent_and_policies(db, row[:-1]), decided_at


def decision_nth_latest(subject_id: UUID, nth_latest: int) -> datetime | None:
    """Return the time of the subject's n-th latest decision (0 the latest), if there is one."""
    db = _db()
    params: list[Any] = [_prep(db, ConsentEvent, "subject_id", subject_id), nth_latest]
    with _cursor(db) as cursor:
        cursor.execute(DECISION_NTH_LATEST, params)
        row = cursor.fetchone()
    return None if row is None else _converted(db, ConsentEvent, row, ("created_at",))[0]


def _consent_and_policies(
    db: BaseDatabaseWrapper, row: Sequence[object]
) -> tuple[TrainingConsent | None, ConsentPolicy | None, ConsentPolicy | None]:
    consent_end = len(_row_fields(TrainingConsent))
    policy_end = consent_end + len(_row_fields(ConsentPolicy))
    consent, decided_under, current = (
        row[:consent_end],
        row[consent_end:policy_end],
        row[policy_end:],
    )
    policy = None if current[0] is None else _from_row(db, ConsentPolicy, current)
    if decided_under[0] is None:
        earlier = None
    elif decided_under[0] == current[0]:  # most often: one object for both
        earlier = policy
    else:
        earlier = _from_row(db, ConsentPolicy, decided_under)
    consent_row = None if consent[0] is None else _from_row(db, TrainingConsent, consent)
    return consent_row, earlier, policy


EVENTS = (
    f"SELECT {_columns(_row_fields(ConsentEvent), 'e')}, "
    f"{_columns(_row_fields(ConsentPolicy), 'p')} "
    f"FROM {ConsentEvent._meta.db_table} e "
    f"LEFT JOIN {ConsentPolicy._meta.db_table} p ON p.id = e.policy_id"
)
COMPARISONS = frozenset({"=", "<", ">="})


def events_newest_first(
    subject_id: UUID, *, where: Sequence[tuple[str, str, object]] = (), limit: int
) -> list[ConsentEvent]:
    """Return the subject's newest events matching every (field, comparison, value), policies set.

    The field names come from the code, never from a request: only their values are parameters.
    """
    db, number = _db(), _field(ConsentEvent, "number")
    conditions = ["e.subject_id = %s"]
    params: list[object] = [_prep(db, ConsentEvent, "subject_id", subject_id)]
    for name, comparison, value in where:
        if comparison not in COMPARISONS:
            raise ValueError(f"Unknown comparison {comparison!r}")
        conditions.append(f'e."{_field(ConsentEvent, name).column}" {comparison} %s')
        params.append(_prep(db, ConsentEvent, name, value))
    sql = f'{EVENTS} WHERE {" AND ".join(conditions)} ORDER BY e."{number.column}" DESC LIMIT %s'
    with _cursor(db) as cursor:
        cursor.execute(sql, [*params, limit])  # type: ignore[list-item]
        rows = cursor.fetchall()
    split = len(_row_fields(ConsentEvent))
    policies: dict[object, ConsentPolicy] = {}
    events = []
    for row in rows:
        event = _from_row(db, ConsentEvent, row[:split])
        if event.policy_id is not None:
            if event.policy_id not in policies:
                policies[event.policy_id] = _from_row(db, ConsentPolicy, row[split:])
            event.policy = policies[event.policy_id]
        events.append(event)
    return events


def _prep(db: BaseDatabaseWrapper, model: type[Model], name: str, value: object) -> object:
    return _field(model, name).get_db_prep_value(value, db)


# One index probe per sink, along delivery_sink_subject (a loose index scan): SELECT DISTINCT
# reads every delivery, and PostgreSQL before 18 cannot skip through an index by itself.
DELIVERY_SINKS = (
    f"WITH RECURSIVE sinks (sink) AS (SELECT MIN(sink) FROM {Delivery._meta.db_table} "
    f"UNION ALL SELECT (SELECT MIN(sink) FROM {Delivery._meta.db_table} WHERE sink > sinks.sink) "
    "FROM sinks WHERE sinks.sink IS NOT NULL) SELECT sink FROM sinks WHERE sink IS NOT NULL"
)


def delivery_sinks() -> list[str]:
    """Return the names of the sinks that have deliveries, in order."""
    with _cursor(_db()) as cursor:
        cursor.execute(DELIVERY_SINKS)
        return [sink for (sink,) in cursor.fetchall()]


DELIVERY_STATUS = ("event_id", "sink", "state", "applied_at", "attempts", "last_error")


def deliveries_of(event_ids: Iterable[int]) -> list[tuple]:
    """Return the DELIVERY_STATUS values of every delivery of these events, by event and sink."""
    event_ids = list(event_ids)
    if not event_ids:
        return []
    fields = [_field(Delivery, name) for name in DELIVERY_STATUS]
    sql = (
        f"SELECT {_columns(fields)} FROM {Delivery._meta.db_table} "
        f"WHERE event_id IN ({', '.join(['%s'] * len(event_ids))}) ORDER BY event_id, sink"
    )
    db = _db()
    with _cursor(db) as cursor:
        cursor.execute(sql, event_ids)
        rows = cursor.fetchall()
    return [tuple(_converted(db, Delivery, row, DELIVERY_STATUS)) for row in rows]

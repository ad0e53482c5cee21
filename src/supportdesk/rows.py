"""Hand-written SELECTs for the few statements every API write runs, as model instances.

Django compiles a QuerySet anew on every call. On the machine in bench/README.md that costs
0.4 to 0.8 ms a query, ten times what SQLite takes to answer it, and a ticket create ran
thirteen of them. The statements here are written once, with their column lists taken from
the models' metadata (a migration that adds a field changes the SQL with it), and their
values go through the same converters the ORM applies, so the instances are the ORM's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX
from django.db.models import Field, Model

Converter = Callable[[Any, Any, Any], Any]


@lru_cache(maxsize=256)
def _layout(
    model: type[Model], connection: Any
) -> tuple[list[str], list[tuple[int, list[Converter], Any]]]:
    """The model's attribute names in column order, and the converters of each column on
    this connection (one per thread, and the converters read its settings)."""
    fields = list(model._meta.concrete_fields)
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if found:
            converters.append((index, found, column))
    return [f.attname for f in fields], converters


def columns(model: type[Model], alias: str) -> str:
    """`alias.col, ...` for every concrete field, in the order `build` reads them."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return ", ".join(f"{alias}.{quote(str(f.column))}" for f in model._meta.concrete_fields)


def table(model: type[Model]) -> str:
    return connections[DEFAULT_DB_ALIAS].ops.quote_name(model._meta.db_table)


def build[M: Model](model: type[M], row: Sequence[Any], start: int = 0) -> M:
    """The instance held in row[start:start + number of fields], as the ORM would load it."""
    connection = connections[DEFAULT_DB_ALIAS]
    names, converters = _layout(model, connection)
    values = list(row[start : start + len(names)])
    for index, functions, column in converters:
        for convert in functions:
            values[index] = convert(values[index], column, connection)
    return model.from_db(DEFAULT_DB_ALIAS, names, values)


def width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


def build_joined(row: Sequence[Any], *models: type[Model]) -> list[Model | None]:
    """The instances of one joined row, read in the order of `models` (each `columns(...)` in
    the same order); None for a model whose LEFT JOIN found nothing (its primary key NULL)."""
    built: list[Model | None] = []
    start = 0
    for model in models:
        pk_index = start + model._meta.concrete_fields.index(model._meta.pk)
        built.append(None if row[pk_index] is None else build(model, row, start))
        start += width(model)
    return built


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """The first row of one statement (`%s` placeholders, as Django writes them).

    On SQLite the statement goes straight to the driver: Django's cursor wrapper cost about
    40 us a statement here, a seventh of a ticket create (bench/README.md, "API"), and most
    of these statements run while the one write lock is held. The wrapper's duties that
    matter are kept: the connection is opened if need be, a broken transaction and sharing a
    connection across threads are refused, and driver errors become Django's. While queries
    are being logged (DEBUG, the tests' query counters) or an execute wrapper is installed,
    the statement goes through Django's cursor, so that it is seen.
    """
    found = _run(sql, params, lambda cursor: cursor.fetchall()[:1])
    return tuple(found[0]) if found else None


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Every row of one statement, as fetch_one sends it."""
    return [tuple(row) for row in _run(sql, params, lambda cursor: cursor.fetchall())]


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run one statement that returns no rows, as fetch_one sends it; the rows it changed."""
    return int(_run(sql, params, lambda cursor: cursor.rowcount))


def _run[R](sql: str, params: Sequence[Any], read: Callable[[Any], R]) -> R:
    """Every row is read before the statement is let go: an UPDATE ... RETURNING in
    autocommit ends its transaction only once SQLite has stepped it to the end."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "sqlite" or connection.queries_logged or connection.execute_wrappers:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return read(cursor)
    connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    queued = getattr(connection, "queued_write", None)  # supportdesk's SQLite backend
    with connection.wrap_database_errors, queued(sql) if queued else contextlib.nullcontext():
        return read(connection.connection.execute(_qmark_style(sql), params))


def update(
    instance: Model, fields: Sequence[str], *, where: Mapping[str, Any] | None = None
) -> int:
    """UPDATE the named fields of a saved instance from its attributes, as
    `save(update_fields=...)` would (auto_now fields it names are set now), in one statement
    written once per shape. `where` gives fields that must still hold these values, a
    condition that fences a concurrent writer; returns the rows changed (0 or 1)."""
    connection = connections[DEFAULT_DB_ALIAS]
    model = type(instance)
    where = where or {}
    sql, set_fields, where_fields = _update_statement(
        model, tuple(fields), tuple(where), connection
    )
    values = [f.get_db_prep_save(f.pre_save(instance, False), connection) for f in set_fields]
    values += [f.get_db_prep_value(where[f.name], connection) for f in where_fields]
    return execute(sql, [*values, instance.pk])


@lru_cache(maxsize=256)
def _update_statement(
    model: type[Model], fields: tuple[str, ...], where: tuple[str, ...], connection: Any
) -> tuple[str, list[Field[Any, Any]], list[Field[Any, Any]]]:
    quote = connection.ops.quote_name
    set_fields = [_concrete(model, name) for name in fields]
    where_fields = [_concrete(model, name) for name in where]
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in set_fields)
    pk = quote(model._meta.pk.column)
    conditions = [*(f"{quote(f.column)} = %s" for f in where_fields), f"{pk} = %s"]
    sql = (
        f"UPDATE {quote(model._meta.db_table)} SET {assignments}"  # noqa: S608
        f" WHERE {' AND '.join(conditions)}"
    )
    return sql, set_fields, where_fields


def _concrete(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or not field.concrete:
        raise ValueError(f"{model.__name__}.{name} is not a column.")
    return field


@lru_cache(maxsize=256)
def _qmark_style(sql: str) -> str:
    """The statement with SQLite's `?` placeholders, converted as Django's SQLite cursor does."""
    return FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")


def insert(instance: Model) -> None:
    """INSERT a new instance as `save()` would (defaults, auto_now, its id set), in one
    statement written once per model, without the ORM's compilation on every call.
    No pre_save/post_save signal is sent: nothing in supportdesk listens to them."""
    connection = connections[DEFAULT_DB_ALIAS]
    model = type(instance)
    sql, fields = _insert_statement(model, connection)
    values = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    row = fetch_one(sql, values)
    if row is None:  # pragma: no cover  (an INSERT ... RETURNING always returns its row)
        raise RuntimeError(f"INSERT into {model._meta.db_table} returned nothing")
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS


def insert_many(instances: Sequence[Model]) -> None:
    """insert() for several new instances of one model, in one statement per INSERT_ROWS_MAX:
    a batch of stored mails writes its rows at the cost of one.

    The ids are taken in ascending order: both databases number the rows of one INSERT in
    the order of its VALUES (SQLite's next rowid, PostgreSQL's sequence, row by row), while
    neither promises to return them in that order."""
    if not instances:
        return
    connection = connections[DEFAULT_DB_ALIAS]
    model = type(instances[0])
    if any(type(instance) is not model for instance in instances):
        raise TypeError("insert_many() takes instances of one model.")
    for start in range(0, len(instances), INSERT_ROWS_MAX):
        chunk = instances[start : start + INSERT_ROWS_MAX]
        sql, fields = _insert_statement(model, connection, len(chunk))
        values = [
            f.get_db_prep_save(f.pre_save(instance, True), connection)
            for instance in chunk
            for f in fields
        ]
        ids = sorted(pk for (pk,) in fetch_all(sql, values))
        if len(ids) != len(chunk):  # pragma: no cover  (RETURNING returns every row)
            raise RuntimeError(f"INSERT into {model._meta.db_table} returned {len(ids)} rows")
        for instance, pk in zip(chunk, ids, strict=True):
            instance.pk = pk
            instance._state.adding = False
            instance._state.db = DEFAULT_DB_ALIAS


# Rows in one INSERT at most: SQLite allows 32,766 parameters a statement, PostgreSQL 65,535.
INSERT_ROWS_MAX = 100


@lru_cache(maxsize=256)
def _insert_statement(model: type[Model], connection: Any, count: int = 1) -> tuple[str, list[Any]]:
    quote = connection.ops.quote_name
    pk = model._meta.pk
    fields = [f for f in model._meta.local_concrete_fields if f is not pk]
    names = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join([f"({', '.join(['%s'] * len(fields))})"] * count)
    table = quote(model._meta.db_table)
    sql = f"INSERT INTO {table} ({names}) VALUES {marks} RETURNING {quote(pk.column)}"  # noqa: S608
    return sql, fields

"""Hand-written SELECTs for the few statements every API write runs, as model instances.

Django compiles a QuerySet anew on every call. On the machine in bench/README.md that costs
0.4 to 0.8 ms a query, ten times what SQLite takes to answer it, and a ticket create ran
thirteen of them. The statements here are written once, with their column lists taken from
the models' metadata (a migration that adds a field changes the SQL with it), and their
values go through the same converters the ORM applies, so the instances are the ORM's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX
from django.db.models import Model

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
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "sqlite" or connection.queries_logged or connection.execute_wrappers:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return None if row is None else tuple(row)
    connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        row = connection.connection.execute(_qmark_style(sql), params).fetchone()
    return None if row is None else tuple(row)


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


@lru_cache(maxsize=256)
def _insert_statement(model: type[Model], connection: Any) -> tuple[str, list[Any]]:
    quote = connection.ops.quote_name
    pk = model._meta.pk
    fields = [f for f in model._meta.local_concrete_fields if f is not pk]
    names = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    table = quote(model._meta.db_table)
    sql = f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING {quote(pk.column)}"  # noqa: S608
    return sql, fields

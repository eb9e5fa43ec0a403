"""Many rows in one statement each way, without a model instance per row.

``bulk_create``/``bulk_update`` spend most of their time building instances and compiling
one placeholder per value; writers of thousands of rows at a time (a monitoring round, a
zone import) use these instead. Each value is still prepared for its column as the backend
wants it (JSON and dates through the backend's own adapters, anything else through the
field's ``get_db_prep_save``), and table and column names come from the model, quoted by the
backend; values always go as parameters.

PostgreSQL: Django's cursors bind parameters on the client (each statement's text is
built in Python, ~130 µs of CPU per row here), so these use a psycopg cursor with
server-side binding on the same connection and transaction: COPY for plain inserts,
pipelined executemany for updates and for inserts that return their ids. SQLite runs
in-process; executemany is its fastest path (measured: multi-row VALUES is slower).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models import Field, Model

CHUNK = 5000  # rows per statement


def insert_rows(
    model: type[Model], fields: Sequence[str], rows: Sequence[Sequence], *, returning: bool = False
) -> list[int]:
    """INSERT ``rows`` (values in the order of ``fields``; a foreign key takes its id).
    With ``returning``, the new primary keys in the rows' order."""
    connection = _connection()
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    table, names = _names(connection, model, columns)
    marks = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
    pk = connection.ops.quote_name(meta.pk.column)
    ids: list[int] = []
    with _cursor(connection) as cursor:
        for batch in _batches(connection, columns, rows):
            if connection.vendor == "postgresql" and not returning:
                with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
            elif connection.vendor == "postgresql":
                cursor.executemany(f"{sql} RETURNING {pk}", batch, returning=True)
                while True:
                    ids.append(cursor.fetchone()[0])
                    if not cursor.nextset():
                        break
            elif returning:
                # RETURNING (SQLite 3.35+) needs one statement: multi-row VALUES, in
                # statements of about a thousand parameters.
                per = max(1, 1000 // len(columns))
                one = "(" + marks + ")"
                for start in range(0, len(batch), per):
                    part = batch[start : start + per]
                    values = ", ".join([one] * len(part))
                    cursor.execute(
                        f"INSERT INTO {table} ({names}) VALUES {values} RETURNING {pk}",  # noqa: S608
                        [v for row in part for v in row],
                    )
                    ids.extend(r[0] for r in cursor.fetchall())
            else:
                cursor.executemany(sql, batch)
    return ids


def update_rows(
    model: type[Model], key: str, fields: Sequence[str], rows: Sequence[Sequence]
) -> None:
    """UPDATE one row per item of ``rows``: values in the order of ``fields``, then the
    value of ``key`` that finds the row (a unique column; each key at most once)."""
    connection = _connection()
    meta = model._meta
    key_field = meta.get_field(key)
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    table, where = quote(meta.db_table), quote(key_field.column)
    if connection.vendor == "postgresql":
        # One statement per batch: the rows go as one array per column, unnested into a
        # table joined on the key (an UPDATE per row, even pipelined, cost ~150 µs each);
        # binary, since the text form of an array escapes every quote of its JSON.
        everything = [*columns, key_field]
        arrays = ", ".join(f"%b::{f.db_type(connection)}[]" for f in everything)
        names = ", ".join(f"c{i}" for i in range(len(everything)))
        sets = ", ".join(f"{quote(f.column)} = v.c{i}" for i, f in enumerate(columns))
        sql = (
            f"UPDATE {table} SET {sets} FROM unnest({arrays}) AS v({names}) "  # noqa: S608
            f"WHERE {table}.{where} = v.c{len(columns)}"
        )
        with _cursor(connection) as cursor:
            for batch in _batches(connection, everything, rows):
                cursor.execute(sql, [list(column) for column in zip(*batch, strict=True)])
        return
    sets = ", ".join(f"{quote(f.column)} = %s" for f in columns)
    sql = f"UPDATE {table} SET {sets} WHERE {where} = %s"  # noqa: S608
    with _cursor(connection) as cursor:
        for batch in _batches(connection, [*columns, key_field], rows):
            cursor.executemany(sql, batch)


def dumps(value) -> str:
    """JSON text of ``value``: orjson (a tenth of ``json.dumps``'s time, which was most of
    a monitoring round), ``json.dumps`` for what orjson refuses (keys that are not strings,
    integers past 64 bits). Both write the same values; orjson leaves out the spaces."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _connection():
    # The default connection itself: every attribute read through ``django.db.connection``
    # goes through a context-local lookup, which per value was a third of a round.
    return connections[DEFAULT_DB_ALIAS]


def _cursor(connection):
    if connection.vendor == "postgresql":
        import psycopg

        connection.ensure_connection()
        return psycopg.Cursor(connection.connection)  # server-side binding
    return connection.cursor()


def _names(connection, model: type[Model], columns: list[Field]) -> tuple[str, str]:
    quote = connection.ops.quote_name
    return quote(model._meta.db_table), ", ".join(quote(f.column) for f in columns)


def _batches(connection, columns: list[Field], rows: Sequence[Sequence]):
    """Rows with each value prepared for its column, CHUNK rows at a time."""
    prepare = [_preparer(connection, f) for f in columns]
    for start in range(0, len(rows), CHUNK):
        yield [
            [p(v) for p, v in zip(prepare, row, strict=True)] for row in rows[start : start + CHUNK]
        ]


# Fields whose database value is the Python value itself when that is already an int or a
# str (exact types: a subclass such as an encrypted text field prepares its values).
_PLAIN = (
    models.AutoField,
    models.BigAutoField,
    models.IntegerField,
    models.BigIntegerField,
    models.PositiveIntegerField,
    models.PositiveBigIntegerField,
    models.PositiveSmallIntegerField,
    models.SmallIntegerField,
    models.CharField,
    models.TextField,
)


def _preparer(connection, field: Field):
    """What ``field.get_db_prep_save`` does for plain values, minus its per-call checks
    (expressions, lookups, settings reads), which cost more than the work for JSON, dates,
    numbers and text; None stays None."""
    ops = connection.ops
    if isinstance(field, models.JSONField):
        encoder = field.encoder
        if encoder is None:
            # The JSON text: PostgreSQL takes it for jsonb as it is (COPY, parameters of
            # unknown type, text arrays cast to jsonb[]), SQLite stores it.
            return lambda value: None if value is None else dumps(value)

        def json_value(value):
            return None if value is None else ops.adapt_json_value(value, encoder)

        return json_value
    if isinstance(field, models.DateTimeField):
        if connection.vendor == "sqlite" and settings.USE_TZ:
            zone = connection.timezone

            def sqlite_time(value):  # as the SQLite backend's adapter: naive in its zone
                if value is None or value.utcoffset() is None:
                    return ops.adapt_datetimefield_value(value)
                return str(value.astimezone(zone).replace(tzinfo=None))

            return sqlite_time
        return ops.adapt_datetimefield_value
    target = field.target_field if field.is_relation else field
    if type(target) in _PLAIN:
        prepare = field.get_db_prep_save

        def plain(value):
            if value is None or type(value) is int or type(value) is str:
                return value
            return prepare(value, connection)

        return plain
    return lambda value: field.get_db_prep_save(value, connection)

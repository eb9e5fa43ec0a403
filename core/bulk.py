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

from collections.abc import Sequence

from django.db import connection, models
from django.db.models import Field, Model

CHUNK = 5000  # rows per statement


def insert_rows(
    model: type[Model], fields: Sequence[str], rows: Sequence[Sequence], *, returning: bool = False
) -> list[int]:
    """INSERT ``rows`` (values in the order of ``fields``; a foreign key takes its id).
    With ``returning``, the new primary keys in the rows' order."""
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    table, names = _names(model, columns)
    marks = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
    pk = connection.ops.quote_name(meta.pk.column)
    ids: list[int] = []
    with _cursor() as cursor:
        for batch in _batches(columns, rows):
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
    value of ``key`` that finds the row (a unique column)."""
    meta = model._meta
    key_field = meta.get_field(key)
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    sets = ", ".join(f"{quote(f.column)} = %s" for f in columns)
    where = quote(key_field.column)
    sql = f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {where} = %s"  # noqa: S608
    with _cursor() as cursor:
        for batch in _batches([*columns, key_field], rows):
            cursor.executemany(sql, batch)


def _cursor():
    if connection.vendor == "postgresql":
        import psycopg

        connection.ensure_connection()
        return psycopg.Cursor(connection.connection)  # server-side binding
    return connection.cursor()


def _names(model: type[Model], columns: list[Field]) -> tuple[str, str]:
    quote = connection.ops.quote_name
    return quote(model._meta.db_table), ", ".join(quote(f.column) for f in columns)


def _batches(columns: list[Field], rows: Sequence[Sequence]):
    """Rows with each value prepared for its column, CHUNK rows at a time."""
    prepare = [_preparer(f) for f in columns]
    for start in range(0, len(rows), CHUNK):
        yield [
            [p(v) for p, v in zip(prepare, row, strict=True)] for row in rows[start : start + CHUNK]
        ]


def _preparer(field: Field):
    """What ``field.get_db_prep_save`` does for plain values, minus its per-call checks
    (expressions, lookups, settings reads), which cost more than the work for JSON and
    dates; None stays None."""
    ops = connection.ops
    if isinstance(field, models.JSONField):
        encoder = field.encoder

        def json_value(value):
            return None if value is None else ops.adapt_json_value(value, encoder)

        return json_value
    if isinstance(field, models.DateTimeField):
        return ops.adapt_datetimefield_value
    return lambda value: field.get_db_prep_save(value, connection)

"""A table spec: the columns of a list and the partial that renders one row.

``components/table.html`` draws the header from the columns and includes ``row_template``
once per object (the same partial serves live row refreshes), so every list in the portal
looks and behaves the same.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    label: str
    css: str = ""  # e.g. "hidden md:table-cell" for columns phones leave out


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    row_template: str
    row_name: str = "row"  # the name each object has inside the row partial
    empty_text: str = "Nothing here yet."
    empty_icon: str = "info"
    testid: str = ""
    # A live list (docs/live-events.md): the page's websocket, and the id of the rows'
    # container, where rows of new objects are inserted; the view adds LivePageMixin.
    live: str = ""
    rows_id: str = ""

"""Answers from one pinned version: :class:`Query` (the questions) and SQL safety (``sql``).

>>> from intake_bfa.query import Query
>>> Query().snapshot("2021-03-04")
"""

from intake_bfa.query.api import Query, fetch_arrow

__all__ = ["Query", "fetch_arrow"]

"""Integers and ids as clients send them (path segments, query strings, JSON): one parser, bounded to the
database's 64-bit integers, so a hostile value is refused the same way everywhere instead of overflowing
a query."""
from __future__ import annotations

import re

INT64_MAX = 2 ** 63 - 1
DECIMAL = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes "²" and "١"


def parse_int(value, lo: int = -INT64_MAX - 1, hi: int = INT64_MAX) -> int | None:
    """An int (not a bool) or decimal text within lo..hi, else None."""
    if isinstance(value, str):
        value = value.strip()
        value = int(value) if DECIMAL.fullmatch(value) else None
    elif not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if value is not None and lo <= value <= hi else None


def parse_id(value) -> int | None:
    """A row id: 1..2**63-1, as an int or decimal text; None for anything else."""
    return parse_int(value, 1, INT64_MAX)

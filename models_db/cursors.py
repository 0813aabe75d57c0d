"""Opaque paging cursors: one encoding (URL-safe base64 of JSON) and one decoder per shape, each checking
type and range, so a forged or stale cursor is a BadCursor ("invalid cursor", a 400) and never reaches SQL."""
from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import datetime

from models_db.ids import INT64_MAX, parse_id, parse_int

MAX_LENGTH = 1024


class BadCursor(ValueError):
    def __init__(self, message: str = "invalid cursor"):
        super().__init__(message)


def encode(data) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(cursor: str):
    if not isinstance(cursor, str) or len(cursor) > MAX_LENGTH:
        raise BadCursor()
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise BadCursor() from None


def encode_keyset(value, last_id: int) -> str:
    """The sort key and id of a page's last row."""
    return encode([{"t": value.isoformat()} if isinstance(value, datetime) else value, last_id])


def decode_keyset(cursor: str, dated: bool) -> tuple:
    """(sort value, last id); `dated`: the sort column holds dates, else numbers."""
    data = decode(cursor)
    if not isinstance(data, list) or len(data) != 2 or parse_id(data[1]) is None or isinstance(data[1], str):
        raise BadCursor()
    value = data[0]
    if value is None:
        return None, data[1]
    if dated:
        if not isinstance(value, dict) or not isinstance(value.get("t"), str):
            raise BadCursor()
        try:
            return datetime.fromisoformat(value["t"]), data[1]
        except ValueError:
            raise BadCursor() from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > INT64_MAX:
        raise BadCursor()
    return value, data[1]


def encode_offset(offset: int) -> str:
    return encode({"o": offset})


def decode_offset(cursor: str) -> int:
    data = decode(cursor)
    offset = parse_int(data.get("o"), 0) if isinstance(data, dict) and not isinstance(data.get("o"), str) else None
    if offset is None:
        raise BadCursor()
    return offset


def encode_mark(mark: str) -> str:
    """A search engine's own cursor (Solr's cursorMark)."""
    return encode({"m": mark})


def decode_mark(cursor: str) -> str:
    data = decode(cursor)
    if not isinstance(data, dict) or not isinstance(data.get("m"), str) or len(data["m"]) > 512:
        raise BadCursor()
    return data["m"]

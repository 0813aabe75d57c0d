"""Names people choose (usernames, model, version and file names): Unicode normal form, no bidirectional
controls (they make "cat\u202egnp.exe" read as "catexe.png"), and look-alikes found by their skeleton."""
from __future__ import annotations

import functools
import unicodedata

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def has_bidi_controls(text: str) -> bool:
    return any(ch in BIDI_CONTROLS for ch in text)


def refuse_bidi_controls(text: str, what: str) -> str:
    if has_bidi_controls(text):
        raise ValueError(f"{what} must not contain bidirectional control characters")
    return text


def strip_bidi_controls(text: str) -> str:
    return "".join(ch for ch in text if ch not in BIDI_CONTROLS)


def normal(text: str | None) -> str:
    """NFKC (fullwidth, ligatures and other compatibility forms become plain letters), no outer spaces."""
    return unicodedata.normalize("NFKC", text or "").strip()


# after confusables: digits and letters that are told apart only by the font ('0'/'o', '1'/'l'/'i', and
# 'I' once case is folded)
FOLDS = str.maketrans("01i", "oll")


def skeleton(name: str) -> str:
    """Names that look alike share a skeleton: case is folded, then every character becomes the lowest
    ASCII character it can be taken for (Cyrillic 'а' -> 'a', fullwidth 'ａ' -> 'a'), and FOLDS joins
    '0' with 'o' and '1', 'l', 'i' (so 'I'). Stored in users.username_skeleton: a change here needs a
    migration calling accounts.store_username_skeletons()."""
    return "".join(_prototype(ch).casefold() for ch in normal(name).casefold()).translate(FOLDS)


@functools.lru_cache(maxsize=8192)
def _prototype(ch: str) -> str:
    seen, todo = {ch}, [ch]
    while todo:
        for alike in _ascii_look_alikes(todo.pop()):
            if alike not in seen:
                seen.add(alike)
                todo.append(alike)
    plain = [c for c in seen if c.isascii()]
    return min(plain) if plain else ch


def _ascii_look_alikes(ch: str) -> set[str]:
    from confusable_homoglyphs import confusables
    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=[]) or []
    return {h["c"] for item in found for h in item["homoglyphs"] if len(h["c"]) == 1 and h["c"].isascii()}

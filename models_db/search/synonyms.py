"""Synonyms the operator can edit (`atelier search synonyms`): groups of words or phrases that mean
the same to a searcher; a query word matches any member of its group. Stored in the database (every
process sees an edit at its next query), shipped with the domain's common ones."""
from __future__ import annotations

import re

from peewee import fn

from models_db.db import db
from models_db.search import freshness
from models_db.search.tables import SearchSynonym

WORDS = re.compile(r"\w+", re.UNICODE)

DEFAULTS = [
    ["anime", "manga"],
    ["upscale", "upscaler", "upscaling", "enlarge", "superresolution", "esrgan"],
    ["photo", "photoreal", "photorealistic", "realistic", "photography"],
    ["nsfw", "explicit"],
    ["lora", "locon", "lycoris"],
    ["embedding", "textual inversion"],
    ["checkpoint", "ckpt"],
    ["cartoon", "toon"],
    ["comic", "comics"],
    ["sketch", "drawing", "lineart"],
    ["painting", "painted"],
    ["watercolor", "watercolour", "aquarelle"],
    ["color", "colour"],
    ["grey", "gray"],
    ["sci fi", "scifi", "science fiction"],
    ["car", "automobile", "vehicle"],
    ["pixel art", "pixelart", "8bit"],
    ["sea", "ocean", "marine", "underwater"],
    ["house", "home"],
    ["logo", "emblem"],
    ["mecha", "robot", "mech"],
    ["cat", "kitten", "feline"],
    ["dog", "puppy", "canine"],
]


def normalise(term: str) -> str:
    """A word or phrase as the index compares it: lower case words joined by one space."""
    return " ".join(w.lower() for w in WORDS.findall(term or ""))[:64]


def load() -> dict[str, tuple[str, ...]]:
    """{term: every term of its group, the term first}."""
    groups: dict[int, list[str]] = {}
    for term, group in SearchSynonym.select(SearchSynonym.term, SearchSynonym.group).order_by(
            SearchSynonym.group, SearchSynonym.term).tuples():
        groups.setdefault(group, []).append(term)
    out = {}
    for terms in groups.values():
        for term in terms:
            out[term] = (term, *(t for t in terms if t != term))
    return out


cache = freshness.FreshCache(load)


def alternatives(word: str) -> tuple[str, ...]:
    """The word and its synonyms (the word alone when it has none)."""
    return cache.get().get(word, (word,))


def groups() -> list[list[str]]:
    by_group: dict[int, list[str]] = {}
    for term, group in SearchSynonym.select(SearchSynonym.term, SearchSynonym.group).order_by(
            SearchSynonym.group, SearchSynonym.term).tuples():
        by_group.setdefault(group, []).append(term)
    return list(by_group.values())


def add(terms: list[str]) -> list[str]:
    """Makes these terms synonyms of one another (and of every term already grouped with any of them).
    Returns the whole group."""
    terms = list(dict.fromkeys(t for t in map(normalise, terms) if t))
    if len(terms) < 2:
        raise ValueError("a synonym group needs at least two different words")
    with db.atomic():
        existing = {g for (g,) in SearchSynonym.select(SearchSynonym.group).where(
            SearchSynonym.term.in_(terms)).tuples()}
        group = min(existing) if existing else (SearchSynonym.select(fn.MAX(SearchSynonym.group)).scalar() or 0) + 1
        if existing:
            SearchSynonym.update(group=group).where(SearchSynonym.group.in_(list(existing))).execute()
        SearchSynonym.insert_many([{"term": t, "group": group} for t in terms]).on_conflict_ignore().execute()
        members = [t for (t,) in SearchSynonym.select(SearchSynonym.term).where(SearchSynonym.group == group)
                   .order_by(SearchSynonym.term).tuples()]
    freshness.bump()
    return members


def remove(term: str) -> bool:
    """Takes a term out of its group (a group left with one term is dropped). False if it had none."""
    term = normalise(term)
    with db.atomic():
        row = SearchSynonym.get_or_none(SearchSynonym.term == term)
        if row is None:
            return False
        row.delete_instance()
        left = SearchSynonym.select().where(SearchSynonym.group == row.group)
        if left.count() < 2:
            SearchSynonym.delete().where(SearchSynonym.group == row.group).execute()
    freshness.bump()
    return True


def install_defaults() -> None:
    """The shipped groups, where their words are not grouped yet (a migration runs this once; the
    operator edits from there). Processes see them at the next index flush."""
    taken = {t for (t,) in SearchSynonym.select(SearchSynonym.term).tuples()}
    group = SearchSynonym.select(fn.MAX(SearchSynonym.group)).scalar() or 0
    for terms in DEFAULTS:
        terms = [t for t in map(normalise, terms) if t not in taken]
        if len(terms) >= 2:
            group += 1
            SearchSynonym.insert_many([{"term": t, "group": group} for t in terms]).execute()

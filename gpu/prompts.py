"""Prompt expansion: dynamic prompts, wildcards, A1111 prompts files and prompt search/replace.

Dynamic prompt syntax (a subset of sd-dynamic-prompts):
    {a|b|c}            one of the variants (variants nest: {a|{b|c}})
    {0.5::a|2::b}      weighted variants (weights only matter for random picks)
    {2$$a|b|c}         pick 2 distinct variants joined by ", "
    {1-3$$ and $$a|b}  pick 1 to 3, joined by " and " ({-2$$..} = 1..2, {2-$$..} = 2..all)
    __name__           a line of the wildcard list `name` (lines may hold this syntax too);
                       glob names (__colors/*__) pick from every matching list; {2$$__name__} picks 2 lines
    \\{ \\} \\|           literal braces and bar; `|` outside braces (A1111's [a|b]) is left alone
"""
from __future__ import annotations

import fnmatch
import itertools
import random
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

MAX_WILDCARD_DEPTH = 10
MAX_NESTING = 20  # {…{…}…} levels in one template or wildcard line
MAX_PROMPT_CHARS = 20_000  # characters of one expanded prompt (wildcards can multiply a template)
DEFAULT_SEPARATOR = ", "

_WILDCARD = re.compile(r"__([A-Za-z0-9_\-/.*]+?)__")
_PICK_HEADER = re.compile(r"^\s*(\d*)\s*(-?)\s*(\d*)\s*\$\$")
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)::")
_ESCAPED = re.compile(r"\\([{}|])")
_BRACE = re.compile(r"\\.|[{}]", re.DOTALL)  # an escaped character, or a brace


# ---- syntax tree -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Wildcard:
    name: str


@dataclass(frozen=True)
class _Variants:
    options: tuple  # tuple[tuple[node, ...], ...]
    weights: tuple[float, ...]
    low: int  # how many options to pick (inclusive range)
    high: int | None  # None = all options
    separator: str
    from_wildcard: str | None = None  # {N$$__name__}: options are that list's lines


def _scan(text: str, start: int, stops: str) -> int:
    """Index of the first top-level char of `stops` at or after start (len(text) if none)."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            i += 2
            continue
        if depth == 0 and ch in stops:
            return i
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
        i += 1
    return len(text)


def _check_nesting(text: str) -> None:
    """Before parsing (which recurses once per level): braces nest at most MAX_NESTING deep."""
    depth = 0
    for match in _BRACE.finditer(text):
        if match.group() == "{":
            depth += 1
            if depth > MAX_NESTING:
                raise ValueError(f"variants {{…}} nest deeper than {MAX_NESTING} levels")
        elif match.group() == "}":
            depth = max(depth - 1, 0)


def _split_options(body: str) -> list[str]:
    parts, start = [], 0
    while True:
        end = _scan(body, start, "|")
        parts.append(body[start:end])
        if end >= len(body):
            return parts
        start = end + 1


def _text_nodes(text: str) -> list:
    nodes, pos = [], 0
    for match in _WILDCARD.finditer(text):
        if match.start() > pos:
            nodes.append(_Text(_ESCAPED.sub(r"\1", text[pos:match.start()])))
        nodes.append(_Wildcard(match.group(1)))
        pos = match.end()
    if pos < len(text):
        nodes.append(_Text(_ESCAPED.sub(r"\1", text[pos:])))
    return nodes


def _parse_block(body: str) -> _Variants:
    low, high, separator = 1, 1, DEFAULT_SEPARATOR
    header = _PICK_HEADER.match(body)
    if header and (header.group(1) or header.group(2)):
        first, dash, last = header.groups()
        if dash:
            low = int(first) if first else 1
            high = int(last) if last else None
        else:
            low = high = int(first)
        body = body[header.end():]
        sep_end = body.find("$$")
        if sep_end >= 0 and _scan(body, 0, "{") >= sep_end:  # a custom separator before any nested block
            separator, body = body[:sep_end], body[sep_end + 2:]
        if high is not None and high < low:
            raise ValueError(f"bad pick range {first}-{last}: the upper bound is below the lower")
    options, weights = [], []
    for raw in _split_options(body):
        weight = _WEIGHT.match(raw)
        if weight:
            weights.append(float(weight.group(1)))
            raw = raw[weight.end():]
        else:
            weights.append(1.0)
        options.append(tuple(_parse(raw)))
    only = options[0] if len(options) == 1 else ()
    from_wildcard = only[0].name if len(only) == 1 and isinstance(only[0], _Wildcard) else None
    return _Variants(tuple(options), tuple(weights), low, high, separator, from_wildcard)


def _parse(text: str) -> list:
    nodes, pos = [], 0
    while pos < len(text):
        brace = _scan(text, pos, "{}")
        nodes.extend(_text_nodes(text[pos:brace]))
        if brace >= len(text):
            break
        if text[brace] == "}":
            raise ValueError(f"unmatched '}}' at position {brace} in {text!r} (write \\}} for a literal brace)")
        close = _scan(text, brace + 1, "}")
        if close >= len(text):
            raise ValueError(f"unclosed '{{' at position {brace} in {text!r} (write \\{{ for a literal brace)")
        nodes.append(_parse_block(text[brace + 1:close]))
        pos = close + 1
    return nodes


# ---- expansion ---------------------------------------------------------------------------------

class _Expander:
    def __init__(self, wildcards: dict[str, list[str]] | None):
        self.wildcards = wildcards or {}
        self._parsed: dict[str, tuple] = {}

    def parse(self, text: str) -> tuple:
        if text not in self._parsed:
            _check_nesting(text)
            self._parsed[text] = tuple(_parse(text))
        return self._parsed[text]

    def lines(self, name: str) -> list[str]:
        if any(ch in name for ch in "*?["):
            keys = sorted(k for k in self.wildcards if fnmatch.fnmatchcase(k, name))
            values = [line for key in keys for line in self.wildcards[key]]
        elif name in self.wildcards:
            values = list(self.wildcards[name])
        else:
            raise ValueError(f"unknown wildcard __{name}__ (known: {', '.join(sorted(self.wildcards)) or 'none'})")
        if not values:
            raise ValueError(f"wildcard __{name}__ has no entries")
        return values

    def _options(self, node: _Variants, depth: int) -> tuple[list[tuple], list[float], int]:
        """The node's options as node sequences, their weights, and the depth they expand at."""
        if node.from_wildcard is not None:
            self._check_depth(node.from_wildcard, depth)
            lines = self.lines(node.from_wildcard)
            return [self.parse(line) for line in lines], [1.0] * len(lines), depth + 1
        return list(node.options), list(node.weights), depth

    @staticmethod
    def _check_depth(name: str, depth: int) -> None:
        if depth >= MAX_WILDCARD_DEPTH:
            raise ValueError(f"wildcards nest deeper than {MAX_WILDCARD_DEPTH} levels at __{name}__ "
                             "(does a wildcard refer to itself?)")

    # random: one prompt per call
    def pick(self, nodes: tuple, rng: random.Random, depth: int = 0) -> str:
        out = []
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Wildcard):
                self._check_depth(node.name, depth)
                out.append(self.pick(self.parse(rng.choice(self.lines(node.name))), rng, depth + 1))
            else:
                options, weights, inner = self._options(node, depth)
                high = len(options) if node.high is None else min(node.high, len(options))
                count = rng.randint(min(node.low, high), high)
                chosen = _weighted_sample(list(range(len(options))), weights, count, rng)
                out.append(_joined(node.separator, [self.pick(options[i], rng, inner) for i in sorted(chosen)]))
        return _joined("", out)

    # combinatorial: every prompt, lazily
    def every(self, nodes: tuple, depth: int = 0) -> Iterator[str]:
        for parts in _product([lambda node=node: self._every_node(node, depth) for node in nodes]):
            yield _joined("", parts)

    def _every_node(self, node, depth: int) -> Iterator[str]:
        if isinstance(node, _Text):
            yield node.text
        elif isinstance(node, _Wildcard):
            self._check_depth(node.name, depth)
            for line in self.lines(node.name):
                yield from self.every(self.parse(line), depth + 1)
        else:
            options, _, inner = self._options(node, depth)
            high = len(options) if node.high is None else min(node.high, len(options))
            for count in range(min(node.low, high), high + 1):
                for combo in itertools.combinations(options, count):
                    for parts in _product([lambda seq=seq: self.every(seq, inner) for seq in combo]):
                        yield _joined(node.separator, parts)


def _product(makers: list) -> Iterator[list[str]]:
    """Every combination of the values of lazily made iterators (one maker per position; a position's
    iterator is made again for each prefix), like itertools.product without holding any of them, and
    without recursing once per position: a template may hold thousands of {…} blocks."""
    if not makers:
        yield []
        return
    iterators, values = [makers[0]()], []
    while iterators:
        try:
            value = next(iterators[-1])
        except StopIteration:
            iterators.pop()
            if values:
                values.pop()
            continue
        if len(iterators) == len(makers):
            yield [*values, value]
        else:
            values.append(value)
            iterators.append(makers[len(iterators)]())


def _joined(separator: str, parts: list[str]) -> str:
    """parts joined, unless the result would be longer than any prompt may be."""
    if sum(map(len, parts)) + len(separator) * max(len(parts) - 1, 0) > MAX_PROMPT_CHARS:
        raise ValueError(f"a prompt expands to more than {MAX_PROMPT_CHARS} characters")
    return separator.join(parts)


def _weighted_sample(items: list, weights: list[float], count: int, rng: random.Random) -> list:
    items, weights, chosen = list(items), list(weights), []
    for _ in range(count):
        if sum(weights) <= 0:
            index = rng.randrange(len(items))
        else:
            index = rng.choices(range(len(items)), weights=weights)[0]
        chosen.append(items.pop(index))
        weights.pop(index)
    return chosen


def iter_random(template: str, seed: int, wildcards: dict[str, list[str]] | None = None) -> Iterator[str]:
    """Random expansions of a template, without end; prompt i depends only on (template, seed, i)."""
    expander = _Expander(wildcards)
    nodes = expander.parse(template)
    return (expander.pick(nodes, random.Random(f"{seed}:{i}")) for i in itertools.count())


def iter_all(template: str, wildcards: dict[str, list[str]] | None = None) -> Iterator[str]:
    """Every combination of a template's variants and wildcard lines, in order, lazily."""
    expander = _Expander(wildcards)
    return expander.every(expander.parse(template))


def expand_random(template: str, count: int, seed: int, wildcards: dict[str, list[str]] | None = None) -> list[str]:
    """`count` random expansions of a template; prompt i depends only on (template, seed, i)."""
    if count < 0:
        raise ValueError("count must not be negative")
    return list(itertools.islice(iter_random(template, seed, wildcards), count))


def expand_all(template: str, wildcards: dict[str, list[str]] | None = None, limit: int = 1000) -> list[str]:
    """Every combination of a template's variants and wildcard lines, in order; ValueError past `limit`."""
    prompts = list(itertools.islice(iter_all(template, wildcards), limit + 1))
    if len(prompts) > limit:
        raise ValueError(f"the template expands to more than {limit} prompts; narrow it or use random expansion")
    return prompts


def parse_wildcard_file(text: str) -> list[str]:
    """Wildcard file lines: one entry per line, blank lines and `#` comment lines skipped."""
    entries = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            entries.append(entry)
    return entries


# ---- A1111 "prompts from file or textbox" -------------------------------------------------------

def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"expects true or false, got {value!r}")


# A1111 option -> (our field, converter); field None = accepted and ignored (A1111 UI/output options)
_PROMPT_FILE_OPTIONS = {
    "prompt": ("prompt", str),
    "negative_prompt": ("negative_prompt", str),
    "steps": ("steps", int),
    "cfg_scale": ("cfg_scale", float),
    "seed": ("seed", int),
    "sampler_name": ("sampler", str),
    "sampler": ("sampler", str),
    "width": ("width", int),
    "height": ("height", int),
    "denoising_strength": ("denoising_strength", float),
    "clip_skip": ("clip_skip", int),
    "batch_size": ("batch_size", int),
    "n_iter": ("n_iter", int),
    "sd_model": ("checkpoint", str),
    "styles": ("styles", lambda v: [s.strip() for s in v.split(",") if s.strip()]),
    "outpath_samples": (None, str), "outpath_grids": (None, str), "prompt_for_display": (None, str),
    "do_not_save_samples": (None, _flag), "do_not_save_grid": (None, _flag), "restore_faces": (None, _flag),
    "tiling": (None, _flag), "subseed": (None, int), "subseed_strength": (None, float),
    "seed_resize_from_h": (None, int), "seed_resize_from_w": (None, int),
}
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a value"}


def _parse_options_line(line: str) -> dict:
    args = shlex.split(line)
    result, pos = {}, 0
    while pos < len(args):
        arg = args[pos]
        if not arg.startswith("--"):
            raise ValueError(f"expected an option starting with '--', got {arg!r}")
        tag = arg[2:]
        if tag not in _PROMPT_FILE_OPTIONS:
            raise ValueError(f"unknown option {arg}")
        if pos + 1 >= len(args) or args[pos + 1].startswith("--"):
            raise ValueError(f"missing value for {arg}")
        field, convert = _PROMPT_FILE_OPTIONS[tag]
        pos += 1
        if tag in ("prompt", "negative_prompt"):  # A1111: unquoted words up to the next option belong to it
            words = []
            while pos < len(args) and not args[pos].startswith("--"):
                words.append(args[pos])
                pos += 1
            value = " ".join(words)
        else:
            raw = args[pos]
            pos += 1
            try:
                value = convert(raw)
            except ValueError as exc:
                detail = _TYPE_NAMES.get(convert)
                raise ValueError(f"{arg} expects {detail}, got {raw!r}" if detail else f"{arg} {exc}") from None
        if field is not None:
            result[field] = value
    if "prompt" not in result:
        result["prompt"] = ""
    return result


def parse_prompts_file(text: str) -> list[dict]:
    """A1111 prompts file: each non-blank line is a prompt, or `--prompt "..." --steps 20 ...` options;
    lines starting with '#' are comments.

    Returns one dict per prompt with our field names (prompt, negative_prompt, steps, cfg_scale, seed,
    sampler, width, height, ...). Raises ValueError naming the (1-based) line of a bad line.
    """
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):  # blank lines and comments
            continue
        if not stripped.startswith("--"):
            entries.append({"prompt": stripped})
            continue
        try:
            entries.append(_parse_options_line(stripped))
        except ValueError as exc:  # shlex raises ValueError too (e.g. "No closing quotation")
            raise ValueError(f"line {number}: {exc}") from None
    return entries


# ---- prompt search/replace (the XYZ "Prompt S/R" axis) -----------------------------------------

def prompt_sr(prompt: str, negative_prompt: str, search: str, replacement: str) -> tuple[str, str]:
    """Replace every occurrence of `search` in the prompt and the negative prompt (A1111 Prompt S/R)."""
    if not search:
        raise ValueError("prompt S/R needs a non-empty search term")
    if search not in prompt and search not in negative_prompt:
        raise ValueError(f"prompt S/R did not find {search!r} in the prompt or the negative prompt")
    return prompt.replace(search, replacement), negative_prompt.replace(search, replacement)


def search_replace(text: str, search: str, replacement: str) -> str:
    """Every `search` in text replaced (lenient: a prompt without the term is returned unchanged)."""
    return text.replace(search, replacement) if search else text


def prompt_sr_variants(prompt: str, negative_prompt: str, values: list[str]) -> list[tuple[str, str]]:
    """One (prompt, negative) per value: values[0] is the search term, each value replaces it."""
    if not values:
        raise ValueError("prompt S/R needs at least one value (the search term)")
    return [prompt_sr(prompt, negative_prompt, values[0], value) for value in values]

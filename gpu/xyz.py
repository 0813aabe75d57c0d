"""X/Y/Z plots (A1111 style): expand up to three axes of overrides into cells, then draw labelled grids.

Axis fields and the request keys they set:
    sampler, steps, cfg_scale, seed, denoising_strength, clip_skip -> the key of the same name
    checkpoint (alias model)  -> "model" (a model reference: catalog id, AIR or hash)
    prompt_sr                 -> "prompt_sr" = (search, replacement); the first value is the search term and
                                 every value replaces it; "prompt"/"negative_prompt" are rewritten when present
    lora_weight:<index|name>  -> "weight" of that entry of "resources" (or "loras"), matched by index, or by
                                 its "name"/"ref"
Number values may be A1111 range strings: "1-5", "1-10 (+2)" (step), "10-20 [3]" (count).
"""
from __future__ import annotations

import csv
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

from gpu.prompts import prompt_sr, search_replace

MAX_AXES = 3
MAX_CELLS = 1000
MISSING_TILE = (128, 128, 128)

# field -> (value type, inclusive bounds or None, label)
AXIS_FIELDS: dict[str, tuple[type, tuple | None, str]] = {
    "sampler": (str, None, "Sampler"),
    "steps": (int, (1, 150), "Steps"),
    "cfg_scale": (float, (0.0, 30.0), "CFG scale"),
    "seed": (int, (-1, 2**32 - 1), "Seed"),  # -1 = random, resolved later
    "denoising_strength": (float, (0.0, 1.0), "Denoising"),
    "clip_skip": (int, (1, 12), "Clip skip"),
    "checkpoint": (str, None, "Model"),
    "model": (str, None, "Model"),
    "prompt_sr": (str, None, "Prompt S/R"),
}
LORA_WEIGHT = "lora_weight"
LORA_WEIGHT_BOUNDS = (-5.0, 5.0)
LORA_LIST_KEYS = ("resources", "loras")
_REQUEST_KEY = {"checkpoint": "model"}

_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*(?:\d+(?:\.\d*)?|\.\d+)"
_INT_STEP = re.compile(rf"\s*({_INT})\s*-\s*({_INT})\s*(?:\(\s*([+-]\s*\d+)\s*\))?\s*")
_INT_COUNT = re.compile(rf"\s*({_INT})\s*-\s*({_INT})\s*\[\s*(\d+)\s*\]\s*")
_FLOAT_STEP = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})\s*(?:\(\s*([+-]\s*(?:\d+(?:\.\d*)?|\.\d+))\s*\))?\s*")
_FLOAT_COUNT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})\s*\[\s*(\d+)\s*\]\s*")


@dataclass
class Cell:
    x: int
    y: int
    z: int
    request: dict  # the base request with this cell's overrides applied
    overrides: dict = field(default_factory=dict)  # axis field -> value of this cell


# ---- values ------------------------------------------------------------------------------------

def _num(text: str) -> float:
    return float(text.replace(" ", ""))


def _check_count(text: str, count: int, limit: int) -> None:
    """Before a range is expanded: its size against what the axis may still take."""
    if count > limit:
        raise ValueError(f"the range {text.strip()!r} has {count} values; an axis takes at most {MAX_CELLS}")


def _inclusive_range(start: float, end: float, step: float | None, text: str, limit: int) -> list[float]:
    if step is None:
        step = 1.0 if end >= start else -1.0
    if step == 0 or (end - start) * step < 0:
        raise ValueError(f"range {start:g}-{end:g} with step {step:+g} is empty")
    count = math.floor((end - start) / step + 1e-9) + 1
    _check_count(text, count, limit)
    return [round(start + i * step, 10) for i in range(count)]


def _linspace(start: float, end: float, count: int, text: str, limit: int) -> list[float]:
    if count < 1:
        raise ValueError("a range count must be at least 1")
    _check_count(text, count, limit)
    if count == 1:
        return [start]
    return [round(start + (end - start) * i / (count - 1), 10) for i in range(count)]


def _expand_range(text: str, kind: type, limit: int) -> list | None:
    """A1111 range syntax -> values (at most `limit`), or None when `text` is not a range."""
    step_re, count_re = (_INT_STEP, _INT_COUNT) if kind is int else (_FLOAT_STEP, _FLOAT_COUNT)
    if match := count_re.fullmatch(text):
        values = _linspace(_num(match.group(1)), _num(match.group(2)), int(match.group(3)), text, limit)
    elif match := step_re.fullmatch(text):
        step = _num(match.group(3)) if match.group(3) else None
        values = _inclusive_range(_num(match.group(1)), _num(match.group(2)), step, text, limit)
    else:
        return None
    return [int(v) for v in values] if kind is int else values


def _convert(value, kind: type, name: str):
    if isinstance(value, bool):
        # pydantic validators need ValueError
        raise ValueError(f"{name}: {value!r} is not a valid value")  # noqa: TRY004
    if kind is str:
        if name in ("checkpoint", "model") and isinstance(value, int):
            return value  # a catalog version id
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}: values must be non-empty strings, got {value!r}")
        return value.strip()
    try:
        number = float(value.replace(" ", "")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a number") from None
    if kind is int:
        if not number.is_integer():
            raise ValueError(f"{name}: {value!r} is not an integer")
        return int(number)
    return number


def _split_csv(text: str) -> list[str]:
    """A1111 axis text: comma-separated, double quotes protect commas."""
    rows = list(csv.reader([text], skipinitialspace=True))
    return [item.strip() for item in (rows[0] if rows else []) if item.strip()]


def _field_spec(name: str) -> tuple[type, tuple | None, str]:
    if name in AXIS_FIELDS:
        return AXIS_FIELDS[name]
    prefix, _, target = name.partition(":")
    if prefix == LORA_WEIGHT and target:
        return float, LORA_WEIGHT_BOUNDS, f"LoRA {target} weight"
    known = ", ".join([*AXIS_FIELDS, f"{LORA_WEIGHT}:<index or name>"])
    raise ValueError(f"unknown XYZ axis field {name!r}; known fields: {known}")


def parse_axis_values(name: str, values) -> list:
    """Validated values of one axis (at most MAX_CELLS, counted before any range is expanded); `values` is
    a list or A1111 comma-separated text."""
    kind, bounds, _ = _field_spec(name)
    items = _split_csv(values) if isinstance(values, str) else list(values)
    if len(items) > MAX_CELLS:
        raise ValueError(f"{name}: {len(items)} values; an axis takes at most {MAX_CELLS}")
    if name == "prompt_sr":
        if not items or not isinstance(items[0], str) or not items[0]:
            raise ValueError("prompt_sr: the first value (the search term) must be a non-empty string")
        if not all(isinstance(v, str) for v in items):
            raise ValueError("prompt_sr: values must be strings")
        return items
    parsed = []
    for item in items:
        ranged = _expand_range(item, kind, MAX_CELLS - len(parsed)) if kind is not str and isinstance(item, str) \
            else None
        parsed.extend(ranged if ranged is not None else [_convert(item, kind, name)])
    if not parsed:
        raise ValueError(f"{name}: the axis has no values")
    if bounds is not None:
        low, high = bounds
        for value in parsed:
            if not low <= value <= high:
                raise ValueError(f"{name}: {value} is outside {low}..{high}")
    return parsed


def axis_labels(name: str, values) -> list[str]:
    """Grid labels of an axis' values (raw or parsed), e.g. "Steps: 20"; prompt S/R and models show the value."""
    _, _, label = _field_spec(name)
    values = parse_axis_values(name, values)
    if name in ("prompt_sr", "checkpoint", "model"):
        return [str(v) for v in values]
    return [f"{label}: {v:g}" if isinstance(v, float) else f"{label}: {v}" for v in values]


# ---- cells -------------------------------------------------------------------------------------

def _lora_list_key(request: dict) -> str:
    return next((key for key in LORA_LIST_KEYS if key in request), LORA_LIST_KEYS[0])


def _lora_index(base: dict, target: str) -> int:
    """A digit target is a list index while in range, else the target is matched to "name" / "ref"."""
    loras = base.get(_lora_list_key(base)) or []
    if target.isdigit() and int(target) < len(loras):
        return int(target)
    for index, lora in enumerate(loras):
        get = lora.get if isinstance(lora, Mapping) else lambda key, obj=lora: getattr(obj, key, None)
        if target in (get("name"), str(get("ref"))):
            return index
    raise ValueError(f"{LORA_WEIGHT}:{target}: no LoRA at that index or of that name/ref "
                     f"(the request has {len(loras)})")


def _set_lora_weight(request: dict, index: int, weight: float) -> None:
    key = _lora_list_key(request)
    loras = list(request[key])
    lora = loras[index]
    loras[index] = {**lora, "weight": weight} if isinstance(lora, Mapping) else dataclasses.replace(lora, weight=weight)
    request[key] = loras


def _apply(request: dict, name: str, value, search: str | None) -> None:
    if name == "prompt_sr":
        request["prompt_sr"] = (search, value)
        for key in ("prompt", "negative_prompt"):
            if isinstance(request.get(key), str):
                request[key] = search_replace(request[key], search, value)
    elif name.startswith(LORA_WEIGHT + ":"):
        _set_lora_weight(request, _lora_index(request, name.partition(":")[2]), value)
    else:
        request[_REQUEST_KEY.get(name, name)] = value


def expand_grid(base: dict, axes: list[tuple[str, list]], max_cells: int = MAX_CELLS) -> list[Cell]:
    """Cells of an X/Y/Z plot (axes in x, y, z order), z-major then y then x.

    Each cell's request is a copy of `base` with that cell's values applied in axis order.
    """
    if not 1 <= len(axes) <= MAX_AXES:
        raise ValueError(f"an XYZ plot takes 1 to {MAX_AXES} axes, got {len(axes)}")
    parsed, seen = [], set()
    for name, values in axes:
        key = _REQUEST_KEY.get(name, name)
        if key in seen:
            raise ValueError(f"axis field {name!r} is used on more than one axis")
        seen.add(key)
        axis_values = parse_axis_values(name, values)
        if name == "prompt_sr" and "prompt" in base:  # fail before any cell when the search term is missing
            prompt_sr(base.get("prompt", ""), base.get("negative_prompt", ""), axis_values[0], axis_values[0])
        if name.startswith(LORA_WEIGHT + ":"):
            _lora_index(base, name.partition(":")[2])
        parsed.append((name, axis_values))
    total = math.prod(len(values) for _, values in parsed)
    if total > max_cells:
        raise ValueError(f"the plot has {total} cells, more than the limit of {max_cells}")
    while len(parsed) < MAX_AXES:
        parsed.append((None, [None]))
    (x_name, xs), (y_name, ys), (z_name, zs) = parsed
    cells = []
    for zi, z in enumerate(zs):
        for yi, y in enumerate(ys):
            for xi, x in enumerate(xs):
                request, overrides = dict(base), {}
                for name, values, value in ((x_name, xs, x), (y_name, ys, y), (z_name, zs, z)):
                    if name is not None:
                        _apply(request, name, value, values[0] if name == "prompt_sr" else None)
                        overrides[name] = value
                cells.append(Cell(xi, yi, zi, request, overrides))
    return cells


def grid_labels(axes: list[tuple[str, list]]) -> tuple[list[str], list[str], list[str]]:
    """(x_labels, y_labels, z_labels) for the axes given to expand_grid; missing axes get []."""
    labels = [axis_labels(name, values) for name, values in axes]
    labels += [[] for _ in range(MAX_AXES - len(labels))]
    return labels[0], labels[1], labels[2]


# ---- drawing -----------------------------------------------------------------------------------

def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, max_width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if line and draw.textlength(candidate, font=font) > max_width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _draw_lines(draw, lines: list[str], font, box: tuple[int, int, int, int], line_height: int) -> None:
    left, top, right, bottom = box
    y = top + (bottom - top - line_height * len(lines)) // 2
    for line in lines:
        width = draw.textlength(line, font=font)
        draw.text((left + (right - left - width) / 2, y), line, fill="black", font=font)
        y += line_height


def _cell_image(images_by_cell, x: int, y: int, z: int, cols: int, rows: int):
    """The cell's image; None for a cell without one (a failed or skipped job)."""
    if isinstance(images_by_cell, Mapping):
        return images_by_cell.get((x, y, z))
    return images_by_cell[(z * rows + y) * cols + x]


def _has_text(labels: Sequence[str]) -> bool:
    return any(str(label).strip() for label in labels)


def assemble_grid(images_by_cell, x_labels: Sequence[str], y_labels: Sequence[str],
                  z_labels: Sequence[str] = (), margin: int = 0) -> list[Image.Image]:
    """One labelled grid image per z value (A1111 layout).

    images_by_cell: {(x, y, z): image} or a list in expand_grid order (None or a missing key: a grey
    tile). Column labels go above the columns, row labels in a left band `tile_width * 3 // 4` wide, the
    z label as a title above; a band whose labels are all blank is left out. Tiles are `margin` pixels
    apart; tiles smaller than the largest are centred on a white tile.
    """
    cols, rows, depth = max(len(x_labels), 1), max(len(y_labels), 1), max(len(z_labels), 1)
    if not isinstance(images_by_cell, Mapping) and len(images_by_cell) != cols * rows * depth:
        raise ValueError(f"expected {cols * rows * depth} images ({cols}x{rows}x{depth}), got {len(images_by_cell)}")
    images = [[[_cell_image(images_by_cell, x, y, z, cols, rows) for x in range(cols)] for y in range(rows)]
              for z in range(depth)]
    present = [im for plane in images for row in plane for im in row if im is not None]
    if not present:
        raise ValueError("no cell has an image")
    tile_w, tile_h = max(im.width for im in present), max(im.height for im in present)
    x_labels = x_labels if _has_text(x_labels) else []
    y_labels = y_labels if _has_text(y_labels) else []
    z_labels = z_labels if _has_text(z_labels) else []
    font_size = min(max((tile_w + tile_h) // 25, 10), 48)
    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = int(font_size * 1.25)
    spacing = font_size // 2

    pad_left = tile_w * 3 // 4 if y_labels else 0
    x_wrapped = [_wrap(probe, label, font, tile_w - 2 * spacing) for label in x_labels]
    y_wrapped = [_wrap(probe, label, font, max(pad_left - 2 * spacing, 1)) for label in y_labels]
    pad_top = max(len(lines) for lines in x_wrapped) * line_height + 2 * spacing if x_labels else 0
    grid_w = pad_left + cols * tile_w + (cols - 1) * margin

    grids = []
    for zi in range(depth):
        title = _wrap(probe, z_labels[zi], font, grid_w - 2 * spacing) if z_labels else []
        title_h = len(title) * line_height + 2 * spacing if title else 0
        top = title_h + pad_top
        canvas = Image.new("RGB", (grid_w, top + rows * tile_h + (rows - 1) * margin), "white")
        draw = ImageDraw.Draw(canvas)
        if title:
            _draw_lines(draw, title, font, (0, 0, grid_w, title_h), line_height)
        for xi, lines in enumerate(x_wrapped):
            left = pad_left + xi * (tile_w + margin)
            _draw_lines(draw, lines, font, (left, title_h, left + tile_w, top), line_height)
        for yi, lines in enumerate(y_wrapped):
            upper = top + yi * (tile_h + margin)
            _draw_lines(draw, lines, font, (0, upper, pad_left, upper + tile_h), line_height)
        for yi in range(rows):
            for xi in range(cols):
                image = images[zi][yi][xi]
                image = Image.new("RGB", (tile_w, tile_h), MISSING_TILE) if image is None else image.convert("RGB")
                left = pad_left + xi * (tile_w + margin) + (tile_w - image.width) // 2
                upper = top + yi * (tile_h + margin) + (tile_h - image.height) // 2
                canvas.paste(image, (left, upper))
        grids.append(canvas)
    return grids

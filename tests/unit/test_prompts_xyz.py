"""Dynamic prompts, wildcards, prompts files, XYZ grids and family presets (pure Python + Pillow)."""
from __future__ import annotations

import pytest
from PIL import Image

from gpu import presets
from gpu.pipelines import Resource
from gpu.prompts import (
    expand_all,
    expand_random,
    parse_prompts_file,
    parse_wildcard_file,
    prompt_sr,
    prompt_sr_variants,
    search_replace,
)
from gpu.xyz import assemble_grid, axis_labels, expand_grid, grid_labels, parse_axis_values

WILDCARDS = {
    "animal": ["cat", "dog"],
    "color": ["red", "{light|dark} __shade__"],
    "shade": ["teal", "olive"],
    "loop": ["a __loop__"],
    "styles/ink": ["ink"],
    "styles/oil": ["oil"],
}


# ---- dynamic prompts ---------------------------------------------------------------------------

def test_variants_expand_in_order_and_nest():
    assert expand_all("a {cat|dog} in {red|{green|teal}}") == [
        "a cat in red", "a cat in green", "a cat in teal", "a dog in red", "a dog in green", "a dog in teal"]


def test_text_without_syntax_and_a1111_brackets_pass_through():
    prompt = "(masterpiece:1.2), [cat|dog], <lora:ink:0.8>, \\(escaped\\)"
    assert expand_all(prompt) == [prompt]
    assert expand_random(prompt, 2, 1) == [prompt, prompt]


def test_escaped_braces_are_literal():
    assert expand_all(r"\{not a {x|y}\}") == ["{not a x}", "{not a y}"]


def test_pick_n_with_default_and_custom_separator():
    assert expand_all("{2$$a|b|c}") == ["a, b", "a, c", "b, c"]
    assert expand_all("{1-2$$ and $$a|b|c}") == ["a", "b", "c", "a and b", "a and c", "b and c"]
    for prompt in expand_random("{2$$a|b|c|d}", 20, seed=3):
        parts = prompt.split(", ")
        assert len(parts) == 2 and len(set(parts)) == 2 and set(parts) <= set("abcd")


def test_weighted_variants_steer_random_picks():
    assert set(expand_random("{0::a|1::b}", 30, seed=9)) == {"b"}


def test_wildcards_including_nested_lines():
    assert expand_all("a __color__ __animal__", WILDCARDS) == [
        "a red cat", "a red dog",
        "a light teal cat", "a light teal dog", "a light olive cat", "a light olive dog",
        "a dark teal cat", "a dark teal dog", "a dark olive cat", "a dark olive dog"]
    assert expand_all("{2$$__shade__}", WILDCARDS) == ["teal, olive"]
    assert expand_all("__styles/*__", WILDCARDS) == ["ink", "oil"]


def test_unknown_wildcard_and_cycles_are_clear_errors():
    with pytest.raises(ValueError, match="unknown wildcard __nope__"):
        expand_all("a __nope__", WILDCARDS)
    with pytest.raises(ValueError, match="unknown wildcard __nope__"):
        expand_random("a __nope__", 1, 0, WILDCARDS)
    with pytest.raises(ValueError, match="nest deeper"):
        expand_random("__loop__", 1, 0, WILDCARDS)


def test_unbalanced_braces_are_errors():
    with pytest.raises(ValueError, match="unclosed"):
        expand_all("a {cat|dog")
    with pytest.raises(ValueError, match="unmatched"):
        expand_all("a cat}")


def test_random_expansion_is_reproducible_per_seed():
    template = "a {small|big|tiny|huge} __color__ {cat|dog|fox|owl}, {2$$x|y|z}"
    first = expand_random(template, 12, seed=1234, wildcards=WILDCARDS)
    assert first == expand_random(template, 12, seed=1234, wildcards=WILDCARDS)
    assert first != expand_random(template, 12, seed=1235, wildcards=WILDCARDS)
    assert expand_random(template, 5, seed=1234, wildcards=WILDCARDS) == first[:5]  # prompt i depends on i only
    everything = set(expand_all(template, WILDCARDS, limit=10_000))
    assert set(first) <= everything and len(set(first)) > 1


def test_combinatorial_count_and_limit():
    assert len(expand_all("{a|b|c} {d|e} {f|g|h|i}")) == 24
    assert len(expand_all("{2$$a|b|c|d|e}")) == 10  # C(5, 2)
    with pytest.raises(ValueError, match="more than 23"):
        expand_all("{a|b|c} {d|e} {f|g|h|i}", limit=23)


def test_expansion_is_bounded_in_nesting_length_and_stack():
    with pytest.raises(ValueError, match="more than 4 prompts"):  # thousands of blocks: no RecursionError
        expand_all("{a|b} " * 2000, limit=4)
    assert expand_random("{a|b} " * 2000, 1, seed=1)[0].count(" ") == 2000
    assert expand_all("{" * 20 + "x" + "}" * 20) == ["x"]
    with pytest.raises(ValueError, match="nest deeper than 20"):
        expand_all("{" * 21 + "x" + "}" * 21)
    with pytest.raises(ValueError, match="nest deeper"):
        expand_random("{" * 5000 + "}" * 5000, 1, seed=1)
    assert expand_all(r"\{" * 50 + "x") == ["{" * 50 + "x"]  # escaped braces do not nest
    doubling = {f"w{i}": [f"__w{i + 1}__ __w{i + 1}__"] for i in range(9)} | {"w9": ["x" * 100]}
    with pytest.raises(ValueError, match="more than 20000 characters"):
        expand_random("__w0__", 1, seed=1, wildcards=doubling)
    with pytest.raises(ValueError, match="more than 20000 characters"):
        expand_all("__w0__", doubling)


def test_parse_wildcard_file():
    assert parse_wildcard_file("# colours\nred\n\n  blue  \n#green\n{light|dark} teal\n") == [
        "red", "blue", "{light|dark} teal"]


# ---- prompts file ------------------------------------------------------------------------------

def test_parse_prompts_file_plain_and_options():
    text = (
        "# a comment\n"
        "a plain prompt, with commas\n"
        "\n"
        "   # an indented comment --bogus option\n"
        '--prompt "a castle" --negative_prompt "blurry, lowres" --steps 20 --cfg_scale 7.5 --seed 5 '
        '--sampler_name "Euler a" --width 512 --height 768\n'
        "--prompt a lighthouse at dusk --steps 12 --tiling false\n"
    )
    assert parse_prompts_file(text) == [
        {"prompt": "a plain prompt, with commas"},
        {"prompt": "a castle", "negative_prompt": "blurry, lowres", "steps": 20, "cfg_scale": 7.5, "seed": 5,
         "sampler": "Euler a", "width": 512, "height": 768},
        {"prompt": "a lighthouse at dusk", "steps": 12},
    ]


@pytest.mark.parametrize("bad_line, message", [
    ("--steps many", r"line 3: --steps expects an integer, got 'many'"),
    ("--prompt x --upscale 2", r"line 3: unknown option --upscale"),
    ('--prompt "unterminated', r"line 3: .*closing quotation"),
    ("--prompt x --seed", r"line 3: missing value for --seed"),
    ("--prompt --steps 3", r"line 3: missing value for --prompt"),
    ("--prompt x stray --cfg_scale high", r"line 3: --cfg_scale expects a number"),
])
def test_parse_prompts_file_errors_name_the_line(bad_line, message):
    with pytest.raises(ValueError, match=message):
        parse_prompts_file(f"first prompt\n\n{bad_line}\n")


# ---- prompt S/R --------------------------------------------------------------------------------

def test_prompt_sr_replaces_in_prompt_and_negative():
    assert prompt_sr("a cat, cat ears", "no cat", "cat", "dog") == ("a dog, dog ears", "no dog")
    assert prompt_sr_variants("a cat", "", ["cat", "dog", "fox"]) == [("a cat", ""), ("a dog", ""), ("a fox", "")]
    with pytest.raises(ValueError, match="did not find 'owl'"):
        prompt_sr("a cat", "", "owl", "dog")


# ---- XYZ ---------------------------------------------------------------------------------------

def test_a1111_range_strings():
    assert parse_axis_values("steps", "1-5") == [1, 2, 3, 4, 5]
    assert parse_axis_values("steps", "1-10 (+2)") == [1, 3, 5, 7, 9]
    assert parse_axis_values("steps", "10-20 [3]") == [10, 15, 20]
    assert parse_axis_values("seed", "-1, 5, 10-8") == [-1, 5, 10, 9, 8]
    assert parse_axis_values("cfg_scale", "5-7 (+0.5)") == [5.0, 5.5, 6.0, 6.5, 7.0]
    assert parse_axis_values("denoising_strength", "0.2-0.8 [4]") == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert parse_axis_values("sampler", 'Euler a, "DPM++ 2M Karras"') == ["Euler a", "DPM++ 2M Karras"]
    assert parse_axis_values("steps", [10, 20.0]) == [10, 20]


@pytest.mark.parametrize("name, values, message", [
    ("size", [512], "unknown XYZ axis field 'size'"),
    ("steps", "0-3", r"steps: 0 is outside 1..150"),
    ("steps", ["ten"], "is not a number"),
    ("steps", [7.5], "is not an integer"),
    ("denoising_strength", [1.5], "outside"),
    ("cfg_scale", [], "no values"),
    ("sampler", [""], "non-empty"),
    ("steps", "5-1 (+1)", "empty"),
    ("seed", "1-4000000000", "has 4000000000 values; an axis takes at most 1000"),
    ("cfg_scale", "1-2 [100000000]", "at most 1000"),
    ("seed", "1-600, 1-600", "at most 1000"),
    ("seed", list(range(1001)), "at most 1000"),
])
def test_axis_validation_errors(name, values, message):
    with pytest.raises(ValueError, match=message):
        parse_axis_values(name, values)


def test_two_axis_grid_cells_and_overrides():
    base = {"prompt": "a red cat", "negative_prompt": "", "steps": 25, "cfg_scale": 7.0, "seed": 1}
    cells = expand_grid(base, [("steps", "10-30 [3]"), ("cfg_scale", [4, 8])])
    assert len(cells) == 6
    assert [(c.x, c.y, c.z) for c in cells] == [(0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 1, 0), (1, 1, 0), (2, 1, 0)]
    assert [(c.request["steps"], c.request["cfg_scale"]) for c in cells] == [
        (10, 4.0), (20, 4.0), (30, 4.0), (10, 8.0), (20, 8.0), (30, 8.0)]
    assert all(c.request["seed"] == 1 and c.request["prompt"] == "a red cat" for c in cells)
    assert base["steps"] == 25  # the base request is not modified
    assert cells[4].overrides == {"steps": 20, "cfg_scale": 8.0}


def test_three_axis_grid_with_prompt_sr_lora_and_checkpoint():
    lora = Resource(kind="lora", path="/x/ink.safetensors", sha256="0" * 64, name="ink", weight=1.0)
    base = {"prompt": "a red cat", "negative_prompt": "red eyes", "loras": [lora], "model": "m1"}
    axes = [("prompt_sr", "red, blue, green"), ("lora_weight:0", "0.25, 0.75"), ("checkpoint", ["m1", 42])]
    cells = expand_grid(base, axes)
    assert len(cells) == 12
    cell = next(c for c in cells if (c.x, c.y, c.z) == (2, 1, 1))
    assert cell.request["prompt"] == "a green cat" and cell.request["negative_prompt"] == "green eyes"
    assert cell.request["prompt_sr"] == ("red", "green")
    assert cell.request["loras"][0].weight == 0.75 and cell.request["loras"][0].name == "ink"
    assert cell.request["model"] == 42
    assert base["loras"][0].weight == 1.0 and base["model"] == "m1"
    assert grid_labels(axes) == (["red", "blue", "green"], ["LoRA 0 weight: 0.25", "LoRA 0 weight: 0.75"],
                                 ["m1", "42"])


def test_grid_on_a_request_without_prompt_and_with_resources():
    """The request schema's shape: prompts are expanded per item, LoRAs are "resources" by "ref"."""
    base = {"model": 7, "negative_prompt": "cat ears", "resources": [{"ref": "urn:air:sd1:lora:civitai:1@2",
                                                                      "weight": 1.0}, {"ref": 99, "weight": 1.0}]}
    cells = expand_grid(base, [("prompt_sr", ["cat", "dog"]), ("lora_weight:99", "0-1 [3]")])
    assert [c.request["prompt_sr"] for c in cells[:2]] == [("cat", "cat"), ("cat", "dog")]
    assert cells[1].request["negative_prompt"] == "dog ears"
    assert [c.request["resources"][1]["weight"] for c in cells[::2]] == [0.0, 0.5, 1.0]
    assert all(c.request["resources"][0]["weight"] == 1.0 for c in cells)
    assert search_replace("a cat", *cells[1].request["prompt_sr"]) == "a dog"
    assert search_replace("a fox", "cat", "dog") == "a fox"


def test_axis_labels_accept_raw_and_parsed_values():
    assert axis_labels("steps", "10-30 [3]") == ["Steps: 10", "Steps: 20", "Steps: 30"]
    assert axis_labels("steps", [10, 20, 30]) == ["Steps: 10", "Steps: 20", "Steps: 30"]
    assert axis_labels("cfg_scale", [7.0, 3.5]) == ["CFG scale: 7", "CFG scale: 3.5"]
    assert axis_labels("sampler", "Euler a, DPM++ 2M") == ["Sampler: Euler a", "Sampler: DPM++ 2M"]


@pytest.mark.parametrize("base, axes, message", [
    ({"prompt": "a cat"}, [], "1 to 3 axes"),
    ({"prompt": "a cat"}, [("steps", [1])] * 4, "1 to 3 axes"),
    ({"prompt": "a cat"}, [("steps", [1]), ("steps", [2])], "more than one axis"),
    ({"prompt": "a cat"}, [("model", ["a"]), ("checkpoint", ["b"])], "more than one axis"),
    ({"prompt": "a cat"}, [("prompt_sr", ["cat", "dog"]), ("prompt_sr", ["a", "the"])], "more than one axis"),
    ({"prompt": "a cat"}, [("prompt_sr", ["owl", "dog"])], "did not find 'owl'"),
    ({"prompt": "a cat", "loras": []}, [("lora_weight:0", [0.5])], "the request has 0"),
    ({"prompt": "a cat"}, [("lora_weight:ink", [0.5])], "no LoRA at that index or of that name"),
    ({"prompt": "a cat"}, [("seed", "1-40"), ("steps", "1-30")], "1200 cells"),
])
def test_grid_validation_errors(base, axes, message):
    with pytest.raises(ValueError, match=message):
        expand_grid(base, axes)


def _tile(color, size=(64, 48)):
    return Image.new("RGB", size, color)


def test_assembled_grid_size_and_tile_placement():
    cols, rows, tile_w, tile_h, margin = 3, 2, 64, 48, 2
    colors = {(x, y, 0): (10 + 60 * x, 20 + 100 * y, 200) for x in range(cols) for y in range(rows)}
    grids = assemble_grid({key: _tile(c) for key, c in colors.items()},
                          ["Steps: 10", "Steps: 20", "Steps: 30"], ["CFG scale: 4", "CFG scale: 8"], [], margin)
    assert len(grids) == 1
    grid = grids[0]
    pad_left = tile_w * 3 // 4
    assert grid.width == pad_left + cols * tile_w + (cols - 1) * margin
    top = grid.height - rows * tile_h - (rows - 1) * margin
    assert top > 0  # the column label band
    for (x, y, _), color in colors.items():
        left, upper = pad_left + x * (tile_w + margin), top + y * (tile_h + margin)
        assert grid.getpixel((left, upper)) == color
        assert grid.getpixel((left + tile_w - 1, upper + tile_h - 1)) == color
    # labels are drawn: the label bands are not blank
    band = grid.crop((pad_left, 0, grid.width, top)).convert("L")
    assert band.getextrema()[0] < 128
    rows_band = grid.crop((0, top, pad_left, grid.height)).convert("L")
    assert rows_band.getextrema()[0] < 128


def test_assembled_grid_one_image_per_z_with_title():
    axes = [("steps", [1, 2]), ("cfg_scale", [3]), ("seed", [5, 6, 7])]
    cells = expand_grid({"prompt": "x"}, axes)
    images = [_tile((40 * c.x, 0, 60 * c.z)) for c in cells]  # a list in cell order
    x_labels, y_labels, z_labels = grid_labels(axes)
    grids = assemble_grid(images, x_labels, y_labels, z_labels)
    assert len(grids) == 3
    plain = assemble_grid(images[:2], x_labels, y_labels, [])[0]
    for z, grid in enumerate(grids):
        assert grid.width == 64 * 3 // 4 + 2 * 64
        assert grid.height > plain.height  # the z title band sits above the column labels
        assert grid.getpixel((grid.width - 1, grid.height - 1)) == (40, 0, 60 * z)
    with pytest.raises(ValueError, match="expected 6 images"):
        assemble_grid(images[:5], x_labels, y_labels, z_labels)
    with pytest.raises(ValueError, match="no cell has an image"):
        assemble_grid({}, ["a", "b"], [], [])


def test_missing_cells_become_grey_tiles_and_blank_labels_no_bands():
    grid = assemble_grid({(0, 0, 0): _tile("red")}, ["a", "b"], [""], [""])[0]
    top = grid.height - 48
    assert grid.width == 128 and top > 0  # no row band, no title band: only the column labels
    assert grid.getpixel((0, top)) == (255, 0, 0)
    assert grid.getpixel((64, top)) == (128, 128, 128)
    with_title = assemble_grid({(0, 0, 0): _tile("red")}, ["a", "b"], [""], ["z"])[0]
    assert with_title.height > grid.height


def test_grid_without_row_labels_has_no_left_band():
    grid = assemble_grid([_tile("red"), _tile("blue")], ["a", "b"], [], [])[0]
    assert grid.width == 128 and grid.height > 48
    assert grid.getpixel((0, grid.height - 1)) == (255, 0, 0)
    unlabeled = assemble_grid([_tile("red")], [], [], [])[0]
    assert unlabeled.size == (64, 48)


# ---- presets -----------------------------------------------------------------------------------

def test_family_defaults_and_limits():
    assert presets.defaults("SD1")["width"] == 512 and presets.defaults("SD2")["height"] == 768
    assert presets.defaults("SDXL")["steps"] == 30 and presets.defaults("SDXL")["cfg_scale"] == 7.0
    schnell, dev = presets.defaults("FLUX1", "schnell"), presets.defaults("FLUX1", "dev")
    assert (schnell["steps"], schnell["cfg_scale"], schnell["uses_cfg"]) == (4, 0.0, False)
    assert (dev["steps"], dev["cfg_scale"], dev["sampler"]) == (28, 3.5, "Euler")
    assert presets.defaults("FLUX1") == dev
    assert presets.size_limits("FLUX1")["multiple"] == 16
    assert presets.size_limits("SDXL") == {"min_side": 256, "max_side": 2048, "multiple": 8}
    with pytest.raises(ValueError, match="unknown model family 'SD3'"):
        presets.defaults("SD3")
    with pytest.raises(ValueError, match="unknown variant 'pro'"):
        presets.defaults("FLUX1", "pro")


def test_size_presets_respect_limits():
    assert presets.SIZE_PRESETS["SDXL"]["portrait 2:3"] == (832, 1216)
    for family, sizes in presets.SIZE_PRESETS.items():
        for width, height in sizes.values():
            presets.validate_size(family, width, height)
    presets.validate_size("SD1", 520, 512)
    with pytest.raises(ValueError, match="multiple of 16"):
        presets.validate_size("FLUX1", 1032, 1024)
    with pytest.raises(ValueError, match="outside"):
        presets.validate_size("SDXL", 4096, 1024)


def test_apply_style():
    prompt, negative = presets.apply_style("Cinematic", "a {red|blue} car", "text")
    assert prompt.startswith("cinematic film still a {red|blue} car . shallow depth of field")
    assert negative.startswith("text, anime, cartoon")
    _, only_style = presets.apply_style("Anime", "x")
    assert only_style == presets.STYLES["Anime"]["negative_prompt"]
    with pytest.raises(ValueError, match="unknown style 'Nope'"):
        presets.apply_style("Nope", "x")

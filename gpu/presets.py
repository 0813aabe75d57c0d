"""Per-family generation defaults, size limits, size presets and prompt style templates.

Plain data plus a few small functions; gpu/request.py validates requests against these.
"""
from __future__ import annotations

FLUX_VARIANTS = ("schnell", "dev")


def _limits(min_side: int, max_side: int, multiple: int) -> dict:
    """Size limits; width and height must be multiples of `multiple` (VAE factor x latent patch size)."""
    return {"min_side": min_side, "max_side": max_side, "multiple": multiple}


def _sd_defaults(side: int, steps: int) -> dict:
    """Stable Diffusion defaults: a square of `side`, CFG 7, DPM++ 2M Karras."""
    return {"width": side, "height": side, "steps": steps, "cfg_scale": 7.0, "sampler": "DPM++ 2M Karras",
            "clip_skip": 1, "steps_range": (1, 150), "cfg_range": (1.0, 30.0), "uses_cfg": True}


# family -> limits and per-variant defaults. Variant None is the family's default variant.
FAMILY_PRESETS: dict[str, dict] = {
    "SD1": {
        "limits": _limits(64, 2048, 8),
        "default_variant": None,
        "variants": {
            None: _sd_defaults(512, 25),
        },
    },
    "SD2": {
        "limits": _limits(64, 2048, 8),
        "default_variant": None,
        "variants": {
            # stable-diffusion-2(-1): the 768-v model; "base" is the 512 epsilon model
            None: _sd_defaults(768, 25),
            "base": _sd_defaults(512, 25),
        },
    },
    "SDXL": {
        "limits": _limits(256, 2048, 8),
        "default_variant": None,
        "variants": {
            None: _sd_defaults(1024, 30),
        },
    },
    "FLUX1": {
        # 8x VAE and 2x2 latent patches -> multiples of 16
        "limits": _limits(256, 2048, 16),
        "default_variant": "dev",
        "variants": {
            # schnell is timestep-distilled and guidance-free: cfg is unused (0)
            "schnell": {"width": 1024, "height": 1024, "steps": 4, "cfg_scale": 0.0, "sampler": "Euler",
                        "clip_skip": None, "steps_range": (1, 50), "cfg_range": (0.0, 0.0), "uses_cfg": False},
            # dev is guidance-distilled: cfg_scale is the embedded guidance value
            "dev": {"width": 1024, "height": 1024, "steps": 28, "cfg_scale": 3.5, "sampler": "Euler",
                    "clip_skip": None, "steps_range": (1, 100), "cfg_range": (1.0, 10.0), "uses_cfg": True},
        },
    },
}

# Named sizes (width, height). SDXL's are its trained aspect buckets (~1 megapixel).
_XL_BUCKETS = {
    "square 1:1": (1024, 1024),
    "portrait 7:9": (896, 1152),
    "portrait 2:3": (832, 1216),
    "portrait 4:7": (768, 1344),
    "landscape 9:7": (1152, 896),
    "landscape 3:2": (1216, 832),
    "landscape 7:4": (1344, 768),
}
SIZE_PRESETS: dict[str, dict[str, tuple[int, int]]] = {
    "SD1": {"square 1:1": (512, 512), "portrait 2:3": (512, 768), "landscape 3:2": (768, 512),
            "portrait 3:4": (512, 680), "landscape 4:3": (680, 512)},
    "SD2": {"square 1:1": (768, 768), "portrait 2:3": (640, 960), "landscape 3:2": (960, 640),
            "portrait 3:4": (672, 896), "landscape 4:3": (896, 672)},
    "SDXL": dict(_XL_BUCKETS),
    "FLUX1": dict(_XL_BUCKETS),  # all multiples of 16 as well
}

# Style templates (the widely shared SDXL style set): "{prompt}" marks where the user's prompt goes.
STYLES: dict[str, dict[str, str]] = {
    "Photographic": {
        "prompt": "cinematic photo {prompt} . 35mm photograph, film, bokeh, professional, 4k, highly detailed",
        "negative_prompt": "drawing, painting, crayon, sketch, graphite, impressionist, noisy, blurry, soft, "
                           "deformed, ugly"},
    "Cinematic": {
        "prompt": "cinematic film still {prompt} . shallow depth of field, vignette, highly detailed, high budget, "
                  "bokeh, cinemascope, moody, epic, gorgeous, film grain, grainy",
        "negative_prompt": "anime, cartoon, graphic, text, painting, crayon, graphite, abstract, glitch, deformed, "
                           "mutated, ugly, disfigured"},
    "Anime": {
        "prompt": "anime artwork {prompt} . anime style, key visual, vibrant, studio anime, highly detailed",
        "negative_prompt": "photo, deformed, black and white, realism, disfigured, low contrast"},
    "Digital Art": {
        "prompt": "concept art {prompt} . digital artwork, illustrative, painterly, matte painting, highly detailed",
        "negative_prompt": "photo, photorealistic, realism, ugly"},
    "Comic Book": {
        "prompt": "comic {prompt} . graphic illustration, comic art, graphic novel art, vibrant, highly detailed",
        "negative_prompt": "photograph, deformed, glitch, noisy, realistic, stock photo"},
    "Fantasy Art": {
        "prompt": "ethereal fantasy concept art of {prompt} . magnificent, celestial, ethereal, painterly, epic, "
                  "majestic, magical, fantasy art, cover art, dreamy",
        "negative_prompt": "photographic, realistic, realism, 35mm film, dslr, cropped, frame, text, deformed, "
                           "glitch, noise, noisy, off-center, cross-eyed, closed eyes, bad anatomy, ugly, "
                           "disfigured, sloppy, duplicate, mutated, black and white"},
    "Line Art": {
        "prompt": "line art drawing {prompt} . professional, sleek, modern, minimalist, graphic, line art, "
                  "vector graphics",
        "negative_prompt": "anime, photorealistic, 35mm film, deformed, glitch, blurry, noisy, off-center, "
                           "cross-eyed, closed eyes, bad anatomy, ugly, disfigured, mutated, realism, realistic, "
                           "impressionism, expressionism, oil, acrylic"},
    "3D Model": {
        "prompt": "professional 3d model {prompt} . octane render, highly detailed, volumetric, dramatic lighting",
        "negative_prompt": "ugly, deformed, noisy, low poly, blurry, painting"},
    "Pixel Art": {
        "prompt": "pixel-art {prompt} . low-res, blocky, pixel art style, 8-bit graphics",
        "negative_prompt": "sloppy, messy, blurry, noisy, highly detailed, ultra textured, photo, realistic"},
    "Watercolor": {
        "prompt": "Watercolor painting {prompt} . Vibrant, beautiful, painterly, detailed, textural, artistic",
        "negative_prompt": "anime, photorealistic, 35mm film, deformed, glitch, low contrast, noisy"},
    "Analog Film": {
        "prompt": "analog film photo {prompt} . faded film, desaturated, 35mm photo, grainy, vignette, vintage, "
                  "Kodachrome, Lomography, stained, highly detailed, found footage",
        "negative_prompt": "painting, drawing, illustration, glitch, deformed, mutated, cross-eyed, ugly, "
                           "disfigured"},
    "Isometric": {
        "prompt": "isometric style {prompt} . vibrant, beautiful, crisp, detailed, ultra detailed, intricate",
        "negative_prompt": "deformed, mutated, ugly, disfigured, blur, blurry, noise, noisy, realistic, photographic"},
}


def _family(family: str) -> dict:
    try:
        return FAMILY_PRESETS[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILY_PRESETS)}") from None


def size_limits(family: str) -> dict:
    """{"min_side", "max_side", "multiple"} of a family."""
    return dict(_family(family)["limits"])


def defaults(family: str, variant: str | None = None) -> dict:
    """Default generation values (width, height, steps, cfg_scale, sampler, clip_skip, ranges) for a family.

    variant: FLUX1 "schnell" | "dev" (default "dev"); SD2 "base" for the 512 model; None elsewhere.
    """
    preset = _family(family)
    variants = preset["variants"]
    key = preset["default_variant"] if variant is None else variant
    if key not in variants:
        known = ", ".join(repr(v) for v in variants if v is not None) or "none"
        raise ValueError(f"unknown variant {variant!r} for {family}; known variants: {known}")
    return dict(variants[key])


def validate_size(family: str, width: int, height: int) -> None:
    """Raise ValueError when width x height is outside the family's limits."""
    limits = size_limits(family)
    for name, side in (("width", width), ("height", height)):
        if not isinstance(side, int) or isinstance(side, bool):
            # pydantic validators need ValueError
            raise ValueError(f"{name} must be an integer, got {side!r}")  # noqa: TRY004
        if not limits["min_side"] <= side <= limits["max_side"]:
            raise ValueError(f"{name} {side} is outside {limits['min_side']}..{limits['max_side']} for {family}")
        if side % limits["multiple"]:
            raise ValueError(f"{name} {side} must be a multiple of {limits['multiple']} for {family}")


def apply_style(name: str, prompt: str, negative: str = "") -> tuple[str, str]:
    """Wrap a prompt in a named style; the style's negative prompt is appended to the user's."""
    try:
        style = STYLES[name]
    except KeyError:
        raise ValueError(f"unknown style {name!r}; known styles: {', '.join(STYLES)}") from None
    template = style["prompt"]
    # str.replace, not str.format: prompts may contain braces (dynamic prompt syntax)
    styled = template.replace("{prompt}", prompt) if "{prompt}" in template else f"{prompt}, {template}"
    styled_negative = ", ".join(part for part in (negative.strip(), style["negative_prompt"]) if part)
    return styled, styled_negative

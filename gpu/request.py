"""The generation request, validated at the edge (web, CLI, A1111 API), and its expansion into one job
spec per image. Pure: catalog references are resolved by the caller through `Resolver`."""
from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import islice
from typing import Annotated, Callable

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gpu import presets, prompts, xyz
from gpu.samplers import canonical_name

MAX_SEED = 2**32 - 1
MAX_JOBS = 10_000
MAX_TEXT = 10_000  # characters of a prompt as written (and of a grid axis' text)
MAX_RUN_CHARS = 4_000_000  # characters of prompts and negative prompts over a run's images
Ref = int | str  # catalog version id, AIR (urn:air:…) or a file hash (AutoV2 / SHA256 / BLAKE3)


class RequestError(ValueError):
    """A request that can never work: the field it is about and why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.message = field, message


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResourceIn(Strict):
    ref: Ref = Field(alias="id")
    weight: float = Field(1.0, ge=-5, le=5)


class HiresIn(Strict):
    scale: float = Field(2.0, gt=1, le=4)
    steps: int = Field(0, ge=0, le=150)
    denoising_strength: float = Field(0.5, ge=0, le=1)


class ControlNetIn(Strict):
    model: Ref
    image: str = Field(min_length=1)  # base64 image
    scale: float = Field(1.0, ge=0, le=2)


class AxisIn(Strict):
    field: str
    values: list | str

    @field_validator("values")
    @classmethod
    def bounded(cls, values):
        if isinstance(values, str) and len(values) > MAX_TEXT:
            raise ValueError(f"at most {MAX_TEXT} characters")
        if isinstance(values, list) and len(values) > xyz.MAX_CELLS:
            raise ValueError(f"at most {xyz.MAX_CELLS} values")
        return values


class GridIn(Strict):
    x: AxisIn
    y: AxisIn | None = None
    z: AxisIn | None = None


class GenerationRequest(Strict):
    model: Ref
    prompt: str | None = Field(None, max_length=MAX_TEXT)
    prompts: list[Annotated[str, Field(max_length=MAX_TEXT)]] | None = Field(None, max_length=MAX_JOBS)
    negative_prompt: str = Field("", max_length=MAX_TEXT)
    style: str | None = None
    width: int | None = Field(None, ge=64, le=4096)
    height: int | None = Field(None, ge=64, le=4096)
    steps: int | None = Field(None, ge=1, le=150)
    cfg_scale: float | None = Field(None, ge=0, le=30)
    sampler: str | None = None
    seed: int = Field(-1, ge=-1, le=MAX_SEED)
    quantity: int = Field(1, ge=1, le=1000)
    clip_skip: int = Field(1, ge=1, le=12)
    resources: list[ResourceIn] = Field(default_factory=list, max_length=20)
    vae: Ref | None = None
    init_image: str | None = None  # base64: img2img
    mask: str | None = None  # base64, white = repaint: inpaint
    denoising_strength: float = Field(0.75, ge=0, le=1)
    hires: HiresIn | None = None
    controlnet: ControlNetIn | None = None
    combinatorial: bool = False  # {a|b} templates: every variant instead of one random pick per image
    wildcards: list[Ref] = Field(default_factory=list, max_length=20)  # catalog Wildcards versions
    grid: GridIn | None = None

    @field_validator("sampler")
    @classmethod
    def known_sampler(cls, name):
        return canonical_name(name) if name is not None else None  # A1111 aliases too (k_euler_a…)

    @model_validator(mode="after")
    def one_prompt_source(self):
        if (self.prompt is None) == (self.prompts is None):
            raise ValueError("give either prompt or prompts")
        if self.prompts is not None and not all(p.strip() for p in self.prompts):
            raise ValueError("prompts must not contain empty entries")
        if self.mask and not self.init_image:
            raise ValueError("a mask needs an init_image")
        return self

    @property
    def mode(self) -> str:
        return "inpaint" if self.mask else "img2img" if self.init_image else "txt2img"


def parse(body) -> GenerationRequest:
    """Validates a JSON body; RequestError names the first bad field."""
    if not isinstance(body, dict):
        raise RequestError("", "the body must be a JSON object")
    try:
        return GenerationRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(field, first["msg"].removeprefix("Value error, ")) from None


@dataclass
class Resolver:
    """What planning needs from the catalog: the family (and FLUX variant) of a model reference, and the
    lines of a wildcard file by name."""
    family_of: Callable[[Ref], tuple[str, str | None]]
    wildcards: dict[str, list[str]]


def prompt_field(req: GenerationRequest) -> str:
    return "prompts" if req.prompts is not None else "prompt"


class _Budget:
    """What a run may expand to, counted while it is expanded: MAX_JOBS images and MAX_RUN_CHARS characters
    of prompts and negative prompts over all of them (what its jobs store)."""

    def __init__(self, req: GenerationRequest):
        self.field = prompt_field(req)
        self.images = self.chars = 0

    def spend(self, images: int, chars: int) -> None:
        self.images, self.chars = self.images + images, self.chars + chars
        if self.images > MAX_JOBS:
            raise RequestError("quantity", f"more than {MAX_JOBS} images asked for in one run")
        if self.chars > MAX_RUN_CHARS:
            raise RequestError(self.field, f"the run's prompts and negative prompts come to more than "
                                           f"{MAX_RUN_CHARS} characters; ask for fewer images or shorter prompts")


def _job_prompts(req: GenerationRequest, wildcards: dict, rng: random.Random) -> list[tuple[str, int]]:
    """(prompt, seed) per image: each prompt × quantity, {a|b} and __wildcard__ templates expanded; seeds
    count up from the request's seed (a random one for -1), as A1111 does for a batch. Expansion stops as
    soon as the run is too large."""
    base_seed = req.seed if req.seed >= 0 else rng.randrange(MAX_SEED)
    budget, texts = _Budget(req), []
    for template in (req.prompts if req.prompts is not None else [req.prompt or ""]):
        if req.combinatorial:
            variants, copies = prompts.iter_all(template, wildcards), req.quantity
        else:
            variants, copies = islice(prompts.iter_random(template, base_seed + len(texts), wildcards),
                                      req.quantity), 1
        for text in variants:
            budget.spend(copies, copies * (len(text) + len(req.negative_prompt)))
            texts += [text] * copies
    return [(text, (base_seed + i) % (MAX_SEED + 1)) for i, text in enumerate(texts)]


def plan(req: GenerationRequest, resolver: Resolver, rng: random.Random | None = None) -> list[dict]:
    """One spec per image: {"model", "params", "prompt", "negative_prompt", "seed", "cell"}. Family presets
    fill what the request left out; family limits are enforced."""
    try:
        items = _job_prompts(req, resolver.wildcards, rng or random.Random())
    except ValueError as exc:
        raise exc if isinstance(exc, RequestError) else RequestError(prompt_field(req), str(exc)) from None
    base = req.model_dump(exclude={"prompt", "prompts", "grid", "wildcards", "combinatorial", "quantity"})
    cells: list[tuple[tuple | None, dict]] = [(None, base)]
    axis_fields: set[str] = set()
    if req.grid is not None:
        axes = [(axis.field, axis.values) for axis in (req.grid.x, req.grid.y, req.grid.z) if axis is not None]
        axis_fields = {name for name, _ in axes}
        try:
            cells = [((c.x, c.y, c.z), c.request) for c in xyz.expand_grid(base, axes)]
        except ValueError as exc:
            raise RequestError("grid", str(exc)) from None
    if len(cells) * len(items) > MAX_JOBS:
        raise RequestError("grid", f"{len(cells) * len(items)} images asked for; at most {MAX_JOBS} per run")
    specs, budget = [], _Budget(req)
    for cell, fields in cells:
        fields = complete(fields, resolver)
        for prompt, seed in items:
            if fields.get("prompt_sr"):
                prompt = prompts.search_replace(prompt, *fields["prompt_sr"])
            negative = fields["negative_prompt"]
            if fields.get("style"):
                prompt, negative = presets.apply_style(fields["style"], prompt, negative)
            budget.spend(1, len(prompt) + len(negative))
            specs.append({"model": fields["model"], "params": fields, "prompt": prompt, "negative_prompt": negative,
                          "seed": fields["seed"] if "seed" in axis_fields else seed, "cell": cell})
    return specs


def complete(fields: dict, resolver: Resolver) -> dict:
    """Family defaults for unset values, then the family's limits."""
    family, variant = resolver.family_of(fields["model"])
    defaults = presets.defaults(family, variant)
    fields = dict(fields, family=family, variant=variant)
    for key in ("width", "height", "steps", "cfg_scale", "sampler"):
        if fields.get(key) is None:
            fields[key] = defaults[key]
    try:  # grid axes bypass the field validators
        fields["sampler"] = canonical_name(fields["sampler"])
    except ValueError as exc:
        raise RequestError("grid", str(exc)) from None
    limits = presets.size_limits(family)
    for key in ("width", "height"):
        if fields[key] % limits["multiple"] or fields[key] > limits["max_side"]:
            raise RequestError(key, f"must be a multiple of {limits['multiple']} and at most "
                                    f"{limits['max_side']} for {family}")
    if fields.get("style") and fields["style"] not in presets.STYLES:
        raise RequestError("style", f"unknown style; one of: {', '.join(presets.STYLES)}")
    return fields

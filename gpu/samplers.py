"""A1111 sampler names (and their k_* aliases) -> diffusers schedulers.

`scheduler_for(config, name)` builds a fresh scheduler from a pipeline's scheduler config, so the model's own
training values (betas, prediction type, timestep spacing) are kept and only the sampling method changes.
"""
from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass, field

KARRAS = {"use_karras_sigmas": True}
# Values a previous sampler may have left in a config; reset unless the new sampler sets them.
_RESET = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}


@dataclass(frozen=True)
class Sampler:
    name: str
    scheduler: str  # diffusers class name
    kwargs: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)  # as A1111's /sdapi/v1/samplers reports them


# A1111's DPM++ SDE draws Brownian-tree noise (diffusers needs torchsde for it); without torchsde the
# single-step DPM-Solver++ is the closest diffusers scheduler.
_HAS_TORCHSDE = importlib.util.find_spec("torchsde") is not None
_SDE = "DPMSolverSDEScheduler" if _HAS_TORCHSDE else "DPMSolverSinglestepScheduler"
_SDE_KW = {} if _HAS_TORCHSDE else {"algorithm_type": "dpmsolver++", "solver_order": 2}


_DPMPP_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_DPMPP_2M_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}

_TABLE = (
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", _DPMPP_2M, ("k_dpmpp_2m",)),
    Sampler("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {**_DPMPP_2M, **KARRAS}, ("k_dpmpp_2m_ka",),
            {"scheduler": "karras"}),
    Sampler("DPM++ SDE", _SDE, _SDE_KW, ("k_dpmpp_sde",),
            {"second_order": True, "brownian_noise": True}),
    Sampler("DPM++ SDE Karras", _SDE, {**_SDE_KW, **KARRAS}, ("k_dpmpp_sde_ka",),
            {"scheduler": "karras", "second_order": True, "brownian_noise": True}),
    Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _DPMPP_2M_SDE, ("k_dpmpp_2m_sde",),
            {"brownian_noise": True}),
    Sampler("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", {**_DPMPP_2M_SDE, **KARRAS},
            ("k_dpmpp_2m_sde_ka",), {"scheduler": "karras", "brownian_noise": True}),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler", {}, ("k_euler_a", "k_euler_ancestral"),
            {"uses_ensd": True}),
    Sampler("Euler", "EulerDiscreteScheduler", {}, ("k_euler",)),
    Sampler("LMS", "LMSDiscreteScheduler", {}, ("k_lms",)),
    Sampler("LMS Karras", "LMSDiscreteScheduler", KARRAS, ("k_lms_ka",), {"scheduler": "karras"}),
    Sampler("Heun", "HeunDiscreteScheduler", {}, ("k_heun",), {"second_order": True}),
    Sampler("DPM2", "KDPM2DiscreteScheduler", {}, ("k_dpm_2",),
            {"discard_next_to_last_sigma": True, "second_order": True}),
    Sampler("DPM2 Karras", "KDPM2DiscreteScheduler", KARRAS, ("k_dpm_2_ka",),
            {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler", {}, ("k_dpm_2_a",),
            {"discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True}),
    Sampler("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", KARRAS, ("k_dpm_2_a_ka",),
            {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True}),
    Sampler("DDIM", "DDIMScheduler", {}, ("ddim",)),
    Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, ("plms",)),
    Sampler("UniPC", "UniPCMultistepScheduler", {}, ("unipc",)),
    Sampler("LCM", "LCMScheduler", {}, ("k_lcm",)),
)

SAMPLER_NAMES: tuple[str, ...] = tuple(s.name for s in _TABLE)
# The answer of A1111's GET /sdapi/v1/samplers.
SAMPLERS: list[dict] = [{"name": s.name, "aliases": list(s.aliases), "options": dict(s.options)} for s in _TABLE]
_BY_NAME = {key.lower(): s for s in _TABLE for key in (s.name, *s.aliases)}
FLOW_MATCH = "FlowMatchEulerDiscreteScheduler"


def sampler(name: str) -> Sampler:
    """The table entry for an A1111 name or alias (case-insensitive); ValueError listing the valid names."""
    found = _BY_NAME.get(str(name).strip().lower())
    if found is None:
        raise ValueError(f"unknown sampler {name!r}; valid names: {', '.join(SAMPLER_NAMES)}")
    return found


def canonical_name(name: str) -> str:
    """'k_euler_a' -> 'Euler a' (the name written into image metadata)."""
    return sampler(name).name


def is_flow_matching(config) -> bool:
    """A flow-matching (FLUX) scheduler config: no noise (beta) schedule. In-memory configs lack _class_name."""
    name = str(config.get("_class_name", ""))
    return name.startswith("FlowMatch") or (not name and "beta_start" not in config)


def scheduler_for(pipe_scheduler_config, name: str):
    """A new diffusers scheduler for sampler `name`, built from a pipeline's scheduler config.

    Flow-matching models (FLUX) have one sampling method in diffusers: any valid name gives a
    FlowMatchEulerDiscreteScheduler with the model's own config (shift, dynamic shifting).
    """
    import diffusers

    chosen = sampler(name)
    config = dict(pipe_scheduler_config)
    if is_flow_matching(config):
        return diffusers.FlowMatchEulerDiscreteScheduler.from_config(config)
    cls = getattr(diffusers, chosen.scheduler)
    accepted = set(inspect.signature(cls.__init__).parameters)
    overrides = {k: v for k, v in {**_RESET, **chosen.kwargs}.items() if k in accepted}
    for key in _RESET:
        config.pop(key, None)
    return cls.from_config(config, **overrides)

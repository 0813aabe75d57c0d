"""Stable Diffusion XL (two CLIP text encoders, pooled embeddings): txt2img, img2img, inpaint, hires fix,
ControlNet. The shared machinery is in common.py."""
from __future__ import annotations

from gpu.pipelines import Item, ModelRef, OnStep, Params, common

PIPELINES = {"txt2img": "StableDiffusionXLPipeline", "img2img": "StableDiffusionXLImg2ImgPipeline",
             "inpaint": "StableDiffusionXLInpaintPipeline"}
CONTROLNET_PIPELINES = {"txt2img": "StableDiffusionXLControlNetPipeline",
                        "img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
                        "inpaint": "StableDiffusionXLControlNetInpaintPipeline"}


def encode(pipe, prompts: list[str], negatives: list[str], params: Params, do_cfg: bool) -> dict:
    # SDXL already reads the penultimate layer; A1111 ignores clip skip for SDXL (and so do we).
    positive, negative, pooled, negative_pooled = pipe.encode_prompt(
        prompts, device=pipe._execution_device, num_images_per_prompt=1, do_classifier_free_guidance=do_cfg,
        negative_prompt=negatives)
    out = {"prompt_embeds": positive, "pooled_prompt_embeds": pooled}
    if do_cfg:
        if pipe.config.get("force_zeros_for_empty_prompt", True):  # an empty negative prompt is zeros (A1111 too)
            empty = [i for i, text in enumerate(negatives) if not text]
            negative, negative_pooled = negative.clone(), negative_pooled.clone()
            negative[empty], negative_pooled[empty] = 0, 0
        out.update(negative_prompt_embeds=negative, negative_pooled_prompt_embeds=negative_pooled)
    return out


FAMILY = common.Family(PIPELINES, CONTROLNET_PIPELINES, encode)


def load(model: ModelRef, device, dtype):
    from gpu.pipelines.loading import load_pipeline
    return load_pipeline(model, device, dtype)


def run(pipe, params: Params, items: list[Item], on_step: OnStep, controlnet=None) -> list:
    """One image per item, in order; `controlnet` is the loaded ControlNetModel when params.controlnet is set."""
    return common.run(FAMILY, pipe, params, items, on_step, controlnet, common.apply_resources)

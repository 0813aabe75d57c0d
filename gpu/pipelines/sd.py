"""Stable Diffusion 1.x and 2.x (one UNet, one CLIP text encoder): txt2img, img2img, inpaint, hires fix,
ControlNet. The shared machinery is in common.py."""
from __future__ import annotations

from diffusers.loaders import TextualInversionLoaderMixin

from gpu.pipelines import Item, ModelRef, OnStep, Params, common

PIPELINES = {"txt2img": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
             "inpaint": "StableDiffusionInpaintPipeline"}
CONTROLNET_PIPELINES = {"txt2img": "StableDiffusionControlNetPipeline",
                        "img2img": "StableDiffusionControlNetImg2ImgPipeline",
                        "inpaint": "StableDiffusionControlNetInpaintPipeline"}


def encode(pipe, prompts: list[str], negatives: list[str], params: Params, do_cfg: bool) -> dict:
    """Prompts and negatives in one text-encoder pass. Clip skip applies to both, as in A1111 (diffusers'
    encode_prompt skips layers for the prompt only, and reaches for `text_model`, which transformers 5 removed)."""
    texts = prompts + negatives if do_cfg else prompts
    if isinstance(pipe, TextualInversionLoaderMixin):  # multi-vector embeddings expand to several tokens
        texts = pipe.maybe_convert_prompt(texts, pipe.tokenizer)
    tokens = pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                            truncation=True, return_tensors="pt")
    encoder, device = pipe.text_encoder, pipe._execution_device
    mask = tokens.attention_mask.to(device) if getattr(encoder.config, "use_attention_mask", False) else None
    skip = common.diffusers_clip_skip(params)
    out = encoder(tokens.input_ids.to(device), attention_mask=mask, output_hidden_states=skip is not None)
    if skip is None:
        embeds = out[0]
    else:  # the hidden state `skip` layers before the last, through the final layer norm
        embeds = getattr(encoder, "text_model", encoder).final_layer_norm(out.hidden_states[-(skip + 1)])
    embeds = embeds.to(dtype=encoder.dtype, device=device)
    if not do_cfg:
        return {"prompt_embeds": embeds}
    return {"prompt_embeds": embeds[:len(prompts)], "negative_prompt_embeds": embeds[len(prompts):]}


FAMILY = common.Family(PIPELINES, CONTROLNET_PIPELINES, encode)


def load(model: ModelRef, device, dtype):
    from gpu.pipelines.loading import load_pipeline
    return load_pipeline(model, device, dtype)


def run(pipe, params: Params, items: list[Item], on_step: OnStep, controlnet=None) -> list:
    """One image per item, in order; `controlnet` is the loaded ControlNetModel when params.controlnet is set."""
    return common.run(FAMILY, pipe, params, items, on_step, controlnet, common.apply_resources)

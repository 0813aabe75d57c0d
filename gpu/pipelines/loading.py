"""Loading SD1 / SD2 / SDXL pipelines and the resources stacked on them (VAE, LoRA, embeddings, ControlNet).

Everything is local: single files get their architecture from the configs shipped in gpu/configs (a prepared
folder with tokenizers), never from a model hub. Pickled .ckpt files are only ever read weights-only.
"""
from __future__ import annotations

import contextlib
import pickle
import re
from pathlib import Path

import torch

from gpu import configs
from gpu.architectures import detect_architecture
from gpu.checkpoints import read_safetensors_header
from gpu.pipelines import CannotGenerate, ModelRef, Params, Resource

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def _pipeline_class(family: str):
    import diffusers
    if family == "SDXL":
        return diffusers.StableDiffusionXLPipeline
    if family in ("SD1", "SD2"):
        return diffusers.StableDiffusionPipeline
    raise ValueError(f"gpu.pipelines.loading handles SD1, SD2 and SDXL, not {family!r}")


def read_header(path: str | Path) -> tuple[dict, dict]:
    """(tensor name -> shape, metadata) of a single file, without loading its weights."""
    path = Path(path)
    if path.suffix == ".safetensors":
        header, metadata = read_safetensors_header(path)
        return {k: v["shape"] for k, v in header.items()}, metadata
    state = torch.load(path, map_location="meta", weights_only=True)  # refuses pickled code
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return {k: list(v.shape) for k, v in state.items() if hasattr(v, "shape")}, {}


def config_for(shapes: dict, metadata: dict, family: str | None = None) -> str:
    """The shipped config a single file needs: its `atelier.config` metadata, else the config of its family
    whose UNet width fits the file (the full-size one for every real checkpoint)."""
    named = metadata.get("atelier.config")
    if named in configs.NAMES:
        return named
    family = detect_architecture(shapes, metadata) if family is None else family
    if family not in ("SD1", "SD2", "SDXL"):
        raise ValueError(f"not a Stable Diffusion checkpoint (recognised as {family or 'unknown'})")
    conv_in = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    for size in ("full", "tiny"):
        name = configs.FAMILY_CONFIGS.get((family, size))
        if name and conv_in and configs.read(name, "unet")["block_out_channels"][0] == conv_in[0]:
            return name
    return configs.config_name(family, "full")


def _prediction_type(metadata: dict) -> str | None:
    value = str(metadata.get("modelspec.prediction_type", "")).lower()
    return {"epsilon": "epsilon", "eps": "epsilon", "v": "v_prediction", "v_prediction": "v_prediction"}.get(value)


def _state_dict_error(error: BaseException) -> bool:
    text = str(error)
    return "Error(s) in loading state_dict" in text or "size mismatch for" in text


@contextlib.contextmanager
def unusable(what: str):
    """Loading `what` (a file, a tokenizer) failed in a way no retry can mend: CannotGenerate with a one-line
    reason. Out-of-memory and other runtime errors pass unchanged (a smaller batch or another try may work)."""
    from safetensors import SafetensorError
    try:
        yield
    except (CannotGenerate, torch.cuda.OutOfMemoryError):
        raise
    except (ValueError, KeyError, OSError, EOFError, pickle.UnpicklingError, SafetensorError) as error:
        raise CannotGenerate(f"{what} does not fit the checkpoint" if _state_dict_error(error) else what,
                             error) from error
    except RuntimeError as error:
        if not _state_dict_error(error):
            raise
        raise CannotGenerate(f"{what} does not fit the checkpoint", error) from error


def load_pipeline(model: ModelRef, device, dtype):
    """The base txt2img diffusers pipeline of a single-file checkpoint or a diffusers folder."""
    with unusable(f"checkpoint {model.name}"):
        pipe = _load_base(model, dtype)
    if model.vae is not None:
        with unusable(f"VAE {model.vae.name}"):
            pipe.vae = load_vae(model.vae, shipped_config_of(pipe), dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _load_base(model: ModelRef, dtype):
    cls = _pipeline_class(model.family)
    path = Path(model.path)
    extra = {} if model.family == "SDXL" else {"safety_checker": None, "requires_safety_checker": False}
    if path.is_dir():
        pipe = cls.from_pretrained(str(path), dtype=dtype, local_files_only=True, **extra)
    else:
        shapes, metadata = read_header(path)
        name = config_for(shapes, metadata, model.family)
        pipe = cls.from_single_file(str(path), config=str(configs.prepared_dir(name)), dtype=dtype,
                                    local_files_only=True, **extra)
        prediction = _prediction_type(metadata)
        if prediction:
            pipe.scheduler.register_to_config(prediction_type=prediction)
    return pipe


def shipped_config_of(pipe) -> str:
    """Which shipped config matches a loaded pipeline (for resources that must fit it)."""
    loaded = pipe.unet.config
    for name in configs.NAMES:
        unet = configs.read(name, "unet")
        if all(_same(unet.get(k), loaded.get(k)) for k in ("block_out_channels", "cross_attention_dim",
                                                           "use_linear_projection", "attention_head_dim")):
            return name
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd15"


def _same(a, b) -> bool:
    return (list(a) if isinstance(a, (list, tuple)) else a) == (list(b) if isinstance(b, (list, tuple)) else b)


def load_vae(res: Resource, config_name: str, dtype):
    """A VAE override: a diffusers folder, or a single file (original or diffusers key layout)."""
    from diffusers import AutoencoderKL
    path = Path(res.path)
    if path.is_dir():
        return AutoencoderKL.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    _, metadata = read_header(path)
    name = metadata.get("atelier.config") if metadata.get("atelier.config") in configs.NAMES else config_name
    return AutoencoderKL.from_single_file(str(path), config=str(configs.prepared_dir(name)), subfolder="vae",
                                          dtype=dtype, local_files_only=True)


def load_controlnet(res: Resource, family: str, device, dtype, config_name: str | None = None):
    """A ControlNet for `family` (or the shipped config `config_name`): a diffusers folder, or a single file
    (original `control_model.*` keys or diffusers keys)."""
    from diffusers import ControlNetModel
    path = Path(res.path)
    with unusable(f"ControlNet {res.name}"):
        if path.is_dir():
            model = ControlNetModel.from_pretrained(str(path), dtype=dtype, local_files_only=True)
        else:
            _, metadata = read_header(path)
            name = metadata.get("atelier.config")
            if name not in configs.NAMES:
                name = config_name or configs.config_name(family, "full")
            model = ControlNetModel.from_single_file(str(path), config=str(configs.prepared_dir(name)),
                                                     subfolder="controlnet", dtype=dtype, local_files_only=True)
    return model.to(device)


def adapter_name(res: Resource) -> str:
    """A stable PEFT adapter name per LoRA file (its hash), so a warm pipeline reuses loaded adapters."""
    return "lora_" + re.sub(r"[^0-9a-zA-Z]", "", res.sha256 or Path(res.path).stem)[:16]


def apply_loras(pipe, loras: tuple[Resource, ...]) -> None:
    """Make exactly `loras` active with their weights: load new ones, keep loaded ones, delete the rest."""
    wanted = {adapter_name(r): r for r in loras}
    loaded = set(loaded_adapters(pipe))
    stale = sorted(loaded - set(wanted))
    if stale:
        pipe.delete_adapters(stale)
    for name, res in wanted.items():
        if name not in loaded:  # read here, weights-only, whatever the file format
            with unusable(f"LoRA {res.name}"):
                pipe.load_lora_weights(_read_tensors(Path(res.path)), adapter_name=name)
    if wanted:
        pipe.set_adapters(list(wanted), adapter_weights=[float(r.weight) for r in wanted.values()])


def loaded_adapters(pipe) -> list[str]:
    try:
        per_component = pipe.get_list_adapters()
    except (ValueError, AttributeError):  # no PEFT layers yet
        return []
    return sorted({name for names in per_component.values() for name in names})


def _read_tensors(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def _embedding_parts(state: dict, sdxl: bool) -> list[tuple[torch.Tensor, str]]:
    """(vectors, encoder) pairs of an A1111 / diffusers textual-inversion file."""
    if sdxl:
        if "clip_l" not in state or "clip_g" not in state:
            raise ValueError("an SDXL embedding needs both clip_l and clip_g vectors")
        return [(state["clip_l"], "text_encoder"), (state["clip_g"], "text_encoder_2")]
    if "string_to_param" in state:
        vectors = next(iter(state["string_to_param"].values()))
    elif "emb_params" in state:
        vectors = state["emb_params"]
    elif len(state) == 1:
        vectors = next(iter(state.values()))
    else:
        raise ValueError("not a textual-inversion embedding (no emb_params / string_to_param)")
    return [(vectors, "text_encoder")]


def apply_embeddings(pipe, embeddings: tuple[Resource, ...]) -> None:
    """Textual inversions: each Resource's `name` becomes usable in prompts (both encoders on SDXL).

    A name that is already a CLIP vocabulary entry is registered as the token `<name>`; prompts going through
    the pipeline's own encode_prompt are rewritten automatically, others can use `embedding_prompt`."""
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    loaded = getattr(pipe, "_atelier_embeddings", {})  # name -> (sha256, token)
    for res in embeddings:
        if loaded.get(res.name, (None,))[0] == res.sha256:
            continue
        token = loaded[res.name][1] if res.name in loaded else \
            (f"<{res.name}>" if res.name in pipe.tokenizer.get_vocab() else res.name)
        with unusable(f"embedding {res.name}"):
            parts = _embedding_parts(_read_tensors(Path(res.path)), sdxl)
        for vectors, encoder in parts:
            text_encoder = getattr(pipe, encoder)
            tokenizer = getattr(pipe, "tokenizer" if encoder == "text_encoder" else "tokenizer_2")
            if res.name in loaded:  # same name, new file: replace it (with its extra vectors token_1, token_2…)
                tokens = [t for t in tokenizer.get_added_vocab() if re.fullmatch(re.escape(token) + r"(_\d+)?", t)]
                pipe.unload_textual_inversion(tokens, tokenizer=tokenizer, text_encoder=text_encoder)
            vectors = vectors.reshape(-1, vectors.shape[-1]).to(text_encoder.dtype)
            pipe.load_textual_inversion({token: vectors}, token=token, text_encoder=text_encoder,
                                        tokenizer=tokenizer)
        loaded[res.name] = (res.sha256, token)
    pipe._atelier_embeddings = loaded
    _hook_prompt_conversion(pipe)


def embedding_prompt(pipe, prompt):
    """`prompt` (a string or a list) with loaded embedding names replaced by their registered tokens."""
    if isinstance(prompt, (list, tuple)):
        return [embedding_prompt(pipe, p) for p in prompt]
    for name, (_, token) in getattr(pipe, "_atelier_embeddings", {}).items():
        if token != name:
            prompt = re.sub(rf"(?<![\w<]){re.escape(name)}(?![\w>])", token, prompt)
    return prompt


def _hook_prompt_conversion(pipe) -> None:
    if getattr(pipe, "_atelier_prompt_hook", False):
        return
    convert = pipe.maybe_convert_prompt  # diffusers' multi-vector expansion, called by encode_prompt
    pipe.maybe_convert_prompt = lambda prompt, tokenizer: convert(embedding_prompt(pipe, prompt), tokenizer)
    pipe._atelier_prompt_hook = True


def apply_resources(pipe, params: Params, device, dtype) -> dict:
    """Brings a warm pipeline to the LoRAs and embeddings of `params`; returns {"controlnet": model or None}
    (the last ControlNet stays cached on the pipeline)."""
    apply_loras(pipe, params.loras)
    apply_embeddings(pipe, params.embeddings)
    res = params.controlnet
    if res is None:
        return {"controlnet": None}
    cached = getattr(pipe, "_atelier_controlnet", None)
    if cached is None or cached[0] != (res.sha256, res.path):
        name = shipped_config_of(pipe)
        family = {"sdxl": "SDXL", "sdxl-tiny": "SDXL", "sd2": "SD2", "sd2-tiny": "SD2"}.get(name, "SD1")
        cached = ((res.sha256, res.path), load_controlnet(res, family, device, dtype, config_name=name))
        pipe._atelier_controlnet = cached
    return {"controlnet": cached[1]}

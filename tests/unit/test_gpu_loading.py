"""Tiny random-weight checkpoints written in the original single-file layouts load back through the same code
that serves real models, with exactly the weights they were built from."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from gpu import demo  # noqa: E402
from gpu.architectures import detect_architecture  # noqa: E402
from gpu.pipelines import (  # noqa: E402
    ModelRef,
    Params,
    Resource,
    loading,
)

CPU, F32 = torch.device("cpu"), torch.float32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-loading")
    made = {}
    for family in ("SD1", "SDXL"):
        made[family] = demo.write_checkpoint(family, out / f"{family}.safetensors", seed=7)
    return out, made


@pytest.fixture(scope="module")
def pipes(files):
    _, made = files
    return {family: loading.load_pipeline(ModelRef(family, str(path), f"sha-{family}"), CPU, F32)
            for family, path in made.items()}


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def image(pipe, prompt="a red cube", seed=0, **kw):
    out = pipe(prompt, num_inference_steps=2, height=64, width=64, output_type="np",
               generator=torch.Generator().manual_seed(seed), **kw)
    return torch.from_numpy(out.images[0])


def unet_out(pipe, prompt="a red cube"):
    """One UNet evaluation on fixed latents: what a LoRA or an embedding must change."""
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        if hasattr(pipe, "text_encoder_2"):
            embeds, _, pooled, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False)
            ids = torch.tensor([[64, 64, 0, 0, 64, 64]], dtype=torch.float32)
            cond = {"text_embeds": pooled, "time_ids": ids}
            return pipe.unet(latents, 10, embeds, added_cond_kwargs=cond).sample
        embeds, _ = pipe.encode_prompt(prompt, CPU, 1, False)
        return pipe.unet(latents, 10, embeds).sample


@pytest.mark.parametrize("family", ["SD1", "SDXL"])
def test_checkpoint_is_a_real_single_file_of_its_family(files, family):
    from gpu.checkpoints import inspect_safetensors
    info = inspect_safetensors(files[1][family])
    assert info.architecture == family
    assert info.details["metadata"]["atelier.config"] == {"SD1": "sd15-tiny", "SDXL": "sdxl-tiny"}[family]


@pytest.mark.parametrize("family", ["SD1", "SDXL"])
def test_single_file_loads_back_the_built_weights_and_makes_an_image(pipes, family):
    built = demo.build_pipeline(family, "tiny", seed=7)
    pipe = pipes[family]
    parts = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "SDXL" else [])
    for part in parts:
        assert same_weights(getattr(built, part), getattr(pipe, part)), part
    assert not same_weights(demo.build_pipeline(family, "tiny", seed=8).unet, pipe.unet)
    img = image(pipe)
    assert img.shape == (64, 64, 3) and torch.isfinite(img).all()


def test_ckpt_with_state_dict_loads_the_same_weights(files, pipes):
    from safetensors.torch import load_file
    out, made = files
    ckpt = out / "SD1.ckpt"
    torch.save({"state_dict": load_file(str(made["SD1"]))}, ckpt)
    pipe = loading.load_pipeline(ModelRef("SD1", str(ckpt), "sha-ckpt"), CPU, F32)
    assert same_weights(pipe.unet, pipes["SD1"].unet)
    assert same_weights(pipe.text_encoder, pipes["SD1"].text_encoder)


def test_ckpt_with_code_is_refused(files):
    out, _ = files
    evil = out / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": os.system}, evil)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        loading.load_pipeline(ModelRef("SD1", str(evil), "sha-evil"), CPU, F32)


def test_vae_override_replaces_the_vae(files, pipes):
    out, made = files
    vae_file = demo.write_vae(out / "vae.safetensors", "SD1", seed=11)
    from gpu.checkpoints import inspect_safetensors
    assert inspect_safetensors(vae_file).architecture == "VAE"
    vae = Resource("vae", str(vae_file), "sha-vae", "vae")
    pipe = loading.load_pipeline(ModelRef("SD1", str(made["SD1"]), "sha-SD1", vae=vae), CPU, F32)
    assert same_weights(pipe.unet, pipes["SD1"].unet)
    assert not same_weights(pipe.vae, pipes["SD1"].vae)
    from diffusers import AutoencoderKL
    torch.manual_seed(11)
    expected = AutoencoderKL.from_config(dict(pipes["SD1"].vae.config))
    assert same_weights(pipe.vae, expected)


@pytest.mark.parametrize("family", ["SD1", "SDXL"])
def test_lora_changes_the_unet_and_follows_its_weight(files, pipes, family):
    out, _ = files
    pipe = pipes[family]
    path = demo.write_lora(out / f"lora-{family}.safetensors", family, rank=4, seed=5)
    assert detect_architecture({"lora_unet_x.lora_down.weight": [4, 4]}) == "LoRA"
    base = unet_out(pipe)
    lora = Resource("lora", str(path), f"lora{family}", "detail")
    try:
        loading.apply_loras(pipe, (lora,))
        full = unet_out(pipe)
        loading.apply_loras(pipe, (Resource("lora", str(path), f"lora{family}", "detail", weight=0.0),))
        assert loading.loaded_adapters(pipe) == [loading.adapter_name(lora)]  # reused, not reloaded
        zero = unet_out(pipe)
    finally:
        loading.apply_loras(pipe, ())
    assert not torch.allclose(full, base, atol=1e-4)
    assert torch.allclose(zero, base, atol=1e-5)
    assert loading.loaded_adapters(pipe) == []
    assert torch.allclose(unet_out(pipe), base, atol=1e-5)


@pytest.mark.parametrize("family", ["SD1", "SDXL"])
def test_embedding_token_is_usable_in_a_prompt(files, pipes, family):
    out, _ = files
    pipe = pipes[family]
    path = demo.write_embedding(out / f"emb-{family}.safetensors", family, token_count=2)
    loading.apply_embeddings(pipe, (Resource("embedding", str(path), f"emb{family}", "shinyStyle"),))
    assert "shinyStyle" in pipe.tokenizer.get_added_vocab()
    if family == "SDXL":
        assert "shinyStyle" in pipe.tokenizer_2.get_added_vocab()
    with_token = unet_out(pipe, "a red cube shinyStyle")
    assert not torch.allclose(with_token, unet_out(pipe, "a red cube"), atol=1e-5)
    # loading again is a no-op; the image path accepts the token
    loading.apply_embeddings(pipe, (Resource("embedding", str(path), f"emb{family}", "shinyStyle"),))
    assert torch.isfinite(image(pipe, "shinyStyle portrait")).all()


def test_embedding_named_like_a_vocabulary_word_still_works(files, pipes):
    out, _ = files
    pipe = pipes["SD1"]
    path = demo.write_embedding(out / "emb-tok.safetensors", "SD1", token_count=1, seed=9)
    assert "tok" in pipe.tokenizer.get_vocab()  # diffusers refuses such tokens as they are
    loading.apply_embeddings(pipe, (Resource("embedding", str(path), "embtok", "tok"),))
    assert loading.embedding_prompt(pipe, "a tok, tokens") == "a <tok>, tokens"
    assert not torch.allclose(unet_out(pipe, "a red tok"), unet_out(pipe, "a red"), atol=1e-5)


@pytest.mark.parametrize("family", ["SD1", "SDXL"])
def test_controlnet_file_loads(files, pipes, family):
    out, _ = files
    path = demo.write_controlnet(out / f"cn-{family}.safetensors", family)
    from gpu.checkpoints import inspect_safetensors
    assert inspect_safetensors(path).architecture == "ControlNet"
    params = Params(controlnet=Resource("controlnet", str(path), f"cn{family}", "canny"))
    net = loading.apply_resources(pipes[family], params, CPU, F32)["controlnet"]
    from diffusers import ControlNetModel
    from safetensors.torch import load_file

    from gpu import configs
    with torch.device("meta"):
        config = configs.controlnet_config(loading.shipped_config_of(pipes[family]))
        shapes = ControlNetModel.from_config(config).state_dict()
    expected = demo._randomize(shapes, 2)  # what write_controlnet drew, in diffusers names
    got = net.state_dict()
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    if family == "SD1":  # published in the original layout
        assert any(k.startswith("control_model.input_hint_block.") for k in load_file(str(path)))
    assert net.config.cross_attention_dim == pipes[family].unet.config.cross_attention_dim


def test_sd2_checkpoint_round_trips_with_v_prediction(tmp_path):
    path = demo.write_checkpoint("SD2", tmp_path / "sd2.safetensors", seed=3)
    pipe = loading.load_pipeline(ModelRef("SD2", str(path), "sha-sd2"), CPU, F32)
    built = demo.build_pipeline("SD2", "tiny", seed=3)
    assert same_weights(pipe.unet, built.unet) and same_weights(pipe.text_encoder, built.text_encoder)
    assert pipe.scheduler.config.prediction_type == "v_prediction"


def test_diffusers_folder_loads(tmp_path):
    built = demo.build_pipeline("SD1", "tiny", seed=5)
    built.save_pretrained(tmp_path / "folder")
    pipe = loading.load_pipeline(ModelRef("SD1", str(tmp_path / "folder"), "sha-folder"), CPU, F32)
    assert same_weights(pipe.unet, built.unet) and same_weights(pipe.text_encoder, built.text_encoder)


@pytest.mark.parametrize("family,unet_millions,keys", [("SD1", 859.5, "v1"), ("SD2", 865.9, "v2"),
                                                       ("SDXL", 2567.5, "xl_base")])
def test_full_configs_are_the_published_architectures(family, unet_millions, keys):
    """Real-size models on the meta device: published parameter counts, and diffusers recognises and converts
    back the original layout we write."""
    from diffusers.loaders import single_file_utils as sfu

    from gpu.ldm_convert import pipeline_to_original
    pipe = demo.build_pipeline(family, "full", device="meta")
    assert round(sum(p.numel() for p in pipe.unet.parameters()) / 1e6, 1) == unet_millions
    state = pipeline_to_original(pipe, family)
    assert sfu.infer_diffusers_model_type(state) == keys
    assert detect_architecture({k: list(v.shape) for k, v in state.items()}) == family
    back = sfu.convert_ldm_unet_checkpoint(state, dict(pipe.unet.config))
    assert back.keys() == pipe.unet.state_dict().keys()
    assert sfu.convert_ldm_vae_checkpoint(state, dict(pipe.vae.config)).keys() == pipe.vae.state_dict().keys()


def test_resource_fit_is_read_from_tensor_shapes():
    from gpu.architectures import misfit
    block = "model.diffusion_model.input_blocks.{}.1.transformer_blocks.0.{}.weight"
    sd15 = {block.format(1, "attn2.to_k"): [320, 768], block.format(1, "attn1.to_q"): [320, 320],
            block.format(4, "attn1.to_q"): [640, 640],
            "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight": [768, 768]}
    kohya = {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": [4, 768],
             "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": [4, 640],
             "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": [4, 768]}
    assert misfit("lora", kohya, sd15) is None
    sdxl_lora = {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": [4, 2048],
                 "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": [4, 1280]}
    assert misfit("lora", sdxl_lora, sd15) == "cross-attention text width 2048, the checkpoint's 768"
    peft = {"unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": [8, 1280]}
    assert misfit("lora", peft, sd15) == "attention width 1280, the checkpoint's 320/640"
    assert misfit("embedding", {"emb_params": [2, 1024]}, sd15) == "text encoder width 1024, the checkpoint's 768"
    assert misfit("embedding", {"clip_l": [2, 768], "clip_g": [2, 1280]}, sd15) is None  # no second encoder to compare
    assert misfit("lora", kohya, {}) is None  # a checkpoint without a header: nothing to tell


def test_unusable_files_fail_with_one_line(tmp_path):
    from gpu.pipelines import CannotGenerate
    bad = tmp_path / "ink.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    pipe = demo.build_pipeline("SD1", "tiny")
    with pytest.raises(CannotGenerate, match=r"^LoRA ink: ") as caught:
        loading.apply_loras(pipe, (Resource("lora", str(bad), "0" * 64, "ink"),))
    assert "\n" not in str(caught.value) and len(str(caught.value)) <= CannotGenerate.MAX_CHARS
    with pytest.raises(CannotGenerate, match=r"^checkpoint gone: "):
        loading.load_pipeline(ModelRef("SD1", str(tmp_path / "gone.safetensors"), "1" * 64, "gone"), CPU, F32)

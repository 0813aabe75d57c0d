import json
import struct
import zipfile

import numpy as np
import pytest

from gpu.checkpoints import InvalidModelFile, inspect_file, read_safetensors_header, scan_pickle
from tests import factories


@pytest.mark.parametrize("family", ["SD1", "SD2", "SDXL", "FLUX1", "LoRA", "TextualInversion", "ControlNet", "VAE"])
def test_architecture_is_recognised_from_tensor_names(tmp_path, family):
    path = factories.safetensors_file(tmp_path / "m.safetensors", family)
    info, verdict = inspect_file(path, path.name, "Checkpoint")
    assert info.architecture == family
    assert info.format == "SafeTensor" and verdict[0] == "Success"


def test_bare_unet_is_recognised_by_its_cross_attention_width(tmp_path):
    from safetensors.numpy import save_file
    key = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    for width, family in ((768, "SD1"), (1024, "SD2"), (2048, "SDXL")):
        path = tmp_path / f"{width}.safetensors"
        save_file({key: np.zeros((4, width), np.float16)}, str(path))
        assert inspect_file(path, path.name, "Checkpoint")[0].architecture == family


@pytest.mark.parametrize("dtype,fp", [(np.float16, "fp16"), (np.float32, "fp32")])
def test_precision_and_counts(tmp_path, dtype, fp):
    path = factories.safetensors_file(tmp_path / "m.safetensors", "SD1", dtype=dtype, metadata={"ss_note": "hi"})
    info, _ = inspect_file(path, path.name, "Checkpoint")
    assert info.fp == fp
    assert info.details["tensors"] == len(factories.layout("SD1"))
    assert info.details["metadata"] == {"ss_note": "hi"}


def test_truncated_safetensors_is_refused_with_the_missing_byte_count(tmp_path):
    path = factories.truncate(factories.safetensors_file(tmp_path / "m.safetensors"), 1000)
    with pytest.raises(InvalidModelFile, match="truncated safetensors file.*1000 missing"):
        inspect_file(path, path.name, "Checkpoint")


def test_garbage_named_safetensors_is_refused(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(InvalidModelFile, match="safetensors"):
        inspect_file(path, path.name, "Checkpoint")


def test_inconsistent_offsets_are_refused(tmp_path):
    header = json.dumps({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 6]}}).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 6)
    with pytest.raises(InvalidModelFile, match="offsets"):
        read_safetensors_header(path)


def test_trailing_garbage_is_refused(tmp_path):
    path = factories.safetensors_file(tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(InvalidModelFile, match="trailing"):
        inspect_file(path, path.name, "Checkpoint")


def test_dangerous_pickle_is_flagged_and_never_loaded(tmp_path):
    path = factories.malicious_checkpoint(tmp_path / "evil.ckpt")
    verdict, message = scan_pickle(path)
    assert verdict == "Danger" and "system" in message
    info, (result, _) = inspect_file(path, path.name, "Checkpoint")
    assert result == "Danger" and info.architecture is None


def test_clean_torch_checkpoint_is_read(tmp_path):
    path = factories.torch_checkpoint(tmp_path / "ok.ckpt", "SDXL")
    info, (result, _) = inspect_file(path, path.name, "Checkpoint")
    assert result == "Success"
    assert (info.format, info.architecture, info.fp) == ("PickleTensor", "SDXL", "fp16")


def test_other_formats_pass_for_non_weight_types(tmp_path):
    path = tmp_path / "cards.txt"
    path.write_text("red\ngreen\n")
    info, verdict = inspect_file(path, path.name, "Wildcards")
    assert info.format == "Other" and verdict[0] == "Success"
    weights = tmp_path / "weights.ckpt"
    weights.write_text("not a checkpoint")
    with pytest.raises(InvalidModelFile):
        inspect_file(weights, weights.name, "Checkpoint")


@pytest.mark.parametrize("name,model_type", [("payload", "Other"), ("weights.pkl", "Checkpoint"),
                                             ("cards.txt", "Wildcards"), ("model.ckpt", "Checkpoint")])
def test_text_pickle_is_danger_whatever_its_name(tmp_path, name, model_type):
    path = tmp_path / "blob"  # stored blobs have no extension
    path.write_bytes(factories.protocol0_pickle(wrapped=True))
    info, (result, message) = inspect_file(path, name, model_type)
    assert result == "Danger" and "system" in message


def test_pickle_inside_a_zip_is_found(tmp_path):
    path = tmp_path / "blob"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pose/readme.txt", "hello")
        z.writestr("pose/data.pkl", factories.protocol0_pickle())
    assert inspect_file(path, "pose.zip", "Poses")[1][0] == "Danger"


@pytest.mark.parametrize("body", [b"cat\ndog\nred\n", b'{"nodes": [{"id": 1}]}', b"(not a pickle)\n"])
def test_plain_files_that_merely_look_like_pickle_opcodes_pass(tmp_path, body):
    path = tmp_path / "blob"
    path.write_bytes(body)
    info, verdict = inspect_file(path, "cards.txt", "Wildcards")
    assert info.format == "Other" and verdict[0] == "Success"


def test_zip_of_wildcards_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / "blob"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("colors.txt", "red\ngreen\n")
    info, verdict = inspect_file(path, "cards.zip", "Wildcards")
    assert info.format == "Other" and verdict[0] == "Success"


def test_legacy_torch_checkpoint_is_read_from_a_blob_without_extension(tmp_path):
    import torch
    path = tmp_path / "blob"
    torch.save({"state_dict": {k: torch.from_numpy(np.array(v)) for k, v in factories.layout("SD1").items()}},
               path, _use_new_zipfile_serialization=False)
    info, (result, _) = inspect_file(path, "old.ckpt", "Checkpoint")
    assert result == "Success" and (info.format, info.architecture) == ("PickleTensor", "SD1")


@pytest.mark.parametrize("kind,name,model_type", [("plain", "history.pkl", "Other"),
                                                  ("torch-zip", "big.ckpt", "Checkpoint"),
                                                  ("torch-legacy", "big.pt", "Checkpoint")])
def test_a_pickle_too_long_to_scan_is_refused_without_being_held_in_memory(tmp_path, configure, kind, name,
                                                                           model_type):
    """picklescan keeps every opcode of a pickle in memory (about 100 bytes each, 29 MiB here): a stream
    beyond PICKLE_SCAN_MAX_OPCODES is refused before it is handed to it."""
    import tracemalloc
    configure(PICKLE_SCAN_MAX_OPCODES="200000")
    path = factories.long_pickle(tmp_path / "blob", kind, items=300_000)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModelFile, match="pickle too large to scan safely: .* more than 200000 pickle op"):
            inspect_file(path, name, model_type)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak >> 20} MiB"


def test_the_default_pickle_bound_refuses_three_million_opcodes(tmp_path):
    path = factories.long_pickle(tmp_path / "blob", "plain", items=3_000_000)
    with pytest.raises(InvalidModelFile, match="more than 2000000 pickle opcodes"):
        inspect_file(path, "history.pkl", "Other")


def test_a_pickle_bytes_opcode_beyond_the_byte_bound_is_not_read(tmp_path, configure):
    """A BINBYTES8 argument is read whole by a pickle parser: past PICKLE_SCAN_MAX_BYTES it is refused unread."""
    import pickle
    import tracemalloc
    configure(PICKLE_SCAN_MAX_BYTES=str(4 << 20))
    path = tmp_path / "blob"
    path.write_bytes(pickle.dumps({"blob": b"\0" * (16 << 20)}, protocol=5))
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModelFile, match="pickle too large to scan safely"):
            inspect_file(path, "data.pkl", "Other")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak >> 20} MiB"


def test_a_real_checkpoint_is_well_inside_the_pickle_bounds(tmp_path):
    path = factories.torch_checkpoint(tmp_path / "blob", "SDXL")
    assert inspect_file(path, "sdxl.ckpt", "Checkpoint")[1][0] == "Success"


@pytest.mark.parametrize("header,data,fragment", [
    (b"[" * 100_000, b"", "nested too deeply"),
    ({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]},
      "b": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]}}, b"\0" * 8, "invalid offset"),
    ({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]},
      "b": {"dtype": "F16", "shape": [4], "data_offsets": [10, 18]}}, b"\0" * 18, "invalid offset"),
    ({"__metadata__": {"k": {"x": 1}}}, b"", "expected a string"),
])
def test_hostile_headers_are_refused(tmp_path, header, data, fragment):
    path = tmp_path / "m.safetensors"
    path.write_bytes(factories.raw_safetensors(header, data))
    with pytest.raises(InvalidModelFile, match=fragment):
        read_safetensors_header(path)


@pytest.mark.parametrize("garbage", [b"K\x05K\x07\x93R.", b"\x93\x00\x00\x00",
                                     b"X\x01\x00\x00\x00aX\x01\x00\x00\x00b\x93"])
def test_tensor_bytes_that_look_like_opcodes_are_not_imports(tmp_path, garbage):
    """A checkpoint's tensor data is raw bytes: bytes that genops reads as a STACK_GLOBAL of non-strings (or of
    nothing) import nothing when loaded, so the checkpoint stays Success."""
    import torch
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": {"w": torch.frombuffer(bytearray(garbage.ljust(16, b"\0")), dtype=torch.uint8)}}, path)
    assert inspect_file(path, "m.ckpt", "Checkpoint")[1][0] == "Success"


def test_encrypted_zip_members_are_refused(tmp_path):
    """A member nobody can read without its password cannot be scanned: the archive is refused."""
    data = bytearray(factories.zip_bytes({"pose/readme.txt": factories.protocol0_pickle()}))
    for header, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the "encrypted" bit, as zip tools set it
        data[data.index(header) + flag_at] |= 0x1
    path = tmp_path / "locked.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFile, match="is encrypted"):
        inspect_file(path, "locked.zip", "Poses")

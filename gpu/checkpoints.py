"""Reading model files without trusting them: safetensors header validation, pickle scanning,
precision and architecture recognition from tensor names."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from gpu.architectures import detect_architecture

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
               "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E8M0": 1,
               "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75, "C64": 8}
FP_NAMES = {"F64": "fp32", "F32": "fp32", "F16": "fp16", "BF16": "bf16", "F8_E4M3": "fp8",
            "F8_E5M2": "fp8", "U8": "nf4"}
MAX_HEADER = 100 << 20
WEIGHT_TYPES = {"Checkpoint", "LORA", "LoCon", "DoRA", "TextualInversion", "Hypernetwork", "Controlnet",
                "VAE", "Upscaler", "MotionModule", "AestheticGradient"}
WEIGHT_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin")


class InvalidModelFile(ValueError):
    """The file is not what it claims to be (truncated, corrupt, wrong format)."""


@dataclass
class FileInfo:
    format: str  # SafeTensor | PickleTensor | Other
    fp: str | None = None
    size_kind: str = "full"
    architecture: str | None = None
    details: dict = field(default_factory=dict)


def sniff_format(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) >= 9 and head[8:9] == b"{":
        return "SafeTensor"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "PickleTensor"
    return "Other"


def read_safetensors_header(path: Path) -> tuple[dict, dict]:
    """(tensors, __metadata__) of a safetensors file, after checking it is whole and consistent."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise InvalidModelFile("not a safetensors file: shorter than its 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER or 8 + n > size:
            raise InvalidModelFile(f"corrupt safetensors header: header length {n} but the file has {size} bytes")
        try:
            header = json.loads(f.read(n))
        except RecursionError:  # depth is bounded by the interpreter's recursion limit; a real header has 3 levels
            raise InvalidModelFile("corrupt safetensors header: its JSON is nested too deeply") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidModelFile(f"corrupt safetensors header: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidModelFile("corrupt safetensors header: not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise InvalidModelFile("corrupt safetensors header: __metadata__ is not an object")
    data_size, end_max = size - 8 - n, 0
    for name, t in header.items():
        if not _well_typed(t):
            raise InvalidModelFile(f"corrupt safetensors header: bad entry for tensor {name!r} (needs a dtype name, "
                                   "a shape of non-negative integers and two integer data_offsets)")
        (begin, end), expected = t["data_offsets"], _count(t["shape"]) * DTYPE_BYTES[t["dtype"]]
        if not begin <= end or end - begin != expected:
            raise InvalidModelFile(f"corrupt safetensors header: tensor {name!r} has offsets {begin}..{end} "
                                   f"for {expected} bytes of {t['dtype']}{t['shape']}")
        end_max = max(end_max, end)
    if end_max > data_size:
        raise InvalidModelFile(f"truncated safetensors file: its header describes {end_max} bytes of tensor "
                               f"data but only {data_size} are present ({end_max - data_size} missing)")
    if end_max < data_size:
        raise InvalidModelFile(f"corrupt safetensors file: {data_size - end_max} trailing bytes after the tensors")
    _validate_with_safetensors(path)
    return header, metadata


def _well_typed(entry) -> bool:
    def naturals(value) -> bool:
        return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)  # not bool, not float
    return (isinstance(entry, dict) and isinstance(entry.get("dtype"), str) and entry["dtype"] in DTYPE_BYTES
            and naturals(entry.get("shape")) and naturals(entry.get("data_offsets"))
            and len(entry["data_offsets"]) == 2)


def _validate_with_safetensors(path: Path) -> None:
    """The safetensors library's own checks: tensors tile the data exactly (no overlaps or gaps), sizes
    match dtype and shape, metadata maps strings to strings."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except SafetensorError as exc:
        reason = str(exc).removeprefix("Error while deserializing header: ")
        raise InvalidModelFile(f"corrupt safetensors file: {reason}") from None


def header_shapes(stream) -> dict | None:
    """Tensor name -> shape from the start of a safetensors stream (only the header is read), for a file
    already checked on ingest; None when it is not one."""
    raw = stream.read(8)
    if len(raw) < 8:
        return None
    (size,) = struct.unpack("<Q", raw)
    if size > MAX_HEADER:
        return None
    try:
        header = json.loads(stream.read(size))
    except (ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    return {name: t["shape"] for name, t in header.items() if isinstance(t, dict) and isinstance(t.get("shape"), list)}


def _precision(dtype_bytes: dict) -> str | None:
    floats = {FP_NAMES[d]: b for d, b in dtype_bytes.items() if d in FP_NAMES and d != "U8"}
    return max(floats, key=floats.get) if floats else None


def inspect_safetensors(path: Path) -> FileInfo:
    header, metadata = read_safetensors_header(path)
    shapes = {name: t["shape"] for name, t in header.items()}
    dtype_bytes: dict = {}
    for t in header.values():
        dtype_bytes[t["dtype"]] = dtype_bytes.get(t["dtype"], 0) + t["data_offsets"][1] - t["data_offsets"][0]
    params = sum(_count(s) for s in shapes.values())
    return FileInfo("SafeTensor", fp=_precision(dtype_bytes), size_kind=_size_kind(shapes),
                    architecture=detect_architecture(shapes, metadata),
                    details={"tensors": len(header), "parameters": params,
                             "metadata": {k: str(v)[:500] for k, v in list(metadata.items())[:50]}})


def _count(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _size_kind(names) -> str:
    return "full" if any(k.startswith("model_ema.") or "optimizer" in k for k in names) else "pruned"


def scan_pickle(path: Path) -> tuple[str, str]:
    """picklescan verdict, judged by the bytes and never by the name: ("Success"|"Danger"|"Error", message).
    Read as a torch file first (zip or legacy), then as plain pickles; gzip, bz2 and xz streams are
    decompressed, and every member of a zip or tar archive (and of those inside it) that parses as a pickle
    with globals is scanned too. Pickle streams too long to scan within
    bounded memory, archives too deep or too large and encrypted members are refused (gpu/pickle_scan.py)."""
    from picklescan.scanner import SafetyLevel, scan_bytes

    from gpu.pickle_scan import Unscannable, scan_members
    try:
        members = scan_members(path)
        with open(path, "rb") as stream:
            result = scan_bytes(stream, path.name, file_ext=".pt")
    except Unscannable as exc:
        raise InvalidModelFile(str(exc)) from None
    except Exception:  # picklescan raises many kinds for containers it cannot open (7z without py7zr, ...)
        raise InvalidModelFile("the file could not be scanned for pickled code: only safetensors, zip and "
                               "tar archives, gzip, bz2 and xz streams and plain files are accepted") from None
    result.merge(members)
    dangerous = sorted({f"{g.module}.{g.name}" for g in result.globals if g.safety == SafetyLevel.Dangerous})
    if dangerous or result.infected_files:
        return "Danger", "dangerous imports found by picklescan: " + (", ".join(dangerous) or "unknown")
    if result.scan_err:
        return "Error", "the file could not be scanned: it is not a readable pickle or zip archive"
    return "Success", f"no dangerous imports ({len(result.globals)} globals checked)"


def inspect_pickle(path: Path) -> FileInfo:
    """Reads tensor names and dtypes with torch's weights-only loader (only after scan_pickle passed)."""
    import torch
    try:
        state = torch.load(path, map_location="meta", weights_only=True, mmap=False)
    except Exception as exc:  # torch raises many kinds for corrupt archives
        raise InvalidModelFile(f"corrupt PyTorch checkpoint: {str(exc).splitlines()[0][:300]}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    tensors = {k: v for k, v in state.items() if hasattr(v, "shape")} if isinstance(state, dict) else {}
    if isinstance(state, dict) and not tensors and "string_to_param" in state:
        tensors = {"string_to_param." + k: v for k, v in state["string_to_param"].items()}
    shapes = {k: list(v.shape) for k, v in tensors.items()}
    dtype_bytes: dict = {}
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}
    for v in tensors.values():
        key = names.get(v.dtype)
        if key:
            dtype_bytes[key] = dtype_bytes.get(key, 0) + v.numel() * v.element_size()
    return FileInfo("PickleTensor", fp=_precision(dtype_bytes), size_kind=_size_kind(shapes),
                    architecture=detect_architecture(shapes, {}),
                    details={"tensors": len(shapes), "parameters": sum(_count(s) for s in shapes.values())})


def inspect_file(path: Path, filename: str, model_type: str) -> tuple[FileInfo, tuple[str, str]]:
    """Inspects one uploaded file. Returns its info and its pickle-scan verdict; raises
    InvalidModelFile for files that must be refused outright. Every file that is not safetensors is
    scanned, whatever its name or model type: a protocol 0 pickle is plain text."""
    path = Path(path)
    lower = filename.lower()
    fmt = sniff_format(path)
    if lower.endswith(".safetensors") or fmt == "SafeTensor":
        return inspect_safetensors(path), ("Success", "safetensors holds no code")
    verdict = scan_pickle(path)
    checkpoint = fmt == "PickleTensor" or lower.endswith(WEIGHT_EXTENSIONS)
    if verdict[0] == "Danger":
        return FileInfo("PickleTensor" if checkpoint else "Other"), verdict
    if checkpoint and model_type in WEIGHT_TYPES:
        if verdict[0] == "Error":
            raise InvalidModelFile("corrupt PyTorch checkpoint: " + verdict[1])
        return inspect_pickle(path), verdict
    return FileInfo("Other"), ("Success", "no dangerous imports: not a usable pickle" if verdict[0] == "Error"
                               else verdict[1])

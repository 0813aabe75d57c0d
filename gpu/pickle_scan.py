"""What picklescan is given, and what it would miss. picklescan keeps every opcode of a pickle stream in
memory (about 100 bytes each) and reads each bytes argument whole, so each stream is first walked here with
pickletools.genops, keeping nothing, and refused past PICKLE_SCAN_MAX_OPCODES opcodes or
PICKLE_SCAN_MAX_BYTES bytes. picklescan picks a zip's members by name or binary-pickle header; here every
member of a zip (and of zips inside it, within ARCHIVE_SCAN_MAX_DEPTH and ARCHIVE_SCAN_MAX_BYTES) is parsed,
and for those with opcodes that import or call, the globals named by GLOBAL/INST and those a load would
import (pickle's own reading, memo included, importing nothing) are judged by picklescan's own tables. Raw
tensor bytes that genops happens to read as a STACK_GLOBAL of non-strings import nothing and pass."""
from __future__ import annotations

import dataclasses
import pickle
import pickletools
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

import settings

ZIP_MAGIC = b"PK\x03\x04"
NUMPY_MAGIC = b"\x93NUMPY"
# Opcodes that name or call something: a stream with none of them builds only plain data.
CALLING_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"}


class Unscannable(ValueError):
    """A file the scanner refuses to judge (too large, too deep, encrypted)."""


class PickleTooLarge(Unscannable):
    """A pickle stream beyond the scan bounds."""


class _Bounded:
    """What genops reads (read, readline) of at most `left` bytes of a stream; one byte may be peeked."""

    def __init__(self, stream: BinaryIO, left: int):
        self.stream, self.left, self.ahead = stream, left, b""

    def _take(self, data: bytes) -> bytes:
        self.left -= len(data)
        if self.left < 0:
            raise _Beyond("bytes")
        return data

    def read(self, n: int) -> bytes:
        want = max(0, min(n, self.left + 1))
        ahead, self.ahead = self.ahead[:want], self.ahead[want:]
        return self._take(ahead + self.stream.read(want - len(ahead)))

    def readline(self) -> bytes:
        ahead, self.ahead = self.ahead, b""
        if ahead == b"\n":
            return self._take(ahead)
        return self._take(ahead + self.stream.readline(self.left + 1 - len(ahead)))

    def peek(self) -> bytes:
        self.ahead = self.ahead or self.stream.read(1)
        return self.ahead


class _Beyond(Exception):
    """Internal: which bound a walk passed."""


def walk(stream: BinaryIO, what: str) -> tuple[set, set, int]:
    """Walks the pickles that follow each other from the stream's position, as picklescan does (until the
    end or the first bytes that do not parse); raises PickleTooLarge past the bounds. Returns the names of
    the opcodes met, the (module, name) pairs GLOBAL and INST name, and the bytes read."""
    s = settings.get()
    bounded, ops, names, named = _Bounded(stream, s.pickle_scan_max_bytes), 0, set(), set()
    try:
        while bounded.peek():
            for opcode, arg, _ in pickletools.genops(bounded):
                names.add(opcode.name)
                if opcode.name in ("GLOBAL", "INST"):
                    named.add(tuple(arg.split(" ", 1)))
                ops += 1
                if ops > s.pickle_scan_max_opcodes:
                    raise _Beyond("opcodes")
    except _Beyond as beyond:
        limit = s.pickle_scan_max_opcodes if beyond.args[0] == "opcodes" else s.pickle_scan_max_bytes
        raise PickleTooLarge(f"pickle too large to scan safely: {what} has more than {limit} pickle "
                             f"{beyond.args[0]}") from None
    except Exception:  # noqa: BLE001  (not, or no longer, a pickle: picklescan stops there too)
        pass
    return names, named, s.pickle_scan_max_bytes - bounded.left


def scan_members(path: Path):
    """Bounds the file's own stream (a plain or legacy torch pickle) for picklescan, and returns picklescan's
    verdict (a ScanResult) on the members of the file when it is a zip archive (a torch checkpoint too)."""
    from picklescan.scanner import ScanResult
    result = ScanResult([])
    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            f.seek(0)
            walk(f, "the file")
        f.seek(0)
        if zipfile.is_zipfile(f):
            f.seek(0)
            _scan_zip(f, "", 0, result, [settings.get().archive_scan_max_bytes])
    return result


def _scan_zip(f: BinaryIO, prefix: str, depth: int, result, budget: list) -> None:
    """Every member of one zip archive; budget[0] is what is left of ARCHIVE_SCAN_MAX_BYTES."""
    from picklescan.relaxed_zipfile import RelaxedZipFile
    try:
        archive = RelaxedZipFile(f, "r")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not an archive after all: its bytes were walked as a stream
    with archive:
        for info in archive.infolist():
            name = prefix + info.filename
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise Unscannable(f"the archive member {name} is encrypted and cannot be scanned")
            try:
                _scan_member(archive, info, name, depth, result, budget)
            except (zipfile.BadZipFile, RuntimeError, EOFError):
                continue  # corrupt members: nothing can read them back either


def _scan_member(archive, info, name: str, depth: int, result, budget: list) -> None:
    from picklescan.scanner import scan_numpy
    with archive.open(info) as member:
        head = member.read(8)
    if head.startswith(ZIP_MAGIC):
        limit = settings.get().archive_scan_max_depth
        if depth >= limit:
            raise Unscannable(f"archives nested deeper than {limit} levels cannot be scanned: {name}")
        with tempfile.TemporaryFile() as nested:
            with archive.open(info) as member:
                _spend(budget, _copy(member, nested, budget[0] + 1))
            nested.seek(0)
            _scan_zip(nested, name + "/", depth + 1, result, budget)
        return
    if head.startswith(NUMPY_MAGIC):
        if _numpy_holds_objects(archive, info, name, budget):
            with archive.open(info) as member:
                result.merge(dataclasses.replace(scan_numpy(member, name), scan_err=False))
        return
    with archive.open(info) as member:
        opcodes, named, read = walk(member, name)
    _spend(budget, read)
    if opcodes & CALLING_OPCODES:
        with archive.open(info) as member:
            imported = _imports(member)
        result.merge(_rules(named | imported, name))


def _rules(found: set, name: str):
    """picklescan's own verdict (its safe and unsafe globals tables) on these (module, name) imports."""
    from picklescan.scanner import _build_scan_result_from_raw_globals
    return _build_scan_result_from_raw_globals(found, name)


class _Stub:
    """What every import of a recorded load stands for: accepts whatever the pickle does with it."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Stub()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    extend = add = append


class _Recorder(pickle.Unpickler):
    """pickle.load's own reading of a stream (memo and stack included), importing nothing: each global it
    would import is recorded and stands as a _Stub."""

    def __init__(self, stream: BinaryIO):
        super().__init__(stream)
        self.found: set = set()

    def find_class(self, module, name):
        self.found.add((str(module), str(name)))
        return _Stub

    def persistent_load(self, pid):
        return _Stub()


def _imports(stream: BinaryIO) -> set:
    """The globals loading the stream's pickles, one after the other, would import (until the first that
    fails: a load stops there too). Only run on a stream walk() found within the bounds."""
    recorder = _Recorder(stream)
    try:
        while stream.peek(1):
            recorder.load()
    except Exception:  # noqa: BLE001  (garbage, or a stub where a real object was needed: loading stops)
        pass
    return recorder.found


def _copy(source: BinaryIO, target: BinaryIO, most: int) -> int:
    copied = 0
    while copied < most and (chunk := source.read(min(1 << 20, most - copied))):
        target.write(chunk)
        copied += len(chunk)
    return copied


def _spend(budget: list, read: int) -> None:
    budget[0] -= read
    if budget[0] < 0:
        raise Unscannable(f"archive too large to scan safely: its members hold more than "
                          f"{settings.get().archive_scan_max_bytes} bytes")


def _numpy_holds_objects(archive, info, name: str, budget: list) -> bool:
    """An .npy member of object dtype is a pickle after its header: walked here, scanned by picklescan."""
    import numpy as np
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            dtype = reader(member)[2]
        except Exception:  # noqa: BLE001  (not a readable .npy: nothing loads it as one)
            return False
        if dtype.hasobject:
            _spend(budget, walk(member, name)[2])
        return dtype.hasobject

"""What picklescan is given, and what it would miss. picklescan keeps every opcode of a pickle stream in
memory (about 100 bytes each) and reads each bytes argument whole, so each stream is first walked here with
pickletools.genops, keeping nothing, and refused past PICKLE_SCAN_MAX_OPCODES opcodes or
PICKLE_SCAN_MAX_BYTES bytes. picklescan picks a zip's members by name or binary-pickle header and opens no
tar or gzip; here every member of a zip or tar and the content of a gzip, bz2 or xz stream (and of those
inside them, within ARCHIVE_SCAN_MAX_DEPTH and ARCHIVE_SCAN_MAX_BYTES) is judged by its bytes and parsed,
and for those with opcodes that import or call, the globals named by GLOBAL/INST and those a load would
import (pickle's own reading, memo included, importing nothing) are judged by picklescan's own tables. Raw
tensor bytes that genops happens to read as a STACK_GLOBAL of non-strings import nothing and pass."""
from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import lzma
import os
import pickle
import pickletools
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

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
    verdict (a ScanResult) on what the file holds when it is a zip archive (a torch checkpoint too), a tar
    archive or a gzip, bz2 or xz/lzma stream."""
    from picklescan.scanner import ScanResult
    result, budget = ScanResult([]), [settings.get().archive_scan_max_bytes]
    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            f.seek(0)
            walk(f, "the file")
        f.seek(0)
        head = f.read(tarfile.BLOCKSIZE)
        if zipfile.is_zipfile(f):  # also when something precedes it: a gzip or tar head is opened as well
            _open_container(f, ZIP_MAGIC, "", 0, result, budget)
        if not head.startswith(ZIP_MAGIC):
            _open_container(f, head, "", 0, result, budget)
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
                _judge(lambda info=info: archive.open(info), name, depth, result, budget)
            except (zipfile.BadZipFile, RuntimeError, EOFError):
                continue  # corrupt members: nothing can read them back either


def _scan_tar(f: BinaryIO, prefix: str, depth: int, result, budget: list) -> None:
    """Every regular member of one tar archive (a seekable file), in order, keeping no member list."""
    try:
        archive = tarfile.open(fileobj=f, mode="r:")
    except (tarfile.TarError, OSError, EOFError):
        return
    with archive:
        while True:
            try:
                info = archive.next()
            except (tarfile.TarError, OSError, EOFError):
                return  # a damaged header: tar stops reading there too
            if info is None:
                return
            archive.members.clear()
            _spend(budget, tarfile.BLOCKSIZE)
            if info.isreg():
                _judge(lambda info=info: archive.extractfile(info), prefix + info.name, depth, result, budget)


def _judge(open_member: Callable[[], BinaryIO], name: str, depth: int, result, budget: list) -> None:
    """One archive member or decompressed stream, by its bytes: a container (zip, tar, gzip, bz2, xz) is
    opened one level deeper, an .npy of objects and every pickle with globals are judged by picklescan."""
    from picklescan.scanner import scan_numpy
    with open_member() as member:
        head = member.read(tarfile.BLOCKSIZE)
    if head.startswith(ZIP_MAGIC) or _decompressor(head):
        with _as_file(open_member, budget) as f:
            _open_container(f, head, name, depth, result, budget)
        return
    if head.startswith(NUMPY_MAGIC):
        if _numpy_holds_objects(open_member, name, budget):
            with open_member() as member:
                result.merge(dataclasses.replace(scan_numpy(member, name), scan_err=False))
        return
    with open_member() as member:
        opcodes, named, read = walk(member, name)
    _spend(budget, read)
    if opcodes & CALLING_OPCODES:
        with open_member() as member:
            imported = _imports(member)
        result.merge(_rules(named | imported, name))
    if _is_tar(head):
        with _as_file(open_member, budget) as f:
            _open_container(f, head, name, depth, result, budget)


def _open_container(f: BinaryIO, head: bytes, name: str, depth: int, result, budget: list) -> None:
    """Opens a seekable zip, tar or compressed file whose first bytes are head (nothing for other files).
    The uploaded file itself (no name) is always opened; one inside it holds what is one level deeper,
    and is refused past ARCHIVE_SCAN_MAX_DEPTH."""
    decompressor = _decompressor(head)
    if not (head.startswith(ZIP_MAGIC) or decompressor or _is_tar(head)):
        return
    if name:
        limit = settings.get().archive_scan_max_depth
        if depth >= limit:
            raise Unscannable(f"archives nested deeper than {limit} levels cannot be scanned: {name}")
        depth += 1
    prefix = name + "/" if name else ""
    f.seek(0)
    if head.startswith(ZIP_MAGIC):
        _scan_zip(f, prefix, depth, result, budget)
    elif _is_tar(head):
        _scan_tar(f, prefix, depth, result, budget)
    else:
        with tempfile.TemporaryFile() as plain:
            with decompressor(f) as content:
                _spend(budget, _copy(content, plain, budget[0] + 1))
            _judge(lambda: _reopen(plain), name or "the decompressed file", depth, result, budget)


# gzip, bz2, xz and legacy .lzma, told by their first bytes: what pandas.read_pickle and joblib.load open.
COMPRESSED = ((b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f)), (b"BZh", bz2.BZ2File),
              (b"\xfd7zXZ\x00", lzma.LZMAFile), (b"\x5d\x00\x00", lzma.LZMAFile))


def _decompressor(head: bytes):
    return next((opener for magic, opener in COMPRESSED if head.startswith(magic)), None)


def _is_tar(head: bytes) -> bool:
    """A first block that parses as a tar header (checksum included), as tarfile reads it."""
    try:
        tarfile.TarInfo.frombuf(head[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


@contextlib.contextmanager
def _as_file(open_member: Callable[[], BinaryIO], budget: list):
    """The member as a seekable file: itself when it already is one, else a bounded copy."""
    with open_member() as member:
        if _is_file(member):
            yield member
            return
        with tempfile.TemporaryFile() as copy:
            _spend(budget, _copy(member, copy, budget[0] + 1))
            copy.seek(0)
            yield copy


def _is_file(stream: BinaryIO) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    return True


def _reopen(f: BinaryIO) -> BinaryIO:
    """A second reader of a temporary file, from its start (closing it leaves the file open)."""
    f.flush()
    reader = open(os.dup(f.fileno()), "rb")
    reader.seek(0)
    return reader


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
    """Copies at most `most` bytes; a compressed stream that breaks off (truncated, trailing garbage) gives
    what it held until there, as a loader reading it would."""
    copied = 0
    try:
        while copied < most and (chunk := source.read(min(1 << 20, most - copied))):
            target.write(chunk)
            copied += len(chunk)
    except (EOFError, OSError, lzma.LZMAError, zlib.error):
        pass
    return copied


def _spend(budget: list, read: int) -> None:
    budget[0] -= read
    if budget[0] < 0:
        raise Unscannable(f"archive too large to scan safely: its members hold more than "
                          f"{settings.get().archive_scan_max_bytes} bytes")


def _numpy_holds_objects(open_member: Callable[[], BinaryIO], name: str, budget: list) -> bool:
    """An .npy member of object dtype is a pickle after its header: walked here, scanned by picklescan."""
    import numpy as np
    with open_member() as member:
        try:
            version = np.lib.format.read_magic(member)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            dtype = reader(member)[2]
        except Exception:  # noqa: BLE001  (not a readable .npy: nothing loads it as one)
            return False
        if dtype.hasobject:
            _spend(budget, walk(member, name)[2])
        return dtype.hasobject

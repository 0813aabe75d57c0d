"""Bounds on what picklescan is given. picklescan keeps every opcode of a pickle stream in memory (about
100 bytes each) and reads each bytes argument whole, so each stream it would parse is first walked here with
pickletools.genops, keeping nothing, and refused past PICKLE_SCAN_MAX_OPCODES opcodes or
PICKLE_SCAN_MAX_BYTES bytes. A checkpoint's pickle holds about 32 opcodes and 100 bytes per tensor."""
from __future__ import annotations

import os
import pickletools
import zipfile
from pathlib import Path
from typing import BinaryIO

import settings


class PickleTooLarge(ValueError):
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


def walk(stream: BinaryIO, what: str) -> None:
    """Walks the pickles that follow each other from the stream's position, as picklescan does (until the
    end or the first bytes that do not parse); raises PickleTooLarge past the bounds."""
    s = settings.get()
    bounded, ops = _Bounded(stream, s.pickle_scan_max_bytes), 0
    try:
        while bounded.peek():
            for _ in pickletools.genops(bounded):
                ops += 1
                if ops > s.pickle_scan_max_opcodes:
                    raise _Beyond("opcodes")
    except _Beyond as beyond:
        limit = s.pickle_scan_max_opcodes if beyond.args[0] == "opcodes" else s.pickle_scan_max_bytes
        raise PickleTooLarge(f"pickle too large to scan safely: {what} has more than {limit} pickle "
                             f"{beyond.args[0]}") from None
    except Exception:  # noqa: BLE001  (not, or no longer, a pickle: picklescan stops there too)
        return


def check_bounds(path: Path) -> None:
    """Every stream picklescan parses in this file: the file itself from its start (a plain or legacy
    torch pickle), and when it is a zip archive (a torch checkpoint) the members picklescan picks."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head != b"PK\x03\x04":
            walk(f, "the file")
        f.seek(0)
        if head == b"PK\x03\x04" or zipfile.is_zipfile(f):
            f.seek(0)
            _check_zip(f)


def _check_zip(f: BinaryIO) -> None:
    from picklescan.relaxed_zipfile import RelaxedZipFile
    from picklescan.scanner import (
        _numpy_file_extensions,
        _numpy_magic_bytes,
        _pickle_file_extensions,
        _pickle_magic_bytes,
    )
    try:
        archive = RelaxedZipFile(f, "r")
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # picklescan cannot open it either: refused as unscannable
    with archive:
        for name in archive.namelist():
            ext = os.path.splitext(name)[1]
            try:
                with archive.open(name) as member:
                    magic = member.read(8)
                    if ext not in _pickle_file_extensions and not any(magic.startswith(m) for m in _pickle_magic_bytes):
                        if ext in _numpy_file_extensions or magic.startswith(_numpy_magic_bytes):
                            _check_numpy(archive, name)
                        continue
                with archive.open(name) as member:
                    walk(member, name)
            except (zipfile.BadZipFile, RuntimeError):
                continue  # members picklescan skips as well


def _check_numpy(archive, name: str) -> None:
    """An .npy member of object dtype is a pickle after its header."""
    import numpy as np
    with archive.open(name) as member:
        try:
            version = np.lib.format.read_magic(member)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            dtype = reader(member)[2]
        except Exception:  # noqa: BLE001  (not a readable .npy: picklescan's own checks decide)
            return
        if dtype.hasobject:
            walk(member, name)

"""Command-line option checking, in one place: every numeric option is range-checked and every output path is
checked for writability before any work starts, and a bad one is one `error:` line with exit status 2 (argparse's
own usage dump is not an error message).

Each numeric checker is an argparse `type=`: `count(lo, hi)`, `threads`, `fraction`, `positive`, `port`. Thread
counts are capped at the machine's cores: more threads than cores only thrash, and 100000 of them starved the
machine.

Output paths: `writable_folder(path)` and `writable_file(path)` try what the command will do (create the folder,
write a file in it) and undo it, so an output that is a file, read-only, too long a name or on a full disk is one
line before the work, not a traceback after it. Outputs that a cut-short write would leave truncated are written
atomically (`write_json`, `write_bytes`, `save_npz`, `atomic_path`: a temp file in the same folder, then
os.replace), so a failed or killed run leaves the earlier file or the new one, never half of one.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from engine.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `error: <prog>: <message>` and exit status 2."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def count(lo: int = 1, hi: int = 10_000_000):
    """An integer in [lo, hi]."""
    def check(text: str) -> int:
        value = _number(text, int)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside {lo}..{hi}")
        return value
    check.__name__ = "integer"
    return check


def threads(text: str) -> int:
    """CPU threads: 0 (the library's own choice) up to the number of cores."""
    cores = os.cpu_count() or 1
    value = _number(text, int)
    if not 0 <= value <= cores:
        raise argparse.ArgumentTypeError(f"{value} threads: choose 0 (automatic) to {cores} (this machine's cores)")
    return value


def fraction(text: str) -> float:
    """A fraction of a video in [0, 1]."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a fraction in [0, 1]")
    return value


def positive(hi: float = 1e6):
    """A finite number in (0, hi]."""
    def check(text: str) -> float:
        value = _number(text, float)
        if not 0.0 < value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside (0, {hi:g}]")
        return value
    check.__name__ = "number"
    return check


def nonnegative(hi: float = 1e6):
    """A finite number in [0, hi]."""
    def check(text: str) -> float:
        value = _number(text, float)
        if not 0.0 <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside [0, {hi:g}]")
        return value
    check.__name__ = "number"
    return check


def port(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1..65535")
    return value


# ------------------------------------------------------------------------------------------------ output paths
def os_reason(err: OSError) -> str:
    """The reason of an OSError in a few words (never the multi-line text some libraries put in it)."""
    if err.errno == errno.ENOSPC:
        return "no space left on the device (disk full)"
    return err.strerror or (str(err).strip().splitlines() or [type(err).__name__])[0]


def describe_os_error(err: OSError) -> str:
    """One line for an OSError: `<file>: <reason>`."""
    return f"{err.filename}: {os_reason(err)}" if err.filename is not None else os_reason(err)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:                             # ENAMETOOLONG, EACCES on a parent...: not there for us
        return False


def _probe_write(folder: Path) -> None:
    """Create, write, fsync and remove a small file in `folder` (fails on read-only, full or vanished disks)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".facetrack-probe-")
    try:
        os.write(fd, b"\0" * 512)
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(tmp)


def writable_folder(path: str | Path, option: str = "--out", _for: Path | None = None) -> Path:
    """`path` must be a folder this process can create (or already has) and write files into. The check leaves
    nothing behind: folders it had to create are removed again (the command creates them when it writes).
    Raises UserError with one line naming the path (or `_for`, the file to be written there)."""
    path = Path(path)
    named = path if _for is None else _for
    if _exists(path) and not path.is_dir():
        raise UserError(f"{path}: {option} must be a folder, but this is a file")
    missing = []
    for p in (path, *path.parents):
        if _exists(p):
            break
        missing.append(p)
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe_write(path)
    except OSError as err:
        raise UserError(f"{named}: cannot write {option} here ({os_reason(err)})") from None
    finally:
        for p in missing:                       # leaf first; stops at the first that is not an empty folder
            try:
                p.rmdir()
            except OSError:
                break
    return path


def writable_file(path: str | Path, option: str = "--out") -> Path:
    """`path` must be a file name (not a folder, not a device or pipe) in a folder that can be created and
    written; an existing file is kept until the command replaces it (atomically). Raises UserError."""
    path = Path(path)
    if _exists(path):
        if path.is_dir():
            raise UserError(f"{path}: {option} needs a file name, but this is a folder")
        if not path.is_file():
            raise UserError(f"{path}: {option} must be a regular file (not a device, pipe or socket)")
    if len(os.fsencode(path.name)) > 240:       # the temp file written beside it needs a few more bytes
        raise UserError(f"{path}: cannot write {option} here ({os.strerror(errno.ENAMETOOLONG)})")
    if _exists(path.parent) and not path.parent.is_dir():
        raise UserError(f"{path}: cannot write {option} here ({path.parent} is a file, not a folder)")
    writable_folder(path.parent, option, _for=path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yields a temp path beside `path` to write (by name: ffmpeg, savefig, CSV writers); on success it is
    fsynced and renamed over `path`, on any failure removed, so `path` is the old file or the new one. An
    OSError about the temp file, or about no file (a failed write() names none), is re-raised naming `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")   # same suffix: ffmpeg picks by it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)    # the checks (writable_*) leave no folder behind
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is None or str(err.filename) == str(tmp):
            raise OSError(err.errno, os_reason(err), str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_file(path: str | Path, data: bytes) -> None:
    """`data` to `path` (not atomic: for the temp file of atomic_path); an OSError names `path`."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, os_reason(err), str(path)) from None
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """`data` to `path` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_path(path) as tmp:
        write_file(tmp, data)
    return Path(path)


def write_json(path: str | Path, data, indent: int | None = 2) -> Path:
    return write_bytes(path, json.dumps(data, indent=indent).encode())


def save_npz(path: str | Path, compressed: bool = False, **arrays) -> Path:
    """np.savez[_compressed] atomically; built in memory first, so a failed write never leaves a zip object
    half-closed (numpy's ZipFile would print a second traceback at exit)."""
    import numpy as np

    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def save_npy(path: str | Path, array) -> Path:
    """np.save atomically (a killed or full-disk write never leaves a truncated array behind)."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    return write_bytes(path, buf.getvalue())

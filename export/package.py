"""The package: a folder of ONNX graphs, the mesh topology and a manifest with a SHA-256 per file.

Two kinds (manifest "kind"; absent means performer, as every package before the generic one):
  performer   a person's own model (`facetrack export`): tracker, texture, detector (+ iris, int8 tracker)
  generic     any face, no personal model (`python -m export.generic`, embedded as GENERIC_PACKAGE): MediaPipe's
              landmarker, detector and iris graphs; H and G are fitted to the landmarks at run time
Each kind requires its own graphs and may list none of the other's (KIND_FILES, FOREIGN_FILES).

    PACKAGE/manifest.json   format, kind, input spec, versions, files {name: sha256} (names: plain relative paths
                            inside the package; checked against MANIFEST_SCHEMA / GENERIC_SCHEMA below); a
                            performer's may hold expression_ranges (export.ranges: where its ARKit values reach 1)
    PACKAGE/tracker.onnx    uint8 [1,S,S,3] crop (S: the manifest's crop_size; 192, older packages 256) → z, H,
                            vertices (crop px), G, landmarks, presence
    PACKAGE/tracker_int8.onnx  the same with E_I's level-head weights in int8, for the CPU provider (optional:
                            export keeps it only while it moves no vertex more than 0.25 px; manifest int8_tracker)
    PACKAGE/texture.onnx    z [1,128], view v [1,3] → colour-corrected texture C(T) uint8 [1,S,S,3]
    PACKAGE/detector.onnx   BlazeFace: [1,3,128,128] in [-1,1] → regressors [1,896,16], logits [1,896]
    PACKAGE/topology.npz    triangles, uv, holes (the mesh the studio draws)
    PACKAGE/basis.npz       performer, optional: the expression basis the tracking loop refits per frame,
                            directions [K,468,3] and std [K] (engine.dam.expression_basis, engine.tracking.refit);
                            from a guided enrollment also the teacher's view bias, view_bias [2,468,3] cm and
                            view_limits [2] rad (engine.view_bias), which the loop removes from each frame's G
    PACKAGE/landmarks.onnx  generic only: MediaPipe's 468-point landmarker, uint8 [1,S,S,3] crop → landmarks
                            [1,468,3] (crop px, z on the same scale), presence [1]
    PACKAGE/iris.onnx       optional (required in a generic package): MediaPipe's iris landmarker, uint8
                            [2,64,64,3] eye crops (engine.eyes) → contours [2,71,3], iris [2,5,3] in crop px
                            (eyelids and gaze; OPTIONAL_SIGNATURES)

Nothing else in the folder is read: TensorRT engines are built from the verified graphs into a per-user cache
(export.trt_engine), never loaded from a package; a `trt/` folder shipped inside one is ignored.

Torch-free: the studio and `facetrack track` load packages through this module. `open_package` checks, in order and
before any listed file is opened: the manifest's size, JSON and schema; that every listed name is a plain relative
path that stays inside the package (symlinks resolved); then re-hashes every file (a missing, truncated or tampered
file is reported by name) and checks the topology's arrays. `check_graph` checks an ONNX session's inputs and
outputs against SIGNATURES (the runtime calls it for each session it creates). Every problem is one UserError line
naming the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

import numpy as np

from engine import options
from engine.errors import UserError
from export.expressions import check_ranges

FORMAT, VERSION = "facetrack-package", 1
MANIFEST = "manifest.json"
# The embedded default performer (scripts/build_sample.sh), with its synthetic clip for demo and studio.
SAMPLE_PACKAGE = Path(__file__).resolve().parent / "sample_package"
# The embedded any-face package (export.generic): what the studio opens when the performer has no model of their own.
GENERIC_PACKAGE = Path(__file__).resolve().parent / "generic_package"
GENERIC = "generic"    # the name open_tracker, eval and the studio's --package take for GENERIC_PACKAGE
GRAPH_NAMES = ("tracker", "texture", "detector")          # a performer package's graphs
GRAPHS = tuple(f"{name}.onnx" for name in GRAPH_NAMES)
GENERIC_GRAPH_NAMES = ("landmarks", "detector")           # a generic package's graphs
INT8_TRACKER = "tracker_int8.onnx"
IRIS = "iris.onnx"            # optional graph (packages without it still open; no gaze or iris blinks then)
TOPOLOGY = "topology.npz"
BASIS = "basis.npz"           # optional (performer): packages without it refit H only
KINDS = ("performer", "generic")
KIND_GRAPHS = {"performer": GRAPH_NAMES, "generic": GENERIC_GRAPH_NAMES}
# What each kind must list, and what it must not (the other kind's graphs: a package is one thing or the other).
KIND_FILES = {"performer": (*GRAPHS, TOPOLOGY), "generic": ("landmarks.onnx", "detector.onnx", IRIS, TOPOLOGY)}
FOREIGN_FILES = {"performer": ("landmarks.onnx",), "generic": ("tracker.onnx", "texture.onnx", INT8_TRACKER, BASIS)}
VERTICES = 468
LATENT = 128

MAX_MANIFEST_BYTES = 1 << 20
MAX_FILES = 256
MAX_NAME = 255
MAX_ARRAYS_BYTES = 16 << 20
MAX_TRIANGLES = 10_000
MAX_BASIS_DIRECTIONS = 64


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _line(text: str, limit: int = 120) -> str:
    """Text for a one-line message: whitespace (newlines included) collapsed, shortened."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _show(value, limit: int = 80) -> str:
    """A manifest value for a one-line message: repr (which escapes line breaks), shortened."""
    return _line(repr(value), limit)


@dataclass(frozen=True)
class Package:
    path: Path
    manifest: dict
    manifest_sha256: str = ""          # of manifest.json's bytes as verified: the key of the per-user engine cache
    _topology: tuple | None = field(default=None, repr=False, compare=False)
    _basis: tuple | None = field(default=None, repr=False, compare=False)

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        """Whether the (verified) manifest lists `name`: optional files such as INT8_TRACKER."""
        return name in self.manifest["files"]

    @property
    def kind(self) -> str:
        """"performer" (a person's own model) or "generic" (any face): see the module notes."""
        return self.manifest.get("kind", "performer")

    @property
    def graph_names(self) -> tuple[str, ...]:
        """The graphs the runtime opens for this kind (besides the optional iris graph)."""
        return KIND_GRAPHS[self.kind]

    @property
    def crop_size(self) -> int:
        return int(self.manifest["input"]["crop_size"])

    @property
    def texture_size(self) -> int:
        return int(self.manifest["texture"]["size"])

    @property
    def sizes(self) -> dict[str, int]:
        """The manifest's values for SIGNATURES' symbolic dims (pass as check_graph's `sizes`)."""
        if self.kind == "generic":
            return {"crop_size": self.crop_size}
        return {"crop_size": self.crop_size, "texture_size": self.texture_size}

    @property
    def expression_ranges(self) -> dict[str, float] | None:
        """The performer's range its model read on the enrollment (export.expressions.expression_ranges), as
        checked by open_package; None when the package has none (an older or a generic one)."""
        ranges = self.manifest.get("expression_ranges")
        return None if ranges is None else dict(ranges)

    def topology(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(triangles [F,3] int32, uv [468,2] float32, holes [K,3] int32), as checked by open_package."""
        if self._topology is None:
            return check_topology(self.file(TOPOLOGY))
        return tuple(a.copy() for a in self._topology)

    def basis(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(directions [K,468,3], std [K]) float64 of the expression basis, as checked by open_package; None when
        the package has none."""
        return None if (b := self._checked_basis()) is None else b[:2]

    def view_bias(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(D [2,468,3], limits [2]) float64 of the teacher's view bias (engine.view_bias), as checked by
        open_package; None when the package has none (no basis, or not enrolled from a guided clip)."""
        return None if (b := self._checked_basis()) is None or b[2] is None else b[2]

    def _checked_basis(self) -> tuple | None:
        if not self.has(BASIS):
            return None
        if self._basis is None:
            return check_basis(self.file(BASIS))
        directions, std, view = self._basis
        return directions.copy(), std.copy(), None if view is None else tuple(a.copy() for a in view)


def write_manifest(folder: Path, manifest: dict) -> dict:
    """Adds the format header and the hash of every file named in manifest['files'] (a list), then writes it."""
    files = {name: sha256(folder / name) for name in manifest.pop("files")}
    manifest = {"format": FORMAT, "version": VERSION, **manifest, "files": files}
    options.write_json(folder / MANIFEST, manifest)
    return manifest


def open_package(path: str | Path) -> Package:
    """Load and verify a package. Any problem → UserError naming the file (one line)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such performer package (a folder made by `facetrack export`)")
    raw = read_manifest(path)
    manifest = parse_manifest(path / MANIFEST, raw)
    check_manifest(path / MANIFEST, manifest)
    files = {name: confine(path, name) for name in manifest["files"]}      # every name, before any file is opened
    verify_hashes(files, manifest["files"])
    topology = check_topology(files[TOPOLOGY])
    basis = check_basis(files[BASIS]) if BASIS in files else None
    return Package(path, manifest, hashlib.sha256(raw).hexdigest(), topology, basis)


# ------------------------------------------------------------------------------------------- names
def confine(package: Path, name, manifest: Path | None = None) -> Path:
    """`package / name` when `name` is a plain relative POSIX path whose resolved target (symlinks followed) lies
    inside the resolved package folder; else UserError naming the manifest. Opens nothing."""
    mpath = manifest or package / MANIFEST
    if not isinstance(name, str) or not name or not name.isprintable() or "\\" in name or len(name) > 4 * MAX_NAME:
        raise UserError(f"{mpath}: file name {_show(name)} is not a plain relative path (empty, too long, control "
                        "characters or a backslash)")
    parts = name.split("/")
    if name.startswith("/") or PureWindowsPath(name).drive or any(p in ("", ".", "..") for p in parts) \
            or any(len(p) > MAX_NAME for p in parts):
        raise UserError(f"{mpath}: file name {_show(name)} is not a plain relative path inside the package "
                        "(absolute, a drive, '..', '.' or an empty part)")
    try:
        root = package.resolve()
        target = (package / name).resolve()
    except (OSError, RuntimeError) as err:          # a symlink loop
        raise UserError(f"{mpath}: file name {_show(name)} cannot be resolved ({type(err).__name__})") from None
    if target == root or not target.is_relative_to(root):
        raise UserError(f"{mpath}: file name {_show(name)} resolves outside the package (a symlink)")
    return package / name


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------------------------------- manifest
def read_manifest(package: Path) -> bytes:
    """manifest.json's bytes: a regular file inside the package, at most MAX_MANIFEST_BYTES."""
    mpath = package / MANIFEST
    if not mpath.exists() and not mpath.is_symlink():
        raise UserError(f"{mpath}: missing (not a performer package)")
    confine(package, MANIFEST)
    if not _regular(mpath):
        raise UserError(f"{mpath}: not a regular file")
    with open(mpath, "rb") as f:
        raw = f.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise UserError(f"{mpath}: manifest larger than {MAX_MANIFEST_BYTES // 1024} KiB (refused)")
    return raw


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {_show(next(k for k in keys if keys.count(k) > 1))}")
    return dict(pairs)


def parse_manifest(mpath: Path, raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise UserError(f"{mpath}: corrupt manifest (JSON nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{mpath}: corrupt manifest ({_line(err)})") from None


class _Bad(Exception):
    """A schema violation: the message says where (a key path) and what."""


def _int(lo: int, hi: int):
    def check(v, where):
        if type(v) is not int or not lo <= v <= hi:
            raise _Bad(f"{where} must be an integer in {lo}..{hi} (found {_show(v)})")
    return check


def _number(v, where):
    if type(v) not in (int, float) or not math.isfinite(v):
        raise _Bad(f"{where} must be a finite number (found {_show(v)})")


def _string(v, where):
    if not isinstance(v, str):
        raise _Bad(f"{where} must be a string (found {_show(v)})")


def _choice(*values):
    def check(v, where):
        if not isinstance(v, str) or v not in values:
            raise _Bad(f"{where} must be one of {', '.join(map(repr, values))} (found {_show(v)})")
    return check


def _const(value):
    def check(v, where):
        if type(v) is not type(value) or v != value:
            raise _Bad(f"{where} must be {value!r} (found {_show(v)})")
    return check


def _vector(n: int):
    def check(v, where):
        if not isinstance(v, list) or len(v) != n:
            raise _Bad(f"{where} must be a list of {n} numbers (found {_show(v)})")
        for i, x in enumerate(v):
            _number(x, f"{where}[{i}]")
    return check


def _matrix(rows: int, cols: int):
    def check(v, where):
        if not isinstance(v, list) or len(v) != rows:
            raise _Bad(f"{where} must be a {rows}x{cols} list of lists (found {_show(v)})")
        for i, row in enumerate(v):
            _vector(cols)(row, f"{where}[{i}]")
    return check


def _map(value_check):
    """An object whose keys are strings and whose values all pass `value_check`."""
    def check(v, where):
        if not isinstance(v, dict):
            raise _Bad(f"{where} must be an object (found {_show(v)})")
        for k, x in v.items():
            value_check(x, f"{where}.{_line(k, 40)}")
    return check


def _either(*checks):
    def check(v, where):
        errors = []
        for c in checks:
            try:
                return c(v, where)
            except _Bad as err:
                errors.append(str(err))
        raise _Bad(errors[0])
    return check


def _ranges(v, where):
    try:
        check_ranges(v)
    except ValueError as err:
        raise _Bad(f"{where}: {err}") from None


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _files(v, where):
    if not isinstance(v, dict) or not v:
        raise _Bad(f"{where} must be a non-empty object of file name → SHA-256 (found {_show(v)})")
    if len(v) > MAX_FILES:
        raise _Bad(f"{where} lists {len(v)} files (at most {MAX_FILES})")
    for name, digest in v.items():
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _Bad(f"{where}[{_show(name)}] must be a SHA-256 of 64 lowercase hex digits (found {_show(digest)})")


def _kind_files(kind: str, files: dict) -> None:
    """The files a package of `kind` must list, and none of the other kind's graphs."""
    for name in KIND_FILES[kind]:
        if name not in files:
            raise _Bad(f"lists no {name}" + (" (a generic package)" if kind == "generic" else ""))
    for name in FOREIGN_FILES[kind]:
        if name in files:
            other = "generic" if kind == "performer" else "performer"
            raise _Bad(f"a {kind} package lists {name} (a {other} package's file)")


# (key, required, check): an object's keys are checked by a nested list, anything else by a check function.
# Keys not listed are allowed (a newer exporter's reports) and never read.
MANIFEST_SCHEMA = [
    ("format", True, _const(FORMAT)),
    ("version", True, _const(VERSION)),
    ("kind", False, _const("performer")),
    ("input", True, [
        ("crop_size", True, _int(64, 1024)),
        ("dtype", True, _const("uint8")),
        ("layout", True, _const("NHWC")),
        ("colour", True, _const("RGB")),
    ]),
    ("texture", True, [
        ("size", True, _int(16, 4096)),
    ]),
    ("files", True, _files),
    ("colour_correction", False, [
        ("matrix", True, _matrix(3, 3)),
        ("bias", True, _vector(3)),
    ]),
    ("versions", False, _map(_either(_string, _number))),
    ("source_run", False, _string),
    ("parity", False, _map(_number)),
    ("graph_rewrites", False, _map(_map(_int(0, 1 << 30)))),
    ("int8_tracker", False, _map(_either(_number, _string))),
    ("expression_ranges", False, _ranges),
]
# A generic package: no texture, colour correction or source run (it has no person); its landmarker crop is small.
GENERIC_SCHEMA = [
    ("format", True, _const(FORMAT)),
    ("version", True, _const(VERSION)),
    ("kind", True, _const("generic")),
    ("input", True, [
        ("crop_size", True, _int(64, 1024)),
        ("dtype", True, _const("uint8")),
        ("layout", True, _const("NHWC")),
        ("colour", True, _const("RGB")),
    ]),
    ("files", True, _files),
    ("versions", False, _map(_either(_string, _number))),
    ("sources", False, _map(_string)),
    ("parity", False, _map(_number)),
    ("graph_rewrites", False, _map(_map(_int(0, 1 << 30)))),
]


def _check_object(value, schema, where: str) -> None:
    if not isinstance(value, dict):
        raise _Bad(f"{where or 'the manifest'} must be a JSON object (found {type(value).__name__})")
    for key, required, check in schema:
        path = f"{where}.{key}" if where else key
        if key not in value:
            if required:
                raise _Bad(f"missing {path}")
            continue
        if isinstance(check, list):
            _check_object(value[key], check, path)
        else:
            check(value[key], path)


def check_manifest(mpath: Path, manifest) -> None:
    """The manifest against its kind's schema (MANIFEST_SCHEMA, GENERIC_SCHEMA) and file list (KIND_FILES,
    FOREIGN_FILES): UserError(f'{mpath}: ...') on the first difference."""
    if isinstance(manifest, dict) and (manifest.get("format") != FORMAT or type(manifest.get("version")) is not int
                                       or manifest["version"] != VERSION):
        raise UserError(f"{mpath}: not a {FORMAT} v{VERSION} manifest")
    try:
        kind = manifest.get("kind", "performer") if isinstance(manifest, dict) else "performer"
        _choice(*KINDS)(kind, "kind")
        _check_object(manifest, GENERIC_SCHEMA if kind == "generic" else MANIFEST_SCHEMA, "")
        _kind_files(kind, manifest["files"])
    except _Bad as err:
        raise UserError(f"{mpath}: {err}") from None


# ------------------------------------------------------------------------------------------- hashes
def verify_hashes(files: dict[str, Path], digests: dict[str, str]) -> None:
    """Every listed file is a regular file (after confine) whose SHA-256 is the manifest's."""
    for name, f in files.items():
        if not _regular(f):
            raise UserError(f"{f}: missing from the package" if not f.exists() else f"{f}: not a regular file")
    for name, f in files.items():
        try:
            ok = sha256(f) == digests[name]
        except OSError as err:
            raise UserError(f"{f}: unreadable ({err.strerror or type(err).__name__})") from None
        if not ok:
            raise UserError(f"{f}: hash mismatch (file changed or truncated since export)")


# ------------------------------------------------------------------------------------------- topology
TOPOLOGY_KEYS = ("triangles", "uv", "holes")


def _npy_header(zf: zipfile.ZipFile, key: str):
    with zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, _, dtype = read(f)
    return tuple(shape), np.dtype(dtype)


def _check_header(key: str, shape: tuple, dtype: np.dtype) -> str | None:
    """Why the array `key` with this .npy header is not what the studio draws, or None."""
    if key == "uv":
        ok = dtype.kind == "f" and shape == (VERTICES, 2)
        return None if ok else f"uv must be float [{VERTICES},2] (found {dtype} {list(shape)})"
    least = 1 if key == "triangles" else 0
    ok = dtype.kind in "iu" and len(shape) == 2 and shape[1] == 3 and least <= shape[0] <= MAX_TRIANGLES
    return None if ok else f"{key} must be integer [N,3] with {least} ≤ N ≤ {MAX_TRIANGLES} " \
                           f"(found {dtype} {list(shape)})"


def _npz(path: Path, keys: tuple, check_header, what: str) -> list[np.ndarray]:
    """The arrays `keys` of an .npz, loaded without pickle after its size and each array's .npy header (shape and
    dtype, by `check_header(key, shape, dtype)` → why not, or None) are checked. UserError naming the file."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [k for k in keys if f"{k}.npy" not in names]
            if missing:
                raise UserError(f"{path}: lacks {', '.join(missing)} (has {_show(sorted(names))})")
            if sum(i.file_size for i in zf.infolist()) > MAX_ARRAYS_BYTES:
                raise UserError(f"{path}: larger than {MAX_ARRAYS_BYTES >> 20} MiB uncompressed (refused)")
            for key in keys:
                why = check_header(key, *_npy_header(zf, key))
                if why:
                    raise UserError(f"{path}: {why}")
        with np.load(path, allow_pickle=False) as z:
            return [np.asarray(z[k]) for k in keys]
    except UserError:
        raise
    except (OSError, ValueError, EOFError, KeyError, MemoryError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: corrupt {what} ({_line(str(err) or type(err).__name__)})") from None


def check_topology(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(triangles int32 [F,3], uv float32 [468,2], holes int32 [K,3]) from topology.npz, loaded without pickle after
    its headers, dtypes, shapes, index range (0..467) and finiteness are checked. UserError naming the file."""
    triangles, uv, holes = _npz(path, TOPOLOGY_KEYS, _check_header, "topology")
    for key, index in (("triangles", triangles), ("holes", holes)):
        if index.size and (index.min() < 0 or index.max() >= VERTICES):
            raise UserError(f"{path}: {key} index outside 0..{VERTICES - 1} "
                            f"(found {int(index.min())}..{int(index.max())})")
    if not np.isfinite(uv).all():
        raise UserError(f"{path}: uv has non-finite values")
    return triangles.astype(np.int32), uv.astype(np.float32), holes.astype(np.int32)


# ------------------------------------------------------------------------------------------- expression basis
BASIS_KEYS = ("directions", "std")
VIEW_KEYS = ("view_bias", "view_limits")     # optional, together (engine.view_bias)
MAX_VIEW_BIAS_CM = 50.0      # per rad (rad² for the square): 5 cm at a 0.3 rad tilt already bends a face beyond use


def _check_basis_header(key: str, shape: tuple, dtype: np.dtype) -> str | None:
    if dtype.kind != "f":
        return f"{key} must be float (found {dtype})"
    if key == "directions":
        ok = len(shape) == 3 and 1 <= shape[0] <= MAX_BASIS_DIRECTIONS and tuple(shape[1:]) == (VERTICES, 3)
        return None if ok else f"directions must be [K,{VERTICES},3] with 1 ≤ K ≤ {MAX_BASIS_DIRECTIONS} " \
                               f"(found {list(shape)})"
    if key == "view_bias":
        return None if tuple(shape) == (2, VERTICES, 3) else f"view_bias must be [2,{VERTICES},3] (found {list(shape)})"
    if key == "view_limits":
        return None if tuple(shape) == (2,) else f"view_limits must be [2] (found {list(shape)})"
    return None if len(shape) == 1 else f"std must be [K] (found {list(shape)})"


def check_basis(path: Path) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """(directions [K,468,3], std [K], view) float64 from basis.npz, view = (view_bias, view_limits) or None, loaded
    without pickle after headers, shapes, finiteness, unit-norm directions, positive std and a bounded view bias over
    an ordered pitch range are checked (a bad basis would bend every tracked face)."""
    with_view = _has_keys(path, VIEW_KEYS)
    keys = BASIS_KEYS + (VIEW_KEYS if with_view else ())
    directions, std, *view = (a.astype(np.float64) for a in _npz(path, keys, _check_basis_header, "expression basis"))
    if len(std) != len(directions):
        raise UserError(f"{path}: {len(directions)} directions but {len(std)} std values")
    if not (np.isfinite(directions).all() and np.isfinite(std).all()):
        raise UserError(f"{path}: non-finite values")
    norms = np.linalg.norm(directions.reshape(len(directions), -1), axis=1)
    if np.abs(norms - 1).max() > 1e-3:
        raise UserError(f"{path}: directions must have unit norm (found {norms.min():.3g}..{norms.max():.3g})")
    if std.min() <= 0 or std.max() > 10:
        raise UserError(f"{path}: std must be in (0, 10] cm (found {std.min():.3g}..{std.max():.3g})")
    if view:
        D, limits = view
        if not (np.isfinite(D).all() and np.abs(D).max() <= MAX_VIEW_BIAS_CM):
            raise UserError(f"{path}: view_bias must be finite and within ±{MAX_VIEW_BIAS_CM:g} cm")
        if not (np.isfinite(limits).all() and (np.abs(limits) <= np.pi / 2).all() and limits[0] <= limits[1]):
            raise UserError(f"{path}: view_limits must be an ordered (min, max) pitch within ±π/2")
    return directions, std, tuple(view) or None


def _has_keys(path: Path, keys: tuple) -> bool:
    """Whether the .npz holds any of `keys` (_npz then needs them all, and names one missing)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False                     # _npz reports the unreadable file
    return any(f"{k}.npy" in names for k in keys)


# ------------------------------------------------------------------------------------------- graph signatures
# (name, element type, shape) of each graph's inputs and outputs, in order, as ONNX Runtime reports them
# (`session.get_inputs()` / `get_outputs()`). A dim is an int (must match), a string naming a manifest size
# (Package.sizes: must match it when `sizes` is given, else any fixed size) or None (anything, even symbolic).
_F, _U8 = "tensor(float)", "tensor(uint8)"
SIGNATURES: dict[str, tuple[list, list]] = {
    "tracker": ([("crop", _U8, [1, "crop_size", "crop_size", 3])],
                [("z", _F, [1, LATENT]), ("H", _F, [1, 6]), ("vertices", _F, [1, VERTICES, 3]),
                 ("G", _F, [1, VERTICES, 3]), ("landmarks", _F, [1, VERTICES, 2]), ("presence", _F, [1])]),
    "texture": ([("z", _F, [1, LATENT]), ("v", _F, [1, 3])],
                [("texture", _U8, [1, "texture_size", "texture_size", 3]),
                 ("texture_raw", _U8, [1, "texture_size", "texture_size", 3])]),
    "detector": ([("image", _F, [1, 3, 128, 128])],
                 [("regressors", _F, [1, 896, 16]), ("logits", _F, [1, 896])]),
    "landmarks": ([("crop", _U8, [1, "crop_size", "crop_size", 3])],
                  [("landmarks", _F, [1, VERTICES, 3]), ("presence", _F, [1])]),
}
# Optional graphs: checked the same way when a package lists them (check_graph looks in both tables).
OPTIONAL_SIGNATURES: dict[str, tuple[list, list]] = {
    "iris": ([("eyes", _U8, [2, 64, 64, 3])],
             [("contours", _F, [2, 71, 3]), ("iris", _F, [2, 5, 3])]),
}


def _dim_ok(want, got, sizes: dict | None) -> bool:
    if want is None:
        return True
    if type(got) is not int or got <= 0:
        return False
    if isinstance(want, str):
        return sizes is None or want not in sizes or got == sizes[want]
    return got == want


def _args(items) -> list[tuple[str, str, list]]:
    return [(str(name), str(kind), list(shape) if shape is not None else None) for name, kind, shape in items]


def check_graph(name: str, inputs: list[tuple[str, str, list]], outputs: list[tuple[str, str, list]], *,
                path: str | Path | None = None, sizes: dict | None = None) -> None:
    """Whether a session for graph `name` (tracker, texture, detector, landmarks; iris when present) takes and gives
    what SIGNATURES says: names and order, element types, shapes (`sizes`, e.g. Package.sizes, fixes the symbolic
    ones). `inputs`/`outputs` as [(i.name, i.type, i.shape) for i in session.get_inputs()]. UserError(f'{path}:
    ...') naming the first difference; `path` defaults to '{name}.onnx'."""
    path = path or f"{name}.onnx"
    known = {**SIGNATURES, **OPTIONAL_SIGNATURES}
    if name not in known:
        raise UserError(f"{path}: no graph signature for {name!r} (known: {', '.join(known)})")
    (want_in, want_out) = known[name]
    for side, want, got in (("inputs", want_in, inputs), ("outputs", want_out, outputs)):
        got = _args(got)
        if [g[0] for g in got] != [w[0] for w in want]:
            raise UserError(f"{path}: not the {name} graph: {side} {_show([g[0] for g in got])}, expected "
                            f"{_show([w[0] for w in want])}")
        for (tensor, kind, shape), (_, want_kind, want_shape) in zip(got, want):
            if kind != want_kind:
                raise UserError(f"{path}: {name} {side[:-1]} {_show(tensor)} is {_show(kind)}, expected {want_kind}")
            if shape is None or len(shape) != len(want_shape) or \
                    not all(_dim_ok(w, g, sizes) for w, g in zip(want_shape, shape)):
                expected = [sizes.get(w, w) if sizes and isinstance(w, str) else w for w in want_shape]
                raise UserError(f"{path}: {name} {side[:-1]} {_show(tensor)} has shape {_show(shape)}, expected "
                                f"{_show(expected)}")


def add_files(folder: str | Path, names: list[str]) -> dict:
    """List extra files (e.g. a demo clip) in an existing manifest, with their hashes."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    for name in names:
        confine(folder, name)
    manifest["files"].update({name: sha256(folder / name) for name in names})
    options.write_json(folder / MANIFEST, manifest)
    return manifest


def set_expression_ranges(folder: str | Path, ranges: dict[str, float]) -> dict:
    """Write the performer's expression range into an existing manifest (checked first; files unchanged)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["expression_ranges"] = check_ranges(ranges)
    options.write_json(folder / MANIFEST, manifest)
    return manifest


def resolve(package: str | Path | Package) -> Path | Package:
    """`generic` → the embedded GENERIC_PACKAGE (a folder of that name: `./generic`); anything else as it is (a
    folder, or an opened Package)."""
    return GENERIC_PACKAGE if isinstance(package, (str, Path)) and str(package) == GENERIC else package

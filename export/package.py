"""The performer package: a folder of ONNX graphs, the mesh topology and a manifest with a SHA-256 per file.

    PACKAGE/manifest.json   format, input spec, versions, files {name: sha256}
    PACKAGE/tracker.onnx    uint8 [1,256,256,3] crop → z, H, vertices (crop px), G, landmarks, presence
    PACKAGE/tracker_int8.onnx  the same with E_I's level-head weights in int8, for the CPU provider (optional:
                            export keeps it only while it moves no vertex more than 0.25 px; manifest int8_tracker)
    PACKAGE/texture.onnx    z [1,128], view v [1,3] → colour-corrected texture C(T) uint8 [1,S,S,3]
    PACKAGE/detector.onnx   BlazeFace: [1,3,128,128] in [-1,1] → regressors [1,896,16], logits [1,896]
    PACKAGE/topology.npz    triangles, uv, holes (the mesh the studio draws)
    PACKAGE/trt/            TensorRT engine cache, keyed by GPU compute capability + TensorRT version

Torch-free: the studio and `facetrack track` load packages through this module. `verify` re-hashes every file,
so a missing, truncated or tampered file is reported by name before any runtime touches it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserError

FORMAT, VERSION = "facetrack-package", 1
MANIFEST = "manifest.json"
# The embedded default performer (scripts/build_sample.sh), with its synthetic clip for demo and studio.
SAMPLE_PACKAGE = Path(__file__).resolve().parent / "sample_package"
GRAPH_NAMES = ("tracker", "texture", "detector")
GRAPHS = tuple(f"{name}.onnx" for name in GRAPH_NAMES)
INT8_TRACKER = "tracker_int8.onnx"
TOPOLOGY = "topology.npz"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Package:
    path: Path
    manifest: dict

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        """Whether the (verified) manifest lists `name`: optional files such as INT8_TRACKER."""
        return name in self.manifest["files"]

    @property
    def crop_size(self) -> int:
        return int(self.manifest["input"]["crop_size"])

    @property
    def texture_size(self) -> int:
        return int(self.manifest["texture"]["size"])

    def topology(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(triangles [F,3] int32, uv [468,2] float32, holes [K,3] int32)."""
        with np.load(self.file(TOPOLOGY), allow_pickle=False) as z:
            return z["triangles"], z["uv"], z["holes"]


def write_manifest(folder: Path, manifest: dict) -> dict:
    """Adds the format header and the hash of every file named in manifest['files'] (a list), then writes it."""
    files = {name: sha256(folder / name) for name in manifest.pop("files")}
    manifest = {"format": FORMAT, "version": VERSION, **manifest, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def open_package(path: str | Path) -> Package:
    """Load and verify a package. Any problem → UserError naming the file."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such performer package (a folder made by `facetrack export`)")
    mpath = path / MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise UserError(f"{mpath}: missing (not a performer package)") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{mpath}: corrupt manifest ({err})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise UserError(f"{mpath}: not a {FORMAT} v{VERSION} manifest")
    files = manifest.get("files", {})
    for name in (*GRAPHS, TOPOLOGY):
        if name not in files:
            raise UserError(f"{mpath}: lists no {name}")
    for name, digest in files.items():
        f = path / name
        if not f.is_file():
            raise UserError(f"{f}: missing from the package")
        if sha256(f) != digest:
            raise UserError(f"{f}: hash mismatch (file changed or truncated since export)")
    return Package(path, manifest)


def add_files(folder: str | Path, names: list[str]) -> dict:
    """List extra files (e.g. a demo clip) in an existing manifest, with their hashes."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"].update({name: sha256(folder / name) for name in names})
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest

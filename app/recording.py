"""Session recording: the captured video plus per-frame z, H, expressions (and optionally G), crash-tolerant.

A session folder holds
    session.json     manifest: written at start (closed: false), rewritten at close (frame count, duration)
    video.mp4        the source frames as captured (H.264, fragmented MP4: a file cut short still plays)
    frames.jsonl     one JSON line per frame {"i", "t", "z", "H", "e": {name: value}, "g": row of vertices or null};
                     a frame with no face is {"i", "t", "found": false} (video frame i and line i always match)
    vertices.f32     optional: G of each frame that had one, raw float32 little-endian [n, 468, 3], appended
Every frame's line goes to the OS at once (a killed process loses at most the line being written) and the files
are fsynced about once per second (a power cut loses at most ~1 s); video keyframes (fragments) are 1 s apart.
Writing blocks on disk and on the encoder pipe: call it from a recording worker, not the capture loop.
`load_session` reads a folder back, also one whose recorder never closed (truncated last line, no frame count).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


MANIFEST, VIDEO, FRAMES, VERTICES = "session.json", "video.mp4", "frames.jsonl", "vertices.f32"
FORMAT_VERSION = 1
N_VERTICES = 468


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)  # a crash leaves the old manifest or the new one, never half of one


class _Video:
    """H.264 in fragmented MP4 through the imageio-ffmpeg binary (engine.video.VideoWriter writes a plain MP4,
    whose index is only written at close, so a killed session would leave an unplayable file)."""

    def __init__(self, path: Path, fps: float, frame_size: tuple[int, int]):
        import imageio_ffmpeg

        self._gen = imageio_ffmpeg.write_frames(
            str(path), tuple(frame_size), fps=fps, codec="libx264", quality=None, macro_block_size=2,
            ffmpeg_log_level="error",
            output_params=["-crf", "20", "-preset", "veryfast", "-g", str(max(1, round(fps))),
                           "-movflags", "+frag_keyframe+empty_moov+default_base_moof"])
        self._gen.send(None)

    def write(self, frame_rgb: np.ndarray) -> None:
        self._gen.send(np.ascontiguousarray(frame_rgb, dtype=np.uint8))

    def close(self) -> None:
        self._gen.close()


class SessionRecorder:
    """Records one session into `folder`. frame_size = (width, height) of the RGB frames passed to `write`."""

    def __init__(self, folder: str | Path, fps: float, frame_size: tuple[int, int], sync_interval: float = 1.0,
                 clock=time.monotonic):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self._clock, self._sync_interval = clock, sync_interval
        self.manifest = {
            "format": FORMAT_VERSION, "fps": float(fps), "frame_size": list(self.frame_size),
            "started_unix": time.time(), "closed": False, "frames": None,
            "files": {"video": VIDEO, "frames": FRAMES, "vertices": VERTICES},
            "vertices_layout": f"float32 little-endian [n, {N_VERTICES}, 3], cm, canonical head frame",
        }
        _write_json_atomic(self.folder / MANIFEST, self.manifest)
        self._video = _Video(self.folder / VIDEO, fps, self.frame_size)
        self._frames = open(self.folder / FRAMES, "a", encoding="utf-8")
        self._vertices = None
        self.count = self._vertex_rows = 0
        self._first_t = self._last_t = None
        self._last_sync = self._clock()

    def write(self, frame_rgb: np.ndarray, timestamp: float, z=None, H=None, expressions: dict | None = None,
              G=None) -> None:
        """Append one frame: the captured RGB image, its time (s), latent z, pose H, expressions and mesh G;
        z None: no face in this frame (kept, so the session's frames stay in step with its video)."""
        if frame_rgb.shape[:2] != self.frame_size[::-1]:
            raise ValueError(f"frame is {frame_rgb.shape[1]}x{frame_rgb.shape[0]}, session is "
                             f"{self.frame_size[0]}x{self.frame_size[1]}")
        self._video.write(frame_rgb)
        if z is None:
            self._line(json.dumps({"i": self.count, "t": float(timestamp), "found": False}), timestamp)
            return
        row = None
        if G is not None:
            if self._vertices is None:
                self._vertices = open(self.folder / VERTICES, "ab")
            self._vertices.write(np.asarray(G, dtype="<f4").reshape(N_VERTICES, 3).tobytes())
            self._vertices.flush()
            row, self._vertex_rows = self._vertex_rows, self._vertex_rows + 1
        # z as float32 in its shortest exact text (half the size of float64 repr); H and values as float64.
        z32 = np.asarray(z, dtype=np.float32).ravel()
        z_text = ",".join(map(str, z32)) if np.isfinite(z32).all() else json.dumps(z32.tolist())[1:-1]
        rest = json.dumps({"t": float(timestamp), "H": [float(v) for v in np.asarray(H).ravel()],
                           "e": {str(k): float(v) for k, v in expressions.items()}, "g": row})
        self._line(f'{{"i": {self.count}, "z": [{z_text}], {rest[1:]}', timestamp)

    def _line(self, text: str, timestamp: float) -> None:
        self._frames.write(text + "\n")
        self._frames.flush()  # to the OS now: a killed process keeps every completed line
        self.count += 1
        self._first_t = timestamp if self._first_t is None else self._first_t
        self._last_t = timestamp
        if self._clock() - self._last_sync >= self._sync_interval:
            self.sync()

    def sync(self) -> None:
        """Force the frame data to disk (survives a power cut, not only a crash)."""
        for f in (self._frames, self._vertices):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
        self._last_sync = self._clock()

    def close(self) -> None:
        if self._frames.closed:
            return
        self._video.close()
        self.sync()
        self._frames.close()
        if self._vertices is not None:
            self._vertices.close()
        duration = 0.0 if self._first_t is None else self._last_t - self._first_t
        self.manifest.update(closed=True, frames=self.count, duration_s=duration)
        _write_json_atomic(self.folder / MANIFEST, self.manifest)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class Session:
    """A recorded session as arrays: N frames, K expression names (in first-seen order)."""
    folder: Path
    manifest: dict
    t: np.ndarray              # [N] float64 s
    z: np.ndarray              # [N, Z] float32
    H: np.ndarray              # [N, 6] float64
    names: list[str]           # [K]
    E: np.ndarray              # [N, K] float64 expression values (0 where a frame lacked the name)
    G: np.ndarray | None = field(default=None)  # [N, 468, 3] float32, NaN where a frame had none; None if none
    found: np.ndarray | None = field(default=None)  # [N] bool: a face in this frame (z, H NaN where not)

    def expressions(self, i: int) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, self.E[i])}

    def __len__(self) -> int:
        return len(self.t)


def load_session(folder: str | Path) -> Session:
    """Read a session folder back; a recorder killed mid-write leaves a truncated last line, which is skipped."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    records = []
    with open(folder / FRAMES, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if any(rest.strip() for rest in lines[k + 1:]):
                raise ValueError(f"{folder / FRAMES}: line {k + 1} is corrupt") from None
            break  # the line being written when the process died
    found = np.array([r.get("found", True) for r in records], bool)
    for r in records:
        if not r.get("found", True):
            r.update(z=None, H=[math.nan] * 6, e={}, g=None)
    names = list(dict.fromkeys(n for r in records for n in r["e"]))
    z_dim = next((len(r["z"]) for r in records if r["z"] is not None), 0)
    G = None
    vertex_path = folder / VERTICES
    if vertex_path.exists() and any(r["g"] is not None for r in records):
        raw = np.fromfile(vertex_path, dtype="<f4")
        rows = raw[: raw.size // (N_VERTICES * 3) * N_VERTICES * 3].reshape(-1, N_VERTICES, 3)
        G = np.full((len(records), N_VERTICES, 3), np.nan, np.float32)
        for i, r in enumerate(records):
            if r["g"] is not None and r["g"] < len(rows):
                G[i] = rows[r["g"]]
    return Session(
        folder=folder, manifest=manifest,
        t=np.array([r["t"] for r in records], np.float64),
        z=np.array([[math.nan] * z_dim if r["z"] is None else r["z"] for r in records],
                   np.float32).reshape(len(records), z_dim),
        H=np.array([r["H"] for r in records], np.float64).reshape(len(records), 6),
        names=names,
        E=np.array([[r["e"].get(n, 0.0) for n in names] for r in records],
                   np.float64).reshape(len(records), len(names)),
        G=G, found=found,
    )


# ---------------------------------------------------------------- exports
# The Live Link Face CSV (its own column order) lives in app.livelink; these names stay importable from here.
from app.livelink import LLF_COLUMNS, LLF_ROTATIONS, export_csv, head_angles_arkit, timecode  # noqa: E402, F401


def export_obj_sequence(session: Session, folder: str | Path, triangles: np.ndarray, uv: np.ndarray) -> list[Path]:
    """One OBJ per frame with a recorded G (frame_000000.obj ...), in cm, y up, the face looking along +z.

    The canonical frame (x = subject's left, y down, z away from the camera) turns 180° about x, a rotation,
    so the triangles' winding (engine.topology: outward normals) stays outward. UV v is flipped (OBJ's v is up).
    """
    if session.G is None:
        raise ValueError("the session recorded no vertices (pass G to SessionRecorder.write)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tri = np.asarray(triangles, np.int64) + 1
    vt = "".join(f"vt {u:.6f} {1.0 - v:.6f}\n" for u, v in np.asarray(uv, np.float64))
    faces = "".join(f"f {a}/{a} {b}/{b} {c}/{c}\n" for a, b, c in tri)
    written = []
    for i, G in enumerate(session.G):
        if np.isnan(G).any():
            continue
        verts = "".join(f"v {x:.5f} {-y:.5f} {-z:.5f}\n" for x, y, z in G.astype(np.float64))
        path = folder / f"frame_{i:06d}.obj"
        path.write_text(f"# frame {i}, t = {session.t[i]:.6f} s\n{verts}{vt}{faces}")
        written.append(path)
    return written


def add_parser(sub) -> None:
    p = sub.add_parser("export-session", help="a recorded session as a Live Link Face CSV and/or an OBJ sequence")
    p.add_argument("session", metavar="SESSION", type=Path)
    p.add_argument("--csv", type=Path, help="write a Live Link Face-style CSV here")
    p.add_argument("--obj", type=Path, help="write one OBJ per frame into this folder")
    p.add_argument("--package", type=Path, help="performer package whose topology the OBJs use (default: sample)")
    p.set_defaults(run=_export_cli)


def _export_cli(args) -> None:
    from engine.errors import UserError

    if not (args.csv or args.obj):
        raise UserError("nothing to do: give --csv FILE and/or --obj DIR")
    try:
        session = load_session(args.session)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{args.session}: not a readable session ({err})") from None
    if args.csv:
        export_csv(session, args.csv)
        print(f"{args.csv}: {len(session)} frames")
    if args.obj:
        from export.package import SAMPLE_PACKAGE, open_package

        triangles, uv, _ = open_package(args.package or SAMPLE_PACKAGE).topology()
        try:
            written = export_obj_sequence(session, args.obj, triangles, uv)
        except ValueError as err:
            raise UserError(f"{args.session}: {err}") from None
        print(f"{args.obj}: {len(written)} OBJ files")

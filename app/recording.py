"""Session recording: the captured video plus per-frame z, H, expressions (and optionally G), crash-tolerant.

A session folder holds
    session.json     manifest: written at start (closed: false), rewritten at close (frame count, duration)
    video.mp4        the source frames as captured (H.264, fragmented MP4: a file cut short still plays)
    frames.jsonl     one JSON line per frame {"i", "t", "z" (empty from a tracker without a latent), "H",
                     "e": {name: value}, "g": row of vertices or null};
                     a frame with no face is {"i", "t", "found": false} (video frame i and line i always match)
    vertices.f32     optional: G of each frame that had one, raw float32 little-endian [n, 468, 3], appended
Every frame's line goes to the OS at once (a killed process loses at most the line being written) and the files
are fsynced about once per second (a power cut loses at most ~1 s); video keyframes (fragments) are 1 s apart.
Writing blocks on disk and on the encoder pipe: call it from a recording worker, not the capture loop.
`load_session` reads a folder back, also one whose recorder never closed (truncated last line, no frame count).
"""
from __future__ import annotations

import contextlib
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
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # a crash leaves the old manifest or the new one, never half of one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _naming(path: Path):
    """An OSError from write()/flush() names no file: name `path` (disk full is then one clear line)."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None
        raise


def _attempt(errors: list, path: Path, fn, *args) -> None:
    """fn(*args); an OSError is appended to `errors` (naming `path` when it names no file) instead of raised."""
    try:
        with _naming(path):
            fn(*args)
    except OSError as err:
        errors.append(err)


class _Video:
    """H.264 in fragmented MP4 through the imageio-ffmpeg binary (engine.video.VideoWriter writes a plain MP4,
    whose index is only written at close, so a killed session would leave an unplayable file).

    What a kill of both the recorder and its ffmpeg can lose is what ffmpeg holds: x264's lookahead and B-frames
    (`-tune zerolatency`: none, each frame leaves the encoder as it arrives) and the open fragment (a fragment is
    cut every FRAGMENT_S and flushed to the file at once). Keyframes stay 1 s apart, for seeking."""

    FRAGMENT_S = 0.25

    def __init__(self, path: Path, fps: float, frame_size: tuple[int, int]):
        import imageio_ffmpeg

        from engine.video import FFMPEG_LOG_LEVEL, encoder_process

        self.path = path
        self._gen = imageio_ffmpeg.write_frames(
            str(path), tuple(frame_size), fps=fps, codec="libx264", quality=None, macro_block_size=2,
            ffmpeg_log_level=FFMPEG_LOG_LEVEL,
            output_params=["-crf", "20", "-preset", "veryfast", "-tune", "zerolatency", "-g", str(max(1, round(fps))),
                           "-movflags", "+frag_keyframe+empty_moov+default_base_moof",
                           "-frag_duration", str(int(self.FRAGMENT_S * 1e6)), "-flush_packets", "1"])
        self._gen.send(None)
        self._process = encoder_process(self._gen)

    def write(self, frame_rgb: np.ndarray) -> None:
        from engine.video import encoder_error

        try:
            self._gen.send(np.ascontiguousarray(frame_rgb, dtype=np.uint8))
        except OSError as err:
            raise encoder_error(err, self.path, self._process) from None

    def close(self) -> None:
        from engine.video import check_encoder

        self._gen.close()
        check_encoder(self._process, self.path)


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
            with _naming(self.folder / VERTICES):
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
        with _naming(self.folder / FRAMES):
            self._frames.write(text + "\n")
            self._frames.flush()  # to the OS now: a killed process keeps every completed line
        self.count += 1
        self._first_t = timestamp if self._first_t is None else self._first_t
        self._last_t = timestamp
        if self._clock() - self._last_sync >= self._sync_interval:
            self.sync()

    def sync(self) -> None:
        """Force the frame data to disk (survives a power cut, not only a crash). Each file is tried; the first
        failure (disk full) is raised after, naming its file."""
        errors = []
        for f, name in ((self._vertices, VERTICES), (self._frames, FRAMES)):  # rows before the lines naming them
            if f is not None and not f.closed:
                _attempt(errors, self.folder / name, f.flush)
                _attempt(errors, self.folder / name, os.fsync, f.fileno())
        try:                                       # the video as far as ffmpeg has written it
            fd = os.open(self.folder / VIDEO, os.O_RDONLY)
        except OSError:
            pass
        else:
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)
        self._last_sync = self._clock()
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Finish the video, sync and close the frame files, rewrite the manifest (closed: true). Every step is
        tried even when one fails (a dead encoder, a full disk), so the session is closed with what reached the
        disk; then the first failure is raised, naming its file."""
        if self._frames.closed:
            return
        errors = []
        _attempt(errors, self.folder / VIDEO, self._video.close)
        try:
            self.sync()
        except OSError as err:
            errors.append(err)
        _attempt(errors, self.folder / FRAMES, self._frames.close)
        if self._vertices is not None:
            _attempt(errors, self.folder / VERTICES, self._vertices.close)
        duration = 0.0 if self._first_t is None else self._last_t - self._first_t
        self.manifest.update(closed=True, frames=self.count, duration_s=duration)
        _attempt(errors, self.folder / MANIFEST, _write_json_atomic, self.folder / MANIFEST, self.manifest)
        if errors:
            raise errors[0]

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


class SessionError(ValueError):
    """A session folder that cannot be read back as recorded: the message names the file (and line)."""


def _is_number(v) -> bool:
    """A JSON number numpy can hold as float64 (not a bool; not an integer too big for a float)."""
    if isinstance(v, bool):
        return False
    return isinstance(v, float) or (isinstance(v, int) and abs(v) < 1e300)


MAX_FPS = 1000.0
MAX_UNIX = 1e11                 # year 5138: datetime and timecodes stay in range
MAX_SECONDS = 1e10              # |t| of a frame (s)


def _read_manifest(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SessionError(f"{path}: no such file (not a session folder)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SessionError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    try:
        manifest = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise SessionError(f"{path}: not JSON") from None
    if not isinstance(manifest, dict):
        raise SessionError(f"{path}: not a session manifest (a JSON object), but a {type(manifest).__name__}")
    fps = manifest.get("fps")
    if not (_is_number(fps) and math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise SessionError(f"{path}: fps must be a number in (0, {MAX_FPS:g}], got {fps!r}")
    start = manifest.get("started_unix")
    if not (_is_number(start) and math.isfinite(start) and 0 <= start < MAX_UNIX):
        raise SessionError(f"{path}: started_unix must be seconds since 1970, got {start!r}")
    version = manifest.get("format", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise SessionError(f"{path}: session format {version!r}; this version reads format {FORMAT_VERSION}")
    return manifest


def _check_record(r, where: str, z_dim: int | None, vertex_rows: int, vertex_path: Path) -> None:
    """One frames.jsonl record, as the recorder writes it; raises SessionError naming the line."""
    if not isinstance(r, dict):
        raise SessionError(f"{where}: not a JSON object")
    t = r.get("t")
    if not (_is_number(t) and math.isfinite(t) and abs(t) < MAX_SECONDS):
        raise SessionError(f"{where}: 't' must be a time in seconds, got {t!r}")
    found = r.get("found", True)
    if not isinstance(found, bool):
        raise SessionError(f"{where}: 'found' must be true or false, got {found!r}")
    if not found:
        return
    for key, n in (("z", z_dim), ("H", 6)):
        v = r.get(key)
        # z may be empty: a tracker without a latent (the generic package) found the face all the same
        if not (isinstance(v, list) and (v or key == "z") and all(map(_is_number, v))):
            raise SessionError(f"{where}: {key!r} must be a list of numbers, got {type(v).__name__}")
        if n is not None and len(v) != n:
            raise SessionError(f"{where}: {key!r} has {len(v)} values, {'earlier lines' if key == 'z' else 'need'} {n}")
    e = r.get("e")
    if not (isinstance(e, dict) and all(map(_is_number, e.values()))):
        raise SessionError(f"{where}: 'e' must be an object of expression values, got {type(e).__name__}")
    g = r.get("g")
    if g is None:
        return
    if not (isinstance(g, int) and not isinstance(g, bool) and g >= 0):
        raise SessionError(f"{where}: 'g' must be a vertex row (an integer ≥ 0) or null, got {g!r}")
    if g >= vertex_rows:
        held = f"holds {vertex_rows} rows" if vertex_path.exists() else "is missing"
        raise SessionError(f"{vertex_path}: {held}, but {where} refers to row {g}")


def load_session(folder: str | Path) -> Session:
    """Read a session folder back, trusting nothing in it: a manifest that is not a JSON object, an fps that is
    not a positive number, a line that is not an object or lacks a key, values of the wrong type, z of varying
    length, or a vertex row outside vertices.f32 is a SessionError (a ValueError) naming the file and line. A
    recorder killed mid-write leaves a truncated last line, which is skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SessionError(f"{folder}: no such session folder")
    manifest = _read_manifest(folder / MANIFEST)
    frames_path, vertex_path = folder / FRAMES, folder / VERTICES
    try:
        with open(frames_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        vertex_rows = vertex_path.stat().st_size // (N_VERTICES * 3 * 4) if vertex_path.exists() else 0
    except FileNotFoundError:
        raise SessionError(f"{frames_path}: no such file (not a session folder)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SessionError(f"{frames_path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    records, z_dim = [], None
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if any(rest.strip() for rest in lines[k + 1:]):
                raise SessionError(f"{frames_path}: line {k + 1} is corrupt (not JSON)") from None
            break  # the line being written when the process died
        _check_record(r, f"{frames_path}: line {k + 1}", z_dim, vertex_rows, vertex_path)
        if r.get("found", True):
            z_dim = len(r["z"])
        else:
            r = {"t": r["t"], "found": False}
        records.append(r)
    found = np.array([r.get("found", True) for r in records], bool)
    for r in records:
        if not r.get("found", True):
            r.update(z=None, H=[math.nan] * 6, e={}, g=None)
    names = list(dict.fromkeys(n for r in records for n in r["e"]))
    z_dim = z_dim or 0
    G = None
    if any(r["g"] is not None for r in records):
        raw = np.fromfile(vertex_path, dtype="<f4", count=vertex_rows * N_VERTICES * 3)
        rows = raw.reshape(-1, N_VERTICES, 3)
        G = np.full((len(records), N_VERTICES, 3), np.nan, np.float32)
        for i, r in enumerate(records):
            if r["g"] is not None:
                G[i] = rows[r["g"]]
    with np.errstate(over="ignore"):           # z beyond float32's range reads as ±inf, quietly
        z = np.array([[math.nan] * z_dim if r["z"] is None else r["z"] for r in records],
                     np.float32).reshape(len(records), z_dim)
    return Session(
        folder=folder, manifest=manifest,
        t=np.array([r["t"] for r in records], np.float64),
        z=z,
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
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        tmp.write_text(f"# frame {i}, t = {session.t[i]:.6f} s\n{verts}{vt}{faces}")
        os.replace(tmp, path)           # each OBJ whole (an earlier export's file until this one is complete)
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
    from engine import options
    from engine.errors import UserError

    if not (args.csv or args.obj):
        raise UserError("nothing to do: give --csv FILE and/or --obj DIR")
    try:
        session = load_session(args.session)
    except SessionError as err:
        raise UserError(str(err)) from None
    if args.obj and session.G is None:
        raise UserError(f"{args.session}: the session recorded no vertices, so there is no mesh to write as OBJ")
    if args.csv:
        with options.atomic_path(args.csv) as tmp:       # an earlier CSV stays whole if this fails
            export_csv(session, tmp)
        print(f"{args.csv}: {len(session)} frames")
    if args.obj:
        from export.package import SAMPLE_PACKAGE, open_package

        triangles, uv, _ = open_package(args.package or SAMPLE_PACKAGE).topology()
        written = export_obj_sequence(session, args.obj, triangles, uv)
        print(f"{args.obj}: {len(written)} OBJ files")

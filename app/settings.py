"""What the studio remembers between launches, per user (never inside a package: a package is hashed and may be
read-only or shared).

    CONFIG = $FACETRACK_CONFIG, else $XDG_CONFIG_HOME/facetrack (an absolute one), else ~/.config/facetrack
    CONFIG/studio.json              {"last_package": "/abs/path"}: the performer's own package, opened at launch
    CONFIG/packages/<KEY>.json      the performer's tuning of one package (PackageSettings)

KEY is the first 16 hex digits of the package's manifest.json sha256 (Package.manifest_sha256), so a rebuilt model
starts from the defaults: its calibration was of another model's decoded mesh. The model-free DemoTracker uses
the fixed key "demo"; a tracker with neither gets no saved settings (the controls still work for the session).

A package's file (every field optional; what is missing reads as the default):
    {"version": 1, "package": "/abs/path" (for people; not read),
     "neutral": null | {"measures": {...}, "eyes": {"left": {"aperture", "offset"}, "right": ...},
                        "head": null | [f, rx, ry, rz, tx, ty]},       app.tracking.TrackWorker.neutral_state()
     "shapes": {"jawOpen": {"gain": 1.3, "dead_zone": 0.05}, ...},   only shapes away from gain 1, dead zone 0
     "ranges": null | {"jawOpen": 0.2, ...},   "Measure my range" (TrackWorker.own_ranges; export.expressions.RANGED)
     "smoothing": {"on": true, "min_cutoff": 1.0, "beta": 1.0},      app.smoothing's performer pair
     "overlay": true,
     "camera": {"width": 1280, "height": 720, "fps": 30, "mirror": false},   0: the camera's own
     "backend": "auto" | "tensorrt" | "cuda" | "cpu"}

JSON only (never pickle); a file that is missing, unreadable or malformed reads as the defaults; a package file's
bad fields (wrong type, not finite, out of range, unknown shape names) read as their defaults and are listed in
`problems`, for one line in the studio. Writes are atomic (engine.options.write_json); a failed save is one line.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from app.smoothing import BETA_RANGE, DEFAULT_BETA, DEFAULT_MIN_CUTOFF, MIN_CUTOFF_RANGE
from engine import options
from engine.userdirs import user_dir
from export.expressions import ARKIT_NAMES, DEAD_ZONE_RANGE, GAIN_RANGE, check_neutral, check_ranges

VERSION = 1
BACKENDS = ("auto", "tensorrt", "cuda", "cpu")       # export.runtime's, less the development-only torch
CAMERA_WIDTH, CAMERA_HEIGHT, CAMERA_FPS = (160, 7680), (120, 4320), (1, 240)   # besides 0: the camera's own


def config_dir() -> Path:
    return user_dir("config")


def read_json(path: Path) -> dict:
    """The JSON object in `path`, or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _studio_file() -> Path:
    return config_dir() / "studio.json"


def last_package() -> Path | None:
    """The package the performer last opened (or built with "Make my model") if it still holds a manifest."""
    value = read_json(_studio_file()).get("last_package")
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    return path if (path / "manifest.json").is_file() else None


def remember_package(path: str | Path | None) -> None:
    """Open `path` at the next launch (None: forget it). A failure to save is not worth interrupting a performer
    for: the studio works the same, it only forgets."""
    data = read_json(_studio_file())
    data["last_package"] = None if path is None else str(Path(path).absolute())
    try:
        options.write_json(_studio_file(), data)
    except OSError:
        pass


# ------------------------------------------------------------------------------------- per-package settings
@dataclass
class PackageSettings:
    neutral: dict | None = None       # TrackWorker.neutral_state(), None: not calibrated
    ranges: dict | None = None        # TrackWorker.own_ranges, None: the package's own range (or the average face's)
    gains: dict[str, float] = field(default_factory=dict)        # ARKit name → gain (1 when absent)
    dead_zones: dict[str, float] = field(default_factory=dict)   # ARKit name → dead zone (0 when absent)
    smoothing: bool = True
    min_cutoff: float = DEFAULT_MIN_CUTOFF
    beta: float = DEFAULT_BETA
    overlay: bool = True
    camera_width: int = 0             # 0 (both): the camera's own size
    camera_height: int = 0
    camera_fps: int = 0               # 0: the camera's own rate
    mirror: bool = False              # preview only: tracking and streaming are never mirrored
    backend: str = "auto"

    def to_json(self) -> dict:
        names = [n for n in ARKIT_NAMES if self.gains.get(n, 1.0) != 1.0 or self.dead_zones.get(n, 0.0) != 0.0]
        return {
            "version": VERSION,
            "neutral": self.neutral,
            "ranges": self.ranges,
            "shapes": {n: {"gain": self.gains.get(n, 1.0), "dead_zone": self.dead_zones.get(n, 0.0)} for n in names},
            "smoothing": {"on": self.smoothing, "min_cutoff": self.min_cutoff, "beta": self.beta},
            "overlay": self.overlay,
            "camera": {"width": self.camera_width, "height": self.camera_height, "fps": self.camera_fps,
                       "mirror": self.mirror},
            "backend": self.backend,
        }

    @classmethod
    def from_json(cls, data) -> tuple[PackageSettings, list[str]]:
        """Settings from a file's object, and the fields that were bad (read as their defaults)."""
        out, problems = cls(), []
        if not isinstance(data, dict):
            return out, ["not a JSON object"]

        def take(section: dict, key: str, attr: str, check) -> None:
            if key not in section:
                return
            value = check(section[key])
            if value is None:
                problems.append(attr)
            else:
                setattr(out, attr, value)

        if data.get("neutral") is not None:
            try:
                out.neutral = _neutral(data["neutral"])
            except ValueError:
                problems.append("neutral")
        if data.get("ranges") is not None:
            try:
                out.ranges = check_ranges(data["ranges"])
            except ValueError:
                problems.append("ranges")
        _shapes(data.get("shapes", {}), out, problems)
        smoothing = _section(data, "smoothing", problems)
        take(smoothing, "on", "smoothing", _bool)
        take(smoothing, "min_cutoff", "min_cutoff", lambda v: _number(v, *MIN_CUTOFF_RANGE))
        take(smoothing, "beta", "beta", lambda v: _number(v, *BETA_RANGE))
        take(data, "overlay", "overlay", _bool)
        camera = _section(data, "camera", problems)
        take(camera, "width", "camera_width", lambda v: _int_or_zero(v, *CAMERA_WIDTH))
        take(camera, "height", "camera_height", lambda v: _int_or_zero(v, *CAMERA_HEIGHT))
        take(camera, "fps", "camera_fps", lambda v: _int_or_zero(v, *CAMERA_FPS))
        take(camera, "mirror", "mirror", _bool)
        if (out.camera_width == 0) != (out.camera_height == 0):      # half a size is no size
            out.camera_width = out.camera_height = 0
            if not {"camera_width", "camera_height"} & set(problems):
                problems.append("camera size")
        take(data, "backend", "backend", lambda v: v if v in BACKENDS else None)
        return out, problems


def _section(data: dict, key: str, problems: list) -> dict:
    value = data.get(key, {})
    if isinstance(value, dict):
        return value
    problems.append(key)
    return {}


def _bool(v):
    return v if isinstance(v, bool) else None


def _number(v, lo: float, hi: float):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi   # NaN and ±inf fail the range
    return float(v) if ok else None


def _int_or_zero(v, lo: int, hi: int):
    ok = isinstance(v, int) and not isinstance(v, bool) and (v == 0 or lo <= v <= hi)
    return v if ok else None


def _neutral(state) -> dict:
    """A stored neutral, checked (export.expressions.check_neutral) with its head pose; ValueError if bad."""
    checked = check_neutral(state)
    head = state.get("head")
    if head is not None:
        if not isinstance(head, list) or len(head) != 6 or any(_number(v, -1e6, 1e6) is None for v in head) \
                or not head[0] > 0:
            raise ValueError("head pose malformed")
        head = [float(v) for v in head]
    return {"measures": checked["measures"],
            "eyes": {s: {"aperture": e["aperture"], "offset": list(e["offset"])} for s, e in checked["eyes"].items()},
            "head": head}


def _shapes(shapes, out: PackageSettings, problems: list) -> None:
    if not isinstance(shapes, dict):
        problems.append("shapes")
        return
    for name, entry in shapes.items():
        if name not in ARKIT_NAMES or not isinstance(entry, dict):
            problems.append(f"shapes.{name}")
            continue
        gain = _number(entry.get("gain", 1.0), *GAIN_RANGE)
        dead = _number(entry.get("dead_zone", 0.0), *DEAD_ZONE_RANGE)
        if gain is None or dead is None:
            problems.append(f"shapes.{name}")
        if gain not in (None, 1.0):
            out.gains[name] = gain
        if dead not in (None, 0.0):
            out.dead_zones[name] = dead


def package_key(tracker) -> str | None:
    """The settings key of an opened tracker (see the module notes), or None."""
    digest = getattr(getattr(tracker, "package", None), "manifest_sha256", None)
    if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{16,}", digest):
        return digest[:16]
    if tracker is not None:
        from app.demo_tracker import DemoTracker

        if isinstance(tracker, DemoTracker):
            return "demo"
    return None


def folder_key(folder) -> str | None:
    """The key of the package in `folder` before it is opened (the same as `package_key` of its tracker), so it
    can be opened on its saved backend at once; None when it has no readable manifest."""
    try:
        return hashlib.sha256((Path(folder) / "manifest.json").read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def saved_backend(folder) -> str:
    """The backend saved for the package in `folder` (auto when nothing is saved), to open it on that at once."""
    return load_package_settings(folder_key(folder))[0].backend


def package_settings_file(key: str) -> Path:
    return config_dir() / "packages" / f"{key}.json"


def load_package_settings(key: str | None) -> tuple[PackageSettings, list[str]]:
    """The saved settings for `key` (defaults when there are none) and what was wrong in the file."""
    if key is None:
        return PackageSettings(), []
    path = package_settings_file(key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):      # never saved (or no config folder to save in)
        return PackageSettings(), []
    except (OSError, ValueError):
        return PackageSettings(), ["unreadable or not JSON"]
    return PackageSettings.from_json(data)


def problems_line(key: str, problems: list[str]) -> str:
    shown = ", ".join(problems[:4]) + (f" and {len(problems) - 4} more" if len(problems) > 4 else "")
    return f"settings {package_settings_file(key)}: {shown} ignored (defaults used)"


def save_package_settings(key: str | None, settings: PackageSettings, package_path=None) -> str | None:
    """Save atomically; None when saved (or nothing to save: no key), else the one-line reason it was not."""
    if key is None:
        return None
    path = package_settings_file(key)
    data = settings.to_json()
    if package_path is not None:
        data["package"] = str(Path(package_path).absolute())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        options.write_json(path, data)
    except OSError as e:
        return f"cannot save settings to {path}: {e.strerror or e}"
    return None

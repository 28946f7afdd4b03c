"""What the studio remembers between launches, per user (never inside a package: a package is hashed and may be
read-only or shared).

    CONFIG = $FACETRACK_CONFIG, else $XDG_CONFIG_HOME/facetrack (an absolute one), else ~/.config/facetrack
    CONFIG/studio.json              {"last_package": "/abs/path"}: the performer's own package, opened at launch

JSON only (never pickle); a file that is missing, unreadable or malformed reads as the defaults; writes are
atomic (engine.options.write_json).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from engine import options


def config_dir() -> Path:
    own = os.environ.get("FACETRACK_CONFIG")
    if own:
        return Path(own).expanduser().absolute()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "facetrack"
    return Path.home() / ".config" / "facetrack"


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

"""The per-user folders, outside any package or repository (torch-free):

    cache    $FACETRACK_CACHE,  else $XDG_CACHE_HOME/facetrack,  else ~/.cache/facetrack        (TensorRT engines)
    config   $FACETRACK_CONFIG, else $XDG_CONFIG_HOME/facetrack, else ~/.config/facetrack       (studio settings)
    data     $FACETRACK_DATA,   else $XDG_DATA_HOME/facetrack,   else ~/.local/share/facetrack  (performers' packages)

An XDG variable counts only when it is absolute, as the XDG spec says.
"""
from __future__ import annotations

import os
from pathlib import Path

_KINDS = {"cache": ("FACETRACK_CACHE", "XDG_CACHE_HOME", (".cache",)),
          "config": ("FACETRACK_CONFIG", "XDG_CONFIG_HOME", (".config",)),
          "data": ("FACETRACK_DATA", "XDG_DATA_HOME", (".local", "share"))}


def user_dir(kind: str) -> Path:
    own, xdg_name, home = _KINDS[kind]
    if value := os.environ.get(own):
        return Path(value).expanduser().absolute()
    xdg = os.environ.get(xdg_name)
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "facetrack"
    return Path.home().joinpath(*home, "facetrack")

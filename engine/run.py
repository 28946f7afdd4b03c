"""The run folder: where each offline step writes and reads, owned here and nowhere else.

    RUN/enrollment/*.npy   engine.enroll: crops, landmarks, H, G, textures, weights, source, crop_boxes (cx, cy, size, angle),
                           prompt (the guided prompt each frame was recorded under, engine.prompts)
    RUN/dam/               engine.train_dam: the DAM (model.safetensors, config.json) and latents.npy (z_gt)
    RUN/i2z/               engine.train_i2z, or engine.adapt for an adapted run: E_I
    RUN/colour/            engine.adapt: C, the 1×1 colour correction (identity when absent)

An adapted run or an ablation run shares its parent's enrollment (and DAM) through `share`. Arrays are loaded
with allow_pickle=False: a run folder may come from elsewhere.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import prompts
from engine.errors import UserError

ENROLLMENT, DAM, I2Z, COLOUR = "enrollment", "dam", "i2z", "colour"
WEIGHTS = "model.safetensors"
LATENTS = "latents.npy"


@dataclass(frozen=True)
class Run:
    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    @property
    def enrollment(self) -> Path:
        return self.path / ENROLLMENT

    @property
    def dam(self) -> Path:
        return self.path / DAM

    @property
    def i2z(self) -> Path:
        return self.path / I2Z

    @property
    def colour(self) -> Path:
        return self.path / COLOUR

    def has_tracker(self) -> bool:
        """A trained E_I with its DAM: what `eval RUN` and `export RUN` need."""
        return (self.i2z / WEIGHTS).is_file() and self.dam.is_dir()

    def share(self, parent: "Run", link: tuple[str, ...] = (ENROLLMENT, DAM), copy: tuple[str, ...] = ()) -> None:
        """Make this run use `parent`'s folders: `link` as symlinks (read-only use), `copy` as copies (this run
        may change them)."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in link:
            target = self.path / name
            if not target.exists():
                target.symlink_to((parent.path / name).resolve(), target_is_directory=True)
        for name in copy:
            if (self.path / name).resolve() != (parent.path / name).resolve():
                shutil.copytree(parent.path / name, self.path / name, dirs_exist_ok=True)


def load_enrollment(run: str | Path | Run, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named enrollment arrays of a run, checked to exist, to load without pickle and to agree on the number
    of frames. Any problem → UserError naming the file and the step that makes it."""
    run = run if isinstance(run, Run) else Run(run)
    folder = run.enrollment
    missing = [f"{k}.npy" for k in keys if not (folder / f"{k}.npy").is_file()]
    if missing:
        raise UserError(f"{folder}: no enrollment ({', '.join(missing)} missing); run "
                        f"`facetrack enroll VIDEO --out {run.path}` (or `facetrack build`) first")
    data = {}
    for k in keys:
        try:
            data[k] = np.load(folder / f"{k}.npy", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise UserError(f"{folder / f'{k}.npy'}: cannot read enrollment array ({err})") from None
    if len({len(a) for a in data.values()}) > 1:
        raise UserError(f"{folder}: enrollment arrays disagree on the number of frames")
    return data


def enrollment_prompts(run: str | Path | Run) -> np.ndarray | None:
    """The guided prompt key of each enrollment frame (engine.prompts; "" for none), or None when the run has none
    (enrolled before prompts were kept). Loaded as load_enrollment loads."""
    run = run if isinstance(run, Run) else Run(run)
    if not (run.enrollment / "prompt.npy").is_file():
        return None
    return prompts.keys_of(load_enrollment(run, ("prompt",))["prompt"])

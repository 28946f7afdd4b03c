"""Model folders: `config.json` + `model.safetensors`. Nothing is ever unpickled; any problem with a file is a
UserError that names it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from engine import options
from engine.errors import UserError

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def save_model(module: nn.Module, config: dict, folder: str | Path, skip: str | None = None) -> Path:
    """Write the module's state (less keys starting with `skip`, e.g. frozen weights shipped elsewhere)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()
             if not (skip and k.startswith(skip))}
    save_file(state, str(folder / WEIGHTS_FILE))
    options.write_json(folder / CONFIG_FILE, config)
    return folder


def load_model(folder: str | Path, build: Callable[[dict], nn.Module], what: str, hint: str,
               skip: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Build the module from config.json with `build` and load its weights (eval mode).

    `what` names the model in messages ("DAM"), `hint` says how to make one; keys starting with `skip` are not
    stored and keep the values `build` gave them.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise UserError(f"{path}: no such file ({hint})")
    try:
        module = build(json.loads(config_path.read_text()))
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{config_path}: not a {what} config ({err})") from None
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{weights_path}: corrupt {what} weights ({err})") from None
    expected = {k for k in module.state_dict() if not (skip and k.startswith(skip))}
    if set(state) != expected:
        raise UserError(f"{weights_path}: weights do not match {config_path.name} (missing "
                        f"{sorted(expected - set(state))[:3]}, unexpected {sorted(set(state) - expected)[:3]})")
    try:
        module.load_state_dict(state, strict=skip is None)
    except RuntimeError as err:
        raise UserError(f"{weights_path}: weights do not match {config_path.name} ({str(err).splitlines()[0]})") \
            from None
    return module.to(device).eval()

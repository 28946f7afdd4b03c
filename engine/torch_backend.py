"""The development backend of export.runtime.Tracker: the package's source run in torch, behind the same
session interface as ONNX Runtime (`run(output_names, feeds) -> list of arrays`), so the tracking loop is shared.
Only `--backend torch` imports this (the live app never does)."""
from __future__ import annotations

import numpy as np
import torch

from engine import dam as dam_module
from engine import i2znet
from engine.errors import UserError
from engine.run import Run
from engine.teacher import FaceDetector
from export.onnx_export import TextureGraph, TrackerGraph, load_colour


class TorchSession:
    def __init__(self, module: torch.nn.Module, inputs: list[str], outputs: list[str]):
        self.module, self.inputs, self.outputs = module.eval(), inputs, outputs

    def get_providers(self) -> list[str]:
        return ["torch"]

    @torch.no_grad()
    def run(self, names, feeds: dict) -> list[np.ndarray]:
        out = self.module(*(torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in self.inputs))
        named = dict(zip(self.outputs, out if isinstance(out, tuple) else (out,)))
        return [named[n].numpy() for n in (names or self.outputs)]


def sessions(package):
    """Sessions for the three graphs from the run the package was exported from (manifest `source_run`)."""
    run = Run(package.manifest.get("source_run", ""))
    if not run.has_tracker():
        raise UserError(f"{package.path}: the torch backend needs the package's source run ({run.path}), "
                        "which is not on this machine; use an ONNX Runtime backend")
    dam, e_i = dam_module.load(run.dam), i2znet.load(run.i2z)
    made = {
        "tracker": TorchSession(TrackerGraph(e_i, dam), ["crop"], ["z", "H", "vertices", "G", "landmarks", "presence"]),
        "texture": TorchSession(TextureGraph(dam, load_colour(run.path)), ["z", "v"], ["texture", "texture_raw"]),
        "detector": TorchSession(FaceDetector(), ["image"], ["regressors", "logits"]),
    }
    return made, f"torch/{torch.__version__}", None

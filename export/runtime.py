"""The live tracking runtime (no torch): one `Tracker` interface over a package's ONNX graphs, of either kind
(export.package): a performer package's tracker graph (PackageModel: z, H, vertices, and the DAM texture), or the
generic package's landmarker (GenericModel: MediaPipe's 468 points, H and G fitted to them; no texture). The name
`generic` opens the embedded generic package.

Backends, chosen automatically (override with `backend=`):
  tensorrt     native TensorRT engines (export.trt_engine: module `tensorrt`, else `tensorrt_rtx`; fp16; cached per
               user, keyed by the package's manifest hash, the GPU and the TensorRT version: never inside a package),
               per graph, else ONNX Runtime's TensorRT provider (fp16, its cache in that folder's ort/), else CUDA,
               else CPU
  cuda         ONNX Runtime's CUDA provider
  cpu          ONNX Runtime's CPU provider (the tracker from tracker_int8.onnx when the package has it)
  torch        development only: the package's source run in torch (engine.torch_backend, imported on request)
The backend reports what actually runs (`session.get_providers()`; native and ONNX Runtime graphs both named when
they are mixed), and `fallback` holds one line saying what was wanted and why it is not in use.

The tracking loop is engine.tracking's, the one every tracker in the project runs: detect with BlazeFace at start
and after loss; otherwise crop from the previous frame's head pose; run the tracker graph (or the generic landmarker)
on the manifest's crop size, 192²; map results back to the frame.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine import pose
from engine.detection import detections, detector_input, ssd_anchors
from engine.errors import UserError
from engine.tracking import CropOutput, ExpressionBasis, FaceLoop, TrackOptions
from export.package import INT8_TRACKER, IRIS, Package, check_graph, open_package, resolve

# ONNX Runtime intra-op threads when none are asked for. The graphs are small (~4 ms on one core): on 2 cores a
# second, non-spinning thread cost more in hand-offs than it saved (tracker 5.4 vs 4.0 ms), and spinning threads
# would take the cores the capture, texture and UI threads need. 0 means ONNX Runtime's own choice (all cores).
DEFAULT_THREADS = 1
BACKENDS = ("auto", "tensorrt", "cuda", "cpu", "torch")
PRECISIONS = ("auto", "fp32")
_PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def _trt_cache(package: Package) -> Path:
    """ONNX Runtime's TensorRT provider cache, in the per-user cache (never inside the package): CACHE/trt/<manifest
    hash>/sm<cc>-tensorrt<version>/ort/, beside the native plans of the same key (export.trt_engine)."""
    from export.trt_engine import ort_cache_dir

    path = ort_cache_dir(package)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sessions(package: Package, backend: str = "auto", threads: int | None = None, precision: str = "auto"):
    """Sessions for the package's graphs (Package.graph_names) + (backend name, fallback line or None). `tensorrt`
    and `auto`: native TensorRT engines where they build and run, the other graphs on ONNX Runtime (TensorRT → CUDA
    → CPU). `precision` auto: on the CPU provider the tracker runs tracker_int8.onnx when the package has it; fp32:
    never."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    graphs = package.graph_names
    if backend == "torch" and package.kind == "generic":
        raise UserError(f"{package.path}: a generic package has no torch source run; use --backend cpu, cuda or "
                        "tensorrt (`eval teacher` runs the same landmarker in torch)")
    if backend == "torch":
        from engine.torch_backend import sessions as torch_sessions

        return torch_sessions(package)
    import onnxruntime as ort

    trt_first = backend in ("auto", "tensorrt")
    made, native_label, native_why = {}, None, ""
    if trt_first:
        from export import trt_engine

        try:
            made, problems, native_label = trt_engine.open_sessions(package, graphs)
            by_reason: dict[str, list[str]] = {}
            for graph, reason in problems.items():
                by_reason.setdefault(reason, []).append(graph)
            native_why = "; ".join(f"{', '.join(gs)}: {reason}" for reason, gs in by_reason.items())
        except trt_engine.TrtUnavailable as err:
            native_why = str(err)
    rest = [name for name in graphs if name not in made]
    available = ort.get_available_providers()
    wanted = ["tensorrt", "cuda", "cpu"] if trt_first else [backend]
    order = [b for b in wanted if _PROVIDERS[b] in available] or ["cpu"]
    providers = []
    for b in order:
        if b == "tensorrt" and rest:
            cache = str(_trt_cache(package))
            providers.append((_PROVIDERS[b], {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                               "trt_engine_cache_path": cache, "trt_timing_cache_enable": True,
                                               "trt_timing_cache_path": cache}))
        elif b != "tensorrt":
            providers.append(_PROVIDERS[b])
    if "cpu" not in order:
        providers.append(_PROVIDERS["cpu"])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")   # share 2 cores with capture and UI
    if threads:
        opts.intra_op_num_threads = threads
    int8 = precision == "auto" and order == ["cpu"] and package.has(INT8_TRACKER)
    for name in rest:
        path = package.file(INT8_TRACKER if int8 and name == "tracker" else f"{name}.onnx")
        try:
            made[name] = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as err:   # ORT raises its own types; the file passed its hash, so it is an ORT problem
            raise UserError(f"{path}: ONNX Runtime cannot load it ({str(err)[:160]})") from None
    if not rest:
        return made, native_label, None
    running = made[rest[0]].get_providers()[0]
    actual = next((b for b, p in _PROVIDERS.items() if p == running), running)
    on_ort = f"onnxruntime/{running}"
    if len(rest) < len(graphs):
        name = f"{native_label} ({', '.join(n for n in graphs if n not in rest)}) + {on_ort} ({', '.join(rest)})"
    else:
        name = on_ort
    if int8 and "tracker" in rest:
        name += ", tracker int8"
    if trt_first:
        if actual == "tensorrt":
            ort_why = f"running on {running}"
        else:
            state = "failed to initialise" if _PROVIDERS["tensorrt"] in available else "not in this onnxruntime build"
            ort_why = f"ORT {_PROVIDERS['tensorrt']} {state}; running on {running}"
        scope = "" if len(rest) == len(graphs) else f" for {', '.join(rest)}"
        return made, name, f"wanted tensorrt (native): {native_why}; {ort_why}{scope}"
    fallback = None
    if actual != backend:
        why = "provider not available in this onnxruntime build" if _PROVIDERS[backend] not in available \
            else "provider failed to initialise"
        fallback = f"wanted {backend} ({_PROVIDERS[backend]}): {why}; running on {actual}"
    return made, name, fallback


def tracker_threads(threads: int | None) -> int:
    """The intra-op thread count a Tracker uses: DEFAULT_THREADS unless asked (0: ONNX Runtime's choice), never
    more than the cores (more only thrash) and never negative."""
    if threads is None:
        return DEFAULT_THREADS
    if threads < 0:
        raise UserError(f"threads must be ≥ 0 (0: automatic), got {threads}")
    return min(int(threads), os.cpu_count() or 1)


class _GraphModel:
    """What both kinds' crop models share: the package's sessions on the chosen backend (checked against their
    signatures), the detector graph as the loop's detector, and the optional iris graph for the eyes."""

    def __init__(self, package: Package, backend: str = "auto", threads: int | None = None,
                 precision: str = "auto"):
        self.package = package
        self._s, self.backend, self.fallback = sessions(self.package, backend, tracker_threads(threads), precision)
        self._check_signatures()
        self.crop_size = self.package.crop_size
        self._anchors = ssd_anchors()
        self._iris = self._open_iris(threads)

    def _check_signatures(self) -> None:
        """Each graph takes and gives what the runtime feeds and reads, before the first frame: a package whose
        hashes were rewritten after tampering is refused here, not with a traceback mid-session."""
        for name, session in self._s.items():
            if not hasattr(session, "get_inputs"):         # the torch development backend
                continue
            int8 = name == "tracker" and self.backend.endswith("tracker int8")
            check_graph(name, [(i.name, i.type, i.shape) for i in session.get_inputs()],
                        [(o.name, o.type, o.shape) for o in session.get_outputs()],
                        path=self.package.file(INT8_TRACKER if int8 else f"{name}.onnx"), sizes=self.package.sizes)

    def detect(self, frame: np.ndarray):
        reg, logits = self._s["detector"].run(None, {"image": detector_input(frame)})
        return detections(frame.shape, reg[0], logits[0], self._anchors)

    # -- eyes (issue #12): the optional iris graph -------------------------------------------------------------
    def _open_iris(self, threads: int | None):
        """An ONNX Runtime session for iris.onnx when the package has it, on the providers (and their options) the
        other graphs' ONNX Runtime sessions got, else the CPU provider; None without the graph."""
        if not self.package.has(IRIS):
            return None
        import onnxruntime as ort

        ort_sessions = [s for s in self._s.values() if hasattr(s, "get_provider_options")]
        providers = [(p, ort_sessions[0].get_provider_options().get(p, {})) for p in ort_sessions[0].get_providers()] \
            if ort_sessions else ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.intra_op_num_threads = tracker_threads(threads)
        path = self.package.file(IRIS)
        try:
            session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as err:
            raise UserError(f"{path}: ONNX Runtime cannot load it ({str(err)[:160]})") from None
        check_graph("iris", [(i.name, i.type, i.shape) for i in session.get_inputs()],
                    [(o.name, o.type, o.shape) for o in session.get_outputs()], path=path)
        return session

    def eyes(self, frame: np.ndarray, points: np.ndarray) -> dict | None:
        """Eyelids and gaze of both eyes (engine.eyes.eye_results) from the iris graph on two 64² eye crops placed
        by the 468 tracked points (frame pixels); None when the package has no iris graph."""
        if self._iris is None:
            return None
        from engine.eyes import track_eyes

        return track_eyes(frame, points, lambda batch: self._iris.run(None, {"eyes": batch}))


def package_basis(package: Package) -> ExpressionBasis | None:
    """The refit's expression basis of a performer package (with its view bias when it has one), or None."""
    basis = package.basis()
    return None if basis is None else ExpressionBasis(*basis, package.crop_size, package.view_bias())


class PackageModel(_GraphModel):
    """A performer package's tracker graph as a crop model of the one tracking loop (engine.tracking), its detector
    graph as the loop's detector, and `texture` for the DAM texture."""

    name = "package"
    refit_pose = True     # the loop refits H (and with basis.npz the expression) to the teacher's landmarks

    def __init__(self, package: str | Path | Package, backend: str = "auto", threads: int | None = None,
                 precision: str = "auto"):
        super().__init__(_package(package, "performer"), backend, threads, precision)
        self.expression_basis = package_basis(self.package)

    def __call__(self, crop_rgb: np.ndarray) -> CropOutput:
        z, H, V, G, landmarks, presence = self._s["tracker"].run(None, {"crop": crop_rgb[None]})
        return CropOutput(points=V[0, :, :2], presence=float(presence[0]), G=G[0], H=H[0], z=z[0],
                          landmarks=landmarks[0])

    def texture(self, z: np.ndarray, H: np.ndarray, corrected: bool = True) -> np.ndarray:
        """The DAM texture for latent z seen from pose H, uint8 [S,S,3]: C(T) when `corrected`, else T."""
        v = pose.view_vector(np.asarray(H, np.float64)).astype(np.float32)
        name = "texture" if corrected else "texture_raw"
        return self._s["texture"].run([name], {"z": np.asarray(z, np.float32)[None], "v": v[None]})[0][0]


class GenericModel(_GraphModel):
    """The generic package as a crop model: MediaPipe's landmarker on the crop, then H and G fitted onto the canonical
    shape as engine.teacher.TeacherModel does (engine.pose.fit, numpy).
    No DAM: z is None, and no texture."""

    name = "generic"

    def __init__(self, package: str | Path | Package, backend: str = "auto", threads: int | None = None):
        from engine import canonical

        super().__init__(_package(package, "generic"), backend, threads)
        self._X = canonical.load()[0].astype(np.float64)

    def __call__(self, crop_rgb: np.ndarray) -> CropOutput:
        landmarks, presence = self._s["landmarks"].run(None, {"crop": crop_rgb[None]})
        landmarks, presence = landmarks[0].astype(np.float64), float(presence[0])
        if not np.isfinite(landmarks).all():               # nothing to fit (a broken backend): a lost face
            return CropOutput(points=landmarks[:, :2], presence=0.0, G=self._X, H=np.full(6, np.nan))
        H, G = pose.fit(self._X, landmarks)
        return CropOutput(points=landmarks[:, :2], presence=presence, G=G, H=H, landmarks=landmarks)


def _package(package: str | Path | Package, kind: str) -> Package:
    """The opened package, which must be of `kind` (a one-line UserError naming it otherwise)."""
    package = package if isinstance(package, Package) else open_package(package)
    if package.kind != kind:
        raise UserError(f"{package.path}: a {package.kind} package, not a {kind} one")
    return package


class Tracker(FaceLoop):
    """A package of either kind in the one tracking loop: tracker(frame_rgb uint8 HxWx3) → FaceResult | None.
    A performer package's tracker also has texture(z, H) → C(T) uint8 [S,S,3]; a generic one has no `texture`
    attribute (callers test hasattr). What `track`, `bench`, `demo`, `eval PACKAGE` and the studio run."""

    def __init__(self, package: str | Path | Package, backend: str = "auto", threads: int | None = None,
                 precision: str = "auto", options: TrackOptions | None = None):
        package = resolve(package)
        package = package if isinstance(package, Package) else open_package(package)
        model = GenericModel(package, backend, threads) if package.kind == "generic" else \
            PackageModel(package, backend, threads, precision)
        super().__init__(model, options)
        self.package, self.fallback = self.model.package, self.model.fallback
        self.topology = self.package.topology()
        if hasattr(self.model, "texture"):
            self.texture = self.model.texture


def open_tracker(package: str | Path | Package, backend: str = "auto", threads: int | None = None,
                 precision: str = "auto", options: TrackOptions | None = None) -> Tracker:
    """A Tracker for a package folder, an opened Package, or `generic` (the embedded any-face package)."""
    return Tracker(package, backend, threads, precision, options)

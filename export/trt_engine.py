"""Native TensorRT engines for the runtime (no torch, no Qt): the package's ONNX graphs built with the `tensorrt`
module, else `tensorrt_rtx`, run through sessions with ONNX Runtime's interface (`run`, `get_providers`).

Needs, at run time only (none is a dependency of the project): `tensorrt` ≥ 10 or `tensorrt_rtx`, `cuda-python`
(device buffers, copies and the stream, through `cuda.bindings.runtime`, older name `cuda.cudart`), `onnx` (to
prepare the graphs) and a CUDA device. When any is missing, `open_sessions` raises `TrtUnavailable`, whose message
is one line saying why; the runtime then falls back to ONNX Runtime. Set FACETRACK_TRT_MODULE=tensorrt_rtx to try
TensorRT-RTX first when both modules are installed.

Engine cache: per user, never inside a package (a package someone hands over could ship a prebuilt engine; a
`trt/` folder in one is ignored). CACHE = $FACETRACK_CACHE, else $XDG_CACHE_HOME/facetrack, else ~/.cache/facetrack;
one folder per package (first 16 hex digits of the SHA-256 of its manifest.json, which holds the hash of every
graph) and per key = GPU compute capability + module + its version:

    CACHE/trt/<manifest sha256[:16]>/sm90-tensorrt10.13.0.35/tracker.plan       serialised engine
    CACHE/trt/<manifest sha256[:16]>/sm90-tensorrt10.13.0.35/tracker.plan.json  sidecar: SHA-256 of the source ONNX
                                                (from the package manifest) and of the plan, key, recipe, outputs
    CACHE/trt/<manifest sha256[:16]>/sm90-tensorrt10.13.0.35/ort/               ONNX Runtime's TensorRT provider
                                                                                cache (its own files)

A plan is rebuilt when its sidecar is missing or names another ONNX hash, key or recipe, and when the plan's own
hash does not match its sidecar (truncated or tampered): such a plan is never deserialised, and the bytes that were
hashed are the bytes deserialised. A graph is built from bytes that hash to the verified manifest's value
(read once, checked again). A hash-valid plan that TensorRT cannot load is rebuilt once. Building prints one
line per graph to stderr; `python -m export.trt_engine PACKAGE [--module tensorrt_rtx]` builds (or loads) the
engines ahead of use and prints one line per graph.

What TensorRT is given (`prepare_onnx`, versioned by RECIPE):
  - uint8 I/O. TensorRT takes UINT8 only as a network input or output converted by a Cast; the tracker's uint8
    crop goes through a Transpose first, which TensorRT rejects for UINT8. So a Cast to float is moved up to the
    input (exact: the data moves in between only reorder values), keeping the small uint8 upload. A uint8 input
    that reaches arithmetic before a Cast, or a uint8 output not made by a Cast, is refused: that graph stays
    on ONNX Runtime rather than giving different numbers.
  - fp16. TensorRT 10 has BuilderFlag.FP16 (weakly typed network: TensorRT picks fp16 per layer). TensorRT 11
    and TensorRT-RTX only build strongly typed networks, whose precision is the graph's own; for them Conv,
    ConvTranspose, Gemm and MatMul are rewritten to fp16 (weights stored fp16, inputs cast to fp16, outputs cast
    back to fp32) and everything else (normalisation, exp, trigonometry, the pose and projection) stays fp32.
    Graph inputs and outputs keep their types. The route is chosen by what the module offers
    (`hasattr(trt.BuilderFlag, "FP16")`) and named in the session's provider string.

TensorRT-RTX compiles ahead of time without a GPU; its default engines run on sm80/86/89/120 (Turing, sm75, needs
a targeted build, which this module does not make), not on e.g. an H100 (sm90): there the engine builds and is
cached, then `Runtime.get_engine_validity` says why it cannot run, and that becomes the one-line reason.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine.userdirs import user_dir
from export.package import GRAPH_NAMES, read_manifest

MODULES = ("tensorrt", "tensorrt_rtx")
RECIPE = 1                 # bump when prepare_onnx changes what TensorRT is given: cached plans are then rebuilt
_FP16_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_MOVES = {"Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten"}   # reorder, never change values


class TrtUnavailable(Exception):
    """The native engine cannot be used here; the message is one line saying why."""


class GraphUnsupported(TrtUnavailable):
    """This graph cannot run as a native engine (the others may)."""


def one_line(text, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ------------------------------------------------------------------------------------------- modules and device
def load_module(prefer: str | None = None):
    """(module, flavour): `tensorrt`, else `tensorrt_rtx` (FACETRACK_TRT_MODULE or `prefer` first)."""
    prefer = prefer or os.environ.get("FACETRACK_TRT_MODULE")
    order = sorted(MODULES, key=lambda m: m != prefer)
    problems = []
    for name in order:
        try:
            trt = importlib.import_module(name)
        except ModuleNotFoundError:
            problems.append(None)
            continue
        except Exception as err:   # installed but broken (missing libnvinfer, wrong CUDA major, ...)
            problems.append(f"{name} failed to import ({one_line(err, 120)})")
            continue
        major = str(getattr(trt, "__version__", "0")).split(".")[0]
        if name == "tensorrt" and (not major.isdigit() or int(major) < 10):
            problems.append(f"tensorrt {trt.__version__} is too old (need 10 or later)")
            continue
        return trt, name
    said = [p for p in problems if p]
    if not said:
        raise TrtUnavailable("no tensorrt or tensorrt_rtx module installed")
    raise TrtUnavailable("; ".join(said))


def load_cudart():
    """cuda-python's runtime API module (`cuda.bindings.runtime`, older `cuda.cudart`)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
        except Exception as err:
            raise TrtUnavailable(f"cuda-python failed to import ({one_line(err, 120)})") from None
    raise TrtUnavailable("cuda-python is not installed (pip install cuda-python): needed for device buffers")


def _error_text(rt, err) -> str:
    try:
        name = rt.cudaGetErrorName(err)[1].decode()
        text = rt.cudaGetErrorString(err)[1].decode()
        return f"{name} ({text})"
    except Exception:
        return str(err)


def _ok(rt, result, what: str):
    """cuda-python returns (error, *values): raise on an error, else the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise TrtUnavailable(f"CUDA {what} failed: {_error_text(rt, err)}")
    return values[0] if len(values) == 1 else tuple(values)


def device_capability(rt) -> tuple[int, int]:
    """(major, minor) of the current CUDA device; TrtUnavailable('no CUDA device: ...') when there is none."""
    err, count = rt.cudaGetDeviceCount()
    if int(err) != 0:
        raise TrtUnavailable(f"no CUDA device: {_error_text(rt, err)}")
    if not count:
        raise TrtUnavailable("no CUDA device: the driver reports none")
    device = _ok(rt, rt.cudaGetDevice(), "cudaGetDevice")
    attr = rt.cudaDeviceAttr
    major = _ok(rt, rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, device), "attribute")
    minor = _ok(rt, rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, device), "attribute")
    return int(major), int(minor)


def cache_key(capability: tuple[int, int], flavour: str, version: str) -> str:
    """'sm90-tensorrt10.13.0.35': plans are only reused on the same GPU architecture and module version."""
    return f"sm{capability[0]}{capability[1]}-{flavour}{version}"


def cache_root() -> Path:
    """The per-user cache: $FACETRACK_CACHE, else $XDG_CACHE_HOME/facetrack (an absolute one), else
    ~/.cache/facetrack."""
    return user_dir("cache")


def package_cache_dir(package) -> Path:
    """CACHE/trt/<first 16 hex of the SHA-256 of the package's manifest.json>: `package` is an opened Package (the
    hash of the manifest it verified) or a package folder (its manifest.json is read and hashed). Never inside it."""
    digest = getattr(package, "manifest_sha256", "")
    if not digest:
        digest = sha256_bytes(read_manifest(Path(getattr(package, "path", package))))
    return cache_root() / "trt" / digest[:16]


def plan_dir(package, key: str) -> Path:
    """Where the native plans of `package` (a Package or its folder) for `key` are cached (per user)."""
    return package_cache_dir(package) / key


def ort_cache_dir(package_path) -> Path:
    """ONNX Runtime's TensorRT provider cache for `package_path` (a package folder or an opened Package), under the
    same kind of key in the per-user cache (best effort about the key: ORT's provider links libnvinfer itself, so
    the version is the `tensorrt` module's when it imports, else unknown)."""
    try:
        import tensorrt
        version = str(tensorrt.__version__)
    except Exception:
        version = "-unknown"
    cap = None
    try:
        cap = device_capability(load_cudart())
    except Exception:
        try:
            import subprocess

            out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=5).stdout.strip().splitlines()[0]
            cap = tuple(int(x) for x in out.split("."))[:2]
        except Exception:
            pass
    key = cache_key(cap, "tensorrt", version) if cap else f"smunknown-tensorrt{version}"
    return plan_dir(package_path, key) / "ort"


# ------------------------------------------------------------------------------------------- plan cache
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class Plan:
    data: bytes
    outputs: list[str]
    built: bool            # True: built now; False: read from the cache
    why: str               # why it was (re)built, or 'cached'
    meta: dict             # the sidecar


def cached_plan(folder: Path, graph: str, onnx_sha256: str, key: str,
                build: Callable[[], tuple[bytes, list[str], dict]], describe: str = "",
                rebuild: str | None = None) -> Plan:
    """The plan for `graph` from `folder`, or a fresh one from `build()` -> (plan bytes, output names, extra
    sidecar fields), which is then written with its sidecar. A plan whose bytes do not hash to its sidecar's value
    is rebuilt, never returned; `rebuild` (a reason) forces a build. A folder that cannot be written only costs the
    cache (one line on stderr)."""
    plan_path, side_path = folder / f"{graph}.plan", folder / f"{graph}.plan.json"
    why = rebuild
    side = None
    if why is None:
        try:
            side = json.loads(side_path.read_text())
        except FileNotFoundError:
            why = "no cached engine"
        except (OSError, ValueError, UnicodeDecodeError):
            why = "unreadable sidecar"
    if side is not None:
        if not isinstance(side, dict):
            why = "unreadable sidecar"
        elif side.get("onnx_sha256") != onnx_sha256:
            why = "the ONNX graph changed"
        elif side.get("key") != key or side.get("recipe") != RECIPE:
            why = "built by another TensorRT, GPU or recipe"
        elif not isinstance(side.get("outputs"), list) or not side["outputs"]:
            why = "unreadable sidecar"
    if why is None:
        try:
            data = plan_path.read_bytes()
        except OSError:
            data, why = None, "plan file missing"
        if data is not None:
            if sha256_bytes(data) == side.get("plan_sha256"):
                return Plan(data, list(side["outputs"]), False, "cached", side)
            why = "cached plan does not match its sidecar hash (truncated or changed)"
    print(f"building TensorRT engine for {graph}.onnx{describe} ({why}); cached in {folder}", file=sys.stderr,
          flush=True)
    t0 = time.perf_counter()
    data, outputs, extra = build()
    data = bytes(data)
    sidecar = {"graph": f"{graph}.onnx", "onnx_sha256": onnx_sha256, "plan_sha256": sha256_bytes(data), "key": key,
               "recipe": RECIPE, "outputs": list(outputs), **extra, "build_s": round(time.perf_counter() - t0, 1)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        side_path.unlink(missing_ok=True)        # never a new plan beside an old sidecar, even if interrupted
        _write_atomic(plan_path, data)
        _write_atomic(side_path, json.dumps(sidecar, indent=2).encode())
    except OSError as err:
        print(f"TensorRT engine for {graph}.onnx not cached ({one_line(err, 120)})", file=sys.stderr, flush=True)
    return Plan(data, list(outputs), True, why, sidecar)


# ------------------------------------------------------------------------------------------- graph preparation
def prepare_onnx(model_bytes: bytes, fp16: bool) -> tuple[bytes, str]:
    """(ONNX bytes for TensorRT, precision note). See the module docstring: uint8 inputs are cast to float at the
    input, and with `fp16` the convolutions and matrix products run in fp16. GraphUnsupported when the graph
    cannot be given to TensorRT with the same meaning."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    consumers: dict[str, list] = {}
    producer = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, k))
        for name in node.output:
            producer[name] = node
    outputs = {o.name for o in graph.output}

    def cast_to(node) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None

    heads = []
    for inp in graph.input:
        if inp.name in inits or inp.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        stack = [inp.name]
        while stack:
            tensor = stack.pop()
            if tensor in outputs:
                raise GraphUnsupported(f"uint8 input {inp.name!r} reaches a graph output unchanged")
            for node, k in consumers.get(tensor, []):
                if cast_to(node) in (TensorProto.FLOAT, TensorProto.FLOAT16):
                    continue
                if node.op_type in _MOVES and k == 0:
                    stack.extend(node.output)
                    continue
                raise GraphUnsupported(f"uint8 input {inp.name!r} reaches {node.op_type} before a Cast to float "
                                       "(TensorRT takes uint8 only at the graph boundary)")
        floated = inp.name + "__float"
        for node, k in consumers.get(inp.name, []):
            node.input[k] = floated
        heads.append(helper.make_node("Cast", [inp.name], [floated], to=TensorProto.FLOAT,
                                      name=f"{inp.name}__to_float"))
    for out in graph.output:
        if out.type.tensor_type.elem_type == TensorProto.UINT8 and cast_to(producer.get(out.name)) is None:
            raise GraphUnsupported(f"uint8 output {out.name!r} is not made by a Cast (TensorRT cannot produce it)")

    precision = "fp32"
    nodes = heads + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    if fp16:
        nodes, converted = _fp16_compute(model, nodes, numpy_helper, helper, TensorProto)
        precision = "fp16 conv/matmul" if converted else "fp32"
        del graph.node[:]
        graph.node.extend(nodes)
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as err:   # our rewrite must leave a valid, consistently typed graph
        raise GraphUnsupported(f"graph preparation failed ({one_line(err, 120)})") from None
    return model.SerializeToString(), precision


def _fp16_compute(model, nodes, numpy_helper, helper, TensorProto):
    """Conv/ConvTranspose/Gemm/MatMul on fp16: fp32 constants become fp16 initializers, other inputs get a Cast
    to fp16 (shared between consumers; a converted node's own fp16 output is used as it is), and each output a
    Cast back to fp32 for the rest of the graph. Returns (nodes, how many nodes were converted)."""
    import onnx

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n for n in nodes if n.op_type == "Constant" and n.attribute
              and n.attribute[0].name == "value"}
    typed = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*typed.graph.value_info, *typed.graph.input]}
    types.update({name: t.data_type for name, t in inits.items()})
    types.update({name: n.attribute[0].t.data_type for name, n in consts.items()})

    def constant(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    half: dict[str, str] = {}
    out, converted = [], 0
    for node in nodes:
        names = [n for n in node.input if n]
        if node.op_type not in _FP16_OPS or any(types.get(n, TensorProto.FLOAT) != TensorProto.FLOAT
                                                for n in names):
            out.append(node)
            continue
        values = {n: constant(n) for n in names}
        if any(v is not None and not np.isfinite(v.astype(np.float16)).all() for v in values.values()):
            out.append(node)          # weights beyond fp16's range: leave this node in fp32
            continue
        for k, name in enumerate(node.input):
            if not name:
                continue
            if name not in half:
                half[name] = f"{name}__fp16"
                if values[name] is not None:
                    graph.initializer.append(numpy_helper.from_array(values[name].astype(np.float16), half[name]))
                else:
                    out.append(helper.make_node("Cast", [name], [half[name]], to=TensorProto.FLOAT16,
                                                name=f"{name}__to_fp16"))
            node.input[k] = half[name]
        result = node.output[0]
        node.output[0] = half[result] = f"{result}__fp16"   # an fp16 consumer takes it as it is, without casts
        out.append(node)
        out.append(helper.make_node("Cast", [node.output[0]], [result], to=TensorProto.FLOAT,
                                    name=f"{result}__to_fp32"))
        converted += 1
    return out, converted


# ------------------------------------------------------------------------------------------- building
def _logger(trt):
    class Log(trt.ILogger):
        """Keeps TensorRT's errors for our one-line reasons instead of printing them."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))

    return Log()


def uses_builder_fp16(trt) -> bool:
    """TensorRT 10's weakly typed route (BuilderFlag.FP16); TensorRT 11 and TensorRT-RTX lack it."""
    return hasattr(trt.BuilderFlag, "FP16")


def build_plan(trt, onnx_bytes: bytes, log=None) -> tuple[bytes, list[str]]:
    """Parse ONNX bytes (already prepared) and build a serialised engine: (plan bytes, output names in order)."""
    log = log or _logger(trt)
    builder = trt.Builder(log)
    network = builder.create_network(0)   # explicit batch is the only mode in TensorRT 10+ and TensorRT-RTX
    parser = trt.OnnxParser(network, log)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)] or log.errors
        raise GraphUnsupported(f"TensorRT's ONNX parser refused it: {one_line(errors[0] if errors else '?', 160)}")
    config = builder.create_builder_config()
    if uses_builder_fp16(trt):
        config.set_flag(trt.BuilderFlag.FP16)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise GraphUnsupported(f"TensorRT build failed: {one_line(log.errors[-1] if log.errors else '?', 160)}")
    return bytes(plan), [network.get_output(i).name for i in range(network.num_outputs)]


# ------------------------------------------------------------------------------------------- running
_ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "uint8": "tensor(uint8)",
              "int8": "tensor(int8)", "int32": "tensor(int32)", "int64": "tensor(int64)", "bool": "tensor(bool)"}


@dataclass(frozen=True)
class TensorArg:
    """An input or output as ONNX Runtime's NodeArg describes it."""
    name: str
    type: str
    shape: list


class TrtSession:
    """One engine behind ONNX Runtime's session interface: `run(names or None, {input: array})` → arrays in the
    graph's output order, `get_providers()`. Device and pinned host buffers are allocated once; one stream;
    execute_async_v3."""

    def __init__(self, trt, rt, engine, outputs: list[str], label: str):
        self._rt, self.label, self.outputs = rt, label, list(outputs)
        self._device, self._pinned, self._stream = [], [], None
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise GraphUnsupported("TensorRT could not create an execution context")
        self._stream = _ok(rt, rt.cudaStreamCreate(), "cudaStreamCreate")
        self.inputs, self._host, self._ptr = [], {}, {}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        missing = set(self.outputs) - set(names)
        if missing:
            raise GraphUnsupported(f"engine lacks outputs {sorted(missing)}")
        for name in names:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise GraphUnsupported(f"tensor {name!r} has a dynamic shape {shape} (static graphs only)")
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)
            nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
            dev = _ok(rt, rt.cudaMalloc(nbytes), "cudaMalloc")
            self._device.append(dev)
            host = _ok(rt, rt.cudaMallocHost(nbytes), "cudaMallocHost")
            self._pinned.append(host)
            raw = (ctypes.c_uint8 * nbytes).from_address(int(host))
            self._host[name] = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
            self._ptr[name] = (int(dev), int(host), int(np.prod(shape)) * dtype.itemsize)
            if not self.context.set_tensor_address(name, int(dev)):
                raise GraphUnsupported(f"TensorRT refused the address of {name!r}")

    def get_providers(self) -> list[str]:
        return [self.label]

    def get_inputs(self) -> list[TensorArg]:
        """Like ONNX Runtime's: name, type ('tensor(float)'), shape, for export.package.check_graph."""
        return [self._arg(name) for name in self.inputs]

    def get_outputs(self) -> list[TensorArg]:
        return [self._arg(name) for name in self.outputs]

    def _arg(self, name: str) -> TensorArg:
        host = self._host[name]
        return TensorArg(name, _ORT_TYPES.get(host.dtype.name, f"tensor({host.dtype.name})"), list(host.shape))

    def run(self, names, feeds: dict) -> list[np.ndarray]:
        rt, h2d, d2h = self._rt, self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, \
            self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if set(feeds) != set(self.inputs):
            raise ValueError(f"inputs {sorted(feeds)} given, the engine takes {sorted(self.inputs)}")
        for name in self.inputs:
            value, host = np.asarray(feeds[name]), self._host[name]
            if value.shape != host.shape:
                raise ValueError(f"input {name!r}: shape {value.shape}, the engine takes {host.shape}")
            np.copyto(host, value, casting="same_kind")
            dev, src, n = self._ptr[name]
            _ok(rt, rt.cudaMemcpyAsync(dev, src, n, h2d, self._stream), "copy to device")
        if not self.context.execute_async_v3(int(self._stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        wanted = list(names or self.outputs)
        for name in wanted:
            if name not in self._ptr or name in self.inputs:
                raise ValueError(f"no output {name!r} (outputs: {', '.join(self.outputs)})")
            dev, dst, n = self._ptr[name]
            _ok(rt, rt.cudaMemcpyAsync(dst, dev, n, d2h, self._stream), "copy to host")
        _ok(rt, rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return [self._host[name].copy() for name in wanted]

    def close(self) -> None:
        rt = self._rt
        self.context = self.engine = None
        for ptr in self._device:
            rt.cudaFree(ptr)
        for ptr in self._pinned:
            rt.cudaFreeHost(ptr)
        self._device, self._pinned = [], []
        if self._stream is not None:
            rt.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _deserialise(trt, runtime, plan: bytes, log, flavour: str, version: str, sm: str):
    """The engine, or GraphUnsupported with TensorRT's reason (TensorRT-RTX: its engine validity check first).
    Raises _Stale for a plan this TensorRT should rebuild."""
    if hasattr(runtime, "get_engine_validity"):
        validity, diagnostics = runtime.get_engine_validity(plan)
        if validity == trt.EngineValidity.INVALID:
            flags = [k for k, v in trt.EngineInvalidityDiagnostics.__members__.items() if int(diagnostics) & int(v)]
            if {"VERSION_MISMATCH", "MALFORMED_ENGINE"} & set(flags):
                raise _Stale(", ".join(flags))
            raise GraphUnsupported(f"{flavour} {version} engine built, but it cannot run on this GPU ({sm}): "
                                   f"{', '.join(flags) or 'invalid'}")
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise _Stale(one_line(log.errors[-1] if log.errors else "deserialisation failed", 160))
    return engine


class _Stale(Exception):
    pass


def open_sessions(package, graphs=GRAPH_NAMES, build: Callable | None = None, prefer: str | None = None):
    """({graph: TrtSession}, {graph: one-line reason it is not native}, backend label). TrtUnavailable (one line)
    when no graph can run natively here: no module, no cuda-python, no CUDA device. `build(trt, onnx_bytes, log)`
    replaces build_plan (tests)."""
    trt, flavour = load_module(prefer)
    rt = load_cudart()
    cap = device_capability(rt)
    version, sm = str(trt.__version__), f"sm{cap[0]}{cap[1]}"
    key = cache_key(cap, flavour, version)
    folder = plan_dir(package, key)
    fp16_flag = uses_builder_fp16(trt)
    build = build or build_plan
    try:
        log = _logger(trt)
        runtime = trt.Runtime(log)
    except Exception as err:
        raise TrtUnavailable(f"{flavour} {version} runtime failed to start ({one_line(err, 120)})") from None
    made, problems, precisions = {}, {}, set()
    for graph in graphs:
        source = package.file(f"{graph}.onnx")
        digest = package.manifest["files"][f"{graph}.onnx"]

        def make(source=source, digest=digest):
            data = source.read_bytes()
            if sha256_bytes(data) != digest:         # changed since open_package verified it: build nothing from it
                raise GraphUnsupported(f"{source.name} changed since the package was verified (hash mismatch)")
            prepared, precision = prepare_onnx(data, fp16=not fp16_flag)
            data, outputs = build(trt, prepared, log)
            return data, outputs, {"precision": "fp16" if fp16_flag else precision}

        try:
            rebuild = None
            for _ in range(2):
                plan = cached_plan(folder, graph, digest, key, make,
                                   f" ({flavour} {version}, {sm})", rebuild)
                try:
                    engine = _deserialise(trt, runtime, plan.data, log, flavour, version, sm)
                    break
                except _Stale as err:
                    if plan.built:
                        raise GraphUnsupported(f"TensorRT cannot load the engine it built ({err})") from None
                    rebuild = f"TensorRT cannot load the cached engine: {err}"
            precision = str(plan.meta.get("precision", "?"))
            label = f"TensorRT (native {flavour} {version}, {precision})"
            made[graph] = TrtSession(trt, rt, engine, plan.outputs, label)
            precisions.add(precision)
        except TrtUnavailable as err:
            problems[graph] = one_line(err)
        except Exception as err:    # TensorRT and CUDA raise their own types: report, fall back for this graph
            problems[graph] = one_line(f"{type(err).__name__}: {err}")
    return made, problems, f"native/{flavour} {version} {'/'.join(sorted(precisions))}".rstrip()


def main(argv=None) -> int:
    """python -m export.trt_engine PACKAGE [--module tensorrt_rtx]: build or load the engines, one line each."""
    import argparse

    from export.package import open_package

    p = argparse.ArgumentParser(prog="python -m export.trt_engine")
    p.add_argument("package", type=Path)
    p.add_argument("--module", choices=MODULES)
    a = p.parse_args(argv)
    try:
        package = open_package(a.package)
        made, problems, label = open_sessions(package, package.graph_names, prefer=a.module)
    except TrtUnavailable as err:
        print(f"native TensorRT unavailable: {err}")
        return 1
    for graph in package.graph_names:
        print(f"{graph}: " + (made[graph].label if graph in made else f"not native: {problems[graph]}"))
    return 0 if made else 1


if __name__ == "__main__":
    sys.exit(main())

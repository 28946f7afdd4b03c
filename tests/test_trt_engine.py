"""The native TensorRT backend (export.trt_engine) on a machine without TensorRT or a GPU: the one-line fallbacks,
the cache key and folder, the plan sidecar (rebuild on a new ONNX hash, a new key or a tampered plan, which is never
returned), the graph preparation TensorRT is given (checked against ONNX Runtime), and the whole native path with
TensorRT and CUDA replaced by fakes (a stub at the build boundary, host memory for device memory, ONNX Runtime
running the prepared graph as the 'engine'). A last test builds real engines when tensorrt/tensorrt_rtx imports."""
import ctypes
import json
import shutil
import sys
import types
from itertools import islice

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from engine import video
from export import trt_engine as te
from export.package import SAMPLE_PACKAGE, check_graph, open_package


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """The per-user engine cache, in this test's folder (never the real ~/.cache)."""
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def pkg(tmp_path):
    """A copy of the committed sample package."""
    shutil.copytree(SAMPLE_PACKAGE, tmp_path / "pkg")
    return open_package(tmp_path / "pkg")


@pytest.fixture(scope="module")
def frames():
    return list(islice(video.frames(SAMPLE_PACKAGE / "synthetic.mp4"), 8))


def no_modules(monkeypatch):
    for name in te.MODULES:
        monkeypatch.setitem(sys.modules, name, None)     # import raises ModuleNotFoundError


def ort_session(data):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------- fallback lines
def test_no_module_is_one_line(monkeypatch):
    no_modules(monkeypatch)
    with pytest.raises(te.TrtUnavailable) as err:
        te.load_module()
    assert str(err.value) == "no tensorrt or tensorrt_rtx module installed"


def test_broken_or_old_module_is_named(monkeypatch, tmp_path):
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(
        "raise OSError('libnvinfer.so.10: cannot open shared object file:\\n No such file or directory')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(te.TrtUnavailable) as err:
        te.load_module()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("tensorrt failed to import (libnvinfer.so.10: cannot open")
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(te.TrtUnavailable, match=r"^tensorrt 8\.6\.1 is too old \(need 10 or later\)$"):
        te.load_module()
    rtx = types.SimpleNamespace(__version__="1.7.1.116")
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", rtx)
    assert te.load_module() == (rtx, "tensorrt_rtx")                   # the old tensorrt is skipped
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.13.0.35"))
    assert te.load_module()[1] == "tensorrt"                            # tensorrt first ...
    monkeypatch.setenv("FACETRACK_TRT_MODULE", "tensorrt_rtx")
    assert te.load_module()[1] == "tensorrt_rtx"                        # ... unless asked otherwise


def test_no_cuda_python_and_no_device_are_one_line(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(te.TrtUnavailable, match=r"^cuda-python is not installed \(pip install cuda-python\)"):
        te.load_cudart()

    class NoDevice:       # cuda-python's shape: (error, value) tuples; error names and strings as bytes
        def cudaGetDeviceCount(self):
            return (35, None)

        def cudaGetErrorName(self, err):
            return (0, b"cudaErrorInsufficientDriver")

        def cudaGetErrorString(self, err):
            return (0, b"CUDA driver version is insufficient for CUDA runtime version")

    with pytest.raises(te.TrtUnavailable) as err:
        te.device_capability(NoDevice())
    assert str(err.value) == ("no CUDA device: cudaErrorInsufficientDriver "
                              "(CUDA driver version is insufficient for CUDA runtime version)")
    NoDevice.cudaGetDeviceCount = lambda self: (0, 0)
    with pytest.raises(te.TrtUnavailable, match="^no CUDA device: the driver reports none$"):
        te.device_capability(NoDevice())


def test_tensorrt_backend_without_tensorrt_tracks_on_cpu_and_says_why(monkeypatch, pkg, frames, tmp_path):
    from export.runtime import Tracker

    no_modules(monkeypatch)
    tracker = Tracker(pkg, "tensorrt")
    assert tracker.backend == "onnxruntime/CPUExecutionProvider, tracker int8"
    assert "\n" not in tracker.fallback and tracker.fallback.startswith(
        "wanted tensorrt (native): no tensorrt or tensorrt_rtx module installed; ")
    assert tracker.fallback.endswith("running on CPUExecutionProvider")
    results = [tracker(f) for f in frames]
    assert sum(r is not None for r in results) >= 6
    assert Tracker(pkg, "auto").fallback == tracker.fallback
    assert Tracker(pkg, "cpu").fallback is None
    assert not (pkg.path / "trt").exists() and not (tmp_path / "cache").exists()   # nothing built, nothing written


# ------------------------------------------------------------------------------------------- key and sidecar
def test_cache_key_and_folders(monkeypatch, pkg, cache):
    assert te.cache_key((9, 0), "tensorrt", "10.13.0.35") == "sm90-tensorrt10.13.0.35"
    assert te.cache_key((8, 6), "tensorrt_rtx", "1.7.1.116") == "sm86-tensorrt_rtx1.7.1.116"
    digest = te.sha256_bytes((pkg.path / "manifest.json").read_bytes())[:16]
    assert te.plan_dir(pkg, "sm90-tensorrt10.13.0.35") == cache / "trt" / digest / "sm90-tensorrt10.13.0.35"
    assert te.plan_dir(pkg.path, "k") == te.plan_dir(pkg, "k")          # a folder: its manifest.json is hashed
    no_modules(monkeypatch)
    monkeypatch.setattr(te, "load_cudart", lambda: (_ for _ in ()).throw(te.TrtUnavailable("none")))
    ort_dir = te.ort_cache_dir(pkg.path)              # ONNX Runtime's provider cache: beside the plans, own folder
    assert ort_dir.name == "ort" and ort_dir.parent.parent == cache / "trt" / digest
    assert ort_dir.parent.name.startswith("sm") and ort_dir.parent.name.endswith("-tensorrt-unknown")
    assert not cache.exists() and not (pkg.path / "trt").exists()      # naming a folder creates nothing


class StubBuild:
    """The build boundary: counts calls, returns different bytes each time."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return f"plan #{self.calls}".encode() * 100, ["z", "H"], {"precision": "fp16"}


def test_sidecar_caches_and_rebuilds_on_onnx_or_key_change(tmp_path, capsys):
    folder, build = tmp_path / "trt" / "sm90-tensorrt10.13.0.35", StubBuild()
    first = te.cached_plan(folder, "tracker", "aaa", "sm90-tensorrt10.13.0.35", build)
    assert first.built and build.calls == 1 and first.outputs == ["z", "H"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("building TensorRT engine for tracker.onnx") and str(folder) in err[0]
    side = json.loads((folder / "tracker.plan.json").read_text())
    assert side["onnx_sha256"] == "aaa" and side["plan_sha256"] == te.sha256_bytes(first.data)
    assert side["key"] == "sm90-tensorrt10.13.0.35" and side["recipe"] == te.RECIPE and side["precision"] == "fp16"
    assert (folder / "tracker.plan").read_bytes() == first.data

    again = te.cached_plan(folder, "tracker", "aaa", "sm90-tensorrt10.13.0.35", build)
    assert not again.built and build.calls == 1 and again.data == first.data and again.meta["precision"] == "fp16"
    assert capsys.readouterr().err == ""                 # no line when nothing is built

    changed = te.cached_plan(folder, "tracker", "bbb", "sm90-tensorrt10.13.0.35", build)
    assert changed.built and build.calls == 2 and changed.why == "the ONNX graph changed"
    assert json.loads((folder / "tracker.plan.json").read_text())["onnx_sha256"] == "bbb"

    other = te.cached_plan(folder, "tracker", "bbb", "sm90-tensorrt10.14.0.1", build)
    assert other.built and build.calls == 3 and "another TensorRT" in other.why


@pytest.mark.parametrize("damage", ["tampered", "truncated", "plan missing", "sidecar missing", "sidecar corrupt"])
def test_damaged_plan_is_rebuilt_never_returned(tmp_path, damage):
    folder, build, key = tmp_path / "trt" / "k", StubBuild(), "sm90-tensorrt10.13.0.35"
    good = te.cached_plan(folder, "texture", "aaa", key, build).data
    plan, side = folder / "texture.plan", folder / "texture.plan.json"
    if damage == "tampered":
        data = bytearray(plan.read_bytes())
        data[10] ^= 0xFF
        plan.write_bytes(bytes(data))
    elif damage == "truncated":
        plan.write_bytes(plan.read_bytes()[:50])
    elif damage == "plan missing":
        plan.unlink()
    elif damage == "sidecar missing":
        side.unlink()
    else:
        side.write_text("{not json")
    damaged = plan.read_bytes() if plan.exists() else None
    fresh = te.cached_plan(folder, "texture", "aaa", key, build)
    assert fresh.built and build.calls == 2 and fresh.data != good and fresh.data != damaged
    assert te.sha256_bytes(plan.read_bytes()) == json.loads(side.read_text())["plan_sha256"] == \
        te.sha256_bytes(fresh.data)
    if damage in ("tampered", "truncated"):
        assert "does not match its sidecar hash" in fresh.why


def test_unwritable_cache_still_gives_the_plan(tmp_path, capsys):
    blocker = tmp_path / "trt"
    blocker.write_text("a file where the folder should be")
    plan = te.cached_plan(blocker / "k", "detector", "aaa", "k", StubBuild())
    assert plan.built and plan.data.startswith(b"plan #1")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[1].startswith("TensorRT engine for detector.onnx not cached (")


# ------------------------------------------------------------------------------------------- graph preparation
@pytest.fixture(scope="module")
def crop(frames):
    from engine.detection import crop_from_landmarks
    from export.runtime import Tracker

    tracker = Tracker(SAMPLE_PACKAGE, "cpu")
    result = tracker(frames[0])
    return crop_from_landmarks(result.points).apply(frames[0], tracker.model.crop_size)[None]


def test_prepared_tracker_takes_uint8_and_matches_onnx_runtime(crop):
    raw = (SAMPLE_PACKAGE / "tracker.onnx").read_bytes()
    ref = ort_session(raw).run(None, {"crop": crop})
    data, precision = te.prepare_onnx(raw, fp16=False)
    model = onnx.load_from_string(data)
    assert precision == "fp32" and model.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    first = model.graph.node[0]                    # uint8 → float at the input, before the Transpose
    assert first.op_type == "Cast" and list(first.input) == ["crop"]
    for a, b in zip(ref, ort_session(data).run(None, {"crop": crop})):
        np.testing.assert_array_equal(a, b)        # exact: only the place of the cast moved

    data16, precision = te.prepare_onnx(raw, fp16=True)
    model = onnx.load_from_string(data16)
    assert precision == "fp16 conv/matmul"
    inits = {i.name: i.data_type for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(inits.get(n.input[1]) == TensorProto.FLOAT16 for n in convs)
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [TensorProto.FLOAT] * 6
    z, H, V = ort_session(data16).run(["z", "H", "vertices"], {"crop": crop})
    # fp16 weights: close. Vertices are the contract; z's ridge skip path (large weights on unit features) moves
    # by 0.05–0.09 in fp16 along directions the decoder is flat in (vertices 0.03–0.07 px on the samples so far).
    assert np.abs(z - ref[0]).max() < 0.12 and np.abs(V - ref[2]).max() < 0.25


def test_prepared_texture_keeps_uint8_outputs():
    raw = (SAMPLE_PACKAGE / "texture.onnx").read_bytes()
    feeds = {"z": np.random.default_rng(0).normal(size=(1, 128)).astype(np.float32),
             "v": np.array([[0.0, 0.0, -1.0]], np.float32)}
    ref = ort_session(raw).run(None, feeds)
    data, precision = te.prepare_onnx(raw, fp16=True)
    out = ort_session(data).run(None, feeds)
    assert [o.dtype for o in out] == [np.uint8, np.uint8]
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(ref, out)) <= 2


def _model(nodes, inputs, outputs):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_graphs_tensorrt_would_get_wrong_are_refused():
    x8 = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4])
    y8 = helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 4])
    yf = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    adds = _model([helper.make_node("Add", ["x", "x"], ["s"]), helper.make_node("Cast", ["s"], ["y"], to=1)],
                  [x8], [yf])                      # uint8 arithmetic (wraps at 256): not the same in float
    with pytest.raises(te.GraphUnsupported, match="uint8 input 'x' reaches Add before a Cast"):
        te.prepare_onnx(adds, fp16=False)
    xf = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    quant = _model([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"])], [xf], [y8])
    quant_model = onnx.load_from_string(quant)
    quant_model.graph.initializer.extend([onnx.numpy_helper.from_array(np.float32(0.1), "s"),
                                          onnx.numpy_helper.from_array(np.uint8(0), "zp")])
    with pytest.raises(te.GraphUnsupported, match="uint8 output 'y' is not made by a Cast"):
        te.prepare_onnx(quant_model.SerializeToString(), fp16=False)


# ------------------------------------------------------------------------------------------- the native path, faked
class FakeStream:
    def __int__(self):
        return 7


class FakeCuda:
    """cuda-python's runtime API over host memory: enough for TrtSession (and it checks every pointer)."""

    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaDeviceAttr = types.SimpleNamespace(cudaDevAttrComputeCapabilityMajor=75,
                                           cudaDevAttrComputeCapabilityMinor=76)

    def __init__(self):
        self.blocks, self.stream, self.streams = {}, FakeStream(), 0

    def _alloc(self, n):
        block = (ctypes.c_uint8 * n)()
        self.blocks[ctypes.addressof(block)] = block
        return (0, ctypes.addressof(block))

    cudaMalloc = cudaMallocHost = _alloc

    def cudaFree(self, ptr):
        del self.blocks[ptr]
        return (0,)

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        assert dst in self.blocks and src in self.blocks and kind in (1, 2) and stream is self.stream
        ctypes.memmove(dst, src, n)
        return (0,)

    def cudaStreamCreate(self):
        self.streams += 1
        return (0, self.stream)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaStreamDestroy(self, stream):
        self.streams -= 1
        return (0,)

    def cudaGetDeviceCount(self):
        return (0, 1)

    def cudaGetDevice(self):
        return (0, 0)

    def cudaDeviceGetAttribute(self, attr, device):
        return (0, 8 if attr == 75 else 9)


def fake_tensorrt(builder_fp16: bool, flavour="tensorrt", version="10.99.0.1", validity=None):
    """A `tensorrt` module whose 'engine' is ONNX Runtime running the plan bytes (= the prepared ONNX)."""
    trt = types.ModuleType(flavour)
    trt.__version__ = version

    class ILogger:
        Severity = types.SimpleNamespace(ERROR=1, INTERNAL_ERROR=0)

        def __init__(self):
            pass

    class Engine:
        def __init__(self, data):
            self.session = ort_session(data)
            self.ins = [i.name for i in self.session.get_inputs()]
            zeros = {i.name: np.zeros(i.shape, np.uint8 if "uint8" in i.type else np.float32)
                     for i in self.session.get_inputs()}
            outs = self.session.run(None, zeros)
            self.outs = [o.name for o in self.session.get_outputs()]
            self.meta = {**{k: (v.dtype, v.shape) for k, v in zeros.items()},
                         **{o: (v.dtype, v.shape) for o, v in zip(self.outs, outs)}}
            self.num_io_tensors = len(self.meta)

        def get_tensor_name(self, i):
            return [*self.ins, *self.outs][i]

        def get_tensor_dtype(self, name):
            return self.meta[name][0]

        def get_tensor_mode(self, name):
            return "in" if name in self.ins else "out"

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.engine, self.address = engine, {}

        def get_tensor_shape(self, name):
            return self.engine.meta[name][1]

        def set_tensor_address(self, name, ptr):
            self.address[name] = ptr
            return True

        def view(self, name):
            dtype, shape = self.engine.meta[name]
            n = int(np.prod(shape))
            return np.frombuffer((ctypes.c_uint8 * (n * dtype.itemsize)).from_address(self.address[name]),
                                 dtype, n).reshape(shape)

        def execute_async_v3(self, stream):
            assert stream == 7                        # int(the stream handle)
            outs = self.engine.session.run(None, {k: self.view(k).copy() for k in self.engine.ins})
            for name, value in zip(self.engine.outs, outs):
                self.view(name)[...] = value
            return True

    class Runtime:
        def __init__(self, log):
            pass

        def deserialize_cuda_engine(self, data):
            return None if data.startswith(b"stale") else Engine(data)     # e.g. after a driver change

    if validity is not None:
        trt.EngineValidity = types.SimpleNamespace(INVALID="invalid", VALID="valid")
        trt.EngineInvalidityDiagnostics = types.SimpleNamespace(__members__={"UNSUPPORTED_CC": 2, "CUDA_ERROR": 64})
        Runtime.get_engine_validity = lambda self, data: validity
    trt.ILogger, trt.Runtime = ILogger, Runtime
    trt.BuilderFlag = types.SimpleNamespace(**({"FP16": 1} if builder_fp16 else {}))
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dtype: dtype
    return trt


@pytest.fixture
def fakes(monkeypatch):
    """Install a fake tensorrt + cuda; returns a dict the tests fill: builds (graph names built)."""
    cuda = FakeCuda()
    monkeypatch.setattr(te, "load_cudart", lambda: cuda)
    state = {"builds": [], "cuda": cuda, "refuse": set()}

    def build(trt, data, log):      # the build boundary: the prepared ONNX is the 'plan'
        model = onnx.load_from_string(data)
        graph = {"crop": "tracker", "z": "texture", "image": "detector"}[model.graph.input[0].name]
        if graph in state["refuse"]:
            raise te.GraphUnsupported(f"stub refuses {graph}")
        state["builds"].append(graph)
        return data, [o.name for o in model.graph.output]

    monkeypatch.setattr(te, "build_plan", build)

    def install(flavour="tensorrt", **kw):
        for name in te.MODULES:
            monkeypatch.setitem(sys.modules, name, fake_tensorrt(flavour=flavour, **kw) if name == flavour else None)

    state["install"] = install
    return state


@pytest.mark.parametrize("builder_fp16", [True, False], ids=["tensorrt10-fp16-flag", "strongly-typed"])
def test_native_path_tracks_like_onnx_runtime(fakes, pkg, frames, builder_fp16, capsys):
    from export.runtime import Tracker

    fakes["install"](builder_fp16=builder_fp16)
    native, cpu = Tracker(pkg, "tensorrt"), Tracker(pkg, "cpu", precision="fp32")
    graphs = getattr(native, "model", native)._s        # the sessions (Tracker.model's once the loop is shared)
    for graph, s in graphs.items():                     # the engines take and give what the graphs do
        check_graph(graph, [(i.name, i.type, i.shape) for i in s.get_inputs()],
                    [(i.name, i.type, i.shape) for i in s.get_outputs()], sizes=pkg.sizes)
    precision = "fp16" if builder_fp16 else "fp16 conv/matmul"
    assert native.backend == f"native/tensorrt 10.99.0.1 {precision}" and native.fallback is None
    assert graphs["tracker"].get_providers() == [f"TensorRT (native tensorrt 10.99.0.1, {precision})"]
    assert sorted(fakes["builds"]) == ["detector", "texture", "tracker"]
    assert len(capsys.readouterr().err.splitlines()) == 3                  # one progress line per graph built
    key = "sm89-tensorrt10.99.0.1"
    assert sorted(p.name for p in te.plan_dir(pkg, key).iterdir()) == \
        sorted(f"{g}.plan{x}" for g in te.GRAPH_NAMES for x in ("", ".json"))
    tol = (1e-4, 1e-3) if builder_fp16 else (0.12, 0.25)        # fp16: z as in the prepared-graph test above
    for frame in frames:
        a, b = native(frame), cpu(frame)
        assert (a is None) == (b is None)
        if a is not None:
            assert np.abs(a.z - b.z).max() < tol[0] and np.abs(a.points - b.points).max() < tol[1]
    T = native.texture(a.z, a.H)
    assert T.dtype == np.uint8 and T.shape == (pkg.texture_size,) * 2 + (3,)
    assert np.abs(T.astype(int) - cpu.texture(a.z, a.H)).max() <= 2
    s, feeds = graphs["texture"], {"z": a.z[None], "v": np.zeros((1, 3))}      # float64 v: cast like ORT
    full = s.run(None, feeds)
    raw, corrected = s.run(["texture_raw", "texture"], feeds)           # asked-for outputs, in the asked order
    assert not np.array_equal(full[0], full[1])
    np.testing.assert_array_equal(raw, full[1])
    np.testing.assert_array_equal(corrected, full[0])
    kept = full[0].copy()
    s.run(None, {"z": -a.z[None], "v": np.ones((1, 3))})                # results are copies, not the pinned buffers
    np.testing.assert_array_equal(full[0], kept)
    with pytest.raises(ValueError, match="shape"):
        s.run(None, {"z": np.zeros((2, 128), np.float32), "v": np.zeros((1, 3), np.float32)})

    again = Tracker(pkg, "tensorrt")                                     # second start: from the cache
    assert sorted(fakes["builds"]) == ["detector", "texture", "tracker"] and capsys.readouterr().err == ""
    assert again.backend == native.backend


def test_build_command_reports_each_graph(fakes, pkg, monkeypatch, capsys):
    no_modules(monkeypatch)
    assert te.main([str(pkg.path)]) == 1
    assert capsys.readouterr().out == "native TensorRT unavailable: no tensorrt or tensorrt_rtx module installed\n"
    fakes["install"](builder_fp16=True)
    fakes["refuse"].add("detector")
    assert te.main([str(pkg.path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "tracker: TensorRT (native tensorrt 10.99.0.1, fp16)", "texture: TensorRT (native tensorrt 10.99.0.1, fp16)",
        "detector: not native: stub refuses detector"]


def test_cached_plan_tensorrt_cannot_load_is_rebuilt_once(fakes, pkg, capsys):
    from export.runtime import Tracker

    fakes["install"](builder_fp16=True)
    Tracker(pkg, "tensorrt")
    folder = te.plan_dir(pkg, "sm89-tensorrt10.99.0.1")
    stale = b"stale plan that hashes right"
    (folder / "tracker.plan").write_bytes(stale)
    side = json.loads((folder / "tracker.plan.json").read_text())
    (folder / "tracker.plan.json").write_text(json.dumps({**side, "plan_sha256": te.sha256_bytes(stale)}))
    capsys.readouterr()
    tracker = Tracker(pkg, "tensorrt")
    assert tracker.fallback is None and fakes["builds"].count("tracker") == 2 and len(fakes["builds"]) == 4
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "TensorRT cannot load the cached engine" in err[0]
    assert (folder / "tracker.plan").read_bytes() != stale


def test_graph_that_cannot_be_native_runs_on_onnx_runtime_and_is_named(fakes, pkg, frames):
    from export.runtime import Tracker

    fakes["install"](builder_fp16=True)
    fakes["refuse"].add("tracker")
    tracker = Tracker(pkg, "auto")
    assert tracker.backend == ("native/tensorrt 10.99.0.1 fp16 (texture, detector) + "
                               "onnxruntime/CPUExecutionProvider (tracker), tracker int8")
    assert tracker.fallback == ("wanted tensorrt (native): tracker: stub refuses tracker; ORT "
                                "TensorrtExecutionProvider not in this onnxruntime build; running on "
                                "CPUExecutionProvider for tracker")
    assert sum(tracker(f) is not None for f in frames) >= 6


def test_rtx_engine_that_cannot_run_on_this_gpu_says_so(fakes, pkg):
    """TensorRT-RTX on e.g. an H100: the engine builds and is cached, then its validity check names the reason."""
    from export.runtime import Tracker

    fakes["install"](flavour="tensorrt_rtx", version="1.7.1.116", builder_fp16=False, validity=("invalid", 2))
    tracker = Tracker(pkg, "tensorrt")
    assert tracker.backend == "onnxruntime/CPUExecutionProvider, tracker int8"
    assert tracker.fallback.startswith("wanted tensorrt (native): tracker, texture, detector: tensorrt_rtx "
                                       "1.7.1.116 engine built, but it cannot run on this GPU (sm89): UNSUPPORTED_CC;")
    assert (te.plan_dir(pkg, "sm89-tensorrt_rtx1.7.1.116") / "tracker.plan").is_file()
    Tracker(pkg, "tensorrt")                                                 # cached: not built again
    assert sorted(fakes["builds"]) == ["detector", "texture", "tracker"]


# ------------------------------------------------------------------------------------------- real TensorRT
def test_real_tensorrt_builds_the_prepared_graphs(pkg):
    """Runs only where tensorrt or tensorrt_rtx imports. TensorRT-RTX compiles ahead of time without a GPU;
    TensorRT needs one to build."""
    try:
        trt, flavour = te.load_module()
    except te.TrtUnavailable as err:
        pytest.skip(str(err))
    if flavour == "tensorrt":
        try:
            te.device_capability(te.load_cudart())
        except te.TrtUnavailable as err:
            pytest.skip(f"tensorrt builds need a GPU: {err}")
    log = te._logger(trt)
    for graph, outputs in [("texture", ["texture", "texture_raw"]), ("detector", ["regressors", "logits"]),
                           ("tracker", ["z", "H", "vertices", "G", "landmarks", "presence"])]:
        data, _ = te.prepare_onnx(pkg.file(f"{graph}.onnx").read_bytes(), fp16=not te.uses_builder_fp16(trt))
        plan, names = te.build_plan(trt, data, log)
        assert len(plan) > 100_000 and names == outputs
    with pytest.raises(te.GraphUnsupported, match="parser refused it"):    # the raw uint8 tracker: why we prepare
        te.build_plan(trt, pkg.file("tracker.onnx").read_bytes(), log)

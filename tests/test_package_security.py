"""A performer package cannot reach outside itself (issue #13, items 5–7): manifest names are confined to the
package before any file is opened, the manifest and topology are checked against explicit schemas, graph signatures
are checked by `check_graph`, and TensorRT engines live in a per-user cache keyed by the manifest's hash, never in
(or read from) the package. Every failure is one UserError line naming the file; no file outside the package is
ever opened (checked with an audit hook on `open`)."""
import hashlib
import json
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from engine.errors import UserError
from export import trt_engine as te
from export.package import (
    BASIS,
    GENERIC_GRAPH_NAMES,
    GENERIC_PACKAGE,
    GRAPH_NAMES,
    MANIFEST,
    SAMPLE_PACKAGE,
    SIGNATURES,
    TOPOLOGY,
    check_graph,
    confine,
    open_package,
)
from tests.test_trt_engine import fakes  # noqa: F401  (the fake tensorrt + cuda fixture)

_OPENED: list | None = None


def _audit(event, args):
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)       # cannot be removed; records only inside `only_inside`


@contextmanager
def only_inside(root: Path):
    """Fails if anything outside `root` (resolved) is opened in the block."""
    global _OPENED
    _OPENED, opened = [], None
    try:
        yield
    finally:
        opened, _OPENED = _OPENED, None
        outside = [p for p in opened if not Path(p).resolve().is_relative_to(root.resolve())]
        assert not outside, f"opened outside the package: {outside}"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One copy of the sample package per module (read-only by convention: `pkg` hard-links its files)."""
    root = tmp_path_factory.mktemp("base") / "pkg"
    shutil.copytree(SAMPLE_PACKAGE, root)
    open_package(root)                                   # warm every lazy import before the audit hook counts
    return root


@pytest.fixture
def pkg(base, tmp_path):
    """A fresh package: hard links to `base`'s files (replace, never write through them) and its own manifest."""
    return _linked_copy(base, tmp_path / "pkg")


def _linked_copy(base: Path, root: Path) -> Path:
    root.mkdir()
    for f in base.iterdir():
        try:
            os.link(f, root / f.name) if f.name != MANIFEST else shutil.copy(f, root / f.name)
        except OSError:
            shutil.copy(f, root / f.name)
    return root


@pytest.fixture
def secret(tmp_path):
    """A readable file outside the package."""
    path = tmp_path / "secret.txt"
    path.write_text("root:x:0:0:secret\n")
    return path


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(pkg) -> dict:
    return json.loads((pkg / MANIFEST).read_text())


def write_manifest(pkg, m) -> None:
    """`m`: a dict (dumped), or the manifest's text or bytes as they are."""
    data = m if isinstance(m, bytes) else (m if isinstance(m, str) else json.dumps(m)).encode()
    (pkg / MANIFEST).write_bytes(data)


def list_file(pkg, name, digest) -> None:
    m = manifest(pkg)
    m["files"][name] = digest
    write_manifest(pkg, m)


def refused(pkg, match: str) -> str:
    """open_package(pkg) raises one UserError line matching `match`, opening nothing outside the package."""
    with only_inside(pkg), pytest.raises(UserError) as err:
        open_package(pkg)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and "\r" not in msg, msg
    assert msg.startswith(str(pkg)), msg                    # names a file of the package
    assert re.search(match, msg), msg
    return msg


def test_the_sample_opens_and_opens_nothing_outside(pkg):
    with only_inside(pkg):
        p = open_package(pkg)
    assert p.crop_size == 192 and p.sizes == {"crop_size": 192, "texture_size": 64}
    assert p.manifest_sha256 == sha(pkg / MANIFEST)
    tri, uv, holes = p.topology()
    assert tri.dtype == holes.dtype == np.int32 and uv.dtype == np.float32 and uv.shape == (468, 2)


# ------------------------------------------------------------------------------------------- item 5: names
@pytest.mark.parametrize("name", ["{secret}", "../secret.txt", "../../secret.txt", "a/../../secret.txt",
                                  "trt\\..\\..\\secret.txt", "./tracker.onnx", "a//b", "", "C:secret.txt",
                                  "C:/secret.txt", "line\nbreak", "nul\x00byte", "x" * 300])
def test_names_that_leave_the_package_are_refused_before_opening(pkg, secret, name):
    name = name.format(secret=secret)
    list_file(pkg, name, sha(secret))                    # the real hash: only confinement can refuse it
    msg = refused(pkg, r"manifest\.json: file name .* not a plain relative path")
    assert "hash mismatch" not in msg and not msg.startswith(str(secret))


def test_etc_passwd_with_its_real_hash_is_refused(pkg):
    if not Path("/etc/passwd").is_file():
        pytest.skip("no /etc/passwd")
    list_file(pkg, "/etc/passwd", sha("/etc/passwd"))
    refused(pkg, r"file name '/etc/passwd' is not a plain relative path inside the package")
    list_file(pkg, "/etc/passwd", "0" * 64)               # a wrong hash says nothing about the file either
    assert "hash mismatch" not in refused(pkg, "not a plain relative path")


@pytest.mark.parametrize("where", ["file", "folder"])
def test_symlink_pointing_outside_is_refused(pkg, secret, where):
    if where == "file":
        (pkg / "link.txt").symlink_to(secret)
        name = "link.txt"
    else:
        (pkg / "sub").symlink_to(secret.parent)
        name = f"sub/{secret.name}"
    list_file(pkg, name, sha(secret))
    refused(pkg, r"file name .* resolves outside the package")


def test_symlinked_manifest_outside_is_refused(pkg, tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text((pkg / MANIFEST).read_text())
    (pkg / MANIFEST).unlink()
    (pkg / MANIFEST).symlink_to(outside)
    refused(pkg, r"manifest\.json: file name 'manifest\.json' resolves outside the package")


def test_symlink_inside_the_package_is_fine(pkg):
    (pkg / "alias.onnx").symlink_to("detector.onnx")
    list_file(pkg, "alias.onnx", sha(pkg / "detector.onnx"))
    with only_inside(pkg):
        assert open_package(pkg).has("alias.onnx")


def test_symlink_loop_and_fifo_are_refused(pkg):
    (pkg / "loop").symlink_to("loop")
    list_file(pkg, "loop", "0" * 64)
    refused(pkg, r"file name 'loop' (cannot be resolved|resolves outside)|loop: (missing|not a regular)")
    m = manifest(pkg)
    del m["files"]["loop"]
    m["files"]["pipe"] = "0" * 64
    write_manifest(pkg, m)
    os.mkfifo(pkg / "pipe")                               # opening it would block: it is never opened
    refused(pkg, r"pipe: not a regular file")


def test_confine_opens_nothing(tmp_path):
    with only_inside(tmp_path / "nowhere"):
        assert confine(tmp_path, "a/b.onnx") == tmp_path / "a" / "b.onnx"


# ------------------------------------------------------------------------------------------- item 7a: manifest
def deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("text,match", [
    ("[]", r"the manifest must be a JSON object \(found list\)"),
    ('"facetrack-package"', r"must be a JSON object"),
    (deep(100_000), r"corrupt manifest \(JSON nested too deeply\)"),
    ('{"format": "facetrack-package", "version": 1, "x": ' + deep(100_000) + "}", r"nested too deeply"),
    ("{not json", r"corrupt manifest"),
    (b"\xff\xfe{}", r"corrupt manifest"),
    ('{"format": "facetrack-package", "format": "facetrack-package"}', r"corrupt manifest \(duplicate key"),
])
def test_malformed_manifest_is_one_line(pkg, text, match):
    write_manifest(pkg, text)
    refused(pkg, match)


def test_huge_manifest_is_refused_unread(pkg):
    m = manifest(pkg)
    m["padding"] = "x" * (1 << 20)
    write_manifest(pkg, m)
    refused(pkg, r"manifest larger than 1024 KiB")


def setpath(m: dict, dotted: str, value):
    *parents, last = dotted.split(".")
    for key in parents:
        m = m[key]
    if value is KeyError:
        del m[last]
    else:
        m[last] = value


@pytest.mark.parametrize("key,value,match", [
    ("input.crop_size", "abc", r"input\.crop_size must be an integer in 64\.\.1024 \(found 'abc'\)"),
    ("input.crop_size", 0, r"input\.crop_size must be an integer"),
    ("input.crop_size", -5, r"input\.crop_size must be an integer"),
    ("input.crop_size", 1e9, r"input\.crop_size must be an integer"),
    ("input.crop_size", 256.0, r"input\.crop_size must be an integer"),
    ("input.crop_size", True, r"input\.crop_size must be an integer"),
    ("input.crop_size", KeyError, r"missing input\.crop_size"),
    ("input.dtype", "float32", r"input\.dtype must be 'uint8'"),
    ("input", [256], r"input must be a JSON object"),
    ("input", KeyError, r"missing input$"),
    ("texture.size", 8, r"texture\.size must be an integer in 16\.\.4096"),
    ("texture.size", "64", r"texture\.size must be an integer"),
    ("texture", KeyError, r"missing texture$"),
    ("files", KeyError, r"missing files"),
    ("files", ["tracker.onnx"], r"files must be a non-empty object"),
    ("files.topology.npz", KeyError, r"lists no topology\.npz"),
    ("files.tracker.onnx", "not-a-hash", r"files\['tracker\.onnx'\] must be a SHA-256"),
    ("files.tracker.onnx", 12, r"files\[.tracker\.onnx.\] must be a SHA-256 .*\(found 12\)"),
    ("format", "other", r"not a facetrack-package v1 manifest"),
    ("version", True, r"not a facetrack-package v1 manifest"),
    ("version", 2, r"not a facetrack-package v1 manifest"),
    ("colour_correction.matrix", [[1, 0], [0, 1]], r"colour_correction\.matrix must be a 3x3"),
    ("parity.z", "small", r"parity\.z must be a finite number"),
    ("parity.a\nb\u2028c", "x", r"parity\.a b c must be a finite number"),
    ("source_run", ["/x"], r"source_run must be a string"),
    ("expression_ranges", [0.2], r"expression_ranges: not an object"),
    ("expression_ranges.jawOpen", 1e9, r"expression_ranges: jawOpen must be a number in 0\.0875\.\.0\.35"),
    ("expression_ranges.jawOpen", 0.0, r"expression_ranges: jawOpen must be a number"),
    ("expression_ranges.jawOpen", "wide", r"expression_ranges: jawOpen must be a number"),
    ("expression_ranges.tongueOut", 0.1, r"expression_ranges: unknown measure 'tongueOut'"),
])
def test_manifest_schema(pkg, key, value, match):
    m = manifest(pkg)
    if key.startswith("files."):                          # file names hold dots: not a dotted path
        m["files"].pop(key[len("files."):]) if value is KeyError else m["files"].update({key[6:]: value})
    else:
        setpath(m, key, value)
    write_manifest(pkg, m)
    refused(pkg, r"manifest\.json: " + match)


# ------------------------------------------------------------------------------------------- item 7b: topology
def write_topology(pkg, **arrays) -> None:
    (pkg / TOPOLOGY).unlink()                             # a hard link to base: replace, never write through
    with open(pkg / TOPOLOGY, "wb") as f:
        np.savez(f, **arrays)
    list_file(pkg, TOPOLOGY, sha(pkg / TOPOLOGY))


@pytest.fixture(scope="module")
def topo():
    with np.load(SAMPLE_PACKAGE / TOPOLOGY) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("change,match", [
    (lambda t: t.pop("holes"), r"lacks holes"),
    (lambda t: t.update(faces=t.pop("triangles")), r"lacks triangles"),
    (lambda t: t["triangles"].__setitem__((0, 0), 468), r"triangles index outside 0\.\.467"),
    (lambda t: t["holes"].__setitem__((1, 2), -1), r"holes index outside 0\.\.467"),
    (lambda t: t.update(holes=np.array([{"x": 1}, None], dtype=object)), r"holes must be integer \[N,3\]"),
    (lambda t: t.update(triangles=t["triangles"].astype(np.float32)), r"triangles must be integer"),
    (lambda t: t.update(triangles=t["triangles"][:, :2]), r"triangles must be integer \[N,3\]"),
    (lambda t: t.update(uv=t["uv"][:100]), r"uv must be float \[468,2\]"),
    (lambda t: t["uv"].__setitem__((3, 1), np.nan), r"uv has non-finite values"),
])
def test_topology_is_checked(pkg, topo, change, match):
    t = {k: v.copy() for k, v in topo.items()}
    change(t)
    write_topology(pkg, **t)
    refused(pkg, r"topology\.npz: " + match)


def test_topology_that_is_not_a_zip(pkg):
    (pkg / TOPOLOGY).unlink()
    (pkg / TOPOLOGY).write_bytes(b"PK\x03\x04 not really")
    list_file(pkg, TOPOLOGY, sha(pkg / TOPOLOGY))
    refused(pkg, r"topology\.npz: corrupt topology")


# ------------------------------------------------------------------------------------------- expression basis
def write_basis(pkg, **arrays) -> None:
    (pkg / BASIS).unlink(missing_ok=True)                 # a hard link to base: replace, never write through
    with open(pkg / BASIS, "wb") as f:
        np.savez(f, **arrays)
    list_file(pkg, BASIS, sha(pkg / BASIS))


@pytest.fixture(scope="module")
def basis():
    rng = np.random.default_rng(0)
    directions = np.linalg.qr(rng.normal(size=(468 * 3, 4)))[0].T.reshape(4, 468, 3).astype(np.float32)
    return {"directions": directions, "std": np.array([0.3, 0.1, 0.05, 0.01], np.float32)}


def test_the_sample_has_an_expression_basis(pkg):
    directions, std = open_package(pkg).basis()
    assert directions.shape[1:] == (468, 3) and len(std) == len(directions) >= 8
    assert np.all(np.diff(std) <= 0) and std[-1] > 0                  # principal directions, largest first


def test_a_package_without_a_basis_opens_and_says_so(pkg):
    m = manifest(pkg)
    m["files"].pop(BASIS)
    write_manifest(pkg, m)
    assert open_package(pkg).basis() is None


@pytest.mark.parametrize("change,match", [
    (lambda b: b.pop("std"), r"lacks std"),
    (lambda b: b.update(directions=b["directions"][:, :100]), r"directions must be \[K,468,3\]"),
    (lambda b: b.update(directions=np.zeros((65, 468, 3), np.float32), std=np.ones(65, np.float32)),
     r"directions must be \[K,468,3\] with 1 ≤ K ≤ 64"),
    (lambda b: b.update(std=b["std"][:3]), r"4 directions but 3 std values"),
    (lambda b: b.update(std=np.array([{"x": 1}, None, 1, 2], dtype=object)), r"std must be float"),
    (lambda b: b["directions"].__setitem__((1, 5, 2), np.nan), r"non-finite values"),
    (lambda b: b.update(directions=b["directions"] * 3), r"directions must have unit norm"),
    (lambda b: b["std"].__setitem__(2, -0.1), r"std must be in \(0, 10\] cm"),
    (lambda b: b["std"].__setitem__(0, 1e9), r"std must be in \(0, 10\] cm"),
    (lambda b: b.update(view_bias=np.zeros((2, 468, 3), np.float32)), r"lacks view_limits"),
    (lambda b: b.update(view_bias=np.zeros((5, 468, 3)), view_limits=np.zeros(2)), r"view_bias must be \[2,468,3\]"),
    (lambda b: b.update(view_bias=np.zeros((2, 468, 3)), view_limits=np.zeros((2, 2))), r"view_limits must be \[2\]"),
    (lambda b: b.update(view_bias=np.full((2, 468, 3), 80.0), view_limits=np.zeros(2)),
     r"view_bias must be finite and within ±50 cm"),
    (lambda b: b.update(view_bias=np.zeros((2, 468, 3)), view_limits=np.array([0.3, -0.3])),
     r"view_limits must be an ordered"),
    (lambda b: b.update(view_bias=np.zeros((2, 468, 3)), view_limits=np.array([-2.0, 0.3])),
     r"view_limits must be an ordered \(min, max\) pitch within ±π/2"),
])
def test_the_expression_basis_is_checked(pkg, basis, change, match):
    """A basis bends every tracked face, so a bad one is refused at open, not fitted."""
    b = {k: v.copy() for k, v in basis.items()}
    change(b)
    write_basis(pkg, **b)
    refused(pkg, r"basis\.npz: " + match)


def test_a_valid_basis_is_what_the_package_gives(pkg, basis):
    write_basis(pkg, **basis)
    directions, std = open_package(pkg).basis()
    np.testing.assert_allclose(directions, basis["directions"], atol=1e-7)
    np.testing.assert_allclose(std, basis["std"], rtol=1e-6)
    assert open_package(pkg).view_bias() is None                    # not enrolled from a guided clip
    D, limits = np.full((2, 468, 3), 0.2, np.float32), np.array([-0.3, 0.3], np.float32)
    write_basis(pkg, **basis, view_bias=D, view_limits=limits)
    package = open_package(pkg)
    np.testing.assert_allclose(package.view_bias()[0], D)
    np.testing.assert_allclose(package.view_bias()[1], limits)
    assert len(package.basis()) == 2


# ------------------------------------------------------------------------------------------- item 7c: graphs
@pytest.fixture(scope="module")
def signatures(base):
    """(inputs, outputs) of each real graph of the sample, as ONNX Runtime reports them."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    found = {}
    for graph in (*GRAPH_NAMES, "tracker_int8"):
        s = ort.InferenceSession(str(base / f"{graph}.onnx"), opts, providers=["CPUExecutionProvider"])
        found[graph] = ([(i.name, i.type, i.shape) for i in s.get_inputs()],
                        [(i.name, i.type, i.shape) for i in s.get_outputs()])
    return found


def test_real_graphs_match_their_signatures(signatures, base):
    sizes = open_package(base).sizes
    for graph in GRAPH_NAMES:
        check_graph(graph, *signatures[graph], path=base / f"{graph}.onnx", sizes=sizes)
        check_graph(graph, *signatures[graph])           # without sizes: any fixed size for the symbolic dims
    check_graph("tracker", *signatures["tracker_int8"], sizes=sizes)
    assert set(SIGNATURES) == set(GRAPH_NAMES) | set(GENERIC_GRAPH_NAMES)


@pytest.mark.parametrize("graph,given,match", [
    ("detector", "texture", r"not the detector graph: inputs \['z', 'v'\], expected \['image'\]"),
    ("tracker", "detector", r"not the tracker graph"),
    ("texture", "tracker", r"not the texture graph"),
])
def test_a_graph_in_the_wrong_place_is_named(signatures, graph, given, match):
    with pytest.raises(UserError, match=r"^pkg/" + f"{graph}\\.onnx: " + match):
        check_graph(graph, *signatures[given], path=f"pkg/{graph}.onnx")


def test_graph_sizes_types_and_shapes_are_checked(signatures):
    ins, outs = signatures["tracker"]
    with pytest.raises(UserError, match=r"^tracker\.onnx: tracker input 'crop' has shape \[1, 192, 192, 3\], "
                                        r"expected \[1, 128, 128, 3\]$"):
        check_graph("tracker", ins, outs, sizes={"crop_size": 128, "texture_size": 64})
    with pytest.raises(UserError, match=r"texture output 'texture' has shape .*expected \[1, 256, 256, 3\]"):
        check_graph("texture", *signatures["texture"], sizes={"crop_size": 256, "texture_size": 256})
    with pytest.raises(UserError, match=r"tracker input 'crop' is 'tensor\(float\)', expected tensor\(uint8\)"):
        check_graph("tracker", [("crop", "tensor(float)", [1, 256, 256, 3])], outs)
    with pytest.raises(UserError, match=r"tracker output 'z' has shape \['batch', 128\]"):
        check_graph("tracker", ins, [("z", "tensor(float)", ["batch", 128]), *outs[1:]])
    with pytest.raises(UserError, match=r"tracker output 'presence' has shape \[\]"):
        check_graph("tracker", ins, [*outs[:-1], ("presence", "tensor(float)", [])])     # a scalar output
    with pytest.raises(UserError, match=r"not the tracker graph: outputs"):
        check_graph("tracker", ins, [*outs, ("extra", "tensor(float)", [1])])
    with pytest.raises(UserError, match=r"no graph signature for 'landmarker'"):
        check_graph("landmarker", ins, outs)


# ------------------------------------------------------------------------------------------- item 6: engine cache
def test_cache_folder_is_per_user_and_keyed_by_the_manifest(pkg, tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "mine"))
    p = open_package(pkg)
    digest = sha(pkg / MANIFEST)[:16]
    folder = te.plan_dir(p, "sm90-tensorrt10.13.0.35")
    assert folder == tmp_path / "mine" / "trt" / digest / "sm90-tensorrt10.13.0.35"
    assert not folder.is_relative_to(pkg) and te.plan_dir(pkg, "k") == te.plan_dir(p, "k")
    assert te.ort_cache_dir(pkg).parent.parent == tmp_path / "mine" / "trt" / digest
    monkeypatch.delenv("FACETRACK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert te.cache_root() == tmp_path / "xdg" / "facetrack"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert te.cache_root() == tmp_path / "home" / ".cache" / "facetrack"
    m = manifest(pkg)
    m["parity"]["z"] = 0.5                                 # another manifest: another folder
    write_manifest(pkg, m)
    assert te.plan_dir(open_package(pkg), "k") != te.plan_dir(p, "k")


def test_a_trt_folder_shipped_in_the_package_is_never_read(fakes, pkg, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "cache"))
    key = "sm89-tensorrt10.99.0.1"                        # what the fakes report
    shipped = pkg / "trt" / key                           # a prebuilt 'engine' whose sidecar matches
    shipped.mkdir(parents=True)
    for graph in GRAPH_NAMES:
        plan = b"evil engine " * 100
        (shipped / f"{graph}.plan").write_bytes(plan)
        (shipped / f"{graph}.plan.json").write_text(json.dumps({
            "graph": f"{graph}.onnx", "onnx_sha256": manifest(pkg)["files"][f"{graph}.onnx"],
            "plan_sha256": te.sha256_bytes(plan), "key": key, "recipe": te.RECIPE, "outputs": ["x"]}))
    before = {p: p.read_bytes() for p in shipped.iterdir()}
    p = open_package(pkg)
    fakes["install"](builder_fp16=True)
    global _OPENED
    _OPENED = []
    try:
        made, problems, _ = te.open_sessions(p)
    finally:
        opened, _OPENED = _OPENED, None
    assert sorted(made) == sorted(GRAPH_NAMES) and not problems
    assert sorted(fakes["builds"]) == sorted(GRAPH_NAMES)                 # built from the graphs, not loaded
    assert not [o for o in opened if Path(o).resolve().is_relative_to(shipped.resolve())]
    assert {p: p.read_bytes() for p in shipped.iterdir()} == before        # nor written
    assert (tmp_path / "cache" / "trt" / p.manifest_sha256[:16] / key / "tracker.plan").is_file()


def test_a_graph_changed_after_verification_is_not_built(fakes, pkg, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "cache"))
    p = open_package(pkg)
    (pkg / "detector.onnx").unlink()
    shutil.copy(pkg / "texture.onnx", pkg / "detector.onnx")           # swapped after open_package
    fakes["install"](builder_fp16=True)
    made, problems, _ = te.open_sessions(p)
    assert "detector" not in made and problems["detector"].startswith("detector.onnx changed since the package")


# ------------------------------------------------------------------------------------------- the generic kind
@pytest.fixture(scope="module")
def generic_base(tmp_path_factory):
    """One copy of the generic package per module (read-only by convention, as `base`)."""
    root = tmp_path_factory.mktemp("generic_base") / "pkg"
    shutil.copytree(GENERIC_PACKAGE, root)
    open_package(root)
    return root


@pytest.fixture
def gpkg(generic_base, tmp_path):
    """A fresh generic package: hard links to `generic_base`'s files and its own manifest."""
    return _linked_copy(generic_base, tmp_path / "pkg")


def test_the_generic_package_opens_and_opens_nothing_outside(gpkg):
    with only_inside(gpkg):
        p = open_package(gpkg)
    assert p.kind == "generic" and p.graph_names == GENERIC_GRAPH_NAMES and p.sizes == {"crop_size": 192}
    assert p.manifest_sha256 == sha(gpkg / MANIFEST)


def test_old_and_explicit_performer_manifests_stay_valid(pkg):
    assert "kind" not in manifest(pkg) and open_package(pkg).kind == "performer"     # every package before
    write_manifest(pkg, {**manifest(pkg), "kind": "performer"})
    assert open_package(pkg).kind == "performer"


def _copy_in(pkg, name, source) -> str:
    """Put a copy of `source` at pkg/name (a new file, never through a hard link); returns its hash."""
    (pkg / name).unlink(missing_ok=True)
    shutil.copy(source, pkg / name)
    return sha(pkg / name)


@pytest.mark.parametrize("change,match", [
    (lambda m, p, s: m.update(kind="other"), r"kind must be one of 'performer', 'generic' \(found 'other'\)"),
    (lambda m, p, s: m.update(kind=1), r"kind must be one of 'performer', 'generic' \(found 1\)"),
    (lambda m, p, s: m.update(kind=["generic"]), r"kind must be one of"),
    (lambda m, p, s: m.pop("kind"), r"missing texture$"),                # read as a performer package: refused
    (lambda m, p, s: m["files"].pop("landmarks.onnx"), r"lists no landmarks\.onnx \(a generic package\)"),
    (lambda m, p, s: m["files"].pop("detector.onnx"), r"lists no detector\.onnx"),
    (lambda m, p, s: m["files"].pop("iris.onnx"), r"lists no iris\.onnx"),
    (lambda m, p, s: m["files"].pop("topology.npz"), r"lists no topology\.npz"),
    (lambda m, p, s: m["files"].update({"tracker.onnx": _copy_in(p, "tracker.onnx", s / "tracker.onnx")}),
     r"a generic package lists tracker\.onnx \(a performer package's file\)"),
    (lambda m, p, s: m["files"].update({"texture.onnx": _copy_in(p, "texture.onnx", s / "texture.onnx")}),
     r"a generic package lists texture\.onnx"),
    (lambda m, p, s: m["files"].update({"tracker_int8.onnx": _copy_in(p, "tracker_int8.onnx",
                                                                       s / "tracker_int8.onnx")}),
     r"a generic package lists tracker_int8\.onnx"),
    (lambda m, p, s: m["files"].update({"basis.npz": _copy_in(p, "basis.npz", s / "basis.npz")}),
     r"a generic package lists basis\.npz"),
    (lambda m, p, s: m["input"].update(crop_size=192.0), r"input\.crop_size must be an integer"),
    (lambda m, p, s: m["input"].update(layout="NCHW"), r"input\.layout must be 'NHWC'"),
    (lambda m, p, s: m.update(parity={"landmarks_px": "tiny"}), r"parity\.landmarks_px must be a finite number"),
    (lambda m, p, s: m.update(sources={"landmarks.onnx": 3}), r"sources\.landmarks\.onnx must be a string"),
    (lambda m, p, s: m["files"].update({"../secret.onnx": "0" * 64}), r"file name '\.\./secret\.onnx' is not a plain"),
])
def test_generic_manifest_is_checked_as_strictly(gpkg, change, match):
    m = manifest(gpkg)
    change(m, gpkg, SAMPLE_PACKAGE)
    write_manifest(gpkg, m)
    refused(gpkg, r"manifest\.json: " + match)


def test_a_performer_package_may_not_list_the_landmarks_graph(pkg):
    digest = _copy_in(pkg, "landmarks.onnx", GENERIC_PACKAGE / "landmarks.onnx")
    list_file(pkg, "landmarks.onnx", digest)
    refused(pkg, r"manifest\.json: a performer package lists landmarks\.onnx \(a generic package's file\)")
    write_manifest(pkg, {**manifest(pkg), "kind": "generic"})             # relabelled: still not a generic one
    refused(pkg, r"manifest\.json: a generic package lists tracker\.onnx")


@pytest.mark.parametrize("name", ["landmarks.onnx", "detector.onnx", "iris.onnx", "topology.npz"])
def test_generic_files_are_hashed(gpkg, name):
    data = bytearray((gpkg / name).read_bytes())
    data[len(data) // 2] ^= 0x40
    (gpkg / name).unlink()                                # a hard link to the base: replace, never write through
    (gpkg / name).write_bytes(bytes(data))
    refused(gpkg, re.escape(name) + r": hash mismatch")
    (gpkg / name).unlink()
    refused(gpkg, re.escape(name) + r": missing from the package")


def test_a_generic_graph_in_the_wrong_place_is_refused_when_opened(gpkg):
    """Hashes rewritten after the swap pass open_package; the graph signatures refuse it before the first frame."""
    from export.runtime import open_tracker

    list_file(gpkg, "landmarks.onnx", _copy_in(gpkg, "landmarks.onnx", gpkg / "detector.onnx"))
    with pytest.raises(UserError, match=r"landmarks\.onnx: not the landmarks graph: inputs \['image'\], "
                                        r"expected \['crop'\]$"):
        open_tracker(gpkg, "cpu")


def test_landmarks_signature_sizes_and_types(generic_base):
    s = ort.InferenceSession(str(generic_base / "landmarks.onnx"), providers=["CPUExecutionProvider"])
    ins = [(i.name, i.type, i.shape) for i in s.get_inputs()]
    outs = [(o.name, o.type, o.shape) for o in s.get_outputs()]
    check_graph("landmarks", ins, outs, sizes={"crop_size": 192})
    with pytest.raises(UserError, match=r"landmarks input 'crop' has shape \[1, 192, 192, 3\], expected "
                                        r"\[1, 256, 256, 3\]"):
        check_graph("landmarks", ins, outs, sizes={"crop_size": 256})     # a manifest that lies about the crop
    with pytest.raises(UserError, match=r"landmarks output 'landmarks' has shape \[1, 468, 2\]"):
        check_graph("landmarks", ins, [("landmarks", "tensor(float)", [1, 468, 2]), outs[1]])
    with pytest.raises(UserError, match=r"not the landmarks graph: outputs"):
        check_graph("landmarks", ins, outs[:1])

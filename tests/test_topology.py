import json

import numpy as np
import pytest

from engine import topology as T
from engine.canonical import load


@pytest.fixture(scope="module")
def topo():
    return T.topology()


def _signed(points, tris):
    """Twice the signed 2D area of each triangle (negative = our winding convention)."""
    return T._cross(points[tris[:, 0]], points[tris[:, 1]], points[tris[:, 2]])


def _polygon_area(points):
    x, y = points[:, 0], points[:, 1]
    return abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2


def _area3d(vertices, tris):
    a, b, c = (vertices[tris[:, k]] for k in range(3))
    return np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() / 2


def _directed_edges(tris):
    return np.stack([tris.ravel(), np.roll(tris, -1, axis=1).ravel()], 1)


def test_shapes_and_determinism(topo):
    assert topo.triangles.dtype == np.int32 and topo.triangles.shape[1] == 3
    assert topo.uv.shape == (468, 2) and topo.uv.dtype == np.float32
    assert T.MARGIN * 0.99 <= topo.uv.min() and topo.uv.max() <= 1 - T.MARGIN * 0.99
    again = T.build(load()[0])
    np.testing.assert_array_equal(again.triangles, topo.triangles)
    np.testing.assert_array_equal(again.uv, topo.uv)


def test_manifold_and_consistently_wound(topo):
    edges = _directed_edges(topo.triangles)
    directed = {tuple(e) for e in edges.tolist()}
    assert len(directed) == len(edges)  # each directed edge once: consistent winding and ≤ 2 triangles per edge
    undirected, counts = np.unique(np.sort(edges, 1), axis=0, return_counts=True)
    assert counts.max() <= 2
    for a, b in undirected[counts == 2].tolist():
        assert (a, b) in directed and (b, a) in directed


def test_uv_triangles_not_flipped_or_degenerate(topo):
    area = _signed(topo.uv.astype(np.float64), topo.triangles)
    assert (area < -1e-7).all()


def test_frontal_winding_agrees_where_unfolded(topo):
    shape = load()[0].astype(np.float64)
    frontal = _signed(shape[:, :2], topo.triangles)
    assert (frontal < 0).mean() > 0.95
    normals = T.vertex_normals(shape, topo.triangles)
    assert normals[4, 2] < -0.9  # the nose tip looks at the camera
    assert np.allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-5)


def test_loops_and_coverage(topo):
    used = np.unique(topo.triangles)
    assert np.isin(topo.loops["oval"], used).all()
    assert len(used) == 468
    uv = topo.uv.astype(np.float64)
    holes = sum(_polygon_area(uv[topo.loops[h]]) for h in ("eye_left", "eye_right", "lips_inner"))
    expected = _polygon_area(uv[topo.loops["oval"]]) - holes
    assert abs(-_signed(uv, topo.triangles).sum() / 2 / expected - 1) < 0.01
    for name, loop in topo.loops.items():
        assert len(np.unique(loop)) == len(loop) and len(loop) >= 16, name
    # every loop edge is a mesh edge, so no triangle crosses a loop
    edges = {frozenset(e) for e in _directed_edges(topo.triangles).tolist()}
    for name, loop in topo.loops.items():
        assert all(frozenset(e) in edges for e in zip(loop.tolist(), np.roll(loop, -1).tolist())), name


def test_no_triangle_in_holes(topo):
    uv = topo.uv.astype(np.float64)
    centre = uv[topo.triangles].mean(1)
    for hole in ("eye_left", "eye_right", "lips_inner"):
        assert not T._inside(centre, uv[topo.loops[hole]]).any(), hole
    assert T._inside(centre, uv[topo.loops["oval"]]).all()


def _read_obj(path):
    vertices, faces = [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "v":
            vertices.append([float(x) for x in parts[1:4]])
        elif parts and parts[0] == "f":
            faces.append([int(p.split("/")[0]) - 1 for p in parts[1:4]])
    return np.array(vertices), np.array(faces)


def test_plausible_against_mediapipe_canonical_mesh(topo, shared_data):
    vertices, faces = _read_obj(shared_data / "mesh" / "mediapipe" / "canonical_face_model.obj")
    assert abs(len(topo.triangles) / len(faces) - 1) < 0.10
    assert abs(_area3d(vertices, topo.triangles) / _area3d(vertices, faces) - 1) < 0.05


@pytest.mark.parametrize("size", [64, 256])
def test_texel_map(topo, size):
    tri, bary = T.texel_map(size)
    assert tri.shape == (size, size) and bary.shape == (size, size, 3)
    valid = tri >= 0
    assert valid.mean() > 0.3
    np.testing.assert_allclose(bary[valid].sum(-1), 1, atol=1e-5)
    assert bary[valid].min() >= -1e-5
    # interpolating the UVs themselves must give back each texel's centre
    uv_at = (topo.uv[topo.triangles[tri[valid]]] * bary[valid][..., None]).sum(-2)
    i, j = np.nonzero(valid)
    np.testing.assert_allclose(uv_at, np.stack([(j + 0.5) / size, (i + 0.5) / size], -1), atol=1e-4)


def test_texel_points():
    shape = load()[0]
    points = T.texel_points(np.stack([shape, shape * 2]), 64)
    tri, _ = T.texel_map(64)
    assert points.shape == (2, 64, 64, 3)
    assert (points[:, tri < 0] == 0).all()
    np.testing.assert_allclose(points[1], 2 * points[0], rtol=1e-5, atol=1e-5)
    lo, hi = shape.min(0), shape.max(0)
    inside = points[0][tri >= 0]
    assert ((inside >= lo - 1e-4) & (inside <= hi + 1e-4)).all()


def test_subsets_sides():
    shape = load()[0]
    sub = T.subsets()
    assert set(sub) == {"eye_left", "eye_right", "brow_left", "brow_right", "nose", "lips", "contour"}
    # mediapipe's "left" is the subject's left: the image's right, x > 0 in the canonical frame
    for part in ("eye", "brow"):
        assert (shape[sub[f"{part}_left"], 0] > 0).all() and (shape[sub[f"{part}_right"], 0] < 0).all()
    np.testing.assert_array_equal(np.sort(T.topology().loops["oval"]), sub["contour"])


def test_ibug51_matches_published_map(shared_data):
    facts = json.loads((shared_data / "landmark_maps" / "mediapipe468_to_ibug68_inner.json").read_text())
    assert T.IBUG51 == facts["map"]
    points = np.random.default_rng(0).normal(size=(2, 468, 3))
    out = T.ibug51(points)
    assert out.shape == (2, 51, 3)
    for k, idx in enumerate(facts["map"]):
        np.testing.assert_allclose(out[:, k], points[:, idx].mean(1))

"""Face topology of the 468 teacher vertices: triangles, UVs, loops, texel maps, landmark subsets.

Construction (our own, deterministic): unwrap the canonical shape (engine.canonical) onto a vertical cylinder
whose axis lies behind the face, Delaunay-triangulate the unwrap, force the loop edges of the face oval, eyes and
lips into it by edge flips (a constrained Delaunay), then drop the triangles outside the oval, inside the eye
openings and inside the inner mouth. mediapipe's FACEMESH_TESSELATION is not used: its edges cross.

Conventions
- UV: [468,2] in [0,1]² with a margin; u to the right, v down, so row i of an S×S texture ↔ v = (i+0.5)/S and
  column j ↔ u = (j+0.5)/S; one scale for u and v (arc length on the cylinder vs. height), so no stretching.
- Winding: every triangle (a, b, c) has cross(b−a, c−a) < 0 in (u, v), i.e. it looks counter-clockwise on
  screen with v pointing down (OpenGL's default front face when the texture is shown upright). The frontal image
  (x, y) of the canonical shape agrees wherever that projection does not fold (all but ~3 %: the lips' curled
  edges and the oval's far sides, which face away from the camera). In the 3D head frame (x right, y down,
  z away) (b−a)×(c−a) then points outwards, towards the camera (−z) for a frontal face.
- "left"/"right" follow mediapipe: the subject's left, which is the image's right (x > 0 in the canonical frame).

Everything that takes vertices works on numpy arrays and torch tensors alike (torch is never imported here),
with any leading batch dimensions. mediapipe is not imported either: its connection file is read from the wheel.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

MARGIN = 0.02  # UV border left empty, so texture filtering at the oval never reads outside [0,1]²
AXIS_Z_CM = 10.0  # cylinder axis: x = 0, z = this (behind the face; canonical z points away from the camera)

# Where each loop starts (its walking direction follows the winding convention above).
_LOOP_START = {"oval": 10, "lips_outer": 61, "lips_inner": 78, "eye_left": 362, "eye_right": 33}

# iBUG-68 points 17..67 (brows, nose, eyes, mouth) as mediapipe vertices; a pair means their mean.
# Source: published correspondence PeizhiYan/Mediapipe_2_Dlib_Landmarks (index facts).
IBUG51 = [
    [70], [63], [105], [66], [107],
    [336], [296], [334], [293], [300],
    [168, 6], [197, 195], [5], [4], [75], [97], [2], [326], [305],
    [33], [160], [158], [133], [153], [144],
    [362], [385], [387], [263], [373], [380],
    [61], [39], [37], [0], [267], [269], [291], [321], [314], [17], [84], [91],
    [78], [82], [13], [312], [308], [317], [14], [87],
]
_IBUG_A = np.array([p[0] for p in IBUG51])
_IBUG_B = np.array([p[-1] for p in IBUG51])


@dataclass(frozen=True, eq=False)
class Topology:
    triangles: np.ndarray  # [F,3] int32, wound as documented above
    uv: np.ndarray  # [468,2] float32
    loops: dict  # name → ordered vertex indices [n] int32 (closed: last connects to first)
    holes: np.ndarray  # [K,3] int32 triangles filling the eye and inner-mouth openings (closed-mesh rendering)


# ---------------------------------------------------------------- mediapipe's connection sets, without mediapipe
@lru_cache(maxsize=1)
def _connections():
    """The module object of mediapipe's face_mesh_connections.py (frozensets of edges), loaded by path."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("mediapipe 0.10.14 must be installed: its face_mesh_connections.py defines the loops")
    path = Path(spec.submodule_search_locations[0]) / "python" / "solutions" / "face_mesh_connections.py"
    file_spec = importlib.util.spec_from_file_location("_facemesh_connections", path)
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)  # the file only builds frozensets; it imports nothing
    return module


def _rings(edges) -> list[list[int]]:
    """Split an edge set made of disjoint closed loops into vertex cycles."""
    nbrs: dict[int, list[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    if any(len(n) != 2 for n in nbrs.values()):
        raise ValueError("edge set is not a union of closed loops")
    rings, seen = [], set()
    for start in sorted(nbrs):
        if start in seen:
            continue
        ring = [start]
        seen.add(start)
        while (nxt := [n for n in nbrs[ring[-1]] if n not in seen]):
            ring.append(nxt[0])
            seen.add(nxt[0])
        rings.append(ring)
    return rings


def _raw_loops() -> dict[str, list[int]]:
    c = _connections()
    lips = _rings(c.FACEMESH_LIPS)
    loops = {
        "oval": _rings(c.FACEMESH_FACE_OVAL)[0],
        "lips_outer": next(r for r in lips if _LOOP_START["lips_outer"] in r),
        "lips_inner": next(r for r in lips if _LOOP_START["lips_inner"] in r),
        "eye_left": _rings(c.FACEMESH_LEFT_EYE)[0],
        "eye_right": _rings(c.FACEMESH_RIGHT_EYE)[0],
    }
    return loops


@lru_cache(maxsize=1)
def subsets() -> dict[str, np.ndarray]:
    """Named landmark subsets (sorted vertex indices). "left" = the subject's left = the image's right."""
    c = _connections()

    def verts(edges):
        return np.unique(np.array(sorted(edges))).astype(np.int32)

    return {
        "eye_left": verts(c.FACEMESH_LEFT_EYE),
        "eye_right": verts(c.FACEMESH_RIGHT_EYE),
        "brow_left": verts(c.FACEMESH_LEFT_EYEBROW),
        "brow_right": verts(c.FACEMESH_RIGHT_EYEBROW),
        "nose": verts(c.FACEMESH_NOSE),
        "lips": verts(c.FACEMESH_LIPS),
        "contour": verts(c.FACEMESH_FACE_OVAL),
    }


# ---------------------------------------------------------------- 2D geometry helpers
def _cross(o, a, b):
    """z of (a−o)×(b−o) for [...,2] points (negative = counter-clockwise on a y-down screen)."""
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])


def _inside(points, polygon):
    """Even-odd point-in-polygon test: points [N,2], polygon [M,2] → [N] bool."""
    x, y = points[:, :1], points[:, 1:]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    straddles = (y0 > y) != (y1 > y)
    x_cross = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1.0, y1 - y0)
    return (straddles & (x < x_cross)).sum(1) % 2 == 1


def _reflect_out(flat: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Reflect vertices that lie inside a hole polygon across the hole's nearest edge.

    The teacher's upper lip curls inwards, so its underside folds over the inner lip loop in any unwrap and a
    few vertices land in the mouth opening; a fold in projection is a reflection, so reflecting them unfolds it.
    """
    flat = flat.copy()
    ring = np.setdiff1d(np.arange(len(flat)), hole)
    for i in ring[_inside(flat[ring], flat[hole])]:
        a, b = flat[hole], flat[np.roll(hole, -1)]
        t = (((flat[i] - a) * (b - a)).sum(1) / ((b - a) ** 2).sum(1)).clip(0, 1)
        foot = a + t[:, None] * (b - a)
        k = np.argmin(((flat[i] - foot) ** 2).sum(1))
        flat[i] = 2 * foot[k] - flat[i]
    return flat


def _unwrap(shape: np.ndarray, axis_z: float = AXIS_Z_CM) -> np.ndarray:
    """Cylindrical unwrap [468,3] → [468,2] cm: (arc length around the axis, height y)."""
    dx, dz = shape[:, 0].astype(np.float64), axis_z - shape[:, 2].astype(np.float64)
    radius = np.median(np.hypot(dx, dz))  # arc length at the typical depth keeps u and v at one scale
    return np.stack([radius * np.arctan2(dx, dz), shape[:, 1]], axis=1)


# ---------------------------------------------------------------- triangulation by flips
def _edge_pairs(tris):
    """Interior edges as (t1, k1, t2, k2): half-edge k of a triangle runs tris[t,k] → tris[t,(k+1)%3]."""
    n = tris.max() + 1
    frm, to = tris.ravel(), np.roll(tris, -1, axis=1).ravel()
    key, twin = frm * n + to, to * n + frm
    order = np.argsort(key)
    pos = np.clip(np.searchsorted(key[order], twin), 0, len(key) - 1)
    h1 = np.nonzero((key[order][pos] == twin) & (frm < to))[0]
    h2 = order[pos[h1]]
    return h1 // 3, h1 % 3, h2 // 3, h2 % 3


def _flip(tris, t1, k1, t2, k2) -> int:
    """Flip the diagonal of each (non-overlapping) triangle pair in place, keeping the winding; returns count."""
    used, done = set(), 0
    for a, i, b, j in zip(t1, k1, t2, k2):
        if a in used or b in used:
            continue
        c, d, e = tris[a, i], tris[a, (i + 1) % 3], tris[a, (i + 2) % 3]
        f = tris[b, (j + 2) % 3]
        tris[a], tris[b] = (c, f, e), (f, d, e)
        used.update((a, b))
        done += 1
    return done


def _quads(tris, uv):
    """Per interior edge: its pair indices and the endpoints c, d of the diagonal and opposite vertices e, f."""
    t1, k1, t2, k2 = _edge_pairs(tris)
    c, d = tris[t1, k1], tris[t1, (k1 + 1) % 3]
    e, f = tris[t1, (k1 + 2) % 3], tris[t2, (k2 + 2) % 3]
    convex = _cross(uv[e], uv[f], uv[c]) * _cross(uv[e], uv[f], uv[d]) < 0  # diagonal e–f crosses c–d
    return (t1, k1, t2, k2), c, d, e, f, convex


def _force_edges(tris, uv, constraints: np.ndarray) -> None:
    """Flip until every constraint edge [K,2] is an edge of the triangulation (Sloan 1993, edge insertion)."""
    owner = {(int(t[k]), int(t[(k + 1) % 3])): i for i, t in enumerate(tris) for k in range(3)}

    def third(t, c):  # the vertex of triangle t after the half-edge that starts at c
        return int(tris[t][(list(tris[t]).index(c) + 2) % 3])

    def crosses(c, d, a, b):
        return _cross(uv[a], uv[b], uv[c]) * _cross(uv[a], uv[b], uv[d]) < 0 and \
            _cross(uv[c], uv[d], uv[a]) * _cross(uv[c], uv[d], uv[b]) < 0

    for a, b in constraints.tolist():
        if (a, b) in owner or (b, a) in owner:
            continue
        queue = [(c, d) for (c, d) in owner if c < d and crosses(c, d, a, b)]
        for _ in range(100_000):
            if not queue:
                break
            c, d = queue.pop(0)
            t1, t2 = owner[(c, d)], owner[(d, c)]
            e, f = third(t1, c), third(t2, d)
            if not crosses(e, f, c, d):  # quad not convex: try again after the others moved
                queue.append((c, d))
                continue
            for t in (t1, t2):
                for k in range(3):
                    del owner[(int(tris[t][k]), int(tris[t][(k + 1) % 3]))]
            tris[t1], tris[t2] = (c, f, e), (f, d, e)  # keeps the winding
            owner.update({(int(tris[t][k]), int(tris[t][(k + 1) % 3])): t for t in (t1, t2) for k in range(3)})
            if crosses(e, f, a, b):
                queue.append((e, f))
        else:
            raise RuntimeError(f"could not insert loop edge {a}-{b} into the triangulation")


def _lawson(tris, uv, constraints: np.ndarray) -> None:
    """Flip non-constraint edges until every triangle is locally Delaunay (undoes slivers from the insertion)."""
    fixed = {frozenset(p) for p in constraints}
    for _ in range(1000):
        pairs, c, d, e, f, convex = _quads(tris, uv)
        # f inside the circumcircle of (c, d, e): the in-circle determinant, signed by the triangle's winding.
        rel = [uv[v] - uv[f] for v in (c, d, e)]
        m = np.stack([np.stack([r[:, 0], r[:, 1], (r**2).sum(1)], 1) for r in rel], 1)
        incircle = np.linalg.det(m) * np.sign(_cross(uv[c], uv[d], uv[e]))
        free = np.array([frozenset(p) not in fixed for p in zip(c, d)])
        pick = (incircle > 1e-12) & convex & free
        if not pick.any():
            return
        _flip(tris, *(p[pick] for p in pairs))
    raise RuntimeError("Delaunay flips did not converge")


def _orient_loop(loop: list[int], uv: np.ndarray, start: int) -> np.ndarray:
    ring = np.array(loop)
    if _cross(uv[ring[0]], uv[ring[1:-1]], uv[ring[2:]]).sum() > 0:  # shoelace: make it CCW on a y-down screen
        ring = ring[::-1]
    return np.roll(ring, -int(np.nonzero(ring == start)[0][0])).astype(np.int32)


def build(shape: np.ndarray, axis_z: float = AXIS_Z_CM) -> Topology:
    """The topology of a frontal shape [468,3] (x right, y down, z away). topology() caches the canonical one."""
    from scipy.spatial import Delaunay

    flat = _unwrap(shape, axis_z)
    loops = {k: _orient_loop(v, flat, _LOOP_START[k]) for k, v in _raw_loops().items()}
    for hole in ("eye_left", "eye_right", "lips_inner"):
        flat = _reflect_out(flat, loops[hole])
    tris = Delaunay(flat).simplices.astype(np.int64)
    cw = _cross(flat[tris[:, 0]], flat[tris[:, 1]], flat[tris[:, 2]]) > 0
    tris[cw] = tris[cw][:, ::-1]

    constraints = np.concatenate([np.stack([r, np.roll(r, -1)], 1) for r in loops.values()])
    _force_edges(tris, flat, constraints)
    _lawson(tris, flat, constraints)

    # Now no triangle crosses a loop, so its centroid tells on which side of every loop it lies.
    centre = flat[tris].mean(1)
    keep = _inside(centre, flat[loops["oval"]])
    in_hole = np.zeros(len(tris), bool)
    for hole in ("eye_left", "eye_right", "lips_inner"):
        in_hole |= _inside(centre, flat[loops[hole]])
    holes, tris = tris[keep & in_hole], tris[keep & ~in_hole]

    lo, hi = flat.min(0), flat.max(0)
    scale = (1 - 2 * MARGIN) / (hi - lo).max()
    uv = (flat - (lo + hi) / 2) * scale + 0.5
    tris, holes, uv = tris.astype(np.int32), holes.astype(np.int32), uv.astype(np.float32)
    for a in (tris, holes, uv, *loops.values()):
        a.setflags(write=False)
    return Topology(tris, uv, loops, holes)


@lru_cache(maxsize=1)
def topology() -> Topology:
    """The topology of engine.canonical's shape (computed once per process; deterministic)."""
    from engine import canonical

    return build(canonical.load()[0])


# ---------------------------------------------------------------- texels
@lru_cache(maxsize=4)
def texel_map(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Each texel centre ((j+.5)/S, (i+.5)/S) → (triangle [S,S] int32, −1 where none; barycentrics [S,S,3])."""
    topo = topology()
    tri = np.full((size, size), -1, np.int32)
    bary = np.zeros((size, size, 3), np.float32)
    corners = topo.uv.astype(np.float64)[topo.triangles] * size - 0.5  # in texel-index units
    lo = np.floor(corners.min(1)).astype(int).clip(0, size - 1)
    hi = np.ceil(corners.max(1)).astype(int).clip(0, size - 1)
    for t, (a, b, c) in enumerate(corners):
        ii, jj = np.mgrid[lo[t, 1] : hi[t, 1] + 1, lo[t, 0] : hi[t, 0] + 1]
        p = np.stack([jj, ii], -1).astype(np.float64)
        w = np.stack([_cross(p, b, c), _cross(p, c, a), _cross(p, a, b)], -1) / _cross(a, b, c)
        hit = (w >= -1e-9).all(-1)
        tri[ii[hit], jj[hit]] = t
        bary[ii[hit], jj[hit]] = w[hit].clip(0, None) / w[hit].clip(0, None).sum(-1, keepdims=True)
    for a in (tri, bary):
        a.setflags(write=False)
    return tri, bary


def _xp(a):
    return sys.modules["torch"] if type(a).__module__.startswith("torch") else np


def _like(a: np.ndarray, ref):
    """numpy constant `a` as an array of ref's kind (a tensor on ref's device, floats in ref's dtype)."""
    if _xp(ref) is np:
        return a
    torch = sys.modules["torch"]
    dtype = ref.dtype if np.issubdtype(a.dtype, np.floating) else torch.long
    return torch.as_tensor(a, dtype=dtype, device=ref.device)


@lru_cache(maxsize=4)
def _texel_weights(size: int):
    tri, bary = texel_map(size)
    corners = topology().triangles[np.maximum(tri, 0)].astype(np.int64)  # [S,S,3]
    return corners, bary * (tri >= 0)[..., None]  # invalid texels get zero weights → zero points


def texel_points(G, size: int = 256):
    """Per-texel 3D points [..., S, S, 3] from vertices G [..., 468, 3] (barycentric; zeros where no triangle)."""
    corners, weights = _texel_weights(size)
    return (G[..., _like(corners, G), :] * _like(weights, G)[..., None]).sum(-2)


# ---------------------------------------------------------------- per-vertex quantities
@lru_cache(maxsize=8)
def _incidence(tri_bytes: bytes, n_vertices: int):
    """Faces around each vertex, padded: (face index [V,K], mask [V,K]) for a gather + masked sum."""
    tris = np.frombuffer(tri_bytes, np.int64).reshape(-1, 3)
    vert, face = tris.ravel(), np.repeat(np.arange(len(tris)), 3)
    order = np.argsort(vert, kind="stable")
    vert, face = vert[order], face[order]
    counts = np.bincount(vert, minlength=n_vertices)
    rank = np.arange(len(vert)) - np.repeat(np.cumsum(counts) - counts, counts)
    index = np.zeros((n_vertices, counts.max()), np.int64)
    mask = np.zeros((n_vertices, counts.max()), np.float32)
    index[vert, rank], mask[vert, rank] = face, 1.0
    return index, mask


def vertex_normals(G, triangles, eps: float = 1e-12):
    """Unit outward normals [..., V, 3] of vertices G [..., V, 3] (area-weighted faces; numpy or torch)."""
    tris = np.asarray(triangles, np.int64)
    a, b, c = (G[..., _like(tris[:, k], G), :] for k in range(3))
    u, v = b - a, c - a
    face = [u[..., 1] * v[..., 2] - u[..., 2] * v[..., 1],
            u[..., 2] * v[..., 0] - u[..., 0] * v[..., 2],
            u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]]
    face = _xp(G).stack(face, -1)  # [..., F, 3], length = 2 × area
    index, mask = _incidence(tris.tobytes(), G.shape[-2])
    n = (face[..., _like(index, G), :] * _like(mask, G)[..., None]).sum(-2)
    return n / ((n * n).sum(-1)[..., None] + eps) ** 0.5


def ibug51(points):
    """The 51 inner iBUG-68 points (17..67) from mediapipe points [..., 468, D] → [..., 51, D]."""
    return (points[..., _like(_IBUG_A, points), :] + points[..., _like(_IBUG_B, points), :]) / 2

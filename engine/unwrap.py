"""Texture unwrapping (paper Eq. 7) and the per-texel confidence W used by L_CFTC (Eq. 6).

    T̃_ij = I(Π H X(G, i, j))

X(G, i, j) is the 3D point of texel (i, j) on the mesh G (barycentric in its triangle, `topology.texel_points`);
H moves it into the crop (`pose.transform`) and Π keeps x, y. The image is sampled bilinearly with pixel centres
at (j + ½, i + ½) — `grid_sample(align_corners=False)`, the same convention as engine.render — so T̃ is
differentiable w.r.t. the image, G and H.

W is the cosine of the incident angle, n · (0, 0, −1) (the camera looks along +z), with the normal interpolated
from the posed mesh's vertex normals; it is 0 off the mesh, off the image, on back-facing or self-occluded texels
and below `threshold`. Occlusion compares each texel's depth with a z-buffer of the posed mesh rasterised at the
crop's resolution by a small vectorised torch rasteriser (no GL needed in training). W carries no gradient.
The paper zeroes small entries of the product W^t ⊙ W^{t−1}; the loss may threshold that product again.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from engine import pose, topology
from engine.render import facing_camera

CONFIDENCE_THRESHOLD = 0.2  # cos of the incident angle below which a texel is too oblique to trust (~78°)
DEPTH_TOLERANCE_PX = 1.0  # z-buffer slack on top of the slope term (pixels, the unit of crop-space z)


@lru_cache(maxsize=1)
def _triangles() -> np.ndarray:
    """The topology's triangles, wound so normals face the camera on the frontal canonical shape (they are
    documented so; checked once here because W's sign depends on it)."""
    from engine.canonical import load

    return facing_camera(topology.topology().triangles.astype(np.int64), load()[0])


@lru_cache(maxsize=4)
def _texel_map(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    tri, bary = topology.texel_map(size)
    return torch.as_tensor(np.array(tri), dtype=torch.long), torch.as_tensor(np.array(bary))  # copies: read-only


def to_grid(points: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop pixels (x, y), pixel centres at +½, → grid_sample's [−1, 1] coordinates (align_corners=False)."""
    scale = points.new_tensor([2.0 / width, 2.0 / height])
    return points * scale - 1.0


def rasterise_depth(vertices: torch.Tensor, triangles: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Z-buffer [B,H,W] of meshes `vertices` [B,V,3] (crop space) sampled at pixel centres; +inf off the mesh.

    Each triangle tests the pixel centres of its bounding box; triangles are grouped by box size so one large
    triangle does not inflate the work of all the small ones. Only depth is kept, so winding does not matter.
    """
    B, dev = vertices.shape[0], vertices.device
    tri = vertices[:, triangles.to(dev)].reshape(-1, 3, 3)  # [B·F, corner, xyz]
    batch = torch.arange(B, device=dev).repeat_interleave(len(triangles))
    x0 = (tri[..., 0].amin(-1) - 0.5).ceil().clamp(0, width - 1).long()  # first pixel whose centre ≥ min x
    x1 = (tri[..., 0].amax(-1) - 0.5).floor().clamp(-1, width - 1).long()
    y0 = (tri[..., 1].amin(-1) - 0.5).ceil().clamp(0, height - 1).long()
    y1 = (tri[..., 1].amax(-1) - 0.5).floor().clamp(-1, height - 1).long()
    extent = torch.maximum(x1 - x0, y1 - y0) + 1
    zbuf = torch.full((B * height * width,), float("inf"), dtype=vertices.dtype, device=dev)
    keep = extent > 0
    order = torch.argsort(extent)
    order = order[keep[order]]
    for chunk in _size_groups(extent[order]):
        idx = order[chunk]
        k = int(extent[idx].max())
        r = torch.arange(k, device=dev)
        px = x0[idx, None, None] + r[None, None, :]  # [n,1,k]
        py = y0[idx, None, None] + r[None, :, None]  # [n,k,1]
        cx, cy = px + 0.5, py + 0.5
        a, b, c = tri[idx, 0], tri[idx, 1], tri[idx, 2]
        # Edge functions → barycentrics; a sign-agnostic inside test.
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        ok = area.abs() > 1e-12
        inv = torch.where(ok, 1.0 / torch.where(ok, area, torch.ones_like(area)), torch.zeros_like(area))

        def edge(p, q):
            return ((q[:, 0] - p[:, 0])[:, None, None] * (cy - p[:, 1, None, None])
                    - (q[:, 1] - p[:, 1])[:, None, None] * (cx - p[:, 0, None, None]))

        wa = edge(b, c) * inv[:, None, None]
        wb = edge(c, a) * inv[:, None, None]
        wc = 1.0 - wa - wb
        inside = (wa >= 0) & (wb >= 0) & (wc >= 0) & (px <= x1[idx, None, None]) & (py <= y1[idx, None, None])
        inside &= ok[:, None, None]
        z = wa * a[:, 2, None, None] + wb * b[:, 2, None, None] + wc * c[:, 2, None, None]
        flat = (batch[idx, None, None] * height + py) * width + px
        zbuf.scatter_reduce_(0, flat[inside], z[inside], reduce="amin")
    return zbuf.view(B, height, width)


def _size_groups(sorted_extent: torch.Tensor, groups: int = 4):
    """Split triangles sorted by box size into a few slices of similar size."""
    n = len(sorted_extent)
    bounds = sorted({0, n} | {int(n * q) for q in (0.5, 0.9, 0.99)}) if n else [0]
    return [slice(s, e) for s, e in zip(bounds[:-1], bounds[1:]) if e > s][:groups]


@torch.no_grad()
def confidence(X: torch.Tensor, vertices: torch.Tensor, size: int, width: int, height: int,
               threshold: float = CONFIDENCE_THRESHOLD) -> torch.Tensor:
    """W [B,1,S,S] from texel points X [B,S,S,3] and mesh vertices [B,V,3], both in crop space."""
    tri_idx, bary = (t.to(X.device) for t in _texel_map(size))
    triangles = torch.as_tensor(_triangles(), device=X.device)
    normals = topology.vertex_normals(vertices, _triangles())
    corners = triangles[tri_idx.clamp_min(0)]  # [S,S,3] vertex ids
    n = (normals[:, corners] * bary.to(normals.dtype)[None, ..., None]).sum(-2)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = -n[..., 2]  # direction to the camera is (0, 0, −1)

    zbuf = rasterise_depth(vertices, triangles, width, height)
    px = X[..., 0].floor().long()
    py = X[..., 1].floor().long()
    on_image = (px >= 0) & (px < width) & (py >= 0) & (py < height)
    flat = py.clamp(0, height - 1) * width + px.clamp(0, width - 1)
    nearest = torch.gather(zbuf.view(len(X), -1), 1, flat.view(len(X), -1)).view_as(cos)
    # A texel up to half a pixel diagonal from the sampled centre differs in depth by up to ~0.71·tan(angle).
    slope = (1 - cos.clamp(max=1) ** 2).sqrt() / cos.clamp_min(threshold)
    visible = X[..., 2] <= nearest + DEPTH_TOLERANCE_PX + 0.75 * slope
    W = cos * (visible & on_image & (tri_idx >= 0) & (cos >= threshold))
    return W[:, None].to(X.dtype)


def unwrap(image: torch.Tensor, G: torch.Tensor, H: torch.Tensor, size: int = 256,
           threshold: float = CONFIDENCE_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed texture T̃ [B,3,S,S] and confidence W [B,1,S,S] of crops `image` [B,3,h,w] (float) under
    meshes G [B,V,3] (canonical frame) and poses H [B,6]. T̃ is 0 on texels outside every triangle."""
    B, _, h, w = image.shape
    V = pose.transform(G, H)
    # Barycentric weights sum to 1, so posing the 468 vertices first equals posing every texel point (cheaper).
    X = topology.texel_points(V, size)  # [B,S,S,3] crop space
    T = F.grid_sample(image, to_grid(X[..., :2], w, h), mode="bilinear", padding_mode="zeros", align_corners=False)
    T = T * (_texel_map(size)[0] >= 0).to(T)
    W = confidence(X.detach(), V.detach(), size, w, h, threshold)
    return T, W

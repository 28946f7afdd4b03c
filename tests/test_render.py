import cv2
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from engine import canonical, pose, render, topology

SIZE = 256
FRONTAL = np.array([9.0, 0.0, 0.0, 0.0, 128.0, 130.0])


def smooth_texture(size=256, sigma=6.0, seed=1):
    t = gaussian_filter(np.random.default_rng(seed).random((size, size, 3)), (sigma, sigma, 0))
    t = (t - t.min((0, 1))) / np.ptp(t, (0, 1))
    return (20 + 215 * t).round().astype(np.uint8)


@pytest.fixture(scope="module")
def off():
    topo = topology.topology()
    with render.offscreen(SIZE, SIZE) as r:
        r.set_mesh(topo.triangles, topo.uv)
        r.set_texture(smooth_texture())
        yield r


def vertices(H=FRONTAL):
    return pose.transform(canonical.load()[0], H)


def test_background_outside_face_is_exact_and_face_covers_it(off):
    bg = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    V = vertices()
    out = off.render(V, render.FLAT, bg)
    face = np.isfinite(off.render_depth(V))
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
    assert 0.2 < face.mean() < 0.6
    np.testing.assert_array_equal(out[~face], bg[~face])
    assert np.abs(out[face].astype(int) - bg[face]).mean() > 40


def test_flat_render_reproduces_texture_at_projected_vertices(off):
    texture = smooth_texture()
    uv = topology.topology().uv
    V = vertices()
    out = off.render(V, render.FLAT).astype(float)
    covered = np.isfinite(off.render_depth(V))
    interior = cv2.erode(covered.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    col, row = np.floor(V[:, 0]).astype(int), np.floor(V[:, 1]).astype(int)
    keep = interior[row, col]
    assert keep.sum() > 300
    # Texture value at each vertex's uv (texel j centred at u = (j+½)/S), bilinear like GL.
    m = (uv * texture.shape[0] - 0.5).astype(np.float32)
    expected = cv2.remap(texture, m[:, None, 0], m[:, None, 1], cv2.INTER_LINEAR)[:, 0].astype(float)
    err = np.abs(out[row, col] - expected)[keep]
    assert np.median(err) <= 2 and np.percentile(err, 99) <= 6


def test_upright_and_not_mirrored(off):
    # Forehead (10) above chin (152); the subject's right eye corner (33) on the image's left; nose tip (1)
    # in front: the depth map is smallest there.
    V = vertices()
    assert V[10, 1] < V[152, 1] and V[33, 0] < V[263, 0]
    z = off.render_depth(V)
    r, c = np.unravel_index(np.argmin(z), z.shape)
    assert np.hypot(c + 0.5 - V[1, 0], r + 0.5 - V[1, 1]) < 8


def test_key_light_shades_the_side_it_comes_from(off):
    V = vertices()
    lit = off.render(V, render.Lighting((0.2, 0.2, 0.2), (0.8, 0.8, 0.8), (1.0, 0.0, -0.3))).astype(float)
    flat = off.render(V, render.FLAT).astype(float)
    ratio = lit.sum(-1) / np.maximum(flat.sum(-1), 1)
    G = canonical.load()[0]
    right, left = V[G[:, 0] > 4], V[G[:, 0] < -4]  # image right (the subject's left cheek) faces the light
    at = lambda P: ratio[np.floor(P[:, 1]).astype(int), np.floor(P[:, 0]).astype(int)].mean()
    assert at(right) > at(left) + 0.3


def test_coloured_key_light_and_hard_shadow(off):
    V = vertices(np.array([9.0, 0.0, 0.3, 0.0, 128.0, 130.0]))
    light = dict(ambient=(0.2, 0.2, 0.2), key=(1.0, 0.5, 0.2), direction=(-1.0, -0.2, -0.25))  # from the left
    no_shadow = off.render(V, render.Lighting(**light)).astype(int)
    shadow = off.render(V, render.Lighting(**light, shadow=True)).astype(int)
    assert (shadow <= no_shadow + 1).all()  # a shadow only removes key light
    darker = (no_shadow - shadow).sum(-1) > 30
    assert darker.sum() > 50, "the nose should cast a shadow across the cheek"
    # Shadowed pixels lie on the side away from the light (image right of the nose tip).
    assert np.argwhere(darker)[:, 1].mean() > V[1, 0]
    lit = ~darker & np.isfinite(off.render_depth(V))
    r, g, b = (no_shadow[lit][:, k].mean() for k in range(3))
    assert r > g > b  # the key light is orange


def test_attribute_pass_and_sizes(off):
    V = vertices()
    z = off.render_depth(V)
    col, row = np.floor(V[:, 0]).astype(int), np.floor(V[:, 1]).astype(int)
    front = V[:, 2] < np.percentile(V[:, 2], 20)  # the nose and its neighbours are never hidden
    assert np.median(np.abs(z[row, col][front] - V[front, 2])) < 1.0  # steep there: pixel centre ≠ vertex
    # Interpolating the vertices' own x, y gives back each covered pixel's centre (j + ½, i + ½).
    xy, covered = off.render_attributes(V, V[:, :2])
    i, j = np.nonzero(covered)
    np.testing.assert_allclose(xy[i, j], np.stack([j + 0.5, i + 0.5], -1), atol=2e-3)
    with render.offscreen(320, 240) as small:
        topo = topology.topology()
        small.set_mesh(topo.triangles, topo.uv)
        small.set_texture(smooth_texture(64).astype(np.float32) / 255)  # float textures too
        V2 = V * 0.5 + [30, 0, 0]
        out = small.render(V2, render.FLAT, np.zeros((240, 320, 3), np.uint8))
        assert out.shape == (240, 320, 3)
        assert out[:, :20].max() == 0 and out[int(V2[1, 1]), int(V2[1, 0])].min() >= 20


def test_contact_sheet_png(off, tmp_path):
    """Writes frontal / yawed / wild-lit renders for a person to look at (scratch/render/ when it exists)."""
    from pathlib import Path

    bg = np.full((SIZE, SIZE, 3), 60, np.uint8)
    bg[::16] = bg[:, ::16] = 140  # a grid shows any mirroring or flip of the background
    bg[:40, :40] = (255, 0, 0)  # the top-left corner is red
    wild = render.Lighting((0.25, 0.25, 0.3), (1.0, 0.7, 0.4), (1.0, -0.4, -0.4), shadow=True)
    shots = [
        off.render(vertices(), render.FLAT, bg),
        off.render(vertices(np.array([9.0, 0.1, 0.5, 0.0, 128.0, 130.0])), render.FLAT, bg),
        off.render(vertices(np.array([9.0, -0.1, -0.4, 0.1, 128.0, 130.0])), wild, bg),
    ]
    sheet = np.concatenate(shots, 1)
    assert (sheet[:40, :40] == (255, 0, 0)).all()
    folder = Path(__file__).resolve().parents[1] / "scratch" / "render"
    path = (folder if folder.is_dir() else tmp_path) / "test_render.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))

"""Export-time rewrites (export.graph_passes, the swaps in export.onnx_export._onnx_friendly): each must keep the
function and remove what makes ONNX Runtime leave its blocked conv layout."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import i2znet
from export import graph_passes
from export.onnx_export import _DepthwisePReLU, _FoldedLevelHead


class TeacherLike(nn.Module):
    """The teacher's patterns: TF SAME padding before a stride-2 conv, a residual widened by a channel pad."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(16, 3, 3, 3, generator=g) * 0.2)
        self.w2 = nn.Parameter(torch.randn(32, 16, 1, 1, generator=g) * 0.2)

    def forward(self, x):
        h = F.conv2d(F.pad(x, (0, 1, 0, 1)), self.w1, stride=2)             # asymmetric spatial pad → Conv
        main = F.conv2d(h, self.w2)
        return main + F.pad(F.max_pool2d(h, 1), (0, 0, 0, 0, 0, 16))        # channel pad → identity 1×1 conv


def _run(path, x):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_pads_fold_into_convs_and_values_stay(tmp_path):
    model, x = TeacherLike().eval(), np.random.default_rng(1).normal(size=(1, 3, 32, 32)).astype(np.float32)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=["x"], opset_version=17, dynamo=False)
    before = _run(path, x)
    assert any(n.op_type == "Pad" for n in onnx.load(str(path)).graph.node)
    done = graph_passes.optimise(path)
    assert done["pads_into_conv"] == 1 and done["channel_pads_as_conv"] == 1
    assert not any(n.op_type == "Pad" for n in onnx.load(str(path)).graph.node)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(path, x), before, atol=1e-6)
    np.testing.assert_allclose(_run(path, x), expected, atol=1e-5)


def test_nonzero_of_a_constant_mask_is_folded(tmp_path):
    class Masked(nn.Module):
        def forward(self, x):
            return x[:, torch.tensor([True, False, True, True])]

    path = tmp_path / "m.onnx"
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    torch.onnx.export(Masked(), (torch.from_numpy(x),), str(path), input_names=["x"], opset_version=17, dynamo=False)
    assert graph_passes.optimise(path)["nonzero_folded"] == 1
    assert not any(n.op_type == "NonZero" for n in onnx.load(str(path)).graph.node)
    np.testing.assert_array_equal(_run(path, x), x[:, [0, 2, 3]])


@pytest.mark.parametrize("alpha", [0.25, -0.5, 1.5])
def test_depthwise_prelu_is_prelu(alpha):
    a = torch.full((1, 8, 1, 1), alpha)
    a[0, ::2] = 0.1
    x = torch.randn(2, 8, 5, 5)
    np.testing.assert_allclose(_DepthwisePReLU(a)(x), torch.where(x >= 0, x, x * a), atol=1e-6)


def test_folded_level_head_matches_level_head_with_trained_affines():
    torch.manual_seed(0)
    head = i2znet.LevelHead([32, 7, 8], 12, 16).eval()
    with torch.no_grad():                   # affines far from their (1, 0) start, as training leaves them
        for n in head.norms:
            n.weight.uniform_(0.3, 2.0)
            n.bias.normal_(0, 0.5)
    maps = [torch.randn(2, 32, 12, 12) * 3, torch.rand(2, 7, 12, 12), torch.randn(2, 8, 12, 12) + 1]
    with torch.no_grad():
        for ours, theirs in zip(_FoldedLevelHead(head)(maps), head(maps)):
            np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_the_sample_package_carries_the_rewrites():
    from export.package import SAMPLE_PACKAGE, open_package

    pkg = open_package(SAMPLE_PACKAGE)
    model = onnx.load(str(pkg.file("tracker.onnx")))
    assert not {n.op_type for n in model.graph.node} & {"Pad", "NonZero", "PRelu", "Where"}
    assert [o.domain for o in model.opset_import] == [""]      # standard ONNX only: any provider can take it
    assert pkg.manifest["graph_rewrites"]["tracker.onnx"]["pads_into_conv"] > 0

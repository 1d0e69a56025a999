"""Exact area pooling: checked against a cell-by-cell reference."""

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sklearn_mlsp.pooling import area_pool, area_weights


def brute_force_area_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Area resize of a 2-D map, one output cell at a time, exact fractions.

    Output cell (i, j) is the rectangle [i*H/out_h, (i+1)*H/out_h) x
    [j*W/out_w, (j+1)*W/out_w); its value is the integral of the piecewise
    constant input over it divided by its area.
    """
    h, w = img.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        y0, y1 = Fraction(i * h, out_h), Fraction((i + 1) * h, out_h)
        for j in range(out_w):
            x0, x1 = Fraction(j * w, out_w), Fraction((j + 1) * w, out_w)
            total = Fraction(0)
            for r in range(h):
                dy = min(y1, r + 1) - max(y0, r)
                if dy <= 0:
                    continue
                for c in range(w):
                    dx = min(x1, c + 1) - max(x0, c)
                    if dx > 0:
                        total += dy * dx * Fraction(float(img[r, c]))
            out[i, j] = float(total / ((y1 - y0) * (x1 - x0)))
    return out


@pytest.mark.parametrize("n_in, n_out", [(37, 5), (23, 5), (3, 5), (10, 5), (7, 7), (1, 5), (5, 1)])
def test_area_weights_rows_and_columns_sum(n_in, n_out):
    w = area_weights(n_in, n_out)
    assert w.shape == (n_out, n_in)
    assert w.dtype == np.float64
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # Each input cell is spread over the outputs with total weight n_out/n_in.
    np.testing.assert_allclose(w.sum(axis=0), n_out / n_in, rtol=0, atol=1e-12)


def test_area_weights_known_values():
    np.testing.assert_allclose(area_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    # Upsampling 3 -> 5: output cell 1 covers [0.6, 1.2): 2/3 of cell 0, 1/3 of cell 1.
    w = area_weights(3, 5)
    np.testing.assert_allclose(w[0], [1, 0, 0])
    np.testing.assert_allclose(w[1], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(w[2], [0, 1, 0])
    np.testing.assert_allclose(area_weights(4, 4), np.eye(4))


@pytest.mark.parametrize("bad", [0, -3])
def test_area_weights_rejects_non_positive(bad):
    with pytest.raises(ValueError, match=r"'n_out' parameter of area_weights must be an int in the range \[1, inf\)"):
        area_weights(5, bad)
    with pytest.raises(TypeError):
        area_weights(5.0, 2)


@pytest.mark.parametrize("h, w", [(37, 23), (3, 4), (10, 10), (5, 13)])
def test_area_pool_matches_brute_force(h, w):
    rng = np.random.default_rng(h * 100 + w)
    x = rng.standard_normal((2, 3, h, w))
    got = area_pool(torch.as_tensor(x, dtype=torch.float64), 5).numpy()
    assert got.shape == (2, 3, 5, 5)
    for b in range(2):
        for c in range(3):
            want = brute_force_area_resize(x[b, c], 5, 5)
            np.testing.assert_allclose(got[b, c], want, rtol=0, atol=1e-10)


def test_area_pool_divisible_equals_plain_average_pooling():
    x = torch.randn(2, 4, 10, 10)
    torch.testing.assert_close(area_pool(x, 5), F.avg_pool2d(x, 2), rtol=1e-6, atol=1e-6)


def test_k1_is_spatial_mean():
    x = torch.randn(3, 6, 37, 23)
    torch.testing.assert_close(area_pool(x, 1), x.mean(dim=(2, 3), keepdim=True))


def test_grid_mean_equals_global_mean_on_non_divisible_size():
    # Column sums of the weights are the constant k/H (rows) and k/W (cols),
    # so mean over the k*k grid = sum(x) * (k/H)(k/W) / k^2 = mean(x).
    x = torch.randn(2, 5, 37, 23, dtype=torch.float64)
    grid = area_pool(x, 5)
    torch.testing.assert_close(grid.mean(dim=(2, 3)), x.mean(dim=(2, 3)), rtol=0, atol=1e-12)


def test_adaptive_avg_pool_differs_on_non_divisible_size():
    """Why we don't use adaptive_avg_pool2d: it averages whole cells in
    overlapping integer bins, not fractional coverage."""
    x = torch.randn(1, 4, 37, 23, dtype=torch.float64)
    ours = area_pool(x, 5)
    adaptive = F.adaptive_avg_pool2d(x, 5)
    assert (ours - adaptive).abs().max() > 1e-3
    # Its grid mean is not the global mean either.
    assert (adaptive.mean(dim=(2, 3)) - x.mean(dim=(2, 3))).abs().max() > 1e-6
    # On a divisible size both agree.
    y = torch.randn(1, 4, 10, 15, dtype=torch.float64)
    torch.testing.assert_close(area_pool(y, 5), F.adaptive_avg_pool2d(y, 5))


def test_half_input_is_computed_in_float32():
    x = torch.randn(2, 3, 37, 23)
    out = area_pool(x.half(), 5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, area_pool(x.half().float(), 5))
    torch.testing.assert_close(out, area_pool(x, 5), rtol=0, atol=5e-3)


def test_area_pool_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        area_pool(torch.zeros(3, 4, 5), 5)
    with pytest.raises(ValueError, match=r"'k' parameter of area_pool must be an int in the range \[1, inf\)"):
        area_pool(torch.zeros(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="empty spatial axis"):
        area_pool(torch.zeros(1, 1, 0, 4), 2)
    with pytest.raises(TypeError):
        area_pool(np.zeros((1, 1, 4, 4)), 2)


# ------------------------------------------------------- on devices (issue 18)


def test_pooling_stays_float32_under_autocast():
    x = (torch.randn(2, 8, 13, 11) * 3 + 1).to(torch.bfloat16)
    want = area_pool(x, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what a bfloat16 / float16 forward pass runs under
        got = area_pool(x, 5)
        got32 = area_pool(x.float(), 5)
    assert got.dtype == got32.dtype == torch.float32
    assert torch.equal(got, want) and torch.equal(got32, want)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_pooling_copies_no_map_in_either_layout(layout):
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(2, 16, 23, 19)
    want = area_pool(x, 5)
    x = x.contiguous(memory_format=layout)
    area_pool(x, 5)  # the weights are cached
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        got = area_pool(x, 5)
    ops = {e.key for e in prof.key_averages()}
    assert not ops & {"aten::clone", "aten::contiguous", "aten::copy_"}, ops
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_pooling_weights_are_built_on_the_device_without_a_host_copy():
    from torch.utils._python_dispatch import TorchDispatchMode

    from sklearn_mlsp.pooling import _weights_tensor

    class Devices(TorchDispatchMode):
        seen = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in (*args, *(kwargs or {}).values(), out):
                if torch.is_tensor(t):
                    self.seen.add(t.device.type)
            return out

    _weights_tensor.cache_clear()
    with Devices():
        w = _weights_tensor(13, 5, torch.device("meta"), torch.float32)
    assert w.device.type == "meta" and Devices.seen == {"meta"}, Devices.seen
    _weights_tensor.cache_clear()
    cpu = _weights_tensor(13, 5, torch.device("cpu"), torch.float64)
    np.testing.assert_array_equal(cpu.numpy(), area_weights(13, 5))  # the same exact weights as before


def test_autograd_through_pooling_after_an_inference_pass():
    with torch.inference_mode():  # what the tap hooks do: the weights are cached in there
        area_pool(torch.randn(1, 2, 7, 9), 5)
    x = torch.randn(1, 2, 7, 9, requires_grad=True)
    area_pool(x, 5).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()

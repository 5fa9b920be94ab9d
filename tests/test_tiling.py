"""Tests for astro_nn_restore.tiling (overlapping tiles, blending, batching)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from astro_nn_restore.tiling import blend_window, tile_positions, tiled_apply

torch = pytest.importorskip("torch")
nn = torch.nn


def _conv_net(n_convs, *, upsample=1, seed=0):
    """Random 3x3 conv stack: receptive-field radius ``n_convs`` (input pixels)."""
    torch.manual_seed(seed)
    layers = []
    for i in range(n_convs):
        out = upsample**2 if i == n_convs - 1 else 4
        layers += [nn.Conv2d(1 if i == 0 else 4, out, 3, padding=1), nn.Tanh()]
    if upsample > 1:
        layers.append(nn.PixelShuffle(upsample))
    return nn.Sequential(*layers).eval()


def _numpy_fn(net):
    def fn(batch):
        with torch.inference_mode():
            return net(torch.from_numpy(batch)).numpy()

    return fn


def _whole(net, image):
    return _numpy_fn(net)(image[None, None].astype(np.float32))[0, 0]


@pytest.fixture
def image(rng):
    return rng.normal(0.0, 1.0, (61, 83)).astype(np.float32)


# ------------------------------------------------- agreement with whole image
@pytest.mark.parametrize("shape", [(64, 64), (61, 83), (100, 37), (23, 150), (40, 40)])
@pytest.mark.parametrize(("radius", "tile", "overlap"), [(1, 16, 4), (2, 24, 8), (3, 32, 12)])
def test_tiled_equals_whole_image(rng, shape, radius, tile, overlap):
    net = _conv_net(radius)
    image = rng.normal(0.0, 1.0, shape).astype(np.float32)
    tiled = tiled_apply(_numpy_fn(net), image, tile_size=tile, overlap=overlap, batch_size=3)
    assert tiled.shape == shape
    assert_allclose(tiled, _whole(net, image), rtol=1e-5, atol=1e-6)


def test_too_small_overlap_differs(image):
    """Control: with overlap < radius the seams show (the test above can fail)."""
    net = _conv_net(3)
    tiled = tiled_apply(_numpy_fn(net), image, tile_size=16, overlap=2)
    assert np.max(np.abs(tiled - _whole(net, image))) > 1e-3


@pytest.mark.parametrize("shape", [(30, 30), (33, 47)])
def test_upsampling_net(rng, shape):
    net = _conv_net(2, upsample=2)
    image = rng.normal(0.0, 1.0, shape).astype(np.float32)
    tiled = tiled_apply(_numpy_fn(net), image, tile_size=16, overlap=8, scale=2, batch_size=2)
    assert tiled.shape == (2 * shape[0], 2 * shape[1])
    assert_allclose(tiled, _whole(net, image), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (5, 9), (20, 33)])
def test_scale_shapes(rng, shape):
    image = rng.normal(size=shape).astype(np.float32)
    upsample = lambda b: b.repeat(3, axis=2).repeat(3, axis=3)  # noqa: E731
    out = tiled_apply(upsample, image, tile_size=8, overlap=4, scale=3)
    assert out.shape == (3 * shape[0], 3 * shape[1])
    assert_allclose(out, image.repeat(3, 0).repeat(3, 1), rtol=1e-6)


# ------------------------------------------------------- shapes and padding
@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (300, 7), (257, 513)])
def test_shapes_preserved_with_size_multiple(rng, shape):
    image = rng.normal(size=shape).astype(np.float32)
    seen = []

    def fn(batch):
        seen.append(batch.shape)
        return 2 * batch

    out = tiled_apply(fn, image, tile_size=64, overlap=16, size_multiple=8, batch_size=8)
    assert out.shape == shape and out.dtype == np.float32
    assert_allclose(out, 2 * image, rtol=1e-6)
    assert all(h % 8 == 0 and w % 8 == 0 for _, _, h, w in seen)
    assert all(len(s) == 4 and s[0] <= 8 for s in seen)


def test_channels(rng):
    image = rng.normal(size=(2, 20, 30)).astype(np.float32)
    out = tiled_apply(lambda b: b[:, :1] - b[:, 1:], image, tile_size=8, overlap=4,
                      out_channels=1)
    assert out.shape == (1, 20, 30)
    assert_allclose(out[0], image[0] - image[1], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ blending
@pytest.mark.parametrize(("shape", "tile", "overlap"), [
    ((50, 70), 16, 8), ((50, 70), 16, 15), ((9, 40), 4, 3), ((33, 33), 8, 1), ((64, 64), 64, 0),
    ((100, 3), 10, 9),
])
@pytest.mark.parametrize("value", [1.0, -0.5, 2.0**10])
def test_constant_comes_back_exactly(shape, tile, overlap, value):
    image = np.full(shape, value, dtype=np.float32)
    out = tiled_apply(lambda b: b, image, tile_size=tile, overlap=overlap, batch_size=5)
    assert_array_equal(out, image)


@pytest.mark.parametrize(("shape", "tile", "overlap"), [((50, 70), 16, 8), ((9, 40), 4, 3)])
def test_identity(rng, shape, tile, overlap):
    image = rng.normal(100.0, 10.0, shape).astype(np.float32)
    out = tiled_apply(lambda b: b, image, tile_size=tile, overlap=overlap, scale=1)
    assert_allclose(out, image, rtol=1e-6)


@pytest.mark.parametrize(("tile", "overlap"), [(8, 4), (16, 8), (9, 5), (10, 0)])
def test_blend_window(tile, overlap):
    window = blend_window(tile, overlap)
    assert_allclose(window, window[::-1])
    assert np.all((window >= 0) & (window <= 1))
    assert window[tile // 2] == 1.0
    assert blend_window(tile, overlap, at_start=True)[0] == 1.0
    assert blend_window(tile, overlap, at_end=True)[-1] == 1.0
    step = tile - overlap  # neighbours shifted by one step sum to one in the overlap
    if overlap:
        total = window[step:] + window[:-step]
        assert_allclose(total[overlap // 4 : overlap - overlap // 4], 1.0, atol=1e-12)


@pytest.mark.parametrize(("length", "tile", "overlap", "expected"), [
    (10, 4, 2, [0, 2, 4, 6]), (3, 4, 2, [0]), (4, 4, 2, [0]), (9, 4, 0, [0, 4, 5]),
])
def test_tile_positions(length, tile, overlap, expected):
    assert tile_positions(length, tile, overlap) == expected


# ------------------------------------------------ determinism and batching
def _per_tile(batch):
    """A nonlinear numpy function that treats each tile on its own (no batch effects)."""
    from scipy.ndimage import uniform_filter

    return np.tanh(uniform_filter(batch, size=(1, 1, 3, 3), mode="constant"))


def test_deterministic_and_batch_independent(image):
    runs = [tiled_apply(_per_tile, image, tile_size=16, overlap=8, batch_size=b)
            for b in (1, 7, 7)]
    assert_array_equal(runs[0], runs[1])
    assert_array_equal(runs[1], runs[2])


def test_torch_net_batch_size(image):
    """Deterministic per batch size; oneDNN may round batches of 1 and 7 differently."""
    fn, image = _numpy_fn(_conv_net(2)), image[:40, :50]
    runs = [tiled_apply(fn, image, tile_size=16, overlap=8, batch_size=b) for b in (1, 7, 7)]
    assert_array_equal(runs[1], runs[2])
    assert_allclose(runs[0], runs[1], rtol=1e-5, atol=1e-6)


def test_batch_size_bounds_calls(image):
    sizes = []
    tiled_apply(lambda b: sizes.append(len(b)) or b, image, tile_size=16, overlap=8,
                batch_size=4)
    assert max(sizes) == 4 and sum(sizes) == len(tile_positions(61, 16, 8)) * len(
        tile_positions(83, 16, 8))


def test_progress_bar(image, capsys):
    out = tiled_apply(lambda b: b, image, tile_size=16, overlap=8, progress=True)
    assert_allclose(out, image, rtol=1e-6)
    assert "tiles" in capsys.readouterr().err


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(tile_size=0), "positive"),
    (dict(batch_size=0), "positive"),
    (dict(scale=0), "positive"),
    (dict(overlap=-1), "overlap"),
    (dict(tile_size=16, overlap=16), "overlap"),
])
def test_bad_arguments(image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiled_apply(lambda b: b, image, **kwargs)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 10, 10)])
def test_bad_image_dimensions(shape):
    with pytest.raises(ValueError, match="needs a"):
        tiled_apply(lambda b: b, np.zeros(shape, np.float32))


def test_network_returning_wrong_shape(image):
    with pytest.raises(ValueError, match="returned tiles of shape"):
        tiled_apply(lambda b: b[..., :-1], image, tile_size=16, overlap=8)


@pytest.mark.parametrize("name", ["tile_size", "overlap", "batch_size"])
def test_tiling_numbers_must_be_integers(name):
    from astro_nn_restore.tiling import tiled_apply

    settings = dict(tile_size=8, overlap=2, batch_size=2)
    settings[name] = "4"
    with pytest.raises(TypeError, match=f"{name} must be a number, got '4'"):
        tiled_apply(lambda batch: batch, np.zeros((16, 16), np.float32), **settings)


def test_a_float_tile_size_is_rounded_up_as_before():
    from astro_nn_restore.tiling import tiled_apply

    image = np.arange(400.0, dtype=np.float32).reshape(20, 20)
    out = tiled_apply(lambda batch: 2 * batch, image, tile_size=8.5, overlap=2)
    np.testing.assert_allclose(out, 2 * image)

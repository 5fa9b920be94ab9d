"""Tests for astro_nn_restore.normalize (whole-image, invertible normalisation)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from astro_nn_restore.normalize import Normalization, estimate_normalization

SHAPE = (200, 200)


def _sky(rng, background=1e4, sigma=7.0, dtype=np.float32):
    return (background + sigma * rng.standard_normal(SHAPE)).astype(dtype)


def _add_stars(image, rng, fraction=0.05, flux=(1e3, 1e5)):
    stars = rng.random(image.shape) < fraction
    image[stars] += rng.uniform(*flux, stars.sum()).astype(image.dtype)
    return stars


@pytest.mark.parametrize("background", [0.0, 1e4, -3e4, 6e4])
@pytest.mark.parametrize("sigma", [1e-3, 7.0, 500.0])
def test_round_trip_float32(rng, background, sigma):
    image = _sky(rng, background, sigma)
    _add_stars(image, rng)
    norm = estimate_normalization(image)
    forward = norm.forward(image)
    assert forward.dtype == np.float32
    back = norm.inverse(forward)
    assert back.dtype == np.float32
    # float32 precision of the offset and of the value itself bounds the error
    scale = np.abs(image.astype(np.float64)) + abs(norm.background)
    assert np.max(np.abs(back - image.astype(np.float64)) / scale) < 1e-6
    assert np.max(np.abs(back - image)) / np.max(np.abs(image)) < 1e-6


def test_round_trip_sigma(rng):
    norm = Normalization(background=1e4, scale=7.0)
    sigma = rng.uniform(1, 20, SHAPE).astype(np.float32)
    assert_allclose(norm.inverse_sigma(norm.forward_sigma(sigma)), sigma, rtol=1e-6)
    assert_allclose(norm.forward_sigma(sigma), sigma / 7.0, rtol=1e-6)


def test_forward_puts_sky_at_zero_and_noise_at_one(rng):
    image = _sky(rng)
    x = estimate_normalization(image).forward(image)
    assert abs(np.median(x)) < 0.05
    assert np.std(x) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("nan_fraction", [0.0, 0.2])
def test_robust_to_stars_and_nan(rng, nan_fraction):
    image = _sky(rng, background=1e4, sigma=7.0)
    _add_stars(image, rng, fraction=0.05)
    image[rng.random(SHAPE) < nan_fraction] = np.nan
    image[0, :5] = [np.inf, -np.inf, np.nan, np.inf, np.nan]
    norm = estimate_normalization(image)
    assert norm.background == pytest.approx(1e4, abs=1.0)  # within 0.15 sigma
    assert norm.scale == pytest.approx(7.0, rel=0.1)


def test_bad_pixels_ignored(rng):
    image = _sky(rng, background=100.0, sigma=2.0)
    bad = np.zeros(SHAPE, bool)
    bad[:, :100] = True
    image[bad] = 1e6  # a saturated half, masked out
    norm = estimate_normalization(image, bad=bad)
    assert norm.background == pytest.approx(100.0, abs=0.2)
    assert norm.scale == pytest.approx(2.0, rel=0.05)


def test_uncertainty_sets_the_scale(rng):
    image = _sky(rng, background=50.0, sigma=3.0)
    uncertainty = np.full(SHAPE, 11.0, dtype=np.float32)
    uncertainty[:10] = np.nan  # ignored
    uncertainty[10:20] = 0.0  # ignored
    norm = estimate_normalization(image, uncertainty=uncertainty)
    assert norm.scale == pytest.approx(11.0)
    assert norm.background == pytest.approx(50.0, abs=0.1)


def test_useless_uncertainty_falls_back_to_image(rng):
    image = _sky(rng, background=50.0, sigma=3.0)
    norm = estimate_normalization(image, uncertainty=np.zeros(SHAPE))
    assert np.isfinite(norm.scale) and norm.scale > 0


@pytest.mark.parametrize("value", [0.0, 1.0, -250.0, 3e4])
def test_constant_image(value):
    image = np.full(SHAPE, value, dtype=np.float32)
    norm = estimate_normalization(image)
    assert norm.background == value
    assert norm.scale > 0 and np.isfinite(norm.scale)
    assert_allclose(norm.forward(image), 0.0)
    assert_allclose(norm.inverse(norm.forward(image)), image)


def test_two_valued_image_has_positive_scale():
    image = np.zeros(SHAPE, dtype=np.float32)
    image[0, 0] = 5.0  # sigma clipping removes it: std 0, the fallback takes over
    norm = estimate_normalization(image)
    assert norm.scale > 0


@pytest.mark.parametrize("bad", ["nan", "masked"])
def test_no_usable_pixel(bad):
    image = np.ones(SHAPE, dtype=np.float32)
    mask = np.zeros(SHAPE, bool)
    if bad == "nan":
        image[:] = np.nan
    else:
        mask[:] = True
    with pytest.raises(ValueError, match="no finite, unmasked pixel"):
        estimate_normalization(image, bad=mask)


@pytest.mark.parametrize(("background", "scale"), [
    (0.0, 0.0), (0.0, -1.0), (0.0, np.nan), (0.0, np.inf), (np.nan, 1.0), (np.inf, 1.0),
])
def test_invalid_normalization(background, scale):
    with pytest.raises(ValueError, match="finite background and a positive scale"):
        Normalization(background=background, scale=scale)


def test_normalization_is_frozen():
    norm = Normalization(1.0, 2.0)
    with pytest.raises(AttributeError):
        norm.scale = 3.0


def test_large_image_is_sampled_deterministically(rng):
    image = (5.0 + rng.standard_normal((1100, 1000))).astype(np.float32)  # > 1e6 pixels
    first, second = estimate_normalization(image), estimate_normalization(image)
    assert first == second
    assert first.background == pytest.approx(5.0, abs=0.01)
    assert first.scale == pytest.approx(1.0, rel=0.02)

import numpy as np
import pytest

from astro_nn_restore import degrade
from astro_nn_restore.degrade import (
    add_bad_column,
    add_cosmic_rays,
    add_gaussian_noise,
    add_ghost,
    add_hot_pixels,
    add_poisson_gaussian_noise,
    add_satellite_trail,
    add_saturation_bleed,
    block_bin,
    block_sum,
    blur,
    coarse_detector,
    correlated_noise,
    noise_sigma_from_range,
    to_greyscale,
)
from astro_nn_restore.simulate import psf_gaussian, psf_moffat, simulate_sky


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def sky():
    return simulate_sky((96, 96), seed=21).clean.data


# ---------------------------------------------------------------------- noise


def test_gaussian_noise(rng, sky):
    before = sky.copy()
    noisy = add_gaussian_noise(sky, 7.0, rng)
    assert (noisy - sky).std() == pytest.approx(7.0, rel=0.03)
    np.testing.assert_array_equal(sky, before)
    sigma_map = np.full(sky.shape, 2.0)
    assert (add_gaussian_noise(sky, sigma_map, rng) - sky).std() == pytest.approx(2.0, rel=0.03)


@pytest.mark.parametrize(("gain", "read_noise"), [(1.0, 5.0), (2.0, 8.0), (0.5, 3.0)])
def test_poisson_gaussian_noise(rng, sky, gain, read_noise):
    before = sky.copy()
    noisy, sigma = add_poisson_gaussian_noise(sky, gain=gain, read_noise=read_noise, rng=rng)
    assert noisy.shape == sigma.shape == sky.shape
    np.testing.assert_allclose(sigma, np.sqrt(sky / gain + (read_noise / gain) ** 2))
    z = (noisy - sky) / sigma
    assert z.std() == pytest.approx(1.0, rel=0.03)
    assert abs(z.mean()) < 0.03
    np.testing.assert_array_equal(sky, before)


def test_poisson_noise_ignores_negative_expectation(rng):
    noisy, sigma = add_poisson_gaussian_noise(np.full((10, 10), -5.0), gain=1.0, read_noise=0.0,
                                              rng=rng)
    assert np.all(noisy == 0) and np.all(sigma == 0)


def test_noise_sigma_from_range(sky):
    low, high = np.percentile(sky, [0.5, 99.9])
    assert noise_sigma_from_range(sky, 0.05) == pytest.approx(0.05 * (high - low))
    with_nan = sky.copy()
    with_nan[0, 0] = np.nan
    assert np.isfinite(noise_sigma_from_range(with_nan, 0.05))


def test_correlated_noise(rng):
    noise = correlated_noise((256, 256), 4.0, rng)
    assert noise.shape == (256, 256)
    assert noise.std() == pytest.approx(4.0, rel=0.05)
    neighbour = np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]
    assert neighbour > 0.3
    white = correlated_noise((256, 256), 4.0, rng, kernel_fwhm=0)
    assert abs(np.corrcoef(white[:, :-1].ravel(), white[:, 1:].ravel())[0, 1]) < 0.03
    wide = correlated_noise((256, 256), 1.0, rng, kernel_fwhm=4.0)
    assert wide.std() == pytest.approx(1.0, rel=0.1)


# --------------------------------------------------------- optics / detector


def test_blur_conserves_flux_of_central_source():
    image = np.zeros((80, 80))
    image[38:43, 37:42] = np.arange(25.0).reshape(5, 5)
    before = image.copy()
    blurred = blur(image, psf_moffat(3.0))
    assert blurred.shape == image.shape
    assert blurred.sum() == pytest.approx(image.sum(), rel=1e-6)
    assert blurred.max() < image.max()
    np.testing.assert_array_equal(image, before)


def test_blur_edges_and_delta():
    flat = np.full((40, 50), 3.0)
    np.testing.assert_allclose(blur(flat, psf_gaussian(4.0)), 3.0, rtol=1e-10)
    delta = np.zeros((41, 41))
    delta[20, 20] = 1.0
    kernel = psf_gaussian(2.0, ellipticity=0.3, theta=0.7)
    h = kernel.shape[0] // 2
    np.testing.assert_allclose(blur(delta, kernel)[20 - h:21 + h, 20 - h:21 + h], kernel,
                               atol=1e-12)
    assert blur(flat, np.ones((4, 4)) / 16).shape == flat.shape


def test_block_bin_constant_and_crop():
    image = np.full((33, 50), 7.0)
    binned = block_bin(image, 4)
    assert binned.shape == (8, 12)
    np.testing.assert_allclose(binned, 7.0)
    np.testing.assert_allclose(block_bin(image, 4, func="sum"), 112.0)
    np.testing.assert_allclose(block_sum(image, 5), 175.0)
    ramp = np.arange(36.0).reshape(6, 6)
    assert block_sum(ramp, 3).sum() == ramp.sum()
    assert block_bin(ramp, 2, func=np.max)[0, 0] == 7.0
    with pytest.raises(ValueError):
        block_bin(image, 0)


def test_coarse_detector(rng, sky):
    before = sky.copy()
    coarse = coarse_detector(sky, 4)
    assert coarse.shape == (24, 24)
    np.testing.assert_allclose(coarse, block_bin(sky, 4))
    blurred = coarse_detector(sky, 3, psf=psf_gaussian(2.0))
    assert blurred.shape == (32, 32)
    assert blurred.mean() == pytest.approx(sky.mean(), rel=1e-3)
    noisy = coarse_detector(sky, 2, noise_sigma=5.0, rng=rng)
    assert (noisy - block_bin(sky, 2)).std() == pytest.approx(5.0, rel=0.05)
    with pytest.raises(ValueError, match="rng"):
        coarse_detector(sky, 2, noise_sigma=1.0)
    np.testing.assert_array_equal(sky, before)


def test_to_greyscale():
    rgb = np.random.default_rng(0).uniform(size=(5, 6, 3))
    grey = to_greyscale(rgb)
    assert grey.shape == (5, 6)
    np.testing.assert_allclose(grey, 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1]
                               + 0.114 * rgb[..., 2])
    np.testing.assert_allclose(to_greyscale(np.full((2, 2, 3), 0.4)), 0.4)
    with pytest.raises(ValueError):
        to_greyscale(np.zeros((3, 4, 4)))


# ----------------------------------------------------------------- artefacts


ARTEFACTS = [
    lambda im, rng: add_cosmic_rays(im, rng, 12),
    lambda im, rng: add_hot_pixels(im, rng, 9),
    lambda im, rng: add_satellite_trail(im, rng),
    lambda im, rng: add_satellite_trail(im, rng, amplitude=50.0, width=4.0),
    lambda im, rng: add_bad_column(im, rng),
    lambda im, rng: add_bad_column(im, rng, value=1e4),
    lambda im, rng: add_saturation_bleed(im, rng),
    lambda im, rng: add_ghost(im, rng),
]


@pytest.mark.parametrize("artefact", ARTEFACTS)
def test_artefacts_change_only_masked_pixels(artefact, sky):
    before = sky.copy()
    for seed in range(5):
        image, mask = artefact(sky, np.random.default_rng(seed))
        assert image.shape == mask.shape == sky.shape and mask.dtype == bool
        assert mask.any()
        np.testing.assert_array_equal(image[~mask], sky[~mask])
        assert np.any(image[mask] != sky[mask])
    np.testing.assert_array_equal(sky, before)
    a, mask_a = artefact(sky, np.random.default_rng(3))
    b, mask_b = artefact(sky, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mask_a, mask_b)


def test_saturation_bleed_runs_along_brightest_column(sky):
    image, mask = add_saturation_bleed(sky, np.random.default_rng(0), length=12)
    y0, x0 = np.unravel_index(np.argmax(sky), sky.shape)
    assert np.unique(np.nonzero(mask)[1]).tolist() == [x0]
    assert mask[y0, x0]
    np.testing.assert_allclose(image[mask], sky.max())


def test_cosmic_rays_amplitude():
    image, mask = add_cosmic_rays(np.zeros((50, 50)), np.random.default_rng(0), 4,
                                  amplitude=100.0)
    assert np.all((image[mask] >= 50.0) & (image[mask] <= 150.0 * 4))
    none, empty = add_cosmic_rays(np.ones((5, 5)), np.random.default_rng(0), 0)
    assert not empty.any() and np.all(none == 1)


def test_functions_do_not_modify_input(rng, sky):
    before = sky.copy()
    kernel = psf_gaussian(2.0)
    kernel_before = kernel.copy()
    add_gaussian_noise(sky, 1.0, rng)
    add_poisson_gaussian_noise(sky, gain=1.0, read_noise=1.0, rng=rng)
    blur(sky, kernel)
    block_bin(sky, 2)
    block_sum(sky, 2)
    coarse_detector(sky, 2, psf=kernel, noise_sigma=1.0, rng=rng)
    noise_sigma_from_range(sky, 0.05)
    for name in ("add_cosmic_rays", "add_hot_pixels", "add_satellite_trail", "add_bad_column",
                 "add_saturation_bleed", "add_ghost"):
        getattr(degrade, name)(sky, rng)
    np.testing.assert_array_equal(sky, before)
    np.testing.assert_array_equal(kernel, kernel_before)
    rgb = np.ones((4, 4, 3))
    to_greyscale(rgb)
    assert np.all(rgb == 1)

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.wcs.utils import proj_plane_pixel_scales
from photutils.aperture import CircularAperture, aperture_photometry

from astro_nn_restore.simulate import (
    psf_airy,
    psf_gaussian,
    psf_moffat,
    random_psf,
    sed_colors,
    simulate_multiband,
    simulate_sky,
)


def _fwhm_along(kernel, axis):
    """FWHM from linear interpolation of the half-maximum crossings of the central line."""
    c = kernel.shape[0] // 2
    line = kernel[c, :] if axis == "x" else kernel[:, c]
    half = line.max() / 2
    above = np.flatnonzero(line >= half)
    lo, hi = above[0], above[-1]
    left = lo - 1 + (half - line[lo - 1]) / (line[lo] - line[lo - 1])
    right = hi + (line[hi] - half) / (line[hi] - line[hi + 1])
    return right - left


def _isolated(sources, index, distance):
    d = np.hypot(sources["x"] - sources["x"][index], sources["y"] - sources["y"][index])
    return np.sort(d)[1] > distance


# --------------------------------------------------------------------- PSFs


PSFS = [
    (lambda: psf_moffat(3.0), 3.0),
    (lambda: psf_moffat(5.0, beta=2.5), 5.0),
    (lambda: psf_moffat(4.0, beta=4.5), 4.0),
    (lambda: psf_gaussian(3.0), 3.0),
    (lambda: psf_gaussian(6.0), 6.0),
    (lambda: psf_airy(4.0), 0.8436 * 4.0),
    (lambda: psf_airy(6.0), 0.8436 * 6.0),
]


@pytest.mark.parametrize(("make", "fwhm"), PSFS)
def test_psf_normalised_odd_centred_with_asked_fwhm(make, fwhm):
    kernel = make()
    ny, nx = kernel.shape
    assert ny == nx and ny % 2 == 1
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.unravel_index(np.argmax(kernel), kernel.shape) == (ny // 2, nx // 2)
    assert np.all(kernel >= 0)
    for axis in ("x", "y"):
        assert _fwhm_along(kernel, axis) == pytest.approx(fwhm, rel=0.1)


def test_psf_is_symmetric():
    kernel = psf_moffat(3.0)
    np.testing.assert_allclose(kernel, kernel.T, atol=1e-15)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-15)


@pytest.mark.parametrize("make", [psf_moffat, psf_gaussian])
def test_elliptical_psf_minor_axis(make):
    kernel = make(5.0, ellipticity=0.3, theta=0.0)
    assert _fwhm_along(kernel, "x") == pytest.approx(5.0, rel=0.1)
    assert _fwhm_along(kernel, "y") == pytest.approx(3.5, rel=0.1)
    rotated = make(5.0, ellipticity=0.3, theta=np.pi / 2)
    np.testing.assert_allclose(rotated, kernel.T, atol=1e-12)


def test_psf_size_argument():
    assert psf_moffat(2.0, size=15).shape == (15, 15)
    assert psf_airy(2.0, size=9).sum() == pytest.approx(1.0)
    for bad in (14, 0, 7.5):
        with pytest.raises(ValueError, match="odd"):
            psf_gaussian(2.0, size=bad)


def test_random_psf_family():
    rng = np.random.default_rng(4)
    for _ in range(30):
        kernel = random_psf(rng)
        c = kernel.shape[0] // 2
        assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
        assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
        assert kernel[c, c] == kernel.max()
        assert 1.5 * 0.7 * 0.9 < _fwhm_along(kernel, "x") < 5.0 * 1.15
    a = random_psf(np.random.default_rng(1), size=25)
    b = random_psf(np.random.default_rng(1), size=25)
    assert a.shape == (25, 25)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- simulate_sky


@pytest.fixture(scope="module")
def sim():
    return simulate_sky((128, 160), seed=11)


def test_deterministic_by_seed(sim):
    again = simulate_sky((128, 160), seed=11)
    np.testing.assert_array_equal(sim.clean.data, again.clean.data)
    np.testing.assert_array_equal(sim.noisy.data, again.noisy.data)
    for name in sim.sources.colnames:
        np.testing.assert_array_equal(sim.sources[name], again.sources[name])
    assert sim.clean.header == again.clean.header
    other = simulate_sky((128, 160), seed=12)
    assert not np.array_equal(sim.noisy.data, other.noisy.data)


def test_shapes_units_and_header(sim):
    for image in (sim.clean, sim.noisy):
        assert isinstance(image, CCDData)
        assert image.shape == (128, 160)
        assert image.unit == u.electron
        assert image.header["TELESCOP"] == "SIMULATED"
        assert image.header["BUNIT"] == "electron"
        for key in ("GAIN", "RDNOISE", "EXPTIME", "DATE-OBS"):
            assert key in image.header
    assert isinstance(sim.noisy.uncertainty, StdDevUncertainty)
    assert sim.artefact_mask.shape == (128, 160) and not sim.artefact_mask.any()
    assert sim.background.shape == (128, 160)
    adu = simulate_sky((32, 32), seed=0, unit="adu", gain=2.0)
    assert adu.noisy.unit == u.adu and adu.clean.header["GAIN"] == 2.0


def test_wcs_is_celestial_tan(sim):
    wcs = sim.clean.wcs
    assert wcs.has_celestial and wcs.is_celestial
    assert list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    scales = proj_plane_pixel_scales(wcs) * 3600
    np.testing.assert_allclose(scales, 0.4, rtol=1e-9)
    np.testing.assert_allclose(wcs.wcs.crpix, [80.5, 64.5])
    assert sim.noisy.wcs.to_header() == wcs.to_header()
    ra, dec = wcs.pixel_to_world_values(sim.sources["x"], sim.sources["y"])
    np.testing.assert_allclose(sim.sources["ra"], ra)


def test_clean_is_finite_and_above_background(sim):
    assert np.all(np.isfinite(sim.clean.data))
    assert np.all(sim.clean.data >= sim.background - 1e-9)
    assert sim.background.mean() == pytest.approx(100.0, rel=0.02)
    assert np.ptp(sim.background) == pytest.approx(10.0, rel=0.5)


def test_sources_table(sim):
    s = sim.sources
    for name in ("x", "y", "flux", "kind", "fwhm", "r_eff", "sersic_n", "ellipticity"):
        assert name in s.colnames
    assert set(s["kind"]) <= {"star", "galaxy"}
    assert np.all(s["flux"] > 0)
    assert np.all((s["x"] >= -0.5) & (s["x"] <= 159.5) & (s["y"] >= -0.5) & (s["y"] <= 127.5))
    galaxies = s[s["kind"] == "galaxy"]
    assert np.all((galaxies["sersic_n"] >= 0.5) & (galaxies["sersic_n"] <= 4))


def test_default_counts_scale_with_area():
    small = [len(simulate_sky((128, 128), seed=i).sources) for i in range(8)]
    assert 10 < np.mean(small) < 25  # ~70 per 256x256, so ~17.5 per 128x128
    fixed = simulate_sky((64, 64), seed=0, n_stars=3, n_galaxies=2)
    assert list(fixed.sources["kind"]).count("star") == 3
    assert list(fixed.sources["kind"]).count("galaxy") == 2


@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_noise_matches_uncertainty(gain):
    sim = simulate_sky((256, 256), seed=3, gain=gain)
    residual = (sim.noisy.data - sim.clean.data) / sim.noisy.uncertainty.array
    assert residual.std() == pytest.approx(1.0, rel=0.03)
    assert abs(residual.mean()) < 0.02
    expected = np.sqrt(sim.clean.data / gain + (5.0 / gain) ** 2)
    np.testing.assert_allclose(sim.noisy.uncertainty.array, expected)


def test_total_source_flux_in_frame():
    sim = simulate_sky((96, 96), seed=2, n_stars=6, n_galaxies=3)
    # every source rendered with its stamp summing to its flux; none lost for
    # stamps fully inside the frame, so the total is bounded by the table
    total = (sim.clean.data - sim.background).sum()
    assert 0.5 * sim.sources["flux"].sum() < total <= sim.sources["flux"].sum() * (1 + 1e-9)


@pytest.mark.parametrize("psf", [None, psf_gaussian(3.0, size=15), psf_airy(3.0)])
def test_aperture_photometry_recovers_star_flux(psf):
    sim = simulate_sky((256, 256), seed=7, n_stars=15, n_galaxies=0, psf=psf)
    stars = sim.sources
    half = sim.psf.shape[0] // 2
    radius = 12.0 if psf is None else half + 1.0
    inside = ((stars["x"] > radius + 1) & (stars["x"] < 254 - radius)
              & (stars["y"] > radius + 1) & (stars["y"] < 254 - radius))
    candidates = [i for i in np.argsort(stars["flux"])[::-1]
                  if inside[i] and _isolated(stars, i, 2 * (half + 1) + radius)]
    assert candidates, "no isolated star in the field"
    i = candidates[0]
    aperture = CircularAperture((stars["x"][i], stars["y"][i]), r=radius)
    clean = aperture_photometry(sim.clean.data - sim.background, aperture)["aperture_sum"][0]
    assert clean == pytest.approx(stars["flux"][i], rel=0.02)
    noisy = aperture_photometry(sim.noisy.data - sim.background, aperture)["aperture_sum"][0]
    noise = np.sqrt(np.sum(aperture.to_mask().multiply(sim.noisy.uncertainty.array ** 2)))
    assert abs(noisy - stars["flux"][i]) < 0.02 * stars["flux"][i] + 4 * noise


def test_user_psf_is_used_and_normalised():
    kernel = 2.0 * psf_gaussian(2.0, size=11)
    sim = simulate_sky((64, 64), seed=5, psf=kernel, n_stars=4, n_galaxies=1)
    np.testing.assert_allclose(sim.psf, kernel / 2.0)
    with pytest.raises(ValueError, match="odd"):
        simulate_sky((32, 32), psf=np.ones((4, 4)))


def test_artefacts_only_inside_mask():
    plain = simulate_sky((128, 128), seed=9)
    hit = simulate_sky((128, 128), seed=9, cosmic_rays=15, hot_pixels=10)
    mask = hit.artefact_mask
    assert 10 + 15 <= mask.sum() < 400
    np.testing.assert_array_equal(hit.noisy.data[~mask], plain.noisy.data[~mask])
    assert np.all(hit.noisy.data[mask] > plain.noisy.data[mask])
    np.testing.assert_array_equal(hit.clean.data, plain.clean.data)


# ------------------------------------------------------------------ colours


def test_sed_colors():
    rng = np.random.default_rng(0)
    for kind in ("star", "galaxy", "elliptical", "starforming"):
        ratios = sed_colors(kind, rng)
        assert ratios.shape == (3,) and np.all(ratios > 0)
        assert ratios.mean() == pytest.approx(1.0)
    red = np.mean([sed_colors("elliptical", rng)[0] for _ in range(20)])
    blue = np.mean([sed_colors("starforming", rng)[0] for _ in range(20)])
    assert red < blue  # less g-band flux in ellipticals
    assert sed_colors("star", rng, bands=("u", "g", "r", "i", "z")).shape == (5,)
    with pytest.raises(ValueError, match="kind"):
        sed_colors("quasar", rng)


def test_simulate_multiband():
    sim = simulate_multiband((96, 80), seed=4, n_stars=8, n_galaxies=4)
    assert list(sim.images) == ["g", "r", "i"]
    for band, image in sim.images.items():
        assert image.shape == (96, 80) and image.unit == u.electron
        assert image.header["FILTER"] == band
        assert image.wcs.is_celestial
        assert np.all(np.isfinite(image.data))
    s = sim.sources
    mean_flux = (s["flux_g"] + s["flux_r"] + s["flux_i"]) / 3
    np.testing.assert_allclose(mean_flux, s["flux"])
    # same sources and PSF: band images are linear in the band fluxes
    one = simulate_multiband((64, 64), seed=1, n_stars=1, n_galaxies=0)
    light = {b: (im.data - one.background).sum() for b, im in one.images.items()}
    row = one.sources[0]
    assert light["g"] / light["r"] == pytest.approx(row["flux_g"] / row["flux_r"], rel=1e-9)
    again = simulate_multiband((96, 80), seed=4, n_stars=8, n_galaxies=4)
    np.testing.assert_array_equal(again.images["r"].data, sim.images["r"].data)

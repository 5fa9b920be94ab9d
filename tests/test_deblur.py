"""deblur: PSF handling, flux conservation, the CCDData contract and the shipped model."""

import importlib
import json
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, NDData, StdDevUncertainty
from astropy.stats import mad_std
from astropy.utils.exceptions import AstropyUserWarning
from numpy.testing import assert_allclose, assert_array_equal

from astro_nn_restore.deblur import (
    conserve_flux,
    estimate_white_noise,
    prepare_psf,
    psf_stamp,
    wiener_prefilter,
)
from astro_nn_restore.degrade import blur
from astro_nn_restore.simulate import psf_gaussian, psf_moffat, simulate_sky

torch = pytest.importorskip("torch")

from astro_nn_restore import cli  # noqa: E402
from astro_nn_restore.deblur import deblur  # noqa: E402
from astro_nn_restore.models.deblur import DeblurUNet  # noqa: E402
from astro_nn_restore.registry import ModelLoadError, available_models, save_model  # noqa: E402

TINY = dict(channels=(8, 16), blocks=1, dilations=(2,), space_to_depth=2, features=8,
            embed_dim=8)
FAST = dict(tile_size=64, overlap=16, precision="fp32")
HAVE_DEFAULT = "deblur-default" in available_models("deblur")


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    net = DeblurUNet(**TINY).eval()
    with torch.no_grad():  # non-trivial output: the head is not zero at init anyway
        for p in net.film.parameters():
            p.normal_(0, 0.05)
    return net


@pytest.fixture(scope="module")
def tiny_model_path(tiny_net, tmp_path_factory):
    arguments = {k: list(v) if isinstance(v, tuple) else v for k, v in tiny_net.config.items()}
    path = tmp_path_factory.mktemp("deblur") / "tiny.safetensors"
    save_model(tiny_net, path, {"task": "deblur", "architecture": "DeblurUNet",
                                "arguments": arguments})
    return path


@pytest.fixture(scope="module")
def blurred_sky():
    """A simulated field blurred by a Moffat PSF (FWHM 3, beta 3), with its truth."""
    sky = simulate_sky((96, 112), seed=5, n_stars=25, n_galaxies=4)
    kernel = psf_moffat(3.0, beta=3.0)
    rng = np.random.default_rng(1)
    blurred = blur(sky.clean.data, kernel) + rng.normal(0, 8.0, sky.clean.shape)
    image = CCDData(blurred.astype(np.float32), unit="electron", wcs=sky.clean.wcs,
                    meta=sky.clean.header.copy())
    return image, kernel, sky


# ----------------------------------------------------------------------- PSF
def test_prepare_psf_normalises_and_keeps_odd_kernels():
    kernel = psf_gaussian(2.5) * 7.0
    prepared = prepare_psf(kernel)
    assert prepared.dtype == np.float64 and prepared.shape == kernel.shape
    assert_allclose(prepared, kernel / 7.0, rtol=1e-12)


def test_prepare_psf_recentres_even_kernels():
    odd = psf_gaussian(3.0, size=21)
    even = odd[1:, 1:]  # 20x20, centre at (9, 9)
    prepared = prepare_psf(even)
    assert prepared.shape == (21, 21)
    assert prepared.sum() == pytest.approx(1.0)
    y, x = np.indices(prepared.shape)
    assert (prepared * y).sum() == pytest.approx(10.0, abs=0.02)
    assert (prepared * x).sum() == pytest.approx(10.0, abs=0.02)


def test_prepare_psf_reads_fits(tmp_path):
    path = tmp_path / "psf.fits"
    fits.PrimaryHDU(psf_moffat(2.0).astype(">f4")).writeto(path)
    assert_allclose(prepare_psf(path), psf_moffat(2.0), atol=1e-7)
    with fits.open(path) as hdulist:
        assert_allclose(prepare_psf(hdulist), psf_moffat(2.0), atol=1e-7)


@pytest.mark.parametrize("bad, message", [
    (np.ones((3, 3, 3)), "2-D"),
    (np.full((3, 3), np.nan), "NaN"),
    (np.zeros((3, 3)), "positive sum"),
    (fits.HDUList([fits.PrimaryHDU()]), "no image HDU with data"),
])
def test_prepare_psf_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        prepare_psf(bad)


@pytest.mark.parametrize("psf", [psf_moffat(2.0) + 0j,
                                 np.ma.masked_array(psf_moffat(2.0), psf_moffat(2.0) < 0.01)])
def test_prepare_psf_refuses_complex_or_masked_kernels(psf):
    with pytest.raises(TypeError, match="real-valued array with no masked value"):
        prepare_psf(psf)


def test_prepare_psf_accepts_an_empty_mask_and_names_an_empty_hdu():
    kernel = psf_moffat(2.0)
    assert_allclose(prepare_psf(np.ma.masked_invalid(kernel)), kernel, atol=1e-12)
    with pytest.raises(TypeError, match="with a mask"):
        prepare_psf(NDData(kernel, mask=kernel < 0.01))
    with pytest.raises(ValueError, match="the PSF HDU has no data"):
        prepare_psf(fits.PrimaryHDU())


def test_psf_stamp_crops_and_pads():
    big = psf_moffat(4.0, size=41)
    stamp = psf_stamp(big, 21)
    assert stamp.shape == (21, 21) and stamp.dtype == np.float32
    assert stamp.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.argmax(stamp) == 10 * 21 + 10
    small = psf_stamp(psf_gaussian(1.5, size=7), 21)
    assert_allclose(small[7:14, 7:14], psf_gaussian(1.5, size=7), atol=1e-7)
    assert small[:7].sum() == 0


def test_wiener_prefilter_inverts_blur_and_keeps_flux():
    image = np.zeros((80, 90))
    image[40, 45], image[20, 30] = 1000.0, 300.0
    kernel = psf_gaussian(3.0)
    sharp = wiener_prefilter(blur(image, kernel), kernel, 1e-6)
    assert sharp.shape == image.shape and sharp.dtype == np.float32
    assert sharp.sum() == pytest.approx(image.sum() / (1 + 1e-6), rel=1e-3)  # + border leakage
    assert sharp[40, 45] > 5 * blur(image, kernel)[40, 45]


def test_conserve_flux_adds_a_constant_offset():
    good = np.ones((20, 20), bool)
    good[0, 0] = False
    ref = np.random.default_rng(0).normal(size=(20, 20))
    ref[10, 10] = 500.0
    raw = ref * 0.97
    raw[0, 0] = 1e6  # a bad pixel does not count
    out, offset = conserve_flux(raw, ref, good=good)
    assert out[good].sum() == pytest.approx(ref[good].sum())
    assert_allclose(out - raw, offset, atol=1e-9)  # the same constant everywhere


def test_white_noise_estimate_ignores_blurred_structure(blurred_sky):
    image, _, sky = blurred_sky
    assert estimate_white_noise(image.data) == pytest.approx(8.0, rel=0.05)
    bad = np.zeros(image.shape, bool)
    bad[:, :50] = True
    noisy = image.data.copy()
    noisy[:, :50] = 1e6  # masked garbage is ignored
    assert estimate_white_noise(noisy, bad=bad) == pytest.approx(8.0, rel=0.07)
    assert estimate_white_noise(np.full((20, 20), 3.0)) is None


# --------------------------------------------------------------- the network
def test_network_blind_samples_and_conditioned_module(tiny_net):
    x = torch.randn(3, tiny_net.in_channels, 32, 32)
    stamps = torch.from_numpy(np.stack([psf_stamp(psf_gaussian(f), 21) for f in (2, 3, 4)]))
    mixed = stamps.clone()
    mixed[1] = float("nan")
    with torch.no_grad():
        given = tiny_net((x, stamps))
        blind = tiny_net(x)
        both = tiny_net(x, mixed)
        fixed = tiny_net.conditioned(stamps[2])(x[2:])
    assert given.shape == (3, 1, 32, 32)
    assert_allclose(both[[0, 2]].numpy(), given[[0, 2]].numpy(), rtol=1e-5, atol=1e-5)
    assert_allclose(both[1].numpy(), blind[1].numpy(), rtol=1e-5, atol=1e-5)
    assert_allclose(fixed.numpy(), given[2:].numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(given[0].numpy(), blind[0].numpy())


# ---------------------------------------------------------- CCDData contract
@pytest.mark.parametrize("with_psf", [True, False])
def test_deblur_keeps_metadata_mask_nan_and_flux(blurred_sky, tiny_net, with_psf):
    image, kernel, _ = blurred_sky
    image = image.copy()
    image.data[5, 7] = np.nan
    image.mask = np.zeros(image.shape, bool)
    image.mask[30:33, 40:44] = True
    before = image.data.copy()
    out = deblur(image, psf=kernel if with_psf else None, model=tiny_net, **FAST)
    assert isinstance(out, CCDData) and out.shape == image.shape
    assert out.unit == u.electron
    assert_array_equal(out.mask, image.mask) and out.mask is not image.mask
    assert np.isnan(out.data[5, 7]) and np.isfinite(np.delete(out.data.ravel(), 5 * 112 + 7)).all()
    assert out.wcs.wcs.compare(image.wcs.wcs)
    assert out.header["ANR_OP"] == "deblur" and out.header["TELESCOP"] == "SIMULATED"
    history = "\n".join(out.header["HISTORY"])
    assert ("PSF given" if with_psf else "blind") in history and "flux kept" in history
    good = np.isfinite(image.data) & ~image.mask
    assert out.data[good].sum(dtype=float) == pytest.approx(image.data[good].sum(dtype=float),
                                                            rel=1e-6)
    assert_array_equal(image.data, before)  # input untouched


def test_deblur_uses_the_inputs_own_psf(blurred_sky, tiny_net):
    image, kernel, _ = blurred_sky
    with_psf = CCDData(image.data, unit=image.unit, wcs=image.wcs, meta=image.meta, psf=kernel)
    with pytest.warns(AstropyUserWarning, match="psf is not carried"):
        own = deblur(with_psf, model=tiny_net, **FAST)
    given = deblur(image, psf=kernel, model=tiny_net, **FAST)
    assert_array_equal(own.data, given.data)
    assert "PSF given (the input's psf)" in "\n".join(own.header["HISTORY"])


def test_deblur_warns_for_an_off_centre_psf(blurred_sky, tiny_net):
    from scipy.ndimage import shift

    from astro_nn_restore.deblur import psf_offset

    image, kernel, _ = blurred_sky
    moved = np.clip(shift(np.pad(kernel, 1), (0.19, 0.29), order=3), 0, None)
    assert psf_offset(prepare_psf(moved)) == pytest.approx((0.29, 0.19), abs=0.01)
    noisy = moved.copy()
    noisy[0, 0] = -0.01  # negative noise in a wing does not pull the centroid
    assert psf_offset(noisy) == psf_offset(moved)
    with pytest.warns(AstropyUserWarning, match=r"centroid is \(0.29, 0.19\) px") as caught:
        deblur(image, psf=moved, model=tiny_net, **FAST)
    assert caught[0].filename == __file__
    assert "sources in the output move towards (-0.29, -0.19) px" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # centred, and an even PSF (re-centred on its centroid)
        deblur(image, psf=kernel, model=tiny_net, **FAST)
        deblur(image, psf=moved[1:, 1:], model=tiny_net, **FAST)


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (3, 1)])
def test_a_psf_one_pixel_wide_is_accepted(blurred_sky, tiny_net, shape):
    image = blurred_sky[0]
    out = deblur(image, psf=np.ones(shape), model=tiny_net, **FAST)
    assert out.shape == image.shape
    assert out.data.sum(dtype=float) == pytest.approx(image.data.sum(dtype=float), rel=1e-6)


def test_deblur_colour_keeps_chroma(tiny_net):
    rng = np.random.default_rng(2)
    rgb = np.clip(rng.normal(0.3, 0.05, (40, 48, 3)), 0, 1).astype(np.float32)
    rgb[..., 0] += 0.1  # a reddish frame: chroma R - Y must survive
    out = deblur(rgb, psf=psf_gaussian(2.0), model=tiny_net, **FAST)
    assert out.shape == rgb.shape and out.dtype == np.float32
    luma = np.array([0.299, 0.587, 0.114])
    assert_allclose(out[..., 0] - out @ luma, rgb[..., 0] - rgb @ luma, atol=1e-5)
    assert_allclose(out[..., 2] - out @ luma, rgb[..., 2] - rgb @ luma, atol=1e-5)


def test_a_colour_cube_records_its_psf_and_noise_in_history(tiny_net):
    cube = CCDData(np.random.default_rng(3).normal(100, 5, (3, 40, 48)), unit="adu")
    out = deblur(cube, psf=psf_gaussian(2.0), uncertainty=5.0, model=tiny_net, **FAST)
    history = "".join(out.header["HISTORY"])  # long lines are split over cards
    assert "PSF given (ndarray)" in history and "uncertainty argument (one value)" in history
    assert "luminance" in history and "chroma kept" in history


def test_deblur_colour_keeps_the_mask_and_uses_the_uncertainty(tiny_net):
    rgb = np.clip(np.random.default_rng(2).normal(0.3, 0.05, (40, 48, 3)), 0, 1)
    mask = np.zeros(rgb.shape, bool)
    mask[3:5, 7:9] = True
    out = deblur(np.ma.masked_array(rgb, mask), psf=psf_gaussian(2.0), model=tiny_net, **FAST)
    assert (np.ma.getmaskarray(out) == mask).all()
    sigma = np.full(rgb.shape, 0.01)
    given = deblur(rgb, psf=psf_gaussian(2.0), model=tiny_net, uncertainty=sigma, **FAST)
    own = deblur(NDData(rgb, uncertainty=StdDevUncertainty(sigma)), psf=psf_gaussian(2.0),
                 model=tiny_net, **FAST)
    assert_array_equal(given, own)
    assert not np.allclose(given, deblur(rgb, psf=psf_gaussian(2.0), model=tiny_net, **FAST),
                           atol=1e-4)  # measured noise differs from the given one


def test_deblur_loads_weights_and_rejects_other_models(blurred_sky, tiny_model_path, tmp_path):
    image, kernel, _ = blurred_sky
    out = deblur(image, psf=kernel, model=tiny_model_path, **FAST)
    assert out.header["ANR_MOD"] == "tiny"
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    card["task"] = "denoise"
    other = tmp_path / "other.safetensors"
    other.write_bytes(tiny_model_path.read_bytes())
    other.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="not a 'deblur' model"):
        deblur(image, model=other)
    with pytest.raises(TypeError, match="PSF-aware"):
        deblur(image, model=torch.nn.Identity())
    with pytest.raises(ValueError, match="PSF"):
        deblur(image, psf=np.zeros((5, 5)), model=tiny_model_path)


def test_cli_deblur_with_psf_file(blurred_sky, tiny_model_path, tmp_path, capsys):
    image, kernel, _ = blurred_sky
    src, psf_path, dst = tmp_path / "in.fits", tmp_path / "psf.fits", tmp_path / "out.fits"
    image.write(src)
    fits.PrimaryHDU(kernel).writeto(psf_path)
    args = ["deblur", str(src), "-o", str(dst), "--model", str(tiny_model_path), "--psf",
            str(psf_path), "--tile-size", "64", "--overlap", "16", "--precision", "fp32"]
    assert cli.main(args) == 0
    result = CCDData.read(dst)
    assert result.shape == image.shape and result.unit == u.electron
    assert "PSF given" in "\n".join(result.header["HISTORY"])
    assert cli.main(args[:6] + ["--psf", str(tmp_path / "missing.fits"), "--overwrite"]) == 2
    assert "missing.fits" in capsys.readouterr().err


def test_local_flux_overlap_covers_the_widest_psf_axis():
    deblur_module = importlib.import_module("astro_nn_restore.deblur")
    wide, tall = np.ones((3, 41)), np.ones((41, 3))
    assert (deblur_module._local_flux_radius(wide) == deblur_module._local_flux_radius(tall)
            == 20 + 1 + 12)  # PSF half-width, 3x3 median, 4 Gaussian sigmas


def test_a_psf_file_with_several_images_needs_the_hdu_named(blurred_sky, tiny_model_path,
                                                            tmp_path, capsys):
    image, kernel, _ = blurred_sky
    wide = psf_moffat(6.0, beta=3.0)
    path = tmp_path / "psfs.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(wide),
                  fits.ImageHDU(kernel, name="NARROW")]).writeto(path)
    with pytest.raises(ValueError, match=r"2 image HDUs \(1, 2\): name one"):
        deblur(image, psf=path, model=tiny_model_path)
    second = deblur(image, psf=f"{path}[2]", model=tiny_model_path)
    np.testing.assert_array_equal(second.data, deblur(image, psf=kernel,
                                                      model=tiny_model_path).data)
    assert "PSF given (psfs.fits[2])" in "".join(second.header["HISTORY"])
    for same in (f"{path}[narrow]", f"{path}[-1]"):  # an EXTNAME or a negative index too
        np.testing.assert_array_equal(deblur(image, psf=same, model=tiny_model_path).data,
                                      second.data)
    for bad, message in ((f"{path}[0]", "the PSF file .*: HDU 0 of the FITS file holds no "
                                        "image data"),
                         (f"{path}[7]", "the PSF file .*: .* HDU 7 does not exist"),
                         (f"{path}[PSF]", r"no HDU named 'PSF' \(its HDUs: PRIMARY, 1, NARROW\)"),
                         (f"{tmp_path / 'none.fits'}[1]", "no such PSF file")):
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            deblur(image, psf=bad, model=tiny_model_path)
    with fits.open(path) as hdulist:
        with pytest.raises(ValueError, match=r"the PSF HDUList has 2 image HDUs"):
            deblur(image, psf=hdulist, model=tiny_model_path)
        np.testing.assert_array_equal(deblur(image, psf=hdulist[2], model=tiny_model_path).data,
                                      second.data)
    src, dst = tmp_path / "in.fits", tmp_path / "out.fits"
    image.write(src)
    args = ["deblur", str(src), "-o", str(dst), "--model", str(tiny_model_path),
            "--tile-size", "64", "--overlap", "16", "--precision", "fp32", "--psf"]
    assert cli.main(args + [str(path)]) == 2
    assert "name one" in capsys.readouterr().err
    assert cli.main(args + [f"{path}[1]"]) == 0


def test_train_deblur_exports_loadable_model(tmp_path):
    from astro_nn_restore.registry import load_model
    from astro_nn_restore.train.__main__ import main

    arch = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()})
    argv = ["deblur", "--out", str(tmp_path), "--name", "deblur-tiny", "--steps", "2",
            "--arch", arch, "--n-simulated", "2", "--batch-size", "2", "--patch-size", "32",
            "--threads", "1", "--val-every", "2", "--seed", "4", "--lr", "1e-4"]
    assert main(argv) == 0
    module, card = load_model(tmp_path / "deblur-tiny.safetensors", task="deblur")
    assert isinstance(module, DeblurUNet) and card["architecture"] == "DeblurUNet"
    assert "raw_flux_error_median" in card["calibration"]


# ------------------------------------------------------------- shipped model
needs_default = pytest.mark.skipif(not HAVE_DEFAULT, reason="no shipped deblur-default weights")


@needs_default
def test_default_model_sharpens_and_conserves_photometry():
    """A Moffat-blurred field: sharper, better PSNR, star aperture fluxes within 3 %."""
    from astro_nn_restore.metrics import aperture_flux_ratio, psnr

    sky = simulate_sky((160, 160), seed=11, n_stars=14, n_galaxies=3, fwhm=2.0)
    kernel = psf_moffat(3.0, beta=3.0)
    truth = sky.clean.data
    rng = np.random.default_rng(3)
    sigma = 0.005 * np.subtract(*np.percentile(truth, [99.9, 0.5]))
    blurred = (blur(truth, kernel) + rng.normal(0, sigma, truth.shape)).astype(np.float32)
    out = deblur(blurred, psf=kernel, uncertainty=sigma)
    assert psnr(truth, out.data) > psnr(truth, blurred) + 3.0
    stars = sky.sources[sky.sources["kind"] == "star"]
    xy = np.transpose([stars["x"], stars["y"]])
    distance = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)) + np.eye(len(xy)) * 1e9
    keep = ((xy > 16).all(1) & (xy < 143).all(1) & (distance.min(1) > 15)
            & (stars["flux"] > 200 * sigma))
    assert keep.sum() >= 3
    ratios = aperture_flux_ratio(truth, out.data, xy[keep], radius=6.0, annulus=(9.0, 14.0))
    assert abs(np.median(ratios) - 1) < 0.03


@needs_default
def test_default_model_moves_sources_against_the_psf_offset_as_the_warning_says():
    """A PSF with its centroid at +0.4 px in x: stars in the output sit left of the input's."""
    from scipy.ndimage import shift

    from astro_nn_restore.deblur import psf_offset

    kernel = np.clip(shift(psf_moffat(3.0, beta=3.0, size=21), (0.0, 0.4), order=3), 0, None)
    truth = np.zeros((96, 96))
    truth[48, 48], truth[30, 62] = 1000.0, 500.0
    blurred = blur(truth, kernel / kernel.sum()) + 10.0
    blurred += np.random.default_rng(0).normal(0, 0.05, truth.shape)
    with pytest.warns(AstropyUserWarning, match=r"move towards \(-0.40, 0.00\) px"):
        out = np.asarray(deblur(blurred.astype(np.float32), psf=kernel, uncertainty=0.05).data)

    def centroid_x(image, y, x):  # psf_offset: the centroid of a box's positive part
        return psf_offset(image[y - 5:y + 6, x - 5:x + 6] - np.median(image))[0]

    for y, x in ((48, 48), (30, 62)):
        moved = centroid_x(out, y, x) - centroid_x(blurred, y, x)
        assert -0.45 < moved < -0.15  # the input's stars sit +0.4 px off the truth


@needs_default
@pytest.mark.filterwarnings("ignore::photutils.utils.exceptions.NoDetectionsWarning")
def test_default_model_invents_no_sources_on_noise():
    from astro_nn_restore.metrics import count_detections

    noise = np.random.default_rng(7).normal(100.0, 5.0, (160, 160)).astype(np.float32)
    for psf in (psf_moffat(3.0, beta=3.0), None):
        out = deblur(noise, psf=psf)
        assert count_detections(out.data, sigma=5.0) <= count_detections(noise, sigma=5.0)


@needs_default
@pytest.mark.parametrize("blind", [False, True])
def test_default_model_warns_when_a_hot_pixel_moves_the_flux(blind):
    """One pixel the network cannot reproduce shifts the whole image, with a PSF too (the
    local correction clips it): warned, and masking helps."""
    sky = simulate_sky((64, 64), seed=1, fwhm=3.0)
    psf = None if blind else sky.psf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ordinary image gives no warning
        reference = deblur(sky.noisy, psf=psf)
    hot = sky.noisy.copy()
    hot.data[32, 32] = 1e6  # 8e4 sigma
    with pytest.warns(AstropyUserWarning, match="mask such pixels") as caught:
        out = deblur(hot, psf=psf)
    assert caught[0].filename == __file__
    far = np.ones(hot.shape, bool)
    far[16:49, 16:49] = False  # beyond 16 px of the hot pixel
    moved = np.median(np.abs(out.data[far] - reference.data[far])) / mad_std(sky.noisy.data)
    assert moved > 1  # beyond the residual clip, its flux is the whole image's offset
    hot.mask = np.zeros(hot.shape, bool)
    hot.mask[32, 32] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masked = deblur(hot, psf=psf)
    unmasked = ~hot.mask
    shift = np.median(masked.data[unmasked] - reference.data[unmasked])
    assert abs(shift) < 0.1 * mad_std(sky.noisy.data)


@needs_default
def test_a_hot_pixel_leaves_no_halo_with_a_psf():
    """The residual clip: no smooth bump around a pixel the network cannot reproduce."""
    sky = simulate_sky((96, 96), seed=2, fwhm=3.0)
    sigma = float(mad_std(sky.noisy.data[:12, :12]))
    reference = deblur(sky.noisy, psf=sky.psf).data
    hot = sky.noisy.copy()
    hot.data[48, 48] += 1000 * sigma
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the offset warning, tested above
        out = deblur(hot, psf=sky.psf).data
    ring = np.zeros(hot.shape, bool)
    ring[36:61, 36:61] = True
    ring[46:51, 46:51] = False  # 3-12 px from the hot pixel
    offset = np.median(out - reference)  # the whole image's offset
    assert (out - reference - offset)[ring].max() < 2.5 * sigma  # was 6.8 without the clip


def test_bright_stars_are_not_spikes_but_hot_pixels_are():
    """The spike test of the local flux correction knows how sharp the PSF can be."""
    from scipy.ndimage import shift

    deblur_module = importlib.import_module("astro_nn_restore.deblur")
    kernel = deblur_module.prepare_psf(psf_moffat(3.0, beta=3.0))
    rng = np.random.default_rng(3)
    for offset in ((0.0, 0.0), (0.5, 0.3), (0.25, 0.5)):
        image = rng.normal(0, 1, (64, 64))  # noise-sigma units, as the correction sees them
        image[32 - 11:32 + 12, 32 - 11:32 + 12] += 1e5 * shift(kernel, offset, order=3)
        assert not deblur_module._spikes(image, kernel).any()  # a 1e4-sigma star
        image[10, 50] += 300.0
        assert np.argwhere(deblur_module._spikes(image, kernel)).tolist() == [[10, 50]]

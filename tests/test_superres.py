"""Tests of `astro_nn_restore.super_resolve` and its models and training task."""

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty, block_reduce
from astropy.wcs import WCS

from astro_nn_restore import ModelLoadError, super_resolve
from astro_nn_restore.models.superres import SRCNN, SRResNet
from astro_nn_restore.registry import load_model, save_model
from astro_nn_restore.superres import flux_policy
from astro_nn_restore.wcs_utils import pixel_correspondence


def _perturbed(net, seed=0):
    """An untrained net with a non-zero residual (zero-initialised layers filled)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return net.eval()


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    net = _perturbed(SRResNet(channels=4, blocks=1))
    path = tmp_path_factory.mktemp("models") / "superres-tiny.safetensors"
    save_model(net, path, {"task": "superres", "architecture": "SRResNet",
                           "arguments": dict(net.config)})
    return str(path)


@pytest.fixture
def sky(rng):
    image = 100 + 5 * rng.standard_normal((40, 48))
    yy, xx = np.mgrid[:40, :48]
    image += 2000 * np.exp(-((yy - 20.3) ** 2 + (xx - 17.6) ** 2) / (2 * 1.2**2))
    return image.astype(np.float32)


def _tan_wcs(sip=False):
    header = fits.Header({"CTYPE1": "RA---TAN" + ("-SIP" if sip else ""),
                          "CTYPE2": "DEC--TAN" + ("-SIP" if sip else ""),
                          "CRPIX1": 20.5, "CRPIX2": 18.0, "CRVAL1": 150.0, "CRVAL2": 2.0,
                          "CD1_1": -1e-4, "CD1_2": 1e-6, "CD2_1": 2e-6, "CD2_2": 1e-4})
    if sip:
        header.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 2e-5, "A_1_1": -1e-5,
                       "B_0_2": 3e-5, "B_1_1": 1e-5})
    return WCS(header)


def _binned(image, factor, func=np.mean):
    return block_reduce(np.asarray(image, dtype=np.float64), factor, func=func)


@pytest.mark.parametrize("model", ["default", "srcnn"])
def test_shipped_models_keep_block_means(sky, model):
    out = super_resolve(CCDData(sky, unit="adu"), model=model, flux_conserving=False)
    assert out.header["ANR_MOD"] == f"superres-{model}"
    np.testing.assert_allclose(_binned(out.data, 2), sky, rtol=1e-5, atol=1e-4 * np.ptp(sky))


def test_unknown_model_name_gives_clear_error(sky):
    with pytest.raises(ModelLoadError, match="superres"):
        super_resolve(sky, model="no-such-model")


def test_shape_unit_header_and_flux(tiny_path, sky):
    data = CCDData(sky, unit="electron", meta={"OBJECT": "test", "PIXSCALE": 0.4, "SECPIX": 0.4})
    out = super_resolve(data, model=tiny_path)
    assert out.shape == (80, 96)
    assert out.unit == u.electron
    assert out.header["ANR_OP"] == "super_resolve"
    assert out.header["ANR_FACT"] == 2 and out.header["ANR_FLUX"] == "per-pixel"
    assert out.header["OBJECT"] == "test"
    assert out.header["PIXSCALE"] == pytest.approx(0.2)
    assert out.header["SECPIX"] == pytest.approx(0.2)
    assert out.data.sum() == pytest.approx(sky.sum(), rel=1e-5)
    np.testing.assert_allclose(_binned(out.data, 2, np.sum), sky, rtol=1e-4, atol=1e-3)
    assert not np.allclose(out.data, np.repeat(np.repeat(sky, 2, 0), 2, 1) / 4)  # not nearest


def test_pixel_value_keys_follow_the_values(tiny_path, sky):
    meta = {"SATURATE": 60000.0, "SATLEVEL": 50000, "FLUXCONV": 0.1, "GAIN": 2.0}
    counts = super_resolve(CCDData(sky, unit="adu", meta=meta), model=tiny_path, factor=4)
    assert counts.header["SATURATE"] == pytest.approx(60000 / 16)
    assert counts.header["SATLEVEL"] == pytest.approx(50000 / 16)
    assert counts.header["FLUXCONV"] == pytest.approx(0.1 * 16)  # surface brightness kept
    assert counts.header["GAIN"] == 2.0  # a detector property
    surface = super_resolve(CCDData(sky, unit="MJy/sr", meta=meta), model=tiny_path)
    assert [surface.header[k] for k in meta] == list(meta.values())  # values kept, keys too
    assert meta["SATURATE"] == 60000.0  # the input's header is not touched


def test_factor_four_is_two_passes_and_bins_back(tiny_path, sky):
    out = super_resolve(sky, factor=4, model=tiny_path, unit="adu")
    assert out.shape == (160, 192)
    np.testing.assert_allclose(_binned(out.data, 4, np.sum), sky, rtol=1e-4, atol=1e-3)


def test_surface_brightness_keeps_values_and_override(tiny_path, sky):
    data = CCDData(sky, unit="MJy/sr")
    kept = super_resolve(data, model=tiny_path)
    assert kept.header["ANR_FLUX"] == "surface"
    np.testing.assert_allclose(_binned(kept.data, 2), sky, rtol=1e-5)
    forced = super_resolve(data, model=tiny_path, flux_conserving=True)
    assert forced.data.sum() == pytest.approx(sky.sum(), rel=1e-5)


@pytest.mark.parametrize(("unit", "expected"), [
    ("adu", True), ("electron / s", True), ("ct", True), ("DN", True), ("Jy", True),
    ("mJy", True), ("nmgy", True), ("erg / (s cm2)", True), ("", True),
    ("MJy / sr", False), ("Jy / arcsec2", False), ("Jy / beam", False), ("K", False),
])
def test_flux_policy_from_unit(unit, expected):
    assert flux_policy(u.Unit(unit)) is expected
    assert flux_policy(u.Unit(unit), flux_conserving=not expected) is (not expected)


@pytest.mark.parametrize("value", ["no", "False", float("nan"), 1])
def test_flux_conserving_must_be_a_bool(value):
    with pytest.raises(TypeError, match="flux_conserving must be True, False or None"):
        flux_policy(u.adu, flux_conserving=value)


def test_magnitudes_are_refused(tiny_path, sky):
    with pytest.raises(ValueError, match="logarithmic"):
        flux_policy(u.mag)
    with pytest.raises(ValueError, match="logarithmic"):
        flux_policy(u.Unit("mag(AB)"))


@pytest.mark.parametrize("factor", [3, 1, 2.5, True, "2"])
def test_bad_factor(tiny_path, sky, factor):
    with pytest.raises(ValueError, match="factor"):
        super_resolve(sky, factor=factor, model=tiny_path)


def test_x4_model_cannot_do_x2(sky):
    with pytest.raises(ValueError, match="x4 model"):
        super_resolve(sky, factor=2, model=SRResNet(factor=4, channels=4, blocks=1))


@pytest.mark.parametrize("sip", [False, True])
def test_wcs_rescaled_and_written_without_stale_keys(tiny_path, sky, sip, tmp_path):
    wcs = _tan_wcs(sip)
    out = super_resolve(CCDData(sky, unit="adu", wcs=wcs), model=tiny_path)
    x = np.array([0.0, 10.3, 47.0])
    y = np.array([0.0, 30.7, 39.0])
    before = wcs.pixel_to_world(x, y)
    after = out.wcs.pixel_to_world(pixel_correspondence(x, 2), pixel_correspondence(y, 2))
    assert before.separation(after).max().to_value(u.mas) < 0.01
    path = tmp_path / "out.fits"
    out.write(path)
    header = fits.getheader(path)
    assert header["CRPIX1"] == pytest.approx(2 * (20.5 - 0.5) + 0.5)
    read = WCS(header)
    assert read.pixel_to_world(pixel_correspondence(x, 2), pixel_correspondence(y, 2)).separation(
        before).max().to_value(u.mas) < 0.01


def test_mask_nan_uncertainty_and_input_untouched(tiny_path, sky):
    image = sky.copy()
    image[5, 7] = np.nan
    mask = np.zeros(image.shape, bool)
    mask[30, 40] = True
    sigma = np.full(image.shape, 5.0, np.float32)
    data = CCDData(image, unit="adu", mask=mask, uncertainty=StdDevUncertainty(sigma))
    copy = data.data.copy()
    out = super_resolve(data, model=tiny_path)
    np.testing.assert_array_equal(data.data, copy)
    assert np.isnan(out.data[10:12, 14:16]).all() and np.isfinite(out.data).sum() == out.size - 4
    assert out.mask[60:62, 80:82].all() and out.mask.sum() == 4
    np.testing.assert_allclose(out.uncertainty.array, 2.5)  # sigma / f for per-pixel flux
    sb = super_resolve(CCDData(sky, unit="MJy/sr", uncertainty=StdDevUncertainty(sigma)),
                       model=tiny_path)
    np.testing.assert_allclose(sb.uncertainty.array, 10.0)  # sigma * f for surface brightness


def test_tiled_equals_whole_image(sky):
    net = _perturbed(SRResNet(channels=4, blocks=1))  # receptive radius 5 input pixels
    image = np.tile(sky, (2, 2))
    whole = super_resolve(image, model=net, tile_size=128, precision="fp32")
    tiled = super_resolve(image, model=net, tile_size=32, overlap=20, precision="fp32")
    np.testing.assert_allclose(tiled.data, whole.data, rtol=1e-5, atol=1e-3)


def test_colour_luminance_and_block_consistency(tiny_path, rng):
    rgb = rng.random((20, 24, 3)).astype(np.float32)
    out = super_resolve(rgb, model=tiny_path)
    assert out.shape == (40, 48, 3)
    for channel in range(3):  # display images keep their values: block means kept
        np.testing.assert_allclose(_binned(out[..., channel], 2), rgb[..., channel], atol=1e-5)


def test_colour_mask_is_upsampled_by_nearest_neighbour(tiny_path, rng):
    rgb = rng.random((20, 24, 3)).astype(np.float32)
    mask = np.zeros(rgb.shape, bool)
    mask[5, 6] = True  # every channel of one pixel
    out = super_resolve(np.ma.masked_array(rgb, mask), model=tiny_path)
    expected = np.zeros(out.shape, bool)
    expected[10:12, 12:14] = True
    assert (np.ma.getmaskarray(out) == expected).all()


def test_srcnn_and_default_models_learn_nothing_at_init(sky):
    """Untrained nets are block-consistent bicubic: both give the same output."""
    a = super_resolve(sky, model=SRCNN(), precision="fp32")
    b = super_resolve(sky, model=SRResNet(), precision="fp32")
    np.testing.assert_allclose(a.data, b.data, rtol=1e-5)


def test_cli_super_resolve(tiny_path, sky, tmp_path):
    from astro_nn_restore.cli import main

    source, target = tmp_path / "in.fits", tmp_path / "out.fits"
    fits.PrimaryHDU(sky).writeto(source)
    status = main(["super-resolve", str(source), "-o", str(target), "--model", tiny_path,
                   "--factor", "4", "--unit", "adu"])
    assert status == 0
    result = CCDData.read(target)
    assert result.shape == (160, 192) and result.unit == u.adu


def test_training_task_runs(tmp_path):
    from astro_nn_restore.train import TASKS, TrainConfig, fit

    config = TrainConfig(out=str(tmp_path), steps=2, batch_size=2, patch_size=32, val_every=2,
                         checkpoint_every=2, precision="fp32", name="superres-tiny",
                         extra={"architecture": {"name": "srcnn", "features": [8, 4]},
                                "n_simulated": 1})
    card = fit(TASKS["superres"]()(config), config)
    assert card["architecture"] == "SRCNN" and card["factor"] == 2
    assert {"val_psnr_model", "val_psnr_bicubic"} <= set(card["calibration"])
    out = super_resolve(np.ones((16, 16)), model=str(tmp_path / "superres-tiny.safetensors"))
    assert out.shape == (32, 32)


def test_training_fine_tunes_an_init_model(tmp_path, capsys):
    from safetensors.numpy import load_file

    from astro_nn_restore.train.__main__ import main

    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--batch-size", "2", "--patch-size", "32", "--val-every", "2", "--threads", "1",
              "--checkpoint-every", "2", "--precision", "fp32", "--n-simulated", "1"]
    assert main(["superres", "--out", str(first), "--name", "sr-a", "--steps", "2",
                 "--arch", '{"channels": 8, "blocks": 1}', *common]) == 0
    start = first / "sr-a.safetensors"
    assert main(["superres", "--out", str(second), "--name", "sr-b", "--steps", "0",
                 "--init", str(start), *common]) == 0
    a, b = load_file(start), load_file(second / "sr-b.safetensors")
    assert a.keys() == b.keys()
    for key in a:  # no step taken: the init model comes out unchanged
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert main(["superres", "--out", str(tmp_path / "c"), "--steps", "1", "--init", str(start),
                 "--arch", '{"channels": 4}', *common]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(["superres", "--out", str(tmp_path / "d"), "--name", "sr-d", "--steps", "1",
                 "--init", str(start), *common]) == 0
    _, card = load_model(tmp_path / "d" / "sr-d.safetensors", task="superres")
    first_card = load_model(start, task="superres")[1]
    assert card["training"]["init"]["sha256"] == first_card["sha256"]
    assert card["training"]["init"]["training"]["command"] == first_card["training"]["command"]


def test_spitzer_surface_brightness_and_wcs(shared_data, tiny_path):
    path = shared_data / "glimpse_irac_psf" / "spitzer_example_image.fits"
    with fits.open(path) as hdul:
        data, header = hdul[0].data[100:164, 200:264].astype(np.float32), hdul[0].header
    wcs = WCS(header)[100:164, 200:264]
    out = super_resolve(CCDData(data, unit=header["BUNIT"], wcs=wcs), model=tiny_path)
    assert out.unit == u.MJy / u.sr and out.header["ANR_FLUX"] == "surface"
    np.testing.assert_allclose(_binned(out.data, 2), data, rtol=1e-4, atol=1e-4)
    x = np.array([3.0, 40.0])
    sep = wcs.pixel_to_world(x, x).separation(out.wcs.pixel_to_world(*(2 * [2 * x + 0.5])))
    assert sep.max().to_value(u.mas) < 0.01


def test_packaged_images_refuse_data_that_would_be_downloaded():
    from astro_nn_restore.datasets import packaged_images

    with pytest.raises(ValueError, match="not bundled"):
        packaged_images(["eagle"])


@pytest.mark.parametrize("arch", [{"channels": 4, "blocks": 1, "factor": 4},
                                  {"name": "srcnn", "features": [4, 4], "factor": 4}])
def test_fine_tuning_keeps_the_init_models_factor_and_kind(tmp_path, arch):
    """A x4 (or SRCNN) init model is fine-tuned as itself, not as the default x2 SRResNet."""
    import json

    from astro_nn_restore.train.__main__ import main

    common = ["--batch-size", "2", "--patch-size", "32", "--val-every", "1", "--threads", "1",
              "--checkpoint-every", "1", "--precision", "fp32", "--n-simulated", "1"]
    assert main(["superres", "--out", str(tmp_path / "a"), "--name", "sr-a", "--steps", "1",
                 "--arch", json.dumps(arch), *common]) == 0
    start = tmp_path / "a" / "sr-a.safetensors"
    assert main(["superres", "--out", str(tmp_path / "b"), "--name", "sr-b", "--steps", "1",
                 "--init", str(start), *common]) == 0
    module, card = load_model(tmp_path / "b" / "sr-b.safetensors", task="superres")
    first = load_model(start, task="superres")[1]
    assert card["factor"] == module.factor == 4
    assert card["architecture"] == first["architecture"]
    assert super_resolve(np.ones((8, 8)), model=module, factor=4).shape == (32, 32)


def test_add_blocks_grows_the_init_model_without_changing_its_output(tmp_path, capsys, sky):
    from astro_nn_restore.train.__main__ import main

    common = ["--batch-size", "2", "--patch-size", "32", "--val-every", "1", "--threads", "1",
              "--checkpoint-every", "1", "--precision", "fp32", "--n-simulated", "1"]
    assert main(["superres", "--out", str(tmp_path / "a"), "--name", "sr-a", "--steps", "2",
                 "--lr", "1e-2", "--arch", '{"channels": 4, "blocks": 1}', *common]) == 0
    start = tmp_path / "a" / "sr-a.safetensors"
    assert main(["superres", "--out", str(tmp_path / "b"), "--name", "sr-b", "--steps", "0",
                 "--init", str(start), "--add-blocks", "2", *common]) == 0
    grown, card = load_model(tmp_path / "b" / "sr-b.safetensors", task="superres")
    assert card["arguments"]["blocks"] == grown.config["blocks"] == 3
    assert "--add-blocks 2" in card["training"]["command"]
    before = super_resolve(sky, model=start)
    untrained = super_resolve(sky, model=SRResNet(channels=4, blocks=1))  # bicubic, projected
    assert not np.allclose(before.data, untrained.data)
    np.testing.assert_allclose(super_resolve(sky, model=grown).data, before.data, rtol=1e-6)
    for refused in (["--arch", '{"channels": 4, "blocks": 1}', "--add-blocks", "1"],
                    ["--init", str(start), "--add-blocks", "-1"],
                    ["--init", str(start), "--add-blocks", "0"],
                    ["--init", "srcnn", "--add-blocks", "2"]):
        assert main(["superres", "--out", str(tmp_path / "c"), "--steps", "1", *refused,
                     *common]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--add-blocks" in err


def test_saturate_clips_the_brightest_stars_flat_and_leaves_the_rest(sky):
    from astro_nn_restore.train.superres import make_pair, saturate

    fine = sky.astype(np.float64)
    clipped = saturate(fine, np.random.default_rng(0))
    level = clipped.max()
    assert np.percentile(fine, 99) < level < fine.max()
    assert (clipped == level).sum() > 1  # a plateau, not a peak
    below = fine < level
    np.testing.assert_array_equal(clipped[below], fine[below])
    assert saturate(np.ones((8, 8)), np.random.default_rng(0)).max() == 1  # nothing to clip
    # the target of a saturated pair has the plateau too; share 0 draws nothing extra
    _, target = make_pair(fine, np.random.default_rng(1), saturated_share=1.0)
    assert (target == target.max()).sum() > 1
    plain = [make_pair(fine, np.random.default_rng(2), **kw)[1] for kw in ({}, {
        "saturated_share": 0.0})]
    np.testing.assert_array_equal(*plain)


def test_saturated_share_option_reaches_the_card_and_is_checked(tmp_path, capsys):
    import json

    from astro_nn_restore.train.__main__ import main

    common = ["--batch-size", "2", "--patch-size", "32", "--val-every", "1", "--threads", "1",
              "--checkpoint-every", "1", "--precision", "fp32", "--n-simulated", "1",
              "--steps", "1", "--arch", '{"channels": 4, "blocks": 1}']
    assert main(["superres", "--out", str(tmp_path / "a"), "--name", "sr-a",
                 "--saturated-share", "0.5", *common]) == 0
    card = json.loads((tmp_path / "a" / "sr-a.json").read_text())
    assert card["saturated_share"] == 0.5 and "50% saturated" in card["degradation"]
    assert main(["superres", "--out", str(tmp_path / "b"), "--saturated-share", "1.5",
                 *common]) == 2
    assert "--saturated-share" in capsys.readouterr().err

"""colorize / rgb_image: Lab colourisation keeping the input's lightness, and its training."""

import json
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, NDData
from astropy.utils.exceptions import AstropyUserWarning
from astropy.visualization import LinearStretch, ManualInterval, SqrtStretch
from astropy.wcs import WCS

from astro_nn_restore.colorize import (
    colorize,
    compose_rgb,
    lupton_composite,
    rgb_image,
    stretched_lightness,
)
from astro_nn_restore.registry import ModelLoadError, available_models, load_model, save_model

torch = pytest.importorskip("torch")


def _generator(chroma_scale=110.0, seed=0, bias=0.0):
    from astro_nn_restore.models.colorize import ColorGenerator

    torch.manual_seed(seed)
    net = ColorGenerator(channels=(8, 16), dilations=(2,), chroma_scale=chroma_scale)
    with torch.no_grad():
        net.unet.head.bias.add_(bias)
    return net.eval()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    net = _generator(bias=0.5)
    card = {"task": "colorize", "architecture": "ColorGenerator",
            "arguments": {k: list(v) if isinstance(v, tuple) else v for k, v in net.config.items()}}
    path = tmp_path_factory.mktemp("model") / "colorize-tiny.safetensors"
    save_model(net, path, card)
    return str(path)


@pytest.fixture
def image():
    from astro_nn_restore import simulate_sky

    return simulate_sky((72, 88), seed=4).noisy


def _wcs():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [30.5, 20.5]
    wcs.wcs.cd = [[-1e-4, 2e-5], [1e-5, 1e-4]]
    wcs.wcs.crval = [150.0, 2.0]
    return wcs


@pytest.mark.parametrize("kind", ["ndarray", "ccddata", "nddata", "tuple", "hdu"])
def test_output_is_rgb_ccddata_for_every_input_form(tiny_model, image, kind):
    array = image.data.copy()
    data = {"ndarray": array, "ccddata": image, "nddata": NDData(array, wcs=_wcs()),
            "tuple": (array, _wcs()), "hdu": fits.PrimaryHDU(array, header=image.header)}[kind]
    before = array.copy()
    out = colorize(data, model=tiny_model)
    assert isinstance(out, CCDData)
    assert out.shape == (3, *array.shape)
    assert out.unit == u.dimensionless_unscaled
    assert out.data.dtype == np.float32
    assert 0 <= out.data.min() and out.data.max() <= 1
    assert out.header["ANR_OP"] == "colorize"
    assert out.header["ANR_MOD"] == "colorize-tiny"
    assert [out.header[f"BAND{i}"] for i in (1, 2, 3)] == ["R", "G", "B"]
    assert out.header["ANR_STR"] == "AsinhStretch"
    np.testing.assert_array_equal(array, before)  # input untouched


def test_lightness_of_output_equals_stretched_input(image):
    # a saturated model: most predicted colours are outside the sRGB gamut
    net = _generator(chroma_scale=300.0, bias=2.0)
    out = colorize(image, model=net)
    from skimage.color import lab2rgb, rgb2lab

    expected, _ = stretched_lightness(image.data, stretch=_default_stretch(),
                                      interval=_default_interval())
    measured = rgb2lab(rgb_image(out).astype(np.float64))[..., 0]
    assert np.abs(measured - expected).max() < 1e-3
    # the same chroma clipped by lab2rgb would change L a lot: gamut mapping matters here
    chroma = 300 * np.tanh(net(torch.from_numpy((expected / 100)[None, None]).float())
                           .detach().numpy()[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Z < 0" from skimage
        clipped = lab2rgb(np.dstack([expected, *chroma]))
    assert np.abs(rgb2lab(clipped)[..., 0] - expected).max() > 5


def _default_stretch():
    from astropy.visualization import AsinhStretch

    return AsinhStretch(a=0.1)


def _default_interval():
    from astropy.visualization import PercentileInterval

    return PercentileInterval(99.5)


def test_custom_stretch_and_interval_set_lightness(tiny_model, image):
    out = colorize(image, model=tiny_model, stretch=SqrtStretch(),
                   interval=ManualInterval(90, 400))
    from skimage.color import rgb2lab

    scaled = np.clip((image.data - 90) / 310, 0, 1)
    lightness = rgb2lab(rgb_image(out).astype(np.float64))[..., 0]
    np.testing.assert_allclose(lightness, 100 * np.sqrt(scaled), atol=1e-3)
    assert (out.header["ANR_VMIN"], out.header["ANR_VMAX"]) == (90, 400)
    assert out.header["ANR_STR"] == "SqrtStretch"


def test_compose_rgb_inverts_rgb2lab_inside_the_gamut(rng):
    from skimage.color import rgb2lab

    rgb = rng.random((16, 16, 3))
    lab = rgb2lab(rgb)
    np.testing.assert_allclose(compose_rgb(lab[..., 0], lab[..., 1:]), rgb, atol=1e-10)


def test_compose_rgb_keeps_hue_when_shrinking_chroma():
    from skimage.color import rgb2lab

    rgb = compose_rgb(np.full((1, 1), 60.0), np.array([[[200.0, 100.0]]]))
    lab = rgb2lab(rgb)[0, 0]
    assert abs(lab[0] - 60) < 1e-3
    assert np.hypot(lab[1], lab[2]) < np.hypot(200, 100)
    assert np.arctan2(lab[2], lab[1]) == pytest.approx(np.arctan2(100, 200), abs=1e-3)


def test_stretched_lightness_linear_and_bad_pixels():
    data = np.array([[0.0, 5.0], [20.0, np.nan]])
    lightness, limits = stretched_lightness(data, stretch=LinearStretch(),
                                            interval=ManualInterval(0, 10))
    np.testing.assert_allclose(lightness, [[0, 50], [100, 0]])
    assert limits == (0.0, 10.0)
    with pytest.raises(ValueError, match="no finite"):
        stretched_lightness(np.full((3, 3), np.nan), stretch=LinearStretch(),
                            interval=ManualInterval(0, 1))


def test_wcs_gets_a_band_axis_and_survives_fits(tiny_model, image, tmp_path):
    out = colorize((image.data, _wcs()), model=tiny_model)
    assert out.wcs.pixel_n_dim == 3
    assert list(out.wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN", "BAND"]
    for x, y in [(0, 0), (87, 71), (40, 10)]:
        expected = _wcs().pixel_to_world(x, y)
        sky, band = out.wcs.pixel_to_world(x, y, 2)
        assert sky.separation(expected).arcsec < 1e-6
        assert band.value == 2
    sliced = out[:, 5:, 7:]
    assert sliced.wcs.pixel_to_world(0, 0, 0)[0].separation(
        _wcs().pixel_to_world(7, 5)).arcsec < 1e-6
    path = tmp_path / "rgb.fits"
    out.write(path)
    back = CCDData.read(path, unit=u.dimensionless_unscaled)
    assert back.shape == out.shape
    assert back.wcs.pixel_to_world(40, 10, 0)[0].separation(
        _wcs().pixel_to_world(40, 10)).arcsec < 1e-6
    assert fits.getheader(path)["CTYPE3"] == "BAND"


def test_a_distorted_wcs_is_written_as_its_linear_fit(tiny_model, image, tmp_path):
    header = fits.Header({"CTYPE1": "RA---TPV", "CTYPE2": "DEC--TPV", "CRPIX1": 40.0,
                          "CRPIX2": 30.0, "CRVAL1": 10.0, "CRVAL2": 20.0, "CD1_1": -1e-4,
                          "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 1e-4, "PV1_1": 1.0,
                          "PV1_4": 0.1, "PV2_1": 1.0, "PV2_4": 0.2})
    with pytest.warns(AstropyUserWarning, match="best linear fit"):
        out = colorize((image.data, header), model=tiny_model)
    history = "".join(out.meta["HISTORY"])  # long HISTORY text is cut into 72-character cards
    error = float(history.split("largest sky offset ")[1].split(" arcsec")[0])
    out.write(tmp_path / "c.fits")
    back = CCDData.read(tmp_path / "c.fits", unit=u.dimensionless_unscaled)
    exact = WCS(header)
    ny, nx = image.shape
    for x, y in ((0, 0), (80, 70), (nx - 1, ny - 1)):
        sep = back.wcs.celestial.pixel_to_world(x, y).separation(exact.pixel_to_world(x, y))
        assert sep.arcsec <= 1.01 * error
    straight = WCS(fits.Header({k: header[k] for k in header if not k.startswith("PV")}))
    assert straight.pixel_to_world(80, 70).separation(exact.pixel_to_world(80, 70)).arcsec > 1
    assert back[1:, :10, :10].wcs.pixel_shape == (10, 10, 2)  # the cube slices


def test_a_wcs_no_linear_fit_can_stand_for_is_not_written(tiny_model, image, tmp_path):
    ny, nx = image.shape
    header = fits.Header({"CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP", "CRPIX1": nx / 2,
                          "CRPIX2": ny / 2, "CRVAL1": 10.0, "CRVAL2": 20.0, "CD1_1": -1e-4,
                          "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 1e-4, "A_ORDER": 2,
                          "B_ORDER": 2, "A_2_0": 3e-3, "B_0_2": 3e-3})
    with pytest.warns(AstropyUserWarning, match="no sky WCS written"):
        out = colorize((image.data, header), model=tiny_model)
    assert not out.wcs.has_celestial  # not the input's distorted 2-D WCS
    out.write(tmp_path / "c.fits")
    written = fits.getheader(tmp_path / "c.fits")
    assert written["CTYPE3"] == "BAND" and "A_ORDER" not in written


def test_nan_and_mask(tiny_model, image):
    data = image.data.copy()
    data[3, 4] = np.nan
    mask = np.zeros(data.shape, bool)
    mask[10:12, 20:25] = True
    out = colorize(CCDData(data, unit="electron", mask=mask), model=tiny_model)
    assert np.isnan(out.data[:, 3, 4]).all()
    assert np.isfinite(out.data).sum() == out.data.size - 3
    assert out.mask.shape == out.shape
    np.testing.assert_array_equal(out.mask[1], mask)


def test_command_line_stretch_and_chroma_smoothing(tiny_model, image, tmp_path, capsys):
    from astro_nn_restore.cli import main

    image.write(tmp_path / "in.fits")
    out = tmp_path / "out.fits"
    assert main(["colorize", str(tmp_path / "in.fits"), "-o", str(out), "--model", tiny_model,
                 "--stretch", "sqrt", "--chroma-smoothing", "0", "--precision", "fp32"]) == 0
    header = fits.getheader(out)
    assert header["ANR_STR"] == "SqrtStretch" and header["ANR_CSM"] == 0
    expected = colorize(image, model=tiny_model, stretch=SqrtStretch(), chroma_smoothing=0,
                        precision="fp32")
    np.testing.assert_allclose(fits.getdata(out), expected.data, atol=1e-6)
    with pytest.raises(SystemExit) as exit_info:
        main(["colorize", str(tmp_path / "in.fits"), "-o", str(tmp_path / "x.fits"),
              "--stretch", "gamma"])
    assert exit_info.value.code == 2
    assert "unknown stretch 'gamma'" in capsys.readouterr().err


def test_command_line(tiny_model, image, tmp_path):
    from astro_nn_restore.cli import main

    image.write(tmp_path / "in.fits")
    assert main(["colorize", str(tmp_path / "in.fits"), "-o", str(tmp_path / "out.fits"),
                 "--model", tiny_model, "--precision", "fp32"]) == 0
    out = CCDData.read(tmp_path / "out.fits", unit=u.dimensionless_unscaled)
    assert out.shape == (3, *image.shape) and out.header["ANR_OP"] == "colorize"


def test_top_level_names_call_the_functions(tiny_model, image):
    import astro_nn_restore
    from astro_nn_restore import colorize as top_level

    out = top_level(image, model=tiny_model)
    assert out.shape == (3, *image.shape)
    assert astro_nn_restore.colorize(image, model=tiny_model).shape == out.shape
    assert astro_nn_restore.rgb_image(out).shape == (*image.shape, 3)


def test_rgb_image():
    cube = np.arange(24, dtype=float).reshape(3, 2, 4)
    rgb = rgb_image(CCDData(cube, unit=""))
    assert rgb.shape == (2, 4, 3) and rgb.dtype == np.float32
    np.testing.assert_array_equal(rgb[..., 2], cube[2])
    with pytest.raises(ValueError, match="3, ny, nx"):
        rgb_image(np.zeros((4, 4)))


def test_bad_inputs(tiny_model, image, tmp_path):
    with pytest.raises(TypeError, match="stretch"):
        colorize(image, model=tiny_model, stretch="asinh")
    with pytest.raises(TypeError, match="interval"):
        colorize(image, model=tiny_model, interval=99.5)
    with pytest.raises(ValueError, match="2-D"):
        colorize(np.zeros((8, 8, 3)), model=tiny_model)
    net = _generator()
    card = {"task": "denoise", "architecture": "ColorGenerator",
            "arguments": {k: list(v) if isinstance(v, tuple) else v for k, v in net.config.items()}}
    save_model(net, tmp_path / "wrong.safetensors", card)
    with pytest.raises(ModelLoadError, match="not a 'colorize' model"):
        colorize(image, model=tmp_path / "wrong.safetensors")


def test_default_model_is_a_clear_error_until_shipped(image):
    if "colorize-default" in available_models("colorize"):
        pytest.skip("shipped weights present")
    with pytest.raises(ModelLoadError, match="no model 'default' for task 'colorize'"):
        colorize(image)


def test_lupton_composite_orders_bands_blue_to_red():
    blue, red = np.zeros((16, 16)), np.zeros((16, 16))
    red[8, 8] = 10.0  # a red source
    blue[4, 4] = 10.0  # a blue source
    rgb = lupton_composite([blue, red], stretch=1.0)
    assert rgb[8, 8, 0] > rgb[8, 8, 2] and rgb[4, 4, 2] > rgb[4, 4, 0]
    assert rgb[8, 8, 1] == pytest.approx(rgb[4, 4, 1])  # green = mean of the two
    with pytest.raises(ValueError, match="2 or 3"):
        lupton_composite([blue])


# --- training -------------------------------------------------------------------------------

TINY = {"architecture": {"channels": [8, 16], "dilations": [2]}, "n_simulated": 2,
        "critic": {"channels": [8, 16]}}


def _config(out, steps, **kwargs):
    from astro_nn_restore.train import TrainConfig

    extra = {**TINY, "pretrain_steps": 3, **kwargs.pop("extra", {})}
    return TrainConfig(out=str(out), steps=steps, batch_size=2, patch_size=32, threads=1,
                       val_every=4, checkpoint_every=2, seed=5, name="colorize-tiny",
                       extra=extra, **kwargs)


@pytest.fixture(scope="module")
def task_class():
    from astro_nn_restore.train import TASKS

    return TASKS["colorize"]()


def test_training_exports_the_generator_alone(tmp_path, task_class):
    from astro_nn_restore.train import fit

    config = _config(tmp_path, 6)
    card = fit(task_class(config), config)
    module, loaded = load_model(tmp_path / "colorize-tiny.safetensors", task="colorize")
    assert type(module).__name__ == "ColorGenerator"
    assert loaded["architecture"] == "ColorGenerator" and card["training"]["steps"] == 6
    assert "WGAN-GP" in loaded["loss"] and loaded["critic"]["architecture"] == "PatchCritic"
    assert module(torch.rand(1, 1, 32, 32)).shape == (1, 2, 32, 32)
    header = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in header[1:]] == ["4", "6"]


def test_gan_steps_move_generator_and_critic(tmp_path, task_class):
    config = _config(tmp_path, 4, extra={"pretrain_steps": 0})
    task = task_class(config)
    model = task.build_model()
    optimizer = task.optimizer(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = task.train_step(model, optimizer, 0, np.random.default_rng(0))
    assert np.isfinite(loss)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("critic.") for k in changed)
    assert any(k.startswith("generator.") for k in changed)
    assert optimizer.param_groups[0]["betas"] == (0.0, 0.9)
    # the critic took 5 Adam steps, the generator 1
    steps = {id(p): float(s["step"]) for p, s in optimizer.state.items()}
    assert steps[id(next(model.critic.parameters()))] == 5
    assert steps[id(next(model.generator.parameters()))] == 1


def test_resume_through_the_gan_phase_is_exact(tmp_path, task_class):
    from safetensors.numpy import load_file

    from astro_nn_restore.train import fit

    straight, stepped = tmp_path / "straight", tmp_path / "stepped"
    task = task_class(_config(straight, 6))
    fit(task, _config(straight, 6))
    for i in range(4):  # max_minutes=0 stops after one step: start, resume 3 times past step 3
        fit(task, _config(stepped, 6, max_minutes=0.0, resume=i > 0))
    fit(task, _config(stepped, 6, resume=True))
    a = load_file(straight / "checkpoint.safetensors")
    b = load_file(stepped / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    assert any(k.startswith("model.critic.") for k in a)
    assert any(k.startswith("optimizer.") for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert (straight / "metrics.csv").read_text().count("\n") == 3  # header + steps 4, 6
    assert json.loads((straight / "colorize-tiny.json").read_text())["training"]["steps"] == 6


def test_pool_draws_the_hdf_with_the_asked_share():
    from astro_nn_restore.train.colorize import ColorPool

    pool = ColorPool.build(seed=0, n_simulated=2, hdf_share=0.9)
    assert len(pool.images) == 3 and pool.weights == pytest.approx([0.05, 0.05, 0.9])
    assert ColorPool.build(seed=0, n_simulated=0).weights == pytest.approx([1.0])
    rng = np.random.default_rng(1)
    lightness, chroma = pool.sample(rng, 16)
    assert lightness.shape == (1, 16, 16) and chroma.shape == (2, 16, 16)
    for share in (1.0, -0.1):
        with pytest.raises(ValueError, match="hdf_share"):
            ColorPool.build(seed=0, n_simulated=1, hdf_share=share)


def test_chroma_smoothing_keeps_lightness_and_removes_pixel_chroma(image):
    from skimage.color import rgb2lab

    from astro_nn_restore.models.colorize import ColorGenerator

    torch.manual_seed(0)
    net = ColorGenerator(channels=(8, 16))
    for parameter in net.parameters():  # a generator whose chroma follows pixel noise
        parameter.data.normal_(0, 0.3)
    raw = rgb2lab(rgb_image(colorize(image, model=net, chroma_smoothing=0)).astype(float))
    smooth = rgb2lab(rgb_image(colorize(image, model=net)).astype(float))
    np.testing.assert_allclose(smooth[..., 0], raw[..., 0], atol=2e-3)  # L untouched

    def pixel_scale(lab):
        return np.abs(np.diff(lab[..., 1:], axis=1)).mean()

    assert pixel_scale(smooth) < 0.5 * pixel_scale(raw)
    assert colorize(image, model=net, chroma_smoothing=0).header["ANR_CSM"] == 0
    assert colorize(image, model=net).header["ANR_CSM"] == 2.0  # provenance of the default
    for bad in (-1, np.nan, np.inf, "wide", True, np.bool_(False)):
        with pytest.raises(ValueError, match="chroma_smoothing"):
            colorize(image, model=net, chroma_smoothing=bad)


@pytest.mark.parametrize("limits", [(np.nan, np.nan), (5.0, 1.0), (0.0, np.inf)])
def test_interval_limits_must_be_finite_and_ordered(limits):
    from astropy.visualization import ManualInterval

    from astro_nn_restore.colorize import lightness_limits

    with pytest.raises(ValueError, match="must be finite, the lower one first"):
        lightness_limits(np.ones((4, 4)), ManualInterval(*limits))


def test_compose_rgb_takes_any_shape_of_pixels():
    from skimage.color import rgb2lab

    lightness = np.linspace(10, 90, 24)
    chroma = np.stack([np.linspace(-20, 20, 24), np.full(24, 10.0)], axis=-1)
    flat = compose_rgb(lightness, chroma)
    assert flat.shape == (24, 3)
    np.testing.assert_allclose(compose_rgb(lightness.reshape(2, 3, 4), chroma.reshape(2, 3, 4, 2)),
                               flat.reshape(2, 3, 4, 3))
    np.testing.assert_allclose(rgb2lab(flat)[:, 0], lightness, atol=1e-6)

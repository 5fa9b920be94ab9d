"""Deblur, Super-resolve, Colorize and Anomaly map widgets, each run to completion."""

import numpy as np
import pytest
from astropy.nddata import CCDData

from astro_nn_restore_napari._operations import OPERATIONS
from astro_nn_restore_napari._widget import WEIGHTS_FILE, WIDGETS, OperationWidget

PLUGIN = "astro-nn-restore-napari"
TIMEOUT_MS = 120_000
FAST = {"tile_size": 64}


def docked(viewer, title, model):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, title)
    assert isinstance(widget, OperationWidget)
    widget.reset_choices()
    widget.model.value = WEIGHTS_FILE
    widget.weights.value = model
    if widget.operation.tiled:
        widget.tile_size.value = 64
    return widget


def run_to_end(qtbot, widget):
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: widget._job is None, timeout=TIMEOUT_MS)
    assert "Done" in widget.status.value, widget.status.value
    return worker


def assert_same_sky(wcs_a, xy_a, wcs_b, xy_b, atol=1e-10):
    np.testing.assert_allclose(wcs_a.pixel_to_world_values(*xy_a),
                               wcs_b.pixel_to_world_values(*xy_b), atol=atol)


def gaussian_psf(size=9, sigma=1.3):
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    psf = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return (psf / psf.sum()).astype(np.float32)


def test_deblur_widget_with_psf_layer(make_napari_viewer, qtbot, fits_file, tiny_deblur_model):
    from astro_nn_restore import deblur

    viewer = make_napari_viewer()
    [layer] = viewer.open(fits_file, plugin=PLUGIN)
    psf = viewer.add_image(gaussian_psf(), name="psf")
    widget = docked(viewer, "Deblur", tiny_deblur_model)
    widget.image.value = layer
    assert widget.option_widgets["psf"].value is None  # blind by default
    widget.option_widgets["psf"].value = psf
    run_to_end(qtbot, widget)

    out = viewer.layers["field_deblurred"]
    expected = deblur(CCDData.read(fits_file), psf=gaussian_psf(), model=str(tiny_deblur_model),
                      **FAST)
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-4, atol=1e-3)
    assert out.data.shape == layer.data.shape
    assert not np.allclose(out.data, layer.data)
    meta = out.metadata
    assert meta["unit"] == "electron" and meta["source_layer"] == "field"
    y, x = np.mgrid[0:96:9, 0:80:9]
    assert_same_sky(meta["wcs"], (x, y), layer.metadata["wcs"], (x, y))
    header = meta["header"]
    assert header["ANR_OP"] == "deblur" and header["ANR_MOD"] == "tiny"
    assert header["OBJECT"] == "test field"
    assert out.scale.tolist() == layer.scale.tolist()

    widget.option_widgets["psf"].value = None  # blind deblurring also runs; new name
    run_to_end(qtbot, widget)
    assert "field_deblurred-2" in viewer.layers


def test_an_rgb_layer_from_fits_is_restored_as_its_colour_cube(make_napari_viewer, qtbot,
                                                                tmp_path, tiny_superres_model):
    """Unit, rescaled WCS, flux, mask and provenance of an RGB layer, as for its file."""
    from astropy.wcs import WCS

    from astro_nn_restore import super_resolve
    from astro_nn_restore.wcs_utils import band_cube_wcs

    sky = WCS(naxis=2)
    sky.wcs.ctype, sky.wcs.crval = ["RA---TAN", "DEC--TAN"], [150.0, 2.0]
    sky.wcs.crpix, sky.wcs.cdelt = [20.5, 24.5], [-1e-4, 1e-4]
    cube_wcs, _ = band_cube_wcs(sky, (48, 40))
    cube = np.random.default_rng(2).normal(500, 20, (3, 48, 40)).astype(np.float32)
    mask = np.zeros(cube.shape, bool)
    mask[:, 10:12, 5:7] = True
    path = tmp_path / "colour.fits"
    CCDData(cube, unit="electron", wcs=cube_wcs, mask=mask).write(path)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin=PLUGIN)
    assert layer.rgb
    before = np.array(layer.data)
    widget = docked(viewer, "Super-resolve", tiny_superres_model)
    run_to_end(qtbot, widget)

    out = viewer.layers["colour_superres"]
    expected = super_resolve(CCDData.read(path), model=tiny_superres_model, **FAST)
    assert out.rgb and out.data.shape == (96, 80, 3)
    np.testing.assert_allclose(out.data, np.moveaxis(expected.data, 0, -1), rtol=1e-5, atol=1e-3)
    assert out.data.sum() == pytest.approx(cube.sum(dtype=float), rel=1e-4)  # per-pixel unit
    assert_same_sky(out.metadata["wcs"], (39.5, 47.5), sky, (19.5, 23.5))
    assert np.asarray(out.metadata["mask"]).sum() == 4 * mask.sum()
    header = out.metadata["header"]
    assert header["ANR_MOD"] == "tiny" and header["ANR_FACT"] == 2 and "ANR_SHA" in header
    np.testing.assert_array_equal(layer.data, before)

    saved = tmp_path / "colour_x2.fits"
    out.save(str(saved), plugin=PLUGIN)
    written = CCDData.read(saved)
    assert written.shape == (3, 96, 80) and written.unit == "electron"
    assert written.mask.sum() == 4 * mask.sum()
    assert_same_sky(written.wcs.celestial, (39.5, 47.5), sky, (19.5, 23.5))


@pytest.mark.parametrize("factor", [2, 4])
def test_superres_widget_overlays_and_rescales_wcs(make_napari_viewer, qtbot, fits_factory,
                                                   tmp_path, tiny_superres_model, factor):
    from astro_nn_restore import super_resolve

    path = fits_factory(tmp_path / "small.fits", shape=(40, 32))
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin=PLUGIN)
    layer.scale, layer.translate = (1.5, 1.5), (3.0, -2.0)  # a layer placed in the world,
    layer.rotate, layer.shear = 25.0, [0.1]  # turned and sheared
    widget = docked(viewer, "Super-resolve", tiny_superres_model)
    widget.option_widgets["factor"].value = factor
    run_to_end(qtbot, widget)

    out = viewer.layers["small_superres"]
    assert out.data.shape == (40 * factor, 32 * factor)
    expected = super_resolve(CCDData.read(path), factor=factor, model=tiny_superres_model,
                             **FAST)
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-4, atol=1e-3)
    # electrons are per pixel: the total flux is kept
    assert out.data.sum() == pytest.approx(layer.data.astype(float).sum(), rel=1e-4)
    np.testing.assert_allclose(out.scale, np.asarray(layer.scale) / factor)
    np.testing.assert_allclose(out.rotate, layer.rotate)
    np.testing.assert_allclose(out.shear, layer.shear)
    # a world point lands on the same sky position through either layer's WCS
    for yx in [(0.0, 0.0), (10.3, 20.7), (39.4, 31.2), (-0.5, -0.5)]:
        world = layer.data_to_world(yx)
        yx_out = out.world_to_data(world)
        assert_same_sky(layer.metadata["wcs"], (yx[1], yx[0]),
                        out.metadata["wcs"], (yx_out[1], yx_out[0]))
    # pixel centres: input pixel (0, 0) is covered by output pixels 0..factor-1
    np.testing.assert_allclose(out.world_to_data(layer.data_to_world((0, 0))),
                               [(factor - 1) / 2] * 2)
    header = out.metadata["header"]
    assert header["ANR_OP"] == "super_resolve" and header["ANR_FACT"] == factor
    assert header["ANR_FLUX"] == "per-pixel" and header["OBJECT"] == "test field"
    assert out.metadata["unit"] == "electron"

    saved = tmp_path / "big.fits"  # the writer keeps the rescaled WCS
    out.save(str(saved), plugin=PLUGIN)
    [again] = viewer.open(saved, plugin=PLUGIN)
    assert again.data.shape == out.data.shape
    assert_same_sky(again.metadata["wcs"], (5.0, 7.0), out.metadata["wcs"], (5.0, 7.0))


def test_colorize_widget_gives_rgb_layer(make_napari_viewer, qtbot, fits_file,
                                         tiny_colorize_model):
    from astropy.visualization import SqrtStretch

    from astro_nn_restore import colorize, rgb_image

    viewer = make_napari_viewer()
    [layer] = viewer.open(fits_file, plugin=PLUGIN)
    widget = docked(viewer, "Colorize", tiny_colorize_model)
    assert widget.option_widgets["stretch"].value == "asinh"
    widget.option_widgets["stretch"].value = "sqrt"
    run_to_end(qtbot, widget)

    out = viewer.layers["field_colorized"]
    assert out.rgb and out.data.shape == (96, 80, 3)
    expected = rgb_image(colorize(CCDData.read(fits_file), model=tiny_colorize_model,
                                  stretch=SqrtStretch(), **FAST))
    np.testing.assert_allclose(out.data, expected, atol=1e-5)
    assert 0 <= out.data.min() and out.data.max() <= 1
    assert np.ptp(out.data[..., 0] - out.data[..., 2]) > 0  # colours, not grey
    meta = out.metadata
    assert meta["unit"] == ""  # dimensionless RGB
    y, x = np.mgrid[0:96:9, 0:80:9]
    assert_same_sky(meta["wcs"], (x, y), layer.metadata["wcs"], (x, y))
    header = meta["header"]
    assert header["ANR_OP"] == "colorize" and header["ANR_STR"] == "SqrtStretch"
    assert header["ANR_MOD"] == "tiny"


def test_colorize_refuses_rgb_layer(make_napari_viewer, tiny_colorize_model):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16, 3), np.float32), name="colour", rgb=True)
    widget = docked(viewer, "Colorize", tiny_colorize_model)
    assert widget.run() is None and "greyscale" in widget.status.value


def test_anomaly_widget_adds_scored_points(make_napari_viewer, qtbot, crowded_fits_file,
                                           tiny_autoencoder_model):
    fits_file = crowded_fits_file
    from astro_nn_restore import anomaly_score, make_cutouts

    viewer = make_napari_viewer()
    [layer] = viewer.open(fits_file, plugin=PLUGIN)
    layer.rotate = 40.0  # the points must turn with the image
    widget = docked(viewer, "Anomaly map", tiny_autoencoder_model)
    assert widget.tile_size.native.isHidden() and widget.results is None
    widget.option_widgets["threshold"].value = 5.0
    run_to_end(qtbot, widget)

    points = viewer.layers["field_anomalies"]
    stack = make_cutouts(CCDData.read(fits_file), size=32, threshold=5.0)
    # by default against the image's own sources
    scores = anomaly_score(stack, model=tiny_autoencoder_model, reference=stack)
    assert len(points.data) == len(stack) >= 10  # enough to compare with each other
    np.testing.assert_allclose(points.data, stack.positions[:, ::-1])
    np.testing.assert_allclose(points.features["score"], scores, rtol=1e-5)
    ra, dec = layer.metadata["wcs"].pixel_to_world_values(stack.positions[:, 0],
                                                          stack.positions[:, 1])
    np.testing.assert_allclose(points.features["ra"], ra)
    np.testing.assert_allclose(points.features["dec"], dec)
    assert len({tuple(c) for c in points.face_color}) > 1  # coloured by score
    assert points.scale.tolist() == layer.scale.tolist()
    np.testing.assert_allclose(points.rotate, layer.rotate)
    header = points.metadata["header"]
    assert header["ANR_OP"] == "anomaly_score" and header["ANR_MOD"] == "tiny"
    assert header["ANR_SIZE"] == 32 and header["ANR_NSRC"] == len(stack)
    assert header["ANR_REL"] is True
    assert points.metadata["source_layer"] == "field"

    from astro_nn_restore_napari._widget import TOP_N

    assert not widget.results.native.isHidden()
    assert widget.results.shape[0] == min(len(stack), TOP_N)
    listed = [float(row[0]) for row in widget.results.data]
    np.testing.assert_allclose(listed, np.sort(scores)[::-1][:TOP_N], atol=0.006)  # highest first
    widget._go_to_row(0)
    best = stack.positions[np.argmax(scores)]
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    np.testing.assert_allclose(camera.center[-2:], layer.data_to_world(best[::-1]))


def test_anomaly_widget_scores_against_pure_noise_on_request(make_napari_viewer, qtbot,
                                                            crowded_fits_file,
                                                            tiny_autoencoder_model):
    fits_file = crowded_fits_file
    from astro_nn_restore import anomaly_score, make_cutouts

    viewer = make_napari_viewer()
    viewer.open(fits_file, plugin=PLUGIN)
    widget = docked(viewer, "Anomaly map", tiny_autoencoder_model)
    widget.option_widgets["relative"].value = False
    run_to_end(qtbot, widget)
    points = viewer.layers["field_anomalies"]
    stack = make_cutouts(CCDData.read(fits_file), size=32, threshold=5.0)
    plain = anomaly_score(stack, model=tiny_autoencoder_model)
    np.testing.assert_allclose(points.features["score"], plain, rtol=1e-5)
    assert points.metadata["header"]["ANR_REL"] is False
    relative = anomaly_score(stack, model=tiny_autoencoder_model, reference=stack)
    assert not np.allclose(plain, relative)  # the choice matters for this model and image


def test_anomaly_widget_with_too_few_sources_scores_against_pure_noise(
        make_napari_viewer, qtbot, fits_file, tiny_autoencoder_model):
    from astro_nn_restore import anomaly_score, make_cutouts

    viewer = make_napari_viewer()
    viewer.open(fits_file, plugin=PLUGIN)
    widget = docked(viewer, "Anomaly map", tiny_autoencoder_model)
    widget.option_widgets["max_sources"].value = 3  # no population to compare with
    run_to_end(qtbot, widget)
    points = viewer.layers["field_anomalies"]
    stack = make_cutouts(CCDData.read(fits_file), size=32, threshold=5.0, max_sources=3)
    np.testing.assert_allclose(points.features["score"],
                               anomaly_score(stack, model=tiny_autoencoder_model), rtol=1e-5)
    assert points.metadata["header"]["ANR_REL"] is False
    assert "scored against pure noise" in widget.status.value


def test_anomaly_wrong_cutout_size_is_explained(make_napari_viewer, qtbot, fits_file,
                                                tiny_autoencoder_model):
    viewer = make_napari_viewer()
    viewer.open(fits_file, plugin=PLUGIN)
    widget = docked(viewer, "Anomaly map", tiny_autoencoder_model)
    widget.option_widgets["size"].value = 48
    widget.run()
    qtbot.waitUntil(lambda: widget._job is None, timeout=TIMEOUT_MS)
    assert "32-pixel cutouts" in widget.status.value and len(viewer.layers) == 1


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_no_installed_model_is_said(make_napari_viewer, monkeypatch, name):
    import astro_nn_restore.registry as registry

    monkeypatch.setattr(registry, "available_models", lambda task=None: [])
    viewer = make_napari_viewer()
    widget = WIDGETS[name](napari_viewer=viewer)
    task = OPERATIONS[name].task
    assert widget.model.value == WEIGHTS_FILE
    assert "none installed" in widget.model.native.currentText()
    assert f"No {task} model is installed" in widget.status.value
    assert not widget.weights.native.isHidden()


def test_colorize_stretch_names_are_the_core_ones():
    from astro_nn_restore.colorize import STRETCH_NAMES
    from astro_nn_restore_napari._operations import STRETCHES

    assert STRETCHES == tuple(STRETCH_NAMES)

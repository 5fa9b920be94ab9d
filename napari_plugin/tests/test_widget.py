"""The Denoise widget: run to completion, names, metadata, cancel, colour input, errors."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from napari.utils import cancelable_progress

from astro_nn_restore_napari._operations import OPERATIONS
from astro_nn_restore_napari._widget import WEIGHTS_FILE, OperationWidget

PLUGIN = "astro-nn-restore-napari"
TIMEOUT_MS = 120_000


def docked_widget(viewer, tiny_model, tile_size=64):
    # through the manifest, as the Plugins menu does
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    assert isinstance(widget, OperationWidget)
    widget.reset_choices()
    widget.model.value = WEIGHTS_FILE
    widget.weights.value = tiny_model
    widget.tile_size.value = tile_size
    return widget


def run_to_end(qtbot, widget):
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: widget._job is None, timeout=TIMEOUT_MS)
    return worker


def test_every_operation_has_a_widget_class(make_napari_viewer):
    from astro_nn_restore_napari._widget import WIDGETS

    viewer = make_napari_viewer()
    assert set(WIDGETS) == set(OPERATIONS)
    for name, cls in WIDGETS.items():
        widget = cls(napari_viewer=viewer)
        assert isinstance(widget, OperationWidget) and widget.operation is OPERATIONS[name]


def test_denoise_widget_adds_new_layer_with_metadata(make_napari_viewer, qtbot, fits_file,
                                                     tiny_model):
    from astro_nn_restore import denoise_residual

    viewer = make_napari_viewer()
    [layer] = viewer.open(fits_file, plugin=PLUGIN)
    widget = docked_widget(viewer, tiny_model)
    assert widget.image.value == layer and not widget.weights.native.isHidden()
    run_to_end(qtbot, widget)

    out = viewer.layers["field_denoised"]
    expected = denoise_residual(CCDData.read(fits_file), model=tiny_model, tile_size=64)
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-5, atol=1e-4)
    assert out.data.shape == layer.data.shape and np.isfinite(out.data).all()
    meta = out.metadata
    assert meta["unit"] == "electron" and meta["source_layer"] == "field"
    y, x = np.mgrid[0:96:9, 0:80:9]
    np.testing.assert_allclose(meta["wcs"].pixel_to_world_values(x, y),
                               layer.metadata["wcs"].pixel_to_world_values(x, y), atol=1e-10)
    header = meta["header"]
    assert isinstance(header, fits.Header)
    assert header["ANR_OP"] == "denoise_residual" and header["ANR_MOD"] == "tiny"
    assert header["OBJECT"] == "test field"
    assert out.contrast_limits == layer.contrast_limits
    assert "Done" in widget.status.value and widget.run_button.enabled
    assert not widget.cancel_button.enabled
    assert viewer.layers["field"] is layer and np.array_equal(layer.data, fits.getdata(fits_file))

    run_to_end(qtbot, widget)  # a second run never replaces the first result
    assert [lyr.name for lyr in viewer.layers] == ["field", "field_denoised", "field_denoised-2"]

    path = fits_file.parent / "denoised.fits"
    out.save(str(path), plugin=PLUGIN)
    [again] = viewer.open(path, plugin=PLUGIN)
    assert again.metadata["unit"] == "electron" and np.array_equal(again.data, out.data)
    np.testing.assert_allclose(again.metadata["wcs"].pixel_to_world_values(x, y),
                               meta["wcs"].pixel_to_world_values(x, y), atol=1e-10)
    assert again.metadata["header"]["ANR_OP"] == "denoise_residual"


def test_cancel_stops_between_tiles(make_napari_viewer, qtbot, tiny_model):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(3)
    viewer.add_image(rng.normal(100, 5, (1536, 1536)).astype(np.float32), name="big",
                     metadata={"unit": "adu"})
    widget = docked_widget(viewer, tiny_model, tile_size=64)
    seen, bars = [], []
    widget._relay.tiles.connect(lambda done, total: seen.append((done, total)))
    widget._relay.tiles.connect(lambda done, total: bars.append(widget._job.pbar))
    click = widget.cancel_button.native.click
    widget._relay.tiles.connect(lambda done, total: done > 0 and click())
    run_to_end(qtbot, widget)

    total = seen[0][1]
    assert total > 100 and max(done for done, _ in seen) < total
    # a napari progress bar (with its own Cancel button) followed the tiles, and is closed
    assert isinstance(bars[0], cancelable_progress) and bars[0].total == total
    assert bars[0] not in cancelable_progress._all_instances
    assert [lyr.name for lyr in viewer.layers] == ["big"]
    assert widget.status.value.startswith("Cancelled") and widget.run_button.enabled


def test_progress_bar_cancel_also_stops(make_napari_viewer, qtbot, tiny_model):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((1024, 1024), np.float32) + 5, name="flat")
    widget = docked_widget(viewer, tiny_model, tile_size=64)
    widget._relay.tiles.connect(lambda done, total: done > 0 and widget._job.pbar.cancel())
    run_to_end(qtbot, widget)
    assert [lyr.name for lyr in viewer.layers] == ["flat"] and "Cancelled" in widget.status.value


def test_rgb_layer_gives_rgb_layer(make_napari_viewer, qtbot, tiny_model):
    viewer = make_napari_viewer()
    rgb = np.random.default_rng(4).random((64, 48, 3)).astype(np.float32)
    viewer.add_image(rgb, name="colour", rgb=True)
    widget = docked_widget(viewer, tiny_model)
    run_to_end(qtbot, widget)
    out = viewer.layers["colour_denoised"]
    assert out.rgb and out.data.shape == rgb.shape
    assert out.metadata["header"]["ANR_OP"] == "denoise_residual"


def test_a_layer_whose_wcs_was_replaced_is_refused_in_the_status(make_napari_viewer,
                                                                 tiny_model):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(4).random((32, 24, 3)).astype(np.float32),
                     name="colour", rgb=True, metadata={"wcs": "not a WCS"})
    widget = docked_widget(viewer, tiny_model)
    assert widget.run() is None
    assert "metadata['wcs']" in widget.status.value and len(viewer.layers) == 1


def test_no_weights_file_is_explained(make_napari_viewer, fits_file):
    viewer = make_napari_viewer()
    viewer.open(fits_file, plugin=PLUGIN)
    widget = OperationWidget(viewer, OPERATIONS["denoise"])
    widget.reset_choices()
    widget.model.value = WEIGHTS_FILE
    assert widget.run() is None
    assert "weights file" in widget.status.value and len(viewer.layers) == 1


def test_stack_layer_is_refused(make_napari_viewer, tiny_model):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 16, 16), np.float32), name="stack")
    widget = docked_widget(viewer, tiny_model)
    assert widget.run() is None and "2-D" in widget.status.value


@pytest.mark.parametrize("factor", [2, 3])
def test_larger_output_overlays_its_input(make_napari_viewer, factor):
    from astro_nn_restore_napari._widget import output_layer_data

    viewer = make_napari_viewer()
    source = viewer.add_image(np.zeros((10, 12), np.float32), name="small",
                              scale=(2.0, 2.0), translate=(5.0, 7.0), metadata={"unit": "Jy"})
    result = CCDData(np.zeros((10 * factor, 12 * factor), np.float32), unit="Jy")
    data, kwargs, _ = output_layer_data(result, source, "small_x")
    out = viewer.add_image(data, **kwargs)
    # the outer edges of the first and last pixels coincide in world coordinates
    first_in = source.data_to_world((-0.5, -0.5))
    first_out = out.data_to_world((-0.5, -0.5))
    last_in = source.data_to_world((9.5, 11.5))
    last_out = out.data_to_world((10 * factor - 0.5, 12 * factor - 0.5))
    np.testing.assert_allclose(first_in, first_out)
    np.testing.assert_allclose(last_in, last_out)

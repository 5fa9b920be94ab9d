"""Sample data and the sky coordinates shown in the status bar."""

import numpy as np
import pytest
from astropy.wcs import WCS

from astro_nn_restore_napari._sky_status import sky_text

PLUGIN = "astro-nn-restore-napari"


def test_simulated_sky_sample_looks_like_a_fits_file(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, "simulated_sky")
    noisy = viewer.layers["simulated_sky"]
    truth = viewer.layers["simulated_sky_truth"]
    assert {lyr.name for lyr in layers} == {"simulated_sky", "simulated_sky_truth"}
    assert not truth.visible and noisy.visible
    meta = noisy.metadata
    assert meta["unit"] == "electron" and isinstance(meta["wcs"], WCS)
    assert meta["wcs"].has_celestial and meta["header"]["CTYPE1"] == "RA---TAN"
    assert meta["header"]["TELESCOP"] == "SIMULATED"
    assert meta["uncertainty"].shape == noisy.data.shape and noisy.data.dtype.isnative


def test_hubble_deep_field_sample_is_rgb(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "hubble_deep_field")
    layer = viewer.layers["hubble_deep_field"]
    assert layer.rgb and layer.data.shape[-1] == 3
    assert 0 <= layer.data.min() < layer.data.max() <= 1
    assert layer.metadata["wcs"] is None
    assert layer.metadata["header"]["OBJECT"] == "Hubble Deep Field"


def status_text(viewer):
    status = viewer.status
    return status["coordinates"] if isinstance(status, dict) else status


def test_status_bar_shows_sky_coordinates(make_napari_viewer, fits_file):
    viewer = make_napari_viewer()
    [layer] = viewer.open(fits_file, plugin=PLUGIN)
    viewer.mouse_over_canvas = True
    viewer.cursor.position = (10.0, 20.0)  # world (y, x) = data pixel here
    expected = sky_text(layer.metadata["wcs"], 20.0, 10.0)
    ra, dec = layer.metadata["wcs"].pixel_to_world_values(20.0, 10.0)
    assert expected.startswith(f"RA {int(ra // 15):02d}:") and "Dec +02:" in expected
    # the Qt viewer computes the status in a thread that runs once the window is shown;
    # ask for it directly (our hook listens to viewer.events.status either way)
    viewer.update_status_from_cursor()
    value = f"{layer.data[10, 20]:.4g}"
    assert status_text(viewer).startswith(f"[10, 20]: {value} electron | RA ")
    assert expected in status_text(viewer)

    viewer.cursor.position = (-50.0, 20.0)  # off the image: no sky position
    viewer.update_status_from_cursor()
    assert "[-50, 20]" in status_text(viewer) and "RA" not in status_text(viewer)


def test_status_bar_ignores_points_layers_with_a_wcs(make_napari_viewer, fits_file):
    # the anomaly widget's Points layer copies its image's metadata, WCS included
    viewer = make_napari_viewer()
    [image] = viewer.open(fits_file, plugin=PLUGIN)
    points = viewer.add_points([[10.0, 20.0]], metadata=dict(image.metadata))
    viewer.layers.selection.active = points
    viewer.mouse_over_canvas = True
    viewer.cursor.position = (10.0, 20.0)
    viewer.update_status_from_cursor()  # used to raise AttributeError: no 'rgb'
    assert "RA" not in status_text(viewer)


def test_stale_uncertainty_gives_clear_error(make_napari_viewer, fits_file):
    from astro_nn_restore_napari._widget import layer_source

    viewer = make_napari_viewer()
    [layer] = viewer.open(fits_file, plugin=PLUGIN)
    layer.metadata["uncertainty"] = np.ones(layer.data.shape)
    assert layer_source(layer).uncertainty is not None
    layer.data = layer.data[:8, :8].copy()  # cropped in the console, metadata left behind
    with pytest.raises(ValueError, match=r"metadata\['uncertainty'\].*reload"):
        layer_source(layer)


def test_sky_text_formats():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-CAR", "GLAT-CAR"]
    wcs.wcs.crval, wcs.wcs.cdelt, wcs.wcs.crpix = [10, -5], [0.01, 0.01], [1, 1]
    assert sky_text(wcs, 0, 0) == "l 10.00000° b -5.00000°"
    assert sky_text(None, 0, 0) == ""
    linear = WCS(naxis=2)
    assert sky_text(linear, 0, 0) == ""
    assert np.isfinite(0)

"""FITS reader and writer: unit, WCS, header, RGB cubes, big-endian data, overwrite policy."""

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS

from astro_nn_restore_napari._io import OVERWRITE_ENV, get_reader, read_fits, save_fits, write_fits

PLUGIN = "astro-nn-restore-napari"


def same_sky(wcs_a, wcs_b, shape):
    y, x = np.mgrid[0 : shape[0] : 7, 0 : shape[1] : 7]
    a = np.array(wcs_a.pixel_to_world_values(x, y))
    b = np.array(wcs_b.pixel_to_world_values(x, y))
    return np.allclose(a, b, rtol=0, atol=1e-10)


def test_get_reader_claims_only_fits(tmp_path):
    assert get_reader(str(tmp_path / "a.fits")) is read_fits
    assert get_reader(str(tmp_path / "a.FITS.gz")) is read_fits
    assert get_reader([str(tmp_path / "a.fit"), str(tmp_path / "b.fts")]) is read_fits
    assert get_reader(str(tmp_path / "a.fits.fz")) is read_fits
    assert get_reader(str(tmp_path / "a.png")) is None
    assert get_reader([str(tmp_path / "a.fits"), str(tmp_path / "b.tif")]) is None


def test_tile_compressed_fits_is_read(tmp_path):
    data = np.random.default_rng(0).integers(900, 1100, (40, 50)).astype(np.int16)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, fits.Header({"BUNIT": "adu"}))]
                 ).writeto(tmp_path / "c.fits.fz")
    [(read, kwargs, _)] = read_fits(str(tmp_path / "c.fits.fz"))
    assert kwargs["name"] == "c" and kwargs["metadata"]["unit"] == "adu"
    assert np.array_equal(read, data)  # integer tile compression is lossless


def test_an_extension_layer_has_the_primary_keys_it_inherits(tmp_path):
    primary = fits.PrimaryHDU()
    primary.header.update({"TELESCOP": "Blanco", "DATE-OBS": "2024-03-01T02:03:04"})
    sci = fits.ImageHDU(np.ones((6, 5), np.float32), fits.Header({"BUNIT": "adu"}), name="SCI")
    fits.HDUList([primary, sci]).writeto(tmp_path / "mef.fits")
    [(_, kwargs, _)] = read_fits(str(tmp_path / "mef.fits"))
    header = kwargs["metadata"]["header"]
    assert header["TELESCOP"] == "Blanco" and header["EXTNAME"] == "SCI"


def test_viewer_open_keeps_unit_wcs_header(make_napari_viewer, fits_file, wcs_factory):
    viewer = make_napari_viewer()
    [layer] = viewer.open(fits_file, plugin=PLUGIN)
    with fits.open(fits_file) as hdul:
        expected = hdul[0].data.astype(np.float32)
    assert layer.name == "field"
    assert layer.data.dtype.isnative and np.array_equal(layer.data, expected)
    meta = layer.metadata
    assert meta["unit"] == "electron" and "unit_note" not in meta
    assert isinstance(meta["wcs"], WCS) and same_sky(meta["wcs"], wcs_factory(layer.data.shape),
                                                     layer.data.shape)
    assert isinstance(meta["header"], fits.Header) and meta["header"]["OBJECT"] == "test field"
    assert layer.colormap.name == "gray"
    low, high = layer.contrast_limits
    assert np.percentile(expected, 1) < high and low < np.median(expected) < high


def test_missing_bunit_is_dimensionless_with_note(tmp_path, fits_factory):
    path = fits_factory(tmp_path / "nounit.fits", bunit=None)
    [(data, kwargs, kind)] = read_fits(str(path))
    assert kind == "image" and kwargs["metadata"]["unit"] == ""
    assert "BUNIT" in kwargs["metadata"]["unit_note"]


@pytest.mark.parametrize("extension", ["MASK", "UNCERT"])
def test_an_extension_of_another_shape_is_not_used_with_a_warning(tmp_path, extension):
    """As the core's file inputs: the image still opens, without the mismatched extension."""
    image = fits.ImageHDU(np.ones((40, 30), np.float32), fits.Header({"BUNIT": "adu"}),
                          name="SCI")
    odd = fits.ImageHDU(np.ones((5, 5), np.uint8), name=extension)
    fits.HDUList([fits.PrimaryHDU(), image, odd]).writeto(tmp_path / "odd.fits")
    with pytest.warns(AstropyUserWarning, match=f"{extension} extension has shape"):
        [(data, kwargs, _)] = read_fits(str(tmp_path / "odd.fits"))
    key = {"MASK": "mask", "UNCERT": "uncertainty"}[extension]
    assert data.shape == (40, 30) and key not in kwargs["metadata"]


def test_hst_bunit_is_read_as_ccddata_reads_it(tmp_path, fits_factory):
    path = fits_factory(tmp_path / "hst.fits", bunit="ELECTRONS/S")
    [(_, kwargs, _)] = read_fits(str(path))
    assert kwargs["metadata"]["unit"] == "electron / s" and "unit_note" not in kwargs["metadata"]


def test_unparsable_bunit_is_dimensionless_with_note(tmp_path, fits_factory):
    path = fits_factory(tmp_path / "odd.fits", bunit="furlongs per fortnight")
    [(_, kwargs, _)] = read_fits(str(path))
    assert kwargs["metadata"]["unit"] == "" and "furlongs" in kwargs["metadata"]["unit_note"]


def test_gzip_and_image_extension(tmp_path, wcs_factory):
    shape = (40, 50)
    hdul = fits.HDUList([fits.PrimaryHDU(),
                         fits.ImageHDU(np.arange(2000, dtype=">i2").reshape(shape),
                                       header=wcs_factory(shape).to_header(), name="SCI")])
    hdul[1].header["BUNIT"] = "adu"
    path = tmp_path / "ext.fits.gz"
    hdul.writeto(path)
    [(data, kwargs, _)] = read_fits(str(path))
    assert data.dtype.isnative and data.shape == shape and data[1, 0] == 50
    assert kwargs["name"] == "ext" and kwargs["metadata"]["unit"] == "adu"
    assert same_sky(kwargs["metadata"]["wcs"], wcs_factory(shape), shape)


def test_rgb_cube_becomes_rgb_layer(tmp_path, wcs_factory):
    from astro_nn_restore.wcs_utils import add_band_axis

    shape = (30, 20)
    cube = np.random.default_rng(1).random((3, *shape)).astype(">f4")
    path = tmp_path / "rgb.fits"
    fits.PrimaryHDU(cube, header=add_band_axis(wcs_factory(shape)).to_header()).writeto(path)
    [(data, kwargs, _)] = read_fits(str(path))
    assert kwargs["rgb"] and data.shape == (*shape, 3)
    assert np.array_equal(data[..., 2], cube[2])
    wcs = kwargs["metadata"]["wcs"]
    assert wcs.naxis == 2 and same_sky(wcs, wcs_factory(shape), shape)


@pytest.mark.parametrize(("planes", "ctype3", "rgb"), [
    (3, None, True), (3, "BAND", True), (3, "FREQ", False), (3, "STOKES", False),
    (4, None, False), (4, "BAND", True),
])
def test_only_untyped_or_band_cubes_are_colour(tmp_path, planes, ctype3, rgb):
    cube = np.random.default_rng(1).random((planes, 12, 10)).astype(np.float32)
    header = fits.Header()
    if ctype3:
        header["CTYPE3"] = ctype3
    fits.PrimaryHDU(cube, header=header).writeto(tmp_path / "cube.fits")
    [(data, kwargs, _)] = read_fits(str(tmp_path / "cube.fits"))
    assert bool(kwargs.get("rgb")) == rgb
    assert data.shape == ((12, 10, planes) if rgb else (planes, 12, 10))


@pytest.mark.parametrize("with_wcs", [True, False])
def test_rgba_round_trip(tmp_path, wcs_factory, with_wcs):
    rgba = np.random.default_rng(3).random((12, 10, 4)).astype(np.float32)
    meta = {"unit": "", "wcs": wcs_factory((12, 10)) if with_wcs else None}
    save_fits(tmp_path / "rgba.fits", rgba, meta, rgb=True)
    [(data, kwargs, _)] = read_fits(str(tmp_path / "rgba.fits"))
    assert kwargs["rgb"] and np.array_equal(data, rgba)


def test_writer_stores_bool_and_float16_and_refuses_complex(tmp_path):
    mask = np.zeros((6, 5), bool)
    mask[2, 3] = True
    write_fits(str(tmp_path / "mask.fits"), mask, {"metadata": {}})
    assert np.array_equal(fits.getdata(tmp_path / "mask.fits"), mask.astype(np.uint8))
    half = np.linspace(0, 1, 30, dtype=np.float16).reshape(6, 5)
    write_fits(str(tmp_path / "half.fits"), half, {"metadata": {}})
    assert np.array_equal(fits.getdata(tmp_path / "half.fits"), half.astype(np.float32))
    with pytest.raises(TypeError, match="complex128 data, which a FITS image cannot store"):
        write_fits(str(tmp_path / "complex.fits"), np.zeros((6, 5), complex), {"metadata": {}})
    assert not (tmp_path / "complex.fits").exists()


def test_save_and_read_back(make_napari_viewer, fits_file, tmp_path):
    viewer = make_napari_viewer()
    [layer] = viewer.open(fits_file, plugin=PLUGIN)
    out = tmp_path / "saved.fits"
    layer.save(str(out), plugin=PLUGIN)
    [again] = viewer.open(out, plugin=PLUGIN)
    assert np.array_equal(again.data, layer.data)
    assert again.metadata["unit"] == "electron"
    assert same_sky(again.metadata["wcs"], layer.metadata["wcs"], layer.data.shape)
    header = fits.getheader(out)
    assert header["OBJECT"] == "test field"
    # the WCS is written once, from metadata["wcs"]: no leftover CD next to PC
    assert not ({"CD1_1"} & set(header) and {"PC1_1"} & set(header))


def test_writer_refuses_to_overwrite(fits_file, monkeypatch):
    monkeypatch.delenv(OVERWRITE_ENV, raising=False)
    [(data, kwargs, _)] = read_fits(str(fits_file))
    meta = {"metadata": kwargs["metadata"], "rgb": False}
    before = fits.getdata(fits_file).copy()
    with pytest.raises(FileExistsError, match=OVERWRITE_ENV):
        write_fits(str(fits_file), data + 1, meta)
    assert np.array_equal(fits.getdata(fits_file), before)
    monkeypatch.setenv(OVERWRITE_ENV, "1")
    assert write_fits(str(fits_file), data + 1, meta) == [str(fits_file)]
    assert np.allclose(fits.getdata(fits_file), before + 1)


def test_rgb_and_uncertainty_round_trip(tmp_path, wcs_factory):
    shape = (16, 12)
    rgb = np.random.default_rng(2).random((*shape, 3)).astype(np.float32)
    meta = {"unit": "", "wcs": wcs_factory(shape), "header": fits.Header({"OBJECT": "x"})}
    save_fits(tmp_path / "rgb.fits", rgb, meta, rgb=True)
    [(data, kwargs, _)] = read_fits(str(tmp_path / "rgb.fits"))
    assert kwargs["rgb"] and np.array_equal(data, rgb)
    assert same_sky(kwargs["metadata"]["wcs"], meta["wcs"], shape)

    image = rgb[..., 0] * 10
    meta = {"unit": "adu", "wcs": wcs_factory(shape), "header": fits.Header(),
            "uncertainty": np.full(shape, 0.5, np.float32), "mask": image > 9}
    save_fits(tmp_path / "plane.fits", image, meta)
    ccd = CCDData.read(tmp_path / "plane.fits")
    assert ccd.unit == "adu" and np.allclose(ccd.uncertainty.array, 0.5)
    assert np.array_equal(ccd.mask, image > 9)
    [(_, kwargs, _)] = read_fits(str(tmp_path / "plane.fits"))
    assert np.allclose(kwargs["metadata"]["uncertainty"], 0.5)


def test_rgb_layer_with_a_distorted_wcs_reads_back_with_its_linear_fit(tmp_path, wcs_factory):
    from astropy.utils.exceptions import AstropyUserWarning

    shape = (40, 50)
    header = wcs_factory(shape).to_header()
    header.update(CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP", A_ORDER=2, B_ORDER=2,
                  A_2_0=2e-4, B_0_2=2e-4)
    wcs = WCS(header)
    rgb = np.random.default_rng(3).random((*shape, 3)).astype(np.float32)
    with pytest.warns(AstropyUserWarning, match="best linear fit"):
        save_fits(tmp_path / "rgb.fits", rgb, {"unit": "", "wcs": wcs}, rgb=True)
    assert "best linear fit" in "".join(fits.getheader(tmp_path / "rgb.fits")["HISTORY"])
    [(_, kwargs, _)] = read_fits(str(tmp_path / "rgb.fits"))
    back = kwargs["metadata"]["wcs"]
    assert back is not None  # a 3-axis SIP header did not read back at all
    offset = back.celestial.pixel_to_world(45, 35).separation(wcs.pixel_to_world(45, 35))
    assert 0 < offset.arcsec < 1.0


def test_save_fits_widget_overwrites_only_when_asked(make_napari_viewer, fits_file, tmp_path):
    viewer = make_napari_viewer()
    [layer] = viewer.open(fits_file, plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Save as FITS")
    widget.reset_choices()
    assert widget.path.value == fits_file.parent / "field.fits"  # suggested beside the source
    out = tmp_path / "out.fits"
    widget(layer=layer, path=out, overwrite=False)
    assert np.array_equal(fits.getdata(out), layer.data)
    with pytest.raises(FileExistsError):
        widget(layer=layer, path=out, overwrite=False)
    layer.data = layer.data * 2
    widget(layer=layer, path=out, overwrite=True)
    assert np.array_equal(fits.getdata(out), layer.data)


def test_save_refuses_stale_uncertainty(tmp_path, wcs_factory):
    # data cropped after loading, uncertainty left behind: a clear error, no file
    shape = (16, 12)
    meta = {"unit": "adu", "wcs": wcs_factory(shape), "header": fits.Header(),
            "uncertainty": np.full(shape, 0.5, np.float32)}
    with pytest.raises(ValueError, match=r"'cropped'.*metadata\['uncertainty'\]"):
        save_fits(tmp_path / "plane.fits", np.ones((8, 8)), meta, name="cropped")
    assert not (tmp_path / "plane.fits").exists()


def test_a_three_plane_stack_reads_back_as_a_stack(tmp_path):
    stack = np.arange(3 * 8 * 6, dtype=np.float32).reshape(3, 8, 6)
    save_fits(tmp_path / "stack.fits", stack, {"unit": "adu"})
    [(data, kwargs, _)] = read_fits(str(tmp_path / "stack.fits"))
    assert not kwargs.get("rgb") and data.shape == (3, 8, 6)
    np.testing.assert_array_equal(data, stack)


def test_one_number_as_uncertainty_is_every_pixels_sigma(tmp_path, wcs_factory):
    shape = (16, 12)
    meta = {"unit": "adu", "wcs": wcs_factory(shape), "uncertainty": 0.5}
    save_fits(tmp_path / "plane.fits", np.ones(shape), meta)
    with fits.open(tmp_path / "plane.fits") as hdul:
        np.testing.assert_array_equal(hdul["UNCERT"].data, np.full(shape, 0.5))


def test_uncertainty_as_a_quantity_is_converted_to_the_data_unit(tmp_path, wcs_factory):
    from astropy import units as u

    shape = (16, 12)
    kilo_electron = u.CompositeUnit(1e3, [u.electron], [1])
    meta = {"unit": "electron", "wcs": wcs_factory(shape), "uncertainty": 2e-3 * kilo_electron}
    save_fits(tmp_path / "scalar.fits", np.ones(shape), meta)
    meta["uncertainty"] = np.full(shape, 3.0) * u.electron
    save_fits(tmp_path / "array.fits", np.ones(shape), meta)
    for path, sigma in (("scalar.fits", 2.0), ("array.fits", 3.0)):
        with fits.open(tmp_path / path) as hdul:
            np.testing.assert_allclose(hdul["UNCERT"].data, sigma)
    meta["uncertainty"] = 2.0 * u.Jy
    with pytest.raises(u.UnitConversionError, match=r"'layer'.*electron.*Jy"):
        save_fits(tmp_path / "wrong.fits", np.ones(shape), meta)
    assert not (tmp_path / "wrong.fits").exists()


def test_colour_cube_keeps_its_mask_and_rgba_its_four_bands(tmp_path, wcs_factory):
    from astropy.nddata import CCDData

    shape = (12, 10)
    cube = np.random.default_rng(4).random((3, *shape)).astype(np.float32)
    mask = np.zeros(cube.shape, bool)
    mask[:, 2:4, 5] = True
    header = wcs_factory(shape).to_header()
    header["CTYPE3"] = "BAND"
    CCDData(cube, unit="adu", mask=mask, meta=header).write(tmp_path / "in.fits")
    [(data, kwargs, _)] = read_fits(str(tmp_path / "in.fits"))
    save_fits(tmp_path / "out.fits", data, kwargs["metadata"], rgb=True)
    back = CCDData.read(tmp_path / "out.fits")
    np.testing.assert_array_equal(back.mask, mask)  # was lost on saving

    rgba = np.random.default_rng(5).random((*shape, 4)).astype(np.float32)
    save_fits(tmp_path / "rgba.fits", rgba, {"unit": "", "wcs": wcs_factory(shape)}, rgb=True)
    assert fits.getheader(tmp_path / "rgba.fits")["NAXIS3"] == 4
    [(data, kwargs, _)] = read_fits(str(tmp_path / "rgba.fits"))
    assert kwargs["rgb"] and data.shape == (*shape, 4)


def test_saving_to_a_name_that_is_not_fits_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a FITS file name this package writes"):
        save_fits(tmp_path / "x.fits.fz", np.zeros((4, 4), np.float32), {"unit": ""})
    assert not (tmp_path / "x.fits.fz").exists()


def test_save_drops_what_described_the_file_the_layer_came_from(tmp_path):
    header = fits.Header({"OBJECT": "x", "DATAMIN": 0.0, "DATAMAX": 65535.0, "BZERO": 32768,
                          "CHECKSUM": "0000000000000000", "DATASUM": "0", "INHERIT": True})
    save_fits(tmp_path / "plane.fits", np.ones((8, 6), np.float32) * 5,
              {"unit": "adu", "header": header})
    written = fits.getheader(tmp_path / "plane.fits")
    assert written["OBJECT"] == "x" and written["BITPIX"] == -32
    assert not {"DATAMIN", "DATAMAX", "BZERO", "INHERIT"} & set(written)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the layer's stale checksum would fail here
        with fits.open(tmp_path / "plane.fits", checksum=True) as hdul:
            assert hdul[0].header["DATASUM"] != "0"  # a fresh checksum of the written data


def test_a_colour_mask_is_kept_spread_or_refused_never_dropped(tmp_path):
    rgb = np.random.default_rng(3).random((8, 6, 3)).astype(np.float32)
    plane = np.zeros((8, 6), bool)
    plane[2, 3] = True
    save_fits(tmp_path / "spread.fits", rgb, {"unit": "", "mask": plane}, rgb=True)
    with fits.open(tmp_path / "spread.fits") as hdul:
        assert np.array_equal(hdul["MASK"].data.astype(bool), np.broadcast_to(plane, (3, 8, 6)))
    with pytest.raises(ValueError, match=r"metadata\['mask'\] has shape \(4, 6\)"):
        save_fits(tmp_path / "cropped.fits", rgb, {"unit": "", "mask": plane[:4]}, rgb=True)

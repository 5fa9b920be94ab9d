"""Input forms, data policy and provenance (astro_nn_restore._nddata via denoise_residual)."""

import copy
import pathlib
import re
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, NDData, StdDevUncertainty, VarianceUncertainty
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, find_all_wcs
from numpy.testing import assert_allclose, assert_array_equal

from astro_nn_restore import __version__
from astro_nn_restore._files import read_image
from astro_nn_restore._nddata import parse_image

torch = pytest.importorskip("torch")

from astro_nn_restore import denoise_residual  # noqa: E402
from astro_nn_restore.models import ResidualUNet  # noqa: E402
from astro_nn_restore.registry import save_model  # noqa: E402

SHAPE = (40, 56)
TILING = dict(tile_size=32, overlap=8, batch_size=8)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Path of an untrained tiny denoiser with its model card."""
    net = ResidualUNet(channels=(8, 16), blocks=1, dilations=(2,), space_to_depth=2)
    arguments = {k: list(v) if isinstance(v, tuple) else v for k, v in net.config.items()}
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    card = save_model(net, path, {"task": "denoise", "architecture": "ResidualUNet",
                                  "arguments": arguments})
    return str(path), card


def _denoise(data, tiny_model, **kwargs):
    return denoise_residual(data, model=tiny_model[0], **TILING, **kwargs)


def _wcs():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [20.5, 15.5]
    wcs.wcs.cd = [[-1e-4, 2e-6], [1e-6, 1e-4]]
    wcs.wcs.set()
    return wcs


def _header(unit="Jy"):
    header = _wcs().to_header()
    header["OBJECT"] = "field"
    if unit is not None:
        header["BUNIT"] = unit
    return header


def _data(seed=0):
    return np.random.default_rng(seed).normal(100.0, 5.0, SHAPE).astype(np.float32)


def _same_wcs(a, b):
    """Same sky positions on a grid of pixels (works for CD/PC/SIP spellings)."""
    y, x = np.mgrid[0 : SHAPE[0] : 7, 0 : SHAPE[1] : 9]
    assert_allclose(a.all_pix2world(x, y, 0), b.all_pix2world(x, y, 0), rtol=0, atol=1e-10)


# ------------------------------------------------------------ input forms
def _make(form, tmp_path):
    """(input, expected unit, expects a WCS, expected mask or None)."""
    data, mask = _data(), np.zeros(SHAPE, bool)
    mask[3, 4] = mask[10, 20] = True
    header = _header()
    if form == "ccddata":
        sigma = StdDevUncertainty(np.full(SHAPE, 5.0, np.float32))
        return (CCDData(data, unit="electron", wcs=_wcs(), mask=mask, uncertainty=sigma,
                        meta={"OBJECT": "field"}), u.electron, True, mask)
    if form == "nddata":
        return NDData(data, unit="adu", wcs=_wcs(), meta={"OBJECT": "field"}), u.adu, True, None
    if form == "primaryhdu":
        return fits.PrimaryHDU(data, header=header), u.Jy, True, None
    if form == "imagehdu":
        return fits.ImageHDU(data, header=header), u.Jy, True, None
    if form == "hdulist":
        return fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header)]), u.Jy, True, None
    if form in ("path", "pathlib"):
        path = tmp_path / "image.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header)]).writeto(path)
        return (str(path) if form == "path" else path), u.Jy, True, None
    if form == "array_wcs":
        return (data, _wcs()), u.dimensionless_unscaled, True, None
    if form == "array_header":
        return (data, header), u.Jy, True, None
    if form == "array":
        return data, u.dimensionless_unscaled, False, None
    if form == "masked":
        return np.ma.masked_array(data, mask), u.dimensionless_unscaled, False, mask
    raise AssertionError(form)


FORMS = ["ccddata", "nddata", "primaryhdu", "imagehdu", "hdulist", "path", "pathlib",
         "array_wcs", "array_header", "array", "masked"]


@pytest.mark.parametrize("form", FORMS)
def test_parse_every_form(form, tmp_path):
    data, unit, has_wcs, mask = _make(form, tmp_path)
    parsed = parse_image(data)
    assert parsed.data.dtype == np.float32 and parsed.data.dtype.isnative
    assert_array_equal(parsed.data, _data())
    assert parsed.unit == unit
    if has_wcs:
        _same_wcs(parsed.wcs, _wcs())
    else:
        assert parsed.wcs is None
    if mask is None:
        assert parsed.mask is None and not parsed.bad.any()
    else:
        assert_array_equal(parsed.mask, mask)
        assert_array_equal(parsed.bad, mask)
    if form not in ("array", "masked", "array_wcs"):
        assert parsed.meta["OBJECT"] == "field"
    if form == "ccddata":
        assert_allclose(parsed.uncertainty, 5.0)


@pytest.mark.parametrize("form", FORMS)
def test_denoise_every_form(form, tmp_path, tiny_model):
    data, unit, has_wcs, mask = _make(form, tmp_path)
    out = _denoise(data, tiny_model)
    assert isinstance(out, CCDData)
    assert out.shape == SHAPE and out.unit == unit and out.dtype == np.float32
    assert (out.wcs is not None) == has_wcs
    if mask is not None:
        assert_array_equal(out.mask, mask)
    assert np.isfinite(out.data).all()


# ---------------------------------------------------------------- endianness
@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i2", ">i4", "<f8", "uint8", "bool"])
def test_array_dtypes_become_native_float32(dtype):
    data = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 7).astype(dtype)
    parsed = parse_image(data)
    assert parsed.data.dtype == np.dtype("float32") and parsed.data.dtype.isnative
    assert_array_equal(parsed.data, data.astype(np.float64))


@pytest.mark.parametrize("kind", ["f4", "i2_bzero", "i2"])
@pytest.mark.parametrize("via", ["path", "hdulist"])
def test_fits_round_trip_big_endian(tmp_path, tiny_model, kind, via):
    rng = np.random.default_rng(1)
    if kind == "f4":
        values = rng.normal(1e3, 10, SHAPE).astype(">f4")
    elif kind == "i2":
        values = rng.integers(-3000, 3000, SHAPE).astype(">i2")
    else:  # unsigned 16-bit: written as BITPIX=16 with BZERO=32768
        values = rng.integers(30000, 65000, SHAPE).astype(np.uint16)
    path = tmp_path / "raw.fits"
    fits.PrimaryHDU(values).writeto(path)
    header = fits.getheader(path)
    assert header["BITPIX"] == (-32 if kind == "f4" else 16)
    assert ("BZERO" in header) == (kind == "i2_bzero")
    with fits.open(path) as hdulist:
        source = path if via == "path" else hdulist
        parsed = parse_image(source)
        out = _denoise(source, tiny_model)
    assert parsed.data.dtype == np.float32 and parsed.data.dtype.isnative
    assert_array_equal(parsed.data, values.astype(np.float64))
    assert out.data.dtype == np.float32 and out.data.dtype.isnative
    assert np.isfinite(out.data).all()
    # no BZERO/BSCALE/BITPIX from the integer input leaks into the float output file
    out.write(tmp_path / "out.fits")
    with fits.open(tmp_path / "out.fits") as hdulist:
        assert hdulist[0].header["BITPIX"] == -32 and "BZERO" not in hdulist[0].header
        assert_allclose(hdulist[0].data, out.data)


# ------------------------------------------------------- never mutate input
def _snapshot(obj):
    """Deep, comparable copy of everything an input holds."""
    if isinstance(obj, NDData):
        return ("nddata", obj.data.copy(), None if obj.mask is None else obj.mask.copy(),
                None if obj.uncertainty is None else obj.uncertainty.array.copy(),
                copy.deepcopy(dict(obj.meta)), obj.wcs.to_header_string(), str(obj.unit))
    if isinstance(obj, fits.HDUList):
        return ("hdulist", *[_snapshot(hdu) for hdu in obj])
    if isinstance(obj, (fits.PrimaryHDU, fits.ImageHDU)):
        return ("hdu", None if obj.data is None else obj.data.copy(), obj.header.tostring())
    if isinstance(obj, tuple):
        extra = obj[1].to_header_string() if isinstance(obj[1], WCS) else obj[1].tostring()
        return ("tuple", obj[0].copy(), extra)
    if np.ma.isMaskedArray(obj):
        return ("masked", obj.data.copy(), obj.mask.copy())
    if isinstance(obj, np.ndarray):
        return ("array", obj.copy())
    return ("file", pathlib.Path(obj).read_bytes())


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        assert_array_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("form", FORMS)
def test_input_never_mutated(form, tmp_path, tiny_model):
    data, *_ = _make(form, tmp_path)
    if form in ("array", "array_header", "primaryhdu"):  # a NaN and big-endian bytes too
        array = data[0] if isinstance(data, tuple) else getattr(data, "data", data)
        array[5, 5] = np.nan
    before = _snapshot(data)
    out = _denoise(data, tiny_model)
    _assert_same(_snapshot(data), before)
    # the output owns all it holds: changing it leaves the input alone
    out.data[:] = -1.0
    out.header["OBJECT"] = "changed"
    if out.wcs is not None:
        out.wcs.wcs.crval = [0.0, 0.0]
    if out.mask is not None:
        out.mask[:] = True
    _assert_same(_snapshot(data), before)


# ------------------------------------------------------------ bad pixels
@pytest.mark.parametrize("form", ["array", "ccddata", "masked"])
def test_nonfinite_restored_and_mask_kept(form, tiny_model):
    data = _data()
    nonfinite = {(0, 0): np.nan, (7, 9): np.nan, (20, 30): np.inf, (39, 55): -np.inf}
    for index, value in nonfinite.items():
        data[index] = value
    mask = np.zeros(SHAPE, bool)
    mask[10:12, 40:44] = True
    if form == "ccddata":
        data = CCDData(data, unit="adu", mask=mask)
    elif form == "masked":
        data = np.ma.masked_array(data, mask)
    out = _denoise(data, tiny_model)
    restored = np.asarray(out.data)
    for index, value in nonfinite.items():
        assert restored[index] == value or (np.isnan(value) and np.isnan(restored[index]))
    expected_nonfinite = np.zeros(SHAPE, bool)
    expected_nonfinite[tuple(np.array(list(nonfinite)).T)] = True
    assert_array_equal(~np.isfinite(restored), expected_nonfinite)
    if form == "array":
        assert out.mask is None
    else:
        assert_array_equal(out.mask, mask)
        assert np.isfinite(restored[mask]).all()  # masked pixels get the network's value


def test_variance_uncertainty_is_converted():
    data = CCDData(_data(), unit="adu", uncertainty=VarianceUncertainty(np.full(SHAPE, 16.0)))
    assert_allclose(parse_image(data).uncertainty, 4.0)


@pytest.mark.parametrize("sigma", [0.0, -2.0, np.nan, np.inf, True, "abc"])
def test_a_meaningless_uncertainty_number_is_refused(tiny_model, sigma):
    with pytest.raises(ValueError, match="uncertainty must be a finite number > 0"):
        _denoise(CCDData(_data(), unit="adu"), tiny_model, uncertainty=sigma)


def test_an_uncertainty_array_must_be_positive_on_good_pixels(tiny_model):
    data = CCDData(_data(), unit="adu")
    sigma = np.full(SHAPE, 2.0)
    sigma[3, 4] = -2.0
    with pytest.raises(ValueError, match="1 negative value"):
        _denoise(data, tiny_model, uncertainty=sigma)
    with pytest.raises(ValueError, match="negative"):
        _denoise(CCDData(_data(), unit="adu", uncertainty=VarianceUncertainty(sigma)), tiny_model)
    zero = np.full(SHAPE, 2.0)
    zero[5, 6] = 0.0
    with pytest.warns(AstropyUserWarning, match="zero or not finite on 1 good pixel") as caught:
        out = _denoise(CCDData(_data(), unit="adu", uncertainty=StdDevUncertainty(zero)),
                       tiny_model)
    assert np.isfinite(out.data).all()
    assert caught[0].filename == __file__  # the warning points at the caller's line
    data.mask = np.zeros(SHAPE, bool)
    data.mask[3, 4] = True  # the pixel's sigma means nothing once it is masked
    out = _denoise(data, tiny_model, uncertainty=sigma)
    assert np.isfinite(out.data).all()


# ------------------------------------------------------ provenance and WCS
def _sip_alternate_header():
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header["CRVAL1"], header["CRVAL2"] = 150.1, 2.2
    header["CRPIX1"], header["CRPIX2"] = 20.3, 15.8
    header["CD1_1"], header["CD1_2"], header["CD2_1"], header["CD2_2"] = -2e-4, 1e-5, 1.2e-5, 2e-4
    header["A_ORDER"] = header["B_ORDER"] = 2
    header["A_2_0"], header["A_0_2"], header["A_1_1"] = 1e-5, -2e-6, 3e-6
    header["B_2_0"], header["B_0_2"], header["B_1_1"] = -1e-6, 4e-6, 2e-6
    # an alternate, physical WCS written with PC + CDELT (IRAF style)
    header["WCSNAMEA"] = "PHYSICAL"
    header["CTYPE1A"], header["CTYPE2A"] = "LINEAR", "LINEAR"
    header["CRPIX1A"], header["CRPIX2A"] = 1.0, 1.0
    header["CRVAL1A"], header["CRVAL2A"] = 100.0, 200.0
    header["CDELT1A"], header["CDELT2A"] = 2.0, 2.0
    header["PC1_1A"], header["PC1_2A"], header["PC2_1A"], header["PC2_2A"] = 1.0, 0.1, 0.0, 1.0
    header["LTV1"], header["LTV2"], header["LTM1_1"], header["LTM2_2"] = -99.0, -199.0, 0.5, 0.5
    return header


def _pc_header():
    header = fits.Header()
    header["WCSAXES"] = 2
    header["CTYPE1"], header["CTYPE2"] = "GLON-CAR", "GLAT-CAR"
    header["CRVAL1"], header["CRVAL2"] = 18.0, 0.0
    header["CRPIX1"], header["CRPIX2"] = 28.0, 20.0
    header["CDELT1"], header["CDELT2"] = -3.3e-4, 3.3e-4
    header["PC1_1"], header["PC1_2"], header["PC2_1"], header["PC2_2"] = 0.99, -0.1, 0.1, 0.99
    header["CROTA2"] = 5.7  # a stale rotation the PC matrix supersedes
    return header


def _dss_header():
    """A DSS plate solution (what the POSS scans carry): wcslib turns it into TAN."""
    header = fits.Header()
    header["PLATEID"] = "07HH"  # wcslib names the WCS after it
    dss = dict(PLTRAH=8, PLTRAM=55, PLTRAS=55.05, PLTDECSN="+", PLTDECD=11, PLTDECM=26,
               PLTDECS=58.3, PLTSCALE=67.2, XPIXELSZ=25.284, YPIXELSZ=25.284, PPO1=0.0,
               PPO2=0.0, PPO3=174974.7, PPO4=0.0, PPO5=0.0, PPO6=174974.7, AMDX1=67.246,
               AMDX2=0.7104, AMDX3=-66.94, AMDY1=67.262, AMDY2=-0.7114, AMDY3=-136.68,
               CNPIX1=8734, CNPIX2=7218)
    header.update(dss)
    return header


STALE = re.compile(r"^((CD|PC|PV)\d_\d|CROTA\d|(CRPIX|CRVAL|CDELT|CTYPE|CUNIT)\d)[A-Z]$|"
                   r"^(WCSNAME[A-Z]|LTV\d|LTM\d_\d|PLT.*|PPO\d|AMD[XY]\d+|CNPIX\d|[XY]PIXELSZ)$")


@pytest.mark.parametrize("make_header", [_sip_alternate_header, _pc_header, _dss_header])
def test_provenance_and_no_stale_wcs(make_header, tmp_path, tiny_model):
    header = make_header()
    header["OBJECT"], header["BUNIT"] = "field", "MJy/sr"
    header.add_history("an earlier step")
    wcs_in = WCS(header, naxis=2, fix=False)
    out = _denoise((_data(), header), tiny_model)
    meta = out.header
    assert meta["ANR_OP"] == "denoise_residual"
    assert meta["ANR_MOD"] == "tiny"
    assert meta["ANR_VER"] == __version__
    assert meta["ANR_SHA"] == tiny_model[1]["sha256"][:16]
    history = " ".join(str(h) for h in meta["HISTORY"])
    assert "an earlier step" in history and "denoise_residual" in history and "tiny" in history
    assert meta["OBJECT"] == "field"
    # no WCS keyword is left in meta: CCDData writes the one WCS it holds
    assert not [k for k in meta if re.match(r"^(CD|PC|PV)\d_\d|^(CRPIX|CRVAL|CDELT|CTYPE)", k)]
    assert not [k for k in meta if STALE.match(k) or k.startswith(("A_", "B_"))]
    path = tmp_path / "out.fits"
    out.write(path)
    written = fits.getheader(path)
    assert not [k for k in written if STALE.match(k)]
    assert [w.wcs.alt for w in find_all_wcs(written)] == [" "]
    assert written["BUNIT"] == "MJy / sr" and written["ANR_OP"] == "denoise_residual"
    _same_wcs(WCS(written), wcs_in)
    back = CCDData.read(path)
    assert back.unit == u.MJy / u.sr
    _same_wcs(back.wcs, wcs_in)


def test_output_header_drops_what_only_described_the_input_file(tiny_model, tmp_path):
    """Checksums, layout and value range of the input do not pass to the output."""
    path, written = tmp_path / "in.fits", tmp_path / "out.fits"
    data = np.clip(np.round(_data() * 100 + 1000), 0, 65535).astype(np.uint16)  # BZERO 32768
    hdu = fits.PrimaryHDU(data)
    hdu.header.update(BUNIT="adu", OBJECT="field", DATAMIN=float(data.min()),
                      DATAMAX=float(data.max()))
    hdu.writeto(path, checksum=True)
    before = path.read_bytes()
    assert {"CHECKSUM", "DATASUM", "BZERO"} <= set(fits.getheader(path))
    out = _denoise(str(path), tiny_model)
    for key in ("CHECKSUM", "DATASUM", "DATAMIN", "DATAMAX", "BZERO", "BSCALE", "BITPIX",
                "NAXIS", "NAXIS1", "NAXIS2", "SIMPLE", "EXTEND"):
        assert key not in out.header, key
    assert out.header["OBJECT"] == "field"
    out.write(written)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checksum copied from the input would fail here
        with fits.open(written, checksum=True) as hdul:
            assert hdul[0].header["BITPIX"] == -32 and hdul[0].data.shape == data.shape
    assert path.read_bytes() == before


@pytest.mark.parametrize("as_hdulist", [False, True])
def test_a_file_keeps_its_mask_and_uncertainty_extensions(tiny_model, tmp_path, as_hdulist):
    """A path or HDUList of a CCDData file: MASK and UNCERT are used, as by CCDData.read."""
    mask = np.zeros(SHAPE, bool)
    mask[3:6, 4:9] = True
    path = tmp_path / "ccd.fits"
    CCDData(_data(), unit="adu", wcs=_wcs(), mask=mask,
            uncertainty=StdDevUncertainty(np.full(SHAPE, 5.0))).write(path)
    with fits.open(path) as hdulist:
        out = _denoise(hdulist if as_hdulist else str(path), tiny_model)
    np.testing.assert_array_equal(out.mask, mask)
    assert out.header["HISTORY"][-1].endswith("noise sigma from the input's uncertainty")
    _same_wcs(out.wcs, _wcs())


def test_a_mask_extension_of_another_shape_is_not_used_with_a_warning(tiny_model, tmp_path):
    path = tmp_path / "mef.fits"
    fits.HDUList([fits.PrimaryHDU(_data()), fits.ImageHDU(np.zeros((3, 3), np.uint8),
                                                           name="MASK")]).writeto(path)
    with pytest.warns(AstropyUserWarning, match=r"MASK extension has shape \(3, 3\)"):
        out = _denoise(str(path), tiny_model)
    assert out.mask is None or not out.mask.any()


@pytest.mark.parametrize("primary_data, inherit, inherited", [
    (False, None, True),  # an empty primary: as CCDData.read
    (True, True, True),  # INHERIT = T
    (True, None, False),  # a primary image of its own and no INHERIT: nothing inherited
])
def test_an_extension_inherits_the_primary_keys(tiny_model, tmp_path, primary_data, inherit,
                                                 inherited):
    primary = fits.PrimaryHDU(_data(1)[:8, :8] if primary_data else None)
    primary.header.update(TELESCOP="Blanco", EXPTIME=90.0, OBJECT="primary", CRVAL1=1.0,
                          CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CDELT1=-1.0, CDELT2=1.0)
    header = _wcs().to_header()
    header.update(OBJECT="ccd 1", BUNIT="adu")
    if inherit is not None:
        header["INHERIT"] = inherit
    path = tmp_path / "mef.fits"
    fits.HDUList([primary, fits.ImageHDU(_data(), header, name="SCI")]).writeto(path)
    data, header = read_image(path, 1)[:2]  # the command line's --hdu 1
    outputs = [_denoise(NDData(data, meta=header), tiny_model)]
    if not primary_data:  # the first image HDU: what a path or HDUList input reads
        with fits.open(path) as hdulist:
            outputs += [_denoise(source, tiny_model) for source in (str(path), hdulist)]
    for out in outputs:
        assert out.header["OBJECT"] == "ccd 1"  # the extension's own keys win
        assert ("TELESCOP" in out.header) == inherited
        assert out.header.get("EXPTIME") == (90.0 if inherited else None)
        _same_wcs(out.wcs, _wcs())  # the primary's WCS keys are not inherited
        assert "INHERIT" not in out.header


def test_a_dict_meta_keeps_long_keys_and_comments(tiny_model):
    """As CCDData.write keeps them: HIERARCH cards, (value, comment) tuples; the rest warned."""
    meta = {"exposure_time": 30.0, "FILTER": ("r", "filter name"), "OBSERVER": "me",
            "ARR": np.arange(3)}
    with pytest.warns(AstropyUserWarning, match="cannot hold are not carried.*: ARR$"):
        out = _denoise(CCDData(_data(), unit="adu", meta=meta), tiny_model)
    assert out.header["exposure_time"] == 30.0 and out.header["OBSERVER"] == "me"
    assert out.header["FILTER"] == "r" and out.header.comments["FILTER"] == "filter name"
    assert "ARR" not in out.header


def test_an_ape14_wcs_view_is_refused_before_any_work(tiny_model):
    from astropy.nddata import NDDataRef

    cube = WCS(naxis=4)  # a time series of cubes: [1] is one (planes, ny, nx) cube
    cube.wcs.ctype = ["RA---TAN", "DEC--TAN", "FREQ", "TIME"]
    for planes in (2, 3):  # three planes would be taken for a colour cube
        sliced = NDDataRef(np.stack([np.stack([_data()] * planes)] * 2), wcs=cube)[1]
        assert not isinstance(sliced.wcs, WCS)
        with pytest.raises(TypeError, match="APE 14 view.*wcs.celestial"):
            _denoise(sliced, tiny_model)


def test_provenance_for_a_module(tiny_model):
    net = ResidualUNet(channels=(8, 16), blocks=1, dilations=(2,), space_to_depth=2)
    out = denoise_residual(_data(), model=net, **TILING)
    assert out.header["ANR_MOD"] == "ResidualUNet" and out.header["ANR_SHA"] == "user-module"


# ------------------------------------------------------------------- units
def test_missing_unit_is_dimensionless(tiny_model):
    assert _denoise(_data(), tiny_model).unit == u.dimensionless_unscaled
    assert _denoise((_data(), _header(unit=None)), tiny_model).unit == u.dimensionless_unscaled
    assert _denoise(NDData(_data()), tiny_model).unit == u.dimensionless_unscaled


def test_unit_argument(tiny_model):
    assert _denoise(_data(), tiny_model, unit="adu").unit == u.adu
    # an input's own unit wins over unit=
    assert _denoise((_data(), _header("Jy")), tiny_model, unit="adu").unit == u.Jy


def test_unparseable_bunit(tiny_model):
    bad = (_data(), _header(unit="furlongs per fortnight"))
    with pytest.raises(ValueError, match="cannot parse BUNIT .*pass unit="):
        _denoise(bad, tiny_model)
    assert _denoise(bad, tiny_model, unit="adu").unit == u.adu


def test_a_header_wcs_that_wcslib_rejects_is_dropped_with_a_warning(tiny_model, tmp_path):
    header = _header()
    del header["CD*"]
    header["CDELT1"], header["CDELT2"] = 0.0, 0.0  # a singular matrix
    path = tmp_path / "broken.fits"
    fits.PrimaryHDU(_data(), header=header).writeto(path)
    with pytest.warns(AstropyUserWarning, match="header's WCS is not valid") as caught:
        out = _denoise(str(path), tiny_model)
    assert caught[0].filename == __file__
    assert out.wcs is None and "CDELT1" not in out.header and out.header["OBJECT"] == "field"


def test_blank_is_dropped_from_the_float_output(tiny_model, tmp_path):
    path = tmp_path / "int.fits"
    data = (np.arange(SHAPE[0] * SHAPE[1]) % 500).reshape(SHAPE).astype(">i2")
    fits.PrimaryHDU(data, header=fits.Header({"BLANK": -32768, "BUNIT": "adu"})).writeto(path)
    out = _denoise(str(path), tiny_model)
    assert "BLANK" not in out.header and out.data.dtype.kind == "f"


@pytest.mark.parametrize("bunit, unit", [("ADU", u.adu), ("ELECTRONS/S", u.electron / u.s),
                                         ("ELECTRONS", u.electron)])
def test_bunit_spellings_ccddata_reads_are_read_the_same(tiny_model, tmp_path, bunit, unit):
    """'ADU' and HST's 'ELECTRONS/S' are no FITS units, but CCDData.read knows them."""
    path = tmp_path / "raw.fits"
    fits.PrimaryHDU(_data().astype(">f4"), header=_header(unit=bunit)).writeto(path)
    assert _denoise(str(path), tiny_model).unit == unit == CCDData.read(path).unit


@pytest.mark.parametrize("sigma", [5.0, np.float32(5.0), np.array(5.0), 5 * u.adu,
                                   5000 * u.Unit("madu")])
def test_one_uncertainty_value_of_any_kind(tiny_model, sigma):
    """A number, 0-d array or Quantity in a convertible unit is one sigma for every pixel."""
    ccd = CCDData(_data(), unit="adu")
    out = _denoise(ccd, tiny_model, uncertainty=sigma)
    assert out.header["HISTORY"][-1].endswith("the uncertainty argument (one value)")
    assert_allclose(out.data, _denoise(ccd, tiny_model, uncertainty=5.0).data)


def test_one_uncertainty_value_in_another_unit_is_refused(tiny_model):
    with pytest.raises(ValueError, match=r"not in the data's unit \(adu\)"):
        _denoise(CCDData(_data(), unit="adu"), tiny_model, uncertainty=5 * u.Jy)


def test_quantity_keeps_its_unit(tiny_model):
    data = _data() * (u.MJy / u.sr)
    out = _denoise(data, tiny_model)
    assert out.unit == u.MJy / u.sr
    assert _denoise(data, tiny_model, unit="adu").unit == u.MJy / u.sr  # its own unit wins
    assert _denoise((data, _wcs()), tiny_model).unit == u.MJy / u.sr  # in a tuple too


# ------------------------------------------------------------------ colour
def test_colour_array(tiny_model):
    rgb = np.random.default_rng(2).uniform(0, 1, (*SHAPE, 3)).astype(np.float32)
    rgb[4, 6, 1] = np.nan
    out = _denoise(rgb, tiny_model)
    assert isinstance(out, np.ndarray) and out.shape == rgb.shape and out.dtype == np.float32
    assert np.isnan(out[4, 6, 1]) and np.isfinite(np.delete(out.reshape(-1), 4 * SHAPE[1] * 3
                                                            + 6 * 3 + 1)).all()
    with pytest.raises(ValueError, match="expected a 2-D image"):
        parse_image(rgb)  # colour only where the operation allows it


def test_a_network_returning_nan_is_an_error_not_a_nan_image():
    import torch

    net = ResidualUNet(channels=(8, 16), blocks=1, dilations=(2,), space_to_depth=2)
    with torch.no_grad():
        next(net.parameters()).fill_(np.nan)
    with pytest.raises(FloatingPointError, match="non-finite value"):
        denoise_residual(_data(), model=net, **TILING)


def test_values_beyond_float32_are_refused(tiny_model):
    data = _data().astype(np.float64)
    data[2, 3] = 1e39
    with pytest.raises(ValueError, match="1 finite value"):
        _denoise(data, tiny_model)
    data[2, 3] = np.inf  # an inf is a bad pixel, as documented
    assert np.isinf(_denoise(data, tiny_model).data[2, 3])


def test_colour_mask_is_kept(tiny_model):
    rgb = np.random.default_rng(2).uniform(0, 1, (*SHAPE, 3)).astype(np.float32)
    mask = np.zeros(rgb.shape, bool)
    mask[4:8, 6:9] = True
    out = _denoise(np.ma.masked_array(rgb, mask), tiny_model)
    assert np.ma.isMaskedArray(out) and (np.ma.getmaskarray(out) == mask).all()
    assert isinstance(_denoise(rgb, tiny_model), np.ndarray)  # no mask, no masked array


LUMA = np.array([0.299, 0.587, 0.114])


def test_colour_uncertainty_is_propagated_to_the_luminance(tiny_model):
    rng = np.random.default_rng(3)
    rgb = rng.uniform(0, 1, (*SHAPE, 3)).astype(np.float32)
    sigma = rng.uniform(0.05, 0.2, (*SHAPE, 3)).astype(np.float32)
    out = _denoise(rgb, tiny_model, uncertainty=sigma)
    luminance = (rgb.astype(np.float64) @ LUMA).astype(np.float32)
    sigma_y = np.sqrt(sigma.astype(np.float64) ** 2 @ LUMA**2).astype(np.float32)
    assert_allclose(out @ LUMA, _denoise(luminance, tiny_model, uncertainty=sigma_y).data,
                    atol=2e-5)
    assert not np.allclose(out, _denoise(rgb, tiny_model), atol=1e-3)  # the noise was used
    own = _denoise(NDData(rgb, uncertainty=StdDevUncertainty(sigma)), tiny_model)
    assert_array_equal(own, out)  # the input's own uncertainty, as the argument


def test_one_colour_uncertainty_for_all_channels(tiny_model):
    rgb = np.random.default_rng(4).uniform(0, 1, (*SHAPE, 3)).astype(np.float32)
    per_channel = _denoise(rgb, tiny_model, uncertainty=np.full((*SHAPE, 3), 0.1))
    assert_allclose(_denoise(rgb, tiny_model, uncertainty=0.1), per_channel, atol=1e-5)
    assert_allclose(_denoise(rgb, tiny_model, uncertainty=np.full(SHAPE, 0.1)), per_channel,
                    atol=1e-5)
    with pytest.raises(ValueError, match=r"does not match data shape \(40, 56, 3\) or \(40, 56\)"):
        _denoise(rgb, tiny_model, uncertainty=np.ones((3, 3)))
    negative = np.full((*SHAPE, 3), 0.1)
    negative[2, 3, 1] = -0.1
    with pytest.raises(ValueError, match="1 negative value"):
        _denoise(rgb, tiny_model, uncertainty=negative)
    zero = np.full((*SHAPE, 3), 0.1)
    zero[2, 3, 2] = 0.0  # one channel: the luminance's sigma is still known
    zero[4, 5] = 0.0  # all three: it is zero
    zero[6, 7, 0] = np.nan  # one channel not finite: it is not finite
    with pytest.warns(AstropyUserWarning, match="zero or not finite on 2 good pixel"):
        _denoise(rgb, tiny_model, uncertainty=zero)


# -------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(("bad", "error", "match"), [
    (np.zeros((4, 5, 6)), ValueError, r"shape \(4, 5, 6\)"),
    (np.zeros((3, 20, 20)), ValueError, "colour image"),
    (np.zeros(10), ValueError, "2-D"),
    (np.zeros((0, 5)), ValueError, "empty"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, "numeric"),
    (np.empty((3, 3), dtype=object), TypeError, "numeric"),
    (np.zeros((3, 3), dtype=complex), TypeError, "numeric"),
    (["a", "b"], TypeError, "unsupported input type 'list'"),
    ({"data": np.zeros((3, 3))}, TypeError, "unsupported input type 'dict'"),
    (None, TypeError, "unsupported input type"),
    ((np.zeros((3, 3)), _wcs(), fits.Header()), TypeError, "got 3 items"),
    ((np.zeros((3, 3)), "RA---TAN"), TypeError, "WCS or a Header"),
    (NDData(np.zeros(SHAPE), mask=np.zeros((3, 3), bool)), ValueError, "mask shape"),
    (fits.HDUList([fits.PrimaryHDU()]), ValueError, "no image HDU"),
    (np.full(SHAPE, np.nan), ValueError, "no finite, unmasked pixel"),
    (np.ma.masked_array(np.ones(SHAPE), True), ValueError, "no finite, unmasked pixel"),
    ("no/such/file.fits", FileNotFoundError, "no such FITS file"),
])
def test_bad_inputs(bad, error, match, tiny_model):
    with pytest.raises(error, match=match):
        _denoise(bad, tiny_model)


def test_bad_uncertainty_shape(tiny_model):
    with pytest.raises(ValueError, match="uncertainty shape"):
        _denoise(_data(), tiny_model, uncertainty=np.ones((3, 3)))


def test_history_says_where_the_noise_came_from(tiny_model, tmp_path):
    import dask.array as da

    data = np.random.default_rng(4).normal(100, 5, SHAPE).astype(np.float32)
    own = CCDData(data, unit="adu", uncertainty=StdDevUncertainty(np.full(SHAPE, 5.0)))
    cases = ((CCDData(data, unit="adu"), {}, "an estimate from the image"),
             (CCDData(data, unit="adu"), {"uncertainty": 5.0}, "the uncertainty argument (one"),
             (CCDData(data, unit="adu"), {"uncertainty": np.full(SHAPE, 5.0)},
              "the uncertainty argument"),
             (own, {}, "the input's uncertainty"),
             (da.from_array(data, chunks=(20, 28)), {}, "an estimate from the image"))
    for image, kwargs, source in cases:
        out = _denoise(image, tiny_model, **kwargs)
        history = "".join(out.header["HISTORY"])
        assert f"denoise_residual: noise sigma from {source}" in history


def test_flags_are_not_dropped_silently(tiny_model):
    from astropy.utils.exceptions import AstropyUserWarning

    data = np.random.default_rng(5).normal(100, 5, SHAPE).astype(np.float32)
    flagged = CCDData(data, unit="adu", flags=np.zeros(SHAPE, np.int16))
    with pytest.warns(AstropyUserWarning, match="flags are not carried") as caught:
        out = _denoise(flagged, tiny_model)
    assert caught[0].filename == __file__ and out.flags is None


# ------------------------------------------------------------ colour cubes
def _colour_cube_file(tmp_path, planes=3):
    """A (planes, ny, nx) FITS cube with a sky WCS and a BAND axis, as colorize writes one."""
    from astro_nn_restore.wcs_utils import add_band_axis

    wcs = WCS(_header())
    cube = np.random.default_rng(5).uniform(0.1, 0.9, (planes, *SHAPE)).astype(np.float32)
    header = add_band_axis(wcs, bands="RGBA"[:planes]).to_header()
    header["OBJECT"] = "colour field"
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube, header).writeto(path)
    return path, wcs


def test_a_colour_cube_comes_back_as_a_cube_with_its_sky_wcs(tiny_model, tmp_path):
    path, wcs = _colour_cube_file(tmp_path)
    before = path.read_bytes()
    out = _denoise(str(path), tiny_model)
    assert isinstance(out, CCDData) and out.shape == (3, *SHAPE)
    assert out.header["ANR_OP"] == "denoise_residual" and out.header["OBJECT"] == "colour field"
    assert [out.header[f"BAND{i}"] for i in (1, 2, 3)] == ["R", "G", "B"]
    _same_wcs(out.wcs.celestial, wcs)
    assert path.read_bytes() == before
    written = tmp_path / "out.fits"
    out.write(written)
    back = CCDData.read(written, unit=u.dimensionless_unscaled)
    assert back.shape == (3, *SHAPE) and back.wcs.wcs.ctype[2] == "BAND"
    # the same planes as the (ny, nx, 3) array path
    planes_last = np.moveaxis(fits.getdata(path), 0, -1)
    assert_allclose(np.moveaxis(out.data, 0, -1), _denoise(planes_last, tiny_model), atol=1e-6)
    assert_allclose(_denoise(CCDData.read(path, unit="adu"), tiny_model).data, out.data,
                    atol=1e-6)


def test_super_resolved_colour_cube_gets_the_rescaled_wcs(tmp_path):
    from astro_nn_restore import super_resolve
    from astro_nn_restore.models.superres import SRResNet

    path, wcs = _colour_cube_file(tmp_path)
    out = super_resolve(str(path), model=SRResNet(channels=4, blocks=1), tile_size=32,
                        overlap=8)
    assert out.shape == (3, 2 * SHAPE[0], 2 * SHAPE[1]) and out.header["ANR_FACT"] == 2
    assert out.header["ANR_FLUX"] == "surface"  # dimensionless colour: values kept
    big = out.wcs.celestial
    assert_allclose(big.pixel_to_world_values(1.5, 3.5), wcs.pixel_to_world_values(0.5, 1.5),
                    atol=1e-9)


def test_rgba_cubes_and_planes_first_arrays_are_refused(tiny_model, tmp_path):
    path, _ = _colour_cube_file(tmp_path, planes=4)
    with pytest.raises(ValueError, match="RGBA .* drop the alpha plane"):
        _denoise(str(path), tiny_model)
    with pytest.raises(ValueError, match=r"\(ny, nx, 3\) colour image"):
        _denoise(fits.getdata(path)[:3], tiny_model)  # a bare array: planes go last


def test_a_ccddata_colour_image_always_comes_back_as_a_cube(tiny_model):
    cube = np.random.default_rng(6).uniform(0.1, 0.9, (3, *SHAPE)).astype(np.float32)
    out = _denoise(CCDData(cube, unit="adu"), tiny_model)  # no header, no WCS
    assert isinstance(out, CCDData) and out.shape == (3, *SHAPE) and out.unit == u.adu
    planes_last = _denoise(CCDData(np.moveaxis(cube, 0, -1), unit="adu"), tiny_model)
    assert isinstance(planes_last, CCDData) and planes_last.unit == u.adu
    assert_allclose(planes_last.data, out.data, atol=1e-6)
    assert isinstance(_denoise(np.moveaxis(cube, 0, -1), tiny_model), np.ndarray)  # bare


def test_cube_uncertainty_in_the_cube_layout_and_as_one_map(tiny_model, tmp_path):
    path, _ = _colour_cube_file(tmp_path)
    cube = fits.getdata(path)
    sigma = np.random.default_rng(7).uniform(0.05, 0.2, cube.shape).astype(np.float32)
    given = _denoise(str(path), tiny_model, uncertainty=sigma)  # (3, ny, nx), as the data
    assert_allclose(given.data, _denoise(str(path), tiny_model,
                                         uncertainty=np.moveaxis(sigma, 0, -1)).data, atol=1e-6)
    one_map = sigma[0]
    header = fits.getheader(path)
    own = parse_image(NDData(cube, meta=header, uncertainty=StdDevUncertainty(one_map)),
                      allow_color=True)
    assert_allclose(own.uncertainty, one_map)  # one map for all planes, not transposed


def test_a_planes_last_image_with_a_3d_wcs_is_refused_before_any_work(tiny_model, tmp_path):
    path, _ = _colour_cube_file(tmp_path)
    cube = CCDData.read(path, unit="adu")
    wrong = CCDData(np.moveaxis(cube.data, 0, -1), unit="adu", wcs=cube.wcs)
    with pytest.raises(ValueError, match="needs a 2-D WCS, got one with 3 pixel axes"):
        _denoise(wrong, tiny_model)


def test_one_plane_with_the_cube_header_and_an_extension_header(tmp_path):
    from astro_nn_restore import super_resolve
    from astro_nn_restore.models.superres import SRResNet

    path, wcs = _colour_cube_file(tmp_path)
    with fits.open(path) as hdul:
        plane, header = hdul[0].data[0].copy(), hdul[0].header.copy()
    big = super_resolve(CCDData(plane, unit="adu", meta=header),
                        model=SRResNet(channels=4, blocks=1), tile_size=32, overlap=8)
    assert big.shape == (2 * SHAPE[0], 2 * SHAPE[1]) and big.wcs.pixel_shape == (112, 80)
    extension = fits.ImageHDU(plane, header=WCS(_header()).to_header(), name="SCI")
    extension.header["INHERIT"] = True
    out = super_resolve(extension, model=SRResNet(channels=4, blocks=1), tile_size=32,
                        overlap=8, unit="adu")
    assert "INHERIT" not in out.header and "XTENSION" not in out.header
    assert out.header["EXTNAME"] == "SCI"

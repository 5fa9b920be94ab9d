"""Tests for astro_nn_restore.wcs_utils (WCS when resampling by a factor f)."""

import copy

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, DistortionLookupTable

from astro_nn_restore.wcs_utils import (
    add_band_axis,
    band_cube_wcs,
    pixel_correspondence,
    rescale_wcs,
    strip_wcs_keywords,
)

NPIX = 500
FACTORS = [2, 4, 0.5]
SPITZER = "glimpse_irac_psf/spitzer_example_image.fits"  # in the shared data folder


# --------------------------------------------------------------------------
# headers built by hand
# --------------------------------------------------------------------------
def _base(ctype1, ctype2, crval=(150.1, 2.2), crpix=(230.3, 270.8), naxis=NPIX):
    header = fits.Header()
    header["NAXIS"] = 2
    header["NAXIS1"] = naxis
    header["NAXIS2"] = naxis
    header["CTYPE1"], header["CTYPE2"] = ctype1, ctype2
    header["CRVAL1"], header["CRVAL2"] = crval
    header["CRPIX1"], header["CRPIX2"] = crpix
    return header


def _cd(header, cd):
    for (i, j), value in np.ndenumerate(cd):
        header[f"CD{i + 1}_{j + 1}"] = value
    return header


def _pc(header, cdelt, pc):
    header["CDELT1"], header["CDELT2"] = cdelt
    for (i, j), value in np.ndenumerate(pc):
        header[f"PC{i + 1}_{j + 1}"] = value
    return header


def _rotation(deg):
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def tan_cd():
    """TAN with a rotated and skewed CD matrix."""
    cd = np.array([[-2.8e-4, 4.1e-5], [3.3e-5, 2.7e-4]])
    return _cd(_base("RA---TAN", "DEC--TAN"), cd)


def tan_pc():
    """TAN with PC (rotated 30 deg) + CDELT."""
    return _pc(_base("RA---TAN", "DEC--TAN", crval=(10.0, -45.0)), (-2e-4, 2.5e-4), _rotation(30))


def tan_crota():
    """Old-style CDELT + CROTA2."""
    header = _base("RA---TAN", "DEC--TAN", crval=(200.0, 60.0))
    header["CDELT1"], header["CDELT2"], header["CROTA2"] = -3e-4, 3e-4, 12.5
    return header


SIP_A = {
    "A_2_0": 2.1e-6,
    "A_1_1": -1.4e-6,
    "A_0_2": 3.0e-6,
    "A_3_0": 1.2e-9,
    "A_2_1": -2.0e-9,
    "A_1_2": 7e-10,
    "A_0_3": 5e-10,
}
SIP_B = {
    "B_2_0": -1.1e-6,
    "B_1_1": 2.4e-6,
    "B_0_2": 1.0e-6,
    "B_3_0": 4e-10,
    "B_2_1": 1.5e-9,
    "B_1_2": -1.2e-9,
    "B_0_3": 9e-10,
}


def tan_sip():
    """TAN-SIP of order 3 with forward (A, B) and inverse (AP, BP) terms."""
    header = _cd(_base("RA---TAN-SIP", "DEC--TAN-SIP"), [[-2.8e-4, 1e-5], [1.2e-5, 2.8e-4]])
    header["A_ORDER"] = header["B_ORDER"] = header["AP_ORDER"] = header["BP_ORDER"] = 3
    header.update(SIP_A)
    header.update(SIP_B)
    # rough inverse (AP, BP include linear terms, as written by many solvers)
    header.update({"AP" + k[1:]: -v for k, v in SIP_A.items()})
    header.update({"BP" + k[1:]: -v for k, v in SIP_B.items()})
    header["AP_1_0"], header["BP_0_1"] = 1e-7, -2e-7
    return header


def tpv():
    """TPV (SCAMP/DECam style) with CD and PVi_m polynomial terms."""
    header = _cd(_base("RA---TPV", "DEC--TPV"), [[-2.7e-4, 1e-6], [-1e-6, 2.7e-4]])
    pv = {
        "PV1_0": 1e-5,
        "PV1_1": 1.0,
        "PV1_2": 1e-4,
        "PV1_4": 1e-2,
        "PV1_5": -2e-2,
        "PV1_7": 5e-1,
        "PV2_0": -2e-5,
        "PV2_1": 1.0,
        "PV2_2": 3e-4,
        "PV2_4": 1.5e-2,
        "PV2_6": -1e-2,
        "PV2_10": 4e-1,
    }
    header.update(pv)
    return header


def tpv_pc():
    """TPV given with PC + CDELT (wcslib applies TPV between PC and CDELT)."""
    header = _pc(_base("RA---TPV", "DEC--TPV"), (-2.7e-4, 2.7e-4), _rotation(-20))
    header.update({"PV1_1": 1.0, "PV1_4": 1e-6, "PV1_7": 2e-9, "PV2_1": 1.0, "PV2_6": -1e-6})
    return header


def car_galactic():
    """CAR in galactic coordinates, like a Spitzer GLIMPSE mosaic."""
    header = _base("GLON-CAR", "GLAT-CAR", crval=(18.0, 0.0), crpix=(1161.5, -388.5))
    return _cd(header, [[-3.3333333e-4, 0.0], [0.0, 3.3333333e-4]])


def helioprojective():
    """Helioprojective HPLN-TAN/HPLT-TAN in arcsec, rotated."""
    header = _pc(_base("HPLN-TAN", "HPLT-TAN", crval=(120.0, -340.0)), (0.6, 0.6), _rotation(7))
    header["CUNIT1"] = header["CUNIT2"] = "arcsec"
    return header


def linear():
    """Non-celestial linear axes (e.g. a detector-plane mm grid)."""
    header = _pc(_base("LINEAR", "LINEAR", crval=(12.0, -3.0)), (0.015, 0.02), _rotation(3))
    header["CUNIT1"] = header["CUNIT2"] = "mm"
    return header


HEADERS = {
    f.__name__: f
    for f in [
        tan_cd,
        tan_pc,
        tan_crota,
        tan_sip,
        tpv,
        tpv_pc,
        car_galactic,
        helioprojective,
        linear,
    ]
}


@pytest.fixture(params=sorted(HEADERS))
def header(request):
    return HEADERS[request.param]()


@pytest.fixture
def wcs(header):
    return WCS(header)


# --------------------------------------------------------------------------
# invariant helpers
# --------------------------------------------------------------------------
def _grid(nx=NPIX, ny=NPIX):
    """Pixel grid over the image, including pixel-edge and pixel-centre corners."""
    x = np.unique(np.r_[-0.5, 0.0, np.linspace(0, nx - 1, 9), nx - 1.0, nx - 0.5])
    y = np.unique(np.r_[-0.5, 0.0, np.linspace(0, ny - 1, 7), ny - 1.0, ny - 0.5])
    return np.meshgrid(x, y)


def _to_pixel(wcs, world):
    if wcs.sip is not None:  # the SIP inverse is iterative: ask for a tight tolerance
        return wcs.all_world2pix(*world, 0, tolerance=1e-10, maxiter=100)
    return wcs.world_to_pixel_values(*world)


def assert_invariant(old, new, factor, nx=NPIX, ny=NPIX):
    """new at f*(x+0.5)-0.5 is the same world point as old at x, to 1e-6 pixel."""
    x, y = _grid(nx, ny)
    world = new.pixel_to_world_values(
        pixel_correspondence(x, factor), pixel_correspondence(y, factor)
    )
    back_x, back_y = _to_pixel(old, world)
    np.testing.assert_allclose(back_x, x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(back_y, y, rtol=0, atol=1e-6)


def _state(wcs):
    """Everything of a WCS that rescale_wcs could touch."""
    sip = wcs.sip
    return (
        str(wcs.to_header(relax=True)),
        wcs.wcs.crpix.copy(),
        wcs.pixel_shape,
        None
        if sip is None
        else [copy.deepcopy(getattr(sip, k)) for k in "a b ap bp crpix".split()],
    )


# --------------------------------------------------------------------------
# pixel_correspondence
# --------------------------------------------------------------------------
def test_pixel_correspondence_values():
    np.testing.assert_allclose(pixel_correspondence([-0.5, 0, 1, 9.5], 2), [-0.5, 0.5, 2.5, 19.5])
    np.testing.assert_allclose(pixel_correspondence([0.5, 1.5, 2.5], 0.5), [0, 0.5, 1])


@pytest.mark.parametrize("factor", FACTORS + [3, 1.5])
def test_pixel_correspondence_inverse(factor):
    x = np.linspace(-0.5, 99.5, 17)
    np.testing.assert_allclose(pixel_correspondence(pixel_correspondence(x, factor), 1 / factor), x)


# --------------------------------------------------------------------------
# rescale_wcs
# --------------------------------------------------------------------------
@pytest.mark.parametrize("factor", FACTORS)
def test_invariant(wcs, factor):
    assert_invariant(wcs, rescale_wcs(wcs, factor), factor)


@pytest.mark.parametrize("factor", [1, 3, 1.5, np.float32(2), np.int64(4)])
def test_invariant_other_factors(factor):
    old = WCS(tan_sip())
    assert_invariant(old, rescale_wcs(old, factor), float(factor))


@pytest.mark.parametrize("factor", FACTORS)
def test_keywords_follow_the_rules(header, factor):
    wcs = WCS(header)
    new = rescale_wcs(wcs, factor)
    np.testing.assert_allclose(new.wcs.crpix, factor * (wcs.wcs.crpix - 0.5) + 0.5)
    if wcs.wcs.has_cd():
        np.testing.assert_allclose(new.wcs.cd, wcs.wcs.cd / factor)
    elif header["CTYPE1"].endswith("-TPV"):  # wcslib quirk, see rescale_wcs docstring
        np.testing.assert_allclose(new.wcs.get_pc(), wcs.wcs.get_pc() / factor)
        np.testing.assert_allclose(new.wcs.cdelt, wcs.wcs.cdelt)
    else:
        np.testing.assert_allclose(new.wcs.cdelt, wcs.wcs.cdelt / factor)
        np.testing.assert_allclose(new.wcs.get_pc(), wcs.wcs.get_pc())
    assert new.pixel_shape == (int(NPIX * factor),) * 2
    assert new.wcs.get_pv() == wcs.wcs.get_pv()


@pytest.mark.parametrize("factor", FACTORS)
def test_sip_coefficients(factor):
    old = WCS(tan_sip())
    new = rescale_wcs(old, factor)
    for name in ("a", "b", "ap", "bp"):
        p, q = np.indices(getattr(old.sip, name).shape)
        expected = getattr(old.sip, name) * factor ** (1.0 - p - q)
        np.testing.assert_allclose(getattr(new.sip, name), expected, rtol=1e-15)
    np.testing.assert_allclose(new.sip.crpix, new.wcs.crpix)
    # the inverse polynomial g (foc2pix(U) = U + g(U) + const) obeys g'(f U) = f g(U)
    x, y = _grid()
    focal = np.column_stack([x.ravel(), y.ravel()]) - old.sip.crpix

    def g(wcs, offsets):  # origin=1: astropy reads the offsets as they are
        return wcs.sip_foc2pix(offsets, 1) - offsets - wcs.sip_foc2pix(0 * offsets, 1)

    np.testing.assert_allclose(g(new, factor * focal), factor * g(old, focal), rtol=0, atol=1e-9)
    assert np.abs(g(old, focal)).max() > 0.1  # the inverse terms are not negligible


def test_tpv_distortion_matters():
    """The TPV fixture is really distorted (so the invariant test means something)."""
    plain = tpv()
    for key in [k for k in plain if k.startswith("PV")]:
        del plain[key]
    plain["CTYPE1"], plain["CTYPE2"] = "RA---TAN", "DEC--TAN"
    x, y = _grid()
    world = WCS(tpv()).pixel_to_world_values(x, y)
    px, py = WCS(plain).world_to_pixel_values(*world)
    assert np.hypot(px - x, py - y).max() > 1


@pytest.mark.parametrize("factor", FACTORS)
def test_fits_round_trip(header, tmp_path, factor):
    old = WCS(header)
    new = rescale_wcs(old, factor)
    out = new.to_header(relax=True)
    if old.sip is not None:
        assert out["CTYPE1"] == "RA---TAN-SIP" and out["A_ORDER"] == 3
    shape = new.pixel_shape[::-1]
    fits.PrimaryHDU(np.zeros(shape, np.float32), header=out).writeto(tmp_path / "im.fits")
    with fits.open(tmp_path / "im.fits") as hdul:
        back = WCS(hdul[0].header)
    assert back.pixel_shape == new.pixel_shape
    assert_invariant(old, back, factor)


def test_input_not_mutated(wcs):
    before = _state(wcs)
    rescale_wcs(wcs, 2)
    rescale_wcs(wcs, 0.5)
    after = _state(wcs)
    assert before[0] == after[0] and before[2] == after[2]
    np.testing.assert_array_equal(before[1], after[1])
    if before[3] is not None:
        for b, a in zip(before[3], after[3], strict=True):
            np.testing.assert_array_equal(b, a)


def test_returns_new_object(wcs):
    new = rescale_wcs(wcs, 1)
    assert new is not wcs and new.wcs is not wcs.wcs
    assert wcs.sip is None or new.sip is not wcs.sip


@pytest.mark.parametrize("factor", [0, -2, np.nan, np.inf, "two", None, True, [2, 2], (2, 3)])
def test_bad_factor(factor):
    with pytest.raises(ValueError, match="factor"):
        rescale_wcs(WCS(tan_cd()), factor)
    with pytest.raises(ValueError, match="factor"):
        pixel_correspondence(1.0, factor)


@pytest.mark.parametrize("name", ["cpdis1", "det2im2"])
def test_lookup_table_distortion_not_implemented(name):
    wcs = WCS(tan_cd())
    table = DistortionLookupTable(np.zeros((5, 5), np.float32), (1.0, 1.0), (1.0, 1.0), (50, 50))
    setattr(wcs, name, table)
    with pytest.raises(NotImplementedError, match=name):
        rescale_wcs(wcs, 2)


def test_no_pixel_shape():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cdelt = [-1e-4, 1e-4]
    new = rescale_wcs(wcs, 2)
    assert new.pixel_shape is None
    assert_invariant(wcs, new, 2)


def test_odd_shape_binning():
    header = tan_cd()
    header["NAXIS1"], header["NAXIS2"] = 501, 333
    assert rescale_wcs(WCS(header), 0.5).pixel_shape == (250, 166)
    assert rescale_wcs(WCS(header), 3).pixel_shape == (1503, 999)


@pytest.mark.parametrize("factor", FACTORS)
def test_spitzer_glimpse_header(factor, shared_data):
    header = fits.getheader(shared_data / SPITZER)
    old = WCS(header)
    nx, ny = old.pixel_shape
    new = rescale_wcs(old, factor)
    assert new.pixel_shape == (int(nx * factor), int(ny * factor))
    assert_invariant(old, new, factor, nx=nx, ny=ny)


# --------------------------------------------------------------------------
# strip_wcs_keywords
# --------------------------------------------------------------------------
DSS_KEYS = {
    "PLTRAH": 0,
    "PLTRAM": 42,
    "PLTRAS": 44.3,
    "PLTDECSN": "+",
    "PLTDECD": 41,
    "PLTDECM": 16,
    "PLTDECS": 9.0,
    "PLTSCALE": 67.2,
    "XPIXELSZ": 25.28,
    "YPIXELSZ": 25.28,
    "CNPIX1": 3000,
    "CNPIX2": 4000,
    **{f"PPO{i}": 0.0 for i in range(1, 7)},
    **{f"AMDX{i}": 1e-3 * i for i in range(1, 21)},
    **{f"AMDY{i}": -1e-3 * i for i in range(1, 21)},
}
KEEP = {
    "OBJECT": "M31",
    "BUNIT": "MJy/sr",
    "DATE-OBS": "2020-01-02T03:04:05",
    "MJD-OBS": 58850.1278,
    "EPOCH": 2020.0,
    "EXPTIME": 30.0,
    "TELESCOP": "DSS",
}


@pytest.fixture
def messy_header():
    """SIP + CD primary WCS, PC/PV alternate 'A' WCS, DSS plate, TPV-ish keys."""
    header = fits.Header()
    header.update(KEEP)
    header["HISTORY"] = "first history"
    header["HISTORY"] = "second history"
    header["COMMENT"] = "a comment"
    header.update(tan_sip())
    header["WCSAXES"] = 2
    header["CUNIT1"] = header["CUNIT2"] = "deg"
    header["RADESYS"], header["EQUINOX"] = "FK5", 2000.0
    header["LONPOLE"], header["LATPOLE"] = 180.0, 2.2
    header["A_DMAX"], header["B_DMAX"] = 1.5, 1.7
    header["CROTA2"] = 0.0
    header["PV2_1"], header["PS1_0"] = 0.0, "x"
    alt = tan_pc()
    for key in [
        "CTYPE1",
        "CTYPE2",
        "CRVAL1",
        "CRVAL2",
        "CRPIX1",
        "CRPIX2",
        "CDELT1",
        "CDELT2",
        "PC1_1",
        "PC1_2",
        "PC2_1",
        "PC2_2",
    ]:
        header[key + "A"] = alt[key]
    header["WCSNAMEA"], header["RADESYSA"], header["PV1_3A"] = "ALT", "ICRS", 0.0
    header.update(DSS_KEYS)
    return header


def test_strip_removes_wcs_keys(messy_header):
    original = messy_header.copy()
    out = strip_wcs_keywords(messy_header)
    assert str(messy_header) == str(original)  # input untouched
    assert set(out) == set(KEEP) | {"HISTORY", "COMMENT", "NAXIS", "NAXIS1", "NAXIS2"}
    for key, value in KEEP.items():
        assert out[key] == value
    assert list(out["HISTORY"]) == ["first history", "second history"]
    assert list(out["COMMENT"]) == ["a comment"]


@pytest.mark.parametrize(
    "key",
    [
        "WCSAXES",
        "CRPIX1",
        "CRVAL2",
        "CDELT2A",
        "CTYPE2",
        "CUNIT1",
        "CROTA2",
        "CD1_2",
        "PC1_2A",
        "PV2_1",
        "PS1_0",
        "LONPOLE",
        "LATPOLE",
        "RADESYS",
        "EQUINOX",
        "A_ORDER",
        "BP_ORDER",
        "A_3_0",
        "B_1_1",
        "AP_1_0",
        "BP_0_3",
        "A_DMAX",
        "B_DMAX",
        "CRPIX1A",
        "CTYPE2A",
        "WCSNAMEA",
        "RADESYSA",
        "PV1_3A",
        *DSS_KEYS,
    ],
)
def test_strip_each_key(messy_header, key):
    assert key in messy_header
    assert key not in strip_wcs_keywords(messy_header)


def test_strip_then_rewrite(header):
    """Stripped header + rescaled WCS = a consistent header with no stale keys."""
    header["OBJECT"] = "field"
    new = rescale_wcs(WCS(header), 2)
    out = strip_wcs_keywords(header)
    assert WCS(out).wcs.ctype[0] == ""
    out.update(new.to_header(relax=True))
    assert out["OBJECT"] == "field"
    assert_invariant(WCS(header), WCS(out), 2)


def test_strip_spitzer_header(shared_data):
    header = fits.getheader(shared_data / SPITZER)
    out = strip_wcs_keywords(header)
    for key in ["CTYPE1", "CRPIX2", "CD1_1", "EQUINOX"]:
        assert key in header and key not in out
    for key in ["BUNIT", "TELESCOP", "FILENAME", "NAXIS1", "PIXSCAL1"]:
        assert out[key] == header[key]
    assert list(out["COMMENT"]) == list(header["COMMENT"])


# --------------------------------------------------------------------------
# add_band_axis
# --------------------------------------------------------------------------
def test_add_band_axis_none():
    assert add_band_axis(None) is None


def test_add_band_axis(header):
    wcs = WCS(header)
    cube = add_band_axis(wcs, bands=("g", "r", "i", "z"))
    assert cube.naxis == cube.pixel_n_dim == 3
    assert list(cube.wcs.ctype)[2] == "BAND" and cube.wcs.cname[2] == "band"
    assert cube.pixel_shape == (NPIX, NPIX, 4)
    assert wcs.naxis == 2  # input untouched
    x, y = _grid()
    expected = wcs.pixel_to_world_values(x, y)
    if cube.sip is not None:  # astropy evaluates SIP only in 2-D
        got = cube.celestial.pixel_to_world_values(x, y)
    else:
        # band k (plane k of a (nband, ny, nx) array) has world value k
        for k in range(4):
            *got, band = cube.pixel_to_world_values(x, y, np.full_like(x, k))
            np.testing.assert_allclose(band, k, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=0, atol=1e-12)
    if wcs.has_celestial and not header["CTYPE1"].endswith("-TPV"):
        assert cube.celestial.wcs.compare(wcs.wcs, tolerance=1e-14)


def test_add_band_axis_full_3d_transform():
    wcs = WCS(tan_cd())
    cube = add_band_axis(wcs)
    ra, dec, band = cube.pixel_to_world_values([0, 499], [10, 20], [0, 2])
    np.testing.assert_allclose(np.array([ra, dec]), wcs.pixel_to_world_values([0, 499], [10, 20]))
    np.testing.assert_allclose(band, [0, 2])
    back = WCS(cube.to_header())
    assert back.naxis == 3 and back.wcs.ctype[2] == "BAND"


def test_add_band_axis_with_sip(tmp_path):
    """SIP survives, but astropy evaluates SIP only in 2-D (documented)."""
    wcs = WCS(tan_sip())
    cube = add_band_axis(wcs)
    assert cube.sip is not None
    x, y = _grid()
    np.testing.assert_allclose(
        np.array(cube.celestial.pixel_to_world_values(x, y)),
        np.array(wcs.pixel_to_world_values(x, y)),
        rtol=0,
        atol=1e-12,
    )
    with pytest.raises(Exception, match="2-dimensional"):
        cube.pixel_to_world_values(0, 0, 0)
    header = cube.to_header(relax=True)
    assert header["A_ORDER"] == 3
    assert header["CTYPE3"] == "BAND-SIP"  # astropy appends -SIP to every axis
    data = np.zeros((3, NPIX, NPIX), np.float32)
    fits.PrimaryHDU(data, header=header).writeto(tmp_path / "cube.fits")
    header = fits.getheader(tmp_path / "cube.fits")
    with pytest.raises(ValueError, match="2 dimensions"):
        WCS(header)
    back = WCS(header, naxis=2)
    assert_invariant(wcs, back, 1)


def test_add_band_axis_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        add_band_axis(add_band_axis(WCS(tan_cd())))
    with pytest.raises(ValueError, match="band"):
        add_band_axis(WCS(tan_cd()), bands=())


@pytest.mark.parametrize("make", [tpv, tpv_pc])
def test_add_band_axis_with_tpv(make, tmp_path):
    """TPV cubes transform and write fine, but astropy cannot copy them (documented)."""
    wcs = WCS(make())
    cube = add_band_axis(wcs)
    x, y = _grid()
    *sky, band = cube.pixel_to_world_values(x, y, np.full_like(x, 2))
    np.testing.assert_allclose(np.array(sky), np.array(wcs.pixel_to_world_values(x, y)), atol=1e-12)
    np.testing.assert_allclose(band, 2)
    header = cube.to_header(relax=True)
    assert header["CTYPE1"] == "RA---TPV" and header["CTYPE3"] == "BAND" and "PV1_1" in header
    fits.PrimaryHDU(np.zeros((3, NPIX, NPIX), np.float32), header=header).writeto(
        tmp_path / "c.fits"
    )
    back = WCS(fits.getheader(tmp_path / "c.fits"))
    *sky2, _ = back.pixel_to_world_values(x, y, np.zeros_like(x))
    np.testing.assert_allclose(np.array(sky2), np.array(sky), rtol=0, atol=1e-12)
    # astropy 8.0 limitation; if this starts passing, update the add_band_axis docstring
    with pytest.raises(RuntimeError, match="wcslib"):
        cube.deepcopy()


# band_cube_wcs


def test_band_cube_wcs_keeps_a_plain_wcs(recwarn):
    wcs = WCS(tan_cd())
    cube, note = band_cube_wcs(wcs, (NPIX, NPIX))
    assert note is None and not recwarn.list
    assert cube.pixel_shape == (NPIX, NPIX, 3)
    assert cube.celestial.wcs.compare(wcs.wcs, tolerance=1e-14)
    assert band_cube_wcs(None, (4, 4)) == (None, None)


def _read_back_cube(tmp_path, cube):
    from astropy.nddata import CCDData

    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((3, NPIX, NPIX), np.float32),
                    header=cube.to_header(relax=True)).writeto(path)
    return CCDData.read(path, unit="adu").wcs


@pytest.mark.parametrize("make", [tan_sip, tpv])
def test_band_cube_wcs_replaces_a_distortion_by_its_linear_fit(make, tmp_path):
    from astropy.utils.exceptions import AstropyUserWarning

    wcs = WCS(make())
    with pytest.warns(AstropyUserWarning, match="best linear fit"):
        cube, note = band_cube_wcs(wcs, (NPIX, NPIX))
    error = float(note.split("largest sky offset ")[1].split(" arcsec")[0])
    x, y = _grid()
    offsets = wcs.pixel_to_world(x, y).separation(cube.celestial.pixel_to_world(x, y)).arcsec
    assert 0.01 < offsets.max() <= 1.01 * error  # the distortion mattered; the note bounds it
    back = _read_back_cube(tmp_path, cube)  # add_band_axis alone: no WCS, or no file
    assert back is not None and back.naxis == 3
    np.testing.assert_allclose(np.array(back.celestial.pixel_to_world_values(x, y)),
                               np.array(cube.celestial.pixel_to_world_values(x, y)), atol=1e-12)
    copy.deepcopy(back)[1]  # sliceable, unlike the distorted cubes


def test_a_latitude_first_distorted_wcs_gives_a_band_only_cube_and_a_one_line_note():
    """No linear fit of a DEC-first SIP: the note (wcslib's multi-line error) fits a card."""
    from astropy.utils.exceptions import AstropyUserWarning

    from astro_nn_restore import colorize

    header = tan_sip()
    header["CTYPE1"], header["CTYPE2"] = "DEC--TAN-SIP", "RA---TAN-SIP"
    header["CRVAL1"], header["CRVAL2"] = header["CRVAL2"], header["CRVAL1"]
    with pytest.warns(AstropyUserWarning, match="no sky WCS written"):
        cube, note = band_cube_wcs(WCS(header), (NPIX, NPIX))
    assert not cube.has_celestial and "\n" not in note
    data = np.random.default_rng(0).normal(100.0, 5.0, (NPIX, NPIX))
    with pytest.warns(AstropyUserWarning, match="no sky WCS written"):
        out = colorize((data, header))
    assert out.shape == (3, NPIX, NPIX) and any("no sky WCS" in h for h in out.header["HISTORY"])


def test_band_cube_wcs_reads_back_a_dss_plate(shared_data, tmp_path):
    """The DSS plate solution (TPD distortion in wcslib) made colour cubes unreadable."""
    import warnings

    from astropy.utils.exceptions import AstropyUserWarning

    header = fits.getheader(shared_data / "m67_poss" / "M6707HH.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's notes on the DSS keywords
        wcs = WCS(header)
    with pytest.warns(AstropyUserWarning, match="best linear fit"):
        cube, _ = band_cube_wcs(wcs, (header["NAXIS2"], header["NAXIS1"]))
    path = tmp_path / "cube.fits"
    empty = np.zeros((3, 8, 8), np.float32)
    fits.PrimaryHDU(empty, header=cube.to_header(relax=True)).writeto(path)
    back = WCS(fits.getheader(path))
    offset = back.celestial.pixel_to_world(500, 500).separation(wcs.pixel_to_world(500, 500))
    assert offset.arcsec < 0.1


def _sip(ctype1, ctype2, a_2_0, cdelt=5e-5, crval=(150.0, 2.0)):
    header = fits.Header({"CTYPE1": ctype1, "CTYPE2": ctype2, "CRPIX1": NPIX / 2,
                          "CRPIX2": NPIX / 2, "CRVAL1": crval[0], "CRVAL2": crval[1],
                          "CD1_1": -cdelt, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": cdelt,
                          "A_ORDER": 2, "B_ORDER": 2, "A_2_0": a_2_0, "B_0_2": a_2_0})
    return WCS(header)


def test_band_cube_wcs_fits_the_input_projection(tmp_path):
    """A wide CAR-SIP field: a TAN fit would be a minute of arc off, CAR is exact enough."""
    from astropy.utils.exceptions import AstropyUserWarning

    wcs = _sip("GLON-CAR-SIP", "GLAT-CAR-SIP", 1e-7, cdelt=0.02, crval=(18.0, 0.0))
    with pytest.warns(AstropyUserWarning, match="best linear fit"):
        cube, note = band_cube_wcs(wcs, (NPIX, NPIX))
    assert cube.wcs.ctype[0] == "GLON-CAR" and _read_back_cube(tmp_path, cube) is not None
    error = float(note.split("largest sky offset ")[1].split(" arcsec")[0])
    assert error < 0.05 * 72  # well inside a pixel (72 arcsec)


def test_band_cube_wcs_writes_no_wcs_rather_than_a_bad_one():
    from astropy.utils.exceptions import AstropyUserWarning

    strong = _sip("RA---TAN-SIP", "DEC--TAN-SIP", 2e-4)  # 50 px of distortion at the edge
    with pytest.warns(AstropyUserWarning, match="no sky WCS written"):
        cube, note = band_cube_wcs(strong, (NPIX, NPIX))
    assert "more than a pixel" in note
    assert not cube.has_celestial and cube.wcs.ctype[2] == "BAND"  # still read as colour
    assert cube.to_header()["CTYPE3"] == "BAND" and "A_ORDER" not in cube.to_header(relax=True)


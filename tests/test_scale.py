"""Large images through dask/memmap chunks, and streamed FITS output (issue 10)."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, InverseVariance, StdDevUncertainty, VarianceUncertainty
from numpy.testing import assert_allclose, assert_array_equal

from astro_nn_restore import colorize, deblur, denoise_residual, make_cutouts, super_resolve
from astro_nn_restore.simulate import psf_moffat, simulate_sky

torch = pytest.importorskip("torch")
da = pytest.importorskip("dask.array")

from astro_nn_restore.chunked import (  # noqa: E402
    is_chunked_input,
    map_chunks,
    overlap_depth,
    receptive_radius,
)
from astro_nn_restore.models.colorize import ColorGenerator  # noqa: E402
from astro_nn_restore.models.deblur import DeblurUNet  # noqa: E402
from astro_nn_restore.models.denoise import ResidualUNet  # noqa: E402
from astro_nn_restore.models.superres import SRResNet  # noqa: E402

SHAPE, CHUNK = (96, 80), 48  # 2 x 2 chunks, several 32-pixel tiles in each
TILING = dict(tile_size=32, overlap=24, precision="fp32")
# single-level (stride-1) networks: translation-equivariant, so chunked == in memory
LEVEL = dict(channels=(8,), blocks=1, dilations=(2,), space_to_depth=1)


def _perturbed(net):
    """Random weights everywhere (zero-initialised residual branches included)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return net.eval()


MODELS = {
    "denoise": (denoise_residual, lambda: _perturbed(ResidualUNet(**LEVEL)), {}),
    "deblur-blind": (deblur, lambda: _perturbed(DeblurUNet(**LEVEL, features=8)), {}),
    "deblur-psf": (deblur, lambda: _perturbed(DeblurUNet(**LEVEL, features=8)),
                   dict(psf=psf_moffat(2.5, beta=3.0))),
    "superres-x2": (super_resolve, lambda: _perturbed(SRResNet(channels=4, blocks=1)),
                    dict(factor=2)),
    "superres-x4": (super_resolve, lambda: _perturbed(SRResNet(channels=4, blocks=1)),
                    dict(factor=4)),
    "colorize": (colorize, lambda: _perturbed(ColorGenerator(**LEVEL)), {}),
}


@pytest.fixture(scope="module")
def sky():
    noisy = simulate_sky(SHAPE, seed=3).noisy
    noisy.data[5, 7] = np.nan
    noisy.mask = np.zeros(SHAPE, bool)
    noisy.mask[40:43, 50:52] = True
    return noisy


@pytest.fixture(scope="module")
def sky_file(sky, tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "sky.fits"
    sky.write(path)
    return path


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    operation, make, options = MODELS[request.param]
    torch.manual_seed(0)  # the same initial weights whichever tests ran before
    return request.param, operation, dict(model=make(), **options, **TILING)


def _dask_ccd(ccd):
    return CCDData(da.from_array(ccd.data, chunks=CHUNK), unit=ccd.unit, wcs=ccd.wcs,
                   meta=ccd.meta, mask=ccd.mask, uncertainty=ccd.uncertainty)


def _assert_same(result, expected, *, rtol=1e-5):
    data, ref = np.asarray(result.data), np.asarray(expected.data)
    assert data.shape == ref.shape
    assert_array_equal(np.isnan(data), np.isnan(ref))
    scale = np.nanmax(np.abs(ref))
    assert_allclose(np.nan_to_num(data), np.nan_to_num(ref), rtol=0, atol=rtol * scale)
    assert result.unit == expected.unit
    for key in ("ANR_OP", "ANR_MOD", "ANR_FACT", "ANR_FLUX", "ANR_VMIN", "ANR_VMAX", "BAND1"):
        assert result.header.get(key) == expected.header.get(key)
    assert list(result.header["HISTORY"]) == list(expected.header["HISTORY"])
    assert result.wcs.to_header() == expected.wcs.to_header()
    if expected.mask is None:
        assert result.mask is None
    else:
        assert_array_equal(np.asarray(result.mask), expected.mask)
    if expected.uncertainty is not None:
        assert_allclose(np.asarray(result.uncertainty.array), expected.uncertainty.array,
                        rtol=1e-6)


def test_dask_input_equals_in_memory(case, sky):
    name, operation, kwargs = case
    lazy = _dask_ccd(sky)
    result = operation(lazy, **kwargs)
    assert isinstance(result.data, np.ndarray)
    _assert_same(result, operation(sky, **kwargs))
    if name.startswith("deblur"):  # flux kept exactly over the good pixels, as in memory
        good = ~(np.isnan(sky.data) | sky.mask)
        assert np.isclose(result.data[good].sum(dtype=float), sky.data[good].sum(dtype=float),
                          rtol=1e-5)


def test_memmapped_hdu_equals_in_memory(case, sky_file):
    _, operation, kwargs = case
    with fits.open(sky_file, memmap=False) as hdulist:
        expected = operation(hdulist[0], **kwargs)
    with fits.open(sky_file) as hdulist:  # astropy memory-maps by default
        assert is_chunked_input(hdulist[0])
        result = operation(hdulist[0], **kwargs)
    _assert_same(result, expected)


def test_streamed_fits_output_equals_in_memory(case, sky, tmp_path):
    _, operation, kwargs = case
    expected = operation(sky, **kwargs)
    out = tmp_path / "out.fits"
    result = operation(_dask_ccd(sky), out=out, **kwargs)
    _assert_same(result, expected)
    assert not list(tmp_path.glob(".*.part.*"))  # the temporary file was renamed
    expected.write(tmp_path / "in_memory.fits")  # the same file as CCDData.write makes
    with fits.open(out) as streamed, fits.open(tmp_path / "in_memory.fits") as reference:
        assert [h.name for h in streamed] == [h.name for h in reference]
        for a, b in zip(streamed, reference, strict=True):
            assert set(a.header) == set(b.header)
            assert_allclose(np.nan_to_num(a.data), np.nan_to_num(b.data), rtol=1e-5,
                            atol=1e-5 * np.nanmax(np.abs(b.data)))


def test_path_with_out_is_read_memory_mapped(sky_file, tmp_path):
    kwargs = dict(model=_perturbed(ResidualUNet(**LEVEL)), **TILING)
    expected = denoise_residual(sky_file, **kwargs)
    result = denoise_residual(sky_file, out=tmp_path / "denoised.fits", **kwargs)
    _assert_same(result, expected)


def test_mask_and_uncertainty_extensions_stay_memory_mapped(sky, tmp_path):
    """The chunked path must not read a big file's MASK or UNCERT into memory."""
    from astro_nn_restore._files import read_image_hdu
    from astro_nn_restore.chunked import _is_memory_mapped

    path = tmp_path / "ccd.fits"
    CCDData(sky.data, unit=sky.unit, mask=sky.mask,
            uncertainty=StdDevUncertainty(np.full(SHAPE, 5.0))).write(path)
    with fits.open(path, memmap=True) as hdulist:
        _, _, mask, uncertainty = read_image_hdu(hdulist)
        assert _is_memory_mapped(mask) and _is_memory_mapped(uncertainty.array)
        assert_array_equal(mask, sky.mask)


def test_out_refuses_to_overwrite(sky, tmp_path):
    out = tmp_path / "exists.fits"
    out.write_bytes(b"keep me")
    kwargs = dict(model=_perturbed(ResidualUNet(**LEVEL)), **TILING)
    with pytest.raises(FileExistsError, match="overwrite"):
        denoise_residual(sky, out=out, **kwargs)
    assert out.read_bytes() == b"keep me"
    denoise_residual(sky, out=out, overwrite=True, **kwargs)
    assert CCDData.read(out).shape == SHAPE


def test_input_is_not_modified(sky):
    before = sky.data.copy()
    lazy = _dask_ccd(sky)
    deblur(lazy, model=_perturbed(DeblurUNet(**LEVEL, features=8)), **TILING)
    assert_array_equal(np.asarray(lazy.data), before)


def test_chunked_result_has_its_own_wcs(case, sky):
    """The input's WCS object is never the output's (a change to one would change both)."""
    _, operation, kwargs = case
    lazy = _dask_ccd(sky)
    before = lazy.wcs.to_header()
    result = operation(lazy, **kwargs)
    assert result.wcs is not lazy.wcs
    result.wcs.wcs.crval = result.wcs.wcs.crval + 1.0
    assert lazy.wcs.to_header() == before


@pytest.mark.parametrize("kind, unit, value", [(VarianceUncertainty, "mJy2", 25.0),
                                               (InverseVariance, "1/mJy2", 1 / 25.0),
                                               (StdDevUncertainty, "mJy", 5.0)])
def test_chunked_uncertainty_units_are_converted_as_in_memory(kind, unit, value):
    """sigma = 5 mJy on a Jy image, given as variance, inverse variance or sigma."""
    data = np.random.default_rng(0).normal(0.1, 0.005, (64, 64))
    ccd = CCDData(data, unit="Jy", uncertainty=kind(np.full(data.shape, value), unit=unit))
    net = _perturbed(SRResNet(channels=4, blocks=1))
    expected = super_resolve(ccd, model=net, **TILING)
    result = super_resolve(_dask_ccd(ccd), model=net, **TILING)
    assert_allclose(np.median(result.uncertainty.array), 0.0025, rtol=1e-5)  # 5 mJy / f
    assert_allclose(result.uncertainty.array, expected.uncertainty.array, rtol=1e-6)
    assert_allclose(result.data, expected.data, rtol=0, atol=1e-5 * np.abs(expected.data).max())


def test_shipped_denoise_model_close_across_chunk_edges():
    """The shipped U-Net is strided (equivariant to shifts by 8 only): chunk edges move
    its tiles, which changes the output as much as another tile size does, no more."""
    image = simulate_sky((160, 144), seed=5).noisy
    expected = denoise_residual(image, tile_size=64, overlap=32, precision="fp32")
    result = denoise_residual(_dask_ccd(image), tile_size=64, overlap=32, precision="fp32")
    other_tiles = denoise_residual(image, tile_size=96, overlap=32, precision="fp32")
    chunk_error, tile_error = result.data - expected.data, other_tiles.data - expected.data
    assert 0 < np.std(chunk_error) <= np.std(tile_error)
    assert np.abs(chunk_error).max() <= 2 * np.abs(tile_error).max()


def test_cutouts_of_dask_and_memmap_images(sky, sky_file):
    """Cutouts are small, but detection needs the whole image: it is read into memory."""
    stack = make_cutouts(_dask_ccd(sky), max_sources=5)
    expected = make_cutouts(sky, max_sources=5)
    assert_allclose(stack.positions, expected.positions)
    assert_array_equal(stack.data, expected.data)
    with fits.open(sky_file, memmap=False) as hdulist:
        expected = make_cutouts(hdulist[0], max_sources=5)
    with fits.open(sky_file) as hdulist:
        stack = make_cutouts(hdulist[0], max_sources=5)
    assert_allclose(stack.positions, expected.positions)
    assert_array_equal(stack.data, expected.data)


def test_colour_input_is_processed_in_memory_not_in_chunks(tmp_path):
    rgb = np.random.default_rng(2).uniform(0, 1, (32, 32, 3)).astype(np.float32)
    net = _perturbed(ResidualUNet(**LEVEL))
    lazy = denoise_residual(da.from_array(rgb, chunks=16), model=net, **TILING)
    assert_array_equal(lazy, denoise_residual(rgb, model=net, **TILING))
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.moveaxis(rgb, -1, 0), fits.Header({"CTYPE3": "BAND"})).writeto(cube)
    with fits.open(cube) as hdul:  # memory-mapped
        assert denoise_residual(hdul[0], model=net, **TILING).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="colour images are processed in memory: leave out out="):
        denoise_residual(rgb, model=net, out=tmp_path / "out.fits", **TILING)


def test_receptive_radius_and_depth():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1),
                              torch.nn.Conv2d(2, 1, 3, padding=2, dilation=2))
    assert receptive_radius(net, 1) == 3
    assert receptive_radius(_perturbed(SRResNet(channels=4, blocks=1)), 1, scale=2) == 5
    assert overlap_depth(net, 1, tile_size=4) == 2  # capped at half a tile
    unet = ResidualUNet(channels=(8, 16), blocks=1, dilations=(2,), space_to_depth=2)
    assert overlap_depth(_perturbed(unet), 2, tile_size=256) % unet.size_multiple == 0


def test_map_chunks_scale_and_leading_axis():
    image = da.from_array(np.arange(96 * 80, dtype=np.float32).reshape(SHAPE), chunks=CHUNK)

    def up(block):
        return np.stack([np.repeat(np.repeat(block, 2, 0), 2, 1)] * 3)

    out = map_chunks(up, [image], depth=5, scale=2, leading=3).compute()
    assert_array_equal(out, up(image.compute()))


def test_chunked_path_refuses_negative_uncertainty_and_float32_overflow(sky, tmp_path):
    from astropy.nddata import StdDevUncertainty

    kwargs = dict(model=_perturbed(ResidualUNet(**LEVEL)), **TILING)
    sigma = np.ones(SHAPE)
    sigma[20, 30] = -1.0  # a good pixel ((5, 7) is NaN in the fixture)
    negative = _dask_ccd(sky)
    negative.uncertainty = StdDevUncertainty(da.from_array(sigma, chunks=CHUNK))
    out = tmp_path / "out.fits"
    with pytest.raises(ValueError, match="1 negative value"):
        denoise_residual(negative, out=out, **kwargs)
    with pytest.raises(ValueError, match="1 negative value"):
        denoise_residual(_dask_ccd(sky), uncertainty=da.from_array(sigma, chunks=CHUNK),
                         out=out, **kwargs)
    huge = np.asarray(sky.data, np.float64).copy()
    huge[3, 4] = 1e39
    with pytest.raises(ValueError, match="exceed the float32 range"):
        denoise_residual(CCDData(da.from_array(huge, chunks=CHUNK), unit=sky.unit), out=out,
                         **kwargs)
    assert not out.exists() and not list(tmp_path.glob(".*.part.*"))  # nothing half-written


def test_chunked_path_warns_about_zero_uncertainty_as_in_memory(sky):
    from astropy.nddata import StdDevUncertainty
    from astropy.utils.exceptions import AstropyUserWarning

    kwargs = dict(model=_perturbed(ResidualUNet(**LEVEL)), **TILING)
    sigma = np.ones(SHAPE)
    sigma[20, 30] = 0.0  # a good pixel ((5, 7) is NaN in the fixture)
    sigma[5, 7] = np.nan  # a bad pixel's uncertainty means nothing
    lazy = _dask_ccd(sky)
    lazy.uncertainty = StdDevUncertainty(da.from_array(sigma, chunks=CHUNK))
    with pytest.warns(AstropyUserWarning, match="zero or not finite on 1 good pixel") as caught:
        chunked = denoise_residual(lazy, **kwargs)
    assert caught[0].filename == __file__
    in_memory = sky.copy()
    in_memory.uncertainty = StdDevUncertainty(sigma)
    with pytest.warns(AstropyUserWarning, match="zero or not finite on 1 good pixel"):
        _assert_same(chunked, denoise_residual(in_memory, **kwargs))

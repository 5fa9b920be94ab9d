"""Tests for the astro-nn-restore command line (astro_nn_restore.cli)."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.wcs import WCS
from numpy.testing import assert_allclose, assert_array_equal

from astro_nn_restore import cli

torch = pytest.importorskip("torch")

from astro_nn_restore.models import ResidualUNet  # noqa: E402
from astro_nn_restore.registry import save_model  # noqa: E402

SHAPE = (48, 64)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """Path of an untrained tiny denoiser with its model card."""
    net = ResidualUNet(channels=(8, 16), blocks=1, dilations=(2,), space_to_depth=2)
    arguments = {k: list(v) if isinstance(v, tuple) else v for k, v in net.config.items()}
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    card = save_model(net, path, {"task": "denoise", "architecture": "ResidualUNet",
                                  "arguments": arguments})
    return str(path), card


def _wcs():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [210.8, 54.3]
    wcs.wcs.crpix = [30.5, 22.5]
    wcs.wcs.cd = [[-1.1e-4, 1e-6], [2e-6, 1.1e-4]]
    wcs.wcs.set()
    return wcs


def _same_wcs(a, b):
    y, x = np.mgrid[0 : SHAPE[0] : 5, 0 : SHAPE[1] : 5]
    assert_allclose(a.all_pix2world(x, y, 0), b.all_pix2world(x, y, 0), rtol=0, atol=1e-10)


@pytest.fixture
def image_file(tmp_path):
    data = np.random.default_rng(3).normal(200.0, 8.0, SHAPE).astype(">f4")
    header = _wcs().to_header()
    header["BUNIT"], header["OBJECT"] = "electron", "test field"
    path = tmp_path / "in.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    return path


def _denoise_args(src, dst, model, *extra):
    return ["denoise", str(src), "-o", str(dst), "--model", model, "--tile-size", "32",
            "--overlap", "8", "--batch-size", "4", *extra]


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("astro-nn-restore: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


# ------------------------------------------------------------------ denoise
def test_denoise(image_file, tmp_path, tiny_model, capsys):
    before = image_file.read_bytes()
    out = tmp_path / "out.fits"
    assert cli.main(_denoise_args(image_file, out, tiny_model[0], "--precision", "fp32")) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert image_file.read_bytes() == before
    result = CCDData.read(out)
    assert result.unit == u.electron and result.shape == SHAPE
    _same_wcs(result.wcs, _wcs())
    header = fits.getheader(out)
    assert header["ANR_OP"] == "denoise_residual" and header["ANR_MOD"] == "tiny"
    assert header["ANR_SHA"] == tiny_model[1]["sha256"][:16] and header["OBJECT"] == "test field"
    assert "denoise_residual" in str(header["HISTORY"])
    # the CLI runs the same operation as the Python API
    from astro_nn_restore import denoise_residual

    expected = denoise_residual(str(image_file), model=tiny_model[0], tile_size=32, overlap=8,
                                precision="fp32")
    assert_allclose(result.data, expected.data, rtol=1e-6)


def test_refuses_to_overwrite(image_file, tmp_path, tiny_model, capsys):
    out = tmp_path / "out.fits"
    out.write_bytes(b"precious")
    assert cli.main(_denoise_args(image_file, out, tiny_model[0])) == 2
    _one_line_error(capsys, f"{out} already exists; pass --overwrite to replace it")
    assert out.read_bytes() == b"precious"
    assert cli.main(_denoise_args(image_file, out, tiny_model[0], "--overwrite")) == 0
    assert CCDData.read(out).shape == SHAPE


def test_the_input_is_never_replaced(image_file, tiny_model, capsys):
    before = image_file.read_bytes()
    assert cli.main(_denoise_args(image_file, image_file, tiny_model[0], "--overwrite")) == 2
    _one_line_error(capsys, "is the input: the input is never replaced")
    assert image_file.read_bytes() == before


def test_a_failed_write_leaves_the_old_output(image_file, tmp_path, tiny_model, capsys,
                                              monkeypatch):
    out = tmp_path / "out.fits"
    out.write_bytes(b"previous result")

    def disk_full(self, path, **kwargs):
        Path(path).write_bytes(b"SIMPLE  =                    T")  # a first, partial block
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(CCDData, "write", disk_full)
    assert cli.main(_denoise_args(image_file, out, tiny_model[0], "--overwrite")) == 2
    _one_line_error(capsys, "No space left on device")
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fits", "out.fits"]


@pytest.mark.parametrize(("name", "message"), [
    ("result", "must be a FITS file name"),
    ("result.png", "must be a FITS file name"),
    ("no/such/folder/result.fits", "output folder no/such/folder does not exist"),
])
def test_output_names_are_checked_before_any_work(image_file, tiny_model, capsys, monkeypatch,
                                                  name, message):
    monkeypatch.chdir(image_file.parent)
    monkeypatch.setattr(cli, "_read_input", lambda *a: pytest.fail("the input was read"))
    assert cli.main(_denoise_args(image_file, name, tiny_model[0])) == 2
    _one_line_error(capsys, message)


def test_a_compressed_output_is_compressed(image_file, tmp_path, tiny_model):
    out = tmp_path / "out.fits.gz"
    assert cli.main(_denoise_args(image_file, out, tiny_model[0])) == 0
    assert out.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert fits.getdata(out).shape == SHAPE


def test_mask_uncertainty_and_hdu(tmp_path, tiny_model, capsys):
    """A CCDData file (MASK/UNCERT HDUs) keeps its mask; --hdu picks an extension."""
    mask = np.zeros(SHAPE, bool)
    mask[5:8, 9:12] = True
    ccd = CCDData(np.random.default_rng(4).normal(50, 3, SHAPE), unit="adu", wcs=_wcs(),
                  mask=mask, uncertainty=StdDevUncertainty(np.full(SHAPE, 3.0)))
    src, out = tmp_path / "ccd.fits", tmp_path / "out.fits"
    ccd.write(src)
    assert cli.main(_denoise_args(src, out, tiny_model[0])) == 0
    result = CCDData.read(out)
    assert_array_equal(result.mask, mask)
    assert result.unit == u.adu
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a wrong checksum warns
        with fits.open(out, checksum=True) as hdul:
            assert [h.name for h in hdul][:2] == ["PRIMARY", "MASK"]
            assert all({"CHECKSUM", "DATASUM"} <= set(h.header) for h in hdul)
    # --hdu 0 is the image; the mask extension is not an image to denoise by mistake
    assert cli.main(_denoise_args(src, out, tiny_model[0], "--hdu", "0", "--overwrite")) == 0
    assert cli.main(_denoise_args(src, out, tiny_model[0], "--hdu", "7", "--overwrite")) == 2
    _one_line_error(capsys, "HDU 7 does not exist")


def test_hdu_option_and_unit(tmp_path, tiny_model, capsys):
    data = np.random.default_rng(5).integers(900, 1100, SHAPE).astype(">i2")
    header = fits.Header({"BUNIT": "counts per fortnight"})
    src, out = tmp_path / "mef.fits", tmp_path / "out.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header, name="SCI")]).writeto(src)
    assert cli.main(_denoise_args(src, out, tiny_model[0])) == 2
    _one_line_error(capsys, "cannot parse BUNIT", "unit=")
    assert not out.exists()
    assert cli.main(_denoise_args(src, out, tiny_model[0], "--unit", "adu", "--hdu", "1")) == 0
    result = CCDData.read(out)
    assert result.unit == u.adu and result.shape == SHAPE and result.wcs is None
    assert cli.main(_denoise_args(src, out, tiny_model[0], "--hdu", "0", "--overwrite")) == 2
    _one_line_error(capsys, "no image data")


def test_an_hdu_by_bracket_or_extname(tmp_path, tiny_model, capsys):
    """FILE[K], FILE[EXTNAME] and --hdu EXTNAME pick the HDU, as astropy and cfitsio spell it."""
    rng = np.random.default_rng(6)
    sci, other = (rng.normal(level, 3, SHAPE).astype(np.float32) for level in (100, 500))
    src, out = tmp_path / "mef.fits", tmp_path / "out.fits"
    fits.HDUList([fits.PrimaryHDU(other, fits.Header({"BUNIT": "adu"})),
                  fits.ImageHDU(sci, fits.Header({"BUNIT": "adu"}), name="SCI")]).writeto(src)
    for given, extra in ((f"{src}[1]", ()), (f"{src}[sci]", ()), (str(src), ("--hdu", "SCI"))):
        assert cli.main(_denoise_args(given, out, tiny_model[0], "--overwrite", *extra)) == 0
        assert abs(np.median(CCDData.read(out).data) - 100) < 5, given
    assert cli.main(_denoise_args(f"{src}[1]", out, tiny_model[0], "--overwrite",
                                  "--hdu", "0")) == 2
    _one_line_error(capsys, "names its HDU", "--hdu 0")
    assert cli.main(_denoise_args(src, out, tiny_model[0], "--overwrite", "--hdu", "DQ")) == 2
    _one_line_error(capsys, "no HDU named 'DQ'", "PRIMARY, SCI")
    assert cli.main(_denoise_args(f"{src}[1]", src, tiny_model[0], "--overwrite")) == 2
    _one_line_error(capsys, "is the input")


def test_progress(image_file, tmp_path, tiny_model, capsys):
    assert cli.main(_denoise_args(image_file, tmp_path / "o.fits", tiny_model[0],
                                  "--progress")) == 0
    assert "tiles" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "folder", "not_fits", "model", "bad_model",
                                  "colour3d"])
def test_errors_are_one_line(case, image_file, tmp_path, tiny_model, capsys):
    src, model, extra, needle = image_file, tiny_model[0], [], ""
    if case == "missing":
        src, needle = tmp_path / "nope.fits", "not found"
    elif case == "not_fits":
        src = tmp_path / "text.fits"
        src.write_text("this is not FITS\n" * 200)
    elif case == "model":
        model, needle = "no-such-model", "no model 'no-such-model'"
    elif case == "bad_model":
        model = str(tmp_path / "broken.safetensors")
        (tmp_path / "broken.safetensors").write_bytes(b"\x80\x04junk")
        (tmp_path / "broken.json").write_text('{"task": "denoise"}')
        needle = "lacks"
    elif case == "folder":
        src, needle = tmp_path, "is a folder: give a FITS file, or use 'astro-nn-restore batch"
    elif case == "colour3d":  # a spectral cube is not a colour image
        src, needle = tmp_path / "cube.fits", "2-D"
        fits.PrimaryHDU(np.ones((3, 20, 20), np.float32),
                        header=fits.Header({"CTYPE3": "FREQ"})).writeto(src)
    out = tmp_path / "out.fits"
    assert cli.main(_denoise_args(src, out, model, *extra)) == 2
    _one_line_error(capsys, needle)
    assert not out.exists()


def _colour_cube_file(path, *, with_wcs=True, mask=None):
    from astro_nn_restore.wcs_utils import add_band_axis

    cube = np.random.default_rng(6).uniform(100, 200, (3, *SHAPE)).astype(">f4")
    header = add_band_axis(_wcs()).to_header() if with_wcs else fits.Header()
    header["BUNIT"], header["OBJECT"] = "adu", "colour field"
    hdus = [fits.PrimaryHDU(cube, header)]
    if mask is not None:
        hdus.append(fits.ImageHDU(mask.astype(np.uint8), name="MASK"))
    fits.HDUList(hdus).writeto(path)
    return cube.astype(np.float32)


def test_colour_cubes_are_restored_and_written_as_band_cubes(tmp_path, tiny_model):
    from astro_nn_restore import denoise_residual

    mask = np.zeros((3, *SHAPE), bool)
    mask[:, 5:8, 9:12] = True
    cube = _colour_cube_file(tmp_path / "rgb.fits", mask=mask)
    out = tmp_path / "out.fits"
    assert cli.main(_denoise_args(tmp_path / "rgb.fits", out, tiny_model[0])) == 0
    result = CCDData.read(out)
    assert result.shape == (3, *SHAPE) and result.unit == u.adu
    assert result.wcs.wcs.ctype[2] == "BAND"
    _same_wcs(result.wcs.celestial, _wcs())
    assert result.header["ANR_OP"] == "denoise_residual" and result.header["ANR_MOD"] == "tiny"
    assert result.header["OBJECT"] == "colour field"
    assert [result.header[f"BAND{i}"] for i in (1, 2, 3)] == ["R", "G", "B"]  # as colorize
    assert_array_equal(result.mask, mask)
    expected = denoise_residual(np.ma.masked_array(np.moveaxis(cube, 0, -1),
                                                   np.moveaxis(mask, 0, -1)),
                                model=tiny_model[0], tile_size=32, overlap=8, batch_size=4)
    assert_allclose(result.data, np.moveaxis(np.ma.getdata(expected), -1, 0), rtol=1e-6)


def test_colour_super_resolution_gets_the_2d_header_keys(tmp_path):
    from astro_nn_restore.wcs_utils import rescale_wcs

    _colour_cube_file(tmp_path / "rgb.fits")
    with fits.open(tmp_path / "rgb.fits", mode="update") as hdul:
        hdul[0].header["PIXSCALE"] = 0.4
    out = tmp_path / "big.fits"
    assert cli.main(["super-resolve", str(tmp_path / "rgb.fits"), "-o", str(out),
                     "--factor", "4"]) == 0
    result = CCDData.read(out)
    assert result.shape == (3, 4 * SHAPE[0], 4 * SHAPE[1])
    _same_wcs(result.wcs.celestial, rescale_wcs(_wcs(), 4))
    header = result.header
    assert header["PIXSCALE"] == pytest.approx(0.1) and header["ANR_FACT"] == 4
    assert header["ANR_OP"] == "super_resolve" and "factor 4" in str(header["HISTORY"])


def test_flux_conserving_option_of_super_resolve(image_file, tmp_path, capsys):
    source = CCDData.read(image_file)
    results = {}
    for policy in ("auto", "yes", "no"):
        out = tmp_path / f"{policy}.fits"
        assert cli.main(["super-resolve", str(image_file), "-o", str(out), "--flux-conserving",
                         policy, "--precision", "fp32"]) == 0
        results[policy] = CCDData.read(out)
    for policy in ("auto", "yes"):  # electron: per pixel, the sum is kept
        assert results[policy].header["ANR_FLUX"] == "per-pixel"
        assert results[policy].data.sum() == pytest.approx(source.data.sum(), rel=1e-5)
    assert results["no"].header["ANR_FLUX"] == "surface"
    assert results["no"].data.mean() == pytest.approx(source.data.mean(), rel=1e-5)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["super-resolve", str(image_file), "-o", str(tmp_path / "x.fits"),
                  "--flux-conserving", "maybe"])
    assert exit_info.value.code == 2
    assert "must be one of auto, yes, no" in capsys.readouterr().err

    _colour_cube_file(tmp_path / "rgb.fits")
    out = tmp_path / "rgb_x2.fits"
    assert cli.main(["super-resolve", str(tmp_path / "rgb.fits"), "-o", str(out),
                     "--flux-conserving", "yes"]) == 0
    assert CCDData.read(out).header["ANR_FLUX"] == "per-pixel"  # colour: kept unless asked


@pytest.mark.parametrize(("planes", "command", "message"), [
    (4, "denoise", "is an RGBA (4, ny, nx) cube"),
    (3, "colorize", "colorize takes a greyscale 2-D image"),
])
def test_cubes_an_operation_cannot_take_are_refused(tmp_path, capsys, planes, command, message):
    cube = np.ones((planes, 20, 24), np.float32)
    fits.PrimaryHDU(cube, header=fits.Header({"CTYPE3": "BAND"})).writeto(tmp_path / "c.fits")
    assert cli.main([command, str(tmp_path / "c.fits"), "-o", str(tmp_path / "o.fits")]) == 2
    _one_line_error(capsys, message)


def test_an_untyped_colour_cube_without_wcs_gets_a_band_axis(tmp_path, tiny_model):
    _colour_cube_file(tmp_path / "rgb.fits", with_wcs=False)
    first, second = tmp_path / "once.fits", tmp_path / "twice.fits"
    assert cli.main(_denoise_args(tmp_path / "rgb.fits", first, tiny_model[0])) == 0
    header = fits.getheader(first)
    assert header["CTYPE3"] == "BAND" and header["NAXIS3"] == 3 and "CTYPE1" not in header
    assert cli.main(_denoise_args(first, second, tiny_model[0])) == 0  # reads back as colour
    assert fits.getdata(second).shape == (3, *SHAPE)


def test_an_unknown_unit_is_a_usage_error(image_file, tmp_path, tiny_model, capsys):
    with pytest.raises(SystemExit) as info:  # even when the file's own BUNIT would be used
        cli.main(_denoise_args(image_file, tmp_path / "out.fits", tiny_model[0], "--unit",
                               "not-a-unit"))
    assert info.value.code == 2
    assert "not a unit astropy knows: 'not-a-unit'" in capsys.readouterr().err


def test_python_m_astro_nn_restore_is_the_command_line():
    done = subprocess.run([sys.executable, "-m", "astro_nn_restore", "--help"],
                          capture_output=True, text=True, check=True)
    assert "usage: astro-nn-restore" in done.stdout


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli.main(["denoise", "x.fits"])  # -o is required
    assert info.value.code == 2
    assert "-o/--output" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "denoise" in capsys.readouterr().out


def test_operations_table():
    """Every command in the table resolves to a callable with the shared options."""
    import inspect

    parser = cli.build_parser()
    for name, (path, _options) in cli.OPERATIONS.items():
        function = cli._resolve(path)
        parameters = inspect.signature(function).parameters
        for option in ("model", "unit", "tile_size", "overlap", "batch_size", "progress"):
            assert parameters[option].kind is inspect.Parameter.KEYWORD_ONLY
        args = parser.parse_args([name, "a.fits", "-o", "b.fits"])
        assert args.import_path == path
        assert all(extra in parameters for extra in args.extra)


def test_subprocess(image_file, tmp_path, tiny_model):
    out = tmp_path / "sub.fits"
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"}
    done = subprocess.run([sys.executable, "-m", "astro_nn_restore.cli",
                           *_denoise_args(image_file, out, tiny_model[0])],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    _same_wcs(CCDData.read(out).wcs, _wcs())
    again = subprocess.run([sys.executable, "-m", "astro_nn_restore.cli",
                            *_denoise_args(image_file, out, tiny_model[0])],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2
    assert again.stderr.startswith("astro-nn-restore: error: ") and "Traceback" not in again.stderr


# --------------------------------------------------------------------- demo
def test_demo(tmp_path, tiny_model, capsys):
    folder = tmp_path / "demo"
    args = ["demo", "--output", str(folder), "--size", "64", "--seed", "2",
            "--model", tiny_model[0]]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    names = ["demo_noisy.fits", "demo_denoised.fits", "demo_clean.fits", "demo_before_after.png"]
    for name in names:
        assert str(folder / name) in out
    assert "PSNR" in out and "dB" in out
    png = (folder / "demo_before_after.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    import matplotlib.image

    pixels = matplotlib.image.imread(folder / "demo_before_after.png")
    assert pixels.ndim == 3 and pixels.shape[1] > 2 * pixels.shape[0] and pixels.std() > 0
    noisy, denoised, clean = (CCDData.read(folder / n) for n in names[:3])
    assert noisy.shape == denoised.shape == clean.shape == (64, 64)
    assert noisy.unit == denoised.unit == clean.unit
    _same_wcs_64(noisy.wcs, denoised.wcs)
    assert fits.getheader(folder / names[1])["ANR_OP"] == "denoise_residual"
    from astro_nn_restore.metrics import psnr

    score = psnr(clean.data, denoised.data)
    assert f"{score:.2f} dB" in out
    # a second run refuses to replace the files, then replaces them with --overwrite
    stamps = {n: (folder / n).read_bytes() for n in names}
    assert cli.main(args) == 2
    _one_line_error(capsys, "already exist;", "replace them")
    assert all((folder / n).read_bytes() == stamps[n] for n in names)
    assert cli.main([*args, "--overwrite"]) == 0


def _same_wcs_64(a, b):
    y, x = np.mgrid[0:64:9, 0:64:9]
    assert_allclose(a.all_pix2world(x, y, 0), b.all_pix2world(x, y, 0), rtol=0, atol=1e-10)


def test_masked_colour_image_is_written_with_its_mask(tiny_model, tmp_path):
    rgb = np.random.default_rng(1).uniform(0, 1, (40, 56, 3)).astype(np.float32)
    mask = np.zeros(rgb.shape, np.uint8)
    mask[3, 4] = 1
    src, out = tmp_path / "rgb.fits", tmp_path / "out.fits"
    fits.HDUList([fits.PrimaryHDU(rgb), fits.ImageHDU(mask, name="MASK")]).writeto(src)
    assert cli.main(_denoise_args(src, out, tiny_model[0])) == 0
    with fits.open(out) as written:  # written as a band cube, as colorize writes colour
        assert written[0].data.shape == (3, 40, 56) and written[0].header["CTYPE3"] == "BAND"
        assert_array_equal(written["MASK"].data, np.moveaxis(mask, -1, 0))

"""Self-supervised denoising: registration, CCD noise maps, Noise2Noise/Noise2Void training."""

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from scipy import ndimage

from astro_nn_restore import simulate_sky
from astro_nn_restore._nddata import noise_map, parse_image
from astro_nn_restore.normalize import ccd_noise_map
from astro_nn_restore.register import RegistrationError, estimate_shift, register_frames

torch = pytest.importorskip("torch")

from astro_nn_restore import denoise_residual  # noqa: E402
from astro_nn_restore.registry import load_model  # noqa: E402
from astro_nn_restore.train.__main__ import main  # noqa: E402
from astro_nn_restore.train.selfsup import blind_spot_mask  # noqa: E402

TINY = ["--arch", json.dumps({"channels": [8, 16], "blocks": 1, "dilations": [2]}),
        "--batch-size", "2", "--patch-size", "32", "--threads", "1", "--steps", "3",
        "--val-every", "3", "--checkpoint-every", "2", "--seed", "3"]


def dithered_frames(shifts, *, n=256, seed=0, pattern=30.0, hot_fraction=0.003):
    """Exposures of one simulated field, moved by ``shifts`` (dy, dx), with fixed-pattern noise.

    The scene is shifted (cubic spline, well sampled PSF) before Poisson and
    read noise; every frame gets the same column pattern (``pattern`` adu rms,
    3 times the sky noise) and the same hot pixels (2000 adu).
    """
    margin = 20
    big = simulate_sky((n + 2 * margin, n + 2 * margin), seed=seed, n_stars=120,
                       sky=100.0, read_noise=5.0).clean.data
    rng = np.random.default_rng(seed + 1)
    fixed = np.repeat(pattern * rng.standard_normal((1, n)), n, axis=0)
    hot = rng.random((n, n)) < hot_fraction
    fixed[hot] += 2000.0
    frames = []
    for shift in shifts:
        scene = ndimage.shift(big, shift, order=3, mode="nearest")[margin:-margin,
                                                                   margin:-margin]
        noisy = rng.poisson(np.clip(scene, 0, None)) + 5.0 * rng.standard_normal(scene.shape)
        frames.append((noisy + fixed).astype(np.float32))
    return frames


# ------------------------------------------------------------ registration


@pytest.mark.parametrize("shift", [(1.37, -2.62), (-4.81, 3.25)])
def test_estimate_shift_recovers_subpixel_shift_despite_fixed_pattern(shift):
    from skimage.registration import phase_cross_correlation

    reference, moved = dithered_frames([(0.0, 0.0), shift])
    # the fixed pattern fools whole-frame phase correlation ...
    assert np.allclose(phase_cross_correlation(reference, moved, upsample_factor=10)[0], 0)
    # ... not the source-based estimate (sign: shift(moved, estimate) lies on reference)
    estimate = estimate_shift(reference, moved)
    np.testing.assert_allclose(estimate, [-shift[0], -shift[1]], atol=0.1)


def test_register_frames_by_sources_aligns_the_stars():
    reference, moved = dithered_frames([(0.0, 0.0), (2.4, -3.7)], pattern=0.0,
                                       hot_fraction=0.0)
    result = register_frames(reference, moved)
    assert result.method == "sources"
    assert np.isnan(result.aligned[~result.footprint]).all()
    assert 0.9 < result.overlap < 0.97
    inside = result.footprint
    before = np.std((moved - reference)[inside])
    after = np.std((result.aligned - reference)[inside])
    assert after < 0.8 * before


def test_register_frames_with_wcs_recovers_subpixel_offset():
    sky = simulate_sky((128, 128), seed=5, fwhm=3.5)
    shift = (2.3, -1.6)
    moved = ndimage.shift(sky.clean.data, shift, order=3, mode="nearest")
    wcs = sky.clean.wcs.deepcopy()
    wcs.wcs.crpix = wcs.wcs.crpix + np.array([shift[1], shift[0]])  # same sky, moved pixels
    wcs.wcs.set()
    result = register_frames(sky.clean, CCDData(moved, unit="electron", wcs=wcs))
    assert result.method == "wcs"
    np.testing.assert_allclose(result.shift, [-shift[0], -shift[1]], atol=1e-6)
    inside = ndimage.binary_erosion(result.footprint, iterations=4)
    error = (result.aligned - sky.clean.data)[inside] / np.ptp(sky.clean.data)
    # two interpolations (the test's spline shift, reproject's bicubic): small, not zero
    assert np.sqrt(np.mean(error**2)) < 0.003 and np.abs(error).max() < 0.03
    # and the source method agrees with the WCS on the noisy images
    source_shift = estimate_shift(sky.noisy.data, moved + sky.noisy.data - sky.clean.data,
                                  method="sources")
    np.testing.assert_allclose(source_shift, [-shift[0], -shift[1]], atol=0.15)


def test_registration_errors_are_clear():
    a, b = dithered_frames([(0.0, 0.0), (1.0, 1.0)], n=128)
    with pytest.raises(RegistrationError, match="different shapes"):
        register_frames(a, b[:100])
    other = dithered_frames([(0.0, 0.0)], n=128, seed=7, pattern=0.0, hot_fraction=0.0)[0]
    with pytest.raises(RegistrationError, match="too few sources"):
        estimate_shift(a, other)
    sky = simulate_sky((64, 64), seed=2).noisy
    far = sky.wcs.deepcopy()
    far.wcs.crval = far.wcs.crval + np.array([0.0, 1.0])  # one degree away
    with pytest.raises(RegistrationError, match="overlap"):
        register_frames(sky, CCDData(sky.data, unit=sky.unit, wcs=far))
    with pytest.raises(ValueError, match="method"):
        estimate_shift(a, b, method="phase")


def test_registration_does_not_modify_inputs():
    a, b = dithered_frames([(0.0, 0.0), (1.5, 0.5)], n=128)
    copies = a.copy(), b.copy()
    register_frames(a, b)
    np.testing.assert_array_equal(a, copies[0])
    np.testing.assert_array_equal(b, copies[1])


# -------------------------------------------------------------- noise maps


def _ccd_frame(rng, gain=2.0, read_noise=6.0, level=300.0, bias=0.0):
    electrons = rng.poisson(level * gain, (128, 128)) + rng.normal(0, read_noise, (128, 128))
    header = fits.Header({"GAIN": gain, "RDNOISE": read_noise})
    return (electrons / gain + bias).astype(np.float32), header


def test_ccd_noise_map_from_header_and_arguments(rng):
    data, header = _ccd_frame(rng)
    expected = np.sqrt(300.0 / 2.0 + (6.0 / 2.0) ** 2)
    sigma = ccd_noise_map((data, header))
    assert sigma.shape == data.shape and sigma.dtype == np.float32
    assert abs(np.median(sigma) / expected - 1) < 0.02
    np.testing.assert_allclose(ccd_noise_map(data, gain=2.0, read_noise=6.0), sigma)
    assert abs(np.median(sigma) / np.std(data) - 1) < 0.05  # what the image shows


def test_ccd_noise_map_raw_frame_needs_sky(rng):
    raw, header = _ccd_frame(rng, bias=1000.0)
    with pytest.warns(UserWarning, match="sky="):
        ccd_noise_map((raw, header))  # the bias counted as signal: noise overestimated
    sigma = ccd_noise_map((raw, header), sky=300.0)
    assert abs(np.median(sigma) / np.std(raw) - 1) < 0.05


def test_ccd_noise_map_errors_without_gain(rng):
    with pytest.raises(ValueError, match="gain"):
        ccd_noise_map(rng.normal(size=(16, 16)))


def test_noise_map_uses_header_only_when_asked(rng):
    data, header = _ccd_frame(rng)
    parsed = parse_image((data, header))
    assert noise_map(parsed, None) is None  # denoise_residual's behaviour is unchanged
    assert noise_map(parsed, None, from_header=True).shape == data.shape
    assert noise_map(parsed, 3.0, from_header=True)[0, 0] == 3.0  # explicit wins


# ---------------------------------------------------------------- training


def test_blind_spot_mask(rng):
    inputs = np.stack([rng.normal(size=(32, 40)), np.full((32, 40), 0.5)]).astype(np.float32)
    masked, blind = blind_spot_mask(inputs, rng)
    assert blind.sum() == 4 * 5  # one per 8x8 cell
    changed = masked[0] != inputs[0]
    np.testing.assert_array_equal(changed, blind > 0)
    np.testing.assert_array_equal(masked[1], inputs[1])
    assert np.abs(masked[0][blind > 0]).max() < 4  # median of neighbours + N(0, 0.5)


def _write_frames(folder, frames, headers=None):
    folder.mkdir()
    for k, frame in enumerate(frames):
        header = fits.Header() if headers is None else headers[k]
        header["DATE-OBS"] = f"2024-01-01T00:0{k}:00"
        fits.PrimaryHDU(frame, header=header).writeto(folder / f"frame{k}.fits")
    return folder


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory):
    frames = dithered_frames([(0.0, 0.0), (0.6, 3.4), (-2.2, 5.1)], n=96, seed=4)
    return _write_frames(tmp_path_factory.mktemp("frames") / "field", frames)


def _check_exported(out, name, mode, folder):
    weights = out / f"{name}.safetensors"
    module, card = load_model(weights, task="denoise")
    assert card["self_supervised"]["mode"] == mode
    assert card["self_supervised"]["data"] == str(folder)
    assert card["training"]["data"] == f"the frames in {folder} alone ({mode}, self-supervised)"
    assert card["training"]["command"].startswith("python -m astro_nn_restore.train denoise")
    assert f"--self-supervised {mode}" in card["training"]["command"]
    frame = fits.getdata(folder / "frame0.fits")
    result = denoise_residual(frame, model=weights, tile_size=64, overlap=16)
    assert result.shape == frame.shape and np.isfinite(result.data).all()
    assert result.header["ANR_MOD"] == name and result.uncertainty is None
    return card


def test_noise2noise_cli_trains_a_loadable_model(tmp_path, frame_folder):
    out = tmp_path / "n2n"
    assert main(["denoise", "--self-supervised", "noise2noise", "--data", str(frame_folder),
                 "--out", str(out), "--name", "denoise-n2n", *TINY]) == 0
    card = _check_exported(out, "denoise-n2n", "noise2noise", frame_folder)
    pairs = card["self_supervised"]["pairs"]
    assert len(pairs) == 6  # 3 frames: every pair, both ways
    first = next(p for p in pairs if (p["input"], p["target"]) == ("frame0.fits", "frame1.fits"))
    np.testing.assert_allclose(first["shift_dy_dx"], [-0.6, -3.4], atol=0.2)
    assert card["self_supervised"]["init"] is None
    assert "calibration" not in card  # no clean reference: no uncertainty claimed


def test_noise2void_cli_fine_tunes_the_default_model(tmp_path, frame_folder):
    out = tmp_path / "n2v"
    tiny = [a for a in TINY if a != "--arch"][1:]  # --init takes the default's architecture
    assert main(["denoise", "--self-supervised", "noise2void", "--data", str(frame_folder),
                 "--init", "default", "--out", str(out), "--name", "denoise-n2v", *tiny]) == 0
    card = _check_exported(out, "denoise-n2v", "noise2void", frame_folder)
    default = load_model("default", task="denoise")[1]
    assert card["self_supervised"]["init"] == {"model": "default", "sha256": default["sha256"]}
    assert card["arguments"] == default["arguments"]
    assert card["self_supervised"]["noise_map"]["frame0.fits"] == "estimated (constant)"


def test_gain_from_the_command_line_sets_the_noise_map(tmp_path, frame_folder):
    out = tmp_path / "gain"
    with pytest.warns(UserWarning, match="CCD equation"):  # frames carry a 100 adu sky
        main(["denoise", "--self-supervised", "noise2void", "--data", str(frame_folder),
              "--gain", "20", "--read-noise", "5", "--out", str(out), "--name", "g", *TINY])
    card = json.loads((out / "g.json").read_text())
    assert card["self_supervised"]["noise_map"]["frame1.fits"] == "CCD equation"


def test_unreadable_frames_are_skipped_with_a_warning(tmp_path):
    from astro_nn_restore.train.selfsup import load_frames

    frames = dithered_frames([(0.0, 0.0), (1.0, 2.0)], n=64)
    folder = _write_frames(tmp_path / "frames", frames)
    (folder / "broken.fits").write_text("not FITS " * 400)
    fits.PrimaryHDU(np.zeros((3, 8, 8))).writeto(folder / "cube.fits")
    fits.PrimaryHDU(np.full((32, 32), np.nan)).writeto(folder / "empty.fits")
    with pytest.warns(UserWarning, match="skipping") as caught:
        loaded = load_frames(folder)
    assert [f.path.name for f in loaded] == ["frame0.fits", "frame1.fits"]
    assert sorted(str(w.message).split(":")[0].rsplit("/", 1)[1] for w in caught) == [
        "broken.fits", "cube.fits", "empty.fits"]
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "broken.fits").write_text("not FITS " * 400)
    with pytest.warns(UserWarning, match="skipping"), \
            pytest.raises(ValueError, match="none of its 1 FITS file"):
        load_frames(only_bad)


def test_noise2noise_bad_folders(tmp_path, capsys):
    frames = dithered_frames([(0.0, 0.0), (1.0, 2.0)], n=96)
    one = _write_frames(tmp_path / "one", frames[:1])
    args = ["denoise", "--self-supervised", "noise2noise", "--out", str(tmp_path / "o"), *TINY]
    def refused(*extra):
        assert main([*args, *extra]) == 2
        return capsys.readouterr().err

    assert "at least two exposures" in refused("--data", str(one))
    mismatched = _write_frames(tmp_path / "mismatched", [frames[0], frames[1][:80]])
    with pytest.warns(UserWarning, match="pair skipped"):
        assert "different shapes" in refused("--data", str(mismatched))
    (tmp_path / "empty").mkdir()
    assert "no FITS files" in refused("--data", str(tmp_path / "empty"))
    assert "no such folder" in refused("--data", str(tmp_path / "absent"))
    assert "exclude each other" in refused("--data", str(one), "--init", "default",
                                           "--self-supervised", "noise2void")
    assert not (tmp_path / "o").exists()


def test_multi_extension_frames_sort_by_the_primary_date(tmp_path):
    from astro_nn_restore.train.selfsup import load_frames

    frames = dithered_frames([(0.0, 0.0), (0.6, 3.4)], n=64, seed=5)
    folder = tmp_path / "mef"
    folder.mkdir()
    for name, frame, date in (("a.fits", frames[0], "2024-01-02"), ("b.fits", frames[1],
                                                                     "2024-01-01")):
        primary = fits.PrimaryHDU(header=fits.Header({"DATE-OBS": date}))
        fits.HDUList([primary, fits.ImageHDU(frame, name="SCI")]).writeto(folder / name)
    assert [f.path.name for f in load_frames(folder)] == ["b.fits",
                                                               "a.fits"]

"""Cutouts, latent vectors, decoding and anomaly scores (astro_nn_restore.latent)."""

import inspect

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.nddata import CCDData
from astropy.table import MaskedColumn, Table

from astro_nn_restore import (
    ModelLoadError,
    anomaly_score,
    available_models,
    decode_latent,
    encode_latent,
    make_cutouts,
    save_model,
    simulate_sky,
)
from astro_nn_restore.latent import CutoutStack, cutout_normalization
from astro_nn_restore.models import build_model
from astro_nn_restore.models.autoencoder import CutoutAutoencoder
from astro_nn_restore.registry import load_model
from astro_nn_restore.train.__main__ import main as train_main

TINY = dict(size=32, latent_dim=4, channels=(4, 8))


def _save(module, path):
    card = {"task": "autoencoder", "architecture": "CutoutAutoencoder",
            "arguments": {k: list(v) if isinstance(v, tuple) else v
                          for k, v in module.config.items()}}
    save_model(module, path, card)
    return str(path.with_suffix(".safetensors"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    return _save(CutoutAutoencoder(**TINY), tmp_path_factory.mktemp("ae") / "tiny")


@pytest.fixture(scope="module")
def sky():
    return simulate_sky((128, 128), seed=11, n_stars=8, n_galaxies=3)


def _zero_decoder_model():
    """An autoencoder whose decoder always returns 0 (the background)."""
    module = CutoutAutoencoder(**TINY)
    torch.nn.init.zeros_(module.decoder.head.weight)
    torch.nn.init.zeros_(module.decoder.head.bias)
    return module


# ------------------------------------------------------------------- model


def test_decoder_sees_only_the_latent():
    torch.manual_seed(1)
    module = CutoutAutoencoder(**TINY).eval()
    assert list(inspect.signature(module.decoder.forward).parameters) == ["z"]
    a, b = torch.randn(2, 1, 1, 32, 32)
    with torch.no_grad():
        z_a = module.encode(a)
        out_a = module(a)
        # force b's latent to be a's: with any skip connection b's features would leak through
        handle = module.encoder.register_forward_hook(lambda mod, inputs, output: z_a)
        out_b = module(b)
        handle.remove()
        assert not torch.equal(module(b), out_a)
    assert torch.equal(out_a, out_b)


@pytest.mark.parametrize("latent_dim", [8, 16, 32])
def test_latent_sizes(latent_dim):
    module = build_model("CutoutAutoencoder", size=32, latent_dim=latent_dim, channels=(4, 8, 8))
    z = module.encode(torch.zeros(2, 1, 32, 32))
    assert z.shape == (2, latent_dim)
    assert module.decode(z).shape == (2, 1, 32, 32)


def test_size_must_fit_levels():
    with pytest.raises(ValueError, match="multiple of 4"):
        CutoutAutoencoder(size=30, channels=(4, 8, 8))


# ----------------------------------------------------------------- cutouts


def test_cutouts_from_positions_table_and_skycoord(sky):
    table = sky.sources[:4]
    by_array = make_cutouts(sky.noisy, positions=np.column_stack([table["x"], table["y"]]))
    by_table = make_cutouts(sky.noisy, positions=table)
    renamed = Table({"x_centroid": table["x"], "y_centroid": table["y"]})
    by_catalog = make_cutouts(sky.noisy, positions=renamed)
    coords = sky.noisy.wcs.pixel_to_world(table["x"], table["y"])
    by_sky = make_cutouts(sky.noisy, positions=coords)
    for stack in (by_table, by_catalog, by_sky):
        np.testing.assert_allclose(stack.positions, by_array.positions, atol=1e-6)
        np.testing.assert_array_equal(stack.data, by_array.data)
    assert by_array.data.shape == (4, 32, 32)
    assert by_array.unit == u.electron


def test_each_cutout_keeps_its_wcs(sky):
    central = (np.abs(sky.sources["x"] - 64) < 40) & (np.abs(sky.sources["y"] - 64) < 40)
    inside = sky.sources[central]
    stack = make_cutouts(sky.noisy, positions=inside)
    assert len(stack) >= 2
    for (x, y), wcs, data in zip(stack.positions, stack.wcs, stack.data, strict=True):
        cx, cy = wcs.world_to_pixel(sky.noisy.wcs.pixel_to_world(x, y))
        x0, y0 = round(float(x - cx)), round(float(y - cy))  # the cutout's origin in the parent
        assert x - cx == pytest.approx(x0, abs=1e-6) and y - cy == pytest.approx(y0, abs=1e-6)
        # the cutout's WCS matches its pixels: they are the parent's at that origin
        parent = sky.noisy.data[y0:y0 + 32, x0:x0 + 32].astype(np.float32)
        np.testing.assert_array_equal(data, parent)


def test_detection_finds_bright_sources(sky):
    stack = make_cutouts(sky.noisy, threshold=5)
    true_xy = np.column_stack([sky.sources["x"], sky.sources["y"]])
    distance = np.hypot(*(stack.positions[:, None] - true_xy[None]).transpose(2, 0, 1)).min(1)
    assert len(stack) >= 4  # the 3 galaxies and the one star above 5 sigma
    assert np.max(distance) < 1.5
    assert len(make_cutouts(sky.noisy, max_sources=2)) == 2


def test_normalization_is_stored_per_cutout(rng):
    stack = 250 + rng.normal(0, 4, (3, 32, 32))
    stack[:, 16, 16] += [40, 400, 4000]
    norm = cutout_normalization(stack)
    np.testing.assert_allclose(norm.background, 250, atol=1.5)
    np.testing.assert_allclose(norm.noise, 4, rtol=0.2)
    np.testing.assert_allclose(norm.scale, [40, 400, 4000], rtol=0.1, atol=10)
    np.testing.assert_allclose(norm.inverse(norm.forward(stack)), stack, rtol=1e-6)


def test_edge_cutout_is_masked_and_input_unchanged(sky):
    image = sky.noisy.data.copy()
    stack = make_cutouts(sky.noisy, positions=[[2.0, 3.0]])
    assert stack.mask[0, 0, 0] and not stack.mask[0, 20, 20]
    assert np.isnan(stack.data[0, 0, 0])
    assert np.isfinite(stack.normalization.background).all()
    np.testing.assert_array_equal(sky.noisy.data, image)


def test_bad_positions():
    image = np.zeros((64, 64))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        make_cutouts(image, positions=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="celestial WCS"):
        make_cutouts(image, positions=simulate_sky((32, 32), seed=0).noisy.wcs.pixel_to_world(
            [1], [1]))
    with pytest.raises(ValueError, match="column pairs"):
        make_cutouts(image, positions=Table({"a": [1.0], "b": [2.0]}))
    # a masked entry holds no position (its fill value would be cut out as one)
    masked = Table({"x": MaskedColumn([10.0, 50.0, 30.0], mask=[False, False, True]),
                    "y": [10.0, 50.0, 20.0]})
    with pytest.raises(ValueError, match=r"1 position\(s\) are masked, the first: positions\[2\]"):
        make_cutouts(image, positions=masked)
    with pytest.raises(ValueError, match=r"positions\[1\]"):
        make_cutouts(image, positions=np.ma.array([[10.0, 10.0], [30.0, 20.0]],
                                                  mask=[[False, False], [False, True]]))


# ----------------------------------------------------------- encode/decode


def test_encode_shapes(tiny_model, sky):
    stack = make_cutouts(sky.noisy, max_sources=3)
    z_stack = encode_latent(stack, model=tiny_model)
    assert z_stack.shape == (3, 4) and z_stack.dtype == np.float32
    single = encode_latent(stack.data[0], model=tiny_model)
    assert single.shape == (4,)
    np.testing.assert_allclose(single, z_stack[0], atol=1e-5)
    np.testing.assert_allclose(encode_latent(stack.data, model=tiny_model), z_stack, atol=1e-5)
    whole = encode_latent(sky.noisy, model=tiny_model)
    assert whole.shape == (len(make_cutouts(sky.noisy)), 4)


def test_a_quantity_stack_is_encoded_and_scored_like_its_values(tiny_model, sky):
    stack = make_cutouts(sky.noisy, max_sources=3).data
    expected = encode_latent(stack, model=tiny_model)
    np.testing.assert_allclose(encode_latent(stack * u.electron, model=tiny_model), expected,
                               atol=1e-6)
    np.testing.assert_allclose(anomaly_score(stack * u.electron, model=tiny_model),
                               anomaly_score(stack, model=tiny_model), rtol=1e-6)


def test_encode_single_ccddata_cutout(tiny_model, sky):
    stack = make_cutouts(sky.noisy, max_sources=1)
    cutout = CCDData(stack.data[0], unit="electron", wcs=stack.wcs[0])
    assert encode_latent(cutout, model=tiny_model).shape == (4,)


def test_decode_in_physical_units(tiny_model, sky):
    stack = make_cutouts(sky.noisy, positions=sky.sources[:3])
    z = encode_latent(stack, model=tiny_model)
    normalised = decode_latent(z, model=tiny_model)
    physical = decode_latent(z, model=tiny_model, normalization=stack)
    assert physical.shape == stack.data.shape
    norm = stack.normalization
    np.testing.assert_allclose(physical, normalised * norm.scale[:, None, None]
                               + norm.background[:, None, None], rtol=1e-5)
    assert decode_latent(z[0], model=tiny_model).shape == (32, 32)
    with pytest.raises(ValueError, match="normalisations"):
        decode_latent(z, model=tiny_model, normalization=stack[:2])
    with pytest.raises(ValueError, match="latent_dim 4"):
        decode_latent(np.zeros((2, 5)), model=tiny_model)


def test_bad_inputs(tiny_model):
    with pytest.raises(ValueError, match=r"\(N, 32, 32\)"):
        encode_latent(np.zeros((2, 16, 16)), model=tiny_model)
    with pytest.raises(TypeError, match="numeric"):
        encode_latent(np.zeros((2, 32, 32), dtype=str), model=tiny_model)


@pytest.mark.skipif(bool(available_models("autoencoder")), reason="default weights exist")
def test_default_model_missing_is_clear():
    with pytest.raises(ModelLoadError, match="no model 'default'"):
        encode_latent(np.zeros((32, 32)))


# ----------------------------------------------------------- anomaly score


def test_anomaly_score_is_in_noise_units(rng):
    module = _zero_decoder_model()
    noise = 100 + 5 * rng.standard_normal((20, 32, 32))
    scores = anomaly_score(noise, model=module, model_error=0.0)
    # the decoder returns the background, so the score is the rms of the noise in sigma
    np.testing.assert_allclose(np.median(scores), 1.0, atol=0.1)
    hit = noise.copy()
    hit[:, 10, 10:13] += 200
    assert (anomaly_score(hit, model=module, model_error=0.0) > 2 * scores).all()
    assert isinstance(anomaly_score(noise[0], model=module), float)


@pytest.mark.parametrize("bad", [-0.1, np.nan, np.inf, "five percent", True])
def test_anomaly_score_refuses_a_bad_model_error(rng, bad):
    with pytest.raises(ValueError, match="model_error must be a finite number >= 0"):
        anomaly_score(rng.standard_normal((2, 32, 32)), model=_zero_decoder_model(),
                      model_error=bad)


def test_anomaly_score_finds_faint_lines_and_single_pixels(rng):
    module = _zero_decoder_model()
    noise = 100 + 5 * rng.standard_normal((30, 32, 32))
    base = anomaly_score(noise, model=module, model_error=0.0)
    assert np.median(base) == pytest.approx(1.05, abs=0.1)
    column = noise.copy()
    column[:, :, 16] += 5.0  # a bad column at 1 sigma: invisible in the RMS (+1.5 %)
    assert np.median(anomaly_score(column, model=module, model_error=0.0)) > 1.6
    pixel = noise.copy()
    pixel[:, 8, 20] += 50.0  # one 10-sigma hot pixel
    assert (anomaly_score(pixel, model=module, model_error=0.0) > 2.0).all()  # noise: < 1.3


def test_anomaly_score_ignores_masked_pixels(rng):
    module = _zero_decoder_model()
    stack = make_cutouts(100 + 5 * rng.standard_normal((64, 64)), positions=[[32, 32]])
    clean_score = anomaly_score(stack, model=module)
    stack.data[0, 5, 5] = 1e6
    stack.mask[0, 5, 5] = True
    # one pixel fewer in the statistics (~0.3 %), the 1e6 outlier ignored (it would give ~1e5)
    assert anomaly_score(stack, model=module)[0] == pytest.approx(clean_score[0], rel=1e-2)
    stack.mask[0] = True  # nothing left to score
    assert np.isnan(anomaly_score(stack, model=module)[0])
    assert isinstance(stack, CutoutStack)


def _ordinary_sources(rng, n=40):
    """Cutouts of one star each, on noise: what ``_zero_decoder_model`` cannot reconstruct."""
    y, x = np.mgrid[:32, :32]
    star = 200 * np.exp(-((x - 16) ** 2 + (y - 16) ** 2) / (2 * 2.0**2))
    return 100 + star + 5 * rng.standard_normal((n, 32, 32))


def test_anomaly_score_against_a_reference_of_ordinary_sources(rng):
    module = _zero_decoder_model()
    stack = _ordinary_sources(rng)
    plain = anomaly_score(stack, model=module, model_error=0.0)
    assert np.median(plain) > 3  # ordinary for the image, unusual for this model
    referenced = anomaly_score(stack, model=module, model_error=0.0, reference=stack)
    assert np.median(referenced) == pytest.approx(1.0, abs=0.15)
    hit = stack.copy()
    hit[7, 4, 25] += 500.0  # a cosmic ray beside one of the stars
    scores = anomaly_score(hit, model=module, model_error=0.0, reference=stack)
    assert scores[7] > 2 * np.delete(scores, 7).max()
    assert isinstance(anomaly_score(hit[7], model=module, reference=stack), float)
    # a reference of pure noise is no more tolerant than the default scale
    noise = 100 + 5 * rng.standard_normal((40, 32, 32))
    np.testing.assert_allclose(anomaly_score(stack, model=module, model_error=0.0,
                                             reference=noise), plain, rtol=0.1)


def test_anomaly_score_refuses_a_reference_too_small_to_have_a_median(rng):
    module = _zero_decoder_model()
    stack = _ordinary_sources(rng, 12)
    nan = np.full((12, 32, 32), np.nan)
    nan[:9] = stack[:9]  # nine usable cutouts: one too few
    for reference in (stack[:1], nan, np.full((40, 32, 32), np.nan)):
        with pytest.raises(ValueError, match="it needs at least 10"):
            anomaly_score(stack, model=module, reference=reference)
    with pytest.raises(ValueError, match="reference: cutouts are 48 pixels wide"):
        anomaly_score(stack, model=module, reference=make_cutouts(
            100 + rng.standard_normal((96, 96)), size=48, positions=[[48, 48]] * 10))


def test_anomaly_score_reference_never_more_severe_than_pure_noise(rng):
    module = _zero_decoder_model()
    stack = _ordinary_sources(rng)
    flat = np.full((20, 32, 32), 100.0)  # reconstructed exactly: every statistic 0
    np.testing.assert_array_equal(anomaly_score(stack, model=module, reference=flat),
                                  anomaly_score(stack, model=module))


def test_anomaly_score_against_itself_equals_against_a_copy(rng):
    module = _zero_decoder_model()
    stack = make_cutouts(100 + 5 * rng.standard_normal((128, 128)),
                         positions=rng.uniform(20, 108, (15, 2)))
    itself = anomaly_score(stack, model=module, reference=stack)
    np.testing.assert_allclose(itself, anomaly_score(stack, model=module, reference=stack[:]))


# ---------------------------------------------------------------- training


def test_training_task_exports_loadable_model(tmp_path):
    args = ["autoencoder", "--out", str(tmp_path), "--name", "autoencoder-tiny", "--steps", "3",
            "--arch", '{"latent_dim": 4, "channels": [4, 8]}', "--n-simulated", "2",
            "--batch-size", "4", "--threads", "1", "--val-every", "3", "--seed", "2"]
    assert train_main(args) == 0
    path = tmp_path / "autoencoder-tiny.safetensors"
    z = encode_latent(np.zeros((2, 32, 32)) + 1.0, model=str(path))
    assert z.shape == (2, 4)
    # fine-tuning keeps the architecture of the --init model and says where it started
    tuned = tmp_path / "tuned"
    args = [a for a in args if a not in ("--arch", '{"latent_dim": 4, "channels": [4, 8]}')]
    assert train_main([*args[:2], str(tuned), *args[3:], "--init", str(path)]) == 0
    module, card = load_model(tuned / "autoencoder-tiny.safetensors", task="autoencoder")
    assert module.latent_dim == 4 and card["training"]["init"]["model"] == str(path)


def test_training_samples_are_normalised_like_inference():
    from astro_nn_restore.train.autoencoder import SourcePool, make_sample

    pool = SourcePool.build(seed=0, n_simulated=1, use_hdf=False)
    sample_rng = np.random.default_rng(0)
    inputs, target = make_sample(pool.cutout(sample_rng, 32), sample_rng)
    assert inputs.shape == target.shape == (1, 32, 32)
    assert inputs.max() == pytest.approx(1.0)  # peak scale, as cutout_normalization gives
    assert abs(float(np.median(target[0, :4]))) < 0.2  # background near 0


def test_training_skies_have_varied_psfs():
    """Each simulated training sky is drawn with its own PSF (real stars are not all alike)."""
    from astro_nn_restore.simulate import simulate_sky
    from astro_nn_restore.train.autoencoder import PSF_FWHM_RANGE, SourcePool, training_psf

    pool = SourcePool.build(seed=0, n_simulated=3, use_hdf=False, shape=(64, 64))
    for i, image in enumerate(pool.images):
        expected = simulate_sky((64, 64), seed=i, psf=training_psf(0, i)).clean.data
        np.testing.assert_array_equal(image, expected.astype(np.float32))
    # FWHM from the area above half maximum, pi (FWHM / 2)^2
    fwhm = [2 * np.sqrt((k >= k.max() / 2).sum() / np.pi) for k in
            (training_psf(0, i) for i in range(40))]
    assert min(fwhm) < PSF_FWHM_RANGE[0] + 1.0 and max(fwhm) > PSF_FWHM_RANGE[1] - 1.0


def test_latent_consistency_is_scale_free_and_zero_for_identical_draws():
    from astro_nn_restore.train.autoencoder import latent_consistency

    generator = torch.Generator().manual_seed(0)
    first = torch.randn(32, 8, generator=generator)
    second = first + 0.1 * torch.randn(32, 8, generator=generator)
    value = float(latent_consistency(first, second))
    assert float(latent_consistency(first, first)) == 0.0
    assert 0 < value < 0.05
    # stretching the latent space does not change it (the encoder cannot cheat by scaling)
    assert float(latent_consistency(10 * first, 10 * second)) == pytest.approx(value, rel=1e-5)
    # unrelated draws: about 1
    other = torch.randn(32, 8, generator=generator)
    assert 0.5 < float(latent_consistency(first, other)) < 1.5


def test_consistency_training_pairs_two_noise_draws_of_one_cutout(tmp_path):
    import copy

    from astro_nn_restore.train.autoencoder import AutoencoderTask, latent_consistency
    from astro_nn_restore.train.loop import TrainConfig, training_autocast

    config = TrainConfig(out=str(tmp_path), batch_size=8,
                         extra={"consistency_weight": 0.5, "n_simulated": 2,
                                "architecture": {"latent_dim": 4, "channels": [4, 8]}})
    task = AutoencoderTask(config)
    (first, target1), (second, target2) = task._paired_batch(np.random.default_rng(1))
    assert first.shape == second.shape == (4, 1, 32, 32)
    # same clean cutouts (targets agree up to the per-draw normalisation), new noise
    for a, b in zip(target1.numpy(), target2.numpy(), strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
    assert not torch.equal(first, second)
    # the step's loss is the reconstruction loss of both draws plus the weighted term
    model = task.build_model()
    before = copy.deepcopy(model)
    loss = task.train_step(model, task.optimizer(model), 0, np.random.default_rng(2))
    (first, target1), (second, target2) = task._paired_batch(np.random.default_rng(2))
    with torch.no_grad(), training_autocast(config.precision):
        latents = before.encode(torch.cat([first, second]))
        prediction = before.decode(latents)
    expected = (task.loss(prediction.float(), torch.cat([target1, target2]), 0)
                + 0.5 * latent_consistency(*latents.float().chunk(2)))
    assert loss == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_consistency_weight_must_be_finite_and_not_negative(tmp_path, weight):
    from astro_nn_restore.train.autoencoder import AutoencoderTask
    from astro_nn_restore.train.loop import TrainConfig

    config = TrainConfig(out=str(tmp_path), extra={"consistency_weight": weight,
                                                   "n_simulated": 1})
    with pytest.raises(ValueError, match="consistency_weight"):
        AutoencoderTask(config)


@pytest.mark.parametrize("name", available_models("autoencoder"))
def test_every_shipped_autoencoder_encodes_to_its_card_size(name):
    from astro_nn_restore.registry import find_card

    model = name.split("-", 1)[1]  # "default", "latent16", ...
    size = find_card(model, task="autoencoder")["arguments"]["latent_dim"]
    stack = make_cutouts(simulate_sky((128, 128), seed=4).noisy, max_sources=3)
    z = encode_latent(stack, model=model)
    assert z.shape == (len(stack), size) and np.isfinite(z).all()
    decoded = decode_latent(z, model=model, normalization=stack)
    assert decoded.shape == stack.data.shape
    assert np.isfinite(anomaly_score(stack, model=model)).all()


@pytest.mark.filterwarnings("ignore::photutils.utils.exceptions.NoDetectionsWarning")
def test_no_source_gives_an_empty_stack_and_empty_results(rng):
    module = _zero_decoder_model()
    noise = 100 + 5 * rng.standard_normal((64, 64))
    for stack in (make_cutouts(noise), make_cutouts(noise, positions=np.empty((0, 2))),
                  make_cutouts(noise, positions=[[20, 20]], max_sources=0)):
        assert stack.data.shape == (0, 32, 32) and len(stack.normalization) == 0
        assert encode_latent(stack, model=module).shape == (0, module.latent_dim)
        assert anomaly_score(stack, model=module).shape == (0,)
    assert encode_latent(noise, model=module).shape == (0, module.latent_dim)
    assert anomaly_score(np.empty((0, 32, 32)), model=module).shape == (0,)


def test_masked_array_stack_is_treated_like_nan(rng):
    module = _zero_decoder_model()
    stack = 100 + 5 * rng.standard_normal((3, 32, 32))
    garbage = np.ma.masked_array(stack.copy(), mask=np.zeros(stack.shape, bool))
    garbage[:, 10:20, 10:20] = 1e6
    garbage.mask[:, 10:20, 10:20] = True
    with_nan = stack.copy()
    with_nan[:, 10:20, 10:20] = np.nan
    for function in (anomaly_score, encode_latent):
        np.testing.assert_allclose(function(garbage, model=module),
                                   function(with_nan, model=module))
    assert (garbage.data[:, 10:20, 10:20] == 1e6).all()  # the input is untouched


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(positions=[[10.0, 20.0], [500.0, 500.0]]), r"positions\[1\] = \(x, y\) = \(500, 500\)"),
    (dict(positions=[[np.nan, 10.0]]), "not on the 64x64 image"),
    (dict(positions=[[1e20, 1e20]]), "not on the 64x64 image"),
    (dict(max_sources=-1), "max_sources must be an integer >= 0"),
    (dict(max_sources=True), "max_sources must be an integer >= 0"),
    (dict(max_sources=np.nan), "max_sources must be an integer >= 0"),
    (dict(max_sources="3"), "max_sources must be an integer >= 0"),
    (dict(size=31.5), "size must be an integer >= 4"),
    (dict(size=np.inf), "size must be an integer >= 4"),
    (dict(threshold=-1.0), "threshold must be a finite number > 0"),
])
def test_make_cutouts_refuses_positions_off_the_image_and_bad_limits(kwargs, message):
    image = simulate_sky((64, 64), seed=9).noisy
    with pytest.raises(ValueError, match=message):
        make_cutouts(image, **kwargs)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, np.nan, "8"])
def test_latent_batch_size_must_be_a_positive_integer(rng, batch_size):
    module = _zero_decoder_model()
    stack = 100 + 5 * rng.standard_normal((3, 32, 32))
    for call in (lambda: encode_latent(stack, model=module, batch_size=batch_size),
                 lambda: decode_latent(np.zeros((3, module.latent_dim)), model=module,
                                       batch_size=batch_size),
                 lambda: anomaly_score(stack, model=module, batch_size=batch_size)):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            call()


def test_decode_latent_refuses_complex_vectors():
    module = _zero_decoder_model()
    with pytest.raises(TypeError, match="latent vectors must be real numbers"):
        decode_latent(np.zeros((2, module.latent_dim), complex), model=module)


@pytest.mark.parametrize(("model", "size"), [("default", 8), ("latent16", 16), ("latent32", 32)])
def test_shipped_latent_sizes(model, size):
    if f"autoencoder-{model}" not in available_models("autoencoder"):
        pytest.skip(f"autoencoder-{model} is not shipped")
    stack = make_cutouts(simulate_sky((128, 128), seed=4).noisy, max_sources=2)
    assert encode_latent(stack, model=model).shape == (len(stack), size)


def test_an_image_is_parsed_once_per_call():
    """A header warning (here: a WCS that wcslib rejects) is given once, not per parse."""
    import warnings

    sky = simulate_sky((96, 96), seed=3).noisy
    header = sky.wcs.to_header()
    header["CDELT1"] = header["CDELT2"] = 0.0
    for key in [k for k in header if k.startswith(("PC", "CD")) and not k.startswith("CDELT")]:
        del header[key]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encode_latent((sky.data, header), model=_zero_decoder_model())
    assert sum("WCS is not valid" in str(w.message) for w in caught) == 1

"""The shared training loop: a tiny model for a few steps, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from astro_nn_restore.registry import load_model
from astro_nn_restore.train.__main__ import build_parser, main
from astro_nn_restore.train.loop import TrainConfig, TrainTask, fit

TINY = ["--arch", json.dumps({"channels": [8, 16], "blocks": 1, "dilations": [2]}),
        "--n-simulated", "2", "--batch-size", "2", "--patch-size", "32", "--threads", "1",
        "--val-every", "3", "--checkpoint-every", "2", "--seed", "3"]


def _train_args(out, steps, *extra):
    return ["denoise", "--out", str(out), "--name", "denoise-tiny", "--steps", str(steps),
            *TINY, *extra]


def _command(out, steps, *extra):
    return [sys.executable, "-m", "astro_nn_restore.train", *_train_args(out, steps, *extra)]


def _weights(out):
    from safetensors.numpy import load_file

    return load_file(out / "denoise-tiny.safetensors")


def test_help_lists_tasks(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "denoise" in capsys.readouterr().out


def test_train_exports_loadable_model(tmp_path):
    assert main(_train_args(tmp_path, 4)) == 0
    module, card = load_model(tmp_path / "denoise-tiny.safetensors", task="denoise")
    assert card["task"] == "denoise"
    assert card["training"]["steps"] == 4
    import astro_nn_restore

    assert card["training"]["code_version"].startswith(astro_nn_restore.__version__)
    assert card["training"]["command"].startswith("python -m astro_nn_restore.train denoise")
    assert 0 < card["calibration"]["residual_sigma_ratio"] < 5
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,train_loss,val_loss,val_psnr,val_ssim")
    assert [r.split(",")[0] for r in rows[1:]] == ["3", "4"]


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    # every run in a fresh process, as a user runs them: torch settings changed by
    # other tests in this process must not leak into the comparison
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    steps = 30
    subprocess.run(_command(straight, steps), check=True, capture_output=True)

    process = subprocess.Popen(_command(killed, steps), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoint.safetensors"
    deadline = time.monotonic() + 900  # the machine may be busy
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "the run was killed before its first checkpoint"
    assert not (killed / "denoise-tiny.safetensors").exists(), "the run finished before the kill"

    subprocess.run(_command(killed, steps, "--resume"), check=True, capture_output=True)
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert (straight / "metrics.csv").read_text().count("\n") == (
        killed / "metrics.csv").read_text().count("\n")


def test_checkpoint_is_written_atomically(tmp_path):
    main(_train_args(tmp_path, 2))
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert leftovers == []


class _OvershootTask(TrainTask):
    """One weight pushed steadily upwards; validation is best when it is near 0.05.

    With Adam at lr 0.01 the weight passes 0.05 after about five steps and then
    keeps rising, so validation gets worse: the exported weight must be the
    best one, not the last.
    """

    task = "denoise"

    def build_model(self):
        model = torch.nn.Conv2d(1, 1, 1, bias=False)
        torch.nn.init.zeros_(model.weight)
        model.config = {}
        return model

    def batch(self, step, rng):
        return torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)

    def loss(self, prediction, target, step):
        if step is None:  # validation: squared distance of the weight from 0.05
            return (prediction.mean() - 0.05) ** 2
        return -prediction.mean()

    def validation_batches(self):
        return [(torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))]

    def card(self, model):
        return {}

    def optimizer(self, model):
        return torch.optim.Adam(model.parameters(), lr=0.01)


@pytest.mark.parametrize("export_best", [True, False])
def test_export_takes_best_validation_weights(tmp_path, export_best):
    config = TrainConfig(out=str(tmp_path), steps=20, val_every=1, patience=100,
                         precision="fp32", name="overshoot")
    task = _OvershootTask(config)
    task.export_best = export_best
    card = fit(task, config)
    weight = float(load_file(tmp_path / "overshoot.safetensors")["weight"].ravel()[0])
    if export_best:
        assert 0.03 < weight < 0.07
        assert card["validation"]["step"] == 5
    else:
        assert weight > 0.09
        assert card["validation"]["step"] == 20
    assert card["training"]["steps"] == 20



def test_export_last_takes_the_final_weights_also_on_resume(tmp_path):
    """--export-last ships the last step's weights; ``--resume --steps N --export-last``
    at the step a run stopped exports them without training; fewer steps is refused."""
    settings = dict(out=str(tmp_path), steps=20, val_every=1, patience=100, precision="fp32",
                    name="overshoot")
    best = fit(_OvershootTask(TrainConfig(**settings)), TrainConfig(**settings))
    assert best["validation"]["step"] == 5
    last = TrainConfig(**settings, resume=True, export_last=True)
    card = fit(_OvershootTask(last), last)
    assert card["validation"]["step"] == card["training"]["steps"] == 20
    assert float(load_file(tmp_path / "overshoot.safetensors")["weight"].ravel()[0]) > 0.09
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 21  # no step was added
    short = TrainConfig(**{**settings, "steps": 10}, resume=True)
    with pytest.raises(ValueError, match="at step 20, beyond --steps 10"):
        fit(_OvershootTask(short), short)

@pytest.mark.parametrize("task_name", ["denoise", "deblur", "superres"])
def test_training_draws_real_patches(tmp_path, task_name):
    """Real images (HDF + scikit-image's but the Moon) in REAL_SHARE of the patches."""
    import importlib

    from astro_nn_restore.datasets import PACKAGED_IMAGES, ImagePool
    from astro_nn_restore.train import TASKS

    share = importlib.import_module(f"astro_nn_restore.train.{task_name}").REAL_SHARE
    config = TrainConfig(out=str(tmp_path), patch_size=32, extra={"n_simulated": 1})
    task = TASKS[task_name]()(config)
    assert len(task.real.images) == len(PACKAGED_IMAGES)  # HDF + all but the Moon
    moon = ImagePool.validation().images[0]
    assert not any(image.shape == moon.shape and np.array_equal(image, moon)
                   for image in task.real.images)
    task.real, task.simulated = ImagePool([np.ones((99, 99))]), ImagePool([np.zeros((99, 99))])
    rng = np.random.default_rng(0)
    crop = (lambda: task._crop(rng)) if task_name == "denoise" else (lambda: task._crop(rng, 32))
    assert np.mean([crop().mean() for _ in range(1000)]) == pytest.approx(share, abs=0.05)


def test_deblur_fine_tuning_applies_every_stage_from_the_start(tmp_path):
    from astro_nn_restore.train import TASKS

    tasks = {init: TASKS["deblur"]()(TrainConfig(out=str(tmp_path), steps=100,
                                                 extra={"n_simulated": 1, "init": init}))
             for init in (None, "default")}
    assert [tasks[None]._stage(s) for s in (0, 50, 56, 99)] == [1, 2, 3, 3]
    assert [tasks["default"]._stage(s) for s in (0, 99)] == [3, 3]
    assert tasks["default"].arguments == load_model("default", task="deblur")[1]["arguments"]
    with pytest.raises(ValueError, match="exclude each other"):  # before any data is built
        TASKS["deblur"]()(TrainConfig(out=str(tmp_path), extra={
            "n_simulated": 1, "init": "default", "architecture": {"features": 8}}))


def test_deblur_fine_tuning_loss_has_every_term_at_step_zero(tmp_path):
    from astro_nn_restore.train import TASKS

    tasks = [TASKS["deblur"]()(TrainConfig(out=str(tmp_path), steps=100,
                                           extra={"n_simulated": 1, "init": init}))
             for init in (None, "default")]
    target = torch.zeros(2, 1, 8, 8)
    prediction = target + 1.0  # a flux error of 1 and an RMSE of 1 per patch
    scratch, fine_tuning = (task.loss(prediction, target, 0) for task in tasks)
    assert float(fine_tuning - scratch) == pytest.approx(0.3 + 0.5, rel=1e-5)


def _run_files(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_resume_must_repeat_init(tmp_path, capsys):
    assert main(_train_args(tmp_path, 2)) == 0
    start = tmp_path / "denoise-tiny.safetensors"
    before = _run_files(tmp_path)
    assert main([*_train_args(tmp_path, 4, "--resume", "--init", str(start))]) == 2
    assert "--resume must repeat the run's settings (extra:" in capsys.readouterr().err
    assert _run_files(tmp_path) == before


def test_a_folder_holding_a_run_is_kept_unless_resume_or_overwrite(tmp_path, capsys):
    assert main(_train_args(tmp_path, 2)) == 0
    before = _run_files(tmp_path)
    for extra in ((), ("--batch-size", "0"), ("--resume", "--overwrite")):
        assert main(_train_args(tmp_path, 2, *extra)) == 2
        assert _run_files(tmp_path) == before, extra  # nothing rewritten, not even metrics.csv
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--batch-size must be an integer >= 1" in err
    assert "give one of them" in err
    assert main(_train_args(tmp_path, 2, "--overwrite", "--seed", "4")) == 0
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 4


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--steps", "0", "--steps must be an integer >= 1"),
    ("--steps", "-5", "--steps must be an integer >= 1"),
    ("--val-every", "0", "--val-every must be an integer >= 1"),
    ("--checkpoint-every", "0", "--checkpoint-every must be an integer >= 1"),
    ("--clip-grad", "-1", "--clip-grad must be a finite number > 0"),
    ("--lr", "nan", "--lr must be a finite number > 0"),
    ("--threads", "0", "--threads must be an integer >= 1"),
    ("--seed", "-1", "--seed must be an integer >= 0"),
    ("--patch-size", "30", "--patch-size 30 must be a multiple of 4"),
    ("--data", "no/such/folder", "--data no/such/folder: no such folder"),
])
def test_settings_that_cannot_train_are_refused_before_anything_is_written(
        tmp_path, capsys, option, value, message):
    out = tmp_path / "run"
    assert main(_train_args(out, 3, option, value)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_resume_compares_settings_as_saved(tmp_path, monkeypatch):
    from astro_nn_restore.train.loop import check_out

    (tmp_path / "frames").mkdir()
    config = TrainConfig(out=str(tmp_path / "run"), steps=3, val_every=3, checkpoint_every=1,
                         precision="fp32",
                         data=str(tmp_path / "frames"), name="overshoot",
                         extra={"architecture": {"channels": (16, 32)}})
    fit(_OvershootTask(config), config)
    monkeypatch.chdir(tmp_path)
    again = TrainConfig(**{**config.__dict__, "resume": True, "steps": 6, "data": "frames"})
    check_out(again, "denoise")  # a tuple saved as a list, the same folder spelt otherwise


def test_resume_needs_a_checkpoint_and_the_same_settings(tmp_path, capsys):
    assert main(_train_args(tmp_path / "new", 2, "--resume")) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(_train_args(tmp_path, 3)) == 0  # ends between checkpoints (every 2 steps)
    with safe_open(tmp_path / "checkpoint.safetensors", "pt") as handle:
        assert json.loads(handle.metadata()["state"])["step"] == 3  # the last step is saved
    before = _run_files(tmp_path)
    assert main(_train_args(tmp_path, 4, "--resume", "--seed", "9", "--lr", "0.1")) == 2
    err = capsys.readouterr().err
    assert "seed: 3 in the run, 9 now" in err and "lr: 0.001 in the run, 0.1 now" in err
    assert _run_files(tmp_path) == before
    assert main(_train_args(tmp_path, 5, "--resume")) == 0  # only --steps changed
    card = json.loads((tmp_path / "denoise-tiny.json").read_text())
    assert card["training"]["steps"] == 5 and " && " in card["training"]["command"]


@pytest.mark.parametrize("damage", ["truncated", "zeros", "empty", "other architecture"])
def test_resume_from_a_damaged_checkpoint_is_a_one_line_error(tmp_path, capsys, damage):
    assert main(_train_args(tmp_path, 2)) == 0
    checkpoint = tmp_path / "checkpoint.safetensors"
    content = checkpoint.read_bytes()
    extra = ()
    if damage == "other architecture":  # config.json gone, so --arch is not compared
        (tmp_path / "config.json").unlink()
        extra = ("--arch", json.dumps({"channels": [4, 8], "blocks": 1, "dilations": [2]}))
    else:
        checkpoint.write_bytes({"truncated": content[: len(content) // 2],
                                "zeros": bytes(len(content)), "empty": b""}[damage])
    before = _run_files(tmp_path)
    args = _train_args(tmp_path, 4, "--resume")
    if extra:
        args = args[:args.index("--arch")] + list(extra) + args[args.index("--arch") + 2:]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot resume from" in err and "--overwrite" in err
    assert _run_files(tmp_path) == before


@pytest.mark.parametrize("arch", [{"channels": []}, {"channels": [8, -16]}, {"channels": "abc"}])
def test_an_arch_that_builds_no_network_is_a_one_line_error(tmp_path, capsys, arch):
    args = _train_args(tmp_path, 2)
    args[args.index("--arch") + 1] = json.dumps(arch)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not build a denoise network" in err
    assert not any(tmp_path.iterdir())


def test_n_simulated_below_one_is_refused_before_anything_is_written(tmp_path, capsys):
    args = _train_args(tmp_path, 2)
    args[args.index("--n-simulated") + 1] = "0"
    assert main(args) == 2
    assert "--n-simulated" in capsys.readouterr().err and not any(tmp_path.iterdir())
    assert main(_train_args(tmp_path, 2)) == 0  # the corrected command runs in the same OUT


@pytest.mark.parametrize("task_name", ["deblur", "autoencoder", "superres"])
def test_init_with_another_tasks_model_is_a_one_line_error(tmp_path, capsys, task_name):
    assert main(_train_args(tmp_path / "denoise", 2)) == 0
    init = tmp_path / "denoise" / "denoise-tiny.safetensors"
    assert main([task_name, "--out", str(tmp_path / "b"), "--steps", "2", "--batch-size", "2",
                 "--patch-size", "32", "--n-simulated", "1", "--threads", "1",
                 "--init", str(init)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"is a 'denoise' model, not a '{task_name}' model" in err


def test_a_run_that_fails_before_its_first_checkpoint_leaves_out_usable(tmp_path):
    config = TrainConfig(out=str(tmp_path), steps=20, val_every=1, checkpoint_every=100,
                         precision="fp32", name="nan")
    task = _DivergingTask(config)
    task.nan_step = 2
    with pytest.raises(FloatingPointError):
        fit(task, config)
    assert not any(tmp_path.iterdir())


def test_arch_must_be_a_json_object(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["denoise", "--out", str(tmp_path), "--arch", "[1, 2]"])
    assert exit_info.value.code == 2
    assert "must be a JSON object" in capsys.readouterr().err


class _DivergingTask(_OvershootTask):
    nan_step = 3

    def loss(self, prediction, target, step):
        return prediction.mean() * (np.nan if step == self.nan_step else 1.0)


@pytest.mark.parametrize("name", ["sub/model", "../model", "", ".."])
def test_name_must_be_a_file_name(tmp_path, capsys, name):
    assert main(_train_args(tmp_path / "run", 2)[:3] + ["--name", name, "--steps", "2", *TINY]) == 2
    assert "must be a file name" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_overwrite_leaves_nothing_of_the_old_run_to_resume(tmp_path, capsys):
    assert main(_train_args(tmp_path, 4)) == 0
    (tmp_path / "notes.txt").write_text("mine")
    config = TrainConfig(out=str(tmp_path), steps=20, val_every=1, checkpoint_every=100,
                         precision="fp32", name="nan", overwrite=True)
    task = _DivergingTask(config)
    task.nan_step = 0  # the replacing run dies before its first checkpoint
    with pytest.raises(FloatingPointError):
        fit(task, config)
    assert not (tmp_path / "checkpoint.safetensors").exists()
    assert not (tmp_path / "best.safetensors").exists()
    # the old run's exported model is gone too: it is not this run's result
    assert not (tmp_path / "denoise-tiny.safetensors").exists()
    assert not (tmp_path / "denoise-tiny.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert main(_train_args(tmp_path, 4, "--resume")) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_a_non_finite_training_loss_stops_the_run_before_its_checkpoint(tmp_path):
    config = TrainConfig(out=str(tmp_path), steps=10, val_every=1, checkpoint_every=2,
                         precision="fp32", name="nan")
    with pytest.raises(FloatingPointError, match="training loss is nan at step 3"):
        fit(_DivergingTask(config), config)
    from astro_nn_restore.train.checkpoint import load_checkpoint

    model = _DivergingTask(config).build_model()
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    state = load_checkpoint(tmp_path / "checkpoint.safetensors", model, optimizer, scheduler)
    assert state["step"] == 2 and torch.isfinite(model.weight).all()


def test_fits_folder_images_fill_non_finite_pixels_and_skip_unusable_files(tmp_path):
    from astropy.io import fits

    from astro_nn_restore.datasets import fits_folder_images

    rng = np.random.default_rng(0)
    fits.PrimaryHDU(rng.random((16, 16)).astype(np.float32)).writeto(tmp_path / "good.fits")
    holes = rng.random((16, 16))
    holes[3, 3], holes[5, 5] = np.nan, np.inf
    fits.PrimaryHDU(holes).writeto(tmp_path / "holes.fits")
    fits.PrimaryHDU(np.full((16, 16), np.nan)).writeto(tmp_path / "empty.fits")
    fits.PrimaryHDU(np.zeros((3, 8, 8))).writeto(tmp_path / "cube.fits")
    (tmp_path / "garbage.fits").write_text("not FITS " * 400)
    (tmp_path / "truncated.fits").write_bytes((tmp_path / "good.fits").read_bytes()[:3000])
    with pytest.warns(UserWarning, match="skipping") as caught:
        images = fits_folder_images(tmp_path)
    skipped = sorted(str(w.message).split(":")[0].split("/")[-1] for w in caught
                     if "skipping" in str(w.message))
    assert skipped == ["cube.fits", "empty.fits", "garbage.fits", "truncated.fits"]
    assert len(images) == 2 and all(np.isfinite(i).all() for i in images)
    median = np.float32(np.median(holes[np.isfinite(holes)]))
    assert any(i[3, 3] == i[5, 5] == median for i in images)
    with pytest.warns(UserWarning, match="expected a 2-D image"), \
            pytest.raises(ValueError, match="no usable 2-D FITS images"):
        fits_folder_images(tmp_path, pattern="cube*")


def test_pools_draw_the_same_samples_as_before_the_image_pool_refactor():
    """Sums of the first samples of ColorPool, ImagePool and SourcePool, recorded with the
    code before they shared `ImagePool`: the shipped cards' commands still reproduce."""
    from astro_nn_restore.datasets import ImagePool, hubble_deep_field
    from astro_nn_restore.train.autoencoder import SourcePool
    from astro_nn_restore.train.colorize import ColorPool

    lightness, chroma = ColorPool.build(seed=0, n_simulated=2, hdf_share=0.9).sample(
        np.random.default_rng(5), 64)
    assert (float(lightness.sum()), float(chroma.sum())) == pytest.approx(
        (240.93785, -1865.2561), rel=1e-6)
    pool = ImagePool(ImagePool.simulated(seed=0, n=2).images + [hubble_deep_field("train")])
    assert float(pool.random_crop(np.random.default_rng(6), 64).sum()) == pytest.approx(
        413091.875, rel=1e-6)
    sources = SourcePool.build(seed=0, n_simulated=2)
    assert float(sources.cutout(np.random.default_rng(7), 32).sum()) == pytest.approx(
        101470.97, rel=1e-6)


def test_card_data_names_the_folder_beside_the_built_in_data(tmp_path):
    config = TrainConfig(out=str(tmp_path), data="/data/stacks")
    task = TrainTask(config)
    assert task.data_description() == (f"{TrainTask.training_data} + FITS folder /data/stacks")
    assert TrainTask(TrainConfig(out=str(tmp_path))).data_description() == TrainTask.training_data


def test_denoise_calibration_separates_simulated_and_moon_batches(tmp_path):
    """The shipped ratio comes from noise-free simulated references; the Moon's is apart."""
    from astro_nn_restore.train import TASKS

    task = TASKS["denoise"]()(TrainConfig(out=str(tmp_path), extra={"n_simulated": 1}))

    class Identity(torch.nn.Module):  # the noisy input: residual = the added noise
        def forward(self, inputs):
            return inputs[:, :1]

    calibration = task.calibrate(Identity())["calibration"]
    assert calibration["residual_sigma_ratio"] == pytest.approx(1.0, abs=0.1)
    assert calibration["residual_sigma_ratio_moon"] == pytest.approx(1.0, abs=0.1)

    class Zero(torch.nn.Module):  # residual = the clean image: Moon and skies differ
        def forward(self, inputs):
            return torch.zeros_like(inputs[:, :1])

    stds = [float((-target[:, 0] / inputs[:, 1]).std())
            for inputs, target in task.validation_batches()]
    calibration = task.calibrate(Zero())["calibration"]
    assert calibration["residual_sigma_ratio"] == pytest.approx(np.median(stds[:2]), rel=1e-3)
    assert calibration["residual_sigma_ratio_moon"] == pytest.approx(np.median(stds[2:]),
                                                                     rel=1e-3)


def test_simulated_pools_with_varied_psfs():
    """Denoise skies each get their own PSF (real images do not share one)."""
    from astro_nn_restore.datasets import ImagePool, sky_psf
    from astro_nn_restore.simulate import simulate_sky
    from astro_nn_restore.train.denoise import DIFFUSE_SHARE, PSF_FWHM_RANGE, DenoiseTask

    pool = ImagePool.simulated(seed=4, n=2, shape=(64, 64), fwhm_range=(1.2, 6.0))
    for i, image in enumerate(pool.images):
        expected = simulate_sky((64, 64), seed=4 * 100_003 + i, psf=sky_psf(4, i, (1.2, 6.0)))
        np.testing.assert_array_equal(image, expected.clean.data.astype(np.float32))
    fwhm = {round(2 * np.sqrt((k >= k.max() / 2).sum() / np.pi), 2)
            for k in (sky_psf(4, i, (1.2, 6.0)) for i in range(10))}
    assert len(fwhm) > 5
    # the denoise task's skies: varied PSFs, and diffuse emission on some (sky 3 of seed 4)
    config = TrainConfig(out="unused", seed=4, extra={"n_simulated": 4})
    denoise = DenoiseTask(config)
    varied = ImagePool.simulated(seed=4, n=4, fwhm_range=PSF_FWHM_RANGE,
                                 diffuse_share=DIFFUSE_SHARE)
    without = ImagePool.simulated(seed=4, n=4, fwhm_range=PSF_FWHM_RANGE)
    for a, b in zip(denoise.simulated.images, varied.images, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(varied.images, without.images,
                                                        strict=True))


def test_simulated_pool_diffuse_emission_is_added_to_the_same_skies():
    from astro_nn_restore.datasets import ImagePool

    # the defaults draw the same skies as before fwhm_range and diffuse_share existed
    recorded = [6604634.5, 6619595.0]
    assert [float(i.sum()) for i in ImagePool.simulated(seed=0, n=2).images] == recorded

    plain = ImagePool.simulated(seed=2, n=3, shape=(64, 64), fwhm_range=(1.2, 6.0)).images
    every = ImagePool.simulated(seed=2, n=3, shape=(64, 64), fwhm_range=(1.2, 6.0),
                                diffuse_share=1.0).images
    for a, b in zip(plain, every, strict=True):
        extra = b - a
        assert (extra > 0).all()  # positive emission on top of the same sources
        assert extra.std() > 0.05 * extra.mean()  # structured, not a constant offset


def test_deblur_skies_are_the_same_as_before_the_shared_diffuse_helper():
    """Sums recorded with deblur's own nebula code: its shipped card's command reproduces."""
    from astro_nn_restore.train.deblur import simulated_pool

    sums = [float(np.float64(image.sum())) for image in simulated_pool(0, 4)]
    assert sums == [6612021.0, 6816186.5, 6695225.0, 7718452.0]

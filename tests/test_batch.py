"""process_files over folders of FITS files, locally and on a LocalCluster (issue 10)."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from numpy.testing import assert_allclose

from astro_nn_restore.simulate import simulate_sky

torch = pytest.importorskip("torch")
ccdproc = pytest.importorskip("ccdproc")

from astro_nn_restore import cli, denoise_residual  # noqa: E402
from astro_nn_restore.batch import process_files  # noqa: E402
from astro_nn_restore.models.denoise import ResidualUNet  # noqa: E402
from astro_nn_restore.registry import load_model, save_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """Weights file of an untrained tiny denoiser (workers load it themselves)."""
    net = ResidualUNet(channels=(8, 16), blocks=1, dilations=(2,), space_to_depth=2)
    arguments = {k: list(v) if isinstance(v, tuple) else v for k, v in net.config.items()}
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(net, path, {"task": "denoise", "architecture": "ResidualUNet",
                           "arguments": arguments})
    return str(path)


@pytest.fixture
def folder(tmp_path):
    """Three tiny FITS frames in ``tmp_path / 'raw'``."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        simulate_sky((40, 48), seed=i).noisy.write(raw / f"frame{i}.fits")
    return raw


def _statuses(table):
    return dict(zip((p.rsplit("/", 1)[1] for p in table["input"]), table["status"], strict=True))


def test_local_run_then_rerun_skips(folder, tiny_model, tmp_path):
    collection = ccdproc.ImageFileCollection(folder)
    table = process_files(collection, "denoise", tmp_path / "out", model=tiny_model)
    assert list(table["status"]) == ["done"] * 3
    for row in table:
        written = CCDData.read(row["output"])
        expected = denoise_residual(CCDData.read(row["input"]), model=tiny_model)
        assert_allclose(written.data, expected.data, rtol=1e-6)
        assert written.header["ANR_OP"] == "denoise_residual"
    again = process_files(collection, "denoise", tmp_path / "out", model=tiny_model)
    assert list(again["status"]) == ["skipped"] * 3
    assert all("exists" in m for m in again["message"])


def test_never_overwrites_unless_asked(folder, tiny_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame0_denoise.fits").write_bytes(b"precious")
    table = process_files(sorted(folder.glob("*.fits")), "denoise", out, model=tiny_model)
    assert _statuses(table) == {"frame0.fits": "skipped", "frame1.fits": "done",
                                "frame2.fits": "done"}
    assert (out / "frame0_denoise.fits").read_bytes() == b"precious"
    table = process_files(sorted(folder.glob("*.fits")), "denoise", out, model=tiny_model,
                          overwrite=True)
    assert list(table["status"]) == ["done"] * 3
    assert CCDData.read(out / "frame0_denoise.fits").shape == (40, 48)


def test_failing_file_is_reported_and_others_go_on(folder, tiny_model, tmp_path):
    (folder / "broken.fits").write_bytes(b"not a FITS file")
    files = sorted(folder.glob("*.fits"))
    table = process_files(files, "denoise", tmp_path / "out", model=tiny_model)
    statuses = _statuses(table)
    assert statuses.pop("broken.fits") == "failed"
    assert set(statuses.values()) == {"done"}
    assert table["message"][0]  # the error is given
    assert not list((tmp_path / "out").glob("*broken*"))  # no partial output
    assert not list((tmp_path / "out").glob(".*"))


def test_bad_arguments(folder, tmp_path):
    with pytest.raises(ValueError, match="unknown operation"):
        process_files([], "sharpen", tmp_path)
    with pytest.raises(TypeError, match="list of files"):
        process_files(str(folder), "denoise", tmp_path)


def test_cli_batch(folder, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["batch", "denoise", str(folder), "-o", str(out), "--model", tiny_model,
            "--precision", "fp32"]
    assert cli.main(argv) == 0
    assert "3 done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.fits")) == [
        f"frame{i}_denoise.fits" for i in range(3)]
    assert cli.main(argv) == 0
    assert "0 done, 3 skipped, 0 failed" in capsys.readouterr().out
    assert cli.main(["batch", "denoise", str(tmp_path / "nowhere"), "-o", str(out)]) == 2


def test_cli_batch_reports_unreadable_files_as_failed(folder, tiny_model, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "frame0.fits").write_bytes((folder / "frame0.fits").read_bytes())
    (inputs / "garbage.fits").write_text("not FITS " * 400)
    (inputs / "empty.fits").write_bytes(b"")
    argv = ["batch", "denoise", str(inputs), "-o", str(tmp_path / "out"), "--model", tiny_model]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "1 done, 0 skipped, 2 failed" in out
    assert "garbage.fits" in out and "empty.fits" in out
    assert cli.main([*argv[:2], str(inputs), "-o", str(tmp_path / "o2"), "--pattern",
                     "*.fit"]) == 2
    assert "no files matching '*.fit'" in capsys.readouterr().err
    assert cli.main([*argv[:2], str(inputs / "frame0.fits"), "-o", str(tmp_path / "o3")]) == 2
    assert "is a file: batch takes a folder" in capsys.readouterr().err
    assert cli.main([*argv, "--factor", "2"]) == 2
    assert "--factor is not an option of denoise" in capsys.readouterr().err


def test_batch_writes_colour_results_as_band_cubes(tiny_model, tmp_path):
    inputs = tmp_path / "rgb"
    inputs.mkdir()
    cube = np.random.default_rng(2).uniform(0, 1, (3, 32, 40)).astype(np.float32)
    fits.PrimaryHDU(cube).writeto(inputs / "colour.fits")
    table = process_files([inputs / "colour.fits"], "denoise", tmp_path / "out", model=tiny_model)
    assert list(table["status"]) == ["done"], table["message"][0]
    header = fits.getheader(tmp_path / "out" / "colour_denoise.fits")
    assert (header["NAXIS3"], header["CTYPE3"], header["ANR_OP"]) == (3, "BAND",
                                                                     "denoise_residual")
    module, _ = load_model(tiny_model, task="denoise")  # a module, as the doctest passes
    table = process_files([inputs / "colour.fits"], "denoise", tmp_path / "mod", model=module)
    assert list(table["status"]) == ["done"], table["message"][0]
    header = fits.getheader(tmp_path / "mod" / "colour_denoise.fits")
    assert header["ANR_MOD"] == "ResidualUNet" and header["ANR_SHA"] == "user-module"


@pytest.mark.slow
def test_local_cluster_two_processes(folder, tiny_model, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        table = process_files(ccdproc.ImageFileCollection(folder), "denoise", tmp_path / "out",
                              client=client, model=tiny_model)
        assert list(table["status"]) == ["done"] * 3
        again = process_files(ccdproc.ImageFileCollection(folder), "denoise",
                              tmp_path / "out", client=client, model=tiny_model)
        assert list(again["status"]) == ["skipped"] * 3
    local = denoise_residual(CCDData.read(folder / "frame1.fits"), model=tiny_model)
    assert np.allclose(CCDData.read(tmp_path / "out" / "frame1_denoise.fits").data, local.data,
                       rtol=1e-5)


def test_cli_batch_unit_for_files_without_bunit(tiny_model, tmp_path, capsys):
    from astro_nn_restore.cli import main

    folder = tmp_path / "raw"
    folder.mkdir()
    fits.PrimaryHDU(np.random.default_rng(6).normal(100, 5, (40, 48)).astype(np.float32)
                    ).writeto(folder / "a.fits")
    out = tmp_path / "out"
    assert main(["batch", "denoise", str(folder), "-o", str(out), "--model", tiny_model,
                 "--unit", "adu", "--tile-size", "32", "--overlap", "8"]) == 0
    written = list(out.glob("*.fits"))
    assert len(written) == 1 and fits.getheader(written[0])["BUNIT"].lower() == "adu"

"""Tests for astro_nn_restore.registry: safetensors weights + JSON model cards."""

import hashlib
import json
import os
import pathlib
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from astro_nn_restore import registry  # noqa: E402
from astro_nn_restore.models import ResidualUNet  # noqa: E402
from astro_nn_restore.registry import (  # noqa: E402
    ModelLoadError,
    available_models,
    load_model,
    save_model,
)

ARGS = dict(channels=(8, 16), blocks=1, dilations=(2,), space_to_depth=2)


def _jsonable(config):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def _card(net, task="denoise"):
    return {"task": task, "architecture": "ResidualUNet", "arguments": _jsonable(net.config)}


@pytest.fixture
def net():
    """A tiny ResidualUNet with every weight random (none left at its zero init)."""
    torch.manual_seed(0)
    module = ResidualUNet(**ARGS)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.1)
    return module.eval()


@pytest.fixture
def saved(net, tmp_path):
    path = tmp_path / "tiny.safetensors"
    card = save_model(net, path, _card(net))
    return path, card


def _forward(module, x):
    with torch.inference_mode():
        return module(x)


def _rewrite_card(path, **changes):
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card.update(changes)
    card_path.write_text(json.dumps(card))


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- round trip
@pytest.mark.parametrize("as_type", [str, pathlib.Path, lambda p: str(p.with_suffix(".json"))])
def test_round_trip_identical_outputs(net, saved, as_type):
    path, card = saved
    loaded, loaded_card = load_model(as_type(path), task="denoise")
    assert loaded is not net and not loaded.training
    x = torch.randn(2, 2, 32, 48, generator=torch.Generator().manual_seed(1))
    x[:, 1] = x[:, 1].abs() + 0.5
    assert torch.equal(_forward(loaded, x), _forward(net, x))
    assert loaded_card["sha256"] == card["sha256"] == _sha(path)
    assert loaded_card["name"] == "tiny" and loaded_card["task"] == "denoise"


def test_saved_weights_have_the_usual_permissions(saved):
    path, _ = saved
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_writes_card_and_no_temporary_files(saved):
    path, card = saved
    on_disk = json.loads(path.with_suffix(".json").read_text())
    assert on_disk == card
    assert on_disk["arguments"] == _jsonable(ResidualUNet(**ARGS).config)
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.json", "tiny.safetensors"]


def test_load_module_used_as_is(net):
    net.train()
    module, card = load_model(net, task="denoise")
    assert module is net and not module.training
    assert card["name"] == "ResidualUNet" and card["task"] == "denoise"


def test_registry_names(net, tmp_path, monkeypatch):
    """Names resolve in the weights folder: 'TASK-NAME' or 'NAME' with a task."""
    save_model(net, tmp_path / "denoise-tiny.safetensors", _card(net))
    save_model(net, tmp_path / "deblur-other.safetensors", _card(net, task="deblur"))
    monkeypatch.setattr(registry, "weights_dir", lambda: tmp_path)
    assert available_models() == ["deblur-other", "denoise-tiny"]
    assert available_models("denoise") == ["denoise-tiny"]
    for name in ("tiny", "denoise-tiny"):
        _, card = load_model(name, task="denoise")
        assert card["name"] == "denoise-tiny"
    with pytest.raises(ModelLoadError, match=r"no model 'nope'.*\(denoise-tiny\)"):
        load_model("nope", task="denoise")


def test_unknown_name_lists_shipped_models():
    known = available_models("denoise")
    with pytest.raises(ModelLoadError, match="no model 'no-such-model'") as info:
        load_model("no-such-model", task="denoise")
    for name in known or ["none"]:
        assert name in str(info.value)


# ------------------------------------------------------------ refused files
def test_truncated_weights(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="sha256 .* truncated, corrupt"):
        load_model(path, task="denoise")
    _rewrite_card(path, sha256=_sha(path))  # a card that agrees with the broken file
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        load_model(path, task="denoise")


def test_tampered_weights(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        load_model(path, task="denoise")


class _Trap:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_is_never_loaded(saved, tmp_path, protocol):
    path, _ = saved
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps({"weight": _Trap(marker)}, protocol=protocol))
    assert not marker.exists()
    _rewrite_card(path, sha256=_sha(path))  # the card vouches for the pickle
    with pytest.raises(ModelLoadError, match="pickle|not a readable safetensors"):
        load_model(path, task="denoise")
    assert not marker.exists()


@pytest.mark.parametrize("zipfile", [True, False])
def test_torch_checkpoint_refused(net, saved, zipfile):
    path, _ = saved
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=zipfile)
    _rewrite_card(path, sha256=_sha(path))
    with pytest.raises(ModelLoadError, match="pickle or torch checkpoint"):
        load_model(path, task="denoise")


# --------------------------------------------------------------- bad cards
def test_card_for_another_task(net, tmp_path):
    path = tmp_path / "sr.safetensors"
    save_model(net, path, _card(net, task="superres"))
    with pytest.raises(ModelLoadError, match="is a 'superres' model, not a 'denoise' model"):
        load_model(path, task="denoise")


@pytest.mark.parametrize("text", ["{not json", "", "42", "[1, 2]", '"denoise"',
                                  '{"task": "denoise"}', b"\xff\xfe\x00garbage"])
def test_malformed_card(saved, text):
    path, _ = saved
    card = path.with_suffix(".json")
    card.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ModelLoadError, match=r"model card .*(JSON|lacks)"):
        load_model(path, task="denoise")


@pytest.mark.parametrize("change", [
    {"architecture": "NoSuchNet"},
    {"arguments": {"channels": [8, 16, 32]}},  # weights do not fit this network
    {"arguments": {"no_such_argument": 1}},
])
def test_card_that_does_not_describe_the_weights(saved, change):
    path, _ = saved
    _rewrite_card(path, **change)
    with pytest.raises(ModelLoadError, match="does not describe the weights"):
        load_model(path, task="denoise")


@pytest.mark.parametrize(("change", "message"), [
    ({"calibration": [0.2]}, "calibration is a list, not a dict"),
    ({"sha256": 123}, "sha256 is a int, not a str"),
    ({"arguments": "channels=8"}, "arguments is a str, not a dict"),
])
def test_card_entries_of_the_wrong_type(saved, change, message):
    path, _ = saved
    _rewrite_card(path, **change)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path, task="denoise")


def test_a_card_for_another_network_gives_a_short_message(saved):
    path, _ = saved
    _rewrite_card(path, arguments={"channels": [8, 16, 32]})
    with pytest.raises(ModelLoadError) as err:
        load_model(path, task="denoise")
    assert len(str(err.value)) < 600


def test_missing_files(saved):
    path, _ = saved
    path.with_suffix(".json").unlink()
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(path, task="denoise")
    path.unlink()
    with pytest.raises(ModelLoadError, match="no model"):
        load_model(path, task="denoise")


def test_weights_missing_beside_card(saved):
    path, _ = saved
    path.unlink()
    with pytest.raises(ModelLoadError, match="weights file .* not found"):
        load_model(path.with_suffix(".json"), task="denoise")


def test_safetensors_holds_only_tensors(saved):
    """The file starts with a little-endian header length and a JSON header."""
    path, _ = saved
    data = path.read_bytes()
    n = int(np.frombuffer(data[:8], dtype="<u8")[0])
    header = json.loads(data[8 : 8 + n])
    assert all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__")


def test_find_card_reads_the_card_alone(tmp_path):
    from astro_nn_restore.registry import ModelLoadError, find_card

    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"not read")
    card = {"task": "superres", "architecture": "SRCNN", "arguments": {}, "sha256": "0" * 64}
    weights.with_suffix(".json").write_text(json.dumps(card))
    assert find_card(weights, task="superres") == card  # the weights are not opened
    with pytest.raises(ModelLoadError, match="no model"):
        find_card(tmp_path / "absent.safetensors", task="superres")


def test_a_network_of_another_task_is_refused_as_a_module():
    from astro_nn_restore.models.deblur import DeblurUNet
    from astro_nn_restore.models.denoise import ResidualUNet

    denoiser = ResidualUNet(channels=(8, 16), blocks=1, dilations=(2,))
    assert load_model(denoiser, task="denoise")[0] is denoiser
    for task in ("deblur", "superres", "colorize", "autoencoder"):
        with pytest.raises(ModelLoadError, match="is a 'denoise' network, not a"):
            load_model(denoiser, task=task)
    with pytest.raises(ModelLoadError, match="'deblur' network"):
        load_model(DeblurUNet(channels=(8, 16), blocks=1, dilations=(2,)), task="denoise")


@pytest.mark.parametrize("model", [123, None, ["default"]])
def test_a_model_of_the_wrong_type_is_named(model):
    with pytest.raises(TypeError, match="model must be a registry name, a path or a torch"):
        load_model(model, task="denoise")

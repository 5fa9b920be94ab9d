"""Named pretrained models: weights as safetensors plus a JSON model card.

A model is a pair of files, ``NAME.safetensors`` and ``NAME.json``. The card
records the task, the architecture and its arguments, the normalisation, the
training data and exact command, the seed, epochs, validation metrics and the
sha256 of the weights file, which is checked on every load. Nothing is ever
unpickled: safetensors holds only tensors.

Shipped models live in ``astro_nn_restore/weights/`` and are named
``TASK-NAME`` (``denoise-default``); ``model="default"`` picks the task's
default.
"""

import hashlib
import json
import os
from importlib import resources
from pathlib import Path

from ._warnings import one_line

__all__ = ["ModelLoadError", "available_models", "find_card", "load_model", "save_model",
           "read_card", "weights_dir"]

TASKS = ("denoise", "deblur", "superres", "autoencoder", "colorize")

_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, torch zip checkpoints


class ModelLoadError(ValueError):
    """A weights file or model card is missing, corrupt, tampered or for another task."""


def weights_dir():
    """Folder of the shipped weights and model cards."""
    return Path(resources.files("astro_nn_restore") / "weights")


def available_models(task=None):
    """Names of shipped models, optionally for one task.

    Examples
    --------
    >>> "denoise-default" in available_models("denoise")
    True
    """
    names = sorted(p.stem for p in weights_dir().glob("*.json"))
    if task is not None:
        names = [n for n in names if n.split("-", 1)[0] == task]
    return names


def sha256_of(path):
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(path):
    """Read a model card (JSON) and check it has what loading needs."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model card {path} not found (expected beside the weights file)")
    try:
        card = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"model card {path} is not valid JSON: {err}") from err
    if not isinstance(card, dict):
        raise ModelLoadError(f"model card {path} must be a JSON object, got {type(card).__name__}")
    missing = {"task", "architecture", "arguments", "sha256"} - set(card)
    if missing:
        raise ModelLoadError(f"model card {path} lacks {sorted(missing)}")
    wrong = [f"{key} is a {type(card[key]).__name__}, not a {kind.__name__}"
             for key, kind in _CARD_TYPES.items()
             if key in card and not isinstance(card[key], kind)]
    if wrong:
        raise ModelLoadError(f"model card {path}: {'; '.join(wrong)}")
    return card


#: Types of the card entries that loading and the operations read.
_CARD_TYPES = {"task": str, "architecture": str, "arguments": dict, "sha256": str, "name": str,
               "calibration": dict, "training": dict}


def find_card(model="default", *, task=None):
    """The model card of a registry name or weights path, without loading the weights.

    Examples
    --------
    >>> find_card("default", task="superres")["architecture"]
    'SRResNet'
    """
    card_path = _resolve_paths(model, task)[1]
    return _of_task(read_card(card_path), card_path, task)


def _of_task(card, card_path, task):
    """``card``, or a ModelLoadError when it is another task's (``task`` None: any task)."""
    if task is not None and card["task"] != task:
        raise ModelLoadError(f"{card_path} is a {card['task']!r} model, not a {task!r} model")
    return card


def _resolve_paths(model, task):
    """(weights path, card path) for a registry name or a file path."""
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a registry name, a path or a torch.nn.Module, got "
                        f"{type(model).__name__} {model!r}")
    text = os.fspath(model)
    candidates = [f"{task}-{text}", text] if task else [text]
    for name in candidates:
        if (weights_dir() / f"{name}.json").exists():
            return weights_dir() / f"{name}.safetensors", weights_dir() / f"{name}.json"
    path = Path(text)
    exists = path.exists() or path.with_suffix(".json").exists()
    if path.suffix in (".safetensors", ".json") and exists:
        return path.with_suffix(".safetensors"), path.with_suffix(".json")
    known = ", ".join(available_models(task)) or "none"
    raise ModelLoadError(
        f"no model {text!r} for task {task!r}: give a registry name ({known}), "
        "a path to a .safetensors file with its .json card, or an nn.Module"
    )


def _check_module_task(module, task):
    """Refuse one of this package's networks made for another task (their inputs differ)."""
    from .models import ARCHITECTURES

    origin = ARCHITECTURES.get(type(module).__name__, "").split(":")[0]
    if task is not None and origin in TASKS and origin != task:  # models.denoise, ...
        raise ModelLoadError(f"{type(module).__name__} is a {origin!r} network, not a "
                             f"{task!r} one")


def _check_weights_file(path, card):
    if not path.exists():
        raise ModelLoadError(f"weights file {path} not found")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(_PICKLE_MAGIC):
        raise ModelLoadError(
            f"{path} looks like a pickle or torch checkpoint; only safetensors files are loaded "
            "(pickles can run arbitrary code)"
        )
    actual = sha256_of(path)
    if actual != card["sha256"]:
        raise ModelLoadError(
            f"sha256 of {path} is {actual[:16]}..., the model card says {card['sha256'][:16]}...: "
            "the file is truncated, corrupt or was changed after training"
        )


def load_model(model="default", *, task=None):
    """Return ``(module, card)`` for a registry name, a path or an nn.Module.

    Parameters
    ----------
    model : str, PathLike or torch.nn.Module
        Registry name (``"default"``, ``"denoise-default"``), path to a
        ``.safetensors`` file with its ``.json`` card beside it, or a module
        (used as is, in eval mode).
    task : str, optional
        The operation asking; a card for another task is refused.

    Raises
    ------
    ModelLoadError
        Missing, corrupt, tampered, pickled or wrong-task model.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .models import build_model

    if isinstance(model, torch.nn.Module):
        _check_module_task(model, task)
        return model.eval(), {"name": type(model).__name__, "task": task, "sha256": "user-module"}
    weights, card_path = _resolve_paths(model, task)
    card = _of_task(read_card(card_path), card_path, task)
    _check_weights_file(weights, card)
    try:
        state = load_file(weights)
    except SafetensorError as err:
        raise ModelLoadError(f"{weights} is not a readable safetensors file: {err}") from err
    try:
        module = build_model(card["architecture"], **card["arguments"])
        module.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as err:
        # load_state_dict lists every key: keep the start
        raise ModelLoadError(f"{card_path} does not describe the weights in {weights}: "
                             f"{one_line(err, 300)}") from err
    card.setdefault("name", card_path.stem)
    return module.eval(), card


def save_model(module, path, card):
    """Write ``module``'s weights to ``path`` (.safetensors) and its card beside it.

    The sha256 of the weights is added to the card. Files are written to a
    temporary name first and then renamed, so a crash never leaves a
    half-written model behind.

    Returns
    -------
    dict
        The card as written.
    """
    from safetensors.torch import save

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    tmp = path.with_suffix(".safetensors.tmp")
    tmp.write_bytes(save(state))  # the usual file permissions (save_file makes it 0600)
    os.replace(tmp, path)
    card = {**card, "name": card.get("name", path.stem), "sha256": sha256_of(path)}
    tmp_card = path.with_suffix(".json.tmp")
    tmp_card.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_card, path.with_suffix(".json"))
    return card

"""Training checkpoints in one safetensors file, written atomically.

Tensors (model weights and optimiser moments) are stored as tensors; the step,
the scheduler state and the optimiser's hyper-parameters as JSON in the
file's metadata. No pickle is involved, so a checkpoint is as safe to load as
a released model.
"""

import json
import os
from pathlib import Path

from .._warnings import error_text

__all__ = ["save_checkpoint", "load_checkpoint"]


def _flatten_optimizer(optimizer):
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if hasattr(value, "detach"):
                tensors[f"optimizer.{index}.{key}"] = value.detach().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors, meta):
    state = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path, model, optimizer, scheduler, state):
    """Write model, optimiser, scheduler and loop state to ``path`` atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    tensors.update(opt_tensors)
    metadata = {
        "optimizer": json.dumps(opt_meta),
        "scheduler": json.dumps(scheduler.state_dict()),
        "state": json.dumps(state),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def load_checkpoint(path, model, optimizer, scheduler):
    """Restore everything `save_checkpoint` wrote; return the loop state.

    A checkpoint that cannot be read (truncated, damaged, not a checkpoint) or
    does not fit ``model`` (another architecture) is a `ValueError` saying so;
    nothing is changed on disk.
    """
    from safetensors import SafetensorError

    try:
        return _load_checkpoint(path, model, optimizer, scheduler)
    except (SafetensorError, RuntimeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"cannot resume from {path} ({error_text(err)}): it is "
                         "damaged, or not a checkpoint of this task with these settings; "
                         "start the run again with --overwrite") from err


def _load_checkpoint(path, model, optimizer, scheduler):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
    optimizer.load_state_dict(
        _unflatten_optimizer(optimizer_tensors, json.loads(metadata["optimizer"]))
    )
    scheduler.load_state_dict(json.loads(metadata["scheduler"]))
    return json.loads(metadata["state"])

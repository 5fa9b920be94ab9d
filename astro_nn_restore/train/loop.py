"""The training loop shared by every task.

A task (see `TrainTask`) says how to build its network, draw a batch for a
given step, compute the loss and score validation. The loop does the rest:
optimiser, learning-rate schedule (ReduceLROnPlateau on the validation loss),
gradient clipping, early stopping, bf16 autocast, a tqdm bar, a metrics CSV,
atomic checkpoints every ``checkpoint_every`` steps and exact resume, and the
export to the registry format at the end. The exported weights are those of the
best validation (``best.safetensors``, kept beside the checkpoint), so a run
that degrades late, or diverges, still ships its best model; a task whose
validation loss does not measure what its last phase optimises (a GAN) sets
``export_best = False`` and exports the final weights, and so does a run with
``export_last`` (``--export-last``), for training data the validation set does
not hold. ``--resume --steps N --export-last`` with N the step a run stopped at
exports that run's final weights without training further.

Resume is exact because every batch is drawn from a generator seeded by
``(seed, step)``: nothing about the data stream has to be saved, only the
weights, the optimiser and scheduler states and the step.
"""

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .._warnings import error_text
from ..registry import ModelLoadError, save_model
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["TrainConfig", "TrainTask", "check_config", "check_out", "fit", "training_autocast"]


@dataclass
class TrainConfig:
    """Settings common to every task (command-line options of the same names)."""

    out: str = "runs/model"
    steps: int = 2000
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    val_every: int = 200
    checkpoint_every: int = 100
    patience: int = 8
    clip_grad: float = 1.0
    max_minutes: float | None = None
    precision: str = "bf16"
    threads: int | None = None
    resume: bool = False
    overwrite: bool = False
    export_last: bool = False
    data: str | None = None
    name: str | None = None
    command: str = ""
    extra: dict = field(default_factory=dict)


class TrainTask:
    """Interface a task implements for `fit`.

    Attributes
    ----------
    task : str
        Registry task name (``"denoise"``...).
    """

    task = "base"
    #: Export the best-validation weights (True) or the final ones (False).
    export_best = True
    #: What the card says the model was trained on (without ``--data``).
    training_data = "simulated skies + Hubble Deep Field (training part)"

    def __init__(self, config):
        self.config = config

    def data_description(self):
        """The card's ``training.data``: `training_data`, plus the ``--data`` folder."""
        folder = self.config.data
        return self.training_data + (f" + FITS folder {folder}" if folder else "")

    def build_model(self):
        raise NotImplementedError

    def batch(self, step, rng):
        """Return ``(inputs, target)`` tensors for this step."""
        raise NotImplementedError

    def loss(self, prediction, target, step):
        raise NotImplementedError

    def validation_batches(self):
        """A fixed list of ``(inputs, target)`` pairs."""
        raise NotImplementedError

    def card(self, model):
        """Task-specific model-card entries (architecture, normalisation...)."""
        raise NotImplementedError

    def calibrate(self, model):
        """Optional extra card entries computed from the final model."""
        return {}

    def optimizer(self, model):
        """The optimiser (a task with several networks may return its own)."""
        return torch.optim.AdamW(model.parameters(), lr=self.config.lr, weight_decay=1e-4)

    def train_step(self, model, optimizer, step, rng):
        """One optimisation step; return the training loss (float). GANs override this."""
        inputs, target = self.batch(step, rng)
        with training_autocast(self.config.precision):
            prediction = model(inputs)
        return self.optimise(model, optimizer, self.loss(prediction.float(), target, step))

    def optimise(self, model, optimizer, loss):
        """Backpropagate ``loss``, clip the gradient norm, step; return the loss (float)."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.clip_grad)
        optimizer.step()
        return loss.item()

    def export_module(self, model):
        """The module written to the registry (e.g. a GAN's generator alone)."""
        return model


def initial_model(config, task, new_model):
    """The network to train: the ``--init`` model (fine-tuning) or ``new_model()``.

    ``config.extra["init"]`` is a registry name (``"default"``) or a weights
    path of a ``task`` model; the architecture then comes from its model card,
    so ``--arch`` must not be given with it.
    """
    from ..registry import load_model

    init = _init_model_name(config)
    if init is None:
        return new_model()
    module, _ = load_model(init, task=task)
    return module.train()


def model_arguments(config, task, defaults):
    """Architecture arguments: the ``--init`` model's card's, else ``defaults`` + ``--arch``."""
    from ..registry import find_card

    init = _init_model_name(config)
    if init is None:
        return {**defaults, **config.extra.get("architecture", {})}
    return find_card(init, task=task)["arguments"]


def _init_model_name(config):
    """``--init`` (or None); refused together with ``--arch``."""
    init = config.extra.get("init")
    if init is not None and config.extra.get("architecture"):
        raise ValueError("--arch and --init exclude each other: fine-tuning keeps the "
                         "architecture of the initial model's card")
    return init


def _batch_rng(seed, step):
    return np.random.default_rng([seed, step])


def training_autocast(precision):
    """bf16 autocast on the CPU when ``precision == "bf16"``, else a no-op context."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def _validate(task, model, precision):
    from ..metrics import psnr, ssim

    model.eval()
    losses, psnrs, ssims = [], [], []
    with torch.inference_mode(), training_autocast(precision):
        for inputs, target in task.validation_batches():
            prediction = model(inputs).float()
            losses.append(float(task.loss(prediction, target, step=None)))
            for pred, ref in zip(prediction[:, 0].numpy(), target[:, 0].numpy(), strict=True):
                psnrs.append(psnr(ref, pred))
                ssims.append(ssim(ref, pred))
    model.train()
    return float(np.mean(losses)), float(np.mean(psnrs)), float(np.mean(ssims))


class _MetricsLog:
    """Append-only CSV of validation metrics (truncated to the resumed step)."""

    fields = ("step", "train_loss", "val_loss", "val_psnr", "val_ssim", "lr", "minutes")

    def __init__(self, path, resume_step):
        self.path = Path(path)
        rows = self._read() if resume_step else []
        rows = [r for r in rows if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, self.fields)
            writer.writeheader()
            writer.writerows(rows)

    def _read(self):
        if not self.path.exists():
            return []
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))

    def append(self, **row):
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.fields).writerow(row)


def fit(task, config):
    """Train ``task`` according to ``config``; return the exported model card.

    Writes into ``config.out``: ``checkpoint.safetensors``, ``best.safetensors``,
    ``metrics.csv``, ``config.json`` and, at the end, ``NAME.safetensors``
    with its model card ``NAME.json`` (loadable with ``model=PATH``).
    Everything is checked before anything is written: the settings
    (`check_config`), that ``out`` holds no earlier run unless
    ``config.resume`` (which must repeat that run's settings, `RESUME_KEYS`)
    or ``config.overwrite``, and that the patch size suits the network.
    """
    check_config(config)
    out = Path(config.out)
    check_out(config, task.task)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = _build(task, config)
    _check_patch_size(model, config)
    optimizer = task.optimizer(model)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    state = {"step": 0, "best_val": math.inf, "bad_epochs": 0, "minutes": 0.0}
    checkpoint = out / "checkpoint.safetensors"
    out.mkdir(parents=True, exist_ok=True)
    if config.resume:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler)
        if state["step"] > config.steps:
            raise ValueError(f"the run in {out} is at step {state['step']}, beyond --steps "
                             f"{config.steps}: give --steps {state['step']} or more")
    else:
        _remove_run(out)  # nothing of an overwritten run may be resumed or exported later
        saved = _comparable({**asdict(config), "task": task.task})  # --data resolved
        (out / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
    state.setdefault("commands", _first_command(out, config))
    if config.resume and config.command:
        state["commands"].append(config.command)
    log = _MetricsLog(out / "metrics.csv", state["step"])
    try:
        _train(task, config, model, optimizer, scheduler, state, log, checkpoint)
    except BaseException:
        if not config.resume and not checkpoint.exists():
            # stopped before its first checkpoint: nothing to resume, and the same
            # command (corrected) must not be refused for the files it left
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
        raise
    if _exports_best(task, config):
        _load_best(model, out, state)
    return _export(task, config, model, state, out)


def _exports_best(task, config):
    return task.export_best and not config.export_last


def check_config(config):
    """Refuse settings that cannot train, naming the command-line option."""
    from .._nddata import integer_at_least, non_negative_number

    def option(name):
        return "--" + name.replace("_", "-")

    fine_tuning = config.extra.get("init") is not None  # --steps 0: export the init model as is
    for name, minimum in (("steps", 0 if fine_tuning else 1), ("batch_size", 1),
                          ("patch_size", 8), ("val_every", 1), ("checkpoint_every", 1),
                          ("patience", 1), ("seed", 0)):
        integer_at_least(getattr(config, name), option(name), minimum)
    for name in ("lr", "clip_grad"):
        non_negative_number(getattr(config, name), option(name), positive=True)
    if config.max_minutes is not None:  # 0: stop after one step (with checkpoint and export)
        non_negative_number(config.max_minutes, "--max-minutes")
    if config.threads is not None:
        integer_at_least(config.threads, "--threads", 1)
    if "n_simulated" in config.extra:
        integer_at_least(config.extra["n_simulated"], "--n-simulated", 1)
    if config.resume and config.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: "
                         "give one of them")
    if config.data is not None and not Path(config.data).is_dir():
        raise FileNotFoundError(f"--data {config.data}: no such folder")
    if config.name is not None and (not config.name or Path(config.name).name != config.name
                                    or config.name in (".", "..")):
        raise ValueError(f"--name {config.name!r} must be a file name (the stem of the exported "
                         "weights in --out), without a folder")


#: Files that mark a folder as holding a training run (``--overwrite`` deletes them).
RUN_FILES = ("config.json", "checkpoint.safetensors", "metrics.csv", "best.safetensors")
#: Settings a resumed run must repeat (``extra`` holds --arch, --init and the task options).
RESUME_KEYS = ("task", "seed", "batch_size", "patch_size", "lr", "clip_grad", "precision",
               "data", "name", "extra")


def check_out(config, task):
    """``config.out`` holds no run (or ``--overwrite``), or ``--resume`` repeats its run."""
    out = Path(config.out)
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not config.resume:
        if found and not config.overwrite:
            raise FileExistsError(f"{out} already holds a training run ({', '.join(found)}): "
                                  "--resume continues it, --overwrite replaces it, or choose "
                                  "another --out")
        return
    if not (out / "checkpoint.safetensors").exists():
        raise FileNotFoundError(f"nothing to resume: {out / 'checkpoint.safetensors'} does not "
                                "exist (drop --resume to start a new run, with --overwrite if "
                                "the folder holds the start of one)")
    saved = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else {}
    current = _comparable({**asdict(config), "task": task})
    changed = [key for key in RESUME_KEYS if key in saved and saved[key] != current[key]]
    if changed:
        details = "; ".join(f"{key}: {saved[key]!r} in the run, {current[key]!r} now"
                            for key in changed)
        raise ValueError(f"--resume must repeat the run's settings ({details}); "
                         "only --steps, --max-minutes, --threads, --patience, --val-every and "
                         "--checkpoint-every may change")


def _comparable(settings):
    """Settings as config.json holds them: tuples as lists, the --data folder resolved
    (against the directory of the command that wrote them)."""
    settings = json.loads(json.dumps(settings))
    if settings.get("data") is not None:
        settings["data"] = str(Path(settings["data"]).resolve())
    return settings


def _remove_run(out):
    """Delete the run in ``out`` (``--overwrite``): nothing of it is resumed or mistaken later.

    That is its `RUN_FILES` and the model it exported (``NAME.safetensors`` and
    ``NAME.json``, named in its ``config.json``); other files are left alone.
    """
    for name in (*_exported_files(out), *RUN_FILES):
        (out / name).unlink(missing_ok=True)


def _exported_files(out):
    """File names of the model the run in ``out`` exported, from its ``config.json``."""
    try:
        saved = json.loads((out / "config.json").read_text())
        name = export_name(saved.get("name"), saved["task"])
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return ()  # no readable record of a run: nothing is known to be its export
    if not isinstance(name, str) or Path(name).name != name:
        return ()  # not a name this package writes: leave the folder alone
    return (f"{name}.safetensors", f"{name}.json")


def export_name(name, task):
    """The stem of a run's exported weights and card: ``--name``, else ``TASK-custom``."""
    return name or f"{task}-custom"


def _build(task, config):
    """``task.build_model()``; an ``--arch`` that builds no network is a one-line ValueError."""
    architecture = config.extra.get("architecture")
    try:
        return task.build_model()
    except ModelLoadError:
        raise
    except (TypeError, ValueError, IndexError, RuntimeError) as err:
        if not architecture:
            raise
        raise ValueError(f"--arch {json.dumps(architecture)} does not build a {task.task} "
                         f"network ({error_text(err)})") from err


def _check_patch_size(model, config):
    multiple = int(getattr(model, "size_multiple", 1))
    if config.patch_size % multiple:
        raise ValueError(f"--patch-size {config.patch_size} must be a multiple of {multiple} "
                         f"for this network (its size multiple)")


def _first_command(out, config):
    """The command that started this run (from config.json when resuming)."""
    saved = out / "config.json"
    if config.resume and saved.exists():
        return [json.loads(saved.read_text()).get("command", "")]
    return [config.command]


def _train(task, config, model, optimizer, scheduler, state, log, checkpoint):
    model.train()
    started = time.monotonic() - 60 * state["minutes"]
    running = []
    bar = tqdm(total=config.steps, initial=state["step"], desc=f"train {task.task}", unit="step",
               disable=None)
    while state["step"] < config.steps:
        step = state["step"]
        loss = task.train_step(model, optimizer, step, _batch_rng(config.seed, step))
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the training loss is {loss} at step {step} (the checkpoint of the last "
                f"multiple of --checkpoint-every is kept): check the --data images for "
                "non-finite or extreme pixels, or lower --lr")
        running.append(loss)
        state["step"] = step + 1
        state["minutes"] = (time.monotonic() - started) / 60
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(running[-50:]):.4f}")
        stop = _maybe_validate(task, config, model, scheduler, state, log, running, optimizer)
        if state.get("best_step") == state["step"]:
            _save_best(model, checkpoint.parent)
        out_of_time = config.max_minutes is not None and state["minutes"] >= config.max_minutes
        last = state["step"] == config.steps  # a finished run can be extended with --resume
        if state["step"] % config.checkpoint_every == 0 or stop or out_of_time or last:
            save_checkpoint(checkpoint, model, optimizer, scheduler, state)
        if stop or out_of_time:
            break
    bar.close()


def _maybe_validate(task, config, model, scheduler, state, log, running, optimizer):
    """Validate every ``val_every`` steps; return True to stop early."""
    step = state["step"]
    if step % config.val_every and step != config.steps:
        return False
    val_loss, val_psnr, val_ssim = _validate(task, model, config.precision)
    scheduler.step(val_loss)
    log.append(step=step, train_loss=f"{np.mean(running[-config.val_every:]):.6f}",
               val_loss=f"{val_loss:.6f}", val_psnr=f"{val_psnr:.4f}", val_ssim=f"{val_ssim:.5f}",
               lr=f"{optimizer.param_groups[0]['lr']:.3g}", minutes=f"{state['minutes']:.2f}")
    state["last_val"] = {"loss": val_loss, "psnr": val_psnr, "ssim": val_ssim}
    if val_loss < state["best_val"] - 1e-6:
        state["best_val"], state["bad_epochs"] = val_loss, 0
        state["best_step"], state["best_metrics"] = step, state["last_val"]
    else:
        state["bad_epochs"] += 1
    return state["bad_epochs"] >= config.patience


def _save_best(model, out):
    """Write the model weights alone to ``out/best.safetensors`` (atomically)."""
    from safetensors.torch import save

    tmp = out / "best.safetensors.tmp"
    tmp.write_bytes(save({k: v.detach().contiguous() for k, v in model.state_dict().items()}))
    tmp.replace(out / "best.safetensors")


def _load_best(model, out, state):
    """Load the best-validation weights into ``model`` (if a validation has run)."""
    from safetensors.torch import load_file

    best = out / "best.safetensors"
    if "best_step" in state and best.exists():
        model.load_state_dict(load_file(best))


def _export(task, config, model, state, out):
    model.eval()
    module = task.export_module(model)
    name = export_name(config.name, task.task)
    card = {
        "name": name,
        "task": task.task,
        **architecture_card(module),
        **task.card(model),
        "training": {
            "command": " && ".join(c for c in state["commands"] if c),
            "seed": config.seed,
            "steps": state["step"],
            "batch_size": config.batch_size,
            "patch_size": config.patch_size,
            "minutes": round(state["minutes"], 1),
            "data": task.data_description(),
            "code_version": _code_version(),
        },
        "validation": _exported_validation(_exports_best(task, config), state),
    }
    if config.extra.get("init") is not None:
        card["training"]["init"] = _init_record(config.extra["init"], task.task)
    card.update(task.calibrate(model))
    return save_model(module, out / f"{name}.safetensors", card)


def _code_version():
    """The package version for a card's re-runs; in a git checkout, with the commit.

    An editable install's version is that of its installation, not of the
    code that ran, so the checkout's ``git describe --dirty`` is added.
    """
    import subprocess

    from .. import __version__

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return __version__
    try:
        described = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                                   capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__} (git {described.stdout.strip()})"


def _init_record(init, task):
    """What a fine-tuned model started from: name, sha256 and how that was trained."""
    from ..registry import find_card

    card = find_card(init, task=task)  # the weights were checked when training began
    return {"model": str(init), "name": card.get("name"), "sha256": card.get("sha256"),
            "training": card.get("training", {})}


def _exported_validation(best, state):
    """Validation metrics of the exported weights (and the step they are from)."""
    if best and "best_step" in state:
        return {**state["best_metrics"], "step": state["best_step"]}
    return {**state.get("last_val", {}), "step": state["step"]}


def architecture_card(module):
    """Card entries that rebuild ``module``: class name, its ``config``, parameter count."""
    arguments = {k: list(v) if isinstance(v, tuple) else v for k, v in module.config.items()}
    return {"architecture": type(module).__name__, "arguments": arguments,
            "parameters": sum(p.numel() for p in module.parameters())}

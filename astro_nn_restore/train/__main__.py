"""Command line: ``python -m astro_nn_restore.train TASK [options]``.

Errors a user can fix (settings, a folder that already holds a run, --data,
--init, --resume) print one line ``python -m astro_nn_restore.train: error:
...`` to stderr and exit with status 2, as ``astro-nn-restore`` does.
"""

import argparse
import json
import shlex
import sys
from dataclasses import fields

from ..cli import USER_ERRORS, print_error
from . import TASKS, TrainConfig, fit
from .loop import check_config, check_out

PROG = "python -m astro_nn_restore.train"

_HELP = {
    "out": "output folder (checkpoint, metrics.csv, final weights + card)",
    "steps": "total optimisation steps",
    "batch_size": "patches per step",
    "patch_size": "patch edge in pixels",
    "lr": "initial learning rate (AdamW)",
    "seed": "seed of initialisation and of every batch",
    "val_every": "validate (and log a CSV row) every N steps",
    "checkpoint_every": "write the checkpoint every N steps",
    "patience": "stop after N validations without improvement",
    "clip_grad": "gradient-norm clipping threshold",
    "max_minutes": "stop (with a checkpoint and export) after this many minutes",
    "precision": "bf16 (autocast) or fp32",
    "threads": "torch CPU threads",
    "resume": "continue from OUT/checkpoint.safetensors exactly where it stopped (the run's "
              "other settings must be repeated)",
    "overwrite": "replace the training run already in OUT (without it, an OUT holding a run "
                 "is refused)",
    "export_last": "export the final weights, not those of the best validation (for "
                   "training data the validation set does not hold)",
    "data": "folder of FITS files to train on (besides the simulator)",
    "name": "model name (file stem of the exported weights and card)",
}


#: options whose default (None) does not tell their type
_OPTION_TYPES = {"max_minutes": float, "threads": int, "data": str, "name": str}


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train an astro_nn_restore model on the CPU. Tasks: " + ", ".join(TASKS),
    )
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK",
                                  help="one of: " + ", ".join(TASKS))
    for name in TASKS:
        sub = tasks.add_parser(name, help=f"train the {name} model")
        _add_config_options(sub)
        sub.add_argument("--arch", type=_json_object, default={}, metavar="JSON",
                         help='architecture arguments, e.g. \'{"channels": [16, 32]}\'')
        sub.add_argument("--n-simulated", type=int, default=96,
                         help="simulated skies in the training pool (default: 96)")
        if name in ("denoise", "deblur", "superres", "autoencoder"):
            sub.add_argument("--init", default=None, metavar="MODEL",
                             help="fine-tune this model (registry name such as 'default', "
                                  "or a weights path) instead of starting from scratch")
        if name == "denoise":
            _add_denoise_options(sub)
        if name == "autoencoder":
            sub.add_argument("--consistency-weight", type=float, default=None,
                             help="weight of the latent-consistency term between two noise "
                                  "draws of each cutout (default: 0, off)")
        if name == "superres":
            sub.add_argument("--add-blocks", type=int, default=None, metavar="N",
                             help="with --init: append N residual blocks (starting as the "
                                  "identity) to the initial SRResNet before fine-tuning")
            sub.add_argument("--saturated-share", type=float, default=None,
                             help="share of training patches whose brightest stars are "
                                  "clipped flat like saturated cores (default: 0)")
        if name == "colorize":
            sub.add_argument("--hdf-share", type=float, default=None,
                             help="share of training patches from the Hubble Deep Field "
                                  "(default: 0.9)")
    return parser


def _add_denoise_options(parser):
    parser.add_argument("--self-supervised", choices=["noise2noise", "noise2void"],
                        default=None,
                        help="train on the --data frames alone: noise2noise (pairs of "
                             "exposures of one field) or noise2void (single frames)")
    parser.add_argument("--gain", type=float, default=None,
                        help="self-supervised: electrons per data unit for the CCD-equation "
                             "noise map (default: header GAIN)")
    parser.add_argument("--read-noise", type=float, default=None,
                        help="self-supervised: read noise in electrons (default: header "
                             "RDNOISE/READNOIS)")
    parser.add_argument("--sky", type=float, default=None,
                        help="self-supervised: sky level above the bias, data units, for "
                             "frames that are not bias-subtracted")


def _json_object(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object of architecture arguments, "
                                         f"got {text}")
    return value


def _task_class(args):
    mode = getattr(args, "self_supervised", None)
    if mode is None:
        return TASKS[args.task]()
    from .selfsup import SELF_SUPERVISED_TASKS

    return SELF_SUPERVISED_TASKS[mode]


def _add_config_options(parser):
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in ("command", "extra") or f.name not in _HELP:
            continue
        option = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(option, action="store_true", help=_HELP[f.name])
        elif f.name == "precision":
            parser.add_argument(option, choices=["bf16", "fp32"], default=default,
                                help=_HELP[f.name])
        else:
            kind = _OPTION_TYPES.get(f.name, type(default))
            parser.add_argument(option, type=kind, default=default,
                                help=f"{_HELP[f.name]} (default: {default})")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    command = "python -m astro_nn_restore.train " + shlex.join(argv)
    extra = {"architecture": args.arch, "n_simulated": args.n_simulated}
    for option in ("init", "self_supervised", "gain", "read_noise", "sky", "hdf_share",
                   "consistency_weight", "add_blocks",
                   "saturated_share"):
        if getattr(args, option, None) is not None:
            extra[option] = getattr(args, option)
    config = TrainConfig(**values, command=command, extra=extra)
    try:
        check_config(config)  # before the task reads --data or --init
        check_out(config, args.task)  # before self-supervised tasks load every frame
        task = _task_class(args)(config)
        card = fit(task, config)
    except USER_ERRORS as err:
        return print_error(PROG, err)
    print(f"exported {card['name']} (sha256 {card['sha256'][:16]}) to {config.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

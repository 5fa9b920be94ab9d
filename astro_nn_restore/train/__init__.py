"""Training: ``python -m astro_nn_restore.train TASK [options]``.

See `astro_nn_restore.train.loop.fit` for the shared loop and the task
modules for what each task trains on.
"""

from functools import partial
from importlib import import_module

from .loop import TrainConfig, TrainTask, fit

__all__ = ["TrainConfig", "TrainTask", "fit", "TASKS"]

_TASK_CLASSES = {
    "denoise": "denoise:DenoiseTask",
    "deblur": "deblur:DeblurTask",
    "superres": "superres:SuperResTask",
    "autoencoder": "autoencoder:AutoencoderTask",
    "colorize": "colorize:ColorizeTask",
}


def _task_class(spec):
    module_name, class_name = spec.split(":")
    return getattr(import_module(f".{module_name}", __name__), class_name)


#: task name -> function returning the task class (imported lazily: each task
#: module imports torch and its data sources)
TASKS = {name: partial(_task_class, spec) for name, spec in _TASK_CLASSES.items()}

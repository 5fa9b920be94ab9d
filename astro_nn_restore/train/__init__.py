"""Training: ``python -m astro_nn_restore.train TASK [options]``.

See `astro_nn_restore.train.loop.fit` for the shared loop and the task
modules for what each task trains on.
"""

from .loop import TrainConfig, TrainTask, fit

__all__ = ["TrainConfig", "TrainTask", "fit", "TASKS"]


def _denoise():
    from .denoise import DenoiseTask

    return DenoiseTask


#: task name -> function returning the task class (imported lazily)
TASKS = {"denoise": _denoise}

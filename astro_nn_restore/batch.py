"""Run one operation over many FITS files, locally or on a dask.distributed cluster.

`process_files` is restartable: a file whose output exists is skipped (and
reported as such), outputs are written under a temporary name and renamed
when complete (so a killed run leaves no half-written file behind), and an
existing output is replaced only with ``overwrite=True``. With a
`distributed.Client` every file is one task: the worker reads the file,
loads the model itself (pass ``model`` as a registry name or weights path)
and writes the output, so only paths and a status travel over the network.
The output folder must be visible to the workers (a shared file system).
"""

import os
import time
from importlib import import_module
from pathlib import Path

from ._files import READ_ENDINGS

__all__ = ["process_files", "OPERATION_NAMES"]

#: Operation names (as on the command line, or the function's own name) -> import path.
OPERATION_NAMES = {
    "denoise": "astro_nn_restore.denoise_residual",
    "denoise_residual": "astro_nn_restore.denoise_residual",
    "deblur": "astro_nn_restore.deblur.deblur",
    "super-resolve": "astro_nn_restore.super_resolve",
    "super_resolve": "astro_nn_restore.super_resolve",
    "colorize": "astro_nn_restore.colorize.colorize",
}


def process_files(files, operation, out_dir, *, overwrite=False, client=None, suffix=None,
                  **operation_kwargs):
    """Apply ``operation`` to every FITS file and write one output file each.

    Parameters
    ----------
    files : iterable of path, or `ccdproc.ImageFileCollection`
        Input FITS files (a collection gives its files with their folder).
    operation : str or callable
        A name in `OPERATION_NAMES` (``"denoise"``, ``"deblur"``,
        ``"super-resolve"``, ``"colorize"``) or an operation function.
    out_dir : str or PathLike
        Output folder (created if needed).
    overwrite : bool
        Replace existing outputs; by default files whose output exists are
        skipped.
    client : `distributed.Client`, optional
        Run the files as tasks on this client's workers; locally, one after
        another, when None.
    suffix : str, optional
        Added to each input's name before ``.fits`` (default ``"_"`` plus the
        operation's name, e.g. ``m51_denoise.fits``).
    **operation_kwargs
        Passed to the operation (``model``, ``tile_size``, ``factor``...).

    Returns
    -------
    `~astropy.table.Table`
        One row per input: ``input``, ``output``, ``status`` (``done``,
        ``skipped`` or ``failed``), ``message`` (the error of a failed file)
        and ``seconds``. A failing file does not stop the others.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from astro_nn_restore import simulate_sky
    >>> from astro_nn_restore.models.denoise import ResidualUNet
    >>> folder = Path(tempfile.mkdtemp())
    >>> simulate_sky((64, 64), seed=1).noisy.write(folder / "a.fits")
    >>> net = ResidualUNet(channels=(8, 16), dilations=(2,))
    >>> table = process_files([folder / "a.fits"], "denoise", folder / "out", model=net)
    >>> print(table["status"][0], Path(table["output"][0]).name)
    done a_denoise.fits
    >>> print(process_files([folder / "a.fits"], "denoise", folder / "out", model=net)["status"][0])
    skipped
    """
    function, name = _operation(operation)
    inputs = _input_paths(files)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = [_output_path(p, out_dir, f"_{name}" if suffix is None else suffix) for p in inputs]
    if len(set(outputs)) != len(outputs):
        raise ValueError("two inputs would write the same output file; use distinct names")
    todo = [i for i, out in enumerate(outputs) if overwrite or not Path(out).exists()]
    rows = {i: ("skipped", "output exists (pass overwrite=True to replace it)", 0.0)
            for i in range(len(inputs)) if i not in todo}
    args = [(inputs[i], outputs[i], function, operation_kwargs, overwrite) for i in todo]
    results = _run_local(args) if client is None else _run_distributed(client, args)
    rows.update(zip(todo, results, strict=True))
    return _table(inputs, outputs, [rows[i] for i in range(len(inputs))])


def _operation(operation):
    if callable(operation):
        return operation, operation.__name__
    if operation not in OPERATION_NAMES:
        raise ValueError(f"unknown operation {operation!r}; choose one of {list(OPERATION_NAMES)}")
    module, name = OPERATION_NAMES[operation].rsplit(".", 1)
    return getattr(import_module(module), name), operation.replace("-", "_")


def _input_paths(files):
    if hasattr(files, "files_filtered"):  # ccdproc.ImageFileCollection
        return [str(p) for p in files.files_filtered(include_path=True)]
    if isinstance(files, (str, os.PathLike)):
        raise TypeError("pass a list of files or a ccdproc.ImageFileCollection, not one path")
    return [str(p) for p in files]


def _output_path(path, out_dir, suffix):
    name = Path(path).name
    for ending in sorted(READ_ENDINGS, key=len, reverse=True):
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
            break
    return str(out_dir / f"{name}{suffix}.fits")


def _run_local(args):
    return [process_one(*a) for a in args]


def _run_distributed(client, args):
    futures = [client.submit(process_one, *a, pure=False) for a in args]
    return client.gather(futures)


def process_one(path, output, function, kwargs, overwrite):
    """Process one file; returns (status, message, seconds). Never raises.

    A top-level function, so that dask can send it to worker processes.
    """
    from ._files import write_result

    start = time.perf_counter()
    try:
        write_result(function(_read(path), **kwargs), output, overwrite)
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the others
        return "failed", f"{type(err).__name__}: {err}", time.perf_counter() - start
    return "done", "", time.perf_counter() - start


def _read(path):
    from .cli import _read_input

    return _read_input(path, None)



def _table(inputs, outputs, rows):
    from astropy.table import Table

    status, message, seconds = zip(*rows, strict=True) if rows else ((), (), ())
    return Table(dict(input=list(inputs), output=list(outputs), status=list(status),
                      message=list(message), seconds=list(seconds)),
                 dtype=(str, str, str, str, float))

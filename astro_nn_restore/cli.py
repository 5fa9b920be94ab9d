"""The ``astro-nn-restore`` command line.

Examples
--------
Denoise a FITS image with the default model::

    astro-nn-restore denoise image.fits -o denoised.fits

Simulate a small sky, denoise it and write FITS files and a before/after PNG::

    astro-nn-restore demo --output demo/ --size 256

Denoise every FITS file of a folder (files already done are skipped), here on
a dask.distributed scheduler::

    astro-nn-restore batch denoise raw/ -o denoised/ --scheduler tcp://host:8786

Colour images: a (3, ny, nx) cube whose third axis is ``BAND`` or untyped
(`~astro_nn_restore._files.is_colour_cube`; what ``colorize`` and the napari
plugin write) is restored by ``denoise``, ``deblur`` and ``super-resolve`` as
a colour image (luminance by the network; ``colorize`` refuses it, RGBA cubes
are refused), and written back as a (3, ny, nx) cube with the input's header
and provenance, its sky WCS with a band axis and its mask (``super-resolve``:
WCS, pixel-scale keywords and ``ANR_FACT`` as for 2-D images); no
uncertainty. The operations do this themselves for any cube they are given
(`~astro_nn_restore._nddata.color_result`).

Each restoration command is one entry of `OPERATIONS`: a new operation is
added by one line (its import path and any options of its own), for example
``"super-resolve": ("astro_nn_restore.super_resolve", (_FACTOR,))``.

Errors a user can fix (missing or unreadable files, a model that does not
load, an input that cannot be parsed, an existing output) print one line
``astro-nn-restore: error: ...`` to stderr and exit with status 2.
"""

import argparse
import sys
from importlib import import_module
from pathlib import Path

from ._files import FITS_ENDINGS, hdu_spec, read_image, split_hdu_suffix, write_result
from ._warnings import one_line
from .registry import ModelLoadError

__all__ = ["main", "OPERATIONS"]

PROG = "astro-nn-restore"

#: An option of one operation: (flags, argparse keyword arguments). Its ``dest``
#: is passed to the operation as the keyword argument of the same name.
_PRECISION = (("--precision",), dict(choices=("auto", "bf16", "fp32"), default="auto",
                                     help="inference precision (default: %(default)s)"))

_PSF = (("--psf",), dict(metavar="PSF.fits", help="PSF at the image's pixel scale "
                        "(FITS; PSF.fits[K] for HDU K of a file with several images; "
                        "default: blind deblurring)"))



def _flux_policy(text):
    """``--flux-conserving``: auto (from the unit) -> None, yes -> True, no -> False."""
    policies = {"auto": None, "yes": True, "no": False}
    if text not in policies:
        raise argparse.ArgumentTypeError(f"must be one of auto, yes, no; got {text}")
    return policies[text]


def _stretch(text):
    from .colorize import stretch_by_name

    try:
        return stretch_by_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


_FACTOR = (("--factor",), dict(type=int, choices=(2, 4), default=2, help="upsampling factor"))
_FLUX = (("--flux-conserving",), dict(
    type=_flux_policy, metavar="{auto,yes,no}",
    help="yes: values per pixel, divided by factor**2 so the total is kept; no: surface "
         "brightness, kept as they are; auto (default): from the unit"))
_STRETCH = (("--stretch",), dict(type=_stretch, metavar="{asinh,sqrt,log,linear}",
                                 help="stretch of the data to lightness (default: asinh)"))
_CHROMA = (("--chroma-smoothing",), dict(type=float, metavar="PIXELS",
                                         help="Gaussian sigma of the chroma smoothing "
                                              "(default: 2)"))

#: Command name -> (import path of the operation, options of its own). An option
#: left unset (None) is not passed, so the operation's own default applies.
OPERATIONS = {
    "denoise": ("astro_nn_restore.denoise_residual", (_PRECISION,)),
    "deblur": ("astro_nn_restore.deblur.deblur", (_PRECISION, _PSF)),
    "colorize": ("astro_nn_restore.colorize.colorize", (_PRECISION, _STRETCH, _CHROMA)),
    "super-resolve": ("astro_nn_restore.super_resolve", (_FACTOR, _FLUX, _PRECISION)),
}

#: Exceptions reported as one-line errors (ModelLoadError is a ValueError; listed for clarity).
USER_ERRORS = (ModelLoadError, OSError, ValueError, TypeError, FloatingPointError)

_DEMO_FILES = ("demo_noisy.fits", "demo_denoised.fits", "demo_clean.fits", "demo_before_after.png")


class UserError(Exception):
    """An error reported as one line, without a traceback."""


def print_error(prog, err):
    """Print ``err`` as one line ``PROG: error: ...`` to stderr; return the exit status 2."""
    message = one_line(err) or type(err).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _resolve(import_path):
    module, name = import_path.rsplit(".", 1)
    return getattr(import_module(module), name)


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _unit(text):
    from astropy import units as u

    try:
        u.Unit(text, parse_strict="raise")
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a unit astropy knows: {text!r}") from err
    return text


def _add_tiling_options(parser):
    parser.add_argument("--model", default="default",
                        help="registry name or path to a .safetensors file (default: %(default)s)")
    parser.add_argument("--tile-size", type=_positive_int, default=256, help="tile edge in pixels")
    parser.add_argument("--overlap", type=int, default=32, help="overlap of tiles in pixels")
    parser.add_argument("--batch-size", type=_positive_int, default=4, help="tiles per batch")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")


def _add_operation(subparsers, name, import_path, extra_options):
    parser = subparsers.add_parser(name, help=f"run {import_path.rsplit('.', 1)[1]} on a FITS file")
    parser.add_argument("input", help="input FITS file (FILE[K] or FILE[EXTNAME] picks an HDU)")
    parser.add_argument("-o", "--output", required=True, help="output FITS file")
    _add_tiling_options(parser)
    _add_unit_option(parser)
    parser.add_argument("--hdu", type=hdu_spec,
                        help="HDU index or EXTNAME (default: the first image HDU); "
                             "INPUT[1] or INPUT[SCI] says the same")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    extra = []
    for flags, kwargs in extra_options:
        extra.append(parser.add_argument(*flags, **kwargs).dest)
    parser.set_defaults(handler=_run_operation, import_path=import_path, extra=extra)


def _add_unit_option(parser):
    parser.add_argument("--unit", type=_unit, help="unit of the data when the file has no "
                        "(valid) BUNIT")


def _add_batch(subparsers):
    parser = subparsers.add_parser("batch", help="run an operation on every FITS file of a "
                                   "folder (skips files already done)")
    parser.add_argument("operation", choices=list(OPERATIONS), help="operation to run")
    parser.add_argument("input", help="input folder")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--pattern", default="*.fits", help="input files (default: %(default)s)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="dask.distributed scheduler address (default: run locally)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    _add_tiling_options(parser)
    _add_unit_option(parser)
    added = set()
    for _, extra_options in OPERATIONS.values():
        for flags, kwargs in extra_options:
            if flags not in added:  # an option several operations share is added once
                parser.add_argument(*flags, **{**kwargs, "default": None})
                added.add(flags)
    parser.set_defaults(handler=_run_batch)


def build_parser():
    """The argument parser (one subcommand per entry of `OPERATIONS`, ``batch`` and ``demo``)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (import_path, extra_options) in OPERATIONS.items():
        _add_operation(subparsers, name, import_path, extra_options)
    _add_batch(subparsers)
    demo = subparsers.add_parser("demo", help="denoise a simulated sky; write FITS and a PNG")
    demo.add_argument("--output", default=".", help="output folder (default: current folder)")
    demo.add_argument("--size", type=_positive_int, default=256, help="image edge in pixels")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the simulated sky")
    demo.add_argument("--model", default="default", help="denoising model (name or path)")
    demo.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    demo.set_defaults(handler=_run_demo)
    return parser


def _refuse_existing(paths, overwrite):
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        verb, pronoun = ("exists", "it") if len(existing) == 1 else ("exist", "them")
        raise UserError(f"{', '.join(existing)} already {verb}; pass --overwrite to replace "
                        f"{pronoun}")


def _read_input(path, hdu_index):
    """Read one image HDU (data, inherited header; mask and uncertainty extensions if present)."""
    from astropy.nddata import NDData

    if Path(path).is_dir():
        raise UserError(f"input {path} is a folder: give a FITS file, or use "
                        f"'{PROG} batch OPERATION {path} -o OUT_DIR' for every file in it")
    if not Path(path).is_file():
        raise UserError(f"input file {path} not found")
    try:
        data, header, mask, uncertainty = read_image(path, hdu_index)
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None
    return NDData(data, meta=header, mask=mask, uncertainty=uncertainty)


def _check_output(output, inputs):
    """Before any work: ``output`` is a FITS name in an existing folder, and no input."""
    path = Path(output)
    if not path.name.lower().endswith(FITS_ENDINGS):
        raise UserError(f"output {output} must be a FITS file name ({', '.join(FITS_ENDINGS)})")
    if not path.parent.is_dir():
        raise UserError(f"output folder {path.parent} does not exist")
    for given in inputs:
        if path.resolve() == Path(given).resolve():
            raise UserError(f"the output {output} is the input: the input is never replaced; "
                            "choose another output file")


def _input_and_hdu(given, hdu):
    """(path, HDU) of the input: ``file.fits[1]`` and ``file.fits[SCI]`` name an HDU too."""
    path, named = split_hdu_suffix(given)
    if named is not None and hdu is not None:
        raise UserError(f"{given} names its HDU; leave out --hdu {hdu}")
    return path, hdu if named is None else named


def _run_operation(args):
    path, hdu = _input_and_hdu(args.input, args.hdu)
    _check_output(args.output, [path])
    _refuse_existing([args.output], args.overwrite)
    data = _read_input(path, hdu)
    operation = _resolve(args.import_path)
    if data.data.ndim == 3 and operation.__name__ == "colorize":
        raise UserError(f"colorize takes a greyscale 2-D image; {args.input} is a colour "
                        "(3, ny, nx) cube")
    options = {name: getattr(args, name) for name in args.extra
               if getattr(args, name) is not None}
    result = operation(data, model=args.model, unit=args.unit, tile_size=args.tile_size,
                       overlap=args.overlap, batch_size=args.batch_size, progress=args.progress,
                       **options)
    write_result(result, args.output, args.overwrite)
    print(f"wrote {args.output}")
    return 0


def _run_batch(args):
    from .batch import process_files
    from .datasets import fits_files

    if Path(args.input).is_file():
        raise UserError(f"input {args.input} is a file: batch takes a folder (run "
                        f"'{PROG} {args.operation} {args.input} -o OUT.fits' for one file)")
    if not Path(args.input).is_dir():
        raise UserError(f"input folder {args.input} not found")
    files = fits_files(args.input, args.pattern)  # unreadable ones too: they are reported
    if not files:
        raise UserError(f"no files matching {args.pattern!r} in {args.input}")
    options = _batch_options(args)
    client = None if args.scheduler is None else _client(args.scheduler)
    try:
        table = process_files(files, args.operation, args.output, overwrite=args.overwrite,
                              client=client, **options)
    finally:
        if client is not None:
            client.close()
    for row in table:
        print(f"{row['status']:8s} {row['input']} -> {row['output']} {row['message']}".rstrip())
    counts = {s: int((table["status"] == s).sum()) for s in ("done", "skipped", "failed")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    return 1 if counts["failed"] else 0


def _batch_options(args):
    """Tiling options, and the operation's own options that were given.

    An option of another operation (``--factor`` with denoise) is refused
    rather than ignored.
    """
    options = dict(model=args.model, tile_size=args.tile_size, overlap=args.overlap,
                   batch_size=args.batch_size)
    if args.unit is not None:
        options["unit"] = args.unit
    own = {flags[0] for flags, _ in OPERATIONS[args.operation][1]}
    every = {flags[0] for _, extra in OPERATIONS.values() for flags, _ in extra}
    for flag in sorted(every):
        dest = flag.lstrip("-").replace("-", "_")
        if getattr(args, dest) is None:
            continue
        if flag not in own:
            raise UserError(f"{flag} is not an option of {args.operation}")
        options[dest] = getattr(args, dest)
    return options


def _client(address):
    try:
        from distributed import Client
    except ImportError as err:
        raise UserError("--scheduler needs dask.distributed: pip install distributed") from err
    return Client(address)


def _run_demo(args):
    from . import denoise_residual, simulate_sky
    from .metrics import psnr

    folder = Path(args.output)
    paths = [folder / name for name in _DEMO_FILES]
    _refuse_existing(paths, args.overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    sky = simulate_sky((args.size, args.size), seed=args.seed)
    denoised = denoise_residual(sky.noisy, model=args.model)
    scores = [psnr(sky.clean.data, image.data) for image in (sky.noisy, denoised)]
    for image, path in zip((sky.noisy, denoised, sky.clean), paths, strict=False):
        image.write(path, overwrite=args.overwrite)
    _plot_before_after(sky.noisy, denoised, sky.clean, scores, paths[3])
    for path in paths:
        print(f"wrote {path}")
    print(f"PSNR vs clean: noisy {scores[0]:.2f} dB, denoised {scores[1]:.2f} dB")
    return 0


def _plot_before_after(noisy, denoised, clean, scores, path):
    """Three panels (noisy, denoised, clean), one asinh stretch, WCS axes."""
    import numpy as np
    from astropy.visualization import AsinhStretch, ImageNormalize, ManualInterval, ZScaleInterval
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    low, high = ZScaleInterval().get_limits(noisy.data)
    high = max(high, float(np.nanpercentile(clean.data, 99.8)))
    norm = ImageNormalize(interval=ManualInterval(low, max(high, low + 1e-12)),
                          stretch=AsinhStretch(a=0.1))
    titles = (f"noisy (PSNR {scores[0]:.2f} dB)", f"denoised (PSNR {scores[1]:.2f} dB)",
              "clean (reference)")
    figure = Figure(figsize=(13.5, 4.8), layout="constrained")
    for i, (image, title) in enumerate(zip((noisy, denoised, clean), titles, strict=True)):
        axes = figure.add_subplot(1, 3, i + 1, projection=image.wcs)
        axes.imshow(image.data, origin="lower", cmap="gray", norm=norm, interpolation="nearest")
        axes.set_title(title)
        celestial = image.wcs is not None and image.wcs.has_celestial
        axes.set_xlabel("RA" if celestial else "x [pixel]")
        axes.set_ylabel("Dec" if celestial else "y [pixel]")
    figure.savefig(path, dpi=80, bbox_inches="tight")  # WCSAxes can overhang the layout


def main(argv=None):
    """Run the command line; return the exit status (0 success, 2 user error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (UserError, *USER_ERRORS) as err:
        return print_error(PROG, err)


if __name__ == "__main__":
    sys.exit(main())

"""Shared helpers for the benchmark scripts in ``benchmarks/``.

Import it from a script in this folder with ``from _common import ...`` (the
script's folder is on ``sys.path`` when it is run as ``python
benchmarks/bench_x.py``). The API is small and meant to stay stable:

Report
    ``report_header(title, args)``   markdown header: date, machine, versions, command.
    ``markdown_table(headers, rows)`` a markdown table; floats get ``digits`` decimals.
    ``write_report(path, text)``     write the markdown (creating folders) and print it.
    ``passfail(ok)``                 ``"PASS"``/``"FAIL"`` (``"n/a"`` for None).

Data (``../shared/data`` beside the checkout, or ``$ANR_SHARED_DATA``)
    ``DATA_DIR``, ``REAL_IMAGES``    folder and the names `load_image` knows.
    ``load_image(name)``             -> `BenchImage` (float32 data, unit, WCS, header,
                                     description), or ``None`` when the file is absent.
    ``BenchImage.crop(size, ...)``   a centred (or placed) crop, WCS sliced, crop stated.
    ``simulated_images(n, shape)``   clean simulated skies with seeds 900000+ (training
                                     uses ``seed*100003+i`` with small seeds).

Degradation and metrics
    ``noisy_copy(clean, fraction, seed)`` -> (noisy, sigma): Gaussian noise at
                                     ``fraction`` of the 0.5-99.9 percentile range.
    ``percentile_range(clean)``      the data range used for PSNR/SSIM.

Classical baselines
    ``classical_denoisers(noisy, sigma, clean=None, ...)`` -> {name: Baseline}: oracle-
                                     tuned (best PSNR against ``clean`` over a small grid)
                                     when ``clean`` is given, noise-aware defaults otherwise.

Memory and speed
    ``run_isolated(setup, statement)`` runs code in a fresh Python process and returns
                                     its wall time and peak resident memory (RSS).
    ``care_unet()``                  a CARE-like plain U-Net (CSBDeep defaults).
"""

import datetime
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("ANR_SHARED_DATA", HERE.parent.parent / "shared" / "data"))

__all__ = ["DATA_DIR", "REAL_IMAGES", "BenchImage", "absent_images", "Baseline", "care_unet",
           "classical_denoisers", "load_image", "markdown_table", "noisy_copy", "passfail",
           "percentile_range", "report_header", "run_isolated", "simulated_images",
           "write_report"]


# ------------------------------------------------------------------ report


def report_header(title, args=None):
    """Markdown title plus date, machine, CPU count, versions and the command line."""
    import torch

    import astro_nn_restore

    lines = [
        f"# {title}", "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {np.__version__}, astro_nn_restore {astro_nn_restore.__version__}",
        f"- command: `python {' '.join(sys.argv)}`",
    ]
    if args is not None:
        lines.append(f"- arguments: `{vars(args)}`")
    return "\n".join(lines) + "\n"


def _cell(value, digits):
    if isinstance(value, (float, np.floating)):
        return "nan" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers, rows, *, digits=2):
    """A markdown table; float cells are written with ``digits`` decimals."""
    out = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        out.append("| " + " | ".join(_cell(v, digits) for v in row) + " |")
    return "\n".join(out) + "\n"


def passfail(ok):
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def median_seconds(func, repeats=3):
    """Median wall time in seconds of ``repeats`` calls of ``func()``.

    One timing on a shared machine can be off by tens of per cent; the median
    of a few is what the reports quote.
    """
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def write_report(path, text):
    """Write the report (markdown) to ``path`` and print it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    print(f"[written to {path}]")


# -------------------------------------------------------------------- data


@dataclass
class BenchImage:
    """A real (or simulated) test image: float32 data with its unit and description."""

    name: str
    data: np.ndarray
    unit: str
    description: str
    wcs: object = None
    header: object = None

    def crop(self, size, *, origin=None):
        """At most ``size`` x ``size`` pixels: centred, or from ``origin`` = (y0, x0)."""
        ny, nx = self.data.shape
        hy, hx = min(size, ny), min(size, nx)
        y0, x0 = origin if origin is not None else ((ny - hy) // 2, (nx - hx) // 2)
        ys, xs = slice(y0, y0 + hy), slice(x0, x0 + hx)
        if (hy, hx) == (ny, nx):
            return self
        wcs = None if self.wcs is None else self.wcs[ys, xs]
        text = f"{self.description}; crop [{y0}:{y0 + hy}, {x0}:{x0 + hx}] of {ny}x{nx}"
        return replace(self, data=np.ascontiguousarray(self.data[ys, xs]), description=text,
                       wcs=wcs)


# name -> (relative path, HDU, unit, description)
REAL_IMAGES = {
    "m51": ("m51_ccd_b/M51.fits", 0, "adu", "M51, KPNO CCD B band"),
    "m67": ("m67_poss/M6707HH.fits", 0, "adu", "M67, POSS-I plate scan (DSS)"),
    "glimpse": ("glimpse_irac_psf/spitzer_example_image.fits", 0, "MJy/sr",
                "Spitzer IRAC ch2 GLIMPSE mosaic"),
    "glimpse_psf": ("glimpse_irac_psf/irac_ch2_flight.fits", 0, "",
                    "IRAC ch2 in-flight PSF, 4x oversampled (0.30325 arcsec/px)"),
    "trace171": ("trace_171/trace_171_1998-05-19T222143_1024.fits", 0, "DN",
                 "TRACE 171 A coronal loops"),
    "aia171": ("aia_171/aia_171_level1.fits", 0, "DN", "SDO/AIA 171 A full disk"),
    "m13_1": ("m13_raw_frames/M13_blue_0001.fits", 0, "adu", "M13 raw frame 1"),
    "m13_2": ("m13_raw_frames/M13_blue_0002.fits", 0, "adu", "M13 raw frame 2"),
    "m13_3": ("m13_raw_frames/M13_blue_0003.fits", 0, "adu", "M13 raw frame 3"),
    "hdf_heldout": (None, None, "", "Hubble Deep Field luminance, held-out part "
                    "(astro_nn_restore.datasets.hubble_deep_field('heldout'))"),
}
for _band in ("F606w", "F814w"):
    for _file, _hdus in (("01", 3), ("02", 2)):
        for _hdu in range(_hdus):
            REAL_IMAGES[f"aegis_{_band.lower()}_{_file}_{_hdu}"] = (
                f"aegis_acs_stamps_psf/AEGIS_{_band}_images_{_file}.fits", _hdu, "",
                f"AEGIS HST/ACS {_band} galaxy stamp {_file} HDU {_hdu}")
            REAL_IMAGES[f"aegis_{_band.lower()}_psf_{_file}_{_hdu}"] = (
                f"aegis_acs_stamps_psf/AEGIS_{_band}_PSF_images_{_file}.fits", _hdu, "",
                f"AEGIS HST/ACS {_band} PSF {_file} HDU {_hdu}")


def absent_images(names):
    """Those of ``names`` (see ``REAL_IMAGES``) whose files are not in ``DATA_DIR``, once each."""
    return [name for name in dict.fromkeys(names)
            if REAL_IMAGES[name][0] is not None and not (DATA_DIR / REAL_IMAGES[name][0]).exists()]


def load_image(name):
    """Load a real image by name (see ``REAL_IMAGES``); ``None`` if its file is absent.

    The data are float32 in native byte order; NaN are kept. ``unit`` is the
    physical unit from the MANIFEST ('' when the data have none).
    """
    if name not in REAL_IMAGES:
        raise ValueError(f"unknown image {name!r}; known: {sorted(REAL_IMAGES)}")
    path, hdu, unit, text = REAL_IMAGES[name]
    if path is None:
        from astro_nn_restore.datasets import hubble_deep_field

        return BenchImage(name, hubble_deep_field("heldout"), unit, text)
    full = DATA_DIR / path
    if not full.exists():
        return None
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        # AIA has an invalid BLANK for float data; DSS/solar headers need WCS fixes
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        warnings.simplefilter("ignore", FITSFixedWarning)
        with fits.open(full, memmap=False) as hdul:
            data = np.asarray(hdul[hdu].data, dtype=np.float32)
            header = hdul[hdu].header.copy()
        wcs = WCS(header) if header.get("CTYPE1") else None
    return BenchImage(name, data, unit, f"{text} ({path})", wcs=wcs, header=header)


def simulated_images(n, shape=(256, 256), *, first_seed=900_000, **kwargs):
    """Clean simulated skies (`simulate_sky`) with seeds ``first_seed + i``, unseen in training."""
    from astro_nn_restore import simulate_sky

    images = []
    for i in range(n):
        sky = simulate_sky(shape, seed=first_seed + i, **kwargs)
        images.append(BenchImage(f"sim{first_seed + i}", np.asarray(sky.clean.data, np.float32),
                                 str(sky.clean.unit),
                                 f"simulate_sky({shape}, seed={first_seed + i}), noiseless",
                                 wcs=sky.clean.wcs))
    return images


# ------------------------------------------------------- noise and metrics


def percentile_range(clean):
    """The 0.5-99.9 percentile range of ``clean`` (noise scale and PSNR/SSIM range)."""
    low, high = np.nanpercentile(clean, [0.5, 99.9])
    return float(high - low) if high > low else 1.0


def noisy_copy(clean, fraction, seed):
    """``clean`` + white Gaussian noise of sigma = ``fraction`` of its percentile range.

    Returns (noisy float32, sigma).
    """
    sigma = fraction * percentile_range(clean)
    rng = np.random.default_rng(seed)
    noisy = clean + sigma * rng.standard_normal(clean.shape).astype(np.float32)
    return noisy.astype(np.float32), sigma


# ------------------------------------------------------ classical baselines


@dataclass
class Baseline:
    """Output of a classical denoiser and the parameters that produced it."""

    output: np.ndarray
    params: str
    seconds: float


def _grids(sigma):
    """Parameter grids per method; ``sigma`` is the noise in the units of the data passed."""
    return {
        "gaussian": [dict(sigma=s) for s in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.5)],
        "wavelet": [dict(wavelet=w) for w in ("db1", "db2", "sym4")],
        "tv": [dict(weight=f * sigma) for f in (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.5)],
        "nlm": [dict(h=f * sigma) for f in (0.4, 0.6, 0.8, 1.0, 1.2, 1.6)],
        "bm3d": [dict()],
    }


def _defaults(sigma):
    """Noise-aware default parameters (used where no clean reference exists)."""
    return {"gaussian": dict(sigma=1.0), "wavelet": dict(wavelet="db1"),
            "tv": dict(weight=sigma), "nlm": dict(h=0.8 * sigma), "bm3d": dict()}


def _apply(method, image, sigma, params):
    from scipy import ndimage
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet

    if method == "gaussian":
        return ndimage.gaussian_filter(image, params["sigma"])
    if method == "wavelet":
        return denoise_wavelet(image, sigma=sigma, method="BayesShrink", mode="soft",
                               rescale_sigma=True, **params)
    if method == "tv":
        return denoise_tv_chambolle(image, **params)
    if method == "nlm":
        return denoise_nl_means(image, sigma=sigma, fast_mode=True, patch_size=7,
                                patch_distance=11, **params)
    if method == "bm3d":
        import bm3d

        return bm3d.bm3d(image, sigma_psd=sigma)
    raise ValueError(f"unknown method {method!r}")


def _describe(method, params, scale):
    if method == "tv":
        return f"weight={params['weight'] / scale:.2f}σ"
    if method == "nlm":
        return f"h={params['h'] / scale:.2f}σ"
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "sigma_psd=σ"


METHODS = ("gaussian", "wavelet", "tv", "nlm", "bm3d")


def classical_denoisers(noisy, sigma, clean=None, *, methods=METHODS, bm3d_max_size=512):
    """Run the classical denoisers with the true noise ``sigma`` given.

    With ``clean``, each method's parameters are chosen by the best PSNR
    against ``clean`` over a small grid (oracle tuning); without, noise-aware
    defaults are used (Gaussian 1 px, wavelet db1, TV weight = σ, NLM h = 0.8σ).
    Grids: Gaussian 0.5-4.5 px; wavelet db1/db2/sym4; TV weight 0.25-4.5 σ;
    NLM (fast mode, 7x7 patches, distance 11) h 0.4-1.6 σ; BM3D has no free
    parameter once σ is given.
    All methods see the data scaled to its percentile range (so skimage's
    float conventions hold) and give results back in the input's units.
    BM3D is skipped for images larger than ``bm3d_max_size`` on a side.

    Returns
    -------
    dict
        ``{method: Baseline}``.
    """
    from astro_nn_restore.metrics import psnr

    low = float(np.nanpercentile(noisy if clean is None else clean, 0.5))
    scale = percentile_range(noisy if clean is None else clean)
    x = ((noisy - low) / scale).astype(np.float64)
    s = sigma / scale
    ref = None if clean is None else (clean - low) / scale
    results = {}
    for method in methods:
        if method == "bm3d" and max(noisy.shape) > bm3d_max_size:
            continue
        candidates = _grids(s)[method] if ref is not None else [_defaults(s)[method]]
        start, best = time.perf_counter(), None
        for params in candidates:
            out = _apply(method, x, s, params)
            score = psnr(ref, out, data_range_value=1.0) if ref is not None else 0.0
            if best is None or score > best[0]:
                best = (score, out, params)
        output = (best[1] * scale + low).astype(np.float32)
        results[method] = Baseline(output, _describe(method, best[2], s),
                                   time.perf_counter() - start)
    return results


# -------------------------------------------------------- memory and speed

_PRELUDE = """
import json, re, resource, sys, time
sys.path.insert(0, {here!r})

def _status(key):
    with open('/proc/self/status') as handle:
        return int(re.search(key + r':\\s+(\\d+)', handle.read()).group(1)) * 1024

def _reset_peak():
    try:
        with open('/proc/self/clear_refs', 'w') as handle:
            handle.write('5')
        return True
    except OSError:
        return False
"""

_MEASURE = """
_reset = _reset_peak()
_before = _status('VmRSS')
_t0 = time.perf_counter()
{statement}
_seconds = time.perf_counter() - _t0
print(json.dumps(dict(seconds=_seconds, rss_before=_before, peak_rss=_status('VmHWM'),
                      peak_reset=_reset,
                      ru_maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      extra=globals().get('extra', {{}}))))
"""


def run_isolated(setup, statement, *, threads=None, timeout=3600):
    """Time ``statement`` in a fresh Python process and measure its peak memory.

    ``setup`` runs first (imports, inputs, warm-up); then the peak-RSS mark is
    reset (Linux ``/proc/self/clear_refs``), ``statement`` runs, and the peak
    resident set size is read (``VmHWM``; it counts torch's allocations too,
    which tracemalloc does not see). ``statement`` may set a dict ``extra``
    that is returned as is.

    Returns
    -------
    dict
        ``seconds``, ``rss_before`` (bytes, after setup), ``peak_rss`` (bytes,
        during the statement), ``increment`` = peak_rss - rss_before,
        ``peak_reset`` (False: the peak may include the setup), ``ru_maxrss``
        and ``extra``.
    """
    code = (_PRELUDE.format(here=str(HERE)) + textwrap.dedent(setup)
            + _MEASURE.format(statement=textwrap.dedent(statement)))
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"isolated run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["increment"] = result["peak_rss"] - result["rss_before"]
    return result


def care_unet(in_channels=1, out_channels=1, *, depth=2, filters=32, kernel=5, convs=2):
    """A CARE-like plain U-Net with CSBDeep's 2-D defaults, fp32.

    CSBDeep ``Config`` defaults: ``unet_n_depth=2``, ``unet_n_first=32``,
    ``unet_kern_size=5``, ``unet_n_conv_per_depth=2``, ReLU, max-pooling,
    nearest upsampling with concatenated skips, a 1x1 output convolution and a
    residual connection to the input.
    """
    import torch
    from torch import nn

    def convs_block(c_in, c_out, n):
        layers = []
        for i in range(n):
            layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, kernel, padding=kernel // 2),
                       nn.ReLU(inplace=True)]
        return nn.Sequential(*layers)

    class CareUNet(nn.Module):
        size_multiple = 2**depth

        def __init__(self):
            super().__init__()
            widths = [filters * 2**i for i in range(depth)]
            self.down = nn.ModuleList()
            c = in_channels
            for w in widths:
                self.down.append(convs_block(c, w, convs))
                c = w
            middle = filters * 2**depth
            self.middle = nn.Sequential(convs_block(c, middle, convs - 1),
                                        convs_block(middle, filters * 2 ** max(0, depth - 1), 1))
            c = filters * 2 ** max(0, depth - 1)
            self.up = nn.ModuleList()
            for i in reversed(range(depth)):
                out = filters * 2 ** max(0, i - 1)
                self.up.append(nn.Sequential(convs_block(c + widths[i], widths[i], convs - 1),
                                             convs_block(widths[i], out, 1)))
                c = out
            self.head = nn.Conv2d(c, out_channels, 1)

        def forward(self, x):
            skips, y = [], x
            for block in self.down:
                y = block(y)
                skips.append(y)
                y = nn.functional.max_pool2d(y, 2)
            y = self.middle(y)
            for block in self.up:
                y = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
                y = block(torch.cat([y, skips.pop()], dim=1))
            return x[:, :out_channels] + self.head(y)

    return CareUNet().eval()

"""Benchmark `deblur` against Richardson-Lucy (true PSF, best iteration count) and Wiener.

Run from the checkout::

    python benchmarks/bench_deblur.py            # full run (about an hour on 2 cores)
    python benchmarks/bench_deblur.py --quick    # small crops, 512x512 throughput

Images (reference = the image before blurring):

* ``sim``: simulated skies (`astro_nn_restore.simulate.simulate_sky`, seeds never
  used in training), each blurred by its own PSF from
  `astro_nn_restore.simulate.random_psf`;
* ``moffat``: the real images of ``../shared/data`` (skipped when absent), blurred
  by a Moffat PSF of FWHM 3 px and beta 3 (the Hubble Deep Field: its held-out
  part, luminance);
* ``realpsf``: the GLIMPSE Spitzer mosaic blurred by the IRAC channel-2 PSF
  resampled to the mosaic's 1.2"/px (factor 0.30325 / 1.2, pixel-integrated,
  normalised), and the HST AEGIS stamps blurred by their own PSFs.

Noise: Gaussian, sigma = 0.5 % of the reference's 0.5-99.9 percentile range. Every
method gets the true PSF. Richardson-Lucy (`skimage.restoration.richardson_lucy`)
runs on the image shifted to be positive, with the iteration count that gives the
best PSNR in `RL_ITERATIONS` (an oracle choice); Wiener is
`skimage.restoration.unsupervised_wiener`. Both see the image reflect-padded by
the PSF size. The network gets no noise estimate (it measures it).

Columns: PSNR (dB, reference range); ``gain`` = network minus the best of
(input, RL, Wiener); ``FWHM`` = median output/input FWHM of isolated stars with
S/N > 20 (Gaussian fit, `photutils.psf.fit_fwhm`); ``flux`` = total-flux error of
the output against the input (background-subtracted, good pixels); ``ap`` =
median aperture-flux ratio output/reference of those stars (radius 2 FWHM of the
input, local background from an annulus). Separate lines: 5-sigma detections on a
frame of pure noise (DAOStarFinder, the input's sigma for every image) and the
throughput on a 4096x4096 frame (512x512 with ``--quick``).
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RL_ITERATIONS = (5, 10, 20, 35, 50, 80, 120, 200)
NOISE_FRACTION = 0.005
IRAC_RESAMPLE = 0.30325 / 1.2  # PSF pixel / mosaic pixel


@dataclass
class Case:
    name: str
    kind: str
    truth: np.ndarray
    psf: np.ndarray
    stars: np.ndarray | None = None  # (N, 2) x, y of isolated truth stars, or None: find them
    results: dict = field(default_factory=dict)


# ----------------------------------------------------------------- images
def simulated_cases(n, size, seed=20_260_101):
    from astro_nn_restore.simulate import random_psf, simulate_sky

    cases = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        sky = simulate_sky((size, size), seed=rng, fwhm=rng.uniform(1.5, 3.5))
        psf = random_psf(rng, fwhm_range=(1.5, 5.0))
        stars = sky.sources[sky.sources["kind"] == "star"]
        cases.append(Case(f"sim-{i}", "sim", np.asarray(sky.clean.data, float), psf,
                          np.transpose([stars["x"], stars["y"]])))
    return cases


def _read(path, hdu=0):
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdulist:
        data = np.asarray(hdulist[hdu].data, dtype=float)
    if not np.isfinite(data).all():
        data = np.where(np.isfinite(data), data, np.nanmedian(data))
    return data


def _crop(image, size):
    if size is None:
        return image
    y0 = max(0, (image.shape[0] - size) // 2)
    x0 = max(0, (image.shape[1] - size) // 2)
    return image[y0 : y0 + size, x0 : x0 + size]


def real_moffat_cases(crop):
    from astro_nn_restore.datasets import hubble_deep_field
    from astro_nn_restore.simulate import psf_moffat

    psf = psf_moffat(3.0, beta=3.0)
    files = {
        "m13": "m13_raw_frames/M13_blue_0001.fits",
        "m67": "m67_poss/M6707HH.fits",
        "m51": "m51_ccd_b/M51.fits",
        "spitzer": "glimpse_irac_psf/spitzer_example_image.fits",
        "trace": "trace_171/trace_171_1998-05-19T222143_1024.fits",
        "aia": "aia_171/aia_171_level1.fits",
    }
    cases = [Case(f"{name}", "moffat", _crop(_read(DATA / path), crop), psf)
             for name, path in files.items() if (DATA / path).exists()]
    cases.append(Case("hdf-heldout", "moffat",
                      _crop(hubble_deep_field("heldout").astype(float), crop), psf))
    return cases


def irac_psf():
    """The IRAC ch2 PSF at the mosaic's pixel scale: pixel-integrated, odd, sum 1."""
    from scipy.ndimage import map_coordinates, uniform_filter

    fine = _read(DATA / "glimpse_irac_psf/irac_ch2_flight.fits")
    step = 1.0 / IRAC_RESAMPLE  # fine pixels per mosaic pixel (3.96)
    box = uniform_filter(fine, size=int(round(step)), mode="constant")  # integrate a pixel
    half = int((fine.shape[0] // 2) / step)
    offsets = np.arange(-half, half + 1) * step + fine.shape[0] // 2
    psf = map_coordinates(box, np.meshgrid(offsets, offsets, indexing="ij"), order=3)
    psf = np.clip(psf, 0, None)
    return psf / psf.sum()


def real_psf_cases(crop):
    from astropy.table import Table

    from astro_nn_restore.deblur import prepare_psf

    cases = []
    spitzer = DATA / "glimpse_irac_psf/spitzer_example_image.fits"
    if spitzer.exists():
        cases.append(Case("spitzer-irac", "realpsf", _crop(_read(spitzer), crop), irac_psf()))
    folder = DATA / "aegis_acs_stamps_psf"
    for band in ("F606w", "F814w"):
        catalog = folder / f"AEGIS_{band}_catalog.fits"
        if not catalog.exists():
            continue
        for row in Table.read(catalog):
            image = _read(folder / Path(row["GAL_FILENAME"].strip()).name, int(row["GAL_HDU"]))
            psf = prepare_psf(_read(folder / Path(row["PSF_FILENAME"].strip()).name,
                                    int(row["PSF_HDU"])))
            cases.append(Case(f"aegis-{band}-{row['IDENT']}", "realpsf", image, psf))
    return cases


# --------------------------------------------------------------- methods
def degrade(truth, psf, rng):
    from astro_nn_restore.degrade import blur, noise_sigma_from_range

    sigma = noise_sigma_from_range(truth, NOISE_FRACTION)
    return blur(truth, psf) + rng.normal(0, sigma, truth.shape), sigma


def _padded(function, image, psf):
    pad = max(psf.shape)
    out = function(np.pad(image, pad, mode="reflect"))
    return out[pad:-pad, pad:-pad]


def richardson_lucy_best(blurred, psf, truth):
    """(best image, iterations) over `RL_ITERATIONS` by PSNR against the truth."""
    from skimage.restoration import richardson_lucy

    from astro_nn_restore.metrics import psnr

    span = np.ptp(blurred)
    offset = blurred.min() - 1e-3 * span
    best = (-np.inf, None, None)
    for n in RL_ITERATIONS:
        out = _padded(lambda im, n=n: richardson_lucy(im - offset, psf, num_iter=n, clip=False),
                      blurred, psf) + offset
        score = psnr(truth, out)
        if score > best[0]:
            best = (score, out, n)
    return best[1], best[2]


def wiener(blurred, psf):
    from skimage.restoration import unsupervised_wiener

    low, span = blurred.min(), np.ptp(blurred) or 1.0
    scaled = _padded(lambda im: unsupervised_wiener(im, psf, clip=False,
                                                    rng=np.random.default_rng(0))[0],
                     (blurred - low) / span, psf)
    return scaled * span + low


def network(blurred, psf, model, *, blind=False):
    from astro_nn_restore.deblur import deblur

    return deblur(blurred.astype(np.float32), psf=None if blind else psf, model=model).data


# --------------------------------------------------------------- metrics
def _sigma(image):
    from astropy.stats import sigma_clipped_stats

    _, median, std = sigma_clipped_stats(image, sigma=3.0)
    return median, std


def _isolated(xy, shape, radius, margin):
    from scipy.spatial import cKDTree

    if len(xy) == 0:
        return xy
    inside = ((xy[:, 0] > margin) & (xy[:, 0] < shape[1] - 1 - margin)
              & (xy[:, 1] > margin) & (xy[:, 1] < shape[0] - 1 - margin))
    if len(xy) > 1:
        distance, _ = cKDTree(xy).query(xy, k=2)
        inside &= distance[:, 1] > radius
    return xy[inside]


def find_stars(case, blurred):
    """Isolated stars with S/N > 20 in the blurred input, and the aperture radius."""
    from photutils.detection import DAOStarFinder

    if case.stars is None:
        median, std = _sigma(case.truth)
        found = DAOStarFinder(threshold=10 * std, fwhm=3.0)(case.truth - median)
        xy = np.empty((0, 2)) if found is None else np.transpose(
            [found["xcentroid"], found["ycentroid"]])
    else:
        xy = np.asarray(case.stars, float)
    xy = _isolated(xy, blurred.shape, 18.0, 18.0)
    if len(xy) == 0:
        return xy, 6.0
    fwhm_in = np.nanmedian(_fwhm(blurred, xy)) if len(xy) else np.nan
    radius = float(np.clip(2 * fwhm_in, 3.0, 8.0)) if np.isfinite(fwhm_in) else 6.0
    _, std = _sigma(blurred)
    snr = _aperture(blurred, xy, radius) / (std * np.sqrt(np.pi * radius**2))
    return xy[np.isfinite(snr) & (snr > 20)], radius


def _aperture(image, xy, radius):
    from astro_nn_restore.metrics import _aperture_flux

    return _aperture_flux(image, xy, radius, (radius + 3, radius + 8))


def _fwhm(image, xy):
    from photutils.psf import fit_fwhm

    median, _ = _sigma(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.asarray(fit_fwhm(image - median, xypos=xy, fit_shape=9, fwhm=3.0))
        except Exception:  # a failed fit leaves the metric empty, not the run
            return np.full(len(xy), np.nan)


def flux_error(output, blurred):
    background = np.median(blurred)
    return float((output.sum() - blurred.sum()) / (blurred - background).sum())


def evaluate(case, model, rng, *, blind):
    from astro_nn_restore.metrics import psnr

    blurred, sigma = degrade(case.truth, case.psf, rng)
    t0 = time.perf_counter()
    outputs = {"input": blurred}
    outputs["rl"], rl_iter = richardson_lucy_best(blurred, case.psf, case.truth)
    outputs["wiener"] = wiener(blurred, case.psf)
    t1 = time.perf_counter()
    outputs["net"] = network(blurred, case.psf, model)
    t2 = time.perf_counter()
    if blind:
        outputs["blind"] = network(blurred, case.psf, model, blind=True)
    r = {name: psnr(case.truth, image) for name, image in outputs.items()}
    r["gain"] = r["net"] - max(r["input"], r["rl"], r["wiener"])
    r["rl_iter"] = rl_iter
    r["flux"] = flux_error(outputs["net"], blurred)
    stars, radius = find_stars(case, blurred)
    r["n_stars"] = len(stars)
    if len(stars):
        fwhm_in = _fwhm(blurred, stars)
        for name, image in (("", outputs["net"]), ("_rl", outputs["rl"]), ("_truth", case.truth)):
            r[f"fwhm_ratio{name}"] = float(np.nanmedian(_fwhm(image, stars) / fwhm_in))
        reference = _aperture(case.truth, stars, radius)
        for name in ("net", "rl", "input"):
            key = "ap_ratio" if name == "net" else f"ap_ratio_{name}"
            r[key] = float(np.median(_aperture(outputs[name], stars, radius) / reference))
    r["seconds_baselines"], r["seconds_net"] = t1 - t0, t2 - t1
    case.results = r
    return r


def pure_noise(model, size, rng):
    from astro_nn_restore.metrics import count_detections
    from astro_nn_restore.simulate import psf_moffat

    noise = rng.normal(100.0, 1.0, (size, size))
    counts = {"input": count_detections(noise, sigma=1.0)}
    counts["net (Moffat 3 px)"] = count_detections(
        network(noise, psf_moffat(3.0, beta=3.0), model), sigma=1.0)
    counts["net (blind)"] = count_detections(network(noise, None, model, blind=True), sigma=1.0)
    return counts


def throughput(model, size, rng):
    from astro_nn_restore.deblur import deblur
    from astro_nn_restore.simulate import psf_moffat

    image = rng.normal(100.0, 3.0, (size, size)).astype(np.float32)
    deblur(image[:256, :256], psf=psf_moffat(3.0), model=model)  # warm-up
    start = time.perf_counter()
    deblur(image, psf=psf_moffat(3.0), model=model)
    seconds = time.perf_counter() - start
    return size * size / 1e6 / seconds, seconds


# ---------------------------------------------------------------- report
def _fmt(value, spec):
    return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else (
        format(value, spec))


def table(cases, blind):
    head = ["image", "kind", "input", "RL (iter)", "Wiener", "net"] + (["blind"] if blind else [])
    head += ["gain", "FWHM out/in", "flux", "stars", "ap out/ref"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cases:
        r = c.results
        row = [c.name, c.kind, _fmt(r["input"], ".2f"), f"{r['rl']:.2f} ({r['rl_iter']})",
               _fmt(r["wiener"], ".2f"), _fmt(r["net"], ".2f")]
        row += [_fmt(r.get("blind"), ".2f")] if blind else []
        row += [f"{r['gain']:+.2f}", _fmt(r.get("fwhm_ratio"), ".2f"), f"{100 * r['flux']:+.3f}%",
                str(r["n_stars"]), _fmt(r.get("ap_ratio"), ".3f")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _median(values, spec):
    return _fmt(float(np.median(values)), spec) if len(values) else ""


def summary(cases):
    head = ["set", "images", "median PSNR best baseline", "median PSNR net", "median gain",
            "median FWHM out/in: net / RL / truth", "max abs flux error",
            "median ap out/ref: net / RL / input"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind in ("sim", "moffat", "realpsf", None):
        group = [c.results for c in cases if kind is None or c.kind == kind]
        if not group:
            continue

        def values(key, group=group):
            return [r[key] for r in group if key in r]

        best = [max(r["input"], r["rl"], r["wiener"]) for r in group]
        row = [kind or "all", str(len(group)), _median(best, ".2f"), _median(values("net"), ".2f"),
               _median(values("gain"), "+.2f"),
               " / ".join(_median(values(k), ".2f")
                          for k in ("fwhm_ratio", "fwhm_ratio_rl", "fwhm_ratio_truth")),
               f"{100 * max(abs(r['flux']) for r in group):.3f}%",
               " / ".join(_median(values(k), ".3f")
                          for k in ("ap_ratio", "ap_ratio_rl", "ap_ratio_input"))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small crops; 512x512 throughput")
    parser.add_argument("--model", default="default", help="deblur model (name or path)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--blind", action="store_true", help="also run the network blind")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "deblur"),
                        help="write OUTPUT.md and OUTPUT.json (default: %(default)s)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    crop = 256 if args.quick else None
    cases = simulated_cases(2 if args.quick else 8, 256 if args.quick else 384)
    if DATA.is_dir():
        cases += real_moffat_cases(crop) + real_psf_cases(crop)
    else:
        print(f"{DATA} absent: real images skipped", file=sys.stderr)
    rng = np.random.default_rng(2026)
    for case in cases:
        evaluate(case, args.model, rng, blind=args.blind)
        r = case.results
        print(f"{case.name:24s} input {r['input']:.2f} RL {r['rl']:.2f} ({r['rl_iter']}) "
              f"Wiener {r['wiener']:.2f} net {r['net']:.2f} gain {r['gain']:+.2f}",
              file=sys.stderr, flush=True)
    noise = pure_noise(args.model, 256 if args.quick else 1024, rng)
    size = 512 if args.quick else 4096
    mps, seconds = throughput(args.model, size, rng)
    report = "\n\n".join([
        f"Deblur benchmark ({'quick' if args.quick else 'full'}): model `{args.model}`, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; noise "
        f"{100 * NOISE_FRACTION}% of the 0.5-99.9 percentile range.",
        table(cases, args.blind), summary(cases),
        "Pure noise, 5-sigma detections: " + ", ".join(f"{k} {v}" for k, v in noise.items()),
        f"Throughput: {mps:.3f} MP/s on {size}x{size} ({seconds:.1f} s, with the PSF)."])
    print(report)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(report + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"cases": {c.name: {"kind": c.kind, **c.results} for c in cases},
         "pure_noise": noise, "throughput_mps": mps, "size": size, "quick": args.quick},
        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

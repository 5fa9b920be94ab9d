"""Benchmark `deblur` against Richardson-Lucy (true PSF, best iteration count) and Wiener.

Run from the checkout::

    python benchmarks/bench_deblur.py --model default --out benchmarks/results/deblur.md
    python benchmarks/bench_deblur.py --quick    # 256x256 crops, 512x512 throughput

Images (reference = the image before blurring):

* ``sim``: simulated skies (`astro_nn_restore.simulate.simulate_sky`, seeds
  900000+, never used in training), each blurred by its own PSF from
  `astro_nn_restore.simulate.random_psf`;
* ``moffat``: the real images of ``../shared/data`` (skipped when absent; loaded
  with ``_common.load_image``), blurred by a Moffat PSF of FWHM 3 px and beta 3
  (the Hubble Deep Field: its held-out part, luminance);
* ``realpsf``: the GLIMPSE Spitzer mosaic blurred by the IRAC channel-2 PSF
  resampled to the mosaic's 1.2"/px (factor 0.30325 / 1.2, pixel-integrated,
  normalised), and the HST AEGIS stamps blurred by their own PSFs.

Noise: Gaussian, sigma = 0.5 % of the reference's 0.5-99.9 percentile range
(``_common.noisy_copy``). Every method gets the true PSF, and the network the
true sigma (the project's benchmark convention; its own estimate,
`astro_nn_restore.deblur.estimate_white_noise`, is within 3 % of it on every
image here). Richardson-Lucy (`skimage.restoration.richardson_lucy`) runs on the
image shifted to be positive, with the iteration count that gives the best PSNR
in `RL_ITERATIONS` (an oracle choice); Wiener is
`skimage.restoration.unsupervised_wiener`. Both see the image reflect-padded by
the PSF size.

Columns: PSNR (dB; data range = the reference's 0.5-99.9 percentile range, as in
every benchmark here); ``gain`` = network minus the best of (input, RL, Wiener);
``FWHM`` = median output/input FWHM of isolated stars with S/N > 20 (Gaussian
fit, `photutils.psf.fit_fwhm`; the reference's own ratio bounds what is
possible); ``flux`` = total-flux error of the output against the input (good
pixels); ``ap`` = median aperture-flux ratio output/reference of those stars
(radius 2 FWHM of the input, local background from an annulus). Separate lines:
5-sigma detections on a frame of pure noise (DAOStarFinder, the input's sigma for
every image) and the throughput on a 4096x4096 frame (512x512 with ``--quick``).
"""

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _common import (
    DATA_DIR,
    absent_images,
    load_image,
    markdown_table,
    passfail,
    percentile_range,
    report_header,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]
RL_ITERATIONS = (5, 10, 20, 35, 50, 80, 120, 200)
NOISE_FRACTION = 0.005
IRAC_RESAMPLE = 0.30325 / 1.2  # PSF pixel / mosaic pixel
MOFFAT_IMAGES = ("m13_1", "m67", "m51", "glimpse", "trace171", "aia171", "hdf_heldout")
#: Images with their own PSFs (`real_psf_cases`): the IRAC mosaic and the AEGIS stamps.
REAL_PSF_IMAGES = ("glimpse", "glimpse_psf", *(
    f"aegis_{band}{kind}_{stamp}_{hdu}" for band in ("f606w", "f814w") for kind in ("", "_psf")
    for stamp, hdus in (("01", 3), ("02", 2)) for hdu in range(hdus)))
TARGETS = {"gain": 1.5, "fwhm": 0.70, "flux": 0.01, "aperture": 0.02}


@dataclass
class Case:
    name: str
    kind: str
    truth: np.ndarray
    psf: np.ndarray
    stars: np.ndarray | None = None  # (N, 2) x, y of truth stars, or None: find them
    results: dict = field(default_factory=dict)


# ----------------------------------------------------------------- images
def simulated_cases(n, size, first_seed=900_000):
    from astro_nn_restore.simulate import random_psf, simulate_sky

    cases = []
    for i in range(n):
        rng = np.random.default_rng(first_seed + i)
        sky = simulate_sky((size, size), seed=rng, fwhm=rng.uniform(1.5, 3.5))
        psf = random_psf(rng, fwhm_range=(1.5, 5.0))
        stars = sky.sources[sky.sources["kind"] == "star"]
        cases.append(Case(f"sim{first_seed + i}", "sim", np.asarray(sky.clean.data, float), psf,
                          np.transpose([stars["x"], stars["y"]])))
    return cases


def _truth(image, crop):
    image = image if crop is None else image.crop(crop)
    data = np.asarray(image.data, dtype=float)
    return np.where(np.isfinite(data), data, np.nanmedian(data))  # GLIMPSE has 3 NaN


def real_moffat_cases(crop):
    from astro_nn_restore.simulate import psf_moffat

    psf = psf_moffat(3.0, beta=3.0)
    images = [load_image(name) for name in MOFFAT_IMAGES]
    return [Case(image.name, "moffat", _truth(image, crop), psf) for image in images if image]


def irac_psf(fine):
    """The IRAC ch2 PSF at the mosaic's pixel scale: pixel-integrated, odd, sum 1."""
    from scipy.ndimage import map_coordinates, uniform_filter

    fine = np.asarray(fine, dtype=float)
    step = 1.0 / IRAC_RESAMPLE  # fine pixels per mosaic pixel (3.96)
    box = uniform_filter(fine, size=int(round(step)), mode="constant")  # integrate a pixel
    half = int((fine.shape[0] // 2) / step)
    offsets = np.arange(-half, half + 1) * step + fine.shape[0] // 2
    psf = np.clip(map_coordinates(box, np.meshgrid(offsets, offsets, indexing="ij"), order=3),
                  0, None)
    return psf / psf.sum()


def real_psf_cases(crop):
    from astro_nn_restore.deblur import prepare_psf

    cases = []
    glimpse, psf = load_image("glimpse"), load_image("glimpse_psf")
    if glimpse and psf:
        cases.append(Case("glimpse-irac", "realpsf", _truth(glimpse, crop), irac_psf(psf.data)))
    for band in ("f606w", "f814w"):
        for stamp, hdus in (("01", 3), ("02", 2)):
            for hdu in range(hdus):
                image = load_image(f"aegis_{band}_{stamp}_{hdu}")
                psf = load_image(f"aegis_{band}_psf_{stamp}_{hdu}")
                if image and psf:
                    cases.append(Case(image.name, "realpsf", _truth(image, None),
                                      prepare_psf(psf.data)))
    return cases


# --------------------------------------------------------------- methods
def degrade(truth, psf, rng):
    """Blurred by ``psf``, plus noise at 0.5 % of the reference's percentile range."""
    from astro_nn_restore.degrade import blur

    sigma = NOISE_FRACTION * percentile_range(truth)
    return blur(truth, psf) + rng.normal(0, sigma, truth.shape), sigma


def psnr(truth, image):
    from astro_nn_restore.metrics import psnr as _psnr

    return _psnr(truth, image, data_range_value=percentile_range(truth))


def _padded(function, image, psf):
    pad = max(psf.shape)
    out = function(np.pad(image, pad, mode="reflect"))
    return out[pad:-pad, pad:-pad]


def richardson_lucy_best(blurred, psf, truth):
    """(best image, iterations) over `RL_ITERATIONS` by PSNR against the truth."""
    from skimage.restoration import richardson_lucy

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


def network(blurred, psf, model, sigma=None):
    from astro_nn_restore.deblur import deblur

    return deblur(blurred.astype(np.float32), psf=psf, model=model, uncertainty=sigma).data


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
    blurred, sigma = degrade(case.truth, case.psf, rng)
    t0 = time.perf_counter()
    outputs = {"input": blurred}
    outputs["rl"], rl_iter = richardson_lucy_best(blurred, case.psf, case.truth)
    outputs["wiener"] = wiener(blurred, case.psf)
    t1 = time.perf_counter()
    outputs["net"] = network(blurred, case.psf, model, sigma)
    t2 = time.perf_counter()
    if blind:
        outputs["blind"] = network(blurred, None, model, sigma)
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
    counts["net, Moffat 3 px"] = count_detections(
        network(noise, psf_moffat(3.0, beta=3.0), model, 1.0), sigma=1.0)
    counts["net, blind"] = count_detections(network(noise, None, model, 1.0), sigma=1.0)
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
def _median(values):
    return float(np.median(values)) if len(values) else float("nan")


def _rows(cases, blind):
    for c in cases:
        r = c.results
        row = [c.name, c.kind, r["input"], f"{r['rl']:.2f} ({r['rl_iter']})", r["wiener"], r["net"]]
        row += [r["blind"]] if blind else []
        yield row + [f"{r['gain']:+.2f}", r.get("fwhm_ratio", ""), f"{100 * r['flux']:+.4f}%",
                     r["n_stars"], f"{r['ap_ratio']:.3f}" if "ap_ratio" in r else ""]


def table(cases, blind):
    head = ["image", "kind", "input", "RL (iter)", "Wiener", "net"] + (["blind"] if blind else [])
    head += ["gain", "FWHM out/in", "flux", "stars S/N>20", "ap out/ref"]
    return markdown_table(head, _rows(cases, blind))


def summary(cases):
    head = ["set", "images", "median PSNR: best baseline", "median PSNR: net", "median gain",
            "median FWHM out/in: net / RL / truth", "max abs flux error",
            "median ap out/ref: net / RL / input",
            "median abs(ap out/ref - 1) over images: net / RL / input"]
    rows = []
    for kind in ("sim", "moffat", "realpsf", None):
        group = [c.results for c in cases if kind is None or c.kind == kind]
        if not group:
            continue

        def values(key, group=group):
            return [r[key] for r in group if key in r]

        best = [max(r["input"], r["rl"], r["wiener"]) for r in group]
        rows.append([kind or "all", len(group), _median(best), _median(values("net")),
                     f"{_median(values('gain')):+.2f}",
                     " / ".join(f"{_median(values(k)):.2f}"
                                for k in ("fwhm_ratio", "fwhm_ratio_rl", "fwhm_ratio_truth")),
                     f"{100 * max(abs(r['flux']) for r in group):.4f}%",
                     " / ".join(f"{_median(values(k)):.3f}"
                                for k in ("ap_ratio", "ap_ratio_rl", "ap_ratio_input")),
                     " / ".join(f"{_median(np.abs(np.subtract(values(k), 1))):.4f}"
                                for k in ("ap_ratio", "ap_ratio_rl", "ap_ratio_input"))])
    return markdown_table(head, rows)


def targets(cases, noise):
    """The issue's targets on all images: (text, value, PASS/FAIL) rows."""
    every = [c.results for c in cases]
    gain = _median([r["gain"] for r in every])
    fwhm = _median([r["fwhm_ratio"] for r in every if "fwhm_ratio" in r])
    flux = max(abs(r["flux"]) for r in every)
    aperture = _median([r["ap_ratio"] for r in every if "ap_ratio" in r])
    invented = max(v for k, v in noise.items() if k != "input") - noise["input"]
    rows = [
        ["median PSNR gain over the best of input, RL, Wiener", f"{gain:+.2f} dB",
         f">= +{TARGETS['gain']} dB", passfail(gain >= TARGETS["gain"])],
        ["median star FWHM output/input", f"{fwhm:.2f}", f"<= {TARGETS['fwhm']}",
         passfail(fwhm <= TARGETS["fwhm"])],
        ["largest total-flux error", f"{100 * flux:.4f}%", f"<= {100 * TARGETS['flux']:.0f}%",
         passfail(flux <= TARGETS["flux"])],
        ["median aperture flux output/reference, stars S/N > 20", f"{aperture:.3f}",
         f"within {100 * TARGETS['aperture']:.0f}%",
         passfail(abs(aperture - 1) <= TARGETS["aperture"])],
        ["5-sigma detections on pure noise, network minus input", f"{invented:+d}", "<= 0",
         passfail(invented <= 0)],
    ]
    return markdown_table(["target", "measured", "required", ""], rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="256x256 crops, 2 simulated skies, 512x512 throughput")
    parser.add_argument("--model", default="default", help="deblur model (name or path)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--blind", action="store_true", help="also run the network blind")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "deblur.md"),
                        help="markdown report (a .json with every number is written beside it)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    crop = 256 if args.quick else None
    cases = simulated_cases(2 if args.quick else 8, 256 if args.quick else 384)
    if DATA_DIR.is_dir():
        cases += real_moffat_cases(crop) + real_psf_cases(crop)
    else:
        print(f"{DATA_DIR} absent: real images skipped", file=sys.stderr)
    skipped = absent_images([*MOFFAT_IMAGES, *REAL_PSF_IMAGES])
    rng = np.random.default_rng(2026)
    for case in cases:
        r = evaluate(case, args.model, rng, blind=args.blind)
        print(f"{case.name:22s} input {r['input']:.2f} RL {r['rl']:.2f} ({r['rl_iter']}) "
              f"Wiener {r['wiener']:.2f} net {r['net']:.2f} gain {r['gain']:+.2f}",
              file=sys.stderr, flush=True)
    noise = pure_noise(args.model, 256 if args.quick else 1024, rng)
    size = 512 if args.quick else 4096
    mps, seconds = throughput(args.model, size, rng)
    report = "\n".join([
        report_header("Deblurring benchmark" + (" (--quick: not a result)" if args.quick else ""),
                      args),
        f"Noise sigma {100 * NOISE_FRACTION}% of the reference's 0.5-99.9 percentile range; "
        "every method gets the true PSF. Columns are explained in the docstring of "
        "`benchmarks/bench_deblur.py`.\n",
        f"Real images from {DATA_DIR}; skipped (absent): "
        + (", ".join(skipped) if skipped else "none") + "\n",
        "## Targets (all images)\n", targets(cases, noise),
        "## Per image (PSNR in dB)\n", table(cases, args.blind),
        "## Summary\n", summary(cases),
        "## Pure noise and speed\n",
        f"- 5-sigma detections on a {256 if args.quick else 1024}^2 frame of pure noise: "
        + ", ".join(f"{k} {v}" for k, v in noise.items()),
        f"- throughput: {mps:.3f} MP/s on {size}x{size} ({seconds:.1f} s with the PSF, "
        f"{torch.get_num_threads()} torch threads)\n"])
    write_report(args.out, report)
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        {"cases": {c.name: {"kind": c.kind, **c.results} for c in cases},
         "pure_noise": noise, "throughput_mps": mps, "size": size, "quick": args.quick},
        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

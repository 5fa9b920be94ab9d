"""Benchmark of `super_resolve` (issue 5): PSNR, flux, astrometry, throughput.

Each test image (real images from ``../shared/data`` when present, the held-out
Hubble Deep Field part, and noise-free simulated skies with seeds never used in
training)
is binned x2 by block mean to make the input; the original is the reference.
In the same run: nearest, bilinear and bicubic (`skimage.transform.resize`,
order 0/1/3), SRCNN and the default model. A section not part of the targets
gives, for the Spitzer crop's saturated star cores (`saturated_cores`), how
much of each method's squared error sits there and the PSNR of the rest.

Astrometry: star centroids (quadratic fit to the 3x3 peak in a 7x7 box, background-subtracted,
the same estimator on both images) in the x2 output against the reference, in
high-resolution pixels (bicubic and SRCNN beside it, and how many stars have their
brightest pixel moved); and, for a TAN, a SIP and a TPV header on a simulated
sky and for the Spitzer CAR header, the sky positions of the output centroids
through the output WCS against the same points (mapped back to input pixels by
``(x + 0.5) / 2 - 0.5``) through the input WCS. The latter checks the WCS
rescaling at real star positions; the sky offset of output centroids from
the reference centroids is reported too (it includes the centroid error).

Usage::

    python benchmarks/bench_superres.py --model default --srcnn srcnn \\
        --out benchmarks/results/superres.md [--quick]
"""

import argparse
import datetime
import os
import platform
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import DATA_DIR, absent_images, load_image, median_seconds
from astropy import units as u
from astropy.nddata import CCDData, block_reduce
from astropy.wcs import WCS
from photutils.centroids import centroid_quadratic, centroid_sources
from scipy.ndimage import gaussian_filter, maximum_filter
from skimage.transform import resize

from astro_nn_restore import super_resolve
from astro_nn_restore.datasets import hubble_deep_field
from astro_nn_restore.metrics import data_range, psnr
from astro_nn_restore.models.superres import SRCNN, SRResNet
from astro_nn_restore.registry import ModelLoadError, load_model
from astro_nn_restore.simulate import simulate_sky
from astro_nn_restore.wcs_utils import rescale_wcs

SIM_SEEDS = (990_001, 990_002, 990_003, 990_004)  # training uses seed*100003+i, i<96
REAL = [  # (label, name in _common.REAL_IMAGES, crop (y0, x0, size))
    ("M51 (KPNO B)", "m51", (0, 0, 512)),
    ("M67 (POSS plate)", "m67", (270, 270, 512)),
    ("Spitzer IRAC2", "glimpse", (0, 256, 512)),
    ("TRACE 171", "trace171", (256, 256, 512)),
    ("AIA 171", "aia171", (0, 0, 128)),
    ("M13 raw frame", "m13_1", (264, 440, 512)),
    ("AEGIS F606W stamp", "aegis_f606w_01_1", (0, 0, 142)),
]
CLASSICAL = {"nearest": 0, "bilinear": 1, "bicubic": 3}
THROUGHPUT_REPEATS = 3  # the table gives the median of these timings
CORE_BOX = 9  # side of the box around a saturated core left out of "PSNR outside" [hi-res px]
# references with saturated stars (IRAC); elsewhere the test also flags bright
# structure that is not saturated (AIA's loops, HDF galaxies)
SATURATED_IMAGES = ("Spitzer IRAC2",)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="default model: name or path")
    parser.add_argument("--srcnn", default="srcnn", help="SRCNN model: name or path")
    parser.add_argument("--out", default="benchmarks/results/superres.md")
    parser.add_argument("--quick", action="store_true", help="tiny inputs (script check)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    return parser.parse_args()


def load(name, fallback):
    """(module, label); an untrained stand-in when the weights do not exist yet."""
    try:
        module, card = load_model(name, task="superres")
        return module, str(card.get("name", name))
    except ModelLoadError as err:
        print(f"note: {err}; using an untrained {type(fallback).__name__} stand-in")
        return fallback.eval(), f"{type(fallback).__name__} UNTRAINED stand-in"


def read_real(name, crop, quick):
    """(image, WCS) of a `REAL` crop, even-sized, NaN replaced by the median; None if absent."""
    image = load_image(name)
    if image is None:
        print(f"skip {name}: absent")
        return None
    y0, x0, size = crop
    image = image.crop(64 if quick else size, origin=(y0, x0))
    data = image.data.astype(np.float64)[: image.data.shape[0] // 2 * 2,
                                         : image.data.shape[1] // 2 * 2]
    return np.where(np.isfinite(data), data, np.nanmedian(data)), image.wcs


def test_images(quick):
    images = []
    for label, name, crop in REAL[:2] if quick else REAL:
        loaded = read_real(name, crop, quick)
        if loaded is not None:
            images.append((label, loaded[0]))
    hdf = hubble_deep_field("heldout").astype(np.float64)
    images.append(("HDF held-out (HST)", hdf[:64, :64] if quick else hdf[:872, :250]))
    shape = (64, 64) if quick else (256, 256)
    for seed in SIM_SEEDS[:1] if quick else SIM_SEEDS:
        images.append((f"simulated {seed}", simulate_sky(shape, seed=seed).clean.data.astype(
            np.float64)))
    return images


def bin2(image, func=np.mean):
    return block_reduce(image, 2, func=func)


def run_methods(low, nets):
    shape = (2 * low.shape[0], 2 * low.shape[1])
    out = {k: resize(low, shape, order=o, mode="reflect", anti_aliasing=False)
           for k, o in CLASSICAL.items()}
    for key, net in nets.items():
        out[key] = super_resolve(low, model=net, flux_conserving=False).data.astype(np.float64)
    return out


def flux_errors(low, high):
    """(relative error of the sum after binning back, max block error / input range)."""
    back = bin2(high)
    total = abs(back.sum() - low.sum()) / abs(low.sum())
    return total, np.abs(back - low).max() / np.ptp(low)


def saturated_cores(reference):
    """Mask of `CORE_BOX` boxes around bright stars whose centre dips below its surroundings.

    A bright star (a peak of the 1.5 px-smoothed image within 9x9 px, above 20 % of
    the brightest) whose central pixel is below 80 % of the brightest pixel within 2 px
    is a saturated core: flat-topped or with a dip, which no model can infer from
    the binned input.
    """
    smooth = gaussian_filter(reference, 1.5)
    peaks = (smooth == maximum_filter(smooth, 9)) & (smooth > 0.2 * smooth.max())
    brightest_near = maximum_filter(reference, 5)
    half = CORE_BOX // 2
    mask = np.zeros(reference.shape, bool)
    for y, x in zip(*np.nonzero(peaks & (reference < 0.8 * brightest_near)), strict=True):
        mask[max(y - half, 0): y + half + 1, max(x - half, 0): x + half + 1] = True
    return mask


def core_scores(reference, outputs, mask):
    """{method: (share of the squared error inside ``mask``, PSNR outside it)}."""
    scale = data_range(reference)
    scores = {}
    for key, output in outputs.items():
        error = (output - reference) ** 2
        scores[key] = (error[mask].sum() / error.sum(),
                       10 * np.log10(scale ** 2 / error[~mask].mean()))
    return scores


def psnr_table(images, nets):
    rows, flux, cores = [], [], []
    for name, reference in images:
        low = bin2(reference)
        outputs = run_methods(low, nets)
        rows.append((name, {k: psnr(reference, v) for k, v in outputs.items()}))
        flux.append((name, {k: flux_errors(low, outputs[k]) for k in nets}))
        mask = saturated_cores(reference) if name in SATURATED_IMAGES else None
        if mask is not None and mask.any():
            cores.append((name, mask.mean(), core_scores(reference, outputs, mask)))
    return rows, flux, cores


def count_flux(nets, quick):
    """Per-pixel (electron) images: output sum / input sum and x2 sum-binning error."""
    shape = (64, 64) if quick else (256, 256)
    low = CCDData(bin2(simulate_sky(shape, seed=SIM_SEEDS[0]).noisy.data, np.sum), unit="electron")
    result = {}
    for key, net in nets.items():
        out = super_resolve(low, model=net)
        back = bin2(out.data.astype(np.float64), np.sum)
        result[key] = (out.data.sum(dtype=np.float64) / low.data.sum(dtype=np.float64),
                       np.abs(back - low.data).max() / np.ptp(low.data))
    return result


# ---------------------------------------------------------------- astrometry


def sip_tpv_headers(wcs):
    """TAN, SIP and TPV versions of a simulated TAN WCS (same centre and scale)."""
    base = wcs.to_header()
    sip = base.copy()
    sip["CTYPE1"], sip["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    sip.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 3e-5, "A_1_1": -2e-5, "A_0_2": 1e-5,
                "B_2_0": -1e-5, "B_1_1": 2e-5, "B_0_2": 3e-5})
    tpv = base.copy()
    tpv["CTYPE1"], tpv["CTYPE2"] = "RA---TPV", "DEC--TPV"
    tpv.update({"PV1_0": 0.0, "PV1_1": 1.0, "PV1_2": 0.0, "PV1_4": 0.05, "PV1_5": -0.03,
                "PV2_0": 0.0, "PV2_1": 1.0, "PV2_2": 0.0, "PV2_4": 0.02, "PV2_6": 0.04})
    return {"TAN": WCS(base), "SIP": WCS(sip), "TPV": WCS(tpv)}


def centroids(image, x, y):
    data = image - np.median(image)
    cx, cy = centroid_sources(data, x, y, box_size=7, centroid_func=centroid_quadratic)
    return np.asarray(cx), np.asarray(cy)


def star_positions_sim(sim, margin=8):
    src = sim.sources
    stars = src[(src["kind"] == "star")]
    xy = np.stack([src["x"], src["y"]], axis=1)
    keep = []
    for row in stars:
        d = np.hypot(xy[:, 0] - row["x"], xy[:, 1] - row["y"])
        isolated = np.sort(d)[1] > 8 if len(d) > 1 else True
        inside = margin < row["x"] < sim.clean.shape[1] - margin and \
            margin < row["y"] < sim.clean.shape[0] - margin
        if isolated and inside:
            keep.append((row["flux"], row["x"], row["y"]))
    keep = sorted(keep, reverse=True)[:30]
    return np.array([k[1] for k in keep]), np.array([k[2] for k in keep])


def star_positions_real(image, n=30):
    from photutils.detection import find_peaks

    data = image - np.median(image)
    mad = 1.4826 * np.median(np.abs(data))
    peaks = find_peaks(data, 30 * mad, box_size=11, n_peaks=n, border_width=8)
    return (np.array([], float),) * 2 if peaks is None else (
        np.asarray(peaks["x_peak"], float), np.asarray(peaks["y_peak"], float))


def astrometry(reference, ref_wcs, x, y, nets):
    """Centroid and WCS checks of the default model's output, with the other methods' offsets.

    Returns (median centroid offset [hi-res px] per method, stars whose
    brightest pixel moved in the default output, max WCS offset ["], median
    sky offset ["], number of stars).
    """
    low_wcs = rescale_wcs(ref_wcs, 0.5)
    low = bin2(reference)
    outputs = {key: super_resolve(CCDData(low, unit="adu", wcs=low_wcs), model=net,
                                  flux_conserving=False) for key, net in nets.items()}
    rx, ry = centroids(reference, x, y)
    images = {"bicubic": resize(low, reference.shape, order=3, mode="reflect",
                                anti_aliasing=False),
              **{key: out.data.astype(np.float64) for key, out in outputs.items()}}
    offsets = {}
    for key, image in images.items():
        cx, cy = centroids(image, rx, ry)
        offsets[key] = float(np.median(np.hypot(cx - rx, cy - ry)))
    ox, oy = centroids(images["default"], rx, ry)
    through_out = outputs["default"].wcs.pixel_to_world(ox, oy)
    through_in = low_wcs.pixel_to_world((ox + 0.5) / 2 - 0.5, (oy + 0.5) / 2 - 0.5)
    wcs_err = through_out.separation(through_in).max().to_value(u.arcsec)
    sky_err = np.median(through_out.separation(ref_wcs.pixel_to_world(rx, ry)).to_value(u.arcsec))
    moved = int((brightest_pixels(reference, rx, ry)
                 != brightest_pixels(images["default"], rx, ry)).any(axis=1).sum())
    return offsets, moved, wcs_err, sky_err, len(x)


def brightest_pixels(image, x, y, half=3):
    """(x, y) of the brightest pixel in the 7x7 box around each position."""
    peaks = []
    for cx, cy in zip(np.round(x).astype(int), np.round(y).astype(int), strict=True):
        box = image[cy - half : cy + half + 1, cx - half : cx + half + 1]
        j, i = np.unravel_index(np.argmax(box), box.shape)
        peaks.append((cx - half + i, cy - half + j))
    return np.array(peaks)


def astrometry_rows(nets, quick):
    shape = (96, 96) if quick else (256, 256)
    sim = simulate_sky(shape, seed=SIM_SEEDS[1])
    reference = sim.clean.data.astype(np.float64)
    x, y = star_positions_sim(sim)
    rows = [(f"simulated, {kind}", *astrometry(reference, w, x, y, nets))
            for kind, w in sip_tpv_headers(sim.noisy.wcs).items()]
    loaded = read_real(REAL[2][1], (0, 256, 256), quick)
    if loaded is not None:
        image, wcs = loaded
        rows.append(("Spitzer IRAC2, CAR", *astrometry(image, wcs, *star_positions_real(image),
                                                       nets)))
    return rows


# ---------------------------------------------------------------- throughput


def throughput_size(quick):
    """Edge of the throughput input, in input pixels."""
    return 64 if quick else 512


def throughput(nets, quick):
    size = throughput_size(quick)
    low = simulate_sky((size, size), seed=SIM_SEEDS[2]).noisy.data.astype(np.float64)
    result = {}
    for key, order in CLASSICAL.items():
        seconds = median_seconds(partial(resize, low, (2 * size, 2 * size), order=order,
                                         mode="reflect", anti_aliasing=False), THROUGHPUT_REPEATS)
        result[key] = size * size / 1e6 / seconds
    for key, net in nets.items():
        super_resolve(low[:32, :32], model=net, flux_conserving=False)  # warm up
        seconds = median_seconds(partial(super_resolve, low, model=net, flux_conserving=False),
                                 THROUGHPUT_REPEATS)
        result[key] = size * size / 1e6 / seconds
    return result


# ---------------------------------------------------------------- report


def _mark(ok):
    return "PASS" if ok else "FAIL"


def report(args, labels, rows, flux, counts, astro, speed, cores):
    methods = list(rows[0][1])
    skipped = absent_images([name for _, name, _ in REAL])
    lines = [
        "# Super-resolution benchmark (x2)", "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
        f"- default model: `{labels['default']}`; SRCNN: `{labels['srcnn']}`",
        f"- mode: {'QUICK (tiny crops, script check only)' if args.quick else 'full'}",
        f"- real images from {DATA_DIR}; skipped (absent): "
        + (", ".join(skipped) if skipped else "none")
        + (" (the Spitzer astrometry row too)" if REAL[2][1] in skipped else ""), "",
        "## PSNR [dB] (reference = original; input = original binned x2 by block mean)", "",
        "| image | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|",
    ]
    for name, scores in rows:
        lines.append(f"| {name} | " + " | ".join(f"{scores[m]:.2f}" for m in methods) + " |")
    median = {m: float(np.median([s[m] for _, s in rows])) for m in methods}
    lines.append("| **median** | " + " | ".join(f"**{median[m]:.2f}**" for m in methods) + " |")
    lines += ["", "Targets, read two ways: the difference of the column medians above, and the "
              "median over images of the per-image gain (paired, as the denoise and deblur "
              "benchmarks report it). The column medians fall on different images for "
              "different methods, so the two readings can disagree.", "",
              "| comparison | target | median(default) - median(other) | median of per-image "
              "gain | images won |", "|---|---|---|---|---|"]
    for other, target in (("bicubic", 1.0), ("srcnn", 0.5)):
        gains = [s["default"] - s[other] for _, s in rows]
        of_medians, paired = median["default"] - median[other], float(np.median(gains))
        lines.append(f"| default - {other} | >= +{target} dB | {of_medians:+.2f} dB "
                     f"{_mark(of_medians >= target)} | {paired:+.2f} dB {_mark(paired >= target)}"
                     f" | {sum(g > 0 for g in gains)}/{len(gains)} |")
    lines.append("")
    lines += cores_section(cores, methods) + flux_section(flux, counts) + astrometry_section(astro)
    lines += speed_section(speed, args.quick)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cores_section(cores, methods):
    lines = ["## Saturated star cores", "",
             f"In {', '.join(SATURATED_IMAGES)}: stars whose reference core dips below its "
             f"surroundings (`saturated_cores`), {CORE_BOX}x{CORE_BOX} px each. Not part of "
             "the targets: the share of each method's squared error that sits in them, and "
             "the PSNR of the rest of the image.", ""]
    if not cores:
        return lines + ["None found (image absent, or --quick).", ""]
    lines += ["| image | share of pixels | " + " | ".join(
        f"{m}: error share / PSNR outside" for m in methods) + " |",
        "|---" * (len(methods) + 2) + "|"]
    for name, share, scores in cores:
        lines.append(f"| {name} | {share:.2%} | " + " | ".join(
            f"{scores[m][0]:.0%} / {scores[m][1]:.2f}" for m in methods) + " |")
    return lines + [""]


def flux_section(flux, counts):
    worst = max(v[0] for _, d in flux for v in d.values())
    worst_block = max(v[1] for _, d in flux for v in d.values())
    lines = ["## Flux", "",
             "Binning the network outputs back x2 (block mean) against the input, all images "
             "and both networks:", "",
             f"- worst relative error of the image sum: {worst:.2e} (target <= 5e-3): "
             f"{_mark(worst <= 5e-3)}",
             f"- worst single-pixel error / input range: {worst_block:.2e}", "",
             "Count-like unit (electron; values divided by 4):", "",
             "| model | output sum / input sum | max block error (sum-binned) / range | pass |",
             "|---|---|---|---|"]
    for key, (ratio, block) in counts.items():
        lines.append(f"| {key} | {ratio:.6f} | {block:.2e} | {_mark(abs(ratio - 1) <= 5e-3)} |")
    return lines + [""]


def astrometry_section(astro):
    lines = ["## Astrometry (default model, x2)", "",
             "Median centroid offsets of bicubic and SRCNN for the same stars and estimator "
             "are given beside the default model's. 'peak moved': stars whose brightest pixel "
             "in the 7x7 box differs between the default output and the reference; the "
             "quadratic fit then uses a different 3x3 patch on the two images, and those "
             "stars make the tail of the offsets.", "",
             "| header | stars | median centroid offset [hi-res px] (<= 0.05) | bicubic | "
             "SRCNN | peak moved | max WCS offset out vs in [arcsec] (<= 0.01) | median sky "
             "offset vs reference [arcsec] |", "|---|---|---|---|---|---|---|---|"]
    for name, offsets, moved, wcs_err, sky_err, n in astro:
        offset = offsets["default"]
        lines.append(f"| {name} | {n} | {offset:.3f} {_mark(offset <= 0.05)} | "
                     f"{offsets['bicubic']:.3f} | {offsets['srcnn']:.3f} | {moved}/{n} | "
                     f"{wcs_err:.1e} {_mark(wcs_err <= 0.01)} | {sky_err:.4f} |")
    return lines + [""]


def speed_section(speed, quick):
    size = throughput_size(quick)
    lines = ["## Throughput (input megapixels per second)", "",
             f"A {size}x{size} input; median of {THROUGHPUT_REPEATS} timings.", "",
             "| method | input MP/s |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in speed.items()]
    return lines + [""]


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    default, default_label = load(args.model, SRResNet())
    srcnn, srcnn_label = load(args.srcnn, SRCNN())
    nets = {"srcnn": srcnn, "default": default}
    labels = {"default": default_label, "srcnn": srcnn_label}
    rows, flux, cores = psnr_table(test_images(args.quick), nets)
    counts = count_flux(nets, args.quick)
    astro = astrometry_rows(nets, args.quick)
    speed = throughput(nets, args.quick)
    report(args, labels, rows, flux, counts, astro, speed, cores)


if __name__ == "__main__":
    main()

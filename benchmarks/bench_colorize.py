"""Benchmark of `colorize` (issue 7, "What it must show"), in one run.

    python benchmarks/bench_colorize.py --model default --out benchmarks/results/colorize.md
    python benchmarks/bench_colorize.py --model PATH.safetensors --out /tmp/c.md --quick

Held-out colour references: the held-out part of the Hubble Deep Field
(`hubble_deep_field('heldout', color=True)`, columns 750-999, never seen in
training) and `make_lupton_rgb` composites of the 5 AEGIS HST/ACS galaxy
stamps in ``../shared/data`` (F606W as blue, F814W as red; with only two
bands green is their mean; each band's median subtracted, Lupton ``Q = 8``,
stretch 0.5 x the 99.5th percentile of the mean band:
`astro_nn_restore.colorize.lupton_composite`).

Each reference RGB is converted to Lab; its lightness ``L`` is the input
(``colorize(L, stretch=LinearStretch(), interval=ManualInterval(0, 100))``,
so the output's L equals the reference's and only colour is measured).
Metrics against the reference: RGB PSNR (data range 1) and the mean CIEDE2000
colour difference (`skimage.color.deltaE_ciede2000`). Baselines in the same
run, composed with the same L and the same gamut handling
(`astro_nn_restore.colorize.compose_rgb`): grey (a = b = 0) and the mean
chroma of the training set (mean a, b over the training pool of the colorize
task: HDF training part + simulated Lupton skies, each image weighted as the
task samples it).

Target (issue 7): RGB PSNR >= 27.6 dB on the held-out colour images and better
than both baselines on both metrics.

A second table gives oracles that are handed the reference's own colour,
which no colorizer sees. "smoothed" is the reference chroma
(lightness-weighted) smoothed by a Gaussian of 1, 2 or 4 px; "source colour"
is each image's one lightness-weighted mean chroma, painted on its source
pixels (lightness smoothed by 1.5 px above ``SOURCE_LIGHTNESS``) and grey
elsewhere. Where even these barely beat grey, the reference's chroma is pixel
noise and the ΔE target cannot be met by predicting colour from lightness.

The docs figure (input L, output, reference on a held-out HDF crop) goes to
``docs/_static/colorize_example.png`` (``--quick``: beside the report instead).
"""

import argparse
import inspect
import time
from pathlib import Path

import numpy as np
from _common import load_image, markdown_table, passfail, report_header, write_report

from astro_nn_restore.colorize import colorize, compose_rgb, lupton_composite, rgb_image
from astro_nn_restore.metrics import psnr

TARGET_PSNR = 27.6
#: Lightness above which a pixel counts as source for the "source colour" oracle.
SOURCE_LIGHTNESS = 20.0
ORACLE_SMOOTHING = (1.0, 2.0, 4.0)
AEGIS = [("01", 0), ("01", 1), ("01", 2), ("02", 0), ("02", 1)]
ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="registry name or .safetensors path")
    p.add_argument("--out", default="benchmarks/results/colorize.md")
    p.add_argument("--quick", action="store_true", help="tiny inputs: checks the script")
    p.add_argument("--figure", default=None,
                   help="docs figure (default docs/_static/colorize_example.png; quick: "
                        "beside --out)")
    p.add_argument("--n-simulated", type=int, default=None,
                   help="simulated skies in the mean-chroma pool (default: as the model's card "
                        "says, else 48; quick 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.figure is None:
        args.figure = (Path(args.out).with_name(Path(args.out).stem + "_example.png")
                       if args.quick else ROOT / "docs" / "_static" / "colorize_example.png")
    return args


def references(quick):
    """(name, description, RGB in [0, 1]) of every held-out colour image present."""
    from astro_nn_restore.datasets import hubble_deep_field

    hdf = hubble_deep_field("heldout", color=True).astype(np.float64)
    if quick:
        hdf = hdf[300:428, 60:188]
    out = [("hdf_heldout", f"HDF held-out part, {hdf.shape[0]}x{hdf.shape[1]}", hdf)]
    skipped = []
    for file, hdu in AEGIS[:1] if quick else AEGIS:
        blue = load_image(f"aegis_f606w_{file}_{hdu}")
        red = load_image(f"aegis_f814w_{file}_{hdu}")
        name = f"aegis_{file}_{hdu}"
        if blue is None or red is None:
            skipped.append(name)
            continue
        rgb = lupton_composite([blue.data, red.data], q=8.0)
        out.append((name, f"AEGIS stamp {file} HDU {hdu}, Lupton RGB {rgb.shape[0]}x"
                          f"{rgb.shape[1]} (F606W, mean, F814W)", rgb))
    return out, skipped


def mean_training_chroma(n_simulated, hdf_share):
    """Mean Lab (a, b) over the colorize task's training pool, as it samples it."""
    from skimage.color import rgb2lab

    from astro_nn_restore.train.colorize import ColorPool

    pool = ColorPool.build(seed=0, n_simulated=n_simulated, hdf_share=hdf_share)
    means = [rgb2lab(image).reshape(-1, 3)[:, 1:].mean(axis=0) for image in pool.images]
    return np.average(means, axis=0, weights=pool.weights)


def score(reference_lab, reference_rgb, rgb):
    from skimage.color import deltaE_ciede2000, rgb2lab

    return (psnr(reference_rgb, rgb, data_range_value=1.0),
            float(np.mean(deltaE_ciede2000(reference_lab, rgb2lab(rgb)))))


def evaluate(rgb, lab, model, mean_chroma):
    """Scores of the model and both baselines on one reference, plus the output."""
    from astropy.visualization import LinearStretch, ManualInterval

    lightness = lab[..., 0]
    start = time.perf_counter()
    output = rgb_image(colorize(lightness, model=model, stretch=LinearStretch(),
                                interval=ManualInterval(0, 100))).astype(np.float64)
    seconds = time.perf_counter() - start
    grey = compose_rgb(lightness, np.zeros((*lightness.shape, 2)))
    mean = compose_rgb(lightness, np.broadcast_to(mean_chroma, (*lightness.shape, 2)))
    scores = {name: score(lab, rgb, image)
              for name, image in (("model", output), ("grey", grey), ("mean", mean))}
    return scores, output, seconds


def oracle_scores(rgb, lab):
    """(PSNR, ΔE00) of the oracles that see the reference's colour (module docstring)."""
    from scipy.ndimage import gaussian_filter

    lightness, chroma = lab[..., 0], lab[..., 1:]
    out = []
    for width in ORACLE_SMOOTHING:
        weight = gaussian_filter(lightness, width) + 1e-9
        smoothed = np.stack([gaussian_filter(chroma[..., i] * lightness, width) / weight
                             for i in range(2)], axis=-1)
        out.append(score(lab, rgb, compose_rgb(lightness, smoothed)))
    source = gaussian_filter(lightness, 1.5) > SOURCE_LIGHTNESS
    mean = ((chroma * lightness[..., None])[source].sum(axis=0) / lightness[source].sum()
            if source.any() else np.zeros(2))
    out.append(score(lab, rgb, compose_rgb(lightness, np.where(source[..., None], mean, 0.0))))
    return out


def oracle_row(name, scores, oracles):
    model, grey = scores["model"], scores["grey"]
    return [name] + [f"{de:.2f} / {p:.2f}" for p, de in (model, grey, *oracles)]


def row(name, scores, seconds):
    m, g, c = scores["model"], scores["grey"], scores["mean"]
    beats = m[0] > max(g[0], c[0]) and m[1] < min(g[1], c[1])
    return [name, m[0], g[0], c[0], passfail(m[0] >= TARGET_PSNR), m[1], g[1], c[1],
            passfail(beats), seconds]


def save_figure(path, lightness, output, reference):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6), layout="constrained")
    grey = compose_rgb(lightness, np.zeros((*lightness.shape, 2)))  # the input's lightness
    panels = (("input (lightness only)", grey), ("colorize output", output),
              ("reference", reference))
    for i, (title, image) in enumerate(panels):
        axes = figure.add_subplot(1, 3, i + 1)
        axes.imshow(np.clip(image, 0, 1), origin="upper")
        axes.set_title(title)
        axes.set_axis_off()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def main(argv=None):
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from astro_nn_restore.registry import load_model

    model, card = load_model(args.model, task="colorize")
    # cards written before hdf_share existed were trained with the HDF as a quarter
    hdf_share = card.get("hdf_share", 0.25)
    if args.n_simulated is None:
        args.n_simulated = 2 if args.quick else card.get("n_simulated", 48)
    mean_chroma = mean_training_chroma(args.n_simulated, hdf_share)
    images, skipped = references(args.quick)
    rows, totals, oracle_rows, oracle_totals, figure_done = [], [], [], [], False
    from skimage.color import rgb2lab

    for name, _, rgb in images:
        lab = rgb2lab(rgb)
        scores, output, seconds = evaluate(rgb, lab, model, mean_chroma)
        rows.append(row(name, scores, seconds))
        totals.append(scores)
        oracle_totals.append(oracle_scores(rgb, lab))
        oracle_rows.append(oracle_row(name, scores, oracle_totals[-1]))
        if name == "hdf_heldout" and not figure_done:
            crop = (slice(None), slice(None)) if args.quick else (slice(300, 556), slice(0, 250))
            save_figure(args.figure, lab[crop][..., 0], output[crop], rgb[crop])
            figure_done = True
    mean_scores = {key: tuple(np.mean([s[key][i] for s in totals]) for i in range(2))
                   for key in ("model", "grey", "mean")}
    rows.append(row("**mean of all**", mean_scores, sum(r[-1] for r in rows)))
    oracle_rows.append(oracle_row("**mean of all**", mean_scores,
                                  np.mean(oracle_totals, axis=0)))
    aegis = [k for k, (name, _, _) in enumerate(images) if name.startswith("aegis")]
    if aegis:
        aegis_scores = {key: tuple(np.mean([totals[k][key][i] for k in aegis])
                                   for i in range(2)) for key in ("model", "grey")}
        oracle_rows.append(oracle_row("**mean of the AEGIS composites**", aegis_scores,
                                      np.mean([oracle_totals[k] for k in aegis], axis=0)))
    text = report_lines(args, card, images, skipped, rows, mean_chroma, hdf_share)
    text += oracle_lines(oracle_rows)
    write_report(args.out, text)


def report_lines(args, card, images, skipped, rows, mean_chroma, hdf_share):
    headers = ["image", "PSNR model [dB]", "PSNR grey", "PSNR mean chroma",
               f"PSNR >= {TARGET_PSNR}", "ΔE00 model", "ΔE00 grey", "ΔE00 mean chroma",
               "beats both baselines (PSNR and ΔE)", "colorize time [s]"]
    lines = [report_header("colorize benchmark (issue 7)", args),
             f"- model: {card.get('name')} (sha256 {str(card.get('sha256'))[:16]})",
             f"- mean training chroma (a, b) = ({mean_chroma[0]:.2f}, {mean_chroma[1]:.2f}) over "
             f"the training pool (HDF training part, {hdf_share:.0%} of the draws, + "
             f"{args.n_simulated} simulated Lupton skies)",
             "- input: the reference's Lab L (LinearStretch over ManualInterval(0, 100)), so "
             "every method has the reference's lightness; ΔE00 = mean CIEDE2000 "
             "(skimage.color.deltaE_ciede2000); PSNR on RGB in [0, 1] (data range 1)",
             "- colorize is called with its defaults otherwise (chroma_smoothing = "
             f"{inspect.signature(colorize).parameters['chroma_smoothing'].default} px)",
             f"- figure: {args.figure}", ""]
    lines += [f"- `{name}`: {text}" for name, text, _ in images]
    if skipped:
        lines.append(f"- skipped (file absent in ../shared/data): {', '.join(skipped)}")
    if args.quick:
        lines.append("- **--quick**: tiny crops; the numbers check the script, they are no result")
    lines += ["", markdown_table(headers, rows, digits=2)]
    return "\n".join(lines)


def oracle_lines(oracle_rows):
    headers = (["image", "model", "grey"]
               + [f"oracle: true chroma smoothed {w:g} px" for w in ORACLE_SMOOTHING]
               + ["oracle: true source colour on sources"])
    return ("\n## Oracles given the reference's colour (ΔE00 / PSNR dB)\n\n"
            "Not baselines: each oracle is handed the reference's own chroma, which no "
            "colorizer sees (module docstring). Source pixels: lightness smoothed by 1.5 px "
            f"above {SOURCE_LIGHTNESS:g}.\n\n" + markdown_table(headers, oracle_rows))


if __name__ == "__main__":
    main()

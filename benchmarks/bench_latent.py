"""Benchmark of issue 6: the cutout autoencoder against PCA, anomaly AUC, latent stability.

    python benchmarks/bench_latent.py --model NAME_OR_PATH \
        --out benchmarks/results/latent.md [--quick]

Measured in one run:

* Reconstruction of held-out cutouts (sources detected in real images from
  ``../shared/data`` and the held-out Hubble Deep Field; sources of simulated
  skies with unseen seeds 900000+, with Poisson + read noise) by the
  autoencoder and by PCA with as many components as the latent has, fitted on
  training cutouts (the training task's own sampler, seed 0). MSE in units of
  the noise, SSIM and MS-SSIM against the input cutout, in physical units.
  MS-SSIM here: weighted geometric mean of scikit-image SSIM at 3 scales
  (32, 16, 8 px by 2x2 mean binning; weights 0.3, 0.4, 0.3; negative SSIM
  clipped to 1e-3).
* ROC AUC of `anomaly_score` separating held-out cutouts from the same
  cutouts with one injected artefact (cosmic rays, satellite trail, bad column,
  saturation bleed, ghost; `astro_nn_restore.degrade` injectors, amplitudes in
  the table notes); AUC by ranks (Mann-Whitney U). A second column scores
  every cutout with ``reference=`` the clean cutouts of its own image (each
  simulated sky or real image with at least `MIN_REFERENCE` of them; others
  without), as a user ranks the sources of one image against each other.
* Latent stability: median latent distance between two noise draws of the
  same simulated source over that between different sources.
* A corner plot of the latents of held-out cutouts coloured by source type
  (``--figure``; default ``docs/_static/latent_corner.png`` for the default
  model, beside ``--out`` otherwise).
"""

import argparse
import sys
import warnings

import numpy as np
from _common import load_image, markdown_table, passfail, report_header, write_report

from astro_nn_restore import anomaly_score, decode_latent, encode_latent, make_cutouts
from astro_nn_restore.degrade import (
    add_bad_column,
    add_cosmic_rays,
    add_ghost,
    add_poisson_gaussian_noise,
    add_satellite_trail,
    add_saturation_bleed,
)
from astro_nn_restore.latent import MIN_REFERENCE, CutoutNormalization
from astro_nn_restore.registry import load_model

REAL = ("m67", "m51", "glimpse", "m13_1", "hdf_heldout", "aegis_f606w_01_1", "aegis_f814w_01_1")
ARTEFACTS = ("cosmic_rays", "trail", "bad_column", "bleed", "ghost")
SSIM_TARGET, AUC_TARGET, STABILITY_TARGET = 0.02, 0.95, 5.0


# -------------------------------------------------------------------- data


def simulated_cutouts(n_skies, per_sky, size, *, draws=1):
    """Cutouts of unseen simulated skies; ``draws`` independent noise draws per source.

    Returns the stacks, the source kinds and the sky name of every cutout.
    """
    from astro_nn_restore import simulate_sky

    stacks, kinds, skies = [[] for _ in range(draws)], [], []
    for i in range(n_skies):
        sky = simulate_sky((256, 256), seed=900_000 + i)
        sources = sky.sources[np.argsort(-np.asarray(sky.sources["flux"]))][:per_sky]
        for d in range(draws):
            noisy, _ = add_poisson_gaussian_noise(sky.clean.data, gain=1.0, read_noise=5.0,
                                                  rng=np.random.default_rng([i, d]))
            stacks[d].append(make_cutouts((noisy, sky.clean.wcs), size=size, positions=sources,
                                          unit="electron"))
        kinds += list(sources["kind"])
        skies += [f"sim{900_000 + i}"] * len(sources)
    return [_concat(s) for s in stacks], np.array(kinds), np.array(skies)


def real_cutouts(per_image, size):
    stacks, names, skipped = [], [], []
    for name in REAL:
        image = load_image(name)
        if image is None:
            skipped.append(name)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd headers of old real files
            stack = make_cutouts(np.nan_to_num(image.data, nan=np.nanmedian(image.data)),
                                 size=size, max_sources=per_image, threshold=5)
        stack = stack[np.flatnonzero(~stack.mask.any(axis=(1, 2)))]  # whole cutouts only
        if len(stack):
            stacks.append(stack)
            names += [str(name)] * len(stack)
    return _concat(stacks), np.array(names), skipped


def _concat(stacks):
    from astro_nn_restore.latent import CutoutStack

    norm = CutoutNormalization(*(np.concatenate([getattr(s.normalization, k) for s in stacks])
                                 for k in ("background", "scale", "noise")))
    return CutoutStack(np.concatenate([s.data for s in stacks]),
                       np.concatenate([s.positions for s in stacks]),
                       sum((list(s.wcs) for s in stacks), []), stacks[0].unit, norm,
                       np.concatenate([s.mask for s in stacks]))


def training_cutouts(n, size):
    """Noisy normalised training inputs, as the training task draws them (seed 0)."""
    from astro_nn_restore.train.autoencoder import SourcePool, make_sample

    pool = SourcePool.build(seed=0, n_simulated=16 if n < 1000 else 96)
    rng = np.random.default_rng(0)
    return np.stack([make_sample(pool.cutout(rng, size), rng)[0][0] for _ in range(n)])


# ------------------------------------------------------------------ models


class PCA:
    """PCA by SVD of the (n, pixels) training matrix."""

    def __init__(self, train, k):
        flat = train.reshape(len(train), -1).astype(np.float64)
        self.mean = flat.mean(axis=0)
        self.components = np.linalg.svd(flat - self.mean, full_matrices=False)[2][:k]

    def reconstruct(self, x):
        flat = x.reshape(len(x), -1) - self.mean
        return ((flat @ self.components.T) @ self.components + self.mean).reshape(x.shape)


def ae_reconstruction(stack, model):
    return decode_latent(encode_latent(stack, model=model), model=model, normalization=stack)


def pca_reconstruction(stack, pca):
    return stack.normalization.inverse(pca.reconstruct(stack.normalized()))


# ----------------------------------------------------------------- metrics


def _ssim(a, b):
    from skimage.metrics import structural_similarity

    return structural_similarity(a, b, data_range=float(np.ptp(a)) or 1.0, win_size=7)


def _bin(a):
    return a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean(axis=(1, 3))


def ms_ssim(a, b, weights=(0.3, 0.4, 0.3)):
    values = []
    for _ in weights:
        values.append(max(_ssim(a, b), 1e-3))
        a, b = _bin(a), _bin(b)
    return float(np.exp(np.sum(np.asarray(weights) * np.log(values))))


def reconstruction_metrics(stack, recon):
    data = np.where(stack.mask, recon, stack.data).astype(np.float64)
    noise = stack.normalization.noise[:, None, None]
    mse = float(np.mean(((data - recon) / noise) ** 2))
    ssim = np.mean([_ssim(d, r) for d, r in zip(data, recon, strict=True)])
    msssim = np.mean([ms_ssim(d, r) for d, r in zip(data, recon, strict=True)])
    return mse, float(ssim), float(msssim)


def roc_auc(negative, positive):
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([negative, positive]))
    n0, n1 = len(negative), len(positive)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


# --------------------------------------------------------------- artefacts


def inject(cutout, background, noise, kind, rng):
    """One artefact in a cutout (physical units); amplitudes relative to peak and noise."""
    peak = float(cutout.max() - background)
    if kind == "cosmic_rays":
        return add_cosmic_rays(cutout, rng, int(rng.integers(1, 4)),
                               amplitude=max(peak, 30 * noise))[0]
    if kind == "trail":
        return add_satellite_trail(cutout, rng, amplitude=max(0.2 * peak, 5 * noise))[0]
    if kind == "bad_column":
        return add_bad_column(cutout, rng, value=background - 10 * noise)[0]
    if kind == "bleed":
        return add_saturation_bleed(cutout, rng, level=background + max(peak, 10 * noise))[0]
    return add_ghost(cutout, rng, amplitude=max(0.05 * peak, 2 * noise))[0]


def anomaly_table(stack, model, n_simulated, images):
    """AUC rows per artefact, overall, and for the simulated / real cutouts apart.

    Each row: AUC without and with a per-image reference (``images`` names the
    image of every cutout). Returns the rows and both overall AUCs.
    """
    rng = np.random.default_rng(2024)
    bad = stack.data.copy()
    kinds = np.array([ARTEFACTS[i % len(ARTEFACTS)] for i in range(len(stack))])
    norm = stack.normalization
    for i, kind in enumerate(kinds):
        filled = np.where(stack.mask[i], norm.background[i], stack.data[i]).astype(np.float64)
        bad[i] = np.where(stack.mask[i], stack.data[i],
                          inject(filled, norm.background[i], norm.noise[i], kind, rng))
    # the stored normalisation is what a detection of the damaged cutout would carry
    damaged = _replace(stack, bad)
    plain = (anomaly_score(stack, model=model), anomaly_score(damaged, model=model))
    referenced = _referenced_scores(stack, damaged, model, images, plain)

    def row(label, clean_part, damaged_part):
        """AUC of the clean cutouts in one part against the damaged ones in another."""
        return [label, int(damaged_part.sum()),
                *(roc_auc(clean[clean_part], bad_scores[damaged_part])
                  for clean, bad_scores in (plain, referenced))]

    everything = np.ones(len(stack), bool)
    simulated = np.arange(len(stack)) < n_simulated
    total = row("all", everything, everything)
    rows = [row(kind, everything, kinds == kind) for kind in ARTEFACTS] + [total]
    rows += [row(f"all, {label} cutouts only", part, part)
             for label, part in (("simulated", simulated), ("real", ~simulated)) if part.any()]
    return rows, total[2:]


def _referenced_scores(stack, damaged, model, images, plain):
    """(clean, damaged) scores, each image's cutouts against its own clean cutouts.

    Images with fewer than `MIN_REFERENCE` cutouts keep their ``plain`` scores.
    """
    clean, bad = (scores.copy() for scores in plain)
    for name in dict.fromkeys(images):
        part = np.flatnonzero(images == name)
        if len(part) >= MIN_REFERENCE:
            reference = stack[part]
            clean[part] = anomaly_score(reference, model=model, reference=reference)
            bad[part] = anomaly_score(damaged[part], model=model, reference=reference)
    return clean, bad


def _replace(stack, data):
    from astro_nn_restore.latent import CutoutStack, cutout_normalization

    data = data.astype(np.float32)
    norm = cutout_normalization(data, stack.mask, noise=stack.normalization.noise)
    return CutoutStack(data, stack.positions, stack.wcs, stack.unit, norm, stack.mask)


# ------------------------------------------------------------------ figure


def corner_plot(z, labels, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = z.shape[1]
    d = min(total, 8)  # a corner plot of more dimensions is unreadable
    z = z[:, :d]
    colours = {"star": "tab:blue", "galaxy": "tab:orange", "real": "tab:green"}
    # axes span the 2-98th percentiles (padded): a few real outliers would squash the rest
    lo, hi = np.percentile(z, [2, 98], axis=0)
    limits = np.stack([lo - 0.3 * (hi - lo), hi + 0.3 * (hi - lo)], axis=1)
    fig, axes = plt.subplots(d, d, figsize=(1.6 * d, 1.6 * d))
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j > i:
                ax.axis("off")
                continue
            for label, colour in colours.items():
                sel = labels == label
                if i == j:
                    ax.hist(z[sel, i], bins=30, range=tuple(limits[i]), histtype="step",
                            color=colour, density=True)
                else:
                    ax.scatter(z[sel, j], z[sel, i], s=3, color=colour, alpha=0.6, label=label)
                    ax.set_ylim(*limits[i])
                ax.set_xlim(*limits[j])
            if i == d - 1:
                ax.set_xlabel(f"z{j}")
            if j == 0:
                ax.set_ylabel(f"z{i}")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in colours.items()]
    fig.legend(handles=handles, loc="upper right", title="source type")
    shown = "" if d == total else f"first {d} of {total} dimensions; "
    fig.suptitle(f"Autoencoder latents of held-out cutouts ({shown}axes: 2-98th percentiles, "
                 "padded)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -------------------------------------------------------------------- main


def stability_ratio(first, second, model, rng):
    z1, z2 = encode_latent(first, model=model), encode_latent(second, model=model)
    same = np.linalg.norm(z1 - z2, axis=1)
    i, j = rng.integers(len(z1), size=(2, 4 * len(z1)))
    keep = i != j
    different = np.linalg.norm(z1[i[keep]] - z1[j[keep]], axis=1)
    return float(np.median(different) / np.median(same)), float(np.median(same)), float(
        np.median(different))


def main(argv=None):
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", default="benchmarks/results/latent.md")
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument("--figure", default=None,
                        help="corner plot path (default: docs/_static/latent_corner.png for "
                             "--model default, beside --out for --quick or another model)")
    args = parser.parse_args(argv)
    module, card = load_model(args.model, task="autoencoder")
    size, k = module.size, module.latent_dim
    n_train, n_skies, per_sky, per_image = (300, 2, 10, 6) if args.quick else (4000, 12, 25, 40)

    (sim, sim2), kinds, skies = simulated_cutouts(n_skies, per_sky, size, draws=2)
    real, names, skipped = real_cutouts(per_image, size)
    pca = PCA(training_cutouts(n_train, size), k)

    rows, ssim_ok = [], True
    for label, stack in (("simulated (unseen seeds)", sim), ("real (shared/data + HDF)", real)):
        ae = reconstruction_metrics(stack, ae_reconstruction(stack, module))
        pc = reconstruction_metrics(stack, pca_reconstruction(stack, pca))
        ok = ae[1] >= pc[1] + SSIM_TARGET
        ssim_ok &= ok
        rows += [[label, len(stack), "autoencoder", *ae, passfail(ok)],
                 [label, len(stack), f"PCA ({k} components)", *pc, ""]]

    both = _concat([sim, real])
    anomaly_rows, (auc, auc_referenced) = anomaly_table(both, module, len(sim),
                                                        np.concatenate([skies, names]))
    ratio, same, different = stability_ratio(sim, sim2, module, np.random.default_rng(5))

    figure = Path(args.figure) if args.figure else (
        Path(args.out).with_name("latent_corner_quick.png") if args.quick
        else Path("docs/_static/latent_corner.png") if args.model == "default"
        else Path(args.out).with_suffix(".png"))  # the docs' figure is the default model's
    labels = np.concatenate([kinds, np.full(len(real), "real")])
    corner_plot(np.concatenate([encode_latent(sim, model=module),
                                encode_latent(real, model=module)]), labels, figure)

    text = report_header("Latent autoencoder benchmark (issue 6)", args)
    text += (f"\n- model: {card.get('name')} (sha256 {str(card.get('sha256'))[:16]}), "
             f"latent_dim {k}, cutouts {size}x{size}\n"
             f"- PCA fitted on {n_train} training cutouts (training sampler, seed 0)\n"
             f"- real images used: {sorted(set(names))}; skipped (absent): {skipped}\n")
    if args.quick:
        text += "- **--quick: tiny inputs, numbers are not results**\n"
    text += ("\n## Reconstruction (against the input cutout, physical units)\n\n"
             f"Target: autoencoder SSIM >= PCA SSIM + {SSIM_TARGET} at equal latent size.\n\n")
    text += markdown_table(["cutouts", "N", "method", "MSE / noise^2", "SSIM", "MS-SSIM",
                            "target"], rows, digits=3)
    text += ("\n## Anomaly detection (ROC AUC of anomaly_score)\n\n"
             "Each held-out cutout (simulated + real) once clean and once with one artefact: "
             "cosmic rays 1-3 hits at max(peak, 30 sigma); trail at max(0.2 peak, 5 sigma); "
             "bad column at background - 10 sigma; saturation bleed at background + "
             "max(peak, 10 sigma); ghost at max(0.05 peak, 2 sigma). "
             f"Target AUC >= {AUC_TARGET}: **{passfail(auc >= AUC_TARGET)}** ({auc:.3f}); "
             f"with a per-image reference: **{passfail(auc_referenced >= AUC_TARGET)}** "
             f"({auc_referenced:.3f}). The reference of a cutout is the clean cutouts of its own "
             f"simulated sky or real image (`anomaly_score(..., reference=...)`), where there are "
             f"at least {MIN_REFERENCE}; others are scored without.\n\n")
    text += markdown_table(["artefact", "N", "AUC", "AUC, per-image reference"], anomaly_rows,
                           digits=3)
    text += ("\n## Latent stability\n\n"
             "Simulated sources with two independent Poisson + read noise draws.\n\n")
    text += markdown_table(
        ["median distance, same source", "median distance, different sources", "ratio",
         f"target (ratio >= {STABILITY_TARGET:g})"],
        [[same, different, ratio, passfail(ratio >= STABILITY_TARGET)]], digits=3)
    text += f"\nCorner plot of the latents: `{figure}`\n"
    write_report(args.out, text)
    return 0 if ssim_ok else 1


if __name__ == "__main__":
    sys.exit(main())

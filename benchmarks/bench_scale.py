"""Scale and speed (issue 10): throughput, linearity, chunked memory, fast path, FLOPs.

    python benchmarks/bench_scale.py --out benchmarks/results/scale.md
    python benchmarks/bench_scale.py --quick --out benchmarks/results/scale_quick.md

Measures, with ``--threads`` torch threads (default: all cores):

1. Each operation's MP/s on 1024², 2048², 4096² simulated skies, each size in
   a fresh process (`run_isolated`: wall time and peak RSS), and the time per
   pixel relative to the smallest size (linear scaling gives 1.0).
2. Peak RSS of an 8192x8192 float32 memory-mapped FITS file denoised through
   the chunked path (`denoise_residual(hdu, out=path)`) into a FITS file
   (target <= 2 GB).
3. fp32 against the fast path (``precision="auto"``: bf16 autocast and
   channels_last where the CPU has native bf16) on a 1024² sky: time and
   PSNR against the noiseless truth (colorize: PSNR of fast against fp32),
   target |ΔPSNR| <= 0.05 dB.
4. Each model's GFLOP per megapixel (`torch.utils.flop_counter.FlopCounterMode`
   on a 256² input) against this machine's bf16 matmul GFLOP/s (a large
   `torch.matmul`, 1 and 2 threads): the fraction of the hardware's matmul
   rate the fast path reaches.

Models: the shipped weights for each task when present; otherwise an
untrained network of the default architecture (named in the table; speed
and FLOPs are those of the architecture, PSNR is then not meaningful).
"""

import argparse
import sys
import time

import numpy as np
from _common import markdown_table, passfail, report_header, run_isolated, write_report

OPERATIONS = ("denoise", "deblur", "superres", "colorize")

_SETUP_OPERATION = """
import numpy as np, torch
from bench_scale import operation_and_input
run, image = operation_and_input({name!r}, {n})
run(image[:256, :256])
"""
_RUN_OPERATION = "out = run(image)"

_SETUP_CHUNKED = """
import numpy as np, os, tempfile
from astropy.io import fits
from astro_nn_restore import denoise_residual
folder = tempfile.mkdtemp()
path, out_path = os.path.join(folder, 'big.fits'), os.path.join(folder, 'out.fits')
hdu = fits.PrimaryHDU()
hdu.header.update(BITPIX=-32, NAXIS=2, NAXIS1={n}, NAXIS2={n}, BUNIT='adu')
hdu.header.tofile(path)
with open(path, 'rb+') as handle:  # a sparse file; filled strip by strip below
    handle.seek(len(hdu.header.tostring()) + -(-4 * {n} * {n} // 2880) * 2880 - 1)
    handle.write(b'\\0')
with fits.open(path, mode='update', memmap=True) as hdul:
    rng = np.random.default_rng(0)
    for y in range(0, {n}, 512):
        rows = min(512, {n} - y)
        hdul[0].data[y:y + rows] = 100 + 5 * rng.standard_normal((rows, {n}), dtype=np.float32)
denoise_residual(np.full((64, 64), 100, np.float32) + np.eye(64, dtype=np.float32))
"""
_RUN_CHUNKED = """
with fits.open(path) as hdul:
    result = denoise_residual(hdul[0], out=out_path)
extra = dict(shape=list(result.shape))
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/scale.md")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script only")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = p.parse_args(argv)
    args.sizes = [128, 256] if args.quick else [1024, 2048, 4096]
    args.big = 1024 if args.quick else 8192
    args.compare = 128 if args.quick else 1024
    args.matmul = 512 if args.quick else 4096
    return args


# ------------------------------------------------------------------ models


def model_for(name):
    """(module or registry name, label): shipped weights, else an untrained default net."""
    from astro_nn_restore.registry import available_models

    if f"{name}-default" in available_models(name):
        return "default", f"{name}-default (shipped)"
    if name == "superres":
        from astro_nn_restore.models.superres import SRResNet

        return SRResNet(), "SRResNet() untrained (no shipped weights yet)"
    from astro_nn_restore.models.colorize import ColorGenerator

    return ColorGenerator(), "ColorGenerator() untrained (no shipped weights yet)"


def operation_and_input(name, n, precision="auto", **options):
    """(function of an image, the noisy n x n image) for one operation."""
    from astro_nn_restore import colorize, deblur, denoise_residual, simulate_sky, super_resolve

    image = simulate_sky((n, n), seed=900_000).noisy.data
    model, _ = model_for(name)
    function = {"denoise": denoise_residual, "deblur": deblur, "superres": super_resolve,
                "colorize": colorize}[name]
    return (lambda data: function(data, model=model, precision=precision, **options)), image


def module_for_flops(name):
    """(nn.Module, input channels, output pixels per input pixel) as the tiles see it."""
    from astro_nn_restore.registry import load_model

    model, _ = model_for(name)
    module, _ = load_model(model, task=name)
    if name == "deblur":
        module = module.conditioned(None)
        return module, module.net.in_channels, 1
    return module, {"denoise": 2}.get(name, 1), getattr(module, "factor", 1)


# --------------------------------------------------------------- measures


def throughput(args):
    rows = []
    for name in OPERATIONS:
        first = None
        for n in args.sizes:
            print(f"  {name} {n}x{n}", file=sys.stderr)
            setup = _SETUP_OPERATION.format(name=name, n=n)
            res = run_isolated(setup, _RUN_OPERATION, threads=args.threads)
            per_pixel = res["seconds"] / n**2
            first = per_pixel if first is None else first
            rows.append([name, f"{n}²", res["seconds"], n * n / 1e6 / res["seconds"],
                         per_pixel / first, res["peak_rss"] / 2**20])
    return rows


def chunked_memory(args):
    setup = _SETUP_CHUNKED.format(n=args.big)
    res = run_isolated(setup, _RUN_CHUNKED, threads=args.threads)
    gib = res["peak_rss"] / 2**30
    return [[f"{args.big}x{args.big} memmapped FITS -> denoise_residual(hdu, out=...) -> FITS",
             res["seconds"], gib, 4 * args.big**2 / 2**30, passfail(gib <= 2.0)]]


def fast_vs_fp32(args):
    from astro_nn_restore.metrics import psnr

    rows = []
    for name in OPERATIONS:
        image, truth, options = _comparison_input(name, args.compare)
        outputs, seconds = {}, {}
        for precision in ("fp32", "auto"):
            run, _ = operation_and_input(name, 8, precision=precision, **options)
            run(image[:64, :64])  # warm-up
            start = time.perf_counter()
            outputs[precision] = np.asarray(run(image).data)
            seconds[precision] = time.perf_counter() - start
        delta = _psnr_delta(outputs, truth, psnr)
        rows.append([name, seconds["fp32"], seconds["auto"], seconds["fp32"] / seconds["auto"],
                     *delta, passfail(abs(delta[2]) <= 0.05) if truth is not None else "n/a"])
    return rows


def _comparison_input(name, n):
    """(input image, noiseless truth or None, options): super-resolution gets a 2x2-binned
    noisy sky and keeps values (truth: the fine sky); colorize has no truth."""
    from astro_nn_restore import simulate_sky
    from astro_nn_restore.degrade import coarse_detector

    sky = simulate_sky((n, n), seed=900_001)
    if name == "superres":
        sigma = float(np.std(sky.noisy.data - sky.clean.data))
        coarse = coarse_detector(sky.clean.data, 2, noise_sigma=sigma,
                                 rng=np.random.default_rng(1))
        return coarse.astype(np.float32), sky.clean.data, dict(flux_conserving=False)
    return sky.noisy.data, None if name == "colorize" else sky.clean.data, {}


def _psnr_delta(outputs, truth, psnr):
    """(PSNR fp32, PSNR fast, difference) against the truth; without one, the PSNR of
    fast against fp32 (data range 1: colorize's RGB)."""
    if truth is None:
        return "—", "—", psnr(outputs["fp32"], outputs["auto"], data_range_value=1.0)
    a, b = psnr(truth, outputs["fp32"]), psnr(truth, outputs["auto"])
    return a, b, b - a


def matmul_rate(n, threads, dtype):
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    repeats, start = 3, time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def flops(args, throughput_rows):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    rates = {t: matmul_rate(args.matmul, t, torch.bfloat16) for t in (1, 2)}
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    peak = rates[min(max(threads, 1), 2)]
    speed = {r[0]: r[3] for r in throughput_rows if r[1] == f"{args.sizes[-1]}²"}
    rows = []
    for name in OPERATIONS:
        module, channels, scale = module_for_flops(name)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            module(torch.rand(1, channels, 256, 256))
        gflop_per_mp = counter.get_total_flops() / 1e9 / (256 * 256 / 1e6)
        achieved = gflop_per_mp * speed.get(name, np.nan)
        rows.append([name, model_for(name)[1], gflop_per_mp, speed.get(name, np.nan), achieved,
                     100 * achieved / peak])
    return rows, rates


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    speed = throughput(args)
    memory = chunked_memory(args)
    compare = fast_vs_fp32(args)
    flop_rows, rates = flops(args, speed)
    linear = all(r[4] <= 1.25 for r in speed)
    text = "\n".join([
        report_header("Scale and speed (issue 10)", args),
        "Inputs: `simulate_sky` noisy frames (seed 900000); default tiling (256-pixel "
        "tiles, overlap 32, batch 4), precision 'auto'. One fresh process per row (time and "
        "peak RSS of the call only; the model is loaded and warmed up before).\n",
        "## Throughput and linearity\n",
        markdown_table(["operation", "size", "seconds", "MP/s", "time/pixel ÷ smallest",
                        "peak RSS MiB"], speed),
        f"\n- time grows linearly with pixels (time/pixel within 25 % of the smallest size): "
        f"**{passfail(linear)}**\n",
        "## Chunked path: peak memory of a memory-mapped FITS image\n",
        markdown_table(["run", "seconds", "peak RSS GiB", "image float32 GiB",
                        "≤ 2 GB"], memory),
        "\n## fp32 against the fast path\n",
        f"{args.compare}x{args.compare} sky; PSNR against the noiseless sky (data range: its "
        "0.5-99.9 percentile range); super-resolution from the sky binned 2x2 with the same "
        "noise, values kept; colorize has no truth: its last column is the PSNR of the fast "
        "RGB against the fp32 RGB (data range 1), not a difference.\n",
        markdown_table(["operation", "fp32 s", "fast s", "speed-up", "PSNR fp32",
                        "PSNR fast", "ΔPSNR dB (colorize: fast vs fp32)", "|Δ| ≤ 0.05 dB"],
                       compare, digits=3),
        "\n## Arithmetic against the hardware\n",
        f"bf16 matmul ({args.matmul}x{args.matmul}): {rates[1]:.1f} GFLOP/s on 1 thread, "
        f"{rates[2]:.1f} on 2. GFLOP per megapixel of input counted with FlopCounterMode on "
        f"a 256² input (batch 1); achieved = GFLOP/MP × MP/s at {args.sizes[-1]}².\n",
        markdown_table(["operation", "model", "GFLOP/MP", "MP/s", "achieved GFLOP/s",
                        "% of bf16 matmul"], flop_rows),
    ])
    write_report(args.out, text)


if __name__ == "__main__":
    main()

"""Clean images for training and benchmarks.

* Simulated skies from `astro_nn_restore.simulate`.
* The Hubble Deep Field that ships with scikit-image, split into a training
  part (the left 75 % of the columns) and a held-out part (the right 25 %)
  that training never sees and benchmarks use.
* Other real images bundled with scikit-image (`packaged_images`): the Moon,
  fluorescence microscopy of cells, a retina, textures and photographs, for
  tasks that learn fine structure of any kind (denoising, deblurring,
  super-resolution); the Moon (`VALIDATION_IMAGE`) is kept for validation.
* A user's folder of FITS files, read through `ccdproc.ImageFileCollection`.
"""

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._warnings import one_line, warn

__all__ = ["hubble_deep_field", "packaged_images", "fits_folder_images", "ImagePool",
           "describe_real_share", "sky_psf", "HDF_SPLIT_COLUMN", "PACKAGED_IMAGES",
           "VALIDATION_IMAGE"]

#: Columns of the Hubble Deep Field at or right of this one are held out.
HDF_SPLIT_COLUMN = 750


def hubble_deep_field(part="train", *, color=False):
    """The scikit-image Hubble Deep Field as float32 in [0, 1].

    Parameters
    ----------
    part : {'train', 'heldout', 'all'}
    color : bool
        Return (ny, nx, 3) RGB instead of the (ny, nx) luminance.

    Examples
    --------
    >>> hubble_deep_field("heldout").shape
    (872, 250)
    """
    from skimage import data

    from ._color import split_luminance

    rgb = data.hubble_deep_field().astype(np.float32) / 255.0
    columns = {"train": slice(0, HDF_SPLIT_COLUMN), "heldout": slice(HDF_SPLIT_COLUMN, None),
               "all": slice(None)}
    if part not in columns:
        raise ValueError(f"part must be 'train', 'heldout' or 'all', got {part!r}")
    rgb = np.ascontiguousarray(rgb[:, columns[part]])
    return rgb if color else split_luminance(rgb)[0]


#: scikit-image images bundled with the package (no download), besides the HDF.
PACKAGED_IMAGES = ("moon", "cell", "retina", "coins", "camera", "grass", "gravel", "brick")
#: The packaged image no training task draws from: real-image validation.
VALIDATION_IMAGE = "moon"
#: Share of the simulated training skies given diffuse emission (nebulae,
#: coronal loops; `~astro_nn_restore.simulate.add_diffuse_emission`), in every task that adds it.
DIFFUSE_SHARE = 1 / 3


def describe_real_share(share):
    """The training-data line of a model card for tasks drawing from `ImagePool.real`.

    Examples
    --------
    >>> describe_real_share(0.3)[:40]
    'simulated skies (70%) + real images (30%'
    """
    return (f"simulated skies ({1 - share:.0%}) + real images ({share:.0%}: Hubble Deep Field "
            f"training part, scikit-image's bundled images but the {VALIDATION_IMAGE.title()})")


def packaged_images(names=PACKAGED_IMAGES):
    """Greyscale float32 images in [0, 1] that ship inside scikit-image.

    None of them is used by any benchmark of this package. Colour images are
    reduced to their luminance.

    Examples
    --------
    >>> [image.shape for image in packaged_images(["moon", "coins"])]
    [(512, 512), (303, 384)]
    """
    from skimage import data

    from ._color import split_luminance

    unknown = sorted(set(names) - set(PACKAGED_IMAGES))
    if unknown:  # other scikit-image data sets are downloaded on first use
        raise ValueError(f"not bundled with scikit-image: {unknown}; use {PACKAGED_IMAGES}")
    images = []
    for name in names:
        image = getattr(data, name)().astype(np.float32) / 255.0
        images.append(split_luminance(image)[0] if image.ndim == 3 else image)
    return images


def fits_files(folder, pattern):
    """Paths of the files in ``folder`` matching ``pattern``, unreadable ones included.

    `ccdproc.ImageFileCollection` gives the readable FITS files (in its order);
    it leaves out the files whose header it cannot read, which are appended
    (sorted), so that callers report them instead of losing them silently.
    """
    from ccdproc import ImageFileCollection

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty folder; unreadable files: see above
        paths = [str(p) for p in ImageFileCollection(folder, glob_include=pattern)
                 .files_filtered(include_path=True)]
    listed = {os.path.abspath(p) for p in paths}
    return paths + sorted(str(p) for p in Path(folder).glob(pattern)
                          if p.is_file() and os.path.abspath(p) not in listed)


def fits_folder_images(folder, *, pattern="*.fits*"):
    """2-D float32 images of every FITS file in ``folder``, for training.

    Uses `ccdproc.ImageFileCollection`, so the usual header filtering applies.
    Bad pixels (NaN, inf, masked) are replaced by the median of the good
    ones. Files `read_training_frame` finds unusable are skipped with a
    warning each; a ValueError if none is left.
    """
    images = []
    for path in fits_files(folder, pattern):
        parsed, problem = read_training_frame(path)
        if problem:
            warn(f"skipping {path}: {problem}", UserWarning)
            continue
        good = ~parsed.bad
        images.append(np.where(good, parsed.data, np.median(parsed.data[good])))
    if not images:
        raise ValueError(f"no usable 2-D FITS images in {folder} matching {pattern!r}")
    return images


def read_training_frame(path):
    """``(ParsedImage, None)`` for a usable 2-D training frame, else ``(None, why not)``.

    Read by `~astro_nn_restore._nddata.parse_image`, as every operation reads
    a file (first image HDU, byte order, BZERO, MASK extension; the unit does
    not matter for training). Unusable: unreadable or truncated files, no 2-D
    image, no finite unmasked pixel.
    """
    from astropy import units as u

    from ._nddata import parse_image

    try:
        with warnings.catch_warnings():  # a truncated file fails on reading its data
            warnings.filterwarnings("ignore", message="File may have been truncated")
            parsed = parse_image(path, unit=u.dimensionless_unscaled)
    except (OSError, ValueError, TypeError) as err:
        return None, one_line(err, 160)
    if parsed.bad.all():
        return None, "no finite, unmasked pixel"
    return parsed, None


def sky_psf(seed, index, fwhm_range):
    """The PSF of simulated training sky ``index`` of a pool built with ``seed``.

    A `~astro_nn_restore.simulate.random_psf` (Moffat, elliptical Gaussian or
    Airy) with FWHM in ``fwhm_range`` pixels, from its own random stream, so
    the sky's sources do not depend on whether it has a varied PSF.

    Examples
    --------
    >>> from astro_nn_restore.datasets import sky_psf
    >>> kernel = sky_psf(0, 3, (1.2, 6.0))
    >>> bool(abs(kernel.sum() - 1) < 1e-9)
    True
    """
    from .simulate import random_psf

    return random_psf(np.random.default_rng([seed, index, 4711]), fwhm_range=fwhm_range)


def training_sky(seed, index, *, shape=(256, 256), fwhm_range=None, diffuse_share=0.0):
    """Simulated training sky ``index`` of a pool built with ``seed``: (clean float32, Sky).

    With ``fwhm_range``, the sky has its own PSF (`sky_psf`); a share
    ``diffuse_share`` of the skies (decided per sky, from its own random
    stream) gets diffuse emission at 5-50 % of its 99th-percentile source
    level (`~astro_nn_restore.simulate.add_diffuse_emission`). The `Sky`
    gives the sources (their positions do not depend on either option).
    """
    from .simulate import add_diffuse_emission, simulate_sky

    psf = None if fwhm_range is None else sky_psf(seed, index, fwhm_range)
    sky = simulate_sky(shape, seed=seed * 100_003 + index, psf=psf)
    image = np.asarray(sky.clean.data, np.float64)
    if diffuse_share:
        image = add_diffuse_emission(image, sky.background,
                                     np.random.default_rng([seed, index, 2718]),
                                     share=diffuse_share)
    return image.astype(np.float32), sky


@dataclass(eq=False)
class ImagePool:
    """Clean images, (ny, nx) or (ny, nx, channels), to draw random training patches from.

    ``weights`` (default: equal) are the relative chances of each image to be
    drawn.
    """

    images: list = field(default_factory=list)
    weights: np.ndarray | None = None

    def __post_init__(self):
        if self.weights is not None:
            weights = np.asarray(self.weights, dtype=float)
            self.weights = weights / weights.sum()

    def random_index(self, rng):
        """Index of a random image, drawn according to ``weights``."""
        if self.weights is None:
            return int(rng.integers(len(self.images)))
        return int(rng.choice(len(self.images), p=self.weights))

    @classmethod
    def simulated(cls, *, seed, n, shape=(256, 256), fwhm_range=None, diffuse_share=0.0):
        """``n`` noiseless simulated skies (`~astro_nn_restore.simulate.simulate_sky`).

        With ``fwhm_range``, sky ``i`` has its own PSF, `sky_psf` ``(seed, i,
        fwhm_range)``; without, every sky has simulate_sky's default Moffat.
        A share ``diffuse_share`` of the skies (drawn per sky, from its own
        random stream) gets `~astro_nn_restore.simulate.diffuse_emission` at
        5-50 % of its 99th-percentile source level.
        """
        return cls([training_sky(seed, i, shape=shape, fwhm_range=fwhm_range,
                                 diffuse_share=diffuse_share)[0] for i in range(n)])

    @classmethod
    def real(cls, *, folder=None):
        """Real training images: HDF training part, packaged images, a FITS folder.

        Every `packaged_images` but the `VALIDATION_IMAGE`; ``folder`` is read
        with `fits_folder_images`.
        """
        images = [hubble_deep_field("train")]
        images += packaged_images([n for n in PACKAGED_IMAGES if n != VALIDATION_IMAGE])
        if folder is not None:
            images.extend(fits_folder_images(folder))
        return cls(images)

    @classmethod
    def validation(cls):
        """The real-image validation pool: `VALIDATION_IMAGE` alone."""
        return cls(packaged_images([VALIDATION_IMAGE]))

    def random_crop(self, rng, size):
        """A random crop, (size, size) or (size, size, channels), randomly rotated and flipped.

        Images smaller than ``size`` are reflect-padded first.
        """
        image = self.images[self.random_index(rng)]
        pad = [(0, max(0, size - n)) for n in image.shape[:2]] + [(0, 0)] * (image.ndim - 2)
        if any(p for _, p in pad):
            image = np.pad(image, pad, mode="reflect")
        y = rng.integers(image.shape[0] - size + 1)
        x = rng.integers(image.shape[1] - size + 1)
        crop = image[y : y + size, x : x + size]
        crop = np.rot90(crop, k=rng.integers(4))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop, dtype=np.float32)

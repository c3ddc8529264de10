"""The image confounders of "Source Matters" (Juodelyte et al., arXiv 2403.04484), applied at read time.

Each function takes a decoded PIL image and returns the confounded one; nothing is written to
disk. The study's scripts (github.com/DovileDo/source-matters, include_tag.py, include_lowpass.py,
include_noise.py at d0f7547) hard-code their figures for NIH ChestX-ray14's 1024 x 1024 images;
metadb keeps each figure as a fraction of the image side, so the recipe means the same thing at any
resolution (at 1024 px it is theirs exactly). Where each figure was found, and what the issue's
summary got wrong, is said beside it.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

STUDY_SIDE = 1024  # NIH ChestX-ray14 images, the side every figure below was set for

# --- tag: include_tag.py ---------------------------------------------------------------------------
# chest14: font_size = 64, draw.text((im_h, im_w) = (200, 200), 'R', fill='white'): PIL's text
# anchor is the left/ascender corner, so (200, 200) is (x, y) of the text box, not of the glyph.
TAG_TEXT = "R"
TAG_FONT_FRACTION = 64 / STUDY_SIDE
TAG_XY_FRACTION = 200 / STUDY_SIDE
# The study asks matplotlib for findfont(FontProperties(family='sans-serif', weight='light')),
# which resolves to whatever sans-serif font the machine has installed (DejaVu Sans ExtraLight on
# one with Debian's fonts-dejavu-extra, else matplotlib's bundled DejaVu Sans, which has no light
# weight). metadb always draws with matplotlib's bundled DejaVuSans.ttf, so a tag is the same on
# every machine; at 1024 px its ink spans x 206..242, y 213..259.


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), size)


def tag_geometry(width: int, height: int) -> tuple[int, tuple[float, float]]:
    """(font size in px, (x, y) of the text box): the study's 64 px at (200, 200), scaled to this image."""
    size = max(1, round(TAG_FONT_FRACTION * min(width, height)))
    return size, (TAG_XY_FRACTION * width, TAG_XY_FRACTION * height)


def tag(im: Image.Image) -> Image.Image:
    """A white letter R drawn onto a copy of the image."""
    out = im.copy()
    size, xy = tag_geometry(*out.size)
    ImageDraw.Draw(out).text(xy, TAG_TEXT, font=_font(size), fill="white")
    return out


# --- lowpass ("denoising" in the issue): include_lowpass.py ----------------------------------------
# chest14: e = 500, the diameter in pixels of a circle drawn with PIL's ellipse around the centre of
# the fftshift-ed spectrum (bbox centre +- e/2), filled with 1: frequencies inside are kept, the rest
# zeroed; then the real part of the inverse FFT, clipped to 0..255, cast to uint8 and repeated into
# three channels. The image is read as greyscale (cv2.IMREAD_GRAYSCALE). The study names no cut-off
# in cycles; 500 / 1024 of the side keeps frequencies up to about 0.24 cycles per pixel. PIL's circle
# is not symmetric about the zero frequency of an even-sided spectrum (it is centred half a pixel
# off), so a few kept frequencies lose their mirror twin and taking the real part moves half their
# energy there; metadb keeps that, since it is what the study's images went through.
LOWPASS_DIAMETER_FRACTION = 500 / STUDY_SIDE


def lowpass_mask(width: int, height: int) -> np.ndarray:
    """(height, width) 0/1 mask of the kept (centred) frequencies, drawn as the study draws it."""
    ex, ey = LOWPASS_DIAMETER_FRACTION * width, LOWPASS_DIAMETER_FRACTION * height
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).ellipse((width / 2 - ex / 2, height / 2 - ey / 2, width / 2 + ex / 2, height / 2 + ey / 2),
                                 fill=1)
    return np.asarray(mask, dtype=np.float64)


def lowpass(im: Image.Image) -> Image.Image:
    """The greyscale image with every frequency outside the study's circle removed, as RGB."""
    grey = np.asarray(_grey(im), dtype=np.float64)
    spectrum = np.fft.fftshift(np.fft.fft2(grey)) * lowpass_mask(grey.shape[1], grey.shape[0])
    out = np.clip(np.real(np.fft.ifft2(np.fft.ifftshift(spectrum))), 0, 255).astype(np.uint8)
    return Image.fromarray(out).convert("RGB")


# --- noise: include_noise.py -----------------------------------------------------------------------
# A CT-style photon-count simulation. Grey levels are read as HU in the display window [-1200, 800],
# turned into attenuation mu = HU * (MU_WATER - MU_AIR) / 1000 + MU_WATER, and a Poisson count with
# mean PHOTONS * exp(-mu) is drawn per pixel; -log(count / PHOTONS) goes back to HU and to 0..255
# (clipped, floored to uint8). A uniform(0, 1) quantisation noise is added to the grey levels first.
# CORRECTIONS to the summary: every image of a noise variant is noised, not only the
# confounded ones: the others at 20,000,000 photons per pixel, the confounded ones (positives in
# training, negatives in the confounded test) at 15,000,000 (fewer photons = stronger noise); and
# the study first resizes each image to 512 x 512 (cv2.resize, bilinear), i.e. half the 1024 side.
# The study draws from two seeded streams (RandomState(666) for quantisation, 888 for Poisson) in
# file order; metadb seeds one generator per image (seed, image index) so any image reads the same
# in any order and in any worker.
MU_WATER = 0.1837
MU_AIR = 0.1662
DISPLAY_WINDOW = (-1200.0, 800.0)
PHOTONS_BASE = 20_000_000
PHOTONS_CONFOUNDED = 15_000_000
NOISE_SIDE_FRACTION = 512 / STUDY_SIDE


def photon_noise(grey: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """Float grey levels (0..255 scale, before the uint8 cast) after quantisation and Poisson noise."""
    lo, hi = DISPLAY_WINDOW
    hu = (grey + rng.uniform(0.0, 1.0, size=grey.shape)) / 255.0 * (hi - lo) + lo
    mu = hu * (MU_WATER - MU_AIR) / 1000 + MU_WATER
    counts = rng.poisson(np.exp(-mu) * photons) / photons
    recon = 1000 * (-np.log(np.maximum(1e-8, counts)) - MU_WATER) / (MU_WATER - MU_AIR)
    return (np.clip(recon, lo, hi) - lo) / (hi - lo) * 255.0


def noise_std(grey: np.ndarray, photons: float) -> np.ndarray:
    """Closed form, per pixel, of the Poisson part's std in grey levels (delta method, before clipping)."""
    lo, hi = DISPLAY_WINDOW
    mu = ((grey + 0.5) / 255.0 * (hi - lo) + lo) * (MU_WATER - MU_AIR) / 1000 + MU_WATER
    return 255.0 / (hi - lo) * 1000 / (MU_WATER - MU_AIR) / np.sqrt(photons * np.exp(-mu))


def noise(im: Image.Image, photons: float, rng: np.random.Generator) -> Image.Image:
    """The greyscale image at half its side (the study's 512 of 1024), photon-noised at `photons`, as RGB."""
    grey = _grey(im)
    size = (max(1, round(grey.width * NOISE_SIDE_FRACTION)), max(1, round(grey.height * NOISE_SIDE_FRACTION)))
    small = np.asarray(grey.resize(size, Image.BILINEAR), dtype=np.float64)
    return Image.fromarray(photon_noise(small, photons, rng).astype(np.uint8)).convert("RGB")


def _grey(im: Image.Image) -> Image.Image:
    return im if im.mode == "L" else im.convert("L")

"""Every image mode Pillow decodes, and how it becomes the 8-bit picture that preprocessing takes.

Pillow's own ``convert("RGB")`` clips 16-bit gray (mode ``I;16``) at 255, so mid-grey became white
and a 16-bit PNG was silently misclassified. Here 16-bit gray is scaled to 8 bits (v / 257,
rounded), palettes are read through their colors, and alpha, palette and color-key transparency are
dropped alike: the colors as stored are classified (what ``convert("RGB")`` does for RGBA, and what
image classifiers' loaders commonly do). Modes whose conversion is undefined or lossy are refused,
naming the mode. ``MODES`` is the one table: docs/RELIABILITY.md's mode table is generated from it
(bench/image_modes.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import InvalidInput


@dataclass(frozen=True)
class Mode:
    """One Pillow mode: what its samples are, and what the server does with it (None: refused)."""

    samples: str
    treatment: str | None
    why_refused: str = ""


GRAY16 = ("I;16", "I;16L", "I;16B", "I;16N")
VIA_RGBA = ("P", "PA")  # palette transparency becomes alpha first, which is then dropped like any alpha
PREMULTIPLIED = "premultiplied alpha, a mode Pillow uses inside resampling; no file decodes to it"

MODES: dict[str, Mode] = {
    "1": Mode("1-bit black and white (1-bit PNG)", "0 and 255, as gray"),
    "L": Mode("8-bit gray (PNG of 1, 2, 4 or 8 bits, gray JPEG)", "as it is"),
    "P": Mode("palette indices, with or without transparency (palette PNG)", "its palette's colors; transparency dropped"),
    "PA": Mode("palette indices and alpha", "its palette's colors; alpha dropped"),
    "LA": Mode("8-bit gray and alpha (gray+alpha PNG)", "the gray; alpha dropped"),
    "RGB": Mode("8-bit RGB (RGB PNG of 8 or 16 bits, which Pillow rounds to 8; RGB JPEG)",
                "as it is; a color-key transparency dropped"),
    "RGBA": Mode("8-bit RGB and alpha (RGBA PNG of 8 or 16 bits, 16-bit gray+alpha PNG)", "the colors; alpha dropped"),
    "RGBX": Mode("RGB and a padding byte", "the colors; padding dropped"),
    "CMYK": Mode("8-bit CMYK (CMYK JPEG)", "Pillow's CMYK to RGB (no ICC profile)"),
    "YCbCr": Mode("8-bit YCbCr", "Pillow's YCbCr to RGB (ITU-R BT.601)"),
    "HSV": Mode("8-bit hue, saturation, value", "Pillow's HSV to RGB"),
    "I;16": Mode("16-bit gray (16-bit gray PNG)", "scaled to 8 bits: round(v / 257)"),
    "I;16L": Mode("16-bit gray, little-endian", "scaled to 8 bits: round(v / 257)"),
    "I;16B": Mode("16-bit gray, big-endian", "scaled to 8 bits: round(v / 257)"),
    "I;16N": Mode("16-bit gray, native order", "scaled to 8 bits: round(v / 257)"),
    "I": Mode("32-bit signed integers (16-bit gray PNG in Pillow before 10)",
              "scaled to 8 bits like 16-bit gray when every value is within 0..65535, else refused"),
    "F": Mode("32-bit floats", None, "float samples have no defined range"),
    "LAB": Mode("CIE L*a*b*", None, "Pillow's Lab to RGB conversion is approximate (10 levels off on a round trip)"),
    "La": Mode("gray and premultiplied alpha", None, PREMULTIPLIED),
    "RGBa": Mode("RGB and premultiplied alpha", None, PREMULTIPLIED),
}
ACCEPTED = tuple(name for name, mode in MODES.items() if mode.treatment is not None)


def refusal(field: str, mode: str, why: str) -> InvalidInput:
    return InvalidInput(f"{field}: expected an image of mode {', '.join(ACCEPTED)}, received one of mode "
                        f"{mode!r} ({why})")


def _scaled16(image: Image.Image, field: str) -> Image.Image:
    """16-bit gray (or 32-bit integers holding it) -> 8-bit gray, round(v / 257): 65535 -> 255."""
    values = np.asarray(image)
    if image.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
        raise refusal(field, "I", f"values {int(values.min())}..{int(values.max())}, outside the 16-bit range 0..65535")
    return Image.fromarray(((values.astype(np.uint32) + 128) // 257).astype(np.uint8), "L")


def eight_bit(image: Image.Image, field: str) -> Image.Image:
    """``image`` in a mode whose ``convert("RGB")`` and ``convert("L")`` are exact (see ``MODES``);
    InvalidInput naming the mode for a mode that is refused or unknown."""
    mode = MODES.get(image.mode)
    if mode is None:
        raise refusal(field, image.mode, "a mode this server does not know")
    if mode.treatment is None:
        raise refusal(field, image.mode, mode.why_refused)
    if image.mode in GRAY16 or image.mode == "I":
        return _scaled16(image, field)
    if image.mode in VIA_RGBA:
        return image.convert("RGBA")
    return image

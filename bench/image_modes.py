"""Every image mode Pillow decodes, sent as a client would send it, through the server's decode path
and compared with its 8-bit RGB twin; and the table of modes in docs/RELIABILITY.md.

    python -m bench.image_modes             # checks every case, writes the table into docs/RELIABILITY.md
    python -m bench.image_modes --no-write

``CASES`` is the one list: tests/service/test_inputs.py decodes each case and checks it against
its twin and the doc's table against ``table()``; tests/integration/test_reliability_inputs.py
sends the encoded ones to a live server and compares the served scores with the twin's. What the
server does with a mode comes from ``service.images.MODES``; this script only observes it.
"""
from __future__ import annotations

import argparse
import io
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from bench import ROOT
from service.errors import InvalidInput
from service.images import MODES
from service.inputs import decode_image, preprocess
from service.repository import Preprocessing


DOC = ROOT / "docs" / "RELIABILITY.md"
BEGIN, END = "<!-- modes:begin -->", "<!-- modes:end -->"
SIZE = 32
LEVELS = Preprocessing(color="rgb", resize=(SIZE, SIZE), scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
EXACT, ROUNDED, JPEG, COLOR_SPACE = 0.0, 1.0, 16.0, 8.0  # allowed difference from the twin, in levels of 255


# -- the pictures: one in color (216 colors, so that a palette holds it exactly) and one in gray -----

def _grid() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    return y, x


def color() -> np.ndarray:
    y, x = _grid()
    channels = [x, y, 0.5 + 0.5 * np.sin(6 * x * y + 1)]
    return (np.round(np.stack(channels, axis=-1) * 5) * 51).astype(np.uint8)


def gray() -> np.ndarray:
    y, x = _grid()
    return np.round(255 * (0.5 + 0.5 * np.sin(5 * x + 3 * y))).astype(np.uint8)


def alpha() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)


def sixteen(pixels: np.ndarray) -> np.ndarray:
    """8-bit pixels as 16-bit values that are not multiples of 257 but round back to them (v / 257)."""
    offsets = np.random.default_rng(8).integers(-128, 129, pixels.shape)
    return np.clip(pixels.astype(np.int64) * 257 + offsets, 0, 65535).astype(np.uint16)


def rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels[..., None], 3, axis=-1) if pixels.ndim == 2 else pixels


# -- encoders -----------------------------------------------------------------------------------

def saved(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def raw_png(samples: np.ndarray, bit_depth: int, color_type: int, chunks: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A PNG written by hand, for what Pillow cannot write: 2- and 4-bit gray, 16-bit color, alpha."""
    height, width = samples.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if bit_depth == 16:
        rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    elif bit_depth == 8:
        rows = samples.astype(np.uint8).reshape(height, -1)
    else:
        per_byte = 8 // bit_depth
        padded = np.pad(samples.astype(np.uint8), ((0, 0), (0, -width % per_byte))).reshape(height, -1, per_byte)
        rows = np.zeros(padded.shape[:2], np.uint8)
        for i in range(per_byte):
            rows |= padded[:, :, i] << (8 - bit_depth * (i + 1))
    data = b"".join(b"\0" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + b"".join(chunk(k, d) for k, d in chunks)
            + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


def palette_png(transparent: bool) -> bytes:
    pixels = color()
    colors, index = np.unique(pixels.reshape(-1, 3), axis=0, return_inverse=True)
    image = Image.fromarray(index.reshape(SIZE, SIZE).astype(np.uint8), "P")
    image.putpalette(colors.astype(np.uint8).tobytes())
    if transparent:  # a different alpha for every palette entry (a tRNS chunk)
        image.info["transparency"] = bytes(np.random.default_rng(9).integers(0, 256, len(colors), dtype=np.uint8))
    return saved(image)


def in_memory(mode: str, source: Callable[[], Image.Image]) -> Callable[[], Image.Image]:
    return lambda: source().convert(mode)


def sixteen_bit_gray(mode: str, values: Callable[[], np.ndarray]) -> Callable[[], Image.Image]:
    def make() -> Image.Image:
        v = values()
        if mode == "I":
            return Image.fromarray(v.astype(np.int32), "I")
        order = ">u2" if mode == "I;16B" else "<u2"
        return Image.frombytes(mode, (SIZE, SIZE), v.astype(order).tobytes())
    return make


def with_alpha(mode: str, source: Callable[[], Image.Image]) -> Callable[[], Image.Image]:
    def make() -> Image.Image:
        image = source().convert(mode)
        image.putalpha(Image.fromarray(alpha()))
        return image
    return make


# -- the cases ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModeCase:
    """One picture in one mode: how it is made (encoded bytes, or a Pillow image no PNG or JPEG
    decodes to), the mode Pillow gives it, and its 8-bit RGB twin (None: the mode is refused)."""

    id: str
    mode: str
    encoding: str
    make: Callable[[], bytes | Image.Image]
    twin: Callable[[], np.ndarray] | None
    tolerance: float = EXACT

    @property
    def encoded(self) -> bool:
        return self.encoding != "in memory"


def cases() -> list[ModeCase]:
    c, g = color, lambda: rgb(gray())  # the twins: the color picture, the gray one as RGB
    color_image = lambda: Image.fromarray(color())  # noqa: E731
    gray16 = lambda: sixteen(gray())  # noqa: E731
    key = struct.pack(">HHH", *map(int, color()[0, 0]))
    return [
        ModeCase("rgb-png", "RGB", "8-bit RGB PNG", lambda: saved(color_image()), c),
        ModeCase("rgb16-png", "RGB", "16-bit RGB PNG", lambda: raw_png(sixteen(color()), 16, 2), c, ROUNDED),
        ModeCase("rgb-color-key-png", "RGB", "8-bit RGB PNG with a tRNS color key",
                 lambda: raw_png(color(), 8, 2, ((b"tRNS", key),)), c),
        ModeCase("rgba-png", "RGBA", "8-bit RGBA PNG, random alpha",
                 lambda: raw_png(np.dstack([color(), alpha()]), 8, 6), c),
        ModeCase("rgba16-png", "RGBA", "16-bit RGBA PNG, random alpha",
                 lambda: raw_png(np.dstack([sixteen(color()), alpha().astype(np.uint16) * 257]), 16, 6), c, ROUNDED),
        ModeCase("palette-png", "P", "palette PNG", lambda: palette_png(False), c),
        ModeCase("palette-trns-png", "P", "palette PNG with transparency (tRNS)", lambda: palette_png(True), c),
        ModeCase("rgb-jpeg", "RGB", "RGB JPEG, quality 95, 4:4:4",
                 lambda: saved(color_image(), "JPEG", quality=95, subsampling=0), c, JPEG),
        ModeCase("rgb-progressive-jpeg", "RGB", "progressive RGB JPEG, quality 95, 4:4:4",
                 lambda: saved(color_image(), "JPEG", quality=95, subsampling=0, progressive=True), c, JPEG),
        ModeCase("cmyk-jpeg", "CMYK", "CMYK JPEG, quality 95",
                 lambda: saved(color_image().convert("CMYK"), "JPEG", quality=95), c, JPEG),
        ModeCase("gray-png", "L", "8-bit gray PNG", lambda: saved(Image.fromarray(gray())), g),
        ModeCase("gray16-png", "I;16", "16-bit gray PNG", lambda: raw_png(gray16(), 16, 0), g),
        ModeCase("gray4-png", "L", "4-bit gray PNG", lambda: raw_png(gray() >> 4, 4, 0), lambda: rgb((gray() >> 4) * 17)),
        ModeCase("gray2-png", "L", "2-bit gray PNG", lambda: raw_png(gray() >> 6, 2, 0), lambda: rgb((gray() >> 6) * 85)),
        ModeCase("bw-png", "1", "1-bit PNG", lambda: saved(Image.fromarray(gray() >= 128)),
                 lambda: rgb((gray() >= 128).astype(np.uint8) * 255)),
        ModeCase("gray-alpha-png", "LA", "8-bit gray+alpha PNG, random alpha",
                 lambda: raw_png(np.dstack([gray(), alpha()]), 8, 4), g),
        ModeCase("gray16-alpha-png", "RGBA", "16-bit gray+alpha PNG, random alpha",
                 lambda: raw_png(np.dstack([gray16(), alpha().astype(np.uint16) * 257]), 16, 4), g, ROUNDED),
        ModeCase("gray-jpeg", "L", "gray JPEG, quality 95", lambda: saved(Image.fromarray(gray()), "JPEG", quality=95),
                 g, JPEG),
        ModeCase("rgbx", "RGBX", "in memory", in_memory("RGBX", color_image), c),
        ModeCase("ycbcr", "YCbCr", "in memory", in_memory("YCbCr", color_image), c, COLOR_SPACE),
        ModeCase("hsv", "HSV", "in memory", in_memory("HSV", color_image), c, COLOR_SPACE),
        ModeCase("palette-alpha", "PA", "in memory", with_alpha("PA", lambda: Image.open(io.BytesIO(palette_png(False)))), c),
        *[ModeCase(f"gray16-{m.lower().replace(';', '')}", m, "in memory", sixteen_bit_gray(m, gray16), g)
          for m in ("I;16L", "I;16B", "I;16N", "I")],
        ModeCase("int32-out-of-range", "I", "in memory", sixteen_bit_gray("I", lambda: gray().astype(np.int64) * 1000), None),
        ModeCase("float", "F", "in memory", in_memory("F", lambda: Image.fromarray(gray())), None),
        ModeCase("lab", "LAB", "in memory", in_memory("LAB", color_image), None),
        ModeCase("premultiplied-gray", "La", "in memory",
                 lambda: with_alpha("LA", lambda: Image.fromarray(gray()))().convert("La"), None),
        ModeCase("premultiplied-rgb", "RGBa", "in memory", lambda: with_alpha("RGBA", color_image)().convert("RGBa"), None),
    ]


# -- observing them -----------------------------------------------------------------------------

def opened_mode(case: ModeCase) -> str:
    made = case.make()
    if isinstance(made, Image.Image):
        return made.mode
    with Image.open(io.BytesIO(made)) as image:
        return image.mode


def decode(case: ModeCase, pre: Preprocessing = LEVELS) -> np.ndarray:
    """The case through the server's decode path (float32 C, H, W); InvalidInput when refused."""
    made = case.make()
    if isinstance(made, Image.Image):
        return preprocess(made, pre, "images[0]")
    return decode_image(made, pre, "images[0]", max_pixels=SIZE * SIZE)


def twin_png(case: ModeCase) -> bytes:
    """The case's picture as an 8-bit RGB PNG."""
    return saved(Image.fromarray(case.twin()))


def twin_tensor(case: ModeCase, pre: Preprocessing = LEVELS) -> np.ndarray:
    return decode_image(twin_png(case), pre, "twin", max_pixels=SIZE * SIZE)


def observe(case: ModeCase) -> tuple[str, float | None, str]:
    """(mode Pillow opened, max difference from the twin in levels or None, refusal message)."""
    mode = opened_mode(case)
    try:
        x = decode(case)
    except InvalidInput as exc:
        return mode, None, str(exc)
    return mode, float(np.abs(x - twin_tensor(case)).max()), ""


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> tuple[str, int]:
    """The mode table and how many cases differ from their expectation."""
    rows = ["| Pillow mode | samples | the server | tried as | max difference from the 8-bit RGB twin, levels (allowed) |",
            "| --- | --- | --- | --- | --- |"]
    differs = 0
    listed = set()
    for case in sorted(cases(), key=lambda case: list(MODES).index(case.mode)):
        mode, difference, message = observe(case)
        spec = MODES[case.mode]
        if case.twin is None:
            ok = mode == case.mode and difference is None and repr(case.mode) in message
            result = f"refused: `{cell(message)}`"
        else:
            ok = mode == case.mode and difference is not None and difference <= case.tolerance
            result = "refused" if difference is None else f"{difference:.0f} ({case.tolerance:.0f})"
        differs += not ok
        first = case.mode not in listed
        listed.add(case.mode)
        treatment = spec.treatment or f"refused: {spec.why_refused}"
        rows.append(f"| `{mode}`{'' if ok else ' **(differs)**'} | {cell(spec.samples) if first else '〃'} | "
                    f"{cell(treatment) if first else '〃'} | {case.encoding} | {result} |")
    for name, spec in MODES.items():
        if name not in listed:
            differs += 1
            rows.append(f"| `{name}` **(no case)** | {cell(spec.samples)} | {cell(spec.treatment or spec.why_refused)} | - | - |")
    return "\n".join(rows), differs


def text() -> tuple[str, int]:
    rows, differs = table()
    import PIL

    return (f"Generated by `python -m bench.image_modes` (Pillow {PIL.__version__}; {len(cases())} cases, {differs} "
            f"differing from the expectation). Each picture ({SIZE}x{SIZE}, in color or in gray) goes through the "
            "server's decode path and is compared with the same picture as an 8-bit RGB PNG, in levels of 255 (before "
            "normalization); \"in memory\" marks a mode no PNG or JPEG decodes to, given to the conversion directly. "
            "The allowed difference is 0 for lossless files, 1 level where 16 bits are rounded to 8, and the loss of "
            "JPEG or of 8-bit color spaces otherwise.\n\n" + rows), differs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    doc, differs = text()
    print(doc)
    if not args.no_write:
        from bench.report import write_doc

        write_doc(doc, DOC, BEGIN, END)
    return 0 if differs == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

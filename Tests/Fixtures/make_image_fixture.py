"""Writes the image-preparation fixture: a small PNG and what torchvision's
ImageNet preprocessing makes of it, so the test suite can check
Examples/torchvision_to_safetensors.py (its plain-Python path needs no
packages) against torchvision itself, bit for bit.

    python3 Tests/Fixtures/make_image_fixture.py      # needs torch, torchvision, Pillow, numpy

Files:
  prep_image.png               31×19 RGB: gradients, a checkerboard, hard edges;
                               its rows use each of PNG's five filters
  prep_image.safetensors       F32 tensors 1×3×S×S, one per (resize, crop):
                               resize12_crop9 (shrink; the crop's offsets round
                               half to even), resize40_crop35 (enlarge),
                               resize19_crop19 (no resize: the short side already fits)

Each is `Normalize(mean, std)(ToTensor()(CenterCrop(crop)(Resize(resize)(image))))`
with ImageNet's mean and std. Before writing, the script checks the example's
plain-Python path (and its Pillow path) against torchvision on 200 random
images of random sizes, and on the fixture.
"""
import os
import random
import struct
import sys
import zlib

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.numpy import save_file
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "Examples"))
import torchvision_to_safetensors as prep  # noqa: E402

MEAN, STD = prep.IMAGENET_MEAN, prep.IMAGENET_STD
CASES = [(12, 9), (40, 35), (19, 19)]


def reference(path, resize, crop):
    """torchvision's preprocessing of the image file, as a 1×3×crop×crop array."""
    pipeline = transforms.Compose([
        transforms.Resize(resize),
        transforms.CenterCrop(crop),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    with Image.open(path) as image:
        return pipeline(image.convert("RGB")).unsqueeze(0).numpy()


def ours(path, resize, crop, pure):
    values, _ = prep.prepare(path, resize, crop, pure=pure)
    return np.array(values, dtype=np.float32).reshape(1, 3, crop, crop)


def check(path, resize, crop):
    want = reference(path, resize, crop)
    for pure in (True, False):
        got = ours(path, resize, crop, pure)
        if not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
            raise SystemExit(f"{path} resize {resize} crop {crop} (pure={pure}): differs from torchvision by "
                             f"{np.abs(got - want).max()}")
    return want


def fixture_image():
    width, height = 31, 19
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // (width - 1)).astype(np.uint8)
    g = (y * 255 // (height - 1)).astype(np.uint8)
    b = np.where((x // 3 + y // 3) % 2 == 0, 230, 20).astype(np.uint8)
    b[:, 20:23] = 0          # a hard vertical bar
    g[7:9, :] = 255          # a hard horizontal bar
    return np.stack([r, g, b], axis=2)


def write_png(path, pixels):
    """An 8-bit RGB PNG whose rows use the five filter types in turn (0 none,
    1 sub, 2 up, 3 average, 4 Paeth), so the example's own PNG reader meets
    each one; Pillow's encoder picks only some of them."""
    height, width, _ = pixels.shape
    raw, previous = bytearray(), bytes(width * 3)
    for y in range(height):
        line, kind = pixels[y].tobytes(), y % 5
        out = bytearray()
        for i, v in enumerate(line):
            left = line[i - 3] if i >= 3 else 0
            up = previous[i]
            upleft = previous[i - 3] if i >= 3 else 0
            p = left + up - upleft
            paeth = left if abs(p - left) <= abs(p - up) and abs(p - left) <= abs(p - upleft) else up if abs(p - up) <= abs(p - upleft) else upleft
            predictor = [0, left, up, (left + up) // 2, paeth][kind]
            out.append((v - predictor) & 255)
        raw += bytes([kind]) + out
        previous = line

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))
    with Image.open(path) as check_image:
        assert np.array_equal(np.asarray(check_image.convert("RGB")), pixels), "Pillow reads the PNG differently"


def main():
    rng = random.Random(2024)
    scratch = os.path.join(HERE, "prep_check.png")
    try:
        for _ in range(200):
            w, h = rng.randint(1, 80), rng.randint(1, 80)
            pixels = np.frombuffer(bytes(rng.randrange(256) for _ in range(w * h * 3)), np.uint8).reshape(h, w, 3)
            Image.fromarray(pixels, "RGB").save(scratch)
            resize = rng.randint(1, 90)
            short_after = resize
            crop = rng.randint(1, short_after)
            check(scratch, resize, crop)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)

    path = os.path.join(HERE, "prep_image.png")
    write_png(path, fixture_image())
    tensors = {f"resize{r}_crop{c}": check(path, r, c) for r, c in CASES}
    out = os.path.join(HERE, "prep_image.safetensors")
    save_file(tensors, out, metadata={"source": f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
                                                f"Pillow {Image.__version__}: Resize, CenterCrop, ToTensor, Normalize(ImageNet)"})
    print(path, os.path.getsize(path), "bytes;", out, os.path.getsize(out), "bytes:", ", ".join(tensors))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Converts scikit-learn's 8×8 handwritten digits into two safetensors files.

    data/digits-train.safetensors   images U8 1437×1×8×8, labels U8 1437
    data/digits-test.safetensors    images U8  360×1×8×8, labels U8  360

Source: sklearn.datasets.load_digits() (1797 images, pixel values 0..16,
labels 0..9), which is a copy of the test set of the UCI "Optical
Recognition of Handwritten Digits" data (see data/README.md for the licence
and citation). It ships inside the scikit-learn package, so nothing is
downloaded.

Conversion:
  pixel = round(v * 255 / 16) for v in 0..16 (0→0, 8→128, 16→255; v = 8 is
          the only exact tie, 127.5, and rounds to 128 with either rule);
  layout N×1×8×8 (N×C×H×W), row-major as load_digits' `images` (row 0 = top);
  split: p = numpy.random.default_rng(0).permutation(1797); train = the
         images p[0:1437], test = p[1437:1797], each in that order.

Every file has one safetensors `__metadata__` entry, "source" (one only:
safetensors writes the metadata map in hash order, so several entries would
make the bytes differ from run to run). The output is byte-for-byte
deterministic; the script re-reads each file it wrote and checks it.

Regenerate (from any directory):
    python3 Tests/Fixtures/make_digits.py
"""

import os
import sys

import numpy as np
import sklearn
from safetensors.numpy import load_file, save_file
from sklearn.datasets import load_digits

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "data")
SEED = 0
N_TRAIN = 1437


def main():
    d = load_digits()
    raw = d.images                                   # 1797×8×8 float64, 0..16
    labels = d.target
    assert raw.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert np.array_equal(raw, np.round(raw)) and raw.min() == 0 and raw.max() == 16
    assert labels.min() == 0 and labels.max() == 9
    pixels = np.round(raw * 255.0 / 16.0).astype(np.uint8)
    lut = {v: int(np.round(v * 255.0 / 16.0)) for v in range(17)}
    assert lut[0] == 0 and lut[8] == 128 and lut[16] == 255
    images = pixels.reshape(1797, 1, 8, 8)

    perm = np.random.default_rng(SEED).permutation(1797)
    splits = {"train": perm[:N_TRAIN], "test": perm[N_TRAIN:]}
    assert len(splits["test"]) == 360

    os.makedirs(OUT, exist_ok=True)
    for split, idx in splits.items():
        meta = {"source": (
            f"sklearn.datasets.load_digits() from scikit-learn {sklearn.__version__} "
            "(a copy of the test set of the UCI Optical Recognition of Handwritten "
            "Digits data, E. Alpaydin and C. Kaynak, 1998, CC BY 4.0); "
            f"pixel = round(v*255/16); split: numpy.random.default_rng({SEED})"
            f".permutation(1797), train = first {N_TRAIN}, test = last "
            f"{1797 - N_TRAIN}; this file: {split}, {len(idx)} images; "
            f"written by Tests/Fixtures/make_digits.py (numpy {np.__version__})")}
        tensors = {"images": np.ascontiguousarray(images[idx]),
                   "labels": np.ascontiguousarray(labels[idx].astype(np.uint8))}
        path = os.path.join(OUT, f"digits-{split}.safetensors")
        save_file(tensors, path, metadata=meta)
        os.chmod(path, 0o644)      # safetensors creates files 0600

        back = load_file(path)
        assert set(back) == {"images", "labels"}
        for k, v in tensors.items():
            assert back[k].dtype == np.uint8 and np.array_equal(back[k], v), k
        counts = np.bincount(back["labels"], minlength=10)
        print(f"{os.path.relpath(path, ROOT)}: {os.path.getsize(path)} bytes, "
              f"images {list(back['images'].shape)} U8, labels {list(back['labels'].shape)} U8, "
              f"per class {counts.tolist()}, mean pixel {back['images'].mean():.2f}")
    assert not set(splits["train"]) & set(splits["test"])


if __name__ == "__main__":
    sys.exit(main())

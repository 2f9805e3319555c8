"""RGB Fashion-MNIST: every image tinted to two colours chosen from its index, then resized.

    python tools/rgb_fmnist.py --size 96 --split t10k --out /tmp/rgb96_test          # all 10,000
    python tools/rgb_fmnist.py --size 64 --split t10k --count 256 --out DIR
    python tools/rgb_fmnist.py --size 64 --split train --calib --out DIR              # the 256 calibration images
    python tools/rgb_fmnist.py --size 96 --split t10k --npy x.npy --labels-npy y.npy  # normalised float32 NCHW

numpy only (no torch), so the images can be remade anywhere; the training scripts call
`rgb_images` too, so they see exactly these pixels. Definition, for image `i` of split `s`
(0 = train, 1 = t10k) with 28x28 grayscale pixels `g` (0..255) and output size S:

1. Colours: `rng = numpy.random.default_rng([TINT_SEED, s, i])`; background `bg =
   rng.integers(0, 256, 3)`, then foreground `fg = rng.integers(0, 256, 3)`, drawn again
   (same rng) until `|sum(fg) - sum(bg)| >= MIN_CONTRAST`. The label is never used, so
   colour carries no class information.
2. Resize: bilinear, half-pixel centres (`align_corners=False`, no antialiasing: PyTorch's
   `F.interpolate(mode="bilinear")`, OpenCV's INTER_LINEAR): output row `y` samples source
   row `r = max(0, (y + 0.5) * 28 / S - 0.5)` from rows `floor(r)` and `min(floor(r) + 1,
   27)`; columns alike. Computed in exact integers (weights in units of 1/(2S)).
3. Tint: `a` = resized `g` / 255; pixel = `bg + a * (fg - bg)` per channel, rounded to the
   nearest integer, halves up. (Tint and bilinear resize are both linear, so this equals
   tinting at 28x28 and resizing, without an intermediate rounding.)

Result: uint8 `[N, S, S, 3]` (HWC, as a PNG holds it). The models take float32 NCHW
`(pixel / 255 - MEAN) / STD` with the ImageNet constants below (`to_input`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fmnist  # noqa: E402

TINT_SEED = 2026
MIN_CONTRAST = 240  # |sum(fg) - sum(bg)|: a mean channel difference of 80 of 255
SPLITS = {"train": 0, "t10k": 1}
SOURCE = 28
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CALIB_COUNT = 256
CALIB_SEED = 2018
_CHUNK = 500
# Folder names sort in label order, so an ImageFolder reader's sorted classes are the labels.
CLASS_DIRS = tuple(
    f"{i}_{name.lower().replace('/', '_').replace(' ', '_').replace('-', '_')}"
    for i, name in enumerate(fmnist.LABELS)
)


def tint(split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(background, foreground) RGB of image `index` of `split`, int64 [3] each."""
    rng = np.random.default_rng([TINT_SEED, SPLITS[split], int(index)])
    bg = rng.integers(0, 256, 3)
    fg = rng.integers(0, 256, 3)
    while abs(int(fg.sum()) - int(bg.sum())) < MIN_CONTRAST:
        fg = rng.integers(0, 256, 3)
    return bg, fg


def _taps(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and the weight of i1 in units of 1/(2*size), per output index."""
    doubled = (2 * np.arange(size, dtype=np.int64) + 1) * SOURCE - size  # 2*size*r before the clamp
    doubled = np.maximum(doubled, 0)
    i0 = doubled // (2 * size)
    frac = doubled - i0 * (2 * size)
    i1 = np.minimum(i0 + 1, SOURCE - 1)
    return i0, i1, frac


def resize_numerators(gray: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 [N,28,28] to int64 [N,size,size] in units of 1/(2*size)^2."""
    if gray.ndim != 3 or gray.shape[1:] != (SOURCE, SOURCE):
        raise ValueError(f"expected [N,{SOURCE},{SOURCE}] grayscale images, got {gray.shape}")
    i0, i1, frac = _taps(size)
    d = 2 * size
    g = gray.astype(np.int64)
    rows = g[:, i0, :] * (d - frac)[None, :, None] + g[:, i1, :] * frac[None, :, None]
    return rows[:, :, i0] * (d - frac)[None, None, :] + rows[:, :, i1] * frac[None, None, :]


def rgb_images(gray: np.ndarray, indices: np.ndarray, split: str, size: int) -> np.ndarray:
    """uint8 [N,size,size,3]: image `indices[k]` of `split`, whose pixels are `gray[k]`."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} must be one of {sorted(SPLITS)}")
    if size < 1:
        raise ValueError(f"size {size} must be positive")
    indices = np.asarray(indices)
    if len(indices) != len(gray):
        raise ValueError(f"{len(gray)} images but {len(indices)} indices")
    out = np.empty((len(gray), size, size, 3), dtype=np.uint8)
    k = 255 * (2 * size) ** 2
    for start in range(0, len(gray), _CHUNK):  # bounds the int64 intermediates
        part = slice(start, start + _CHUNK)
        num = resize_numerators(gray[part], size)  # num / k of the way from bg to fg
        colours = np.array([tint(split, i) for i in indices[part]], dtype=np.int64).reshape(-1, 2, 3)
        bg = colours[:, 0][:, None, None, :]
        fg = colours[:, 1][:, None, None, :]
        total = bg * k + num[..., None] * (fg - bg)  # never negative: a convex combination
        out[part] = (2 * total + k) // (2 * k)
    return out


def to_input(images: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,3] -> float32 NCHW, (pixel/255 - MEAN) / STD per channel."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255.0)
    mean = np.array(MEAN, dtype=np.float32)[None, :, None, None]
    std = np.array(STD, dtype=np.float32)[None, :, None, None]
    return ((x - mean) / std).astype(np.float32)


def calibration_indices(train_size: int) -> np.ndarray:
    """The 256 training images models/data/calib256_* holds: numpy PCG64 seed 2018, sorted."""
    rng = np.random.default_rng(CALIB_SEED)
    return np.sort(rng.choice(train_size, size=CALIB_COUNT, replace=False))


def load(split: str, size: int, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 [N,size,size,3] images, labels, indices) of `split` (all, or `indices`)."""
    gray, labels = fmnist.load(split)
    if indices is None:
        indices = np.arange(len(gray))
    return rgb_images(gray[indices], indices, split, size), labels[indices], indices


def calibration_inputs(size: int) -> np.ndarray:
    """The 256 calibration images at `size` as normalised float32 NCHW model inputs."""
    gray, _ = fmnist.load("train")
    indices = calibration_indices(len(gray))
    return to_input(rgb_images(gray[indices], indices, "train", size))


def test_inputs(size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(normalised float32 NCHW inputs, int64 labels) of the first `count` test images."""
    images, labels, _ = load("t10k", size, np.arange(count))
    return to_input(images), labels.astype(np.int64)


def write_image_folder(out: Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, split: str) -> None:
    """PNG files out/<class>/<split>_<index>.png."""
    from PIL import Image  # only for writing PNGs

    for image, label, index in zip(images, labels, indices):
        folder = out / CLASS_DIRS[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "RGB").save(folder / f"{split}_{int(index):05d}.png", optimize=True)


def read_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N,H,W,3], labels) from root/<class>/*.png, classes and files in sorted order."""
    from PIL import Image

    images, labels = [], []
    for label, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.png")):
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, required=True, help="output height and width")
    parser.add_argument("--split", choices=sorted(SPLITS), default="t10k")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--count", type=int, default=None, help="the first N images of the split (default: all)")
    which.add_argument("--calib", action="store_true", help="the 256 calibration images (train split)")
    parser.add_argument("--out", type=Path, default=None, help="write an ImageFolder of PNGs here")
    parser.add_argument("--npy", type=Path, default=None, help="write normalised float32 NCHW inputs here")
    parser.add_argument("--labels-npy", type=Path, default=None, help="write int64 labels here")
    args = parser.parse_args()
    if args.calib and args.split != "train":
        parser.error("--calib images come from the train split")
    if args.out is None and args.npy is None and args.labels_npy is None:
        parser.error("nothing to write: give --out, --npy and/or --labels-npy")
    gray, labels = fmnist.load(args.split)
    if args.calib:
        indices = calibration_indices(len(gray))
    else:
        indices = np.arange(len(gray) if args.count is None else min(args.count, len(gray)))
    images = rgb_images(gray[indices], indices, args.split, args.size)
    labels = labels[indices]
    if args.out is not None:
        write_image_folder(args.out, images, labels, indices, args.split)
    if args.npy is not None:
        np.save(args.npy, to_input(images))
    if args.labels_npy is not None:
        np.save(args.labels_npy, labels.astype(np.int64))
    print(f"{len(images)} {args.split} images at {args.size}x{args.size}, per class "
          f"{np.bincount(labels, minlength=10).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fashion-MNIST from the gzipped IDX files that `dataset-fashion-mnist` installs."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))

MEAN = 0.2860
STD = 0.3530
LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_IMAGE_MAGIC = 2051
_LABEL_MAGIC = 2049


def _read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: install the Debian package dataset-fashion-mnist "
            "(scripts/setup.sh does) or set FMNIST_DIR"
        )
    with gzip.open(path, "rb") as f:
        raw = f.read()
    header_len = 4 * (2 + len(item_shape))
    if len(raw) < header_len:
        raise ValueError(f"{path}: truncated IDX header")
    header = np.frombuffer(raw[:header_len], dtype=">u4")
    if int(header[0]) != magic:
        raise ValueError(f"{path}: IDX magic {int(header[0])}, expected {magic}")
    count = int(header[1])
    dims = tuple(int(d) for d in header[2:])
    if dims != item_shape:
        raise ValueError(f"{path}: items are {dims}, expected {item_shape}")
    body = np.frombuffer(raw[header_len:], dtype=np.uint8)
    expected = count * int(np.prod(item_shape, dtype=np.int64))
    if body.size != expected:
        raise ValueError(f"{path}: {body.size} data bytes, header promises {expected}")
    return body.reshape(count, *item_shape)


def load(split: str, data_dir: Path = DEFAULT_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,28,28], labels uint8 [N]) for split 'train' or 't10k'."""
    if split not in ("train", "t10k"):
        raise ValueError(f"split {split!r} must be 'train' or 't10k'")
    images = _read_idx(data_dir / f"{split}-images-idx3-ubyte.gz", _IMAGE_MAGIC, (28, 28))
    labels = _read_idx(data_dir / f"{split}-labels-idx1-ubyte.gz", _LABEL_MAGIC, ())
    if len(images) != len(labels):
        raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")
    return images, labels


def to_input(images: np.ndarray, mean: float | None = MEAN, std: float | None = STD) -> np.ndarray:
    """uint8 [N,28,28] -> float32 NCHW, pixels/255 then (x - mean) / std when given."""
    x = images.astype(np.float32)[:, None, :, :] / 255.0
    if mean is not None and std is not None:
        x = (x - np.float32(mean)) / np.float32(std)
    return x.astype(np.float32)

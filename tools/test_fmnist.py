"""IDX reader checks on small synthetic files.

    python -m unittest tools/test_fmnist.py     (from the repository root)
"""

from __future__ import annotations

import gzip
import struct
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fmnist  # noqa: E402


def _write_split(root: Path, split: str, images: bytes, labels: bytes) -> None:
    with gzip.open(root / f"{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(images)
    with gzip.open(root / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(labels)


def _images(count: int, magic: int = 2051, body: bytes | None = None) -> bytes:
    pixels = body if body is not None else bytes(range(256)) * (count * 784 // 256) + bytes(count * 784 % 256)
    return struct.pack(">IIII", magic, count, 28, 28) + pixels


def _labels(values: list[int]) -> bytes:
    return struct.pack(">II", 2049, len(values)) + bytes(values)


class IdxReaderTest(unittest.TestCase):
    def test_reads_images_and_labels(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            _write_split(root, "t10k", _images(3), _labels([7, 0, 9]))
            images, labels = fmnist.load("t10k", root)
            self.assertEqual(images.shape, (3, 28, 28))
            self.assertEqual(labels.tolist(), [7, 0, 9])
            self.assertEqual(int(images[0, 0, 5]), 5)

    def test_rejects_wrong_magic_truncation_and_count_mismatch(self) -> None:
        cases = {
            "magic": (_images(2, magic=2049), _labels([1, 2])),
            "truncated": (_images(2, body=bytes(100)), _labels([1, 2])),
            "count": (_images(2), _labels([1, 2, 3])),
        }
        for name, (images, labels) in cases.items():
            with self.subTest(name), tempfile.TemporaryDirectory() as tmp:
                _write_split(Path(tmp), "train", images, labels)
                with self.assertRaises(ValueError):
                    fmnist.load("train", Path(tmp))

    def test_missing_file_says_how_to_get_it(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(FileNotFoundError, "dataset-fashion-mnist"):
                fmnist.load("train", Path(tmp))

    def test_normalization(self) -> None:
        x = fmnist.to_input(np.array([[[0, 255]]], dtype=np.uint8))
        self.assertEqual(x.shape, (1, 1, 1, 2))
        self.assertAlmostEqual(float(x[0, 0, 0, 0]), -fmnist.MEAN / fmnist.STD, places=5)
        self.assertAlmostEqual(float(x[0, 0, 0, 1]), (1 - fmnist.MEAN) / fmnist.STD, places=5)
        raw = fmnist.to_input(np.array([[[255]]], dtype=np.uint8), None, None)
        self.assertEqual(float(raw[0, 0, 0, 0]), 1.0)


if __name__ == "__main__":
    unittest.main()

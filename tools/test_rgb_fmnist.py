"""Checks of the RGB Fashion-MNIST definition on synthetic images (no IDX files needed).

    python -m unittest tools/test_rgb_fmnist.py     (from the repository root)
"""

from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rgb_fmnist  # noqa: E402


def _gray(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 28, 28), dtype=np.uint8)


class RgbFmnistTest(unittest.TestCase):
    def test_tint_depends_on_index_only_and_has_contrast(self) -> None:
        for i in range(200):
            bg, fg = rgb_fmnist.tint("train", i)
            self.assertGreaterEqual(abs(int(fg.sum()) - int(bg.sum())), rgb_fmnist.MIN_CONTRAST)
            np.testing.assert_array_equal(np.concatenate([bg, fg]), np.concatenate(rgb_fmnist.tint("train", i)))
        self.assertFalse(np.array_equal(np.concatenate(rgb_fmnist.tint("train", 5)),
                                        np.concatenate(rgb_fmnist.tint("t10k", 5))))

    def test_subset_equals_slice_of_whole(self) -> None:
        gray = _gray(40)
        whole = rgb_fmnist.rgb_images(gray, np.arange(40), "t10k", 48)
        idx = np.array([3, 17, 39])
        np.testing.assert_array_equal(rgb_fmnist.rgb_images(gray[idx], idx, "t10k", 48), whole[idx])

    def test_flat_image_is_its_colour(self) -> None:
        gray = np.full((2, 28, 28), 255, dtype=np.uint8)
        gray[1] = 0
        out = rgb_fmnist.rgb_images(gray, np.array([7, 7]), "train", 64)
        bg, fg = rgb_fmnist.tint("train", 7)
        np.testing.assert_array_equal(out[0], np.broadcast_to(fg, (64, 64, 3)))
        np.testing.assert_array_equal(out[1], np.broadcast_to(bg, (64, 64, 3)))

    def test_same_size_is_identity_resize(self) -> None:
        gray = _gray(3)
        num = rgb_fmnist.resize_numerators(gray, 28)
        np.testing.assert_array_equal(num, gray.astype(np.int64) * (2 * 28) ** 2)

    def test_resize_matches_half_pixel_bilinear(self) -> None:
        gray = _gray(2, seed=1)
        for size in (32, 64, 96, 224):
            exact = rgb_fmnist.resize_numerators(gray, size) / float((2 * size) ** 2)
            np.testing.assert_allclose(exact, _reference_bilinear(gray.astype(np.float64), size), atol=1e-9)

    def test_matches_torch_interpolate_when_available(self) -> None:
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            self.skipTest("torch not installed")
        gray = _gray(2, seed=2)
        for size in (64, 96):
            expected = F.interpolate(torch.from_numpy(gray.astype(np.float64))[:, None], size=(size, size),
                                     mode="bilinear", align_corners=False)[:, 0].numpy()
            exact = rgb_fmnist.resize_numerators(gray, size) / float((2 * size) ** 2)
            np.testing.assert_allclose(exact, expected, atol=1e-9)

    def test_image_folder_round_trip(self) -> None:
        gray = _gray(6)
        images = rgb_fmnist.rgb_images(gray, np.arange(6), "t10k", 32)
        labels = np.array([3, 0, 3, 9, 1, 0])
        with tempfile.TemporaryDirectory() as tmp:
            rgb_fmnist.write_image_folder(Path(tmp), images, labels, np.arange(6), "t10k")
            got, got_labels = rgb_fmnist.read_image_folder(Path(tmp))
        # Folders 0_, 1_, 3_, 9_ sort to labels 0..3 of this small set: compare by content.
        order = np.argsort(labels, kind="stable")
        np.testing.assert_array_equal(got, images[order])
        self.assertEqual(len(set(got_labels.tolist())), 4)

    def test_normalisation(self) -> None:
        x = rgb_fmnist.to_input(np.full((1, 2, 2, 3), 255, dtype=np.uint8))
        self.assertEqual(x.shape, (1, 3, 2, 2))
        self.assertAlmostEqual(float(x[0, 0, 0, 0]), (1 - 0.485) / 0.229, places=5)


def _reference_bilinear(gray: np.ndarray, size: int) -> np.ndarray:
    """Straightforward float half-pixel bilinear, for comparison."""
    def taps(n: int):
        r = np.maximum((np.arange(n) + 0.5) * 28 / n - 0.5, 0)
        i0 = np.floor(r).astype(int)
        return i0, np.minimum(i0 + 1, 27), r - i0

    y0, y1, wy = taps(size)
    x0, x1, wx = taps(size)
    rows = gray[:, y0, :] * (1 - wy)[None, :, None] + gray[:, y1, :] * wy[None, :, None]
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


if __name__ == "__main__":
    unittest.main()

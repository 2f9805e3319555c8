"""Write the small image sets committed under models/data/ (raw uint8, no header).

    python tools/make_data.py [--out models/data]

test64_images.u8   first 64 test images, 64x28x28 row-major; test64_labels.u8 their labels
calib256_images.u8 256 training images drawn without replacement by numpy's PCG64 with
                   seed 2018 (sorted by index), 256x28x28; calib256_labels.u8 their labels
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fmnist  # noqa: E402

TEST_COUNT = 64
CALIB_COUNT = 256
CALIB_SEED = 2018


def calibration_indices(train_size: int) -> np.ndarray:
    rng = np.random.default_rng(CALIB_SEED)
    return np.sort(rng.choice(train_size, size=CALIB_COUNT, replace=False))


def write(out: Path, stem: str, images: np.ndarray, labels: np.ndarray) -> None:
    (out / f"{stem}_images.u8").write_bytes(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    (out / f"{stem}_labels.u8").write_bytes(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    counts = np.bincount(labels, minlength=len(fmnist.LABELS))
    print(f"{stem}: {len(images)} images, per class {counts.tolist()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models" / "data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    test_images, test_labels = fmnist.load("t10k")
    write(args.out, "test64", test_images[:TEST_COUNT], test_labels[:TEST_COUNT])
    train_images, train_labels = fmnist.load("train")
    idx = calibration_indices(len(train_images))
    write(args.out, "calib256", train_images[idx], train_labels[idx])
    return 0


if __name__ == "__main__":
    sys.exit(main())

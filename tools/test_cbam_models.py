"""Checks that every export style computes the same function from converted weights.

    python -m unittest tools/test_cbam_models.py     (from the repository root)
"""

from __future__ import annotations

import sys
import unittest
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cbam_models as cm  # noqa: E402

BASE = cm.CbamStyle()
STORAGE_ONLY_STYLES = (
    replace(BASE, pooling="reduce"),
    replace(BASE, pooling="pool"),
    replace(BASE, mlp="conv"),
    replace(BASE, spatial_order="max_mean"),
    replace(BASE, spatial_bn=True),
    cm.CbamStyle(pooling="reduce", mlp="conv", spatial_order="max_mean", spatial_bn=True),
)


def _randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BN statistics, so a wrongly converted parameter cannot hide."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
    return model.eval()


class StyleConversionTest(unittest.TestCase):
    def test_storage_only_styles_compute_the_same_function(self) -> None:
        torch.manual_seed(1)
        x = torch.randn(2, 1, 28, 28)
        for arch in cm.ARCHITECTURES:
            base = _randomized(cm.build(arch, BASE), seed=2)
            with torch.no_grad():
                expected = base(x)
            for style in STORAGE_ONLY_STYLES:
                with self.subTest(arch=arch, style=style):
                    model = cm.build(arch, style)
                    model.load_state_dict(cm.convert_state_dict(base.state_dict(), BASE, style))
                    with torch.no_grad():
                        got = model.eval()(x)
                    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    def test_spatial_order_swap_changes_the_function_without_conversion(self) -> None:
        # Guards the test above: loading max_mean without flipping the conv must differ.
        torch.manual_seed(3)
        x = torch.randn(2, 1, 28, 28)
        base = _randomized(cm.build("fmnist_cbam", BASE), seed=4)
        swapped = cm.build("fmnist_cbam", replace(BASE, spatial_order="max_mean"))
        swapped.load_state_dict(base.state_dict())
        with torch.no_grad():
            self.assertGreater(float((swapped.eval()(x) - base(x)).abs().max()), 1e-4)

    def test_function_changing_conversions_are_refused(self) -> None:
        state = cm.build("fmnist_cbam", BASE).state_dict()
        with self.assertRaises(ValueError):
            cm.convert_state_dict(state, BASE, replace(BASE, spatial_k=3))
        with self.assertRaises(ValueError):
            cm.convert_state_dict(state, BASE, replace(BASE, mlp_bias=False))

    def test_cbam_block_counts(self) -> None:
        self.assertEqual(cm.count_cbam_blocks(cm.build("fmnist_cbam", BASE)), 3)
        self.assertEqual(cm.count_cbam_blocks(cm.build("fmnist_cbam_res", BASE)), 3)
        self.assertEqual(cm.count_cbam_blocks(cm.build("fmnist_cbam", None)), 0)

    def test_bad_style_is_rejected(self) -> None:
        with self.assertRaises(ValueError):
            cm.CbamStyle(pooling="median")
        with self.assertRaises(ValueError):
            cm.CbamStyle(spatial_k=5)


if __name__ == "__main__":
    unittest.main()

"""Export the example models and their ONNX variants, verify each against PyTorch with
onnxruntime, and write models/manifest.json.

    python tools/export.py               # trained checkpoints from tools/checkpoints/
    python tools/export.py --untrained   # seeded random weights (files exist before training)
    python tools/export.py --only fmnist_cbam_k3 --skip-eval

Every variant that shares a checkpoint loads the SAME trained weights, re-stored for its
style (cbam_models.convert_state_dict), so they all compute one function and differ only in
the ONNX operators they export to.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cbam_models as cm  # noqa: E402
import eval_onnx  # noqa: E402
import fmnist  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
BASE = cm.CbamStyle()


@dataclass(frozen=True)
class Variant:
    file: str  # relative to models/
    arch: str
    style: cm.CbamStyle | None  # None: no CBAM at all
    exporter: str = "legacy"
    opset: int = 17
    checkpoint: str = ""  # defaults to the architecture's checkpoint
    normalized: bool = True  # False: mean/std folded into the stem, no metadata
    # Legacy exporter options. By default it folds every BatchNorm into the conv before it
    # (eval mode); keep_bn exports them as BatchNormalization nodes instead.
    keep_bn: bool = False
    # The legacy exporter writes adaptive_max_pool2d(x, 1) as a MaxPool with a full-size
    # kernel; this maps it to GlobalMaxPool, as other converters do.
    global_max_pool: bool = False
    note: str = ""

    @property
    def name(self) -> str:
        return Path(self.file).stem

    @property
    def checkpoint_name(self) -> str:
        return self.checkpoint or self.arch


def _v(name: str, arch: str = "fmnist_cbam", **kw) -> Variant:
    return Variant(file=f"variants/{name}.onnx", arch=arch, **kw)


VARIANTS: tuple[Variant, ...] = (
    Variant(file="fmnist_cbam.onnx", arch="fmnist_cbam", style=BASE),
    Variant(file="fmnist_cbam_res.onnx", arch="fmnist_cbam_res", style=BASE),
    _v("fmnist_cbam_legacy_op13", style=BASE, opset=13),
    _v("fmnist_cbam_legacy_op17", style=BASE, opset=17),
    _v("fmnist_cbam_keep_bn", style=BASE, keep_bn=True,
       note="BatchNormalization nodes kept (not folded by the exporter)"),
    _v("fmnist_cbam_global_maxpool", style=BASE, global_max_pool=True,
       note="channel max pooling exported as GlobalMaxPool instead of MaxPool with a full-size kernel"),
    _v("fmnist_cbam_dynamo_op18", style=BASE, exporter="dynamo", opset=18,
       note="dynamic batch dimension 'batch'; reduce axes are inputs"),
    _v("fmnist_cbam_pool_reduce", style=replace(BASE, pooling="reduce")),
    _v("fmnist_cbam_pool_full_kernel", style=replace(BASE, pooling="pool")),
    _v("fmnist_cbam_mlp_conv", style=replace(BASE, mlp="conv")),
    _v("fmnist_cbam_mlp_linear", style=replace(BASE, mlp="linear")),
    _v("fmnist_cbam_max_mean", style=replace(BASE, spatial_order="max_mean")),
    _v("fmnist_cbam_spatial_bn", style=replace(BASE, spatial_bn=True), keep_bn=True,
       note="spatial conv without bias + BatchNorm (gain 2, mean 0.1, var 0.25) reproducing the bias"),
    _v("fmnist_cbam_mixed", style=cm.CbamStyle(pooling="reduce", mlp="conv", spatial_order="max_mean", spatial_bn=True),
       keep_bn=True, note="reduce pooling, 1x1-conv MLP, max_mean order and spatial BN together; BN nodes kept"),
    _v("fmnist_cbam_k3", style=replace(BASE, spatial_k=3), checkpoint="fmnist_cbam_k3",
       note="own parameters: fine-tuned from fmnist_cbam with a fresh 3x3 spatial conv"),
    _v("fmnist_cbam_mlp_nobias", style=replace(BASE, mlp_bias=False), checkpoint="fmnist_cbam_nobias",
       note="own parameters: fine-tuned from fmnist_cbam with the MLP biases removed"),
    _v("fmnist_plain", style=None, checkpoint="fmnist_plain",
       note="no CBAM: fmnist_cbam with the CBAM blocks removed, trained from scratch with the same recipe"),
    _v("fmnist_cbam_nonorm", style=BASE, normalized=False,
       note="input is pixels/255 only (no cbam.mean/cbam.std): a leading 1x1 Conv computes (x - mean) / std"),
    _v("fmnist_cbam_res_legacy_op13", arch="fmnist_cbam_res", style=BASE, opset=13),
    _v("fmnist_cbam_res_keep_bn", arch="fmnist_cbam_res", style=BASE, keep_bn=True,
       note="BatchNormalization nodes kept (not folded by the exporter)"),
    _v("fmnist_cbam_res_dynamo_op18", arch="fmnist_cbam_res", style=BASE, exporter="dynamo", opset=18,
       note="dynamic batch dimension 'batch'; reduce axes are inputs"),
    _v("fmnist_cbam_res_mixed", arch="fmnist_cbam_res",
       style=cm.CbamStyle(pooling="reduce", mlp="conv", spatial_order="max_mean", spatial_bn=True),
       keep_bn=True, note="reduce pooling, 1x1-conv MLP, max_mean order and spatial BN together; BN nodes kept"),
)


def load_checkpoint(name: str) -> dict | None:
    path = CHECKPOINTS / f"{name}.pt"
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _style_from_dict(d: dict | None) -> cm.CbamStyle | None:
    return None if d is None else cm.CbamStyle(**d)


def reference_model(variant: Variant, untrained: bool) -> tuple[torch.nn.Module, cm.CbamStyle | None, list[str]]:
    """The model in the style its weights were trained in, and the commands that trained
    them (empty: seeded random weights)."""
    ckpt = None if untrained else load_checkpoint(variant.checkpoint_name)
    if ckpt is None:
        torch.manual_seed(0)
        model = cm.build(variant.arch, variant.style)
        return model.eval(), variant.style, []
    style = _style_from_dict(ckpt["style"])
    model = cm.build(ckpt["arch"], style)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), style, ckpt.get("commands", [ckpt.get("command", "")])


def styled_model(variant: Variant, reference: torch.nn.Module, ref_style: cm.CbamStyle | None) -> torch.nn.Module:
    model = cm.build(variant.arch, variant.style)
    state = reference.state_dict()
    if variant.style is not None and ref_style is not None:
        state = cm.convert_state_dict(state, ref_style, variant.style)
    model.load_state_dict(state)
    if not variant.normalized:
        model = with_input_normalization(model)
    return model.eval()


def with_input_normalization(model: torch.nn.Module) -> torch.nn.Module:
    """Prefix a 1x1 conv computing (x - mean) / std, so the model takes pixels/255.

    Folding the normalization into the stem conv instead is not exact: the stem's zero
    padding would then stand for a black pixel rather than the mean, which moved logits
    by up to 2 and cost 0.8 pp of accuracy on this model.
    """
    normalize = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        normalize.weight.fill_(1.0 / fmnist.STD)
        normalize.bias.fill_(-fmnist.MEAN / fmnist.STD)
    return torch.nn.Sequential(normalize, model)


def _global_max_pool(g, x, output_size):
    # Only CBAM's channel pooling uses adaptive max pooling, always to 1x1; no indices.
    return g.op("GlobalMaxPool", x), None


def export_onnx(model: torch.nn.Module, variant: Variant, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if variant.exporter == "legacy":
        mode = torch.onnx.TrainingMode.PRESERVE if variant.keep_bn else torch.onnx.TrainingMode.EVAL
        if variant.global_max_pool:
            torch.onnx.register_custom_op_symbolic("aten::adaptive_max_pool2d", _global_max_pool, 9)
        try:
            torch.onnx.export(
                model, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False, opset_version=variant.opset,
                input_names=["input"], output_names=["logits"], training=mode,
            )
        finally:
            if variant.global_max_pool:
                torch.onnx.unregister_custom_op_symbolic("aten::adaptive_max_pool2d", 9)
    else:
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(
            model, (torch.zeros(2, 1, 28, 28),), str(path), dynamo=True, opset_version=variant.opset,
            input_names=["input"], output_names=["logits"], dynamic_shapes={"x": {0: batch}},
            external_data=False,
        )


def add_metadata(path: Path, variant: Variant) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    props = {"cbam.labels": ",".join(fmnist.LABELS)}
    if variant.normalized:
        props["cbam.mean"] = f"{fmnist.MEAN}"
        props["cbam.std"] = f"{fmnist.STD}"
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = f"cbam-edge tools/export.py ({model.producer_name} {model.producer_version})".strip()
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path), save_as_external_data=False)


def max_abs_diff(path: Path, reference: torch.nn.Module, variant: Variant, images: np.ndarray) -> float:
    """ORT output of the exported variant vs the reference-style PyTorch model."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    normalized = fmnist.to_input(images)
    ort_input = normalized if variant.normalized else fmnist.to_input(images, None, None)
    with torch.no_grad():
        expected = reference(torch.from_numpy(normalized)).numpy()
    if variant.exporter == "legacy":
        got = np.concatenate([session.run(None, {name: ort_input[i : i + 1]})[0] for i in range(len(images))])
    else:
        got = session.run(None, {name: ort_input})[0]
    return float(np.max(np.abs(got - expected)))


def export_variant(variant: Variant, untrained: bool, images: np.ndarray, evaluate: bool, eval_set) -> dict:
    reference, ref_style, commands = reference_model(variant, untrained)
    trained = bool(commands)
    model = styled_model(variant, reference, ref_style)
    path = MODELS / variant.file
    export_onnx(model, variant, path)
    add_metadata(path, variant)
    diff = max_abs_diff(path, reference, variant, images)
    onnx_model = onnx.load(str(path))
    entry = {
        "file": variant.file,
        "arch": variant.arch,
        "cbam_blocks": cm.count_cbam_blocks(model),
        "residual": variant.arch == "fmnist_cbam_res",
        "exporter": variant.exporter,
        "opset": variant.opset,
        "style": None if variant.style is None else variant.style.as_dict(),
        "input": "(pixels/255 - cbam.mean) / cbam.std" if variant.normalized else "pixels/255",
        "dynamic_batch": variant.exporter == "dynamo",
        "bn_nodes": variant.keep_bn,
        "global_max_pool": variant.global_max_pool,
        "float_accuracy": round(eval_onnx.accuracy(path, *eval_set), 4) if evaluate else None,
        "trained": trained,
        "weights": variant.checkpoint_name if trained else "untrained (seed 0)",
        "trained_with": commands,
        "max_abs_diff_vs_torch": float(f"{diff:.3g}"),
        "macs": eval_onnx.count_macs(onnx_model),
        "params": eval_onnx.count_params(onnx_model),
        "bytes": path.stat().st_size,
    }
    if variant.note:
        entry["note"] = variant.note
    print(f"{variant.file}: trained={trained} max|ort-torch|={diff:.3g} acc={entry['float_accuracy']} "
          f"macs={entry['macs']} params={entry['params']}", flush=True)
    return entry


def write_manifest(entries: list[dict]) -> None:
    path = MODELS / "manifest.json"
    old = json.loads(path.read_text()) if path.exists() else []
    by_file = {e["file"]: e for e in old}
    by_file.update({e["file"]: e for e in entries})
    order = [v.file for v in VARIANTS]
    # Entries written by other scripts (tools/train_rgb.py) keep their place after ours.
    merged = [by_file[f] for f in order if f in by_file] + [e for f, e in by_file.items() if f not in order]
    path.write_text(json.dumps(merged, indent=2) + "\n")
    listed = {MODELS / e["file"] for e in merged}
    unlisted = sorted(
        p.relative_to(MODELS) for p in MODELS.rglob("*.onnx") if p not in listed and p.parent.name != "zoo"
    )
    if unlisted:
        # Other tools may write ONNX files here (pruned or QDQ models); they are not ours to list.
        print(f"note: ONNX files under models/ not made by export.py, not in the manifest: {unlisted}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--untrained", action="store_true", help="ignore checkpoints, export seeded random weights")
    parser.add_argument("--only", nargs="*", default=None, help="variant names (file stems) to export")
    parser.add_argument("--skip-eval", action="store_true", help="do not measure test accuracy (manifest gets null)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    known = {v.name for v in VARIANTS}
    unknown = set(args.only or []) - known
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {sorted(known)}")
    selected = [v for v in VARIANTS if args.only is None or v.name in args.only]
    test_images, test_labels = fmnist.load("t10k")
    entries = [
        export_variant(v, args.untrained, test_images[:8], not args.skip_eval, (test_images, test_labels))
        for v in selected
    ]
    write_manifest(entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())

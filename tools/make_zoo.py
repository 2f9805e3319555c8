"""The export-variant zoo: small networks of the families users bring, exported the ways
PyTorch exports them, written to models/zoo/ with a README table of what each contains.

    python tools/make_zoo.py                 # every file and models/zoo/README.md
    python tools/make_zoo.py --only vgg_spatial same_upper   # some families; zoo.json keeps the rest
    python tools/make_zoo.py --readme-only                   # README.md from zoo.json

Weights are random (torch seed 0 per model); BatchNorm statistics are then measured on 64
RGB Fashion-MNIST training images (tools/rgb_fmnist.py) at the model's input size, so the
activations have the ranges of real data. The files exist for op and pattern coverage, not
accuracy. models/zoo/zoo.json lists every file with what the README table shows. Every
export is checked against PyTorch with onnxruntime; an export that
fails is listed in the README with its error instead of a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cbam_models as cm  # noqa: E402
import eval_onnx  # noqa: E402
import rgb_fmnist  # noqa: E402
import zoo_blocks as zb  # noqa: E402

ZOO = Path(__file__).resolve().parent.parent / "models" / "zoo"
BN_IMAGES = 64
SAME_UPPER_FILE = "same_upper_se_hardsigmoid_helper_op13.onnx"


def _timm(name: str, attn: str | None, channels=(8, 16, 24, 32), stem_width: int = 8) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        kwargs = dict(channels=channels, stem_width=stem_width)
        if attn is not None:
            kwargs["block_args"] = dict(attn_layer=attn)
        return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)

    return build


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[], nn.Module]
    size: int
    arch: str
    attention: str
    exports: tuple[tuple[str, int], ...] = (("legacy", 17), ("dynamo", 18))
    # Rewrites the exported graph (Identity/Dropout left in, as other converters leave them).
    post: Callable[[onnx.ModelProto], None] | None = None


def _insert_after(model: onnx.ModelProto, index: int, op: str, **attrs) -> None:
    """Put a one-input node of type `op` behind the first output of node `index`."""
    node = model.graph.node[index]
    old = node.output[0]
    new = f"{old}_before_{op.lower()}"
    node.output[0] = new
    model.graph.node.insert(index + 1, helper.make_node(op, [new], [old], name=f"left_in_{op.lower()}_{index}", **attrs))


def identity_and_dropout(model: onnx.ModelProto) -> None:
    """An Identity after the first node and a Dropout (inference: a copy) before the last Gemm."""
    gemm = max(i for i, n in enumerate(model.graph.node) if n.op_type == "Gemm")
    feeding = next(i for i, n in enumerate(model.graph.node) if n.output[0] == model.graph.node[gemm].input[0])
    _insert_after(model, feeding, "Dropout")
    _insert_after(model, 0, "Identity")


FAMILIES: tuple[Family, ...] = (
    Family("resnet_basic_paper_cbam", lambda: zb.ResNetBasicPaper(cm.CbamStyle()), 32,
           "ResNet basic blocks, stride-2 1x1 projection shortcut", "CBAM as in the paper (Linear MLP, [mean; max], 7x7 conv + bias)",
           (("legacy", 13), ("legacy", 18), ("dynamo", 18))),
    Family("resnet_basic_paper_cbam_reduce", lambda: zb.ResNetBasicPaper(cm.CbamStyle(pooling="reduce", mlp="conv")), 48,
           "ResNet basic blocks, stride-2 1x1 projection shortcut", "CBAM, paper form, mean/amax reductions and 1x1-conv MLP",
           (("legacy", 13), ("legacy", 18))),
    Family("resnet_bottleneck_official_cbam", zb.ResNetBottleneckOfficial, 48,
           "ResNet bottleneck blocks (x4), stride-2 stem, stride-2 1x1 projection", "CBAM as in the official code ([max; mean], Linear MLP + bias, 7x7 conv + BN, view/expand_as)"),
    Family("timm_resnet10t_cbam", _timm("resnet10t", "cbam"), 64,
           "timm resnet10t (deep tiered stem, avg-pool downsample), channels 8-32", "timm attn_layer='cbam'"),
    Family("timm_resnet10t_cbam_224", _timm("resnet10t", "cbam"), 224,
           "timm resnet10t, channels 8-32, 224x224 input", "timm attn_layer='cbam'", (("legacy", 17),)),
    Family("timm_resnet14t_lcbam", _timm("resnet14t", "lcbam"), 64,
           "timm resnet14t (deep stem, bottleneck blocks), channels 8-32 (x4)", "timm attn_layer='lcbam' (light CBAM)"),
    Family("timm_resnet10t_se", _timm("resnet10t", "se"), 32,
           "timm resnet10t, channels 8-32", "timm attn_layer='se' (SE, sigmoid gate)", (("legacy", 13), ("dynamo", 18))),
    Family("timm_resnet10t_ese", _timm("resnet10t", "ese"), 32,
           "timm resnet10t, channels 8-32", "timm attn_layer='ese' (effective SE, hard-sigmoid gate)"),
    Family("mbv2_relu6", lambda: zb.MobileNetV2Small(None), 64,
           "MobileNetV2 inverted residuals (ReLU6), width 8-32", "none", (("legacy", 13), ("dynamo", 18))),
    Family("mbv2_tv_se_sigmoid", lambda: zb.MobileNetV2Small("sigmoid"), 64,
           "MobileNetV2 inverted residuals (ReLU6)", "torchvision SqueezeExcitation, sigmoid gate"),
    Family("mbv3_tv_se_hardsigmoid", lambda: zb.MobileNetV2Small("hardsigmoid"), 64,
           "MobileNetV3-style inverted residuals (Hardswish)", "torchvision SqueezeExcitation, Hardsigmoid gate"),
    Family("resnet8_cifar", zb.ResNet8, 32,
           "MLPerf Tiny ResNet-8 (16-32-64, 1x1 conv shortcuts, softmax output)", "none", (("legacy", 13), ("dynamo", 18))),
    Family("resnet8_cifar_identity_dropout", zb.ResNet8, 32,
           "ResNet-8 with an Identity and a Dropout node left in the graph", "none", (("legacy", 13),),
           post=identity_and_dropout),
    Family("resnet8_cifar_spatial", lambda: zb.ResNet8(attention=True), 32,
           "ResNet-8 (softmax output)", "spatial attention only (7x7 conv + bias)", (("legacy", 17), ("dynamo", 18))),
    Family("vgg_spatial", zb.VggSpatial, 32,
           "VGG-style plain stack: dilated conv, ZeroPad2d + stride-2 conv, max pool, reshape flatten", "spatial attention only"),
)


def calibrate_batchnorm(model: nn.Module, size: int) -> None:
    """Replace the fresh BN statistics (mean 0, var 1) by those of real images."""
    indices = np.arange(BN_IMAGES)
    images, _, _ = rgb_fmnist.load("train", size, indices)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for start in range(0, BN_IMAGES, 16):
            model(torch.from_numpy(rgb_fmnist.to_input(images[start : start + 16])))
    model.eval()


def export(model: nn.Module, size: int, exporter: str, opset: int, path: Path) -> None:
    x = torch.from_numpy(rgb_fmnist.to_input(rgb_fmnist.load("t10k", size, np.arange(1))[0]))
    if exporter == "legacy":
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"])
    else:
        torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset,
                          input_names=["input"], output_names=["output"], external_data=False)


def check(path: Path, model: nn.Module, size: int) -> float:
    images = rgb_fmnist.load("t10k", size, np.arange(4))[0]
    x = rgb_fmnist.to_input(images)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    return float(np.max(np.abs(got - expected)))


def op_list(model: onnx.ModelProto) -> str:
    ops = sorted({n.op_type for n in model.graph.node})
    return " ".join(ops)


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(array, dtype=np.float32, order="C"), name)  # keeps 0-d scalars


def same_upper_model(rng: np.random.Generator) -> onnx.ModelProto:
    """Written with onnx.helper (PyTorch never emits auto_pad): Conv stride 2 and MaxPool with
    auto_pad=SAME_UPPER on an even-sized input (so the padding is asymmetric), an SE gate with
    HardSigmoid and a Mul by a constant, Identity and Dropout nodes, Flatten, Gemm, Softmax."""
    c1, c2, hidden = 16, 24, 8

    def w(*shape: int, scale: float | None = None) -> np.ndarray:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return rng.normal(0.0, scale or np.sqrt(2.0 / fan_in), shape)

    inits = [
        _init("w1", w(c1, 3, 3, 3)), _init("b1", rng.normal(0, 0.1, c1)),
        _init("w2", w(c2, c1, 3, 3)), _init("b2", rng.normal(0, 0.1, c2)),
        _init("se_w1", w(hidden, c2, 1, 1)), _init("se_b1", np.zeros(hidden)),
        _init("se_w2", w(c2, hidden, 1, 1)), _init("se_b2", np.zeros(c2)),
        _init("half", np.array(0.5)), _init("drop_ratio", np.array(0.5)),
        _init("fc_w", w(10, c2, scale=0.3)), _init("fc_b", np.zeros(10)),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], strides=[2, 2], auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Identity", ["r1"], ["r1_id"]),
        helper.make_node("MaxPool", ["r1_id"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["se_pool"]),
        helper.make_node("Conv", ["se_pool", "se_w1", "se_b1"], ["se_h"]),
        helper.make_node("Relu", ["se_h"], ["se_hr"]),
        helper.make_node("Conv", ["se_hr", "se_w2", "se_b2"], ["se_logit"]),
        helper.make_node("HardSigmoid", ["se_logit"], ["se_gate"], alpha=1.0 / 6.0, beta=0.5),
        helper.make_node("Mul", ["r2", "se_gate"], ["scaled"]),
        helper.make_node("Mul", ["scaled", "half"], ["halved"]),
        helper.make_node("GlobalAveragePool", ["halved"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Dropout", ["flat", "drop_ratio"], ["dropped"]),
        helper.make_node("Gemm", ["dropped", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["output"], axis=1),
    ]
    size = 32
    graph = helper.make_graph(
        nodes, "same_upper", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="cbam-edge tools/make_zoo.py (onnx.helper)")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def make_family(family: Family) -> list[dict]:
    rows = []
    for exporter, opset in family.exports:
        name = f"{family.name}_{exporter}_op{opset}"
        path = ZOO / f"{name}.onnx"
        torch.manual_seed(0)
        model = family.build()
        calibrate_batchnorm(model, family.size)
        row = {"file": path.name, "arch": family.arch, "attention": family.attention,
               "exporter": f"{exporter} (opset {opset})", "size": family.size}
        try:
            export(model, family.size, exporter, opset, path)
            onnx_model = onnx.load(str(path))
            if family.post is not None:
                family.post(onnx_model)
                onnx.checker.check_model(onnx_model, full_check=True)
                onnx.save(onnx_model, str(path))
            diff = check(path, model, family.size)
            row.update(ops=op_list(onnx_model), params=eval_onnx.count_params(onnx_model),
                       macs=eval_onnx.count_macs(onnx_model), bytes=path.stat().st_size, diff=diff)
        except Exception as err:  # an exporter that cannot export this family is a finding
            path.unlink(missing_ok=True)
            message = " ".join(str(err).split())[:300]
            traceback.print_exc()
            row.update(error=f"{type(err).__name__}: {message}")
        print(row, flush=True)
        rows.append(row)
    return rows


def make_same_upper() -> dict:
    model = same_upper_model(np.random.default_rng(0))
    path = ZOO / SAME_UPPER_FILE
    onnx.save(model, str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = rgb_fmnist.to_input(rgb_fmnist.load("t10k", 32, np.arange(1))[0])
    sess.run(None, {"input": x})
    return {"file": path.name, "arch": "Conv and MaxPool with auto_pad=SAME_UPPER, stride 2, even input",
            "attention": "SE-style gate with HardSigmoid (1x1 convs), Mul by a constant", "exporter": "onnx.helper (opset 13)",
            "size": 32, "ops": op_list(model), "params": eval_onnx.count_params(model),
            "macs": eval_onnx.count_macs(model), "bytes": path.stat().st_size, "diff": None}


# Forms worth knowing that the op lists do not show (read from the files).
NOTES = [
    "",
    "Forms the op lists do not show:",
    "",
    "- The dynamo exports here have a static batch of 1 (no `dynamic_shapes`); in some, a pooled",
    "  tensor goes through `Reshape` to `[-1]` and a `Gather` (a decomposed `as_strided`; e.g. the",
    "  adaptive max pool of `resnet_basic_paper_cbam_dynamo_op18`).",
    "- `ZeroPad2d((0,1,0,1))` before a stride-2 conv: the legacy exporter writes a `Pad` whose pads",
    "  are computed at run time (`ConstantOfShape`, `Concat`, `Reshape`, `Slice`, `Transpose`,",
    "  `Cast`); the dynamo exporter folds it into the Conv as asymmetric `pads=[0,0,1,1]`.",
    "- The official CBAM code's `view(N, -1)` and `expand_as` export (legacy) as chains of",
    "  `Shape`, `Constant`, `Unsqueeze`, `Concat`, `Reshape` and `Expand`.",
    "- torchvision's `SqueezeExcitation` multiplies `scale * input`: the gate is the first input of",
    "  the `Mul`. timm's light CBAM (`lcbam`) multiplies feature maps by the constant 0.5.",
    "- `same_upper_...` pads asymmetrically too: `auto_pad=SAME_UPPER` with stride 2 on an even",
    "  input pads one pixel at the bottom and right only.",
]


def write_readme(rows: list[dict]) -> None:
    lines = [
        "# Export-variant zoo",
        "",
        "Small networks of the families users bring, for op and pattern coverage (not accuracy):",
        "random weights (torch seed 0), BatchNorm statistics measured on 64 RGB Fashion-MNIST",
        "training images. Input `input`: float32 `[1,3,S,S]`, ImageNet-normalised RGB",
        "(`tools/rgb_fmnist.py`); output `output`: `[1,10]`. No metadata. Made by",
        "`python tools/make_zoo.py` (which writes this file); `STATUS.md` says what `cbam` does",
        "with each (`python tools/zoo_status.py`).",
        "",
        "`max |ort-torch|`: largest output difference between onnxruntime on the file and PyTorch,",
        "4 test images. MACs and parameters counted from the ONNX graph (`tools/eval_onnx.py`).",
        "",
        "| file | architecture | attention | exporter | input | ops | params | MACs | bytes | max \\|ort-torch\\| |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| (not written) `{r['file']}` | {r['arch']} | {r['attention']} | {r['exporter']} | "
                         f"3x{r['size']}x{r['size']} | export failed: `{r['error']}` | | | | |")
            continue
        diff = "n/a" if r["diff"] is None else f"{r['diff']:.2g}"
        lines.append(f"| `{r['file']}` | {r['arch']} | {r['attention']} | {r['exporter']} | 3x{r['size']}x{r['size']} | "
                     f"{r['ops']} | {r['params']:,} | {r['macs']:,} | {r['bytes']:,} | {diff} |")
    (ZOO / "README.md").write_text("\n".join(lines + NOTES) + "\n")


def merge_rows(rows: list[dict]) -> list[dict]:
    """Rows of this run replace those of the same file in models/zoo/zoo.json; the result is in
    FAMILIES order and written back."""
    path = ZOO / "zoo.json"
    by_file = {r["file"]: r for r in (json.loads(path.read_text()) if path.exists() else [])}
    by_file.update({r["file"]: r for r in rows})
    order = [f"{f.name}_{e}_op{o}.onnx" for f in FAMILIES for e, o in f.exports] + [SAME_UPPER_FILE]
    merged = [by_file[f] for f in order if f in by_file]
    path.write_text(json.dumps(merged, indent=1) + "\n")
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="family names (or 'same_upper') to (re)make")
    parser.add_argument("--readme-only", action="store_true", help="rewrite README.md from zoo.json, export nothing")
    args = parser.parse_args()
    if args.readme_only:
        write_readme(merge_rows([]))
        return 0
    torch.set_num_threads(1)
    ZOO.mkdir(parents=True, exist_ok=True)
    known = {f.name for f in FAMILIES} | {"same_upper"}
    if args.only and set(args.only) - known:
        parser.error(f"unknown families {sorted(set(args.only) - known)}; known: {sorted(known)}")
    rows: list[dict] = []
    for family in FAMILIES:
        if args.only is None or family.name in args.only:
            rows += make_family(family)
    if args.only is None or "same_upper" in args.only:
        rows.append(make_same_upper())
    write_readme(merge_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

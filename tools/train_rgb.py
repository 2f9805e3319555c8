"""Train an RGB example model on RGB Fashion-MNIST (tools/rgb_fmnist.py), export it to ONNX
without any metadata of ours, check the export against PyTorch with onnxruntime, measure
float accuracy on all 10,000 test images and update models/manifest.json.

    python tools/train_rgb.py --model rgb_resnet_cbam64 --epochs 3
    python tools/train_rgb.py --model rgb_mbv2_cbam96 --epochs 3
    python tools/train_rgb.py --model rgb_resnet_cbam64 --resume --epochs 1 --lr 1e-3   # continue
    python tools/train_rgb.py --model rgb_mbv2_cbam96 --export-only          # from the checkpoint
    python tools/train_rgb.py --model rgb_mbv2_cbam96 --untrained --skip-eval # seeded random weights

Input: float32 NCHW `(pixel/255 - mean) / std` with the ImageNet mean/std, as users' models
take it; the ONNX file does not say so (no metadata_props). Augmentation: random horizontal
flip per image and one random shift of up to size/14 pixels per batch (edge pixels repeated).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_onnx  # noqa: E402
import export  # noqa: E402
import rgb_fmnist  # noqa: E402
import rgb_models  # noqa: E402
import train as train_gray  # noqa: E402

MODELS = export.MODELS
CHECKPOINTS = export.CHECKPOINTS


def batch_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb_fmnist.to_input(images))


def augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    flip = torch.from_numpy(rng.random(len(x)) < 0.5)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    shift = max(1, x.shape[-1] // 14)
    dy, dx = (int(v) for v in rng.integers(-shift, shift + 1, size=2))
    padded = F.pad(x, (shift,) * 4, mode="replicate")
    h, w = x.shape[2], x.shape[3]
    return padded[:, :, shift + dy : shift + dy + h, shift + dx : shift + dx + w]


def train(model, train_set, epochs: int, lr: float, batch: int, seed: int) -> None:
    images, labels = train_set
    targets = torch.from_numpy(labels.astype(np.int64))
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(images) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(images))
        started, total_loss = time.time(), 0.0
        for step, start in enumerate(range(0, len(order), batch)):
            idx = np.sort(order[start : start + batch])
            loss = F.cross_entropy(model(augment(batch_input(images[idx]), rng)), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
            if step % 25 == 0:
                print(f"  step {step}: loss {float(loss.detach()):.4f} ({time.time() - started:.0f}s)", flush=True)
        print(f"epoch {epoch + 1}/{epochs}: loss {total_loss / len(order):.4f} ({time.time() - started:.0f}s)",
              flush=True)


def export_onnx(model: torch.nn.Module, exporter: str, opset: int, size: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if exporter == "legacy":
        torch.onnx.export(
            model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["logits"],
        )
    else:
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(
            model, (torch.zeros(2, 3, size, size),), str(path), dynamo=True, opset_version=opset,
            input_names=["input"], output_names=["logits"], dynamic_shapes={"x": {0: batch}},
            external_data=False,
        )
    onnx_model = onnx.load(str(path))
    if onnx_model.metadata_props:
        raise RuntimeError(f"{path}: the exporter wrote metadata_props {onnx_model.metadata_props}")
    onnx.checker.check_model(onnx_model, full_check=True)


def ort_logits(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) else 250
    return np.concatenate([sess.run(None, {name: x[i : i + step]})[0] for i in range(0, len(x), step)])


def ort_accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    sess = eval_onnx.session(path)
    correct = 0
    for start in range(0, len(images), 1000):
        logits = ort_logits(sess, rgb_fmnist.to_input(images[start : start + 1000]))
        correct += int((logits.argmax(1) == labels[start : start + 1000]).sum())
    return correct / len(images)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(rgb_models.MODELS), required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-count", type=int, default=None,
                        help="train on this many training images (a fixed seeded subset; default all 60,000)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a shared 2-core CPU)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--export-only", action="store_true", help="export tools/checkpoints/MODEL.pt, no training")
    mode.add_argument("--untrained", action="store_true", help="export seeded random weights, no training")
    mode.add_argument("--resume", action="store_true", help="continue training from tools/checkpoints/MODEL.pt")
    parser.add_argument("--skip-eval", action="store_true", help="do not measure test accuracy (manifest gets null)")
    args = parser.parse_args()
    train_gray.check_and_seed(parser, args)
    build, size, exporter, opset = rgb_models.MODELS[args.model]
    model = build()
    ckpt_path = CHECKPOINTS / f"{args.model}.pt"
    commands: list[str] = []
    train_seconds = None
    if args.export_only:
        if not ckpt_path.exists():
            parser.error(f"--export-only needs {ckpt_path}: train first")
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["state_dict"])
        commands, train_seconds = ckpt["commands"], ckpt.get("train_seconds")
    elif not args.untrained:
        if args.resume:
            if not ckpt_path.exists():
                parser.error(f"--resume needs {ckpt_path}: train first")
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            model.load_state_dict(ckpt["state_dict"])
            commands, train_seconds = ckpt["commands"], ckpt.get("train_seconds") or 0
        started = time.time()
        subset = None
        if args.train_count is not None:
            subset = np.sort(np.random.default_rng(args.seed).permutation(60000)[: args.train_count])
        train_images, train_labels, _ = rgb_fmnist.load("train", size, subset)
        print(f"made {len(train_images)} training images at {size}x{size} in {time.time() - started:.0f}s", flush=True)
        started = time.time()
        train(model, (train_images, train_labels), args.epochs, args.lr, args.batch, args.seed)
        train_seconds = (train_seconds or 0) + round(time.time() - started)
        del train_images
        commands = [*commands, shlex.join(["python", "tools/train_rgb.py", *sys.argv[1:]])]
        CHECKPOINTS.mkdir(parents=True, exist_ok=True)
        torch.save({"model": args.model, "state_dict": model.state_dict(), "epochs": args.epochs,
                    "commands": commands, "train_seconds": train_seconds}, ckpt_path)
        print(f"saved {ckpt_path} after {train_seconds}s of training", flush=True)
    model.eval()

    path = MODELS / f"{args.model}.onnx"
    export_onnx(model, exporter, opset, size, path)
    test_images, test_labels, _ = rgb_fmnist.load("t10k", size)
    probe = rgb_fmnist.to_input(test_images[:8])
    with torch.no_grad():
        expected = model(torch.from_numpy(probe)).numpy()
    diff = float(np.max(np.abs(ort_logits(eval_onnx.session(path), probe) - expected)))
    acc = None if args.skip_eval else ort_accuracy(path, test_images, test_labels)
    onnx_model = onnx.load(str(path))
    entry = {
        "file": path.name,
        "arch": args.model,
        "input_shape": [1, 3, size, size],
        "input": "(pixels/255 - mean) / std, ImageNet mean 0.485,0.456,0.406 std 0.229,0.224,0.225 (not in the file)",
        "data": "RGB Fashion-MNIST, tools/rgb_fmnist.py",
        "exporter": exporter,
        "opset": opset,
        "dynamic_batch": exporter == "dynamo",
        "metadata": False,
        "float_accuracy": None if acc is None else round(acc, 4),
        "trained": bool(commands),
        "trained_with": commands,
        "train_seconds": train_seconds,
        "max_abs_diff_vs_torch": float(f"{diff:.3g}"),
        "macs": eval_onnx.count_macs(onnx_model),
        "params": eval_onnx.count_params(onnx_model),
        "torch_params": sum(p.numel() for p in model.parameters()),
        "bytes": path.stat().st_size,
    }
    print(entry, flush=True)
    export.write_manifest([entry])
    return 0


if __name__ == "__main__":
    sys.exit(main())

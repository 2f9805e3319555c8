"""Train an example model on Fashion-MNIST (CPU, deterministic), save its checkpoint under
tools/checkpoints/ (not committed) and export every ONNX variant that uses it.

    python tools/train.py --arch fmnist_cbam --epochs 6
    python tools/train.py --arch fmnist_cbam_res --epochs 4
    python tools/train.py --variant k3 --epochs 1        # fine-tuned from checkpoints/fmnist_cbam.pt
    python tools/train.py --variant nobias --epochs 1
    python tools/train.py --variant plain --from-scratch --epochs 6

Input: float32 NCHW, (pixels/255 - 0.2860) / 0.3530. Augmentation: random horizontal flip
per image and one random shift of up to 2 pixels per batch.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cbam_models as cm  # noqa: E402
import export  # noqa: E402
import fmnist  # noqa: E402

# name -> (architecture, style) of the variants with their own weights
VARIANTS = {
    "k3": ("fmnist_cbam", replace(export.BASE, spatial_k=3)),
    "nobias": ("fmnist_cbam", replace(export.BASE, mlp_bias=False)),
    "plain": ("fmnist_cbam", None),
}

_MAX_SHIFT = 2


def augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    flip = torch.from_numpy(rng.random(len(x)) < 0.5)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dy, dx = (int(v) for v in rng.integers(-_MAX_SHIFT, _MAX_SHIFT + 1, size=2))
    # Pad with the normalized value of a black pixel, i.e. the background.
    background = (0.0 - fmnist.MEAN) / fmnist.STD
    padded = F.pad(x, (_MAX_SHIFT,) * 4, value=background)
    h, w = x.shape[2], x.shape[3]
    return padded[:, :, _MAX_SHIFT + dy : _MAX_SHIFT + dy + h, _MAX_SHIFT + dx : _MAX_SHIFT + dx + w]


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(x), 1000):
        correct += int((model(x[start : start + 1000]).argmax(1) == y[start : start + 1000]).sum())
    return correct / len(x)


def init_from(model: torch.nn.Module, checkpoint: dict) -> None:
    """Load every base tensor the variant has with the same shape; the rest stay fresh."""
    if checkpoint["style"] != export.BASE.as_dict():
        raise ValueError(f"fine-tunes start from a base-style checkpoint, got style {checkpoint['style']}")
    own = model.state_dict()
    kept = {k: v for k, v in checkpoint["state_dict"].items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)
    fresh = sorted(set(own) - set(kept))
    dropped = sorted(set(checkpoint["state_dict"]) - set(kept))
    print(f"initialised from base: fresh {fresh}, dropped {dropped}")


def check_and_seed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject non-positive counts, then the one seeded, deterministic torch set-up of every
    training script."""
    if args.epochs < 1 or args.batch < 1:
        parser.error("--epochs and --batch must be positive")
    torch.set_num_threads(min(args.threads, 2))
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def train(model, data, epochs: int, lr: float, batch: int, seed: int) -> float:
    (x_train, y_train), (x_test, y_test) = data
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(x_train) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x_train)))
        started, total_loss = time.time(), 0.0
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            loss = F.cross_entropy(model(augment(x_train[idx], rng)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
        acc = evaluate(model, x_test, y_test)
        print(f"epoch {epoch + 1}/{epochs}: loss {total_loss / len(order):.4f} "
              f"test acc {acc:.4f} ({time.time() - started:.0f}s)", flush=True)
    return acc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--arch", choices=sorted(cm.ARCHITECTURES))
    target.add_argument("--variant", choices=sorted(VARIANTS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-3, 1e-3 when fine-tuning or resuming)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (max 2); 1 is fastest on a busy shared CPU")
    parser.add_argument("--from-scratch", action="store_true",
                        help="with --variant: train from a fresh init instead of fine-tuning the base weights")
    parser.add_argument("--resume", action="store_true",
                        help="with --arch: continue from tools/checkpoints/ARCH.pt instead of a fresh init")
    parser.add_argument("--no-export", action="store_true", help="only save the checkpoint")
    args = parser.parse_args()
    check_and_seed(parser, args)

    history: list[str] = []
    if args.arch:
        name, arch, style = args.arch, args.arch, export.BASE
        model = cm.build(arch, style)
        lr = args.lr or 3e-3
        if args.resume:
            previous = export.load_checkpoint(arch)
            if previous is None:
                parser.error(f"--resume needs {export.CHECKPOINTS / (arch + '.pt')}")
            model.load_state_dict(previous["state_dict"])
            lr = args.lr or 1e-3
            history = previous.get("commands", [previous.get("command", "")])
    else:
        name = f"fmnist_cbam_{args.variant}" if args.variant != "plain" else "fmnist_plain"
        arch, style = VARIANTS[args.variant]
        model = cm.build(arch, style)
        lr = args.lr or 3e-3
        if not args.from_scratch:
            base = export.load_checkpoint(arch)
            if base is None:
                parser.error(f"--variant needs {export.CHECKPOINTS / (arch + '.pt')}: train --arch {arch} first")
            init_from(model, base)
            lr = args.lr or 1e-3

    train_images, train_labels = fmnist.load("train")
    test_images, test_labels = fmnist.load("t10k")
    data = (
        (torch.from_numpy(fmnist.to_input(train_images)), torch.from_numpy(train_labels.astype(np.int64))),
        (torch.from_numpy(fmnist.to_input(test_images)), torch.from_numpy(test_labels.astype(np.int64))),
    )
    acc = train(model, data, args.epochs, lr, args.batch, args.seed)

    export.CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    path = export.CHECKPOINTS / f"{name}.pt"
    torch.save({
        "arch": arch,
        "style": None if style is None else style.as_dict(),
        "state_dict": model.state_dict(),
        "test_accuracy": acc,
        "epochs": args.epochs,
        "commands": [*history, shlex.join(["python", "tools/train.py", *sys.argv[1:]])],
    }, path)
    print(f"saved {path} (float test accuracy {acc:.4f} on {len(test_images)} images)")

    if not args.no_export:
        names = [v.name for v in export.VARIANTS if v.checkpoint_name == name]
        sys.argv = ["export.py", "--only", *names]
        return export.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())

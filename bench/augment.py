"""Augmentation steps, batched on the device against the per-sample torchvision path, and torchvision's decode,
resize and centre crop against the hand-written (or PIL) ones they replaced: ratios measured side by side.

    python bench/augment.py            # ~1.5 minutes on 2 CPU cores; writes its section of bench/RESULTS.md
    python bench/augment.py --smoke    # tiny sizes, prints only

Each comparison runs its sides alternately, `--repeats` times, and keeps each side's best time.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

HEADING = "## Augmentation steps and image decoding (bench/augment.py)"
# Each step alone after the default crop-free pipeline (normalisation), as augmentation keys.
STEPS = {
    "flip + crop (pad 4)": ["augmentation=flip_crop"],
    "affine (15 deg, 0.1 shift, 0.9-1.1 zoom)": ["augmentation.affine.degrees=15", "augmentation.affine.translate=0.1",
                                                 "augmentation.affine.scale=[0.9,1.1]"],
    "colour jitter (0.4, 0.4, 0.4, 0.1)": ["augmentation.color.brightness=0.4", "augmentation.color.contrast=0.4",
                                           "augmentation.color.saturation=0.4", "augmentation.color.hue=0.1"],
    "TrivialAugment": ["augmentation.policy.name=trivial"],
    "RandAugment (2 ops, magnitude 9)": ["augmentation.policy.name=randaugment"],
    "random erasing (p 0.5)": ["augmentation.erasing.p=0.5"],
    "mixup (alpha 0.2)": ["augmentation.mixup.alpha=0.2"],
    "cutmix (alpha 1.0)": ["augmentation.cutmix.alpha=1.0"],
}


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def rate(batches, seconds: float, device: torch.device) -> float:
    """Samples/s through `batches()` (one pass over the data, repeated) for about `seconds`."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for x, _ in batches():
            count += len(x)
            if time.perf_counter() - start >= seconds:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def augmentation_rows(n: int, batch_size: int, repeats: int, seconds: float) -> list[tuple[str, str]]:
    """Samples/s of each step: BatchAugment on whole batches on the device against torchvision v2 per
    sample in a DataLoader (0 workers), on the same uint8 3x32x32 images, each side timed for `seconds`."""
    from conftest import make_cfg

    from trainlab.data.augment import BatchAugment
    from trainlab.data.datamodule import Transformed
    from trainlab.data.per_image import PerImageOps
    from trainlab.data.per_sample import MixCollate, per_sample_transform
    from trainlab.data.sources import TensorImages

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    targets = torch.randint(0, 10, (n,), generator=gen)
    on_device = list(zip(*(t.to(device).split(batch_size) for t in (images, targets))))
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    rows = []
    for name, overrides in STEPS.items():
        aug = make_cfg(["dataset.channels=3", "dataset.image_size=32", *overrides], Path("/tmp/unused")).augmentation
        batched = BatchAugment(32, None, aug.padding, aug.hflip, mean, std, 0, ops=PerImageOps(aug, 3, 10))
        data = Transformed(TensorImages(images, targets), per_sample_transform(aug, 32, mean, std, train=True))
        mixing = aug.mixup.alpha > 0 or aug.cutmix.alpha > 0
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                             collate_fn=MixCollate(aug.mixup, aug.cutmix, 10) if mixing else None)
        sides = {
            "batched": lambda: (batched.mix(batched(x, train=True), y) for x, y in on_device),
            "per sample": lambda: ((x.to(device), y.to(device)) for x, y in loader),
        }
        rate(sides["batched"], 0.1, device)  # warm-up: kornia builds its modules' state on the first call
        rates = {side: 0.0 for side in sides}
        for _ in range(repeats):  # alternated, so a slow spell of the machine hits both sides
            for side, batches in sides.items():
                rates[side] = max(rates[side], rate(batches, seconds, device))
        fast, slow = rates.values()
        rows.append((f"{name}: samples/s batched on {device.type} / torchvision v2 per sample",
                     f"{fast:,.0f} / {slow:,.0f} = **{fast / slow:.1f}x**"))
    return rows


def torchvision_rows(repeats: int, count: int) -> list[tuple[str, str]]:
    """torchvision's functions against what they replaced, on the same inputs: time per call."""
    import torch.nn.functional as F
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    def hand_resize(x, size):
        out = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return out.round().clamp(0, 255).to(torch.uint8)

    def hand_center_crop(x, size):
        h, w = x.shape[-2:]
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        return x[..., top:top + size, left:left + size]

    rows = []
    stack = torch.randint(0, 256, (count, 3, 64, 64), dtype=torch.uint8)
    for size in (28, 128):
        ours = best(lambda: TF.resize(stack, [size, size], antialias=True), repeats)
        theirs = best(lambda: hand_resize(stack, size), repeats)
        rows.append((f"resize {count} uint8 3x64x64 images to {size}: F.interpolate on floats / torchvision v2 resize",
                     f"{theirs * 1e3:.1f} ms / {ours * 1e3:.1f} ms = **{theirs / ours:.1f}x**"))
    batch = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8)
    calls = 2000
    ours = best(lambda: [TF.center_crop(batch, [24, 24]) for _ in range(calls)], repeats) / calls
    theirs = best(lambda: [hand_center_crop(batch, 24) for _ in range(calls)], repeats) / calls
    rows.append(("centre crop of a batch (a view): hand-written slicing / torchvision v2 center_crop",
                 f"{theirs * 1e6:.1f} us / {ours * 1e6:.1f} us = **{theirs / ours:.2f}x**"))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".png", ".jpg"):
            for side, size in ((64, 28), (256, 64)):
                path = Path(tmp) / f"image{side}{suffix}"
                Image.fromarray(rng.normal(128, 40, (side, side, 3)).clip(0, 255).astype(np.uint8)).save(path)
                calls = 100
                ours = best(lambda: [_torchvision_resized(path, size) for _ in range(calls)], repeats) / calls
                pil = best(lambda: [_pil_resized(path, size) for _ in range(calls)], repeats) / calls
                rows.append((f"decode a {side}x{side} RGB {suffix[1:].upper()} and resize to {size}: "
                             "PIL decode and resize / torchvision.io + v2 resize",
                             f"{pil * 1e6:.0f} us / {ours * 1e6:.0f} us = **{pil / ours:.2f}x**"))
    return rows


def _torchvision_resized(path: Path, size: int) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2 import functional as TF

    return TF.resize(decode_image(str(path), mode=ImageReadMode.RGB), [size, size], antialias=True)


def _pil_resized(path: Path, size: int) -> torch.Tensor:
    """PIL decode and bilinear resize (what sources.decode_image did before torchvision.io)."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB").resize((size, size), Image.BILINEAR)
        array = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return array.view(size, size, 3).permute(2, 0, 1).contiguous()


def write_section(out: Path, lines: list[str]) -> None:
    """Replace this script's section of RESULTS.md (bench/run.py keeps it when it rewrites the file)."""
    text = out.read_text() if out.exists() else "# trainlab benchmarks\n"
    if HEADING in text:
        head, _, rest = text.partition(HEADING)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        text = head + "\n".join(lines) + "\n" + tail
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    out.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat, prints only")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch's CPU threads (1: on a shared machine, two threads waiting on each other "
                             "under load made the batched side up to 30x slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, repeats, count, seconds = (256, 1, 64, 0.2) if args.smoke else (2048, args.repeats or 2, 500, 2.0)
    from run import machine  # bench/run.py

    rows = augmentation_rows(n, 256, repeats, seconds) + torchvision_rows(repeats, count)
    lines = [HEADING, "", f"{datetime.date.today()}: {machine()}", "",
             f"`python bench/augment.py{' --smoke' if args.smoke else ''}`: random uint8 3x32x32 images, batch 256, "
             f"each side timed for {seconds:g} s, best of {repeats}, {args.threads} CPU thread(s); the per-sample side "
             "runs torchvision v2 in a DataLoader with 0 workers.", "",
             "| measure | result |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "Above 1: the batched side, or torchvision's function, is the faster. trainlab uses torchvision's "
              "resize and its PNG and JPEG decoding, and keeps its own centre crop, which torchvision's is slower than."]
    print("\n".join(lines))
    if not args.smoke:
        write_section(ROOT / "bench" / "RESULTS.md", lines)


if __name__ == "__main__":
    main()

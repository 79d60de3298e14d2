"""Per-image random augmentation of whole training batches on their device: affine, colour jitter,
TrivialAugment / RandAugment and random erasing through kornia, then mixup / cutmix. Every image gets
its own random parameters; no per-sample Python work.

kornia draws from torch's global RNG: BatchAugment.random_state forks it and seeds it per batch from the
epoch seed, so the draws repeat exactly on resume and leave the model's own draws (dropout) untouched.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

COLOUR_ONLY = ("Saturate",)  # RandAugment operations that need 3 channels


class PerImageOps:
    """The augmentation config's per-image steps: `before` runs on float images in [0, 1], `after` on
    normalised ones (erasing to 0 = the mean), `mix` on normalised images and their class targets."""

    def __init__(self, aug, channels: int, num_classes: int | None):
        self.before, self.after = [], []
        affine, color = aug.affine, aug.color
        if affine.degrees or affine.translate or list(affine.scale) != [1, 1] or any(color.values()) \
                or aug.policy.name or aug.erasing.p:
            import kornia.augmentation as K  # here: only runs that use these steps pay kornia's import

            if affine.degrees or affine.translate or list(affine.scale) != [1, 1]:
                self.before.append(K.RandomAffine(
                    affine.degrees, translate=(affine.translate,) * 2 if affine.translate else None,
                    scale=tuple(affine.scale) if list(affine.scale) != [1, 1] else None, p=1.0))
            if any(color.values()):
                self.before.append(K.ColorJitter(color.brightness, color.contrast, color.saturation, color.hue, p=1.0))
            if aug.policy.name:
                self.before.append(Policy(aug.policy.name, aug.policy.num_ops, aug.policy.magnitude, channels))
            if aug.erasing.p:
                self.after.append(K.RandomErasing(scale=tuple(aug.erasing.scale), p=aug.erasing.p))
        on = aug.mixup.alpha > 0 or aug.cutmix.alpha > 0
        self.mix = Mix(aug.mixup, aug.cutmix, num_classes) if on else None

    def __bool__(self) -> bool:
        return bool(self.before or self.after or self.mix)


class Policy:
    """TrivialAugment (one operation per image, of a strength drawn per image) or RandAugment (num_ops
    distinct operations per image at magnitude/30 of each range), over kornia's operations. The operations
    are chosen per image: kornia's own TrivialAugment and RandAugment choose one set for the whole batch."""

    def __init__(self, name: str, num_ops: int, magnitude: int, channels: int):
        from kornia.augmentation.auto import RandAugment, TrivialAugment

        policy = TrivialAugment() if name == "trivial" else RandAugment(n=1, m=magnitude)
        self.ops = [seq[0] for seq in policy.children() if channels == 3 or type(seq[0]).__name__ not in COLOUR_ONLY]
        self.rounds = 1 if name == "trivial" else min(num_ops, len(self.ops))
        self.strength = None if name == "trivial" else magnitude / 30

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Drawn on the host, like kornia's parameters: grouping images by operation needs one host read.
        chosen = torch.rand(len(x), len(self.ops)).argsort(1)[:, :self.rounds]
        for step in range(self.rounds):
            order = chosen[:, step].argsort()
            counts = torch.bincount(chosen[:, step], minlength=len(self.ops)).tolist()
            index = order.to(x.device)
            parts = x[index].split(counts)
            out = torch.cat([self._apply(op, part) if len(part) else part for op, part in zip(self.ops, parts)])
            x = torch.empty_like(out).index_copy_(0, index, out)  # back into the batch's order
        return x

    def _apply(self, op, x: torch.Tensor) -> torch.Tensor:
        mag = None
        if self.strength is not None and op.magnitude_range is not None:  # as kornia's RandAugment.forward_parameters
            low, high = (float(v) for v in op.magnitude_range)
            m = torch.full((len(x),), self.strength)
            mag = ((1 - m) if op._factor_name == "bits_factor" else m) * (high - low) + low
            mag = mag * {"translate_x": x.shape[-1], "translate_y": x.shape[-2]}.get(op._factor_name, 1)
        return op(x, params=op.forward_parameters(x.shape, mag=mag))


class Mix:
    """mixup and cutmix with a weight per image (torchvision's MixUp and CutMix draw one per batch): each
    image is mixed, with probability p, with another image of the batch, and its one-hot target with that
    image's by the same weight (cutmix: the share of the area kept). With both on, half the images take each."""

    def __init__(self, mixup, cutmix, num_classes: int):
        self.mixup = (mixup.alpha, mixup.p) if mixup.alpha > 0 else None
        self.cutmix = (cutmix.alpha, cutmix.p) if cutmix.alpha > 0 else None
        self.num_classes = num_classes

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, h, w = len(x), x.shape[-2], x.shape[-1]
        if self.mixup and self.cutmix:
            cut = torch.rand(b) < 0.5
        else:
            cut = torch.full((b,), self.cutmix is not None)
        lam, p = torch.ones(b), torch.zeros(b)
        for method, rows in ((self.mixup, ~cut), (self.cutmix, cut)):
            if method:
                alpha, prob = method
                lam = torch.where(rows, torch.distributions.Beta(alpha, alpha).sample((b,)), lam)
                p = torch.where(rows, torch.full((b,), prob), p)
        mixed = torch.rand(b) < p
        partner = torch.randperm(b)
        # cutmix: a box of area (1 - lam) of the image, centred anywhere, clipped to the image
        ratio = (1 - lam).sqrt()
        cy, cx = torch.randint(h, (b,)), torch.randint(w, (b,))
        top, bottom = (cy - (ratio * h / 2).round().long()).clamp(0, h), (cy + (ratio * h / 2).round().long()).clamp(0, h)
        left, right = (cx - (ratio * w / 2).round().long()).clamp(0, w), (cx + (ratio * w / 2).round().long()).clamp(0, w)
        boxed = mixed & cut
        rows, cols = torch.arange(h), torch.arange(w)
        inside = (((rows >= top[:, None]) & (rows < bottom[:, None]))[:, :, None]
                  & ((cols >= left[:, None]) & (cols < right[:, None]))[:, None, :] & boxed[:, None, None])
        kept = torch.where(boxed, 1 - ((bottom - top) * (right - left)).float() / (h * w), lam)
        weight = torch.where(mixed, kept, torch.ones(b))              # of the image's own target
        blend = torch.where(mixed & ~cut, lam, torch.ones(b))          # of its own pixels (mixup)
        device = x.device
        partner_d = partner.to(device)
        other = x[partner_d]
        x = torch.where(inside[:, None].to(device), other, x)
        blend = blend.to(device, x.dtype).view(b, 1, 1, 1)
        x = x * blend + other * (1 - blend)
        onehot = F.one_hot(y, self.num_classes).to(x.dtype)
        weight = weight.to(device, x.dtype)[:, None]
        return x, onehot * weight + onehot[partner_d] * (1 - weight)

"""The per-sample path's transforms (`augmentation.per_sample=true`): torchvision v2 on each uint8 image in
DataLoader workers, the same steps as the batched path (and its benchmark's reference), and torchvision's
MixUp / CutMix on each collated training batch."""
from __future__ import annotations

import torch
from torch.utils.data import default_collate


def per_sample_transform(aug, image_size: int, mean: torch.Tensor | None, std: torch.Tensor | None, train: bool):
    from torchvision.transforms import v2

    size = aug.crop_size or image_size
    steps = []
    if train and (aug.padding or size < image_size):
        steps.append(v2.RandomCrop(size, padding=aug.padding))
    elif size < image_size:
        steps.append(v2.CenterCrop(size))
    if train:
        steps += _train_steps(aug)
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if mean is not None:
        steps.append(v2.Normalize(mean.tolist(), std.tolist()))
    if train and aug.erasing.p:
        steps.append(v2.RandomErasing(p=aug.erasing.p, scale=tuple(aug.erasing.scale)))
    return v2.Compose(steps)


def _train_steps(aug) -> list:
    from torchvision.transforms import v2

    affine, color, steps = aug.affine, aug.color, []
    if aug.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if affine.degrees or affine.translate or list(affine.scale) != [1, 1]:
        steps.append(v2.RandomAffine(affine.degrees, translate=(affine.translate,) * 2 if affine.translate else None,
                                     scale=tuple(affine.scale) if list(affine.scale) != [1, 1] else None))
    if any(color.values()):
        steps.append(v2.ColorJitter(color.brightness, color.contrast, color.saturation, color.hue))
    if aug.policy.name == "trivial":
        steps.append(v2.TrivialAugmentWide())
    elif aug.policy.name == "randaugment":
        steps.append(v2.RandAugment(num_ops=aug.policy.num_ops, magnitude=aug.policy.magnitude))
    return steps


class MixCollate:
    """Collates a training batch, then mixes it with probability p through torchvision's MixUp or CutMix
    (one weight for the whole batch; half the batches each when both are on). Targets become (N, classes)
    probabilities in every batch, mixed or not. A class, not a closure: DataLoader workers pickle it."""

    def __init__(self, mixup, cutmix, num_classes: int):
        from torchvision.transforms import v2

        self.methods = [(cls(alpha=m.alpha, num_classes=num_classes), m.p)
                        for cls, m in ((v2.MixUp, mixup), (v2.CutMix, cutmix)) if m.alpha > 0]
        self.num_classes = num_classes

    def __call__(self, samples):
        images, targets = default_collate(samples)
        method, p = self.methods[int(torch.randint(len(self.methods), ()))]
        if torch.rand(()) < p:
            return method(images, targets)
        return images, torch.nn.functional.one_hot(targets, self.num_classes).float()

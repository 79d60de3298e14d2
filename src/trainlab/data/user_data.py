"""Your own data, named by `dataset.class_path` + `dataset.init_args` (README "Bring your own data").

The class (or function) is called with init_args once, before training (the pre-flight builds it, the run
reuses it), and what it gives decides the path, by type:
- a `trainlab.data.Source` of uint8 images (`TensorImages`): the built-ins' path: resized to dataset.image_size
  and dataset.channels when they are set, split, normalised and augmented on whole batches on the device;
- a `torch.utils.data.Dataset` whose items are `(x, y)` tensors: split by val_fraction/test_fraction with the
  seed, stacked into one tensor and batched by index when dataset.in_memory allows (else a DataLoader with
  dataset.num_workers); its tensors are used as they are (no augmentation, no normalisation);
- a `LightningDataModule`: used as it is, built with batch_size and seed when its signature names them.
"""
from __future__ import annotations

import json
import logging

import lightning as L
import torch
from torch.utils.data import Dataset

from trainlab.config import ConfigError
from trainlab.data.sources import Source, TensorImages, resize_uint8

log = logging.getLogger("trainlab")
KEY = "dataset.class_path"
PASSED_TO_DATAMODULE = ("batch_size", "seed")  # from dataset.batch_size and seed, when the signature names them
_BUILT: dict[str, object] = {}  # the last data built (one entry): the pre-flight's, reused by the run


def build(ds: dict, task: str, seed: int):
    """The user's data, checked against its contract: a Source (images or stacked/streamed tensors) or the
    user's LightningDataModule, set up. `ds` is the dataset section as plain containers."""
    memo = json.dumps([ds, task, seed], sort_keys=True, default=str)
    if memo not in _BUILT:
        _BUILT.clear()
        _BUILT[memo] = _build(ds, task, seed)
    return _BUILT[memo]


def describe(ds: dict, task: str, seed: int, crop_size: int | None) -> tuple[tuple[int, ...], int, torch.Tensor]:
    """(input_shape, num_outputs, one input as a batch of 1) of the user's data, for the pre-flight."""
    data = build(ds, task, seed)
    if isinstance(data, L.LightningDataModule):
        return tuple(data.input_shape), int(data.num_outputs), data.example_input
    x = data.train[0][0]
    outputs = 1 if task == "regression" else len(data.classes)
    if not data.images:
        return tuple(x.shape), outputs, x.unsqueeze(0)
    size = cropped(x.shape[-1], crop_size)
    return (x.shape[0], size, size), outputs, torch.zeros(1, x.shape[0], size, size)


def cropped(image_size: int, crop_size: int | None) -> int:
    """The size the network sees; a user's source keeps its own image size, so the crop is checked here."""
    if crop_size is not None and crop_size > image_size:
        raise ConfigError("augmentation.crop_size", crop_size, f"is larger than the images ({image_size} px)",
                          f"augmentation.crop_size={image_size} or null")
    return crop_size or image_size


def _build(ds: dict, task: str, seed: int):
    from trainlab.preflight import user_data_class

    target, passed = user_data_class(ds)
    values = {"batch_size": ds["batch_size"], "seed": seed}
    try:
        data = target(**ds["init_args"], **{p: values[p] for p in passed})
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(KEY, ds["class_path"], f"failed when called with dataset.init_args ({type(err).__name__}: "
                          f"{_first_line(err)})", "check dataset.init_args against its signature") from None
    kinds = ((Source, _image_source), (L.LightningDataModule, _datamodule), (Dataset, _tensor_dataset))
    for kind, check in kinds:
        if isinstance(data, kind):
            try:
                return check(data, ds, task)
            except ConfigError:
                raise
            except Exception as err:  # the user's own code (items, setup, loaders) failed
                raise ConfigError(KEY, ds["class_path"], f"failed while its data was read ({type(err).__name__}: "
                                  f"{_first_line(err)})", "fix the class: README \"Bring your own data\" has "
                                  "its contract") from None
    raise ConfigError(KEY, ds["class_path"], f"gave a {type(data).__name__}, not a trainlab.data.Source, a torch "
                      "Dataset or a LightningDataModule", "return one of those (README \"Bring your own data\")")


# ---------------------------------------------------------------- a Source of uint8 images
def _image_source(source: Source, ds: dict, task: str) -> Source:
    splits = [source.train] + ([source.test] if source.test is not None else [])
    for data in splits:
        if not isinstance(data, TensorImages):
            _refuse(ds, f"gave a Source whose train/test is a {type(data).__name__}",
                    "Source(train=TensorImages(images, targets), test=None, classes=[...])")
        images = data.images
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            _refuse(ds, f"gave images of dtype {images.dtype} and shape {tuple(images.shape)}",
                    "uint8 images of shape (N, C, H, W) with C = 1 or 3, values 0-255")
        if images.shape[-1] != images.shape[-2] and ds["image_size"] is None:
            _refuse(ds, f"gave non-square images ({images.shape[-2]}x{images.shape[-1]}) and dataset.image_size=null",
                    "set dataset.image_size (images are resized to it once), or return square images")
        data.targets = _targets(data.targets, len(images), source.classes, ds, task)
        if ds["image_size"] is not None or ds["channels"] is not None:
            data.images = resize_uint8(images, ds["image_size"] or images.shape[-1], ds["channels"] or images.shape[1])
    _need_test_split(source.test, ds)
    return Source(source.train, source.test, source.classes if task == "classification" else None, images=True)


# ---------------------------------------------------------------- a Dataset of (x, y) tensors
class Items(Dataset):
    """A subset of the user's Dataset, read item by item (too large to stack), with its checked targets."""

    def __init__(self, data: Dataset, index: torch.Tensor, targets: torch.Tensor):
        self.data, self.index, self.targets = data, index, targets

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return _as_input(self.data[int(self.index[i])][0]), self.targets[i]

    def subset(self, index: torch.Tensor) -> "Items":
        return Items(self.data, self.index[index], self.targets[index])


def _tensor_dataset(data: Dataset, ds: dict, task: str) -> Source:
    n = len(data) if hasattr(data, "__len__") else 0
    if n == 0:
        _refuse(ds, "gave a Dataset with no items (or no __len__)", "a map-style Dataset with __len__ and items")
    first = data[0]
    if not (isinstance(first, (tuple, list)) and len(first) == 2 and isinstance(first[0], torch.Tensor)):
        _refuse(ds, f"gave a Dataset whose items are {type(first).__name__}, not (x, y) with x a tensor",
                "__getitem__ returning (x, y): x a tensor, y an integer class or a float target")
    x = _as_input(first[0])
    mb = n * x.numel() * x.element_size() / 2 ** 20
    stack = ds["in_memory"] is True or (ds["in_memory"] == "auto" and mb <= ds["memory_limit_mb"])
    items = [data[i] for i in range(n)] if stack else None
    raw = [item[1] for item in items] if stack else [data[i][1] for i in range(n)]
    classes = getattr(data, "classes", None)
    targets, classes = _dataset_targets(raw, classes, ds, task)
    if stack:
        shapes = {tuple(item[0].shape) for item in items}
        if len(shapes) > 1:
            _refuse(ds, f"gave items of different shapes ({', '.join(map(str, sorted(shapes)[:3]))})",
                    "items of one shape (pad sequences), or dataset.in_memory=false with a shape per batch")
        train = TensorImages(torch.stack([_as_input(item[0]) for item in items]), targets)
    else:
        train = Items(data, torch.arange(n), targets)
    _need_test_split(None, ds)
    log.info("%s: %d items of shape %s, %s", ds["class_path"], n, tuple(x.shape),
             "stacked in memory" if stack else f"read by a DataLoader ({ds['num_workers']} workers)")
    return Source(train, None, classes, images=False)


def _as_input(x: torch.Tensor) -> torch.Tensor:
    """Floating inputs as float32 (NumPy's float64 would not meet the network's float32 weights)."""
    return x.float() if x.is_floating_point() else x


def _dataset_targets(raw: list, classes, ds: dict, task: str) -> tuple[torch.Tensor, list[str] | None]:
    try:
        targets = torch.stack([torch.as_tensor(t) for t in raw])
    except (TypeError, RuntimeError, ValueError) as err:
        _refuse(ds, f"gave targets that are not numbers of one shape ({_first_line(err)})",
                "y as an integer class index or a float (one number per item)")
    if targets.dim() != 1:
        _refuse(ds, f"gave targets of shape {tuple(targets.shape[1:])} per item", "one number per item")
    integers = not (targets.is_floating_point() or targets.dtype == torch.bool)
    if task == "classification" and classes is None and integers:  # names: the sorted distinct values
        values = targets.unique()
        return torch.searchsorted(values, targets), [str(v) for v in values.tolist()]
    names = [str(c) for c in classes] if task == "classification" and classes is not None else None
    return _targets(targets, len(targets), names, ds, task), names


# ---------------------------------------------------------------- a LightningDataModule
def _datamodule(dm, ds: dict, task: str):
    """The user's DataModule, set up, with input_shape, num_outputs and classes (added when it lacks them)."""
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor)):
        _refuse(ds, f"gave training batches of type {type(batch).__name__}, not (x, y) tensors", "yield (x, y) batches")
    outputs = getattr(dm, "num_outputs", None) or getattr(dm, "num_classes", None)
    if outputs is None:
        if task == "classification":
            _refuse(ds, "has no num_outputs (or num_classes) attribute", "set self.num_classes in __init__ or setup")
        outputs = 1
    if task == "regression" and outputs != 1:
        _refuse(ds, f"has num_outputs={outputs}, and task=regression predicts one number", "num_outputs = 1")
    for name, value in (("num_outputs", int(outputs)), ("input_shape", tuple(batch[0].shape[1:])),
                        ("classes", None), ("example_input", _as_input(batch[0][:1]))):
        if getattr(dm, name, None) is None:
            setattr(dm, name, value)
    return dm


# ---------------------------------------------------------------- shared checks
def _targets(targets, n: int, classes, ds: dict, task: str) -> torch.Tensor:
    targets = torch.as_tensor(targets)
    if targets.shape != (n,):
        _refuse(ds, f"gave targets of shape {tuple(targets.shape)} for {n} inputs", f"one target per input: ({n},)")
    if task == "regression":
        return targets.float()
    if targets.is_floating_point() or targets.dtype == torch.bool:
        _refuse(ds, f"gave {targets.dtype} targets, and task=classification needs integer class indices",
                "task=regression for numeric targets, or integer class indices")
    if not classes:
        _refuse(ds, "gave no class names for task=classification", "class names (Source.classes), or task=regression")
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= len(classes)):
        _refuse(ds, f"gave class indices from {int(targets.min())} to {int(targets.max())} for {len(classes)} class "
                "names", f"indices 0 to {len(classes) - 1}, one per class name")
    return targets.long()


def _need_test_split(test, ds: dict) -> None:
    if test is None and ds["test_fraction"] is None:
        raise ConfigError("dataset.test_fraction", None, f"{ds['class_path']} has no test split of its own",
                          "dataset.test_fraction=0.15")


def _refuse(ds: dict, problem: str, fix: str):
    raise ConfigError(KEY, ds["class_path"], problem, fix)


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else repr(err))[:200]

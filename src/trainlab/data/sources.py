"""Data sources: each returns uint8 images (N, C, H, W) and targets, decoded once.

In-memory sources hold a TensorImages; image folders and CSVs stream from files (FileImages)
when `dataset.in_memory=false` or when `auto` finds them larger than `dataset.memory_limit_mb`. Both yield uint8 batches: normalisation and
augmentation run later on whole batches (see augment.py).
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from trainlab.checkpoint_io import write_atomic
from trainlab.config import TORCHVISION_FOLDERS, ConfigError
from trainlab.data import bad_inputs

log = logging.getLogger("trainlab")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class TensorImages(Dataset):
    """uint8 images and targets held in memory; indexing with a list of indices returns a batch. (A user's
    Dataset of tensors, stacked, is held here too: user_data.py.)"""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        return self.images[index], self.targets[index]

    def subset(self, index: torch.Tensor) -> "TensorImages":
        return TensorImages(self.images[index], self.targets[index])

    def to(self, device) -> "TensorImages":
        return TensorImages(self.images.to(device), self.targets.to(device))


class FileImages(Dataset):
    """Images decoded from files per sample (for data too large to hold in memory)."""

    def __init__(self, paths: list[Path], targets: torch.Tensor, image_size: int, channels: int):
        self.paths, self.targets, self.image_size, self.channels = paths, targets, image_size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return decode_image(self.paths[index], self.image_size, self.channels), self.targets[index]

    def subset(self, index: torch.Tensor) -> "FileImages":
        return FileImages([self.paths[i] for i in index.tolist()], self.targets[index], self.image_size, self.channels)

    def to_memory(self) -> TensorImages:
        images = torch.stack([decode_image(p, self.image_size, self.channels) for p in self.paths])
        return TensorImages(images, self.targets)


@dataclass
class Source:
    train: Dataset                 # TensorImages or FileImages
    test: Dataset | None           # the source's own test split, if it has one
    classes: list[str] | None      # class names (None for regression)
    images: bool = True            # uint8 images (normalised, augmented); False: a user's tensors, used as they are


# PNGs and JPEGs decode through torchvision.io and resize with torchvision's antialiased bilinear resize: their
# RGB pixels equal PIL's decode and bilinear resize. JPEGs are 1.4x faster, PNGs within the machine's noise of
# PIL (0.8-1.1x over runs; bench/augment.py). PIL reads the rest (BMP, GIF, TIFF, WebP).
TORCHVISION_DECODED = (".png", ".jpg", ".jpeg")
# Part of the image cache's key: a change of decoder (grayscale differs from PIL's by 1 level) decodes again.
DECODER = "torchvision.io-1"


def decode_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """uint8 (channels, size, size) pixels of an image file."""
    try:
        if path.suffix.lower() in TORCHVISION_DECODED:
            from torchvision.io import ImageReadMode
            from torchvision.io import decode_image as tv_decode
            from torchvision.transforms.v2 import functional as TF

            image = tv_decode(str(path), mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)
            if image.dtype != torch.uint8:  # 16-bit PNG
                image = TF.to_dtype(image, torch.uint8, scale=True)
            return TF.resize(image, [size, size], antialias=True).contiguous()
        from PIL import Image

        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
            array = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except (OSError, RuntimeError) as err:  # damage past the headers that bad_inputs.screen_images checks
        import re

        reason = re.sub(r"^.*\.cpp:\d+, ", "", (str(err).splitlines() or [type(err).__name__])[-1])  # torchvision's C++ place
        raise ConfigError("dataset.root", str(path), f"cannot be decoded as an image ({reason})",
                          "remove or replace that file") from None
    return array.view(size, size, channels).permute(2, 0, 1).contiguous()


def resize_uint8(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Resize a uint8 (N, C, H, W) stack and convert its channels, in chunks to bound memory."""
    if images.shape[1] != channels:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    if images.shape[-1] == size and images.shape[-2] == size:
        return images.contiguous()
    from torchvision.transforms.v2 import functional as TF

    # torchvision's uint8 antialiased bilinear kernel: 9-13x faster than F.interpolate on floats (bench/augment.py)
    return torch.cat([TF.resize(chunk, [size, size], antialias=True) for chunk in images.split(4096)])


def load(ds, task: str, cache_dir: str | None = None) -> Source:
    """Build the Source named by dataset.name. Image files that fit dataset.memory_limit_mb are decoded into
    memory once, through a cache file in cache_dir (paths.cache_dir; None: no cache)."""
    source = _LOADERS[ds.name](ds, task)
    files = source.train
    if isinstance(files, FileImages):
        decoded_mb = len(files) * ds.channels * ds.image_size ** 2 / 2 ** 20
        if not (ds.in_memory is False or (ds.in_memory == "auto" and decoded_mb > ds.memory_limit_mb)):
            source.train = TensorImages(_cached_decode(ds, files, cache_dir), files.targets)
    return source


def _digits(ds, task) -> Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).mul(255.0 / 16.0).round().to(torch.uint8).unsqueeze(1)
    targets = torch.from_numpy(digits.target).long()
    return Source(TensorImages(resize_uint8(images, ds.image_size, ds.channels), targets), None,
                  [str(c) for c in range(10)])


def _torchvision(ds, task) -> Source:
    """MNIST and FashionMNIST through torchvision (IDX files in <root>/<Name>/raw)."""
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}[ds.name]
    splits = []
    for train in (True, False):
        data = _fetch(ds, lambda train=train: cls(str(ds.root), train=train, download=bool(ds.download)), cls.__name__)
        images = torch.as_tensor(data.data).unsqueeze(1)
        splits.append(TensorImages(resize_uint8(images, ds.image_size, ds.channels), torch.as_tensor(data.targets)))
    return Source(splits[0], splits[1], list(data.classes))


def _cifar10(ds, task) -> Source:
    """CIFAR-10's python batches, read directly (torchvision's class insists on the original files'
    checksums) through a restricted unpickler; a missing folder is downloaded through torchvision when
    dataset.download=true."""
    import numpy as np

    folder = Path(str(ds.root)) / TORCHVISION_FOLDERS["cifar10"]
    if not (folder / "batches.meta").is_file():
        import torchvision

        _fetch(ds, lambda: torchvision.datasets.CIFAR10(str(ds.root), train=True, download=bool(ds.download)), "CIFAR10")

    def read(names):
        batches = [_cifar_batch(folder / name, ("data", "labels")) for name in names]
        images = torch.from_numpy(np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32))
        targets = torch.tensor([t for b in batches for t in b["labels"]])
        return TensorImages(resize_uint8(images, ds.image_size, ds.channels), targets)

    classes = _cifar_batch(folder / "batches.meta", ("label_names",))["label_names"]
    return Source(read([f"data_batch_{i}" for i in range(1, 6)]), read(["test_batch"]), list(classes))


def _cifar_batch(path: Path, keys: tuple[str, ...]) -> dict:
    """One CIFAR-10 python pickle, admitting only what the real files hold: dicts, lists, strings, bytes,
    numbers and numpy arrays. Any other global (os.system, builtins.exec, ...) is refused, never imported."""
    import pickle

    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct  # numpy 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    # The real files (Python 2, numpy 1) name numpy.core.multiarray; numpy 2 writes numpy._core.multiarray.
    allowed = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in allowed:
                raise pickle.UnpicklingError(f"it loads {module}.{name}, which a CIFAR-10 batch never holds")
            return allowed[module, name]

    fix = "replace the folder with the original cifar-10-python.tar.gz contents, or delete it and download again " \
          "with dataset.download=true"
    try:
        with open(path, "rb") as f:
            batch = Unpickler(f, encoding="latin1").load()
    except Exception as err:  # bad bytes raise many types (UnpicklingError, EOFError, KeyError, ...)
        raise ConfigError("dataset.root", str(path), f"is not a CIFAR-10 python batch ({err})", fix) from None
    if not isinstance(batch, dict) or any(key not in batch for key in keys):
        raise ConfigError("dataset.root", str(path), f"is not a CIFAR-10 python batch (no {', '.join(keys)})", fix)
    return batch


def _fetch(ds, make, name: str):
    """Build a torchvision data set; missing files or a failed download become one clear error."""
    folder = Path(str(ds.root)) / TORCHVISION_FOLDERS[ds.name]
    try:
        return make()
    except Exception as err:
        how = "and the download failed" if ds.download else "and dataset.download=false"
        reason = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError("dataset.root", str(ds.root), f"the {name} files are not in {folder} {how} "
                          f"({type(err).__name__}: {reason})",
                          f"run once online with dataset.download=true, or copy the {name} files "
                          f"into {folder}") from None


def class_folders(root) -> list[str]:
    """The class names of an image folder: its sub-folders, sorted. Hidden folders are not classes: .git,
    .ipynb_checkpoints, or the .trainlab_cache of earlier versions."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_folder(ds, task) -> Source:
    root = Path(str(ds.root))
    classes = class_folders(root)
    paths, targets = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        paths += files
        targets += [label] * len(files)
    if not paths:
        raise ConfigError("dataset.root", str(root), "holds no images in class sub-folders",
                          f"lay the images out as {root}/<class name>/<image>.png")
    return _file_source(ds, paths, torch.tensor(targets), classes)


def _image_csv(ds, task) -> Source:
    root = Path(str(ds.root))
    with open(str(ds.csv_file), newline="") as f:
        rows = list(csv.DictReader(f))
    bad_inputs.check_csv_rows(ds, rows, task)
    paths = [root / row[ds.path_column] for row in rows]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError("dataset.path_column", ds.path_column,
                          f"{len(missing)} listed images do not exist under dataset.root (first: {missing[0]})",
                          "check dataset.root and the paths in the CSV")
    raw = [row[ds.target_column] for row in rows]
    if task == "regression":
        return _file_source(ds, paths, torch.tensor([float(v) for v in raw], dtype=torch.float32), None)
    classes = sorted(set(raw))
    index = {c: i for i, c in enumerate(classes)}
    return _file_source(ds, paths, torch.tensor([index[v] for v in raw]), classes)


def _file_source(ds, paths, targets, classes) -> Source:
    paths, targets = bad_inputs.screen_images(ds, paths, targets)
    bad_inputs.warn_small_classes(classes, targets)
    return Source(FileImages(paths, targets, ds.image_size, ds.channels), None, classes)


def _cached_decode(ds, files: FileImages, cache_dir: str | None) -> torch.Tensor:
    """Decoded images, from a cache file in cache_dir when the source is unchanged.

    The file name is <data set>-<size>-<channels>-<source id>-<content key>.pt: the source id hashes the absolute
    root (and CSV file), the content key the decoder and every image's path, size and mtime, so any change to the source (an
    edited, added or removed image) decodes again and replaces that source's cache, and no other. Nothing is
    written under dataset.root: a folder there would become a class on the next run.
    """
    import hashlib
    import re

    digest = hashlib.sha256(DECODER.encode())
    for path in files.paths:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    csv_file = Path(str(ds.csv_file)).resolve() if ds.csv_file else None
    source_id = hashlib.sha256(f"{Path(str(ds.root)).resolve()}\0{csv_file or ''}".encode()).hexdigest()[:16]
    prefix = f"{ds.name}-{csv_file.stem if csv_file else 'folder'}-{ds.image_size}px-{ds.channels}ch-{source_id}-"
    folder = Path(cache_dir).expanduser() if cache_dir else None
    cache = folder / f"{prefix}{digest.hexdigest()[:16]}.pt" if folder else None
    if cache is not None and cache.is_file():
        try:
            return torch.load(cache, weights_only=True)["images"]
        except Exception:  # a damaged cache is only a cache: decode again
            pass
    images = files.to_memory().images
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, lambda f: torch.save({"images": images}, f))
        except OSError as err:  # read-only or unusable cache folder: run without the cache
            log.info("image cache not written (%s): %s", cache, err)
            return images
        own = re.compile(re.escape(prefix) + r"[0-9a-f]{16}\.pt")
        for stale in folder.iterdir():  # this source's earlier versions only
            if stale != cache and own.fullmatch(stale.name):
                stale.unlink(missing_ok=True)
    return images


_LOADERS = {"digits": _digits, "mnist": _torchvision, "fashion_mnist": _torchvision, "cifar10": _cifar10,
            "image_folder": _image_folder, "image_csv": _image_csv}

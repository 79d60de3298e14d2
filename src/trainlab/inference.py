"""Re-testing a checkpoint (`python evaluate.py ckpt=...`) and predicting on a folder of images
(`python predict.py ckpt=... input=...`), both with the config the checkpoint was trained with.

The run's config.yaml (beside checkpoints/) rebuilds the same datamodule (same seed: same splits, same
normalisation stats, same class names) and network through build.build_parts, as training did.
Outputs are new files named by time; nothing that exists is overwritten.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from trainlab import checkpoint_io
from trainlab.config import ConfigError
from trainlab.trust import load_stored_config

log = logging.getLogger("trainlab")


def cli(task, cfg: DictConfig) -> None:
    """Hydra entry point of evaluate.py / predict.py: a bad input is one message and exit status 2."""
    import lightning  # noqa: F401  (its console handlers exist once imported: quiet_lightning removes them)

    from trainlab.console import quiet_lightning

    quiet_lightning()
    try:
        task(cfg)
    except ConfigError as err:
        log.error("Config error: %s", err)
        raise SystemExit(2) from None


def evaluate(cfg: DictConfig) -> dict:
    """Test the checkpoint on its run's test split; writes and returns {"test": {...}, ...}."""
    ckpt_path, run_cfg = _run_config(cfg.ckpt)
    out = _output_path(cfg.output, ckpt_path, "evaluate", ".json")
    parts, ckpt = _load(run_cfg, ckpt_path, cfg.batch_size)

    import lightning as L

    args = parts.trainer_args
    trainer = L.Trainer(accelerator=cfg.accelerator or args["accelerator"], devices=1,
                        precision=args["precision"], deterministic=args["deterministic"],
                        limit_test_batches=args["limit_test_batches"], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False)
    test = trainer.test(parts.module, datamodule=parts.datamodule, verbose=False)[0]
    result = {"checkpoint": str(ckpt_path), "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
              "test": {k: float(v) for k, v in test.items()}}
    _write_new(out, json.dumps(result, indent=2))
    print(f"trainlab evaluate: {json.dumps(result['test'])} -> {out}", flush=True)
    return result


def predict(cfg: DictConfig) -> Path:
    """One CSV row per image in cfg.input: class and probability (classification) or value (regression)."""
    import torch

    from trainlab.data.sources import IMAGE_EXTENSIONS

    ckpt_path, run_cfg = _run_config(cfg.ckpt)
    folder = Path(str(cfg.input)) if cfg.input is not None else None
    if folder is None or not folder.is_dir():
        raise ConfigError("input", cfg.input, "is not a folder", "give a folder of images: input=path/to/images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ConfigError("input", str(folder), f"holds no images ({', '.join(IMAGE_EXTENSIONS)})",
                          "put the images to predict in that folder (sub-folders are searched too)")
    out = _output_path(cfg.output, ckpt_path, "predictions", ".csv")
    parts, _ = _load(run_cfg, ckpt_path, cfg.batch_size)
    dm, module = parts.datamodule, parts.module
    if getattr(dm, "augment", None) is None:  # a user's tensors or DataModule (user_data.py)
        raise ConfigError("ckpt", str(ckpt_path), f"was trained on {run_cfg.dataset.class_path}, whose inputs are "
                          "not images: predict.py reads image files", "evaluate.py ckpt=... tests it on its test "
                          "split; predict in Python with the network (README \"Bring your own data\")")
    accelerator = cfg.accelerator or parts.trainer_args["accelerator"]
    device = torch.device("cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu")
    module.to(device).eval()
    images, names = _decode_all(files, folder, dm.image_size, dm.input_shape[0])  # as the data was built
    header = ["path", "value"] if run_cfg.task == "regression" else ["path", "class", "probability"]
    rows = []
    with torch.inference_mode():
        for start in range(0, len(images), dm.cfg.eval_batch_size):
            batch = dm.augment(images[start:start + dm.cfg.eval_batch_size].to(device), train=False)
            outputs = module(batch).float().cpu()
            if run_cfg.task == "regression":
                rows += [[f"{v:.6g}"] for v in outputs.view(-1).tolist()]
            else:
                prob, label = outputs.softmax(1).max(1)
                rows += [[dm.classes[i], f"{p:.6f}"] for i, p in zip(label.tolist(), prob.tolist())]
    lines = [header] + [[name, *row] for name, row in zip(names, rows)]
    _write_new(out, _csv_text(lines))
    print(f"trainlab predict: {len(rows)} images -> {out}", flush=True)
    return out


def _run_config(ckpt) -> tuple[Path, DictConfig]:
    """The checkpoint's path and its run's config (<run>/config.yaml for <run>/checkpoints/x.ckpt)."""
    if ckpt is None:
        raise ConfigError("ckpt", None, "is required", "ckpt=<run folder>/checkpoints/last.ckpt")
    path = Path(str(ckpt))
    stored = path.parent.parent / "config.yaml"
    if not stored.is_file():
        raise ConfigError("ckpt", str(path), f"has no run config beside it ({stored} is missing)",
                          "give a checkpoint inside a trainlab run folder: <run>/checkpoints/<name>.ckpt")
    return path, load_stored_config(stored)  # literal data: no resolver, no _target_, trusted class paths


def _load(run_cfg: DictConfig, ckpt_path: Path, batch_size):
    """Datamodule and TrainModule as the run built them, with the checkpoint's weights."""
    ckpt = checkpoint_io.load(ckpt_path)  # weights_only; clear error for missing/corrupt/foreign files
    import lightning as L

    from trainlab.build import build_parts

    if batch_size is not None:
        run_cfg.dataset.eval_batch_size = batch_size
    L.seed_everything(run_cfg.seed, verbose=False)
    parts = build_parts(run_cfg, OmegaConf.to_container(run_cfg, resolve=True), compile_net=False)
    try:
        parts.module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise ConfigError("ckpt", str(ckpt_path), f"does not fit the network of its run's config.yaml "
                          f"({str(err).splitlines()[0][:160]})", "give a checkpoint of this run") from None
    return parts, ckpt


def _decode_all(files: list[Path], folder: Path, size: int, channels: int):
    """Decoded images at the training size and channels; unreadable files stop with one clear error."""
    import torch

    from trainlab.data.sources import decode_image

    images = []
    for path in files:
        try:
            images.append(decode_image(path, size, channels))
        except ConfigError as err:  # named after the training data's key: restate it for `input`
            raise ConfigError("input", str(path), err.problem, err.fix) from None
    return torch.stack(images), [str(p.relative_to(folder)) for p in files]


def _output_path(output, ckpt_path: Path, stem: str, suffix: str) -> Path:
    """A given output must not exist; by default <run>/<stem>-<time><suffix>, numbered if taken."""
    if output is not None:
        path = Path(str(output))
        if path.exists():
            raise ConfigError("output", str(path), "already exists (it is never overwritten)",
                              "give a new file name, or leave output unset for a time-stamped one")
        return path
    base = ckpt_path.parent.parent / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base.with_suffix(suffix), 1
    while path.exists():
        path, n = Path(f"{base}-{n}{suffix}"), n + 1
    return path


def _write_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", newline="") as f:  # "x": fails rather than overwrite a file created meanwhile
        f.write(text)


def _csv_text(rows: list[list[str]]) -> str:
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()

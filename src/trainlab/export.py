"""`python export.py ckpt=<run>/checkpoints/<file> format=onnx|torchscript`: the trained network as a file that runs
without trainlab, checked against torch on the run's test split.

The network is rebuilt from the run's config.yaml exactly as evaluate.py does (inference._run_config and _load:
plain YAML, trusted class paths only, the checkpoint read weights-only). Written next to the run, never over a file:
<run>/export/<checkpoint name>.onnx (or .pt) and <that file name>.json with the evaluation pre-processing (mean, std,
sizes, input shape, class names, task) and the check's result (maximum absolute difference from torch, fraction of
the same predictions). ONNX: torch.onnx.export's dynamo exporter (onnxscript), batch axis dynamic, run with
onnxruntime; TorchScript: torch.jit.trace, run with torch.jit.load.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

from omegaconf import DictConfig

from trainlab.config import ConfigError
from trainlab.inference import _load, _run_config  # one way to rebuild a run's network: evaluate.py's

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # the exporter, its translator, the runtime of the check
REGRESSION_TOLERANCE = 1e-4  # a regression prediction "agrees" within this absolute difference


def export(cfg: DictConfig) -> dict:
    """Write the exported model and its JSON record; returns the record."""
    fmt = cfg.format
    if fmt not in FORMATS:
        raise ConfigError("format", fmt, "is not an export format", "format=onnx or format=torchscript")
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None] if fmt == "onnx" else []
    if missing:
        raise ConfigError("format", fmt, f"needs {', '.join(missing)} (not installed)",
                          "pip install 'trainlab[export]', or format=torchscript")
    ckpt_path, run_cfg = _run_config(cfg.ckpt)
    model_path = _new_path(cfg.output, ckpt_path, FORMATS[fmt])
    parts, _ = _load(run_cfg, ckpt_path, cfg.batch_size)

    import torch

    net, dm = parts.module.net.float().eval().cpu(), parts.datamodule
    example = next(_test_batches(dm))[:2]  # traced with a batch of 2: the batch axis stays free
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        run_exported = _onnx(net, example, model_path) if fmt == "onnx" else _torchscript(net, example, model_path)
        diff, same, total = 0.0, 0, 0
        for x in _test_batches(dm):
            ours, theirs = net(x), run_exported(x)
            diff = max(diff, float((ours - theirs).abs().max()))
            same += int(_agree(ours, theirs, run_cfg.task).sum())
            total += len(x)
    record = {"model": model_path.name, "format": fmt, "checkpoint": str(ckpt_path),
              "preprocessing": _preprocessing(dm, example), "classes": dm.classes, "task": run_cfg.task,
              "outputs": ("logits, one per class (softmax for probabilities)" if run_cfg.task == "classification"
                          else "the predicted value, shape (batch, 1)"),
              "check": {"split": "test", "samples": total, "max_abs_diff": diff, "same_predictions": same / total,
                        "regression_tolerance": REGRESSION_TOLERANCE if run_cfg.task == "regression" else None}}
    record_path = _record_path(model_path)
    with open(record_path, "x") as f:
        f.write(json.dumps(record, indent=2))
    print(f"trainlab export: {model_path} ({fmt}); test split, {total} samples: max |{fmt} - torch| = {diff:.3g}, "
          f"same predictions {same / total:.2%} -> {record_path}", flush=True)
    return record


def _test_batches(dm):
    """The test split as evaluate.py feeds it: the eval transform (centre crop, normalisation) on the CPU."""
    for batch in dm.test_dataloader():
        yield dm.on_after_batch_transfer(batch, 0)[0].float()


def _onnx(net, example, path: Path):
    import onnxruntime
    import torch

    batch = torch.export.Dim("batch", min=1)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        torch.onnx.export(net, (example,), str(path), dynamo=True, external_data=False, input_names=["input"],
                          output_names=["output"], dynamic_shapes=({0: batch},))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def _torchscript(net, example, path: Path):
    import warnings

    import torch

    with warnings.catch_warnings():  # torch 2.14 marks torch.jit deprecated (README says so): asked for, not news
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(net, example), str(path))
        return torch.jit.load(str(path), map_location="cpu").eval()


def _agree(ours, theirs, task: str):
    if task == "classification":
        return ours.argmax(1) == theirs.argmax(1)
    return (ours - theirs).abs().view(-1) <= REGRESSION_TOLERANCE


def _preprocessing(dm, example) -> dict:
    """What a caller does to an input before the model: the run's evaluation transform as its datamodule describes
    it (build.preprocessing, as in metrics.json: the loaded size and channels, which a pretrained run takes from its
    weights and a user's image source may keep), and the layout the exported model takes."""
    from trainlab.build import preprocessing

    described = preprocessing(dm) or {}
    layout = {"input_shape": list(example.shape[1:]), "layout": "float32, batch size free"}
    if getattr(dm, "augment", None) is None:  # a user's tensors or DataModule: inputs given as they are
        return {**described, **layout}
    size, channels = described["image_size"], described["channels"]
    return {"resize": f"to {size}x{size} (bilinear) when decoded", "image_size": size,
            "center_crop": list(example.shape[-2:]), "channels": channels,
            "color": "grayscale" if channels == 1 else "RGB", "scale": "pixel values / 255",
            "mean": described["mean"], "std": described["std"], "normalization": described["normalization"],
            **layout, "layout": "NCHW float32, batch size free"}


def _new_path(output, ckpt_path: Path, suffix: str) -> Path:
    """A given output must not exist (nor its record); by default <run>/export/<checkpoint name><suffix>, numbered
    (-1, -2...) when that name or its record is taken."""
    if output is not None:
        path = Path(str(output))
        if path.suffix != suffix:
            raise ConfigError("output", str(path), f"does not end in {suffix}", f"output=model{suffix}")
        taken = [p for p in (path, _record_path(path)) if p.exists()]
        if taken:
            raise ConfigError("output", str(path), f"{taken[0]} already exists (it is never overwritten)",
                              "give a new file name, or leave output unset for a numbered one")
        return path
    base = ckpt_path.parent.parent / "export" / ckpt_path.stem
    path, n = base.with_suffix(suffix), 1
    while path.exists() or _record_path(path).exists():
        path, n = Path(f"{base}-{n}{suffix}"), n + 1
    return path


def _record_path(model_path: Path) -> Path:
    # model.onnx.json, model.pt.json: an ONNX and a TorchScript export of one checkpoint share its name
    return model_path.with_name(model_path.name + ".json")

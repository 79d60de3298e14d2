"""A run folder is data, never code: what `resume=`, evaluate.py and predict.py read from a shared folder runs
nothing the folder chooses. Every crafted folder carries a real payload that leaves a marker file if it runs
(a control shows it does), and each test checks that the marker is absent and the error names the key."""
from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF, ROOT, TINY, make_cfg, run_cli, write_cifar10_like, write_png
from test_optuna_search import SPACE, postgres_url  # noqa: F401  (the module's real PostgreSQL server)
from trainlab.config import ConfigError
from trainlab.data import sources
from trainlab.inference import evaluate, predict
from trainlab.pruning import OptunaPruning
from trainlab.search import STORAGE_ENV, create_study, job_storage, optuna_object, redact
from trainlab.train import run
from trainlab.trust import TRUSTED_ENV, load_stored_config

QUIET = [*TINY, "logger.image_grid=false", "logger.histograms=false"]


class Payload:
    """Unpickling this calls `call(*args)`: an attacker's code, here one that only creates a marker file."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def touch(marker: Path, how: str = "open") -> Payload:
    return {"open": Payload(open, str(marker), "w"),
            "os.system": Payload(os.system, f"touch {marker}"),
            "subprocess": Payload(subprocess.call, ["touch", str(marker)]),
            "exec": Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()")}[how]


def write_pickle(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))
    return path


def compose(name: str, *overrides: str):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(name, overrides=list(overrides))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real tiny run folder (config.yaml written by trainlab, a real last.ckpt) to copy and tamper with."""
    run_dir = tmp_path_factory.mktemp("trust") / "run"
    run(make_cfg(QUIET, run_dir))
    return run_dir


def shared(trained: Path, folder: Path, edit) -> Path:
    """A copy of the trained run as someone shares it: unfinished (no metrics.json), config.yaml edited."""
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("metrics.json", "events.*", "evaluate-*"))
    data = yaml.safe_load((folder / "config.yaml").read_text())
    edit(data)
    (folder / "config.yaml").write_text(yaml.safe_dump(data))
    return folder


def open_with(route: str, folder: Path, tmp_path: Path):
    """Opens the folder through one entry point, in process: resume=, evaluate or predict."""
    if route == "resume":
        return run(make_cfg([*QUIET, f"resume={folder}"], folder))
    ckpt = folder / "checkpoints" / "last.ckpt"
    if route == "evaluate":
        return evaluate(compose("evaluate", f"ckpt={ckpt}"))
    write_png(tmp_path / "images" / "a.png", 100)
    return predict(compose("predict", f"ckpt={ckpt}", f"input={tmp_path / 'images'}"))


def set_key(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for name in parents:
        data = data.setdefault(name, {})
    data[last] = value


# ---------------------------------------------------------------- the stored config as literal data
TRICKY = ["${oc.env:HOME}", "\\${x}", "\\\\${x}", "a\\b${x}", "$", "}", "$${x}", "x\\", "\\", "${x}\\\\",
          "\\\\\\${a}\\", "${${x}}", "'${x}'", "é ${x}"]
UNBALANCED = ["${", "a${b}c${"]  # literal too; OmegaConf.to_yaml (train.py) cannot write these


def test_stored_strings_stay_literal_through_repeated_resumes(tmp_path):
    path = tmp_path / "config.yaml"
    data = {"run_name": TRICKY[0], "notes": {"list": TRICKY + UNBALANCED, "n": 1e-5, "flag": True}}
    path.write_text(yaml.safe_dump(data))
    assert OmegaConf.to_container(load_stored_config(path), resolve=True) == data
    data["notes"]["list"] = TRICKY
    path.write_text(yaml.safe_dump(data))
    for _ in range(2):  # a resumed run writes its config.yaml back (train.py: to_yaml), a later resume reads it
        loaded = OmegaConf.to_container(load_stored_config(path), resolve=True)
        assert loaded == data
        path.write_text(OmegaConf.to_yaml(loaded))


def test_target_anywhere_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "config.yaml"
    for data, key in (({"model": {"init_args": {"act": {"_target_": "os.system"}}}}, "model.init_args.act._target_"),
                      ({"callbacks": {"extra": [{"_target_": "torch.load"}]}}, "callbacks.extra[0]._target_"),
                      ({"optuna_trial": {"pruner": {"_target_": "joblib.load"}}}, "optuna_trial.pruner._target_")):
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError, match="never builds an object") as err:
            load_stored_config(path)
        assert err.value.key == key and str(path) in str(err.value)


def test_unreadable_config_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    for text, problem in (("model: {class_path: [unclosed\n", "is not valid YAML"), ("- a\n- b\n", "not a mapping"),
                          ("a: 1\na: 2\n", "duplicate key")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=problem) as err:
            load_stored_config(path)
        assert err.value.value == str(path) and f"fix {path} or restore it" in str(err.value)


def test_session_handle_is_dropped(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"seed": 1, "optuna_trial": {"storage": "sqlite:///x.db", "trial_id": 3}}))
    assert OmegaConf.to_container(load_stored_config(path)) == {"seed": 1}


@pytest.mark.parametrize("class_path, trusted, allowed", [
    ("torch.optim.SGD", "", True), ("torch.optimx.Evil", "", False), ("trainlabx.Net", "", False),
    ("lightning.pytorch.callbacks.EarlyStopping", "", True), ("torchvision.models.resnet18", "", True),
    ("evilmod.Net", "", False), ("evilmod.Net", "evil", False), ("evilmod.Net", " other , evilmod ", True),
    ("evilmod.sub.Net", "evilmod.", True), ("os.system", "evilmod", False)])
def test_class_paths_are_checked_on_module_boundaries(tmp_path, monkeypatch, class_path, trusted, allowed):
    monkeypatch.setenv(TRUSTED_ENV, trusted)
    path = tmp_path / "config.yaml"  # a seam the next issue may add: the whole tree is walked
    path.write_text(yaml.safe_dump({"data": {"sources": [{"class_path": "trainlab.x"}, {"class_path": class_path}]}}))
    if allowed:
        assert load_stored_config(path).data.sources[1].class_path == class_path
        return
    with pytest.raises(ConfigError, match=f"export {TRUSTED_ENV}=") as err:
        load_stored_config(path)
    assert err.value.key == "data.sources[1].class_path" and err.value.value == class_path


# ---------------------------------------------------------------- route 1: the pruner's _target_
LOADERS = {"torch.load": {"f": None, "weights_only": False}, "numpy.load": {"file": None, "allow_pickle": True},
           "joblib.load": {"filename": None}}


def pruner_spec(loader: str, payload: Path) -> dict:
    return {"_target_": loader, **{k: str(payload) if v is None else v for k, v in LOADERS[loader].items()}}


@pytest.mark.parametrize("loader", LOADERS)
def test_pruner_payload_never_runs(loader, trained, tmp_path):
    control = tmp_path / "control"
    with contextlib.suppress(Exception):  # torch.load, say, then finds no magic number: the payload ran first
        instantiate(pruner_spec(loader, write_pickle(tmp_path / "c.pkl", touch(control))))
    assert control.exists()  # what the old code did with it: the payload is real

    folder = tmp_path / "shared"
    marker, payload = tmp_path / "marker", folder / "payload.pkl"
    spec = pruner_spec(loader, payload)
    shared(trained, folder, lambda d: d.update(optuna_trial={"storage": f"sqlite:///{folder}/x.db", "study": "s",
                                                             "trial_id": 1, "pruner": spec}))
    write_pickle(payload, touch(marker))
    with pytest.raises(ConfigError) as err:
        open_with("resume", folder, tmp_path)
    assert err.value.key == "optuna_trial.pruner._target_" and not marker.exists()

    # A job's own handle (what the sweeper passes) and the sweeper's settings build Optuna pruners only.
    cfg = make_cfg([*QUIET, f"++optuna_trial.storage=sqlite:///{tmp_path}/x.db", "++optuna_trial.study=s",
                    "++optuna_trial.trial_id=1"], tmp_path / "job")
    OmegaConf.update(cfg, "optuna_trial.pruner", spec, force_add=True)
    with pytest.raises(ConfigError, match="is not a class of optuna.pruners") as err:
        OptunaPruning.from_config(cfg)
    assert err.value.key == "optuna_trial.pruner._target_" and not marker.exists()
    settings = OmegaConf.create({"direction": "max", "storage": None, "study_name": "s",
                                 "sampler": {"_target_": "optuna.samplers.RandomSampler"}, "pruner": spec})
    with pytest.raises(ConfigError) as err:
        create_study(settings, tmp_path / "sweep")
    assert err.value.key == "hydra.sweeper.pruner._target_" and not marker.exists()


def test_optuna_objects_are_built_from_optuna_only():
    import optuna

    pruner = optuna_object({"_target_": "optuna.pruners.PatientPruner", "patience": 2,
                            "wrapped_pruner": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 4}},
                           "hydra.sweeper.pruner", "pruners")
    assert isinstance(pruner, optuna.pruners.PatientPruner)
    assert isinstance(optuna_object({"_target_": "optuna.samplers.TPESampler", "seed": 1}, "s", "samplers"),
                      optuna.samplers.TPESampler)
    for target in ("optuna.samplers.TPESampler", "optuna.pruners.os", "optuna.prunersx.MedianPruner", None):
        with pytest.raises(ConfigError, match="is not a class of optuna.pruners"):
            optuna_object({"_target_": target}, "optuna_trial.pruner", "pruners")
    with pytest.raises(ConfigError, match="MedianPruner does not take these arguments"):
        optuna_object({"_target_": "optuna.pruners.MedianPruner", "oops": 1}, "optuna_trial.pruner", "pruners")


# ---------------------------------------------------------------- route 3: class paths read back
@pytest.fixture
def evilmod(tmp_path, monkeypatch) -> Path:
    """A module on sys.path that leaves a marker when imported, with a network trainlab can train."""
    marker = tmp_path / "evilmod-imported"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "evilmod.py").write_text(f"""open({str(marker)!r}, "w").close()
from torch import nn


class Net(nn.Sequential):
    def __init__(self, input_shape, num_outputs, **unused):
        super().__init__(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_outputs))
""")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    yield marker
    sys.modules.pop("evilmod", None)


@pytest.mark.parametrize("route, key", [("resume", "model.class_path"), ("resume", "optimizer.class_path"),
                                        ("resume", "scheduler.class_path"), ("evaluate", "model.class_path"),
                                        ("predict", "model.class_path")])
def test_stored_class_path_is_never_imported(route, key, trained, evilmod, tmp_path):
    folder = shared(trained, tmp_path / "shared", lambda d: set_key(d, key, "evilmod.Net"))
    with pytest.raises(ConfigError, match=f"export {TRUSTED_ENV}=evilmod if you trust") as err:
        open_with(route, folder, tmp_path)
    assert err.value.key == key and err.value.value == "evilmod.Net"
    assert not evilmod.exists() and "evilmod" not in sys.modules


def test_typed_class_path_runs_and_trusted_modules_admit_it_on_resume(evilmod, tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    run(make_cfg([*QUIET, "model.class_path=evilmod.Net"], folder))  # typed by the user: runs as asked
    assert evilmod.exists()
    (folder / "metrics.json").unlink()  # as if it had been interrupted
    evilmod.unlink()
    sys.modules.pop("evilmod")
    with pytest.raises(ConfigError) as err:
        run(make_cfg([*QUIET, f"resume={folder}"], folder))
    assert err.value.key == "model.class_path" and not evilmod.exists()
    monkeypatch.setenv(TRUSTED_ENV, "evilmod")
    assert run(make_cfg([*QUIET, f"resume={folder}"], folder))["status"] == "ok"
    assert evilmod.exists()


def test_cli_refusals_are_one_line_and_exit_code_2(trained, evilmod, tmp_path):
    folder = shared(trained, tmp_path / "shared", lambda d: set_key(d, "model.class_path", "evilmod.Net"))
    env = {"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{evilmod.parent / 'mods'}"}
    proc = run_cli("evaluate.py", f"ckpt={folder / 'checkpoints' / 'last.ckpt'}", env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out and not evilmod.exists()
    lines = [line for line in out.splitlines() if "Config error" in line]
    assert len(lines) == 1 and "model.class_path='evilmod.Net'" in lines[0] and f"{TRUSTED_ENV}=evilmod" in lines[0]

    marker = tmp_path / "marker"
    write_pickle(folder / "payload.pkl", touch(marker))
    data = yaml.safe_load((folder / "config.yaml").read_text())
    set_key(data, "model.class_path", "trainlab.models.SeedCNN")
    data["optuna_trial"] = {"pruner": pruner_spec("torch.load", Path("${paths.output_dir}/payload.pkl"))}
    (folder / "config.yaml").write_text(yaml.safe_dump(data))
    proc = run_cli("train.py", f"resume={folder}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out and not marker.exists()
    assert "optuna_trial.pruner._target_='torch.load'" in out


# ---------------------------------------------------------------- route 4: resolvers in stored values
def test_stored_resolvers_stay_literal(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_TEST_SECRET", "s3cr3t-value")
    planted = tmp_path / "planted"
    name = f"${{oc.env:TRAINLAB_TEST_SECRET}} ${{trainlab.run_folder:null,{planted}}}"
    folder = shared(trained, tmp_path / "shared", lambda d: d.update(run_name=name))
    for route in ("evaluate", "predict", "resume"):
        open_with(route, folder, tmp_path)
    assert not planted.exists()
    metrics = yaml.safe_load((folder / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["run_name"] == name
    assert yaml.safe_load((folder / "config.yaml").read_text())["run_name"] == name
    for path in folder.rglob("*"):  # config.yaml, metrics.json, TensorBoard's event files (hparams)
        assert not path.is_file() or b"s3cr3t-value" not in path.read_bytes(), path


# ---------------------------------------------------------------- route 2: CIFAR-10's pickles
class Py2Pickler(pickle._Pickler):
    """Bytes as Python 2 `str` (BINSTRING), as the real CIFAR-10 files (Python 2, numpy 1) hold them."""

    def save_bytes(self, obj):
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, bytes: save_bytes}


def test_cifar_reads_the_real_files_format(tmp_path):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump({b"batch_label": b"training batch 1 of 5", b"labels": [3, 7],
                                         b"data": data, b"filenames": [b"a.png", b"b.png"]})
    raw = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw
    (tmp_path / "data_batch_1").write_bytes(raw)
    batch = sources._cifar_batch(tmp_path / "data_batch_1", ("data", "labels"))
    assert np.array_equal(batch["data"], data) and batch["labels"] == [3, 7] and batch["filenames"] == ["a.png", "b.png"]


@pytest.mark.parametrize("how, name", [("os.system", "batches.meta"), ("subprocess", "data_batch_1"),
                                       ("exec", "test_batch")])
def test_cifar_pickle_payloads_are_refused(how, name, cfg_factory, tmp_path):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(touch(control, how)))
    assert control.exists()

    marker = tmp_path / "marker"
    folder = write_cifar10_like(tmp_path / "data", n_per_batch=4)
    write_pickle(folder / name, touch(marker, how))
    cfg = cfg_factory("dataset=cifar10", f"paths.data_dir={tmp_path / 'data'}", "dataset.download=false")
    with pytest.raises(ConfigError, match="which a CIFAR-10 batch never holds") as err:
        sources.load(cfg.dataset, cfg.task)
    assert err.value.key == "dataset.root" and err.value.value == str(folder / name) and not marker.exists()


@pytest.mark.parametrize("route", ["resume", "evaluate", "predict"])
def test_cifar_payload_in_a_shared_folder_never_runs(route, trained, tmp_path):
    folder = tmp_path / "shared"
    shared(trained, folder, lambda d: d.update(dataset={**d["dataset"], "name": "cifar10", "download": False,
                                                         "root": str(folder / "data"), "channels": 3}))
    marker = tmp_path / "marker"
    meta = write_cifar10_like(folder / "data", n_per_batch=4) / "batches.meta"
    write_pickle(meta, touch(marker))
    with pytest.raises(ConfigError, match="which a CIFAR-10 batch never holds") as err:
        open_with(route, folder, tmp_path)
    assert err.value.value == str(meta) and not marker.exists()


# ---------------------------------------------------------------- route 5: pretrained weights
def test_planted_pretrained_file_is_refused(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    marker = tmp_path / "marker"
    planted = write_pickle(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth", touch(marker))
    folder = shared(trained, tmp_path / "shared", lambda d: d.update(model={
        "class_path": "trainlab.models.TorchvisionNet",
        "init_args": {"name": "resnet18", "pretrained": True, "freeze_backbone": False}}))
    with pytest.raises(ConfigError, match=f"the cached weights file {planted} does not match the sha256 prefix "
                                          f"f37072fd") as err:
        open_with("resume", folder, tmp_path)
    assert err.value.key == "model.init_args.pretrained" and f"delete {planted}" in str(err.value)
    assert not marker.exists() and planted.exists()  # refused, not deleted: the user decides


def test_pretrained_weights_are_hash_checked_and_loaded_weights_only(tmp_path, monkeypatch):
    """Offline: the weights enum's URL (torchvision's data, the only thing patched) points at a local file
    named as torchvision names them, `<model>-<sha256 prefix>.pth`; torch.hub downloads file:// URLs."""
    import torchvision

    from trainlab.models.vision import TorchvisionNet, pretrained_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    weights = torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT

    def offer(content: bytes, prefix: str | None = None) -> Path:
        prefix = prefix or hashlib.sha256(content).hexdigest()[:8]
        source = tmp_path / "server" / f"mobilenet_v3_small-{prefix}.pth"
        source.parent.mkdir(exist_ok=True)
        source.write_bytes(content)
        monkeypatch.setattr(weights.value, "url", source.as_uri())
        return cache / source.name

    real = torchvision.models.mobilenet_v3_small().state_dict()
    buffer = io.BytesIO()
    torch.save(real, buffer)
    cached = offer(buffer.getvalue())
    net = TorchvisionNet((3, 32, 32), 4, name="mobilenet_v3_small", pretrained=True)  # downloaded, checked, loaded
    assert cached.is_file() and torch.equal(net.net.features[0][0].weight, real["features.0.0.weight"])

    wrong = offer(b"not the weights", prefix="0123abcd")
    with pytest.raises(ConfigError, match="could not be downloaded .RuntimeError: invalid hash value"):
        pretrained_weights("mobilenet_v3_small")
    assert not wrong.exists() and not list(cache.glob("*.partial")) and not list(cache.glob("tmp*"))

    marker = tmp_path / "marker"
    evil = offer(pickle.dumps(touch(marker)))  # its name carries its own hash: only weights-only loading stops it
    with pytest.raises(ConfigError, match="holds more than weights") as err:
        TorchvisionNet((3, 32, 32), 4, name="mobilenet_v3_small", pretrained=True)
    assert str(evil) in str(err.value) and not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # restored after the build


# ---------------------------------------------------------------- route 6: storage passwords
def test_redaction_hides_the_password_and_jobs_get_the_real_url(monkeypatch):
    assert redact("postgresql+psycopg2://user:SECRET@host/db") == "postgresql+psycopg2://user:***@host/db"
    assert redact("mysql://u:p@ss:w/rd@h:3306/db?x=1") == "mysql://u:***@h:3306/db?x=1"
    assert redact("postgresql://:SECRET@host/db") == "postgresql://:***@host/db"
    for plain in ("sqlite:////tmp/x.db", "sqlite:///rel.db", "postgresql://user@host:5432/db",
                  "postgresql://host:5432/db"):
        assert redact(plain) == plain
    real = "postgresql+psycopg2://user:SECRET@host/db"
    monkeypatch.setenv(STORAGE_ENV, real)
    assert job_storage(redact(real)) == real and job_storage("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    monkeypatch.delenv(STORAGE_ENV)
    with pytest.raises(ConfigError, match=f"is redacted and {STORAGE_ENV} does not hold its URL"):
        job_storage(redact(real))


def sweep(sweep_dir: Path, env: dict) -> subprocess.CompletedProcess:
    result = run_cli("train.py", "-m", "hparams_search=optuna", *TINY, *SPACE, "test_after_fit=false", "logger=csv",
                     "trainer.max_epochs=2", f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=1",
                     "hydra.sweeper.storage=${oc.env:TRAINLAB_TEST_STORAGE}", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def reported(storage: str) -> list[int]:
    import optuna

    (trial,) = optuna.load_study(study_name="trainlab", storage=storage).trials
    return sorted(trial.intermediate_values)  # the job's pruning callback reached the study


def test_sweep_storage_from_the_environment(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sweep(tmp_path / "sweep", {"TRAINLAB_TEST_STORAGE": storage})
    assert reported(storage) == [0, 1]
    job = tmp_path / "sweep" / "0"
    assert f"++optuna_trial.storage='{storage}'" in (job / ".hydra" / "overrides.yaml").read_text()
    assert "optuna_trial" not in (job / "config.yaml").read_text()  # a per-session handle, not a setting
    assert "storage: ${oc.env:TRAINLAB_TEST_STORAGE}" in (job / ".hydra" / "hydra.yaml").read_text()


def test_storage_password_is_never_written(tmp_path, postgres_url):  # noqa: F811
    secret = "pw-9f3Kq"  # the test server trusts loopback, so any password connects: what matters is where it goes
    storage = postgres_url.replace("postgres@", f"postgres:{secret}@")
    result = sweep(tmp_path / "sweep", {"TRAINLAB_TEST_STORAGE": storage})
    assert reported(storage) == [0, 1]
    assert secret not in result.stdout + result.stderr
    assert "postgres:***@" in (tmp_path / "sweep" / "0" / ".hydra" / "overrides.yaml").read_text()
    for path in (tmp_path / "sweep").rglob("*"):  # overrides, Hydra's records, config.yaml, metrics, logs
        assert not path.is_file() or secret.encode() not in path.read_bytes(), path


def test_stored_overrides_stay_literal(tmp_path, monkeypatch):
    """A job's .hydra/overrides.yaml from a shared sweep folder (read by the resumed sweep's identity check
    and by the report) is read as typed: no resolver runs."""
    from trainlab import report
    from trainlab.trust import load_stored_overrides

    monkeypatch.setenv("TRAINLAB_TEST_SECRET", "s3cret")
    planted = tmp_path / "planted"
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    typed = [f"optimizer.lr=${{trainlab.run_folder:null,{planted}}}", "run_name=${oc.env:TRAINLAB_TEST_SECRET}"]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(typed))
    assert load_stored_overrides(job / ".hydra" / "overrides.yaml") == typed
    assert report.load_job(job)["overrides"] == typed
    assert not planted.exists()

"""The config contract (schema.py, config.validate, preflight.py): every bad value is one ConfigError naming
its key, on one line, raised before any data loads and before the run folder exists."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONF, ROOT, TINY, make_cfg
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from trainlab import config, preflight, schema, seams
from trainlab.config import ConfigError
from trainlab.train import run

NO_GPU = not torch.cuda.is_available()
FOLDER = "{folder}"  # replaced by a real image folder of 3 classes

# (overrides, the key the error must name)
CASES = [
    # top level
    (["seed=abc"], "seed"), (["seed=-1"], "seed"), (["seed=1.5"], "seed"), (["seed=4294967296"], "seed"),
    (["task=segmentation"], "task"), (["monitor=val/f1"], "monitor"), (["monitor_mode=up"], "monitor_mode"),
    (["top_k=-1"], "top_k"), (["top_k=abc"], "top_k"), (["top_k=10"], "top_k"),
    (["no_decay_norm_and_bias=maybe"], "no_decay_norm_and_bias"), (["test_after_fit=maybe"], "test_after_fit"),
    (["run_name=[1,2]"], "run_name"), (["+foo=1"], "foo"), (["+ckpt_path=x.ckpt"], "ckpt_path"),
    (["+optimzer.lr=0.1"], "optimzer.lr"), (["paths.data_dir=null"], "paths.data_dir"),
    (["paths.cache_dir=5"], "paths.cache_dir"), (["+optuna_trial.trial_id=-1"], "optuna_trial.trial_id"),
    (["figures=maybe"], "figures"), (["tune=lr_find", "tune.min_lr=0"], "tune.min_lr"),
    (["tune=lr_find", "tune.min_lr=0.1", "tune.max_lr=0.01"], "tune.min_lr"),
    (["tune=lr_find", "tune.num_training=1"], "tune.num_training"),
    (["tune=lr_find", "tune.early_stop_threshold=0.5"], "tune.early_stop_threshold"),
    (["tune=lr_find", "+tune.init_val=4"], "tune.init_val"), (["tune=batch_size", "tune.init_val=0"], "tune.init_val"),
    (["tune=batch_size", "tune.max_trials=abc"], "tune.max_trials"), (["tune=batch_size", "+tune.max_lr=1"], "tune.max_lr"),
    (["tune=lr_find", "trainer.devices=2"], "trainer.devices"), (["tune=lr_find", "debug=fdr"], "trainer.fast_dev_run"),
    (["tune=batch_size", "resume=outputs/a-run"], "tune"),
    (["finetune.preprocessing=maybe"], "finetune.preprocessing"), (["finetune.preprocessing=true"], "finetune.preprocessing"),
    (["finetune.unfreeze_after_epochs=0"], "finetune.unfreeze_after_epochs"),
    (["model=mlp", "finetune.unfreeze_after_epochs=2"], "finetune.unfreeze_after_epochs"),
    (["trainer=ddp_cpu", "finetune.unfreeze_after_epochs=2"], "finetune.unfreeze_after_epochs"),
    # model
    (["model.init_args.channels=[]"], "model.init_args.channels"),
    (["model.init_args.kernel_size=100"], "model.init_args.kernel_size"),
    (["model.init_args.pool_size=0"], "model.init_args.pool_size"),
    (["model.init_args.dropout=1.5"], "model.init_args.dropout"),
    (["model.init_args.dropout=-0.5"], "model.init_args.dropout"),
    (["model.init_args.kernel_size=abc"], "model.init_args.kernel_size"),
    (["model=mlp", "model.init_args.hidden=abc"], "model.init_args.hidden"),
    (["model=lenet", "model.init_args.kernel_size=20"], "model.init_args.kernel_size"),
    (["model.class_path=trainlab.models.Nope"], "model.class_path"),
    (["model.init_args=null"], "model.init_args"),
    (["+model.init_args.depth=3"], "model.init_args.depth"),
    (["+model.init_args.num_outputs=5"], "model.init_args.num_outputs"),
    (["++model.dropout=0.5"], "model.dropout"),
    (["model=torchvision", "model.init_args.name=resnet9000"], "model.init_args.name"),
    (["model=torchvision", "model.init_args.pretrained=maybe"], "model.init_args.pretrained"),
    (["model.num_outputs_arg=num_classes"], "model.num_outputs_arg"), (["model.in_channels_arg=5"], "model.in_channels_arg"),
    (["+model.init_args.input_shape=[1,2,3]"], "model.init_args.input_shape"),
    (["model=timm", "model.init_args.model_name=test_resnet", "model.num_outputs_arg=null"], "model.class_path"),
    (["model=timm", "model.init_args.model_name=resnet9000"], "model.init_args.model_name"),
    (["model=timm", "+model.init_args.num_classes=3"], "model.init_args.num_classes"),
    # module
    (["module.class_path=trainlab.module.Nope"], "module.class_path"), (["module.class_path=torch.nn.Linear"], "module.class_path"),
    (["module.init_args=null"], "module.init_args"), (["+module.init_args.smoothing=0.1"], "module.init_args.smoothing"),
    (["+module.init_args.net=1"], "module.init_args.net"), (["++module.foo=1"], "module.foo"),
    (["module=distill"], "module.init_args.teacher"),
    (["module=distill", "module.init_args.teacher=/nonexistent/run"], "module.init_args.teacher"),
    (["module=distill", "module.init_args.alpha=2"], "module.init_args.alpha"),
    (["module=distill", "module.init_args.temperature=0"], "module.init_args.temperature"),
    (["module=distill", "+module.init_args.tmperature=2"], "module.init_args.tmperature"),
    # optimizer
    (["optimizer.init_args.betas=[2,3]"], "optimizer.init_args.betas"),
    (["optimizer.init_args.eps=abc"], "optimizer.init_args.eps"),
    (["optimizer.init_args.amsgrad=maybe"], "optimizer.init_args.amsgrad"),
    (["optimizer.init_args=null"], "optimizer.init_args"),
    (["optimizer.lr=1e308"], "optimizer.lr"), (["optimizer.lr=inf"], "optimizer.lr"), (["optimizer.lr=0"], "optimizer.lr"),
    (["optimizer.lr=abc"], "optimizer.lr"), (["optimizer.weight_decay=inf"], "optimizer.weight_decay"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay"), (["++optimizer.foo=1"], "optimizer.foo"),
    (["+optimizer.init_args.momentum=0.9"], "optimizer.init_args.momentum"),
    (["optimizer=rprop", "optimizer.weight_decay=0.1"], "optimizer.weight_decay"),
    (["optimizer.class_path=torch.optim.Nope"], "optimizer.class_path"),
    (["optimizer.backbone_lr_mult=0"], "optimizer.backbone_lr_mult"),
    (["optimizer.backbone_lr_mult=abc"], "optimizer.backbone_lr_mult"),
    (["model=mlp", "optimizer.backbone_lr_mult=0.1"], "optimizer.backbone_lr_mult"),
    (["model=torchvision", "model.init_args.name=mobilenet_v3_small", "model.init_args.freeze_backbone=true",
      "optimizer.backbone_lr_mult=0.1"], "optimizer.backbone_lr_mult"),
    (["optimizer=sgd", "optimizer.init_args.momentum=-1"], "optimizer.init_args.momentum"),
    (["optimizer=nesterov", "optimizer.init_args.dampening=0.5"], "optimizer.init_args.dampening"),
    # scheduler
    (["scheduler=step", "scheduler.init_args.step_size=0"], "scheduler.init_args.step_size"),
    (["scheduler.mode=max"], "scheduler.mode"), (["scheduler.monitor=val/loss"], "scheduler.monitor"),
    (["scheduler=step", "scheduler.monitor=val/loss"], "scheduler.monitor"),
    (["scheduler=plateau", "scheduler.monitor=val/accuracy"], "scheduler.monitor"),
    (["scheduler=plateau", "scheduler.mode=up"], "scheduler.mode"),
    (["scheduler=plateau", "scheduler.mode=null"], "scheduler.mode"),
    (["scheduler.interval=hour"], "scheduler.interval"), (["scheduler.frequency=0"], "scheduler.frequency"),
    (["scheduler.warmup_steps=-1"], "scheduler.warmup_steps"),
    (["scheduler=exponential", "scheduler.init_args.gamma=abc"], "scheduler.init_args.gamma"),
    (["++scheduler.init_args.gamma=0.5"], "scheduler.init_args"),
    (["scheduler=onecycle", "optimizer=adagrad"], "scheduler.init_args.cycle_momentum"),
    (["scheduler=cosine", "+scheduler.init_args.T_max=10"], "scheduler.init_args.T_max"),
    (["scheduler=plateau", "scheduler.init_args.threshold_mode=foo"], "scheduler.init_args.threshold_mode"),
    (["scheduler=linear", "scheduler.init_args.start_factor=2"], "scheduler.init_args.start_factor"),
    (["scheduler.class_path=torch.optim.lr_scheduler.Nope"], "scheduler.class_path"),
    # dataset
    (["dataset.channels=2"], "dataset.channels"), (["dataset=image_folder"], "dataset.root"),
    (["dataset=image_folder", "dataset.root=/nonexistent/images"], "dataset.root"),
    (["dataset.batch_size=0"], "dataset.batch_size"), (["dataset.batch_size=abc"], "dataset.batch_size"),
    (["dataset.eval_batch_size=0"], "dataset.eval_batch_size"), (["dataset.image_size=0"], "dataset.image_size"),
    (["dataset.image_size=100000"], "dataset.image_size"), (["dataset.val_fraction=1.5"], "dataset.val_fraction"),
    (["dataset.val_fraction=0"], "dataset.val_fraction"), (["dataset.test_fraction=1"], "dataset.test_fraction"),
    (["dataset.val_fraction=0.6", "dataset.test_fraction=0.5"], "dataset.val_fraction"),
    (["dataset.num_workers=2"], "dataset.num_workers"), (["dataset.num_workers=-1"], "dataset.num_workers"),
    (["dataset.in_memory=auto"], "dataset.in_memory"), (["dataset.in_memory=maybe"], "dataset.in_memory"),
    (["dataset.download=true"], "dataset.download"), (["dataset.root=/data"], "dataset.root"),
    (["dataset.bad_images=skip"], "dataset.bad_images"), (["dataset.csv_file=x.csv"], "dataset.csv_file"),
    (["dataset.test_fraction=null"], "dataset.test_fraction"), (["dataset.name=svhn"], "dataset.name"),
    (["task=regression"], "task"), (["dataset.memory_limit_mb=0"], "dataset.memory_limit_mb"),
    (["dataset=image_csv", "dataset.root=/tmp"], "dataset.csv_file"),
    (["dataset.oversample=sometimes"], "dataset.oversample"), (["dataset.oversample=1.5"], "dataset.oversample"),
    (["dataset.oversample=0"], "dataset.oversample"), (["dataset.oversample_bins=20"], "dataset.oversample_bins"),
    (["dataset.class_weights=yes"], "dataset.class_weights"),
    (["dataset.oversample=balanced", "dataset.class_weights=balanced"], "dataset.class_weights"),
    (["dataset=image_folder", f"dataset.root={FOLDER}", "dataset.bad_images=maybe"], "dataset.bad_images"),
    (["dataset=image_folder", f"dataset.root={FOLDER}", "dataset.in_memory=true"], "dataset.num_workers"),
    (["dataset=image_folder", f"dataset.root={FOLDER}", "top_k=3"], "top_k"),
    (["dataset.name=null"], "dataset.name"), (["dataset.image_size=null"], "dataset.image_size"),
    (["+dataset.init_args.n=1"], "dataset.init_args"), (["dataset.class_path=seam_data_classes.Nope"], "dataset.class_path"),
    (["dataset.class_path=seam_data_classes.Wine", "+dataset.init_args.scale=2"], "dataset.init_args.scale"),
    (["dataset.class_path=seam_data_classes.Wine", "+dataset.init_args.standardize=maybe"],
     "dataset.init_args.standardize"),
    (["dataset.class_path=seam_data_classes.Wine", "dataset.root=/data"], "dataset.root"),
    (["dataset.class_path=seam_data_classes.Wine", "dataset.val_fraction=0.6", "dataset.test_fraction=0.5"],
     "dataset.val_fraction"),
    (["dataset.class_path=seam_data_classes.WineModule", "+dataset.init_args.batch_size=8"],
     "dataset.init_args.batch_size"),
    # augmentation
    (["augmentation.hflip=maybe"], "augmentation.hflip"), (["augmentation.crop_size=40"], "augmentation.crop_size"),
    (["augmentation.crop_size=0"], "augmentation.crop_size"), (["augmentation.crop_size=abc"], "augmentation.crop_size"),
    (["augmentation.padding=-1"], "augmentation.padding"), (["augmentation.padding=abc"], "augmentation.padding"),
    (["augmentation.normalize=maybe"], "augmentation.normalize"),
    (["augmentation.per_sample=maybe"], "augmentation.per_sample"), (["+augmentation.rotate=10"], "augmentation.rotate"),
    (["augmentation.affine.degrees=-5"], "augmentation.affine.degrees"),
    (["augmentation.affine.degrees=200"], "augmentation.affine.degrees"),
    (["augmentation.affine.translate=1.5"], "augmentation.affine.translate"),
    (["augmentation.affine.scale=[1.2,0.8]"], "augmentation.affine.scale"),
    (["augmentation.affine.scale=0.9"], "augmentation.affine.scale"),
    (["augmentation.affine.scale=[0,1]"], "augmentation.affine.scale"),
    (["augmentation.color.brightness=-0.1"], "augmentation.color.brightness"),
    (["augmentation.color.contrast=abc"], "augmentation.color.contrast"),
    (["augmentation.color.hue=0.6"], "augmentation.color.hue"),
    (["augmentation.color.saturation=0.2"], "augmentation.color.saturation"),  # digits: 1 channel
    (["augmentation.color.hue=0.1"], "augmentation.color.hue"),
    (["augmentation.policy.name=autoaugment"], "augmentation.policy.name"),
    (["augmentation.policy.num_ops=3"], "augmentation.policy.num_ops"),  # read by randaugment only
    (["augmentation=randaugment", "augmentation.policy.num_ops=0"], "augmentation.policy.num_ops"),
    (["augmentation=randaugment", "augmentation.policy.magnitude=30"], "augmentation.policy.magnitude"),
    (["augmentation=trivial", "augmentation.policy.magnitude=5"], "augmentation.policy.magnitude"),
    (["augmentation.erasing.p=1.5"], "augmentation.erasing.p"),
    (["augmentation.erasing.scale=[0.1,0.4]"], "augmentation.erasing.scale"),  # read when erasing.p > 0 only
    (["augmentation.erasing.p=0.5", "augmentation.erasing.scale=[0.1,2]"], "augmentation.erasing.scale"),
    (["augmentation.mixup.alpha=-1"], "augmentation.mixup.alpha"), (["augmentation.mixup.p=0.5"], "augmentation.mixup.p"),
    (["augmentation=mixup", "augmentation.mixup.p=2"], "augmentation.mixup.p"),
    (["augmentation.cutmix.alpha=abc"], "augmentation.cutmix.alpha"), (["augmentation.cutmix.p=0.5"], "augmentation.cutmix.p"),
    (["+augmentation.mixup.beta=1"], "augmentation.mixup.beta"),
    # trainer
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches"),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch"),
    (["trainer.precision=foo"], "trainer.precision"), (["trainer.strategy=foo"], "trainer.strategy"),
    (["trainer.devices=0"], "trainer.devices"), (["trainer.devices=abc"], "trainer.devices"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs"), (["trainer.max_epochs=0"], "trainer.max_epochs"),
    pytest.param(["trainer.accelerator=gpu"], "trainer.accelerator", marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is here")),
    pytest.param(["trainer=gpu"], "trainer.accelerator", marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is here")),
    (["trainer.accelerator=tpuu"], "trainer.accelerator"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val"),
    (["trainer.limit_train_batches=0"], "trainer.limit_train_batches"),
    (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches"),
    (["trainer.limit_val_batches=0"], "trainer.limit_val_batches"),
    (["trainer.limit_test_batches=0"], "trainer.limit_test_batches"),
    (["trainer.max_steps=-2"], "trainer.max_steps"), (["trainer.min_epochs=-1"], "trainer.min_epochs"),
    (["trainer.num_nodes=0"], "trainer.num_nodes"), (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps"),
    (["trainer.deterministic=maybe"], "trainer.deterministic"), (["trainer.benchmark=maybe"], "trainer.benchmark"),
    (["trainer.fast_dev_run=-1"], "trainer.fast_dev_run"), (["trainer.compile=maybe"], "trainer.compile"),
    (["trainer.channels_last=maybe"], "trainer.channels_last"),
    (["trainer.overfit_batches=-1"], "trainer.overfit_batches"),
    (["trainer.overfit_batches=1.5"], "trainer.overfit_batches"), (["+trainer.foo=1"], "trainer.foo"),
    # logger
    (["+logger.kind=wandb"], "logger.kind"), (["logger.tensorboard.class_path=x.Y"], "logger.tensorboard.class_path"),
    (["logger.image_grid=maybe"], "logger.image_grid"), (["logger=csv", "logger.histograms=true"], "logger.histograms"),
    (["logger=csv", "logger.image_grid=true"], "logger.image_grid"), (["logger.histograms=maybe"], "logger.histograms"),
    (["+logger.foo=1"], "logger.foo"),
    # callbacks
    (["callbacks.checkpoint.save_top_k=-5"], "callbacks.checkpoint.save_top_k"),
    (["callbacks.checkpoint.save_last=maybe"], "callbacks.checkpoint.save_last"),
    (["callbacks.checkpoint.every_n_train_steps=-1"], "callbacks.checkpoint.every_n_train_steps"),
    (["callbacks.checkpoint.every_n_train_steps=0"], "callbacks.checkpoint.every_n_train_steps"),
    (["callbacks.early_stopping.patience=abc"], "callbacks.early_stopping.patience"),
    (["callbacks.early_stopping.enabled=maybe"], "callbacks.early_stopping.enabled"),
    (["callbacks.early_stopping.min_delta=-0.1"], "callbacks.early_stopping.min_delta"),
    (["callbacks.progress_bar.refresh_rate=-1"], "callbacks.progress_bar.refresh_rate"),
    (["callbacks.progress_bar.refresh_rate=0"], "callbacks.progress_bar.refresh_rate"),
    (["callbacks.progress_bar.min_seconds=-1"], "callbacks.progress_bar.min_seconds"),
    (["callbacks.model_summary.max_depth=-2"], "callbacks.model_summary.max_depth"),
    (["+callbacks.lr_monitor.enabled=true"], "callbacks.lr_monitor.enabled"),
    (["+callbacks.extra.lrm.class_path=lightning.pytorch.callbacks.LearningRateMonitor"],
     "callbacks.extra.lrm.init_args"),
]


def _ids(case) -> str:
    values = case.values if hasattr(case, "values") else case
    return " ".join(values[0])


@pytest.mark.parametrize("overrides,key", CASES, ids=[_ids(c) for c in CASES])
def test_bad_input_is_one_line_naming_the_key_before_data_loads(overrides, key, cfg_factory, tmp_path, image_folder):
    overrides = [o.replace(FOLDER, str(image_folder)) for o in overrides]
    cfg = cfg_factory(*overrides, tiny="trainer=gpu" not in overrides)  # TINY pins trainer.accelerator=cpu
    with pytest.raises(ConfigError) as err:
        run(cfg)
    message = str(err.value)
    assert err.value.key == key, message
    assert message.startswith(f"{key}=") and "\n" not in message and "Fix: " in message
    frames = [entry.path for entry in err.traceback]
    assert not [f for f in frames if "trainlab/data/" in str(f) or str(f).endswith("build.py")], frames
    assert not (tmp_path / "run").exists()  # nothing written: the run folder is made after the checks


@pytest.mark.parametrize("overrides,key", CASES, ids=[_ids(c) for c in CASES])
def test_bad_input_on_the_command_line_exits_2_with_one_line_on_stderr(overrides, key, tmp_path, image_folder,
                                                                     monkeypatch, capsys, caplog):
    """The same table through train.py's entry point (cli.launch, in-process to keep it fast): exit status 2,
    one line on stderr naming the key, nothing on stdout, no traceback, no folder, and Hydra's task (which
    would make the run folder and load the data) never starts."""
    from trainlab.cli import check_train, launch

    overrides = [o.replace(FOLDER, str(image_folder)) for o in overrides]
    tiny = [o for o in TINY if "trainer=gpu" not in overrides]
    monkeypatch.setattr("sys.argv", ["train.py", *tiny, *overrides, f"hydra.run.dir={tmp_path / 'out' / 'run'}"])

    def task_started():
        raise AssertionError("the pre-check let a bad input through to Hydra's task")

    with pytest.raises(SystemExit) as stop:
        launch(CONF, "train", task_started, checks=check_train)
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Config error: {key}=") and "Fix: " in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    # Before Hydra configures logging, a library's warning record would print beside the one line.
    noisy = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert not noisy, noisy


def test_the_table_covers_every_group():
    groups = {(c.values if hasattr(c, "values") else c)[1].split(".")[0] for c in CASES}
    assert set(schema.GROUPS) <= groups and len(CASES) >= 100


def _leaves(node: DictConfig, prefix: str = ""):
    """The KEYS paths of a config's values (a named logger or callback as `<name>`)."""
    for name in node:
        path = f"{prefix}{name}"
        if schema.declared(path) in schema.BY_PATH:
            yield schema.declared(path)
        elif isinstance(node._get_node(name), DictConfig):
            yield from _leaves(node[name], path + ".")
        else:
            yield schema.declared(path)


@pytest.mark.parametrize("group", schema.GROUPS)
def test_every_key_of_every_option_is_declared(group):
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        cfg = make_cfg([f"{group}={option}"], Path("/tmp/unused"))
        leaves = set(_leaves(cfg))
        assert leaves <= set(schema.BY_PATH), f"{group}={option}: {leaves - set(schema.BY_PATH)}"
        required = {k.path for k in schema.KEYS if not k.optional and "<name>" not in k.path}
        assert required <= leaves, f"{group}={option} lacks {required - leaves}"


def test_readme_key_tables_are_the_schemas():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration reference"):readme.index("## Scaling out")]
    for group in ("top", *schema.GROUPS):
        assert schema.markdown(group) in section, f"regenerate with: python -m trainlab.schema --markdown {group}"


@pytest.mark.parametrize("group,option", [("experiment", "optimizer_comparisn"), ("hparams_search", "optunaa"),
                                          ("optimizer", "adamax")])
def test_an_unknown_option_of_any_group_lists_the_options(group, option):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["paths.output_dir=/tmp/unused"], return_hydra_config=True)
        choices = {**OmegaConf.to_container(cfg.hydra.runtime.choices), group: option}
        with pytest.raises(ConfigError) as err:
            config.check_choices(choices)
        config.check_choices(OmegaConf.to_container(cfg.hydra.runtime.choices))  # the defaults pass
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert err.value.key == group and all(o in str(err.value) for o in options)


@pytest.mark.parametrize("edit,key", [(lambda c: c["trainer"].update(max_epochs="three"), "trainer.max_epochs"),
                                      (lambda c: c["optimizer"].pop("lr"), "optimizer.lr")])
def test_a_bad_stored_config_says_to_edit_that_file(edit, key, cfg_factory, tmp_path):
    run_dir = tmp_path / "run"
    stored = config.plain(cfg_factory())
    edit(stored)
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(stored))
    with pytest.raises(ConfigError) as err:
        run(cfg_factory(f"resume={run_dir}"))
    assert err.value.key == key and f"edit {key} in {run_dir / 'config.yaml'}" in str(err.value)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]  # nothing else written


def test_preflight_is_cheap_the_second_time(cfg_factory):
    resolved = config.plain(cfg_factory("model=lenet", "scheduler=cosine"))
    start = time.perf_counter()
    preflight.check(resolved)
    first = time.perf_counter() - start
    start = time.perf_counter()
    preflight.check(resolved)
    assert time.perf_counter() - start < min(0.05, first / 5)


def test_user_class_init_args_are_checked_against_its_signature():
    class Net(torch.nn.Module):  # a user's network: its own arguments, typed by their defaults
        def __init__(self, input_shape, num_outputs, width: int = 8, residual: bool = False):
            super().__init__()

    schema.check_init_args("model", Net, {"width": 16, "residual": True}, seams.NETWORK_ARGS)
    for args, key, words in (({"widht": 16}, "model.init_args.widht", "did you mean model.init_args.width"),
                             ({"residual": "maybe"}, "model.init_args.residual", "must be true or false"),
                             ({"num_outputs": 3}, "model.init_args.num_outputs", "is set by trainlab")):
        with pytest.raises(ConfigError) as err:
            schema.check_init_args("model", Net, args, seams.NETWORK_ARGS)
        assert err.value.key == key and words in str(err.value)

"""The root scripts' command line: every config mistake is one line on stderr and exit status 2, before
Hydra makes a run folder and before data loads.

`launch` composes the config with Hydra's compose API and the command-line overrides (as Hydra will),
turns Hydra's composition errors into one line with the closest valid names, runs the value checks, and
only then hands over to `hydra.main`. With `-m` (or a config that sets hydra.mode=MULTIRUN) every job of
a basic sweep (the cartesian product, as Hydra's BasicSweeper builds it) is composed and checked up front,
for sweeps of at most SWEEP_CHECK_LIMIT jobs; in larger ones the first SWEEP_CHECK_LIMIT are, and each
job checks its own config when it starts. Other sweepers (Optuna) pick values as they go: only the
config without the sweep is checked. `resume=` skips the value checks: the stored config is what runs,
and train.run validates it. --help, --cfg and Hydra's own flags skip all of this and never import torch.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from hydra import compose
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab import config, config_folders, resume, tune
from trainlab.cli_help import fast_help
from trainlab.config import ConfigError
from trainlab.distributed import launched_as_rank_zero

SWEEP_CHECK_LIMIT = 64  # sweep jobs composed and checked before the first one starts
# Flags that print or hand work to Hydra without running the task: no pre-check, no torch.
HYDRA_ONLY = {"--cfg", "-c", "--info", "-i", "--hydra-help", "--version", "--shell-completion", "-sc",
              "--experimental-rerun", "--config-path", "-cp"}
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def launch(conf: Path, config_name: str, hydra_main: Callable, checks: Callable | None = None) -> None:
    """Run a root script: fast --help, the pre-check (exit 2 on a config mistake), then Hydra."""
    try:
        if fast_help(conf, config_name):  # a config folder that is not there is a config error here too
            return
        sys.argv[1:] = precheck(conf, config_name, sys.argv[1:], checks)
    except ConfigError as err:
        print(f"Config error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    hydra_main()


def check_train(cfg: DictConfig, choices: dict | None = None) -> None:
    """train.py's checks before data: the folder (Hydra would write its records into a run there before
    train.run refused it), the values, then what needs torch (class paths, arguments)."""
    resume.prepare(cfg)
    config.validate(cfg, choices)
    from trainlab import preflight

    preflight.check(config.plain(cfg))


def precheck(conf: Path, config_name: str, argv: list[str], checks: Callable | None) -> list[str]:
    """Raise ConfigError for the first mistake in the command line's configs (every sweep job's); returns
    the command line Hydra runs (`seeds=N` expanded)."""
    if any(arg.split("=", 1)[0] in HYDRA_ONLY for arg in argv) or not launched_as_rank_zero():
        return argv  # other DDP ranks re-run the command rank 0 has checked
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = get_args_parser().parse_args(argv)
    config_name = args.config_name or config_name
    parser = OverridesParser.create()
    seeds = [arg for arg in args.overrides if arg.split("=", 1)[0] == SEEDS]
    parsed = [_parse(parser, arg) for arg in args.overrides if arg not in seeds]
    folders = config_folders.from_args(args)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    # Composing may resolve hydra.run.dir/sweep.dir (OmegaConf does when a config such as an experiment
    # merges onto it): with trainlab.run_folder that would create the folder.
    with config_folders.initialized(conf, folders), _planned_folders():
        _check_group_values(parsed)
        base = _compose(conf, config_name, fixed)
        mode = OmegaConf.select(base, "hydra.mode")
        multirun = args.multirun or getattr(mode, "name", mode) == "MULTIRUN"  # experiment configs set it
        if seeds:
            argv, parsed = _expand_seeds(seeds[-1], argv, parsed, parser, base, multirun)
        if not multirun:
            if any(o.is_sweep_override() for o in parsed):  # Hydra's "Ambiguous value" with our wording
                _compose(conf, config_name, [o.input_line for o in parsed])
            _check_job(base, multirun=False, checks=checks)
            return argv
        jobs = [fixed]
        if OmegaConf.select(base, "hydra.sweeper._target_") == BASIC_SWEEPER:
            jobs = _sweep_jobs(parser, base, parsed)
        hydra_overrides = [o.input_line for o in parsed if o.is_hydra_override()]
        for number, job in enumerate(jobs[:SWEEP_CHECK_LIMIT]):
            cfg = base if job is fixed else _compose(conf, config_name, hydra_overrides + job)
            try:
                _check_job(cfg, multirun=True, checks=checks)
            except ConfigError as err:
                where = f"job {number} of the sweep's {len(jobs)} ({' '.join(job) or 'no overrides'})"
                raise ConfigError(err.key, err.value, f"{err.problem} in {where}", err.fix) from None
    return argv


SEEDS = "seeds"  # seeds=N: a multirun over N seeds from `seed` (seed, seed+1, ...), for the report's seed groups


def _expand_seeds(arg: str, argv: list[str], parsed, parser, base: DictConfig, multirun: bool):
    """`seeds=N` as `seed=s,s+1,...,s+N-1` (s: the composed seed): the command line and its parsed overrides."""
    value = arg.split("=", 1)[1]
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(SEEDS, value, "must be a whole number >= 1 (how many seeds each configuration runs)",
                          "seeds=3")
    if not multirun:
        raise ConfigError(SEEDS, value, "runs one job per seed, which needs a multirun",
                          f"add -m: python train.py -m seeds={value} ...")
    given = [o for o in parsed if o.get_key_element().lstrip("+~") == "seed"]
    if any(o.is_sweep_override() for o in given):
        raise ConfigError(SEEDS, value, f"and {given[0].input_line} both choose the seeds",
                          f"give one of them: seeds={value} (from seed={base.seed}) or seed=1,2,3")
    sweep = parser.parse_override(f"seed={','.join(str(int(base.seed) + i) for i in range(int(value)))}")
    dropped = {arg, *(o.input_line for o in given)}
    return [a for a in argv if a not in dropped] + [sweep.input_line], [o for o in parsed if o not in given] + [sweep]


def _parse(parser, arg: str):
    try:
        return parser.parse_override(arg)
    except HydraException as err:
        key, _, value = arg.partition("=")
        reason = str(err).splitlines()[0]
        raise ConfigError(key, value, f"is not valid override syntax ({reason})",
                          "write key=value; quote a value with spaces or special characters: "
                          "'key=\"a b\"'; lists are key=[1,2]") from None


def _groups() -> dict[str, list[str]]:
    """Each config group (nested ones as a/b) and its options, in trainlab's conf/ and the user's folders."""
    groups: dict[str, set[str]] = {}
    for src in config_folders.searched():
        for group, options in config_folders.group_options(src).items():
            groups.setdefault(group, set()).update(options)
    return {group: sorted(options) for group, options in groups.items()}


LIST_GROUPS = ("logger", "callbacks")  # options that compose: logger=[tensorboard,csv]


def _check_group_values(parsed) -> None:
    # Hydra fails with a bare ValueError or TypeError when a group is given a number or a list (a list of options
    # is one of Hydra's own only where trainlab's options are made to compose).
    groups = _groups()
    for o in parsed:
        if o.key_or_group not in groups or o.is_sweep_override():
            continue
        value = o.value()
        if isinstance(value, list) and o.key_or_group in LIST_GROUPS:
            for option in value:
                if not isinstance(option, str) or option not in groups[o.key_or_group]:
                    raise _unknown_option(o.key_or_group, str(option), groups[o.key_or_group])
        elif not isinstance(value, (str, type(None))):
            raise _unknown_option(o.key_or_group, o.get_value_element_as_str(), groups[o.key_or_group])


def _compose(conf: Path, config_name: str, overrides: list[str]) -> DictConfig:
    try:
        return compose(config_name, overrides=overrides, return_hydra_config=True)
    except MissingConfigException as err:
        group, _, option = (err.missing_cfg_file or "").rpartition("/")
        if not group:
            raise
        raise _unknown_option(group, option, list(err.options or _groups().get(group, []))) from None
    except ConfigCompositionException as err:
        raise _composition_error(err, overrides, conf, config_name) from None


def _unknown_option(group: str, option: str, options: list[str]) -> ConfigError:
    if group == "model" and _is_torchvision_model(option):
        return ConfigError("model", option, "is a torchvision model, not a trainlab model option",
                           f"model=torchvision model.init_args.name={option}")
    close = difflib.get_close_matches(option, options, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(f'{group}={c}' for c in close)}? " if close else ""
    return ConfigError(group, option, f"is not an option of config group {group}",
                       f"{hint}options: {', '.join(options)} (folders searched: "
                       f"{config_folders.folder_names(config_folders.searched())})")


def _is_torchvision_model(name: str) -> bool:
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)


def _composition_error(err, overrides: list[str], conf: Path, config_name: str) -> ConfigError:
    """Hydra's multi-line composition errors as one line; a misspelled key gets the closest names."""
    message = str(err)
    unknown = re.match(r"Could not override '(.+?)'", message)
    if unknown:
        key = unknown.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), None)
        others = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
        return ConfigError(key, value, "is not a key of the config", _closest_key(key, value, config_name, others))
    first, *rest = [line.strip() for line in message.splitlines() if line.strip()]
    culprit = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") in first), None)
    key, value = culprit.partition("=")[::2] if culprit else ("overrides", " ".join(overrides))
    return ConfigError(key, value, first.rstrip("."), " ".join(rest) or "see `python train.py --cfg job` "
                       "for the config's keys")


def _closest_key(key: str, value, config_name: str, others: list[str]) -> str:
    """The nearest existing key path, one level at a time (never `+key`: that adds a stray key)."""
    cfg = compose(config_name, overrides=others, return_hydra_config=True)
    node, path = cfg, []
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            break
        keys = [str(k) for k in node.keys()]  # not `part in node`: that resolves hydra.run.dir (claims it)
        if part not in keys:
            close = difflib.get_close_matches(part, keys, n=1, cutoff=0.5)
            if not close:
                return f"the keys at {'.'.join(path) or 'the top level'}: {', '.join(keys)}"
            part = close[0]
        path.append(part)
        node = node._get_node(part)
    suggestion = ".".join(path + key.split(".")[len(path):])
    return f"did you mean {suggestion}={value}?"


def _check_job(cfg: DictConfig, multirun: bool, checks: Callable | None) -> None:
    tune.check(cfg, multirun)  # before the resume shortcut: tune with resume= is refused too
    if cfg.get("resume"):
        return  # the stored config runs: train.run validates it
    run_dir = _check_folder(cfg, multirun)
    if checks is None:
        return
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]  # resolving it would run trainlab.run_folder, which claims the folder
        if "paths" in job:
            job.paths.output_dir = str(run_dir)
    checks(job, choices)


def _check_folder(cfg: DictConfig, multirun: bool) -> Path:
    """The run (or sweep) folder must be creatable: no file in its place, a parent we may write to."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    folder = Path(str(OmegaConf.select(cfg, key)))
    if folder == Path("."):  # evaluate.py, predict.py
        return folder
    existing = next(p for p in [folder, *folder.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(key, str(folder), f"cannot be a folder: {existing} is a file",
                          f"give a new folder path, e.g. {key}=outputs/my-run")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(key, str(folder), f"cannot be created: {existing} is not writable",
                          f"give a folder you can write to, e.g. {key}=$HOME/trainlab-runs/my-run")
    return folder


@contextmanager
def _planned_folders():
    """hydra.run.dir / hydra.sweep.dir resolve to the folder a run would get, without creating it."""
    name = "trainlab.run_folder"
    OmegaConf.register_new_resolver(name, lambda resume, fresh: str(resume or fresh), replace=True)
    try:
        yield
    finally:
        OmegaConf.register_new_resolver(name, config._run_folder, replace=True)


def _sweep_jobs(parser, base: DictConfig, parsed) -> list[list[str]]:
    """Each job's overrides as Hydra's BasicSweeper makes them: the config's sweeper params, then the
    command line's task overrides, as a cartesian product."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra

    params = OmegaConf.select(base, "hydra.sweeper.params")
    arguments = [f"{k}={v}" for k, v in OmegaConf.to_container(params).items()] if params else []
    arguments += [o.input_line for o in parsed if not o.is_hydra_override()]
    overrides = parser.parse_overrides(arguments)
    for override in overrides:  # glob(*) over a group lists its options through the config loader
        override.config_loader = GlobalHydra.instance().config_loader()
    return BasicSweeper.split_arguments(overrides, None)[0]

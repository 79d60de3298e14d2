"""The user's own config folders: `model/`, `dataset/`, `module/`, `experiment/`... YAMLs kept outside trainlab.

A folder joins Hydra's config search path three ways, in this order after trainlab's own `conf/`:
`TRAINLAB_CONFIG_PATH` (folders or `pkg://` modules, `:`-separated; added by the Hydra search-path plugin
hydra_plugins.trainlab_config_path, so train.py, evaluate.py, predict.py and the compose API see it alike),
`--config-dir`/`-cd` (Hydra's own flag) and `hydra.searchpath=[...]`. Relative paths are relative to the
current directory. Hydra loads an option from the first folder on the path that holds it, so an option named
like one of trainlab's is never used: choosing it is refused (config.check_choices). Hydra is imported inside
the functions: the plugin loads this module with every Hydra app, before Hydra has finished loading.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ENV = "TRAINLAB_CONFIG_PATH"
SEARCHPATH_KEY = "hydra.searchpath"
_SCHEME = re.compile(r"^[a-z]+://")


@dataclass(frozen=True)
class Folder:
    entry: str    # a Hydra search-path entry: file:///absolute/path or pkg://module
    origin: str   # where it was given: TRAINLAB_CONFIG_PATH, --config-dir or hydra.searchpath


def entry(text: str) -> str:
    """A folder as Hydra's search path holds it: `pkg://x` and `file:///abs` as given, any other path (or a
    relative `file://` one) made absolute against the current directory."""
    text = str(text).strip()
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif _SCHEME.match(text):
        return text
    return "file://" + os.path.abspath(os.path.expanduser(text))


def from_env(environ=None) -> list[Folder]:
    """TRAINLAB_CONFIG_PATH's folders; `:` separates them except in `pkg://` and `file://`."""
    value = (os.environ if environ is None else environ).get(ENV, "")
    parts = re.split(rf"{re.escape(os.pathsep)}(?!//)", value)
    return [Folder(entry(p), ENV) for p in parts if p.strip()]


def from_command_line(config_dir: str | None, searchpath) -> list[Folder]:
    """The folders `--config-dir` and a `hydra.searchpath=[...]` override add, in Hydra's order."""
    folders = [Folder(entry(config_dir), "--config-dir")] if config_dir else []
    if isinstance(searchpath, str):
        searchpath = [searchpath]
    return folders + [Folder(entry(p), SEARCHPATH_KEY) for p in searchpath or []]


def from_args(args) -> list[Folder]:
    """from_command_line for a root script's arguments as Hydra's own argument parser reads them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    searchpath = None
    for arg in args.overrides:
        if arg.split("=", 1)[0] == SEARCHPATH_KEY:
            searchpath = OverridesParser.create().parse_override(arg).value()
    return from_command_line(args.config_dir, searchpath)


def source(folder: Folder):
    """Hydra's ConfigSource for a folder (file:// or pkg://): lists and finds its YAMLs."""
    from hydra._internal.sources_registry import SourcesRegistry
    from hydra.core.plugins import Plugins

    Plugins.instance()  # registers Hydra's config source types
    scheme = folder.entry.split("://", 1)[0]
    return SourcesRegistry.instance().resolve(scheme)(provider=folder.origin, path=folder.entry)


def check(folders: list[Folder]) -> None:
    """Each folder exists (Hydra itself only warns that it 'is not available', then misses every option in it)."""
    from trainlab.config import ConfigError

    for folder in folders:
        if not source(folder).available():
            what = "is not an importable package" if folder.entry.startswith("pkg://") else "is not a folder"
            raise ConfigError(folder.origin, folder.entry.removeprefix("file://"), what,
                              "give a folder holding group folders such as model/ and dataset/ (a relative path "
                              "is relative to the current directory), or pkg://<package> of an installed package")


def group_options(src) -> dict[str, list[str]]:
    """Each group (nested ones as a/b) of a config source and its options."""
    from hydra.core.object_type import ObjectType

    found: dict[str, list[str]] = {}

    def walk(prefix: str) -> None:
        for name in sorted(src.list(prefix, ObjectType.GROUP)):
            group = f"{prefix}/{name}" if prefix else name
            options = sorted(src.list(group, ObjectType.CONFIG))
            if options:
                found[group] = options
            walk(group)

    walk("")
    return found


def searched() -> list:
    """The config sources of the Hydra in use, Hydra's own and the structured schema left out: trainlab's
    conf/, then the user's folders (a hydra.searchpath of the running app's config included)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    sources = list(GlobalHydra.instance().config_loader().get_sources())
    known = {s.path for s in sources}
    if HydraConfig.initialized():  # under hydra.main: a command line's hydra.searchpath is not in the loader's
        extra = from_command_line(None, list(HydraConfig.get().searchpath))
        sources += [source(f) for f in extra if f.entry not in known]
    return [s for s in sources if s.provider not in ("hydra", "schema") and s.available()]


def label(src) -> str:
    """A config source as the user names it: a folder's path, or pkg://<package>."""
    return src.path if src.scheme() == "file" else f"{src.scheme()}://{src.path}"


def folder_names(sources) -> str:
    return ", ".join(label(s) for s in sources)


@contextmanager
def initialized(conf: Path, folders: list[Folder], job_name: str = "app"):
    """Hydra's compose API over trainlab's conf/ and the given folders, as `hydra.main` searches them
    (TRAINLAB_CONFIG_PATH's folders come from the search-path plugin, as there)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from hydra import version

    check(from_env() + folders)
    backup = get_gh_backup()
    version.setbase("1.3")
    search_path = create_config_search_path(str(conf))
    for folder in folders:
        search_path.prepend(provider=folder.origin, path=folder.entry, anchor=SearchPathQuery(provider="schema"))
    Hydra.create_main_hydra2(task_name=job_name, config_search_path=search_path)
    try:
        yield
    finally:
        restore_gh_from_backup(backup)

"""`python train.py --help` in well under a second.

Hydra's own --help builds a config repository (a deep copy) for every config group, Hydra's dozens
included, to list them (~1 s more than composing the config). The app's groups are just the
folders of conf/, so listing them is a directory scan; the config is composed as usual.
`--hydra-help` still goes to Hydra.
"""
from __future__ import annotations

import sys
from pathlib import Path

TEMPLATE = """{app} is powered by Hydra; trainlab's options are described in README.md.

== Configuration groups ==
Compose your configuration from those groups (group=option)

{groups}

== Config ==
Override anything in the config (foo.bar=value)

{config}
Powered by Hydra (https://hydra.cc)
Use --hydra-help to view Hydra specific help
"""


def list_groups(sources) -> list[str]:
    """`group: options` lines: trainlab's conf/ (the first source), then each of the user's folders, its
    options marked with the folder; one that trainlab's own shadows is marked so (Hydra reads the first)."""
    from trainlab.config_folders import group_options, label

    builtin, *users = [(src, group_options(src)) for src in sources]
    lines = [f"{group}: {', '.join(options)}" for group, options in builtin[1].items()]
    for src, groups in users:
        for group, options in groups.items():
            marked = [o + (" (hidden: trainlab has one of that name)" if o in builtin[1].get(group, []) else "")
                      for o in options]
            lines.append(f"{group}: {', '.join(marked)}  [your folder {label(src)}]")
    return lines


def fast_help(conf: Path, config_name: str, argv: list[str] | None = None) -> bool:
    """Print the app help and return True if argv asks for --help/-h; else return False."""
    argv = sys.argv[1:] if argv is None else argv
    if not {"--help", "-h"} & set(argv):
        return False
    from hydra import compose
    from hydra._internal.utils import get_args_parser
    from omegaconf import OmegaConf

    import trainlab.config  # noqa: F401  (registers resolvers)
    from trainlab.config_folders import from_args, initialized, searched

    args, _ = get_args_parser().parse_known_args(argv)
    with initialized(conf, from_args(args)):
        cfg = compose(config_name, overrides=args.overrides)
        groups = list_groups(searched())
    app = Path(sys.argv[0]).stem or config_name
    print(TEMPLATE.format(app=app, groups="\n".join(groups), config=OmegaConf.to_yaml(cfg)))
    return True

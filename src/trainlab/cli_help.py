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


def list_groups(conf: Path, prefix: str = "") -> list[str]:
    lines = []
    for folder in sorted(p for p in conf.iterdir() if p.is_dir()):
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options:
            lines.append(f"{prefix}{folder.name}: {', '.join(options)}")
        lines += list_groups(folder, f"{prefix}{folder.name}/")
    return lines


def fast_help(conf: Path, config_name: str, argv: list[str] | None = None) -> bool:
    """Print the app help and return True if argv asks for --help/-h; else return False."""
    argv = sys.argv[1:] if argv is None else argv
    if not {"--help", "-h"} & set(argv):
        return False
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import trainlab.config  # noqa: F401  (registers resolvers)

    overrides = [a for a in argv if not a.startswith("-")]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides)
    app = Path(sys.argv[0]).stem or config_name
    print(TEMPLATE.format(app=app, groups="\n".join(list_groups(conf)), config=OmegaConf.to_yaml(cfg)))
    return True

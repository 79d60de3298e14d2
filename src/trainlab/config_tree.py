"""The resolved config as a tree, printed when a run starts (print_config=true), like lightning-hydra-template's
rich tree in plain text (rich is not a dependency).

Under train.py it goes through the `trainlab.config_tree` logger: conf/hydra/job_logging sends it to stdout
(before the model summary) and, through the root logger, into train.log. Without that logging (the compose
API in a notebook, a test) it is printed."""
from __future__ import annotations

import logging

log = logging.getLogger("trainlab.config_tree")


def render(settings: dict, title: str = "config") -> str:
    return "\n".join([title, *_branches(settings, "")])


def _branches(node: dict, indent: str):
    items = list(node.items())
    for i, (key, value) in enumerate(items):
        last = i == len(items) - 1
        elbow, more = ("└── ", "    ") if last else ("├── ", "│   ")
        if isinstance(value, dict) and value:
            yield f"{indent}{elbow}{key}"
            yield from _branches(value, indent + more)
        else:
            yield f"{indent}{elbow}{key}: {_value(value)}"


def _value(value) -> str:
    from trainlab.schema import show

    return "{}" if value == {} else show(value)


def show_tree(settings: dict) -> None:
    text = render(settings)
    if log.handlers:  # conf/hydra/job_logging's: stdout, and train.log through the root logger
        log.info(text)
    else:
        print(text, flush=True)

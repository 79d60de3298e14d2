"""What reaches the console: Lightning's records once, through the handlers of conf/hydra/job_logging
(warnings on the console, INFO lines in train.log), and no advertising or deprecation noise."""
from __future__ import annotations

import logging
import warnings

# Lightning's own INFO lines that are no news to a trainlab user (the litlogger/litmodels tips).
TIPS = ("💡 Tip:",)
# Lightning calling torch's deprecated pytree API: nothing a user can act on.
DEPRECATIONS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)


def _no_tip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(TIPS)


def quiet_lightning() -> None:
    """Call after importing lightning, before the Trainer exists."""
    for message in DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _no_tip not in rank_zero.filters:
        rank_zero.addFilter(_no_tip)
    if logging.getLogger().handlers:  # under Hydra: its root handlers print and file every record
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True  # lightning.pytorch stops propagating when imported before Hydra's logging

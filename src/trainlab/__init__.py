"""trainlab: config-driven experiments for PyTorch models (Hydra + Lightning + TensorBoard).

Importing the package is cheap: torch, Lightning and torchvision load only inside a run, so
`python train.py --help` and `--cfg job` answer at once.
"""

import time

__version__ = "0.1.0"
IMPORTED_AT = time.time()

"""Model tests: torch's OpenMP threads wait passively, as in the runs that train the models.

``quant_assets.models.torch_training`` sets ``OMP_WAIT_POLICY=PASSIVE`` before it imports torch;
the runtime reads it once, when torch loads, and the test modules import torch themselves, so it is
set here too, before any of them is collected.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

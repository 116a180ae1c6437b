"""``nhits_model``: N-HiTS in PyTorch, a new version at every materialization.

Multi-rate pooling and hierarchical interpolation after the paper, sized for 2 CPU cores.
"""

from quant_assets.defs.assets._model_asset import build_model_asset

nhits_model = build_model_asset("nhits", kinds={"pytorch", "parquet"})

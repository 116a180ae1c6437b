"""``patchtst_model``: PatchTST in PyTorch, a new version at every materialization.

Patching, channel independence and RevIN after the paper, sized for 2 CPU cores.
"""

from quant_assets.defs.assets._model_asset import build_model_asset

patchtst_model = build_model_asset("patchtst", kinds={"pytorch", "parquet"})

"""Models of ``fwd_ret_12``: XGBoost, LightGBM, N-HiTS and PatchTST behind one interface.

Imports no Dagster. :data:`MODELS` maps each name of :data:`~quant_assets.models.base.MODEL_NAMES`
to its :class:`~quant_assets.models.base.ForecastModel` class; a model's module (and its library:
xgboost, lightgbm or torch) is imported the first time its class is looked up, so importing this
package stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from quant_assets.models.base import MODEL_NAMES, ForecastModel

_MODULES = {
    "xgboost": "quant_assets.models.xgboost_model",
    "lightgbm": "quant_assets.models.lightgbm_model",
    "nhits": "quant_assets.models.nhits",
    "patchtst": "quant_assets.models.patchtst",
}


class _Models(Mapping[str, type[ForecastModel]]):
    """name -> model class, each module imported on first use."""

    def __getitem__(self, name: str) -> type[ForecastModel]:
        if name not in _MODULES:
            raise KeyError(f"unknown model {name!r}; known: {list(MODEL_NAMES)}")
        module = importlib.import_module(_MODULES[name])
        found = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, ForecastModel)
            and value.__module__ == module.__name__
            and getattr(value, "name", None) == name
        ]
        if len(found) != 1:
            raise ImportError(f"{module.__name__} must define one ForecastModel with name {name!r}")
        return found[0]

    def __iter__(self) -> Iterator[str]:
        return iter(MODEL_NAMES)

    def __len__(self) -> int:
        return len(MODEL_NAMES)


MODELS: Mapping[str, type[ForecastModel]] = _Models()

__all__ = ["MODELS", "MODEL_NAMES"]

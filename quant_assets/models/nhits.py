"""N-HiTS in plain PyTorch (Challu, Olivares, Oreshkin, Garza, Mergenthaler-Canseco, Dubrawski:
"N-HiTS: Neural Hierarchical Interpolation for Time Series Forecasting", AAAI 2023).

The network is a sequence of stacks (one block each by default). A block

1. pools its input window at its own rate (``pool_sizes``, max pooling: multi-rate sampling), the
   residual of the forecast channel and the other channels alike (the other channels enter as
   N-HiTS's historical exogenous inputs);
2. feeds the flattened pooled window to an MLP that outputs a backcast of the whole window and
   ``max(horizon // downsample, 1)`` forecast coefficients (``downsample_factors``);
3. interpolates the coefficients linearly to the horizon (hierarchical interpolation: the first
   stacks forecast coarse, slow components, the last one every bar).

Doubly residual stacking: each block receives the forecast channel's window minus the backcasts of
the blocks before it, and the forecast is the sum of every block's forecast. The forecast is the path
of the next 12 standardized 1-bar log returns; its sum is the ``fwd_ret_12`` prediction
(:mod:`quant_assets.models.torch_training` gives the windows, scaling and training loop).

Departures from neuralforecast 3.3's ``NHITS`` (whose defaults :class:`Config` otherwise takes): its
block MLP starts with an extra linear layer without activation (two linear maps in a row are one
linear map, so the paper's MLP is kept); its forecast starts from the last input value (a level for
prices; for returns the paper's zero start is kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from quant_assets.models.base import HORIZON_BARS
from quant_assets.models.torch_training import TorchConfig, TorchForecastModel


@dataclass(frozen=True)
class Config(TorchConfig):
    """N-HiTS settings; defaults are neuralforecast 3.3's (3 stacks of 1 block, MLPs of 512 x 512,
    pooling 2/2/1, downsampling 4/2/1) on 3 channels, sized for a 2-core CPU and a 300 s budget.

    Attributes:
        hidden_sizes: units of each hidden layer of every block's MLP.
        pool_sizes: max-pooling kernel (= stride) of each stack.
        downsample_factors: each stack forecasts ``max(horizon // factor, 1)`` coefficients.
        blocks_per_stack: blocks in each stack.
        dropout: dropout after each hidden layer.
    """

    hidden_sizes: tuple[int, ...] = (512, 512)
    pool_sizes: tuple[int, ...] = (2, 2, 1)
    downsample_factors: tuple[int, ...] = (4, 2, 1)
    blocks_per_stack: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.pool_sizes) != len(self.downsample_factors) or not self.pool_sizes:
            raise ValueError("pool_sizes and downsample_factors need one entry per stack, as many of each")
        if min(self.pool_sizes) < 1 or min(self.downsample_factors) < 1 or not self.hidden_sizes:
            raise ValueError("pool sizes and downsample factors must be >= 1, and an MLP needs a layer")

    @classmethod
    def small(cls) -> Config:
        """A few seconds on a few symbols and days (tests, demo)."""
        return cls.small_profile(hidden_sizes=(64, 64))

    @classmethod
    def neuralforecast(cls) -> Config:
        """neuralforecast 3.3's NHITS defaults with h=12, input_size=96, 1,024 windows a step, MAE,
        one channel (the series itself): the configuration the benchmark times."""
        return cls(
            input_size=96,
            channels=("ret_1",),
            hidden_sizes=(512, 512),
            pool_sizes=(2, 2, 1),
            downsample_factors=(4, 2, 1),
            batch_size=1024,
            learning_rate=1e-3,
            loss="mae",
        )


class Block(nn.Module):
    """One N-HiTS block: pool, MLP, backcast and interpolated forecast."""

    def __init__(self, config: Config, pool: int, downsample: int) -> None:
        super().__init__()
        self.input_size = config.input_size
        self.pool = nn.MaxPool1d(kernel_size=pool, stride=pool, ceil_mode=True)
        pooled = math.ceil(config.input_size / pool) * len(config.channels)
        layers: list[nn.Module] = []
        width = pooled
        for units in config.hidden_sizes:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = units
        self.knots = max(HORIZON_BARS // downsample, 1)
        layers.append(nn.Linear(width, config.input_size + self.knots))
        self.mlp = nn.Sequential(*layers)

    def forward(self, residual: torch.Tensor, others: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, input_size)`` residual and ``(batch, channels - 1, input_size)`` other channels
        -> backcast ``(batch, input_size)``, forecast ``(batch, horizon)``."""
        pooled = self.pool(torch.cat((residual.unsqueeze(1), others), dim=1))
        theta = self.mlp(pooled.flatten(1))
        backcast, knots = theta[:, : self.input_size], theta[:, self.input_size :]
        forecast = F.interpolate(knots.unsqueeze(1), size=HORIZON_BARS, mode="linear").squeeze(1)
        return backcast, forecast


class NHiTSNetwork(nn.Module):
    """Stacks of blocks with doubly residual connections: windows -> forecast path."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(config, pool, downsample)
            for pool, downsample in zip(config.pool_sizes, config.downsample_factors, strict=True)
            for _ in range(config.blocks_per_stack)
        )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``(batch, input_size, channels)`` standardized windows -> ``(batch, horizon)`` path."""
        residual = windows[:, :, 0]
        others = windows[:, :, 1:].transpose(1, 2)
        forecast = windows.new_zeros(windows.shape[0], HORIZON_BARS)
        for block in self.blocks:
            backcast, block_forecast = block(residual, others)
            residual = residual - backcast
            forecast = forecast + block_forecast
        return forecast


class NHiTS(TorchForecastModel):
    """N-HiTS forecasting ``fwd_ret_12`` from feature windows (see the module docstring)."""

    name: ClassVar[str] = "nhits"
    config_type: ClassVar[type[Config]] = Config

    def build_core(self) -> nn.Module:
        return NHiTSNetwork(cast(Config, self.config))  # ForecastModel.__init__ checked the type

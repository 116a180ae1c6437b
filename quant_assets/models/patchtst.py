"""PatchTST in plain PyTorch (Nie, Nguyen, Sinthong, Kalagnanam: "A Time Series is Worth 64 Words:
Long-term Forecasting with Transformers", ICLR 2023).

For each window:

1. RevIN: every channel of the window is normalized by its own mean (or its last value) and
   standard deviation; the forecast is mapped back with the forecast channel's statistics;
2. patching: each channel's window, padded at the end by repeating its last value ``stride`` times,
   is cut into patches of ``patch_len`` bars every ``stride`` bars (96 bars: 12 patches of 16);
3. channel independence: every channel is a separate sequence of patch tokens through the SAME
   linear patch embedding, learned positional embedding and transformer encoder (post-norm layers
   with BatchNorm, GELU feed-forward and, as in the reference code, residual attention scores);
4. flatten head: a channel's encoded tokens are flattened and mapped linearly to the horizon.

The channels' forecasts (in RevIN units) are then combined by a learned weight per channel,
initialised to the forecast channel alone, so with one channel the model is exactly the paper's and
with several the other channels can inform the forecast without mixing inside the encoder. The
forecast is the path of the next 12 standardized 1-bar log returns; its sum is the ``fwd_ret_12``
prediction (:mod:`quant_assets.models.torch_training`: windows, scaling, training loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from quant_assets.models.base import HORIZON_BARS
from quant_assets.models.torch_training import TorchConfig, TorchForecastModel

REVIN_EPS = 1e-5


@dataclass(frozen=True)
class Config(TorchConfig):
    """PatchTST settings. Defaults are sized for a 2-core CPU and a 300 s budget on 3 channels
    (neuralforecast 3.3's defaults, 3 layers of 128 units and 16 heads on one channel, are what the
    benchmark times: :meth:`neuralforecast`).

    Attributes:
        patch_len, stride: bars per patch and between patch starts.
        d_model, n_heads, d_ff, n_layers: the encoder.
        dropout: on embeddings, attention output and feed-forward; head_dropout: before the head.
        res_attention: add each layer's pre-softmax attention scores to the next layer's.
        revin_affine: learn a scale and shift per channel inside RevIN.
        revin_subtract_last: RevIN subtracts the window's last value instead of its mean.
        revin_restore_location: add the window's location (mean or last value) back to the
            forecast, as RevIN does. Off by default: for returns it adds 12 times the window's
            mean return to every prediction, a momentum bet made by construction; the forecast is
            then only rescaled by the window's standard deviation.
        batch_norm: BatchNorm (the paper's) or LayerNorm after each sublayer.
    """

    patch_len: int = 16
    stride: int = 8
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 128
    n_layers: int = 2
    dropout: float = 0.1
    head_dropout: float = 0.0
    res_attention: bool = True
    revin_affine: bool = False
    revin_subtract_last: bool = False
    revin_restore_location: bool = False
    batch_norm: bool = True
    batch_size: int = 512
    learning_rate: float = 5e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        if self.stride < 1 or not 1 <= self.patch_len <= self.input_size + self.stride:
            raise ValueError(
                f"need stride >= 1 and 1 <= patch_len <= input_size + stride, got stride {self.stride}, "
                f"patch_len {self.patch_len}, input_size {self.input_size}"
            )

    @property
    def patches(self) -> int:
        """Patches per channel window (the end padding adds one)."""
        return (self.input_size - self.patch_len) // self.stride + 2

    @classmethod
    def small(cls) -> Config:
        """A few seconds on a few symbols and days (tests, demo)."""
        return cls.small_profile(
            patch_len=8, stride=4, d_model=16, n_heads=2, d_ff=32, n_layers=1, dropout=0.0
        )

    @classmethod
    def neuralforecast(cls) -> Config:
        """neuralforecast 3.3's PatchTST defaults with h=12, input_size=96, 1,024 windows a step, MAE,
        one channel (its PatchTST is univariate): the configuration the benchmark times."""
        return cls(
            input_size=96,
            channels=("ret_1",),
            patch_len=16,
            stride=8,
            d_model=128,
            n_heads=16,
            d_ff=256,
            n_layers=3,
            dropout=0.2,
            head_dropout=0.0,
            res_attention=True,
            revin_affine=False,
            revin_subtract_last=True,
            revin_restore_location=True,
            batch_norm=True,
            batch_size=1024,
            learning_rate=1e-4,
            loss="mae",
        )


class Dropout(nn.Module):
    """Dropout drawing one 64-bit random number per four elements (16 bits each).

    ``torch.nn.Dropout`` draws a Bernoulli variable per element, the largest cost of a PatchTST
    training step on a CPU; four 16-bit uniforms per draw make the mask about 4x cheaper. The drop
    probability is `p` rounded to a multiple of 1/65536.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * 65536) - 32768  # int16 values below it are dropped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        keep = draws.view(torch.int16)[:n].view(x.shape) >= self.threshold
        scale = torch.tensor(1.0 / (1.0 - self.p), dtype=x.dtype)
        return x * torch.where(keep, scale, torch.zeros((), dtype=x.dtype))


class _Norm(nn.Module):
    """BatchNorm over the model dimension of ``(sequences, tokens, d_model)`` (statistics over every
    token of the batch, as the reference code's transposed ``BatchNorm1d``), or LayerNorm."""

    def __init__(self, d_model: int, *, batch_norm: bool) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        self.norm: nn.Module = nn.BatchNorm1d(d_model) if batch_norm else nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_norm:  # a contiguous (tokens, d_model) matrix: the fast BatchNorm path
            return self.norm(x.reshape(-1, x.shape[-1])).view(x.shape)
        return self.norm(x)


class EncoderLayer(nn.Module):
    """Multi-head self-attention and feed-forward, each added back then normalized (post-norm).

    With residual attention, the layer adds the previous layer's pre-softmax scores to its own
    (``attn_mask`` of PyTorch's fused attention) and hands the sum to the next layer.
    """

    def __init__(self, config: Config, *, last: bool = False) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.res_attention = config.res_attention and not last  # the last layer's scores go nowhere
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.dropout = Dropout(config.dropout)
        self.norm_attention = _Norm(config.d_model, batch_norm=config.batch_norm)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff),
            nn.GELU(),
            Dropout(config.dropout),
            nn.Linear(config.d_ff, config.d_model),
        )
        self.norm_feed_forward = _Norm(config.d_model, batch_norm=config.batch_norm)

    def forward(
        self, x: torch.Tensor, previous_scores: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(sequences, tokens, d_model)`` and the previous layer's scores -> output, scores."""
        sequences, tokens, d_model = x.shape
        qkv = self.qkv(x).view(sequences, tokens, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (sequences, heads, tokens, head_dim)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=previous_scores)
        scores = None
        if self.res_attention:
            scores = torch.matmul(q, k.transpose(-2, -1)) * self.head_dim**-0.5
            if previous_scores is not None:
                scores = scores + previous_scores
        attended = attended.transpose(1, 2).reshape(sequences, tokens, d_model)
        x = self.norm_attention(x + self.dropout(self.out(attended)))
        x = self.norm_feed_forward(x + self.dropout(self.feed_forward(x)))
        return x, scores


class PatchTSTNetwork(nn.Module):
    """RevIN, patching, channel-independent encoder, flatten head: windows -> forecast path."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        channels = len(config.channels)
        self.embed = nn.Linear(config.patch_len, config.d_model)
        self.position = nn.Parameter(torch.empty(config.patches, config.d_model).uniform_(-0.02, 0.02))
        self.dropout = Dropout(config.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(config, last=i == config.n_layers - 1) for i in range(config.n_layers)
        )
        self.head = nn.Linear(config.patches * config.d_model, HORIZON_BARS)
        self.head_dropout = Dropout(config.head_dropout)
        self.channel_weights = nn.Parameter(torch.zeros(channels))
        with torch.no_grad():
            self.channel_weights[0] = 1.0
        if config.revin_affine:
            self.revin_weight = nn.Parameter(torch.ones(channels))
            self.revin_bias = nn.Parameter(torch.zeros(channels))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``(batch, input_size, channels)`` standardized windows -> ``(batch, horizon)`` path."""
        config = self.config
        x = windows.transpose(1, 2)  # (batch, channels, input_size)
        batch, channels, _ = x.shape
        location = x[:, :, -1:] if config.revin_subtract_last else x.mean(dim=-1, keepdim=True)
        scale = torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + REVIN_EPS)
        x = (x - location) / scale
        if config.revin_affine:
            x = x * self.revin_weight[:, None] + self.revin_bias[:, None]
        x = torch.cat((x, x[:, :, -1:].expand(-1, -1, config.stride)), dim=-1)
        patches = x.unfold(-1, config.patch_len, config.stride)  # (batch, channels, patches, patch_len)
        tokens = self.embed(patches).reshape(batch * channels, config.patches, config.d_model)
        tokens = self.dropout(tokens + self.position)
        scores = None
        for layer in self.layers:
            tokens, scores = layer(tokens, scores)
        forecast = self.head_dropout(self.head(tokens.reshape(batch, channels, -1)))  # (batch, channels, h)
        if config.revin_affine:
            forecast = (forecast - self.revin_bias[:, None]) / (self.revin_weight[:, None] + REVIN_EPS**2)
        mixed = torch.einsum("bch,c->bh", forecast, self.channel_weights)
        restored = mixed * scale[:, 0]
        return restored + location[:, 0] if config.revin_restore_location else restored


class PatchTST(TorchForecastModel):
    """PatchTST forecasting ``fwd_ret_12`` from feature windows (see the module docstring)."""

    name: ClassVar[str] = "patchtst"
    config_type: ClassVar[type[Config]] = Config

    def build_core(self) -> nn.Module:
        return PatchTSTNetwork(cast(Config, self.config))  # ForecastModel.__init__ checked the type

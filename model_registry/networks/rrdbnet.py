"""Real-ESRGAN's RRDBNet (ESRGAN generator) with basicsr's module names, so official checkpoints load as-is.

State-dict keys: ``conv_first``, ``body.N.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``,
``conv_up2``, ``conv_hr``, ``conv_last`` (each ``.weight`` and ``.bias``). The x4 model upsamples
with nearest x2 twice; the x2 and x1 variants first fold pixels into channels (pixel-unshuffle by 2
or 4), as basicsr does. ``forward`` takes RGB in [0, 1] and returns RGB that may overshoot [0, 1]
slightly: callers clamp, as basicsr's inference does.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ("RRDBNet", "ResidualDenseBlock", "RRDB", "load_rrdbnet", "infer_rrdbnet_config")

_UNSHUFFLE = {4: 1, 2: 2, 1: 4}
"""scale -> pixel-unshuffle factor applied to the input (1: none)."""


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convolutions, each fed every earlier output; the result scaled by 0.2 plus the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, scaled by 0.2 plus the input."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator: ``num_block`` RRDBs, then two nearest-x2 upsampling convolutions."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in _UNSHUFFLE:
            raise ValueError(f"RRDBNet supports scale 1, 2 or 4, not {scale}")
        self.scale = scale
        self.num_in_ch, self.num_out_ch = num_in_ch, num_out_ch
        self.num_feat, self.num_block, self.num_grow_ch = num_feat, num_block, num_grow_ch
        unshuffle = _UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(num_in_ch * unshuffle * unshuffle, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unshuffle = _UNSHUFFLE[self.scale]
        if unshuffle > 1:
            # basicsr's pixel_unshuffle: the same channel order as torch's (c, i, j) flattening.
            x = F.pixel_unshuffle(x, unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def infer_rrdbnet_config(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """RRDBNet's constructor arguments, read off the shapes of a basicsr-keyed state dict."""
    try:
        first = state_dict["conv_first.weight"]
        last = state_dict["conv_last.weight"]
    except KeyError as missing:
        raise ValueError(f"not an RRDBNet state dict: no {missing.args[0]!r}") from None
    blocks = {int(m.group(1)) for key in state_dict if (m := re.match(r"body\.(\d+)\.", key))}
    num_block = max(blocks) + 1 if blocks else 0
    num_feat = int(first.shape[0])
    num_out_ch = int(last.shape[0])
    num_in_ch = num_out_ch  # the unshuffled variants fold the input: conv_first sees in_ch * f * f
    folded = int(first.shape[1])
    for scale, unshuffle in _UNSHUFFLE.items():
        if folded == num_in_ch * unshuffle * unshuffle:
            break
    else:
        raise ValueError(f"conv_first takes {folded} channels for {num_out_ch} output channels: no RRDBNet scale fits")
    grow = state_dict.get("body.0.rdb1.conv1.weight")
    num_grow_ch = int(grow.shape[0]) if grow is not None else 32
    return {
        "num_in_ch": num_in_ch,
        "num_out_ch": num_out_ch,
        "scale": scale,
        "num_feat": num_feat,
        "num_block": num_block,
        "num_grow_ch": num_grow_ch,
    }


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        loaded = load_file(str(path), device="cpu")
    else:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    for key in ("params_ema", "params"):
        if isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    state = {k.removeprefix("module."): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"{path} holds no tensors")
    return state


def load_rrdbnet(path: Path) -> RRDBNet:
    """An RRDBNet in fp32 on the CPU from a ``.pth`` (``params_ema``, else ``params``, else the dict
    itself) or a ``.safetensors`` file; its size is inferred from the tensors and loading is strict."""
    path = Path(path)
    state = _read_state_dict(path)
    network = RRDBNet(**infer_rrdbnet_config(state))
    network.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return network.eval()

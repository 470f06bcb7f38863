"""BRIA RMBG-1.4: a foreground-mask network (IS-Net, the U^2-Net of nested "RSU" U-blocks), written here.

Upstream is ``briarmbg.py`` in the briaai/RMBG-1.4 Hugging Face repo (class ``BriaRMBG``), which is the
``ISNetDIS`` of xuebinqin/DIS (``models/isnet.py``) with BRIA's weights: a stride-2 stem, six encoder
stages (RSU-7, -6, -5, -4 and two dilated RSU-4F), five decoder stages back up, and a 3x3 "side"
convolution per decoder level. Every attribute is named as upstream names it (``conv_in``,
``stage1``..``stage6``, ``stage5d``..``stage1d``, ``side1``..``side6``; inside an RSU ``rebnconvin``,
``rebnconv1``.., ``rebnconv6d``..``rebnconv1d``, each ``conv_s1`` + ``bn_s1``), so the released
``model.safetensors`` and ``model.pth`` load with strict key names. The default widths are the released
network: 44,046,790 parameters in 798 state-dict entries (112 BatchNorms, each with running statistics
and a counter); smaller widths build a test model.

Checked against upstream's ``briarmbg.py`` + ``utilities.py`` (the hub repo's files of 2024-02-08, as
mirrored on GitHub at JoeYZXd/RMBG-1.4 437669c; torchvision's ``normalize`` written out) on seeded random weights with random BatchNorm statistics: the network's
output at 256 and 1024 px and the whole 8-bit mask pipeline (203x131 at 256, 640x480 at 1024) agree
exactly (max abs difference 0).

Differences from upstream that do not change results: :meth:`BriaRMBG.forward` takes [0, 1] RGB and
applies upstream's ``normalize(mean=0.5, std=1.0)`` itself, and it returns only the finest side output
(upstream's ``result[0][0]``, the one its inference uses); the five coarser side outputs, training-time
deep supervision, are not computed, though their weights load. Upstream's unused ``pool_in`` and the
parameter-free pooling modules are functions here. A checkpoint without BatchNorm's
``num_batches_tracked`` counters is accepted: inference never reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ("BriaRMBG", "load_briarmbg", "predict_mask")

# The working resolution the released weights were trained at; upstream resizes every image to it.
WORKING_SIZE = 1024
# Upstream's torchvision ``normalize(image, [0.5]*3, [1.0]*3)`` on [0, 1] pixels.
PIXEL_MEAN = 0.5
PIXEL_STD = 1.0

WIDTHS = (64, 64, 128, 256, 512, 512, 512)
"""Stem width, then the output width of encoder stages 1..6."""
ENCODER_MIDS = (32, 32, 64, 128, 256, 256)
"""Inner width of encoder stages 1..6."""
DECODER_MIDS = (16, 32, 64, 128, 256)
"""Inner width of decoder stages 1d..5d."""

# RSU height per level: encoder stage k and decoder stage kd share it; 0 marks the dilated RSU-4F.
_HEIGHTS = (7, 6, 5, 4, 0, 0)


def _upsample_like(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if x.shape[2:] == target.shape[2:]:
        return x  # bilinear to the same size (align_corners=False) is the identity; skip the copy
    return F.interpolate(x, size=target.shape[2:], mode="bilinear", align_corners=False)


def _pool(x: torch.Tensor) -> torch.Tensor:
    # ceil_mode keeps odd sizes from losing their last row and column, as upstream's MaxPool2d does.
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class _ConvBnRelu(nn.Module):
    """Upstream's ``REBNCONV``: a 3x3 convolution (dilated by ``dilation``), BatchNorm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_s1(self.conv_s1(x)))


class _RSU(nn.Module):
    """A residual U-block. ``height`` L (RSU-L): L-1 convolutions down, each but the last followed by 2x
    max pooling, a 2-dilated one at the bottom, then convolutions back up over the concatenated skips;
    the result plus the block's input projection. ``height`` 0 is RSU-4F: four levels at full
    resolution, dilated 1/2/4/8 instead of pooled."""

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        self.pooled = height > 0
        levels = height if self.pooled else 4
        # Registered in upstream's order, so the state dict's key order matches too.
        self.rebnconvin = _ConvBnRelu(in_ch, out_ch)
        self.down = [f"rebnconv{i}" for i in range(1, levels + 1)]
        self.dilations = [2 if i == levels else 1 for i in range(1, levels + 1)] if self.pooled else [1, 2, 4, 8]
        for i, (name, dilation) in enumerate(zip(self.down, self.dilations)):
            self.add_module(name, _ConvBnRelu(out_ch if i == 0 else mid_ch, mid_ch, dilation))
        self.up = [f"rebnconv{i}d" for i in range(levels - 1, 0, -1)]
        for i, name in zip(range(levels - 1, 0, -1), self.up):
            # A decoder conv sits at its encoder twin's level, with that level's dilation.
            self.add_module(name, _ConvBnRelu(2 * mid_ch, out_ch if i == 1 else mid_ch, self.dilations[i - 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.rebnconvin(x)
        skips = []
        h = x_in
        for i, name in enumerate(self.down):
            h = getattr(self, name)(h)
            skips.append(h)
            if self.pooled and i < len(self.down) - 2:
                h = _pool(h)
        h = skips.pop()
        for name in self.up:
            skip = skips.pop()
            h = getattr(self, name)(torch.cat((_upsample_like(h, skip), skip), 1))
        return h + x_in


class BriaRMBG(nn.Module):
    """RMBG-1.4: (B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) foreground probability. Any H, W works;
    the released weights were trained at 1024 x 1024."""

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 1,
        widths: tuple[int, ...] = WIDTHS,
        encoder_mids: tuple[int, ...] = ENCODER_MIDS,
        decoder_mids: tuple[int, ...] = DECODER_MIDS,
    ):
        super().__init__()
        w = tuple(widths)
        self.conv_in = nn.Conv2d(in_ch, w[0], 3, stride=2, padding=1)
        for k in range(1, 7):
            self.add_module(f"stage{k}", _RSU(_HEIGHTS[k - 1], w[k - 1], encoder_mids[k - 1], w[k]))
        # Decoder stage kd sees the level above upsampled plus encoder stage k, and returns stage k's
        # input width; stage 5d's "level above" is stage 6 itself.
        for k in range(5, 0, -1):
            above = w[6] if k == 5 else w[k]
            self.add_module(f"stage{k}d", _RSU(_HEIGHTS[k - 1], above + w[k], decoder_mids[k - 1], w[k - 1]))
        # Side k reads decoder stage kd (side 6 reads stage 6); only side 1 is used at inference.
        for k, width in enumerate((*w[:5], w[6]), start=1):
            self.add_module(f"side{k}", nn.Conv2d(width, out_ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in((x - PIXEL_MEAN) / PIXEL_STD)  # upstream leaves its pool_in unused
        encoded = []
        for k in range(1, 7):
            h = getattr(self, f"stage{k}")(h)
            encoded.append(h)
            if k < 6:
                h = _pool(h)
        h = encoded.pop()
        for k in range(5, 0, -1):
            skip = encoded.pop()
            h = getattr(self, f"stage{k}d")(torch.cat((_upsample_like(h, skip), skip), 1))
        return torch.sigmoid(_upsample_like(self.side1(h), x))

    def predict_mask(self, image, size: int = WORKING_SIZE):
        """The foreground mask of a PIL image as an "L" image of its size (see :func:`predict_mask`)."""
        return predict_mask(self, image, size=size)


# --------------------------------------------------------------------------------------------------
# Loading and inference.
# --------------------------------------------------------------------------------------------------


def _checkpoint_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no RMBG checkpoint at {path}")
    for name in ("model.safetensors", "model.pth"):
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"expected model.safetensors or model.pth in {path}")


def _read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    state = torch.load(file, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def infer_geometry(state: dict[str, torch.Tensor]) -> dict:
    """Constructor arguments read off the tensors' shapes; the released file gives the defaults."""

    def out_width(key: str, default: int) -> int:
        tensor = state.get(key)
        return int(tensor.shape[0]) if tensor is not None and tensor.ndim == 4 else default

    conv_in = state.get("conv_in.weight")
    return {
        "in_ch": int(conv_in.shape[1]) if conv_in is not None and conv_in.ndim == 4 else 3,
        "out_ch": out_width("side1.weight", 1),
        "widths": [out_width("conv_in.weight", WIDTHS[0])]
        + [out_width(f"stage{k}.rebnconvin.conv_s1.weight", WIDTHS[k]) for k in range(1, 7)],
        "encoder_mids": [out_width(f"stage{k}.rebnconv1.conv_s1.weight", ENCODER_MIDS[k - 1]) for k in range(1, 7)],
        "decoder_mids": [out_width(f"stage{k}d.rebnconv1.conv_s1.weight", DECODER_MIDS[k - 1]) for k in range(1, 6)],
    }


def _require_exact(model: nn.Module, state: dict[str, torch.Tensor], file: Path) -> None:
    from model_registry.networks.chatterbox._strict_load import require_exact

    try:
        require_exact(model, state, "", "a BriaRMBG")
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from None


def load_briarmbg(path: Path) -> BriaRMBG:
    """RMBG from a ``.safetensors``/``.pth`` file or a folder holding ``model.safetensors`` (preferred) or
    ``model.pth``, in eval mode, fp32 on the CPU. Loading is strict: a ValueError names every missing,
    unexpected or misshapen entry."""
    file = _checkpoint_file(Path(path))
    state = {k: v.float() if v.is_floating_point() else v for k, v in _read_state_dict(file).items()}
    with torch.device("meta"):  # no random initialization: the checkpoint supplies every tensor
        model = BriaRMBG(**infer_geometry(state))
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=value.dtype)
    _require_exact(model, state, file)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def predict_mask(model: BriaRMBG, image, size: int = WORKING_SIZE, stretch: bool = True):
    """The foreground mask of a PIL image as an "L" image of the same size, as upstream's model card.

    Upstream squashes the image to size x size with torch's bilinear interpolation (on 0..255 values,
    no antialiasing, truncated back to integers), runs the network, resizes the finest side output back bilinearly, and stretches
    it so its minimum is 0 and maximum 255 (``stretch``; skipped when the mask is flat, where upstream
    would divide by zero), truncating to 8 bits.
    """
    from PIL import Image

    param = next(model.parameters())
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).float()
    with torch.inference_mode():
        # Upstream casts the resized pixels back to uint8 (truncating) before scaling them to [0, 1].
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).trunc().div(255)
        mask = model(x.to(device=param.device, dtype=param.dtype)).float()
        mask = F.interpolate(mask, size=(image.height, image.width), mode="bilinear", align_corners=False)[0, 0]
        lo, hi = mask.min(), mask.max()
        if stretch and hi > lo:
            mask = (mask - lo) / (hi - lo)
        pixels = (mask * 255).cpu().numpy().astype(np.uint8)
    return Image.fromarray(pixels, mode="L")

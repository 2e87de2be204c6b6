"""Channel conversion and resizing of [0, 1] pixel tensors, and the check against the model.

Conversions are applied only when asked for (``--convert-channels``, ``--resize``) and
each one applied is described by a string recorded in the provenance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robaudit.errors import DataError

# ITU-R BT.601 luma weights (what PIL's convert("L") uses), in R, G, B order.
LUMA_601 = (0.299, 0.587, 0.114)
GRAY_TO_RGB = "gray→rgb (repeat channel)"
RGB_TO_GRAY = "rgb→gray (ITU-R 601 luma: 0.299 R + 0.587 G + 0.114 B)"


def delivered_channels(stored: int | None, convert: str | None) -> int | None:
    """C after applying ``convert`` (``None``, ``"rgb"``, ``"gray"``) to ``stored``-channel images."""
    if stored == 1 and convert == "rgb":
        return 3
    if stored == 3 and convert == "gray":
        return 1
    return stored


def check_channels(stored: int, convert: str | None, model_channels: int | None, what: str) -> None:
    """Raise :class:`DataError` unless the (converted) data has the model's channel count.

    Args:
        stored: C of the stored images.
        convert: the requested conversion (``None``, ``"rgb"``, ``"gray"``).
        model_channels: C the model expects, or ``None`` to skip the check.
        what: the dataset, for messages.
    """
    if convert == "rgb" and stored not in (1, 3):
        raise DataError(
            f"--convert-channels rgb needs 1-channel images but {what} has {stored} channels",
            fix="leave out --convert-channels",
        )
    if convert == "gray" and stored not in (1, 3):
        raise DataError(
            f"--convert-channels gray needs 3-channel images but {what} has {stored} channels",
            fix="leave out --convert-channels",
        )
    if model_channels is None:
        return
    delivered = delivered_channels(stored, convert)
    if delivered == model_channels:
        return
    plural = "channel" if delivered == 1 else "channels"
    if convert is not None and delivered != stored:
        raise DataError(
            f"after --convert-channels {convert} the data has {delivered} {plural} but the model expects "
            f"{model_channels}",
            fix="leave out --convert-channels" if stored == model_channels else "use data the model was built for",
        )
    if stored == 1 and model_channels == 3:
        fix = "pass --convert-channels rgb to repeat the gray channel three times"
    elif stored == 3 and model_channels == 1:
        fix = "pass --convert-channels gray to convert RGB to gray (ITU-R 601 luma)"
    else:
        fix = f"use a dataset with {model_channels}-channel images"
    raise DataError(f"{what} has {stored} {plural} but the model expects {model_channels}", fix=fix)


def convert_channels(x: torch.Tensor, convert: str | None) -> tuple[torch.Tensor, list[str]]:
    """Apply a channel conversion to N×C×H×W pixels in [0, 1]; return (pixels, descriptions).

    ``"rgb"`` repeats a single channel three times; ``"gray"`` takes the ITU-R 601 luma
    of three channels. A conversion to the channel count the data already has is a no-op.
    """
    channels = x.shape[1]
    if convert == "rgb" and channels == 1:
        return x.repeat(1, 3, 1, 1), [GRAY_TO_RGB]
    if convert == "gray" and channels == 3:
        gray = LUMA_601[0] * x[:, 0:1] + LUMA_601[1] * x[:, 1:2] + LUMA_601[2] * x[:, 2:3]
        return gray.clamp_(0.0, 1.0), [RGB_TO_GRAY]
    return x, []


def resize(x: torch.Tensor, size: tuple[int, int] | None) -> tuple[torch.Tensor, list[str]]:
    """Resize N×C×H×W pixels to ``size`` (H, W) bilinearly with antialiasing; no-op if equal.

    Returns:
        (pixels still in [0, 1], descriptions of what was done).
    """
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x, []
    h, w = x.shape[-2:]
    out = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0), [f"resize {h}×{w}→{size[0]}×{size[1]} bilinear (antialias)"]


def converted_mean_std(
    mean: tuple[float, ...] | None, std: tuple[float, ...] | None, stored: int | None, convert: str | None
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The conventional mean/std for the converted data.

    Repeating a gray channel repeats its statistics. RGB → gray has no conventional
    std (it depends on the correlation between channels), so both become ``None``.
    """
    if mean is None or std is None:
        return mean, std
    if stored == 1 and convert == "rgb":
        return mean * 3, std * 3
    if stored == 3 and convert == "gray":
        return None, None
    return mean, std

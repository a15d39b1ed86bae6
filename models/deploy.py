"""A GLNet made ready for inference: BatchNorm folded into its convs, weights in the run's dtype.

Training keeps fp32 weights and BatchNorm layers. At inference in eval mode a BatchNorm is
an affine map per channel, so it folds exactly into the convolution before it::

    scale = gamma / sqrt(running_var + eps)
    W' = W * scale[:, None, None, None]
    b' = (b - running_mean) * scale + beta

which removes every backbone BatchNorm op (one pass over an activation each). The folded
weights are then stored once in the run's precision (bf16/fp16 under autocast, on the run's
device and memory format): without that, autocast keeps fp32 weights and casts a bf16 copy
of every weight in each batch, so a bf16 run held 1.5 times the fp32 weights.

:func:`inference_copy` never touches the model it is given: it returns a new module whose
modules are copies and whose tensors are new (or, where nothing changes, shared read-only
with the original).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .backbones import Backbone

#: Attributes where modules cache tensors derived from their weights (see heads.py).
_CACHES = ("_glgeo_split",)


def folded_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Weight and bias (float32) of the conv that computes ``bn(conv(x))`` in eval mode."""
    scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
    weight = conv.weight.detach().float() * scale.reshape(-1, 1, 1, 1)
    bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros_like(scale)
    return weight, (bias - bn.running_mean.float()) * scale + bn.bias.detach().float()


def inference_copy(
    model: nn.Module,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    channels_last: bool = False,
    fold_batchnorm: bool = True,
) -> nn.Module:
    """A copy of ``model`` for inference, in eval mode, leaving ``model`` as it was.

    Args:
        model: a GLNet (or any module whose BatchNorms sit in :class:`Backbone` bodies).
        dtype: floating dtype of the copy's weights (``None``: keep float32). Use the
            autocast dtype of the run; autocast still decides each op's precision.
        device: where the copy's tensors live (``None``: where they are).
        channels_last: store 4-D weights in channels-last layout.
        fold_batchnorm: fold the BatchNorms each backbone names in
            :meth:`~glgeo.models.backbones.Backbone.conv_norm_pairs` into their convs.

    Returns:
        The copy, with ``inference_form`` set to True; ``train()`` refuses to train it
        (its BatchNorms are gone).
    """
    # Copy the module tree, not the tensors: every parameter and buffer is shared until it
    # is replaced below, so the copy costs the converted weights, not a second fp32 model.
    memo: dict = {id(t): t for t in (*model.parameters(), *model.buffers())}
    for m in model.modules():  # per-module caches of derived weights are not copied
        for key in _CACHES:
            if key in m.__dict__:
                memo[id(m.__dict__[key])] = None
    out = copy.deepcopy(model, memo)
    out.eval()
    for backbone in [m for m in out.modules() if isinstance(m, Backbone)] if fold_batchnorm else []:
        for parent, conv_name, bn_name in list(backbone.conv_norm_pairs()):
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            weight, bias = folded_conv_bn(conv, bn)
            folded = nn.Conv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.dilation, conv.groups, bias=True, device="meta",
            )
            folded.weight, folded.bias = nn.Parameter(weight, requires_grad=False), nn.Parameter(bias, requires_grad=False)
            setattr(parent, conv_name, folded)
            setattr(parent, bn_name, nn.Identity())
    for module in out.modules():
        for name, param in list(module._parameters.items()):
            if param is not None:
                module._parameters[name] = nn.Parameter(_converted(param, dtype, device, channels_last), requires_grad=False)
        for name, buf in list(module._buffers.items()):
            if buf is not None:
                module._buffers[name] = _converted(buf, dtype, device, channels_last)
    out.inference_form = True
    return out


def _converted(t: Tensor, dtype: torch.dtype | None, device, channels_last: bool) -> Tensor:
    t = t.detach()
    target = dtype if dtype is not None and t.is_floating_point() else t.dtype
    t = t.to(device=device if device is not None else t.device, dtype=target)
    if channels_last and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t

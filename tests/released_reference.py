"""An independent, test-only re-statement of the released GLNet computation.

It runs directly on a released-style state dict (``module.``-free keys such as
``fpn_local.smooth1_1.weight``) with plain ``torch.nn.functional`` calls and per-patch loops,
the way the authors' code computes G -> L and G <-> L inference: crops of the global
features per patch, a full-resolution coverage template resized bilinearly for L -> G, and
the aggregation conv. glgeo's GLNet, after ``import_released``, must give the same outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _up(x: Tensor, size) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _conv(sd: dict, name: str, x: Tensor) -> Tensor:
    w = sd[f"{name}.weight"]
    return F.conv2d(x, w, sd.get(f"{name}.bias"), padding=w.shape[-1] // 2)


def _bn(sd: dict, name: str, x: Tensor) -> Tensor:
    return F.batch_norm(
        x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"], sd[f"{name}.bias"], False, 0.0, 1e-5
    )


def resnet50(sd: dict, prefix: str, x: Tensor) -> list[Tensor]:
    x = F.conv2d(x, sd[f"{prefix}.conv1.weight"], stride=2, padding=3)
    x = F.relu(_bn(sd, f"{prefix}.bn1", x))
    x = F.max_pool2d(x, 3, 2, 1)
    feats = []
    for layer, blocks in zip(range(1, 5), (3, 4, 6, 3)):
        for b in range(blocks):
            p = f"{prefix}.layer{layer}.{b}"
            stride = 2 if (b == 0 and layer > 1) else 1
            out = F.relu(_bn(sd, f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"])))
            out = F.relu(_bn(sd, f"{p}.bn2", F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1)))
            out = _bn(sd, f"{p}.bn3", F.conv2d(out, sd[f"{p}.conv3.weight"]))
            if f"{p}.downsample.0.weight" in sd:
                x = _bn(sd, f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride))
            x = F.relu(out + x)
        feats.append(x)
    return feats


def fpn(sd: dict, prefix: str, c: list[Tensor], ext: list | None, suffix: str, resize_ext: bool):
    """The released FPN: plain (ext None) or with ext features at every sharing point."""
    c2, c3, c4, c5 = c

    def cat(x, e):
        if e is None:
            return x
        return torch.cat([x, _up(e, x.shape[-2:]) if resize_ext else e], 1)

    e = ext or [None] * 16
    p5 = _conv(sd, f"{prefix}.toplayer{suffix}", cat(c5, e[3]))
    p4 = _up(p5, c4.shape[-2:]) + _conv(sd, f"{prefix}.latlayer1{suffix}", cat(c4, e[2]))
    p3 = _up(p4, c3.shape[-2:]) + _conv(sd, f"{prefix}.latlayer2{suffix}", cat(c3, e[1]))
    p2 = _up(p3, c2.shape[-2:]) + _conv(sd, f"{prefix}.latlayer3{suffix}", cat(c2, e[0]))
    ps0 = [p5, p4, p3, p2]
    ps1 = [_conv(sd, f"{prefix}.smooth{i + 1}_1{suffix}", cat(p, e[4 + i])) for i, p in enumerate(ps0)]
    ps2 = [_conv(sd, f"{prefix}.smooth{i + 1}_2{suffix}", cat(p, e[8 + i])) for i, p in enumerate(ps1)]
    size = ps2[3].shape[-2:]
    ps3 = torch.cat([_up(cat(p, e[12 + i]), size) for i, p in enumerate(ps2)], 1)
    if ext is not None:
        ps3 = _conv(sd, f"{prefix}.smooth", ps3)
    return c, ps0, ps1, ps2, ps3, _conv(sd, f"{prefix}.classify", ps3)


def _points(feats) -> list[Tensor]:
    c, ps0, ps1, ps2 = feats[:4]
    return [*c, *ps0, *ps1, *ps2]


def _crop(f: Tensor, top: float, left: float, ratio: tuple[float, float]) -> Tensor:
    H, W = f.shape[-2:]
    h, w = round(H * ratio[0]), round(W * ratio[1])
    t, l = round(top * H), round(left * W)
    return f[:, :, t : t + h, l : l + w]


def infer(
    sd_global: dict, sd_main: dict, image: Tensor, global_size: int, patch: int, tops: list[int], lefts: list[int], bidirectional: bool
) -> Tensor:
    """Aggregated logits per patch ``(N, C, p/4, p/4)`` for one scene ``(1, 3, H, W)``."""
    H, W = image.shape[-2:]
    ratio = (patch / H, patch / W)
    g_img = _up(image, (global_size, global_size))
    g = fpn(sd_global, "fpn_global", resnet50(sd_global, "resnet_global", g_img), None, "", False)
    boxes = [(t / H, l / W) for t in tops for l in lefts]
    locals_ = []
    for top, left in boxes:
        p = image[:, :, round(top * H) : round(top * H) + patch, round(left * W) : round(left * W) + patch]
        ext = [_crop(f, top, left, ratio) for f in _points(g)]
        locals_.append(fpn(sd_main, "fpn_local", resnet50(sd_main, "resnet_local", p), ext, "", True))
    global_ps3 = g[4]
    if bidirectional:
        template = torch.zeros(1, 1, H, W)
        for top, left in boxes:
            t, l = round(top * H), round(left * W)
            template[:, :, t : t + patch, l : l + patch] += 1
        g3 = resnet50(sd_main, "resnet_global", g_img)
        merged = []
        for k, ref in enumerate(_points(g)):
            canvas = torch.zeros_like(ref)
            Hf, Wf = ref.shape[-2:]
            h, w = round(Hf * ratio[0]), round(Wf * ratio[1])
            for (top, left), loc in zip(boxes, locals_):
                t, l = round(top * Hf), round(left * Wf)
                canvas[:, :, t : t + h, l : l + w] += _up(_points(loc)[k], (h, w))
            merged.append(canvas / _up(template, (Hf, Wf)))
        global_ps3 = fpn(sd_main, "fpn_global", g3, merged, "_ext", False)[4]
    outs = []
    for (top, left), loc in zip(boxes, locals_):
        crop = _up(_crop(global_ps3, top, left, ratio), loc[4].shape[-2:])
        outs.append(_conv(sd_main, "ensemble_conv", torch.cat([loc[4], crop], 1)))
    return torch.cat(outs)

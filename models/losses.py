"""GLNet's losses: focal loss on each output, and the stage objectives.

* Focal loss (Lin et al.): ``-(1 - p_t)^gamma * log(p_t)`` averaged over pixels. The paper
  states gamma = 6, the released code used gamma = 3; it is a setting here, and every glgeo
  checkpoint records the value its model was trained with.
* Optional class weights multiply each class's pixels' loss (``glgeo train --loss-balance``:
  :func:`class_loss_weights`), so that a common class does not drown a rare one.
* Optional cut consistency (``glgeo train --cut-consistency``, stage 1): the global branch
  also sees a random cut of each view (a few rows and columns off each side, the rest read
  as a whole scene; with ``--mosaic`` that share of the cuts is cut from a 3 x 3 mosaic of
  the batch's views around the view), is trained on it like on the view, and a symmetric
  KL divergence asks for the same class probabilities on the ground both share
  (:func:`cut_consistency`), so a pixel's class depends less on where a scene or a context
  window is cut and what lies beyond the cut.
* Optional Lovász-softmax term (``glgeo train --lovasz``: :class:`SegmentationLoss`), a
  convex surrogate of each class's ``1 - IoU`` added to every output's focal loss.
* Stage 1: focal(global). Stage 2: focal(local) + focal(aggregated) + 0.15 fmreg.
  Stage 3: focal(L -> G global) + focal(aggregated). Auxiliary weights are 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glgeo.errors import InputError


#: Feature-map regularisation weight of the paper.
FMREG_WEIGHT = 0.15
#: Focal gamma of the released code (the paper says 6).
DEFAULT_GAMMA = 3.0


class FocalLoss(nn.Module):
    """Focal loss over class logits ``(N, C, H, W)`` and integer targets ``(N, H, W)``.

    Args:
        gamma: focusing parameter; 0 gives cross-entropy.
        ignore_index: target value excluded from the loss (``None``: none).
        class_weights: a weight per class multiplying its pixels' loss (Lin et al.'s alpha,
            one per class); the loss stays the mean over valid pixels. ``None``: all 1.
    """

    def __init__(
        self, gamma: float = DEFAULT_GAMMA, ignore_index: int | None = None, class_weights: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise InputError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.ignore_index = ignore_index
        self.class_weights: Tensor | None = None
        if class_weights is not None:
            weights = torch.as_tensor([float(w) for w in class_weights], dtype=torch.float32)
            if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
                raise InputError(f"class weights must be finite numbers >= 0, got {list(class_weights)}")
            self.class_weights = weights

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if target.shape[-2:] != logits.shape[-2:]:
            target = resize_labels(target, logits.shape[-2:])
        logp = F.log_softmax(logits.float(), dim=1)
        target = target.long()
        valid = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        logp_t = logp.gather(1, safe[:, None]).squeeze(1)
        # Clamp like the released code (probabilities in [eps, 1 - eps]).
        p_t = logp_t.exp().clamp(1e-7, 1 - 1e-7)
        loss = -((1 - p_t) ** self.gamma) * p_t.log()
        if self.class_weights is not None:
            if len(self.class_weights) != logits.shape[1]:
                raise ValueError(f"{len(self.class_weights)} class weights for logits of {logits.shape[1]} classes")
            loss = loss * self.class_weights.to(loss.device)[safe]
        n = valid.sum()
        return (loss * valid).sum() / n.clamp(min=1)


def lovasz_softmax(logits: Tensor, target: Tensor, ignore_index: int | None = None) -> Tensor:
    """Lovász-softmax loss (Berman, Rannen Triki and Blaschko, CVPR 2018) of class logits
    ``(N, C, H, W)`` against integer targets ``(N, H, W)``.

    The Lovász extension of the Jaccard loss ``1 - IoU`` of each class present in the
    target, taken at the pixels' errors ``|[class] - p_class|`` and averaged over those
    classes; pixels of the whole batch are pooled. Where the probabilities are exactly 0
    and 1 it equals the mean of ``1 - IoU`` over the present classes; between, it is the
    tightest convex surrogate of it, so it asks for IoU directly (focal and cross-entropy
    ask for each pixel's probability, which lets a class's region shrink or swell at
    little cost). ``ignore_index`` pixels do not count. 0 where no pixel counts.
    """
    if target.shape[-2:] != logits.shape[-2:]:
        target = resize_labels(target, logits.shape[-2:])
    probs = F.softmax(logits.float(), dim=1)
    n_classes = probs.shape[1]
    probs = probs.permute(0, 2, 3, 1).reshape(-1, n_classes)
    target = target.reshape(-1).long()
    if ignore_index is not None:
        keep = target != ignore_index
        probs, target = probs[keep], target[keep]
    losses = []
    for c in range(n_classes):
        member = (target == c).float()
        if not bool(member.any()):
            continue
        errors, order = (member - probs[:, c]).abs().sort(descending=True)
        losses.append(errors @ _jaccard_steps(member[order]))
    if not losses:
        return logits.sum() * 0.0
    return torch.stack(losses).mean()


def _jaccard_steps(member_sorted: Tensor) -> Tensor:
    """The Lovász extension's weights: how much ``1 - IoU`` grows as each pixel, in order of
    decreasing error, is counted wrong (``member_sorted``: 1 where the pixel is the class)."""
    total = member_sorted.sum()
    intersection = total - member_sorted.cumsum(0)
    union = total + (1 - member_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


class SegmentationLoss(nn.Module):
    """The loss of each GLNet output: ``focal``, plus ``lovasz`` times
    :func:`lovasz_softmax` (``glgeo train --lovasz``), which asks for each class's IoU.

    Args:
        focal: the focal loss (its ignore index is the Lovász term's too).
        lovasz: weight of the Lovász-softmax term; 0: the focal loss alone.
    """

    def __init__(self, focal: FocalLoss, lovasz: float = 0.0) -> None:
        super().__init__()
        if not lovasz >= 0:
            raise InputError(f"the Lovász term's weight must be >= 0, got lovasz={lovasz}")
        self.focal = focal
        self.lovasz = float(lovasz)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        loss = self.focal(logits, target)
        if self.lovasz > 0:
            loss = loss + self.lovasz * lovasz_softmax(logits, target, self.focal.ignore_index)
        return loss


#: Class weights from pixel shares are capped at this multiple of the smallest weight, so a
#: class with a handful of pixels (DeepGlobe's "unknown") does not dominate the loss.
CLASS_WEIGHT_CAP = 10.0


def class_loss_weights(pixel_shares: Sequence[float], power: float) -> list[float]:
    """Class weights of the loss from the classes' shares of the training pixels.

    Weight ``share ** -power``, capped at :data:`CLASS_WEIGHT_CAP` times the smallest, and
    scaled so the mean weight of a training pixel is 1 (the loss keeps its scale). A class
    without pixels gets weight 1 (it never enters the loss). ``power`` 0: all 1;
    1: every class weighs as much in the loss as any other (up to the cap).

    Raises:
        InputError: a negative power, or no pixel in any class.
    """
    if power < 0:
        raise InputError(f"the loss class-balance power must be >= 0, got {power}")
    shares = torch.as_tensor([float(v) for v in pixel_shares], dtype=torch.float64)
    if not float(shares.sum()) > 0:
        raise InputError("class weights need labelled pixels; every training mask is nodata")
    shares = shares / shares.sum()
    present = shares > 0
    weights = torch.ones_like(shares)
    weights[present] = shares[present] ** -power
    weights[present] = weights[present].clamp(max=CLASS_WEIGHT_CAP * float(weights[present].min()))
    weights[present] /= float((shares[present] * weights[present]).sum())
    return [float(w) for w in weights]


def resize_labels(labels: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Nearest-neighbour resize of integer label maps ``(N, H, W)``, as the released code."""
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


def mosaic_of(views: Tensor, sources: Sequence[int]) -> Tensor:
    """``views[sources[0]]`` ``(C, H, W)``, or for nine sources the 3 x 3 mosaic
    ``(C, 3H, 3W)`` of those views, row by row (the cut's own view at the centre)."""
    if len(sources) == 1:
        return views[sources[0]]
    if len(sources) != 9:
        raise ValueError(f"a cut comes from one view or a 3 x 3 mosaic of nine, got {len(sources)} sources")
    rows = [torch.cat([views[j] for j in sources[r * 3 : r * 3 + 3]], dim=-1) for r in range(3)]
    return torch.cat(rows, dim=-2)


def cut_consistency(view_logits: Tensor, cut_logits: Tensor, boxes: Sequence[tuple[int, int, int, int]],
                    valid: Tensor | None = None, sources: Sequence[Sequence[int]] | None = None) -> Tensor:
    """Symmetric KL divergence between the class probabilities of views and of their cuts.

    Args:
        view_logits: ``(N, C, H, W)`` logits of the views.
        cut_logits: ``(N, C, h, w)`` logits of the cuts, each cut the box
            ``(top, left, height, width)`` (in cells of ``view_logits``) of its source read
            as a whole image.
        boxes: one box per cut.
        valid: ``(N, h, w)`` pixels of the cuts that count (``None``: all).
        sources: per cut, the view it was cut from (one index) or the nine views of the
            3 x 3 mosaic it was cut from (:func:`mosaic_of`); ``None``: cut ``i`` from view ``i``.

    Returns:
        ``(KL(p_view || p_cut) + KL(p_cut || p_view)) / 2`` per pixel, averaged over the
        valid pixels of the cuts; gradients reach both.
    """
    sources = [(i,) for i in range(len(boxes))] if sources is None else sources
    if not len(boxes) == len(sources) == cut_logits.shape[0]:
        raise ValueError(f"{len(boxes)} boxes and {len(sources)} sources for {cut_logits.shape[0]} cuts")
    size = tuple(cut_logits.shape[-2:])
    # the views' logits on each cut's box, resized onto the cut's grid
    shared = torch.cat([
        F.interpolate(mosaic_of(view_logits, src)[None, :, t : t + h, l : l + w].float(), size=size, mode="bilinear",
                      align_corners=False)
        for src, (t, l, h, w) in zip(sources, boxes)
    ])
    logp, logq = F.log_softmax(shared, dim=1), F.log_softmax(cut_logits.float(), dim=1)
    kl = 0.5 * ((logp.exp() * (logp - logq)).sum(1) + (logq.exp() * (logq - logp)).sum(1))
    if valid is None:
        return kl.mean()
    return (kl * valid).sum() / valid.sum().clamp(min=1)


#: The terms of each stage's objective: focal loss on every output the stage trains (weight
#: 1), plus the weighted feature-map regularisation in stage 2.
STAGE_TERMS: dict[int, tuple[str, ...]] = {1: ("global",), 2: ("local", "aggregated", "fmreg"), 3: ("global", "aggregated")}


class GLNetObjective:
    """The training objective of a stage, term by term; the objective is their sum.

    The one definition of what each stage minimises: glgeo's trainer
    (:class:`glgeo.training.GLNetTask`) computes the terms sub-batch by sub-batch.

    Args:
        stage: 1, 2 or 3.
        focal: the loss of each output (:class:`FocalLoss`, default gamma 3, nothing
            ignored; or a :class:`SegmentationLoss`).
        fmreg_weight: weight of the feature-map regularisation (stage 2).
    """

    def __init__(self, stage: int, focal: nn.Module | None = None, fmreg_weight: float = FMREG_WEIGHT) -> None:
        if stage not in STAGE_TERMS:
            raise InputError(f"training stage must be 1, 2 or 3, got {stage}")
        self.stage = stage
        self.terms = STAGE_TERMS[stage]
        self.focal = focal or FocalLoss()
        self.fmreg_weight = fmreg_weight

    def term(self, name: str, output: Tensor, target: Tensor | None = None) -> Tensor:
        """One term: ``focal(output, target)`` for an output's logits, or the weighted
        ``fmreg`` for ``name == "fmreg"`` (``output`` the unweighted regularisation).

        Raises:
            InputError: the stage's objective has no such term.
        """
        if name not in self.terms:
            raise InputError(f"stage {self.stage}'s objective has no {name!r} term; its terms: {', '.join(self.terms)}")
        if name == "fmreg":
            return self.fmreg_weight * output
        return self.focal(output, target)

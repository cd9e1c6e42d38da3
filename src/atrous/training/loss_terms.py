"""Pixel losses a ``train.loss`` combines: cross-entropy (with OHEM), Focal, Dice, Tversky and
Lovász-softmax, each over logits at label resolution and each blind to ignored pixels.

Every term maps logits ``(N, K, H, W)``, int64 labels ``(N, H, W)`` and the mask of labelled
pixels ``valid`` ``(N, H, W)`` to a scalar; an ignored pixel takes part in nothing (not in a
sum, not in a count, not in a class's presence). The region losses (Dice, Tversky) follow
segmentation_models_pytorch's multiclass definitions (sums over the batch and the pixels per
class; a class absent from the batch's labels contributes 0 to the mean over classes), so smp
serves as an independent oracle in the tests.

* Focal: Lin et al., "Focal Loss for Dense Object Detection" (2017), in its softmax form
  ``(1 − p_t)^γ · (−log p_t)``; ``γ = 0`` is cross-entropy (smp's and mmseg's multiclass focal
  losses are one-vs-rest sigmoid losses instead, so they are no oracle for this one).
* Dice: Milletari et al., "V-Net" (2016), soft Dice ``2|P∩T| / (|P| + |T|)`` per class.
* Tversky: Salehi et al., "Tversky loss function for image segmentation" (2017):
  ``|P∩T| / (|P∩T| + α·FP + β·FN)``; α = β = 0.5 is Dice; ``gamma`` raises the mean loss
  (the focal Tversky loss of Abraham & Khan, 2019).
* Lovász-softmax: Berman et al., "The Lovász-Softmax loss" (CVPR 2018), the convex surrogate of
  the Jaccard loss, over the classes present in the batch's labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PixelLoss(nn.Module):
    """A loss term: ``forward(logits (N, K, H, W), target (N, H, W) int64, valid (N, H, W) bool)``
    → scalar. ``target`` holds a valid class id wherever ``valid`` is true."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover


class CrossEntropyTerm(PixelLoss):
    """Pixel-wise cross-entropy averaged over labelled pixels, optionally weighted per class, with
    online hard-pixel mining (keep pixels whose true-class probability is below ``ohem_thresh``,
    at least the ``ohem_min_kept`` hardest)."""

    def __init__(self, class_weights: torch.Tensor | None = None, *, ohem_thresh: float | None = None,
                 ohem_min_kept: int = 100_000) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.ohem_thresh, self.ohem_min_kept = ohem_thresh, ohem_min_kept

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, target, weight=self.class_weights, reduction="none")
        if self.ohem_thresh is None:
            return loss[valid].sum() / valid.sum().clamp(min=1)
        losses = loss[valid]
        if losses.numel() == 0:
            return loss.sum() * 0.0
        # keep pixels with p_true < thresh (loss > -log thresh), at least min_kept hardest ones
        hard = losses > -torch.log(torch.tensor(self.ohem_thresh, device=losses.device))
        if hard.sum() < min(self.ohem_min_kept, losses.numel()):
            return losses.topk(min(self.ohem_min_kept, losses.numel())).values.mean()
        return losses[hard].mean()


class FocalTerm(PixelLoss):
    """Softmax focal loss ``w_t (1 − p_t)^γ (−log p_t)`` averaged over labelled pixels (the
    class weights as in :class:`CrossEntropyTerm`: γ = 0 gives exactly its value)."""

    def __init__(self, class_weights: torch.Tensor | None = None, *, gamma: float = 2.0) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)[valid]
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.class_weights is not None:
            loss = loss * self.class_weights[target[valid]]
        return loss.sum() / valid.sum().clamp(min=1)


def _class_sums(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per class ``k``: soft true positives ``Σ p_k t_k``, ``Σ p_k`` and ``Σ t_k`` over the
    labelled pixels of the batch, each ``(K,)``."""
    probs = logits.softmax(1) * valid.unsqueeze(1)
    onehot = F.one_hot(target * valid, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype) * valid.unsqueeze(1)
    dims = (0, 2, 3)
    return (probs * onehot).sum(dims), probs.sum(dims), onehot.sum(dims)


class TverskyTerm(PixelLoss):
    """``1 − (TP + s) / (TP + α·FP + β·FN + s)`` per class, 0 for classes absent from the
    labels, averaged over the classes and raised to ``gamma``."""

    def __init__(self, *, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0, smooth: float = 0.0,
                 eps: float = 1e-7) -> None:
        super().__init__()
        self.alpha, self.beta, self.gamma, self.smooth, self.eps = alpha, beta, gamma, smooth, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        tp, predicted, true = _class_sums(logits, target, valid)
        fp, fn = predicted - tp, true - tp
        score = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth).clamp_min(self.eps)
        loss = (1 - score) * (true > 0).to(score.dtype)
        return loss.mean() ** self.gamma


class DiceTerm(TverskyTerm):
    """Soft Dice loss: :class:`TverskyTerm` with α = β = 0.5 and γ = 1."""

    def __init__(self, *, smooth: float = 0.0, eps: float = 1e-7) -> None:
        super().__init__(alpha=0.5, beta=0.5, gamma=1.0, smooth=smooth, eps=eps)


def lovasz_gradient(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Berman et al. Alg. 1: the gradient of the Lovász extension of the Jaccard loss w.r.t. the
    errors sorted in decreasing order; ``sorted_truth`` ``(C, P)`` is the foreground indicator of
    each class in its order."""
    total = sorted_truth.sum(1, keepdim=True)
    intersection = total - sorted_truth.cumsum(1)
    union = total + (1 - sorted_truth).cumsum(1)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)


class LovaszSoftmaxTerm(PixelLoss):
    """Lovász-softmax over the labelled pixels of the batch (``per_image``: of each image, then
    averaged), averaged over the classes present in the labels."""

    def __init__(self, *, per_image: bool = False) -> None:
        super().__init__()
        self.per_image = per_image

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(1)
        if self.per_image:
            return torch.stack([self._flat(p[None], t[None], v[None]) for p, t, v in zip(probs, target, valid, strict=True)]).mean()
        return self._flat(probs, target, valid)

    @staticmethod
    def _flat(probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        p = probs.permute(0, 2, 3, 1)[valid]  # (P, K) labelled pixels
        t = target[valid]
        present = t.unique()
        if present.numel() == 0:
            return probs.sum() * 0.0
        truth = (t[None] == present[:, None]).to(p.dtype)  # (C, P), the classes present
        errors, order = (truth - p.T[present]).abs().sort(dim=1, descending=True)  # one sort for all classes
        return (errors * lovasz_gradient(truth.gather(1, order))).sum(1).mean()


# name → (term class, whether it takes the class weights)
LOSS_TERMS: dict[str, tuple[type[PixelLoss], bool]] = {
    "ce": (CrossEntropyTerm, True),
    "focal": (FocalTerm, True),
    "dice": (DiceTerm, False),
    "tversky": (TverskyTerm, False),
    "lovasz": (LovaszSoftmaxTerm, False),
}

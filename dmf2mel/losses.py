"""Training losses for mel reconstruction: Pearson, L1, InfoNCE and the official combination.

All losses take a prediction and a target of shape ``(batch, time, n_mels)`` (time-major, as every
model in :mod:`dmf2mel.models` outputs) and return a scalar tensor. Everything is vectorised over
the batch and the bands; nothing loops in Python.

The official training script (``train.py`` of github.com/fchest/DMF2Mel) trains with

    L = -r + 0.5 * L1 + 0.1 * InfoNCE

where ``r`` is the Pearson correlation over time, per band, averaged over bands and windows; the weights
are those of its loss line. :func:`info_nce` is the official
contrastive term (cosine similarity over the mel bands at each time step). The official model predicts
a single channel that is broadcast against the 10 bands: its cosine similarity over the bands then does
not depend on the prediction's size, and the InfoNCE term carries no gradient. With this package's
default 10-band head every term acts on all 10 bands; :func:`info_nce_windows` is a window-level
(CLIP-style) alternative, ``PaperLoss(contrastive="windows")``.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

#: Weights of the three terms in the official train.py: -r + 0.5 L1 + 0.1 InfoNCE.
PEARSON_WEIGHT = 1.0
L1_WEIGHT = 0.5
INFONCE_WEIGHT = 0.1
#: Softmax temperature of InfoNCE on cosine similarities in [-1, 1] (the official tau = 0.1; with a
#: temperature of 1 the logits span only [-1, 1] and the loss barely separates matched from mismatched).
INFONCE_TEMPERATURE = 0.1
#: Guards divisions by a zero standard deviation (a constant window gives r = 0, not NaN, and a finite gradient).
EPS = 1e-8


def pearson_r(pred: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Pearson correlation over time, per sample and band.

    Parameters
    ----------
    pred, target : torch.Tensor, shape (batch, time, n_mels)

    Returns
    -------
    torch.Tensor, shape (batch, n_mels)
        r of each band of each sample; 0 where either signal is constant.
    """
    pred_c = pred - pred.mean(dim=1, keepdim=True)
    target_c = target - target.mean(dim=1, keepdim=True)
    cov = (pred_c * target_c).sum(dim=1)
    # eps**2 inside each root: sqrt's derivative at a zero sum of squares (a constant band or prediction) is
    # infinite, and its product with a zero gradient of that sum is NaN; this way value and gradient stay finite
    norm = torch.sqrt((pred_c**2).sum(dim=1) + eps**2) * torch.sqrt((target_c**2).sum(dim=1) + eps**2)
    return cov / norm


def pearson_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative Pearson r, averaged over samples and bands: ``(batch, time, n_mels)`` x 2 -> scalar."""
    return -pearson_r(pred, target).mean()


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over all elements: ``(batch, time, n_mels)`` x 2 -> scalar."""
    return F.l1_loss(pred, target)


def _zscore_flat(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(batch, time, n_mels) -> (batch, time * n_mels), z-scored over time per band, then unit L2 norm."""
    x = x - x.mean(dim=1, keepdim=True)
    x = x / (x.std(dim=1, unbiased=False, keepdim=True) + eps)
    x = x.flatten(start_dim=1)
    return x / (x.norm(dim=1, keepdim=True) + eps)


#: Contrastive terms :class:`PaperLoss` can use.
CONTRASTIVE_FORMS = ("time_steps", "windows")


def _info_nce_one_way(similarity: torch.Tensor, temperature: float) -> torch.Tensor:
    """The official one-directional term from cosine similarities ``(batch, batch, time)`` (row i: anchor i)."""
    logits = similarity / temperature
    batch = logits.shape[0]
    matched = torch.eye(batch, dtype=torch.bool, device=logits.device)[:, :, None].expand_as(logits)
    log_positive = torch.logsumexp(logits[matched], dim=0)  # one sum over the whole batch and all time steps
    others = logits.masked_fill(matched, float("-inf")).flatten(1)
    log_negative = torch.logsumexp(others, dim=1)  # (batch,): -inf for a batch of one
    return -(log_positive - torch.logaddexp(log_positive, log_negative)).mean()


def info_nce(
    pred: torch.Tensor,
    target: torch.Tensor,
    temperature: float = INFONCE_TEMPERATURE,
    eps: float = EPS,
) -> torch.Tensor:
    """The official InfoNCE: cosine similarity over the bands at each time step, symmetrised.

    With ``c(i, j, t)`` the cosine similarity between the prediction of window ``i`` and the target of window ``j``
    at time ``t`` (over the mel bands), ``P = sum_{i, t} exp(c(i, i, t) / temperature)`` (the positives, summed over
    the whole batch) and ``N_i = sum_{j != i, t} exp(c(i, j, t) / temperature)``, one direction is
    ``-mean_i log(P / (P + N_i))``; the loss averages it with the other direction (targets as anchors), as the
    official ``train.py`` does. Computed in log space; the result is the official formula's.

    A single-channel prediction broadcast over the bands has a cosine similarity that ignores its size: the term
    then has no gradient (the official model's case).

    Parameters
    ----------
    pred, target : torch.Tensor, shape (batch, time, n_mels)
    temperature : float
        Softmax temperature (default 0.1).

    Returns
    -------
    torch.Tensor
        Scalar; ``0`` for a batch of one.
    """
    pred_unit = pred / pred.norm(dim=-1, keepdim=True).clamp_min(eps)
    target_unit = target / target.norm(dim=-1, keepdim=True).clamp_min(eps)
    similarity = torch.einsum("itc,jtc->ijt", pred_unit, target_unit)  # (batch, batch, time)
    return 0.5 * (
        _info_nce_one_way(similarity, temperature) + _info_nce_one_way(similarity.transpose(0, 1), temperature)
    )


def info_nce_windows(
    pred: torch.Tensor,
    target: torch.Tensor,
    temperature: float = INFONCE_TEMPERATURE,
    eps: float = EPS,
) -> torch.Tensor:
    """Window-level (CLIP-style) InfoNCE over the batch: each predicted window must pick out its own target.

    Each window (all 10 bands) is z-scored over time per band and flattened; the logits are the
    cosine similarities between every predicted and every true window divided by ``temperature``.
    The loss is the mean of the cross-entropies in both directions (prediction -> target and
    target -> prediction) with the matching window as the class, as in CLIP.

    Parameters
    ----------
    pred, target : torch.Tensor, shape (batch, time, n_mels)
    temperature : float
        Softmax temperature (default 0.1).

    Returns
    -------
    torch.Tensor
        Scalar; ``0`` for a batch of one (a single candidate is always "right").
    """
    pred_flat = _zscore_flat(pred, eps)
    target_flat = _zscore_flat(target, eps)
    logits = pred_flat @ target_flat.T / temperature
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class PaperLoss(nn.Module):
    """The official training loss ``-r + 0.5 * L1 + 0.1 * InfoNCE`` on ``(batch, time, n_mels)``.

    Parameters
    ----------
    pearson_weight, l1_weight, infonce_weight : float
        Weights of the three terms (defaults: the official 1, 0.5, 0.1).
    temperature : float
        InfoNCE temperature (default 0.1).
    contrastive : {"time_steps", "windows"}
        The official :func:`info_nce` (default) or :func:`info_nce_windows`.
    """

    def __init__(
        self,
        pearson_weight: float = PEARSON_WEIGHT,
        l1_weight: float = L1_WEIGHT,
        infonce_weight: float = INFONCE_WEIGHT,
        temperature: float = INFONCE_TEMPERATURE,
        contrastive: str = "time_steps",
    ) -> None:
        super().__init__()
        if contrastive not in CONTRASTIVE_FORMS:
            raise ValueError(f"PaperLoss: contrastive must be one of {CONTRASTIVE_FORMS}, got {contrastive!r}")
        self.contrastive = info_nce if contrastive == "time_steps" else info_nce_windows
        self.pearson_weight = pearson_weight
        self.l1_weight = l1_weight
        self.infonce_weight = infonce_weight
        self.temperature = temperature

    def terms(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms: ``{"r": mean Pearson r, "l1": ..., "infonce": ...}`` (scalars).

        A single-channel prediction (DMF2Mel's ``head="single"``, the official code's head) is
        broadcast against every band of the target, as the official loss does implicitly.
        """
        if pred.shape[-1] == 1 and target.shape[-1] > 1:
            pred = pred.expand_as(target)
        return {
            "r": pearson_r(pred, target).mean(),
            "l1": l1_loss(pred, target),
            "infonce": self.contrastive(pred, target, self.temperature),
        }

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the terms from :meth:`terms` (a scalar to minimise)."""
        return -self.pearson_weight * terms["r"] + self.l1_weight * terms["l1"] + self.infonce_weight * terms["infonce"]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(batch, time, n_mels)`` x 2 -> scalar loss."""
        return self.combine(self.terms(pred, target))

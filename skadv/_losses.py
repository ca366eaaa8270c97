"""Divergences between class distributions, shared by the detectors' losses and scores."""

import torch
from torch import nn


def tempered_proba(log_proba, temperature):
    """Teacher distribution sharpened (T < 1) or softened (T > 1): ``softmax(log p / T)``."""
    if temperature == 1:
        return log_proba.exp()
    return torch.softmax(log_proba / temperature, dim=1)


def tempered_log_proba(log_proba, temperature):
    """Log of :func:`tempered_proba`; ``log_proba`` itself (no work) at ``T = 1``."""
    if temperature == 1:
        return log_proba
    return torch.log_softmax(log_proba / temperature, dim=1)


def kl_divergence(log_p, log_q):
    """Per-row KL(p ‖ q) = Σ p (log p − log q) from finite, normalised log-probabilities.

    Such as :class:`~skadv.ProtectedModel` and ``log_softmax`` of finite logits return:
    classes whose p underflows to 0 contribute 0, as in the limit. Cheaper than
    :func:`distillation_loss` (no second normalisation, no ``xlogy``): it runs on every
    scored batch.
    """
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def distillation_loss(student_logits, teacher_proba, loss_type="kld"):
    """Per-row loss between a teacher distribution and a student's logits.

    ``'kld'``: KL(teacher ‖ student) = Σ p (log p − log q); ``'xent'``: −Σ p log q.
    Rows with p = 0 in a class contribute 0 to that class, as in the limit. Computed in
    float64 (see :class:`~skadv.ProtectedModel`).
    """
    log_q = torch.log_softmax(student_logits.double(), dim=1)
    teacher_proba = teacher_proba.to(log_q.dtype)
    cross_entropy = -(teacher_proba * log_q).sum(dim=1)
    if loss_type == "xent":
        return cross_entropy
    return torch.special.xlogy(teacher_proba, teacher_proba).sum(dim=1) + cross_entropy


class DistillationLoss(nn.Module):
    """skorch criterion: mean :func:`distillation_loss` over the batch."""

    def __init__(self, loss_type="kld"):
        super().__init__()
        self.loss_type = loss_type

    def forward(self, student_logits, teacher_proba):
        return distillation_loss(student_logits, teacher_proba, self.loss_type).mean()

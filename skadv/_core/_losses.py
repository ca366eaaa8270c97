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


# Logits whose log-partition lies beyond this (in magnitude) are shifted by their row maximum
# before exp: below it no exp overflows and the largest term of the partition sum is a normal
# float64, so the sum keeps full relative precision without the shift.
_UNSHIFTED_LOG_PARTITION_MAX = 600.0


def kl_divergence_of_stacked_logits(logits):
    """Per-row KL(softmax(a) ‖ softmax(b)) in float64 from logits stacked as ``[a; b]`` ``(2n, K)``.

    ``Σ p (a − b) − lse(a) + lse(b)`` with ``p = softmax(a)`` and ``lse`` the log-partition:
    the same value as :func:`kl_divergence` of the two log-softmaxes (to float64 rounding),
    with one elementwise ``exp`` pass over the whole batch instead of per-row softmax
    kernels and a second ``exp`` of ``log p`` (about half the post-network time of a small
    classifier). Each row is shifted by its maximum only where its log-partition is beyond
    ±600, so a row's value depends on that row alone, and gradients stay finite.
    """

    def exp_and_partition(logits):
        exp = logits.exp()
        partition = exp.sum(dim=1)
        return exp, partition, partition.log()

    logits = logits.double()
    exp, partition, log_partition = exp_and_partition(logits)
    # One reduction decides whether any row needs the shift (NaN compares False: shifted too).
    if log_partition.numel() and not float(log_partition.detach().abs().max()) < _UNSHIFTED_LOG_PARTITION_MAX:
        needs_shift = ~(log_partition.abs() < _UNSHIFTED_LOG_PARTITION_MAX)
        logits = logits - torch.where(needs_shift[:, None], logits.amax(dim=1, keepdim=True), 0.0)
        exp, partition, log_partition = exp_and_partition(logits)
    n_rows = logits.shape[0] // 2
    # Σ p (a − b) − lse(a) + lse(b), with the row sums as dot products (fewer passes).
    expected_gap = torch.linalg.vecdot(exp[:n_rows], logits[:n_rows] - logits[n_rows:])
    return torch.addcdiv(log_partition[n_rows:] - log_partition[:n_rows], expected_gap, partition[:n_rows])


# Smallest student probability before its log (a saturated softmax gives a large finite loss).
_TINY_STUDENT_PROBA = 1e-12


def student_log_proba(student_output, output="logits"):
    """Float64 log-probabilities of a student's output: logits (``log_softmax``) or probabilities.

    A student ending in a softmax returns probabilities (``output='proba'``): their log,
    renormalised, so that they are not mistaken for logits.
    """
    out = student_output.double()
    if output == "proba":
        out = out.clamp_min(_TINY_STUDENT_PROBA)
        return torch.log(out / out.sum(dim=1, keepdim=True))
    return torch.log_softmax(out, dim=1)


def distillation_loss(student_logits, teacher_proba, loss_type="kld", student_output="logits"):
    """Per-row loss between a teacher distribution and a student's logits (or probabilities).

    ``'kld'``: KL(teacher ‖ student) = Σ p (log p − log q); ``'xent'``: −Σ p log q.
    Rows with p = 0 in a class contribute 0 to that class, as in the limit. Computed in
    float64 (see :class:`~skadv.ProtectedModel`). ``student_output='proba'`` reads the
    student's output as probabilities (see :func:`student_log_proba`).
    """
    log_q = student_log_proba(student_logits, student_output)
    teacher_proba = teacher_proba.to(log_q.dtype)
    cross_entropy = -(teacher_proba * log_q).sum(dim=1)
    if loss_type == "xent":
        return cross_entropy
    return torch.special.xlogy(teacher_proba, teacher_proba).sum(dim=1) + cross_entropy


class DistillationLoss(nn.Module):
    """skorch criterion: mean :func:`distillation_loss` over the batch."""

    def __init__(self, loss_type="kld", student_output="logits"):
        super().__init__()
        self.loss_type = loss_type
        self.student_output = student_output

    def forward(self, student_logits, teacher_proba):
        return distillation_loss(student_logits, teacher_proba, self.loss_type, self.student_output).mean()

"""Norm balls, projections and steps shared by the attacks (per-sample, on batched tensors)."""

from numbers import Real

import numpy as np
import torch

from .._core import Options, StrOptions

#: Parameter constraint of ``norm`` in every attack that takes one.
NORM_CONSTRAINT = [Options(Real, {2, np.inf}), StrOptions({"inf"})]


def normalize_norm(norm):
    """``np.inf`` for the L-inf norm (``np.inf`` or ``"inf"``), else ``2``."""
    if isinstance(norm, str):
        return np.inf
    return np.inf if np.isinf(norm) else 2


def view_per_sample(v, like):
    """Reshape a ``(n,)`` tensor so it broadcasts against ``like`` ``(n, ...)``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def per_sample_norm(t, norm):
    """L-inf (``norm=np.inf``) or L2 norm of each row of ``t``, shape ``(n,)``."""
    flat = t.reshape(t.shape[0], -1)
    if norm == np.inf:
        return flat.abs().amax(dim=1)
    return flat.norm(p=2, dim=1)


def normalize_l2(g):
    """Unit-L2 direction per sample (zero where the gradient is zero)."""
    norms = per_sample_norm(g, 2)
    return g / view_per_sample(torch.where(norms > 0, norms, torch.ones_like(norms)), g)


def project(delta, eps, norm):
    """Project perturbations onto the ``norm`` ball of radius ``eps``."""
    if norm == np.inf:
        return delta.clamp(-eps, eps)
    norms = per_sample_norm(delta, 2)
    factor = torch.where(norms > eps, eps / norms.clamp_min(1e-30), torch.ones_like(norms))
    return delta * view_per_sample(factor, delta)


def ascent_direction(grad, norm):
    """Steepest-ascent unit step for the ``norm`` ball (sign for L-inf, unit L2)."""
    if norm == np.inf:
        return grad.sign()
    return normalize_l2(grad)


def uniform_ball_point(run, x0, eps, norm):
    """Uniform sample of the ``norm`` ball of radius ``eps`` around ``x0`` (clipped to the box)."""
    shape, dev = x0.shape, x0.device
    if norm == np.inf:
        noise = (run.uniform(shape, dev) * 2 - 1) * eps
    else:
        # Uniform in the L2 ball: Gaussian direction, radius eps * U^(1/d).
        direction = normalize_l2(run.normal(shape, dev))
        d = direction[0].numel()
        radius = eps * run.uniform((shape[0],), dev) ** (1.0 / d)
        noise = direction * view_per_sample(radius, direction)
    return run.clip(x0 + noise.to(device=x0.device, dtype=x0.dtype))


def start_point(run, x0, eps, norm, random_start, use_x_init=True):
    """Where an iterative attack starts: ``x_init`` (projected), a uniform point of the ball, or ``x0``."""
    if use_x_init and run.x_init is not None:
        return run.clip_and_project(run.x_init, x0, eps, norm)
    if random_start and eps > 0:
        return uniform_ball_point(run, x0, eps, norm)
    return x0.clone()

"""Confidence baselines: the classifier's own max-softmax, entropy or energy as the score."""

import numbers
from typing import ClassVar

import torch

from .._core import Interval, StrOptions, fill_detector_doc
from ..base import BaseDetector


def input_gradient_sign(objective, x):
    """``sign(∇ₓ objective(x).sum())`` as a constant, computable under ``torch.inference_mode``.

    The input pre-processing of ODIN and of Mahalanobis detection moves each row by
    ``±ε`` along this sign. The sign has zero derivative almost everywhere, so the
    result carries no graph: an attack differentiating through the pre-processed input
    sees the identity.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)  # a normal tensor, even from inference mode
        # objective sees a copy: the user's model may write into its input, which torch
        # refuses for a leaf that requires grad.
        (gradient,) = torch.autograd.grad(objective(x.clone()).sum(), x)
    return gradient.sign()


@fill_detector_doc
class ConfidenceDetector(BaseDetector):
    """Flag inputs on which the protected classifier is not confident.

    The trivial baseline every detector must beat: no network is trained, the score is
    read from the classifier's own output on the row. ``fit`` only sets the threshold
    from the scores of clean rows.

    Parameters
    ----------
    model : nn.Module, fitted skorch NeuralNetClassifier or fitted sklearn classifier
        The classifier to protect; copied, never modified. A scikit-learn classifier
        (with ``predict_proba``) serves 'msp' and 'entropy' without ODIN, but no
        adaptive attack can run through it.
    score_type : {'msp', 'entropy', 'energy'}, default='msp'
        'msp': ``1 - max_k p_k`` with ``p = softmax(z / T)`` (Hendrycks & Gimpel, 2017).
        'entropy': ``-Σ_k p_k log p_k`` of the same ``p``.
        'energy': ``-T · logsumexp(z / T)`` of the logits ``z`` (Liu et al., 2020).
        Log-probabilities differ from the logits by a per-row constant, which leaves
        the softmax unchanged but not the energy, so 'energy' needs a model returning
        logits (``model_output='logits'``, or 'auto' deciding logits): with
        probabilities it raises a ValueError.
    temperature : float, default=1.0
        ``T`` above. ODIN uses large values (e.g. 1000).
    odin_eps : float, default=0.0
        ODIN's input pre-processing (Liang et al., 2018): each row is scored at
        ``x + odin_eps · sign(∇ₓ log max_k softmax(z(x) / T)_k)``, a step that raises
        the confidence of clean rows more than that of abnormal ones. Applied after
        ``preprocess_fn``, in the model's input space. 0 disables it; above 0 the model
        must be a torch network (the step needs its gradient).
%(detector_params)s
%(input_params)s

    Attributes
    ----------
%(model_attributes)s
%(detector_attributes)s

    See Also
    --------
    MahalanobisDetector : distance to class-conditional Gaussians of hidden features.
    FeatureSqueezingDetector : change of the prediction under input squeezing.

    References
    ----------
    D. Hendrycks, K. Gimpel. "A baseline for detecting misclassified and
    out-of-distribution examples in neural networks", ICLR 2017.

    S. Liang, Y. Li, R. Srikant. "Enhancing the reliability of out-of-distribution
    image detection in neural networks", ICLR 2018.

    W. Liu, X. Wang, J. Owens, Y. Li. "Energy-based out-of-distribution detection",
    NeurIPS 2020.

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from skadv import ConfidenceDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    >>> det = ConfidenceDetector(net, score_type="energy").fit(X[:1000])
    >>> det.predict(X[1000:1005]).shape
    (5,)
    >>> float((det.predict(X[:1000]) == -1).mean())
    0.05
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseDetector._parameter_constraints,
        "score_type": [StrOptions({"msp", "entropy", "energy"})],
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "odin_eps": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        model=None,
        *,
        score_type="msp",
        temperature=1.0,
        odin_eps=0.0,
        model_output="auto",
        threshold=None,
        contamination=0.05,
        validation_fraction=None,
        inference_batch_size=None,
        preprocess_fn=None,
        input_shape=None,
        device="cpu",
        random_state=None,
    ):
        self.model = model
        self.score_type = score_type
        self.temperature = temperature
        self.odin_eps = odin_eps
        self.model_output = model_output
        self.threshold = threshold
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.inference_batch_size = inference_batch_size
        self.preprocess_fn = preprocess_fn
        self.input_shape = input_shape
        self.device = device
        self.random_state = random_state

    @property
    def _accepts_sklearn_model(self):
        return self.odin_eps == 0

    def _fit_detector(self, X, seed):
        if self.score_type == "energy" and (self.model_ is None or self.model_.output != "logits"):
            given = "a scikit-learn classifier" if self.model_ is None else f"model_output={self.model_.output!r}"
            raise ValueError(
                f"score_type='energy' needs the model's logits, but it returns normalised scores ({given}), "
                "whose energy is not the logits' (it is 0 at temperature 1). "
                "Pass a torch model returning logits (model_output='logits'), "
                "or use score_type='msp' or 'entropy'."
            )

    def _tempered_log_proba(self, x):
        # softmax(z / T) from log-probabilities: they differ from z by a per-row constant.
        return torch.log_softmax(self._model_log_proba(x) / self.temperature, dim=1)

    def _score_tensor(self, x):
        if self.odin_eps > 0:
            x = x + self.odin_eps * input_gradient_sign(
                lambda rows: self._tempered_log_proba(rows).max(dim=1).values, x
            )
        if self.score_type == "energy":
            logits = self.model_.scores(x).double()
            return -self.temperature * torch.logsumexp(logits / self.temperature, dim=1)
        log_p = self._tempered_log_proba(x)
        if self.score_type == "msp":
            # 1 - p_max as the sum of the other probabilities: exact where p_max rounds to 1
            # (1 - p_max, or -expm1(log p_max), would pile confident rows at exactly 0).
            others = log_p.scatter(1, log_p.argmax(dim=1, keepdim=True), -torch.inf)
            return torch.logsumexp(others, dim=1).exp()
        return -(log_p.exp() * log_p).sum(dim=1)

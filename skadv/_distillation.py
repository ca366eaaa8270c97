"""Model distillation detector: a small student mimics the classifier; disagreement flags harm."""

import copy
import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ._base import BaseDetector


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


def default_student(n_inputs, n_classes, hidden_units=None):
    """Flatten → Linear → ReLU → Linear, sized from the data."""
    hidden = hidden_units or int(np.clip(n_inputs, 16, 128))
    return nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


class ModelDistillationDetector(BaseDetector):
    """Flag harmful inputs by the disagreement of a distilled student with the classifier.

    A small student network is trained on the protected classifier's (temperature-scaled)
    output distribution over clean data. Where the classifier behaves as on clean data the
    student agrees; adversarial, corrupted or drifted inputs that change the classifier's
    behaviour make them disagree. The adversarial score of a row is the distillation loss
    on that row: KL(teacher_T ‖ student) or the cross-entropy.

    Port of alibi-detect's ``ModelDistillation`` (TensorFlow) to PyTorch, trained through
    skorch, with the sklearn outlier-detector API.

    Parameters
    ----------
    model : nn.Module, fitted skorch NeuralNetClassifier or fitted sklearn classifier
        The classifier to protect (the teacher). Any classifier with ``predict_proba``
        works, since no gradient through it is needed for training. It is copied, never
        modified. Wrap a skorch net in ``sklearn.frozen.FrozenEstimator`` to keep it
        fitted through ``clone()``.
    distilled_model : nn.Module, default=None
        Student returning logits for inputs shaped ``(n, *input_shape)``. None builds
        ``Flatten → Linear(h) → ReLU → Linear(n_classes)`` sized from the data.
    loss_type : {'kld', 'xent'}, default='kld'
        Training loss and score: KL divergence or cross-entropy teacher → student.
    temperature : float, default=1.0
        Temperature applied to the teacher's distribution, ``softmax(log p / T)``;
        below 1 sharpens, above 1 softens. Used in training and in the score.
    model_output : {'auto', 'logits', 'proba', 'log_proba'}, default='auto'
        What a torch ``model`` returns. 'auto' means logits for a module, and for a skorch
        net probabilities under ``NLLLoss`` (skorch's default), logits otherwise.
    threshold : float, default=None
        Explicit threshold on the adversarial score; overrides ``contamination``.
    contamination : float in (0, 0.5], default=0.05
        Share of training rows flagged; sets ``threshold_`` and ``offset_``.
    epochs : int, default=20
    batch_size : int, default=128
        Training batch size, and the most rows scored at once. Scoring batches are also
        capped at about 16 MiB of input-sized float32 values (the rows times the copies
        each expands into while scored), so scoring memory stays bounded however large
        this is.
    lr : float, default=1e-3
    optimizer : {'adam', 'adamw', 'sgd', 'rmsprop'} or torch optimizer class, default='adam'
        Named 'adam', 'adamw' and 'sgd' run torch's fused implementation (``fused=True``);
        a class is used with its own defaults.
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks (copied before use).
    verbose : bool or int, default=False
        Print skorch's epoch table and a progress bar.
    preprocess_fn : callable, default=None
        Tensor → tensor function applied to every batch before the classifier and student.
    input_shape : tuple of int, default=None
        Shape of one row as the models expect it (e.g. ``(1, 8, 8)``). None uses rows as
        they are (or the trailing shape of an N-D ``X``).
    device : str, default='cpu'
        'cpu', 'cuda', 'cuda:N' or 'auto'.
    random_state : int, RandomState instance or None, default=None
        Seeds training: equal seeds give bit-identical students.

    Attributes
    ----------
    distilled_model_ : nn.Module
        The trained student (eval mode).
    model_ : ProtectedModel or None
        Frozen copy of a torch classifier returning log-probabilities.
    sklearn_model_ : estimator or None
        Copy of a scikit-learn classifier used as teacher.
    n_classes_ : int
    history_ : list of dict
        skorch's training history.
    threshold_ : float
        Rows whose adversarial score exceeds it are flagged.
    offset_ : float
        ``-threshold_``: ``decision_function = score_samples - offset_``.
    input_shape_ : tuple of int
    n_features_in_ : int
    device_ : str

    See Also
    --------
    AdversarialAEDetector : detection and correction through an autoencoder.

    Notes
    -----
    A fitted detector can serve concurrent threads: its scoring methods keep all state
    local to the call and give exactly the serial results. A ``fit`` that raises (or
    is interrupted: Ctrl-C raises ``KeyboardInterrupt``) leaves the detector as it was.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skadv import ModelDistillationDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> clf = LogisticRegression(max_iter=500).fit(X[:1000], y[:1000])
    >>> det = ModelDistillationDetector(clf, epochs=5, random_state=0).fit(X[:1000])
    >>> det.predict(X[1000:1005]).shape
    (5,)
    >>> float((det.predict(X[:1000]) == -1).mean())
    0.05
    """

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "distilled_model": [nn.Module, None],
        "loss_type": [StrOptions({"kld", "xent"})],
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        model=None,
        *,
        distilled_model=None,
        loss_type="kld",
        temperature=1.0,
        model_output="auto",
        threshold=None,
        contamination=0.05,
        epochs=20,
        batch_size=128,
        lr=1e-3,
        optimizer="adam",
        callbacks=None,
        verbose=False,
        preprocess_fn=None,
        input_shape=None,
        device="cpu",
        random_state=None,
    ):
        self.model = model
        self.distilled_model = distilled_model
        self.loss_type = loss_type
        self.temperature = temperature
        self.model_output = model_output
        self.threshold = threshold
        self.contamination = contamination
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.verbose = verbose
        self.preprocess_fn = preprocess_fn
        self.input_shape = input_shape
        self.device = device
        self.random_state = random_state

    _accepts_sklearn_model = True

    def _fit_detector(self, X, seed):
        X_model = self._preprocessed_array(X)
        with torch.inference_mode():
            # The teacher is frozen: its targets are computed once, not every epoch.
            teacher_log_proba = torch.cat(
                [self._model_log_proba(x.to(self.device_)).cpu() for x in torch.from_numpy(X_model).split(self._inference_batch_size())]
            )
        targets = tempered_proba(teacher_log_proba, self.temperature).numpy()
        self.n_classes_ = targets.shape[1]
        if self.distilled_model is None:
            student = default_student(int(np.prod(X_model.shape[1:])), self.n_classes_)
        else:
            student = copy.deepcopy(self.distilled_model)
        net = self._make_net(student, seed, criterion=DistillationLoss, criterion__loss_type=self.loss_type)
        net.fit(X_model, targets)
        self.distilled_model_ = net.module_.eval()
        self.history_ = [dict(epoch) for epoch in net.history]

    def _score_tensor(self, x):
        # distillation_loss on log-probabilities: the teacher's are normalised already.
        log_p = tempered_log_proba(self._model_log_proba(x), self.temperature)
        log_q = torch.log_softmax(self.distilled_model_(x).double(), dim=1)
        if self.loss_type == "xent":
            return -(log_p.exp() * log_q).sum(dim=1)  # log_q is finite: float32 logits
        return kl_divergence(log_p, log_q)

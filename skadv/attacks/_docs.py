"""Parameter documentation shared by every attack's docstring."""

from .._core import docstring_filler

_COMMON_PARAMS = """\
    targeted : bool, default=False
        If True, ``y`` passed to :meth:`generate` holds target labels and the
        attack drives the inputs towards them; otherwise ``y`` (or the
        model's predictions) are the true labels to move away from.

    adaptive : bool, default=True
        Only used when ``target`` implements the attack protocol
        (``attack_surface()``: every skadv estimator, or a third-party
        detector). If True the attack is adaptive: it attacks the classifier
        and the detector together through the surface's extra "rejected"
        column (Carlini & Wagner, 2017), so success means *misclassified and
        not flagged*. If False it
        attacks the protected classifier alone (a non-adaptive attack, which
        overstates the detector).

    clip_values : tuple of (min, max) or None, default=(0.0, 1.0)
        Box the adversarial inputs are clipped to (scalars, or arrays
        broadcastable to ``input_shape``). None disables clipping.

    input_shape : tuple of int or None, default=None
        Shape of one input as the torch model expects it, e.g. ``(1, 8, 8)``;
        rows of ``X`` are reshaped to it. None uses the target estimator's
        ``input_shape`` when it has one, else the rows as they are.

    batch_size : int, default=256
        Number of inputs attacked together in one batch of tensor operations.

    device : str, torch.device or None, default=None
        Device to run on. None uses the device of the model's parameters (or
        of the skorch net). An estimator with ``attack_surface()`` is always
        attacked on its surface's device.

    eot_samples : int, default=8
        Number of random draws the objective and its gradient are averaged
        over (Expectation over Transformation) when the target's score is
        randomized (an attack surface with ``stochastic=True``, e.g.
        :class:`~skadv.VAEDetector`'s). Ignored for deterministic targets.

    trace : bool, default=False
        If True, record per-iteration statistics in ``trace_``.

    verbose : int, default=0
        If non-zero, show a progress bar on stderr while the attack runs
        (one step per iteration, with the batch it is in; an ensemble shows
        its members too). Silent by default."""

_TRACE_ATTRIBUTE = """\
    n_iter_ : int
        Set by :meth:`generate`: the number of iterations the last call ran
        (gradient steps, or queries for score-based attacks), summed over
        restarts and search rounds, the largest over batches. It means the
        same in every attack; an attack that stops early reports fewer.
        Concurrent calls on one instance overwrite it: use :meth:`run`,
        whose result carries it per call.

    trace_ : :class:`~sklearn.utils.Bunch`
        Only when ``trace=True``, set by :meth:`generate`. Arrays of shape
        ``(n_iter, n_samples)``: ``loss`` (the attack's objective),
        ``true_confidence`` (softmax probability of ``y``: the true class, or
        the target class when ``targeted``), ``max_other_confidence``
        (largest probability of any other class), ``reject_confidence``
        (probability of the "rejected" output in an adaptive attack, NaN
        otherwise), the same three as raw scores, i.e. the target's outputs
        before any softmax (``true_score``, ``max_other_score``,
        ``reject_score``), and ``success`` (bool: misclassified and not
        flagged, or classified as the target); plus ``n_iter`` and
        ``scores_are_logits`` (bool: True when the scores are a classifier's
        logits or log-probabilities, so the confidences are its softmax
        probabilities; False for raw decision scores such as
        :class:`~skadv.DeepNeuralRejection`'s SVM scores and threshold, whose
        softmax is near-uniform)."""


#: Decorator inserting ``%(common_params)s`` and ``%(trace_attribute)s`` into an attack's docstring.
fill_doc = docstring_filler(common_params=_COMMON_PARAMS, trace_attribute=_TRACE_ATTRIBUTE)

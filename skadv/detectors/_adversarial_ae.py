"""Adversarial autoencoder: detect and correct adversarial inputs by matching prediction distributions."""

import copy
import numbers

import numpy as np
import torch
from skorch.utils import to_tensor
from torch import nn

from .._core import (
    Interval,
    NetWithFrozenModel,
    StrOptions,
    TrainingNet,
    distillation_loss,
    fill_detector_doc,
    forward_capturing,
    kl_divergence,
    kl_divergence_of_stacked_logits,
    resolve_layers,
    tempered_log_proba,
)
from ..base import TrainedDetector

# ----------------------------------------------------------------------------- loss and score


def forward_with_hidden(classifier, layers, x, *, logits=False):
    """One pass of ``classifier`` (a :class:`~skadv.ProtectedModel`) returning log-probabilities
    (its network's raw output with ``logits=True``) and the outputs of its submodules named in
    ``layers`` (see :mod:`skadv._core._layers` for the conventions; thread-safe).
    """
    forward = classifier.net if logits else classifier
    if not layers:
        return forward(x), []
    return forward_capturing(classifier.net, layers, x, forward=forward)


def clipped_kl_divergence(log_p, log_q, clip):
    """Per-row KL(p ‖ q) with both distributions clipped to ``[clip, 1]`` first (Keras' ``kld``).

    alibi-detect's loss and score: a class whose probability is below ``clip`` on either
    side counts as ``clip``, so it passes no gradient to the other side.
    """
    p = log_p.exp().clamp(clip, 1.0)
    q = log_q.exp().clamp(clip, 1.0)
    return (p * (p.log() - q.log())).sum(dim=1)


def divergence_terms(
    classifier, x, x_recon, *, layers=(), heads=(), weights=(), temperature=1.0, teacher_as_target=False, kl_clip=None
):
    """Per-row KL terms between an input and its reconstruction.

    Returns ``(model_kl, hidden_kl, class_scores)``: ``KL(M(x)_T ‖ M(x'))`` and
    ``Σ_l w_l · KL(h_l(x) ‖ h_l(x'))``, each of shape ``(n,)`` (``hidden_kl`` None without
    hidden layers), and the classifier's class scores of ``x`` then ``x'`` ``(2n, K)``:
    log-probabilities, or the logits when the score is computed from them (argmax is the
    prediction either way). Scoring runs the classifier once,
    on ``x`` and ``x'`` stacked, and keeps every gradient path, so that adaptive attacks
    see them all. In training (``teacher_as_target=True``) the teacher side ``M(x)``,
    ``h_l(x)`` is a target: it runs under ``no_grad`` apart from the reconstruction, so
    the backward pass goes through the classifier for ``x'`` alone (the same gradients,
    half the work), and the heads learn from the reconstruction side only. ``kl_clip``
    clips both distributions of every term to ``[kl_clip, 1]`` (see
    :func:`clipped_kl_divergence`); None uses the exact KL.
    """
    n_rows = x.shape[0]
    model_kl = None
    if teacher_as_target:
        # Copies: the user's model may write into its input, and x (the autoencoder's input,
        # the reconstruction term's target) and x' (the decoder's output) are still needed.
        with torch.no_grad():
            log_p, hidden_p = forward_with_hidden(classifier, layers, x.clone())
            teacher_logits = [head(features) for head, features in zip(heads, hidden_p)]
        log_q, hidden_q = forward_with_hidden(classifier, layers, x_recon.clone())
        class_scores = torch.cat([log_p, log_q])
        logit_pairs = [(t, head(f)) for head, t, f in zip(heads, teacher_logits, hidden_q)]
    else:
        from_logits = temperature == 1 and kl_clip is None and classifier.output == "logits"
        class_scores, hidden = forward_with_hidden(classifier, layers, torch.cat([x, x_recon]), logits=from_logits)
        logit_pairs = [(logits[:n_rows], logits[n_rows:]) for logits in (head(f) for head, f in zip(heads, hidden))]
        if from_logits:
            # The default case straight from the logits: one fused float64 pass, no log-softmax.
            model_kl = kl_divergence_of_stacked_logits(class_scores)
        else:
            log_p, log_q = class_scores[:n_rows], class_scores[n_rows:]
    if model_kl is None:
        # ProtectedModel returns normalised log-probabilities: no second log-softmax.
        log_p = tempered_log_proba(log_p, temperature)
        if kl_clip is None:
            model_kl = kl_divergence(log_p, log_q)
        else:
            model_kl = clipped_kl_divergence(log_p, log_q, kl_clip)
    if not weights:
        return model_kl, None, class_scores
    hidden_kl = torch.zeros_like(model_kl)
    for weight, (teacher_logits, student_logits) in zip(weights, logit_pairs):
        if kl_clip is None:
            term = distillation_loss(student_logits, torch.softmax(teacher_logits, dim=1))
        else:
            term = clipped_kl_divergence(
                torch.log_softmax(teacher_logits.double(), dim=1),
                torch.log_softmax(student_logits.double(), dim=1),
                kl_clip,
            )
        hidden_kl = hidden_kl + weight * term
    return model_kl, hidden_kl, class_scores


def adversarial_ae_loss(x, x_recon, model_kl, hidden_kl, w_model=1.0, w_recon=0.0):
    """Training loss of the adversarial autoencoder for one batch.

    ``w_model · mean(model_kl + hidden_kl) + w_recon · s · mean((x − x')²)`` with the scale
    ``s = std(model_kl) / (std((x − x')²) + 1e-10)`` (population standard deviations over the
    batch; the squared errors taken elementwise) putting both terms on one footing. ``s`` is a
    constant of the batch: no gradient flows through it.
    """
    loss = w_model * (model_kl if hidden_kl is None else model_kl + hidden_kl).mean()
    if w_recon > 0:
        squared_error = (x - x_recon) ** 2
        scale = model_kl.detach().std(correction=0) / (squared_error.detach().std(correction=0) + 1e-10)
        loss = loss + w_recon * scale * squared_error.mean()
    return loss


class AdversarialAELoss(nn.Module):
    """skorch criterion holding the loss configuration (see :func:`adversarial_ae_loss`)."""

    def __init__(self, temperature=1.0, w_model=1.0, w_recon=0.0, w_model_hl=(), hidden_layers=(), kl_clip=None):
        super().__init__()
        self.kl_clip = kl_clip
        self.temperature = temperature
        self.w_model = w_model
        self.w_recon = w_recon
        self.w_model_hl = tuple(w_model_hl)
        self.hidden_layers = tuple(hidden_layers)

    def forward(self, x, x_recon, classifier, heads):
        model_kl, hidden_kl, _ = divergence_terms(
            classifier,
            x,
            x_recon,
            layers=self.hidden_layers,
            heads=heads,
            weights=self.w_model_hl,
            temperature=self.temperature,
            teacher_as_target=True,
            kl_clip=self.kl_clip,
        )
        return adversarial_ae_loss(x, x_recon, model_kl, hidden_kl, self.w_model, self.w_recon)


# ----------------------------------------------------------------------------- modules


class AutoencoderWithHeads(nn.Module):
    """What the optimizer trains: the autoencoder and the hidden-layer heads."""

    def __init__(self, ae, heads):
        super().__init__()
        self.ae = ae
        self.heads = heads

    def forward(self, x):
        return self.ae(x)


class _CropTo(nn.Module):
    """Crop the trailing spatial dimensions to ``size`` (transposed convolutions overshoot)."""

    def __init__(self, size):
        super().__init__()
        self.size = tuple(size)

    def forward(self, x):
        height, width = self.size
        return x[..., :height, :width]


def default_autoencoder(input_shape):
    """A small autoencoder for rows shaped ``input_shape``.

    Images ``(C, H, W)`` get two stride-2 convolutions and two transposed convolutions;
    any other shape an MLP ``n → h → d → h → n`` with ``h = clip(2n, 16, 128)`` and
    ``d = clip(n // 2, 1, 32)`` (64-128-32 / 32-128-64 for 8×8 digits).
    """
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) == 3:
        channels, height, width = input_shape
        encoder = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        decoder = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(16, channels, 4, stride=2, padding=1),
            _CropTo((height, width)),
        )
        return nn.Sequential(encoder, decoder)
    n_inputs = int(np.prod(input_shape))
    hidden = int(np.clip(2 * n_inputs, 16, 128))
    latent = int(np.clip(n_inputs // 2, 1, 32))
    encoder = [nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, latent)]
    decoder = [nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, n_inputs)]
    if len(input_shape) > 1:
        encoder.insert(0, nn.Flatten())
        decoder.append(nn.Unflatten(1, input_shape))
    return nn.Sequential(nn.Sequential(*encoder), nn.Sequential(*decoder))


class AdversarialAENet(NetWithFrozenModel, TrainingNet):
    """skorch net training the autoencoder (and heads) against the frozen classifier."""

    def get_loss(self, y_pred, y_true, X=None, training=False):
        x = to_tensor(X, device=self.device)
        return self.criterion_(x, y_pred, self.frozen_model, self.module_.heads)


# ----------------------------------------------------------------------------- the detector


@fill_detector_doc
class AdversarialAEDetector(TrainedDetector):
    """Detect and correct adversarial inputs with an autoencoder matched to the classifier.

    An autoencoder ``AE`` is trained on clean data, with the protected classifier ``M``
    frozen, so that ``M(AE(x))`` matches ``M(x)``. Clean inputs are reconstructed into
    inputs the classifier treats alike; adversarial perturbations, which live off the data
    the autoencoder learned, are not reproduced, so the two predictions disagree. The
    adversarial score is

    ``KL(M(x)_T ‖ M(x')) + Σ_l w_l · KL(h_l(x) ‖ h_l(x'))``, with ``x' = AE(x)``,

    where ``M(x)_T = softmax(log M(x) / T)`` is the temperature-scaled prediction and
    ``h_l`` are optional heads (flatten → linear → softmax) on hidden layers of the
    classifier. Training minimises

    ``w_model · mean[score] + w_recon · s · mean((x − x')²)``,

    ``s`` scaling the reconstruction error to the spread of the KL term (alibi-detect's
    choice; here a constant per batch). :meth:`correct` classifies flagged inputs from
    their reconstruction.

    Port of alibi-detect's ``AdversarialAE`` (Vacanti & Van Looveren, 2020) to PyTorch,
    trained through skorch, with the sklearn outlier-detector API. Unlike the seed, the
    hidden-layer heads are trained jointly with the autoencoder and persisted with it,
    and the classifier runs once per batch for the output and all hidden layers.

    Parameters
    ----------
%(model)s
    encoder_net, decoder_net : nn.Module, default=None
        Encoder and decoder of the autoencoder, chained as ``decoder_net(encoder_net(x))``;
        give both or neither.
    ae : nn.Module, default=None
        A whole autoencoder mapping a batch shaped ``(n, *input_shape)`` to the same shape;
        alternative to ``encoder_net`` + ``decoder_net``. With neither, a default one is
        built from the data: an MLP ``n → h → d → h → n`` (``h = clip(2n, 16, 128)``,
        ``d = clip(n // 2, 1, 32)``), or a small convolutional autoencoder when
        ``input_shape`` is an image ``(C, H, W)``.
    hidden_layer_kld : dict, default=None
        ``{layer: dim}``: add a KL term on each hidden layer of the classifier. ``layer`` is
        a dotted name from ``model.named_modules()`` (``model.module_`` for a skorch net) or
        an int position in that list without its root entry (so ``i`` is ``model[i]`` for an
        ``nn.Sequential``). The layer's output (its first call, if the forward pass calls
        it several times) is flattened and fed to a trained head ``Linear(dim)`` whose
        softmax is compared.
    model_hl : list of nn.Module, default=None
        Heads to use instead of the default ones, one per entry of ``hidden_layer_kld`` in
        its order; each maps the layer's output batch to logits. They are copied and
        trained jointly with the autoencoder.
    w_model_hl : list of float, default=None
        Weight of each hidden-layer term, in the order of ``hidden_layer_kld``; None
        weighs each by 1.
    temperature : float, default=1.0
        Temperature applied to the classifier's prediction on the original input,
        ``softmax(log p / T)``: below 1 sharpens, above 1 softens. Used in training and
        in the score.
    w_model : float, default=1.0
        Weight of the KL terms in the training loss.
    w_recon : float, default=0.0
        Weight of the scaled reconstruction error in the training loss.
    kl_clip : float in (0, 1), default=None
        Clip both distributions of every KL term to ``[kl_clip, 1]`` before comparing
        them, in training and in the score, as alibi-detect does (Keras' ``kld`` clips at
        1e-7): a class the reconstruction gives less than ``kl_clip`` then passes no
        gradient. None compares the exact distributions.
    data_type : {'image', 'tabular', 'time-series'}, default=None
        Describes the data (kept as metadata, as in alibi-detect).
%(detector_params)s
%(training_params)s
%(input_params)s
%(memory_format)s

    Attributes
    ----------
    ae_ : nn.Module
        The trained autoencoder (eval mode).
    hidden_heads_ : nn.ModuleList
        The trained hidden-layer heads, one per entry of ``hidden_layers_``.
    hidden_layers_ : tuple of str
        Dotted names, in the protected model, of the layers with a KL term.
    w_model_hl_ : tuple of float
        Weights of the hidden-layer terms.
%(model_attributes)s
    n_classes_ : int
        Number of classes of the classifier.
%(training_attributes)s
%(detector_attributes)s
%(memory_format_attribute)s

    See Also
    --------
    ModelDistillationDetector : detection by a distilled student's disagreement.

    Notes
    -----
    A fitted detector can serve concurrent threads: its scoring methods keep all state
    local to the call and give exactly the serial results. A ``fit`` that raises (or
    is interrupted: Ctrl-C raises ``KeyboardInterrupt``) leaves the detector as it was.

    References
    ----------
    A. Vacanti, A. Van Looveren. "Adversarial Detection and Correction by Matching
    Prediction Distributions", arXiv:2002.09364, 2020.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skorch import NeuralNetClassifier
    >>> from sklearn.datasets import load_digits
    >>> from skadv import AdversarialAEDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X / 16.0).astype("float32")
    >>> _ = torch.manual_seed(0)
    >>> clf = NeuralNetClassifier(
    ...     nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
    ...     criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=0.01,
    ...     max_epochs=10, batch_size=64, train_split=None, verbose=0,
    ... ).fit(X, y)
    >>> det = AdversarialAEDetector(clf, hidden_layer_kld={"1": 8}, epochs=5, random_state=0)
    >>> det = det.fit(X[:1000])
    >>> det.predict(X[1000:1005]).shape
    (5,)
    >>> result = det.correct(X[1000:1005])
    >>> sorted(result)
    ['corrected', 'defense', 'instance_score', 'is_adversarial', 'no_defense']
    """

    _parameter_constraints = {
        **TrainedDetector._parameter_constraints,
        "encoder_net": [nn.Module, None],
        "decoder_net": [nn.Module, None],
        "ae": [nn.Module, None],
        "hidden_layer_kld": [dict, None],
        "model_hl": [list, tuple, None],
        "w_model_hl": ["array-like", None],
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "w_model": [Interval(numbers.Real, 0, None, closed="left")],
        "w_recon": [Interval(numbers.Real, 0, None, closed="left")],
        "kl_clip": [Interval(numbers.Real, 0, 1, closed="neither"), None],
        "data_type": [StrOptions({"image", "tabular", "time-series"}), None],
    }

    def __init__(
        self,
        model=None,
        *,
        encoder_net=None,
        decoder_net=None,
        ae=None,
        hidden_layer_kld=None,
        model_hl=None,
        w_model_hl=None,
        temperature=1.0,
        w_model=1.0,
        w_recon=0.0,
        kl_clip=None,
        data_type=None,
        model_output="auto",
        threshold=None,
        contamination=0.05,
        validation_fraction=None,
        epochs=20,
        batch_size=128,
        lr=1e-3,
        optimizer="adam",
        callbacks=None,
        verbose=False,
        inference_batch_size=None,
        preprocess_fn=None,
        input_shape=None,
        device="cpu",
        random_state=None,
        memory_format="auto",
    ):
        self.model = model
        self.encoder_net = encoder_net
        self.decoder_net = decoder_net
        self.ae = ae
        self.hidden_layer_kld = hidden_layer_kld
        self.model_hl = model_hl
        self.w_model_hl = w_model_hl
        self.temperature = temperature
        self.w_model = w_model
        self.w_recon = w_recon
        self.kl_clip = kl_clip
        self.data_type = data_type
        self.model_output = model_output
        self.threshold = threshold
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.verbose = verbose
        self.inference_batch_size = inference_batch_size
        self.preprocess_fn = preprocess_fn
        self.input_shape = input_shape
        self.device = device
        self.random_state = random_state
        self.memory_format = memory_format

    # -- training -----------------------------------------------------------
    def _build_autoencoder(self):
        if self.ae is not None:
            if self.encoder_net is not None or self.decoder_net is not None:
                raise ValueError("Pass either ae or encoder_net + decoder_net, not both.")
            return copy.deepcopy(self.ae)
        if (self.encoder_net is None) != (self.decoder_net is None):
            raise ValueError("encoder_net and decoder_net must be given together.")
        if self.encoder_net is not None:
            return nn.Sequential(copy.deepcopy(self.encoder_net), copy.deepcopy(self.decoder_net))
        return default_autoencoder(self.input_shape_)

    def _build_heads(self, x_sample):
        """Resolve the hidden layers and build their heads (sized on one forward pass)."""
        layer_dims = dict(self.hidden_layer_kld or {})
        self.hidden_layers_ = resolve_layers(self.model_.net, layer_dims, "hidden_layer_kld")
        n_layers = len(self.hidden_layers_)
        if self.w_model_hl is None:
            self.w_model_hl_ = (1.0,) * n_layers
        else:
            self.w_model_hl_ = tuple(float(w) for w in np.ravel(self.w_model_hl))
        if len(self.w_model_hl_) != n_layers:
            raise ValueError(f"w_model_hl has {len(self.w_model_hl_)} weights for {n_layers} hidden layers.")
        if self.model_hl is not None and len(self.model_hl) != n_layers:
            raise ValueError(f"model_hl has {len(self.model_hl)} heads for {n_layers} hidden layers.")
        if not n_layers:
            return nn.ModuleList()
        with torch.no_grad():
            _, features = forward_with_hidden(self.model_, self.hidden_layers_, x_sample)
        heads = []
        for position, (dim, feature) in enumerate(zip(layer_dims.values(), features)):
            if self.model_hl is not None:
                head = copy.deepcopy(self.model_hl[position])
            else:
                if not isinstance(dim, numbers.Integral) or dim < 1:
                    raise ValueError(f"hidden_layer_kld dims must be positive ints, got {dim!r}.")
                n_inputs = int(np.prod(feature.shape[1:]))
                head = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, int(dim)))
            head.to(self.device_)
            with torch.no_grad():
                head(feature)  # materialises lazy layers of a user's head
            heads.append(head)
        return nn.ModuleList(heads)

    _net_class = AdversarialAENet

    def _build_module(self, X_model):
        x_sample = torch.from_numpy(X_model[:1]).to(self.device_)
        ae = self._build_autoencoder().to(self.device_)
        heads = self._build_heads(x_sample)
        with torch.no_grad():
            self.n_classes_ = int(self.model_(x_sample).shape[1])
            if ae(x_sample).shape != x_sample.shape:
                raise ValueError(
                    f"The autoencoder maps rows of shape {tuple(x_sample.shape[1:])} to "
                    f"{tuple(ae(x_sample).shape[1:])}; it must reproduce the input shape."
                )
        return AutoencoderWithHeads(ae, heads)

    def _net_options(self):
        return {
            "frozen_model": self.model_,
            "criterion": AdversarialAELoss,
            "criterion__temperature": self.temperature,
            "criterion__w_model": self.w_model,
            "criterion__w_recon": self.w_recon,
            "criterion__w_model_hl": self.w_model_hl_,
            "criterion__hidden_layers": self.hidden_layers_,
            "criterion__kl_clip": self.kl_clip,
        }

    def _store_trained_module(self, module):
        self.ae_ = module.ae
        self.hidden_heads_ = module.heads

    # -- scoring ------------------------------------------------------------
    # Half the detectors' CPU default (1024 rows of 64 features): the classifier's activations
    # on the stacked 2n rows stay at 1 MiB. At 2048 rows (2 MiB) the allocator hands pages back
    # between batches, and refaulting them (~40 000 minor page faults per 100 000 rows) cost
    # the scoring ~15 % (benchmarks/adversarial_ae.py, one thread).
    _cpu_default_inference_values = 2**18

    def _inference_values_per_row(self):
        # The row, its reconstruction, and both stacked for the classifier.
        return 4 * self.n_features_in_

    def _divergences(self, x):
        """Adversarial score (n,) and class scores of ``x`` then ``AE(x)`` (2n, K) (see :func:`divergence_terms`)."""
        model_kl, hidden_kl, class_scores = divergence_terms(
            self.model_,
            x,
            self.ae_(x),
            layers=self.hidden_layers_,
            heads=self.hidden_heads_,
            weights=self.w_model_hl_,
            temperature=self.temperature,
            kl_clip=self.kl_clip,
        )
        return (model_kl if hidden_kl is None else model_kl + hidden_kl), class_scores

    def _score_tensor(self, x):
        return self._divergences(x)[0]

    def _correction_columns(self, x):
        score, class_scores = self._divergences(self._preprocess(x))
        predictions = class_scores.argmax(dim=1).reshape(2, -1).to(score.dtype)
        return torch.stack([score, predictions[0], predictions[1]], dim=1)

    def correct(self, X):
        """Classify each row, using its reconstruction where the row is flagged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        result : sklearn.utils.Bunch
            ``corrected``: the class of the reconstruction where the row is flagged, of the
            row itself otherwise; ``no_defense``: the classifier's class for the row;
            ``defense``: its class for the reconstruction; ``is_adversarial`` (int 0/1);
            ``instance_score`` (the adversarial score). Classes are output indices.
        """
        columns = self._batched(self._correction_columns, self._validate_predict_input(X))
        return self._correction(columns[:, 0], columns[:, 1].astype(np.intp), columns[:, 2].astype(np.intp))

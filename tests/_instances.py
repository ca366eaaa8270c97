"""Every public estimator configuration the contract suite (test_common.py) runs on.

Adding an estimator to skadv means adding ONE line to ``INSTANCES``: an unfitted, small,
seeded configuration. The tests clone it (the protected model is deep-copied), fit it on
a few random rows of any width (the models are lazy) and run the whole contract on it:
scikit-learn's common checks, persistence round trips, the user's model left untouched,
thread safety and failed fits, and CUDA where present.
"""

from torch import nn

from skadv import (
    AdversarialAEDetector,
    ConfidenceDetector,
    DeepNeuralRejection,
    DNRDetector,
    FeatureSqueezingDetector,
    MahalanobisDetector,
    ModelDistillationDetector,
    NystroemOneVsAll,
    OneVsAllSVC,
    VAEDetector,
)

from _models import LazyMLP, WavyMLP

# Small and fast: 2 epochs, 3 samples, 2 folds. LazyMLP/WavyMLP layers are body.0 (Flatten),
# body.1 (Linear), body.2 (ReLU or a sine), body.3 (Linear); as a position, 3 is body.2
# (named_modules() lists "body" first). DNRDetector fits on the network's own predictions:
# WavyMLP predicts several classes even untrained.
INSTANCES = [
    AdversarialAEDetector(LazyMLP(), epochs=2, batch_size=16, random_state=0),
    AdversarialAEDetector(
        LazyMLP(), hidden_layer_kld={"body.1": 4, 3: 3}, w_recon=0.5, temperature=0.5, epochs=2, random_state=0
    ),
    ModelDistillationDetector(LazyMLP(), epochs=2, batch_size=16, random_state=0),
    VAEDetector(LazyMLP(), epochs=2, n_samples=3, latent_dim=2, random_state=0),
    DeepNeuralRejection(LazyMLP(), layers=["body.2", "body.3"], cv=2, batch_size=32, random_state=0),
    DNRDetector(DeepNeuralRejection(WavyMLP(), layers=["body.2", "body.3"], cv=2, batch_size=32, random_state=0)),
    OneVsAllSVC(),
    NystroemOneVsAll(n_components=20, random_state=0),
    ConfidenceDetector(LazyMLP()),
    ConfidenceDetector(LazyMLP(), score_type="energy", temperature=2.0, odin_eps=0.01),
    MahalanobisDetector(WavyMLP()),  # several predicted classes: several Gaussians
    FeatureSqueezingDetector(LazyMLP()),
]


def protected_model(estimator):
    """The user's torch model an estimator protects, or None (the kernel machines have none)."""
    params = estimator.get_params(deep=False)
    if "estimator" in params:  # a detector view wrapping another estimator
        return protected_model(params["estimator"])
    model = params.get("model")
    return model if isinstance(model, nn.Module) else None


_OVERWRITE_PARAMS = "joblib hashes of an nn.Module parameter and its deep copy differ"
_DECISION_SHAPE = (
    "decision_function has n_classes + 1 columns (the last is the reject threshold, secml's DNR convention)"
)


def expected_failed_checks(estimator):
    """scikit-learn common checks each configuration fails on purpose, with the reason."""
    failed = {}
    if protected_model(estimator) is not None:
        failed["check_estimators_overwrite_params"] = _OVERWRITE_PARAMS
    if isinstance(estimator, DeepNeuralRejection):
        failed["check_classifiers_train"] = _DECISION_SHAPE
        failed["check_classifiers_classes"] = _DECISION_SHAPE
    return failed


def _ids(estimators):
    """Test ids: the class name, numbered from the second configuration of a class on."""
    seen = {}
    for estimator in estimators:
        name = type(estimator).__name__
        seen[name] = seen.get(name, 0) + 1
        yield name if seen[name] == 1 else f"{name}-{seen[name]}"


#: The instances by test id, e.g. "VAEDetector", "AdversarialAEDetector-2".
BY_ID = dict(zip(_ids(INSTANCES), INSTANCES))
IDS = sorted(BY_ID)


def needs_y(estimator):
    """Whether ``fit`` takes labels (DeepNeuralRejection, the kernel machines) or clean rows alone."""
    return estimator.__sklearn_tags__().target_tags.required


def fit_instance(estimator, X, y):
    return estimator.fit(X, y[: len(X)]) if needs_y(estimator) else estimator.fit(X)

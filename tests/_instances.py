"""The estimators the contract suite (test_common.py) runs on: every public one, from discovery.

:func:`skadv.utils.discovery.all_estimators` lists the public estimators; ``PARAMS`` gives
each detector and classifier its construction parameters (one small, seeded configuration
per entry). Adding a detector to skadv means adding ONE entry to ``PARAMS``:
``test_every_public_estimator_has_an_entry`` fails until it is there. The tests clone each
instance (the protected model is deep-copied), fit it on a few random rows of any width
(the models are lazy) and run the whole contract on it: scikit-learn's common checks and
skadv's (:mod:`skadv.utils.estimator_checks`), and CUDA where present.
"""

from skadv import DeepNeuralRejection
from skadv.utils.discovery import all_estimators
from skadv.utils.estimator_checks import _fit as fit_instance  # noqa: F401 (test_cuda uses it)
from skadv.utils.estimator_checks import _needs_y as needs_y  # noqa: F401
from skadv.utils.estimator_checks import _user_modules

from _models import LazyMLP, WavyMLP

#: The families the contract covers (estimators that score data: detectors, and classifiers with a reject option).
CONTRACT_TYPES = ["detector", "classifier"]

# Small and fast: 2 epochs, 3 samples, 2 folds. LazyMLP/WavyMLP layers are body.0 (Flatten),
# body.1 (Linear), body.2 (ReLU or a sine), body.3 (Linear); as a position, 3 is body.2
# (named_modules() lists "body" first). DNRDetector fits on the network's own predictions:
# WavyMLP predicts several classes even untrained.
PARAMS = {
    "AdversarialAEDetector": [
        dict(model=LazyMLP(), epochs=2, batch_size=16, random_state=0),
        dict(
            model=LazyMLP(), hidden_layer_kld={"body.1": 4, 3: 3}, w_recon=0.5, temperature=0.5, epochs=2,
            random_state=0,
        ),
    ],
    "ModelDistillationDetector": [dict(model=LazyMLP(), epochs=2, batch_size=16, random_state=0)],
    "VAEDetector": [dict(model=LazyMLP(), epochs=2, n_samples=3, latent_dim=2, random_state=0)],
    "DeepNeuralRejection": [
        dict(model=LazyMLP(), layers=["body.2", "body.3"], cv=2, batch_size=32, random_state=0)
    ],
    "DNRDetector": [
        dict(
            estimator=DeepNeuralRejection(
                WavyMLP(), layers=["body.2", "body.3"], cv=2, batch_size=32, random_state=0
            )
        )
    ],
    "OneVsAllSVC": [dict()],
    "NystroemOneVsAll": [dict(n_components=20, random_state=0)],
    "ConfidenceDetector": [
        dict(model=LazyMLP()),
        dict(model=LazyMLP(), score_type="energy", temperature=2.0, odin_eps=0.01),
    ],
    "MahalanobisDetector": [dict(model=WavyMLP())],  # several predicted classes: several Gaussians
    "FeatureSqueezingDetector": [dict(model=LazyMLP())],
}

#: Public estimators outside the contract (besides the attacks, tested in test_attacks.py), with the reason.
OUTSIDE_CONTRACT = {
    "ImageCorruption": "a stateless transformer of clean rows, not a scorer (tested in test_corruptions.py)",
}

INSTANCES = [
    cls(**params) for name, cls in all_estimators(type_filter=CONTRACT_TYPES) for params in PARAMS.get(name, ())
]


def protected_model(estimator):
    """The user's torch model an estimator protects, or None (the kernel machines have none)."""
    models = _user_modules(estimator)
    return models[0] if models else None


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

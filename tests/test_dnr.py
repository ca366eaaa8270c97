"""Tests of DeepNeuralRejection, its detector view and OneVsAllSVC."""

import copy
import io
from collections import OrderedDict

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, ShuffleSplit, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn

from skadv import DeepNeuralRejection, DNRDetector, OneVsAllSVC
from skadv.rejection._kernels import kernel_machine_from

from _attack_helpers import digits_data
from _models import LazyMLP, fit_classifier

N_TRAIN, N_TEST = 500, 200
LAYER_PARAMS = {"features.relu2": (10.0, 1e-2), "classifier.relu3": (10.0, 1e-1), "classifier.fc2": (1.0, 1e-2)}


class NamedLayerCNN(nn.Module):
    """Small CNN over 8x8 digits with named layers."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 8, 3, padding=1),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(8, 16, 3, padding=1),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(flatten=nn.Flatten(), fc1=nn.Linear(64, 32), relu3=nn.ReLU(), fc2=nn.Linear(32, 10))
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.fixture(scope="module")
def dnr_digits():
    """Shuffled dnr_digits: N_TRAIN training and N_TEST test rows, as (X, y, X_test, y_test)."""
    (X, y), (X_test, y_test) = digits_data(n_train=N_TRAIN, n_test=N_TEST)
    return X, y, X_test, y_test


@pytest.fixture(scope="module")
def cnn_net(dnr_digits):
    """The CNN trained through skorch (full-batch Adam, 60 epochs), as a fitted NeuralNetClassifier."""
    X, y, _, _ = dnr_digits
    return fit_classifier(NamedLayerCNN, X.reshape(-1, 1, 8, 8), y, epochs=60, lr=1e-2, seed=0)


@pytest.fixture(scope="module")
def cnn(cnn_net):
    """The trained CNN module (eval mode): what most tests protect and attack."""
    return cnn_net.module_


def make_dnr(net, **params):
    layers = [(name, OneVsAllSVC(C=C, gamma=gamma)) for name, (C, gamma) in LAYER_PARAMS.items()]
    params = {"layers": layers, "input_shape": (1, 8, 8), "cv": KFold(5, shuffle=True, random_state=0), **params}
    return DeepNeuralRejection(net, **params)


@pytest.fixture(scope="module")
def fitted(dnr_digits, cnn):
    X, y, _, _ = dnr_digits
    return make_dnr(cnn).fit(X, y)


def hooked_features(net, names, X):
    """Outputs of the named layers, read with hooks on the user's network."""
    modules = dict(net.named_modules())
    outputs = {}
    handles = [
        modules[name].register_forward_hook(
            lambda m, a, out, name=name: outputs.__setitem__(name, out.reshape(len(out), -1).double().numpy())
        )
        for name in names
    ]
    with torch.no_grad():
        net(torch.as_tensor(X, dtype=torch.float32).reshape(-1, 1, 8, 8))
    for handle in handles:
        handle.remove()
    return [outputs[name] for name in names]


# ----------------------------------------------------------------------------- exactness


def test_decisions_equal_hand_assembled_sklearn_reference(dnr_digits, cnn, fitted):
    X, y, X_test, _ = dnr_digits
    names = list(LAYER_PARAMS)
    features, test_features = hooked_features(cnn, names, X), hooked_features(cnn, names, X_test)

    def layer_svm(name):
        C, gamma = LAYER_PARAMS[name]
        return OneVsRestClassifier(SVC(C=C, gamma=gamma))

    out_of_fold = np.zeros((len(X), 10 * len(names)))
    for train, test in KFold(5, shuffle=True, random_state=0).split(X):
        for i, (name, F) in enumerate(zip(names, features)):
            svm = layer_svm(name).fit(F[train], y[train])
            out_of_fold[test, 10 * i : 10 * (i + 1)] = svm.decision_function(F[test])
    layer_svms = [layer_svm(name).fit(F, y) for name, F in zip(names, features)]
    combiner = OneVsRestClassifier(SVC(C=0.1, gamma=1.0)).fit(out_of_fold, y)
    stacked = np.hstack([s.decision_function(F) for s, F in zip(layer_svms, test_features)])
    expected = combiner.decision_function(stacked)

    decision = fitted.decision_function(X_test)
    assert decision.shape == (N_TEST, 11)
    np.testing.assert_allclose(decision[:, :10], expected, rtol=0, atol=1e-8)
    assert np.all(decision[:, 10] == -np.inf)
    np.testing.assert_array_equal(fitted.predict(X_test), expected.argmax(axis=1))
    np.testing.assert_allclose(fitted.score_samples(X_test), expected.max(axis=1), atol=1e-8)


def test_torch_kernel_path_equals_sklearn_decision_values(dnr_digits, fitted):
    _, _, X_test, _ = dnr_digits
    assert len(fitted.kernel_net_.layers) == 3 and fitted.kernel_net_.combiner is not None
    features = fitted._layer_features(fitted._validate_predict_input(X_test))
    for i, (estimator, F) in enumerate(zip(fitted.layer_estimators_, features)):
        torch_scores = fitted.kernel_net_.layers[str(i)](torch.as_tensor(F)).numpy()
        np.testing.assert_allclose(torch_scores, estimator.decision_function(F), rtol=0, atol=1e-5)
    stacked = np.hstack([e.decision_function(F) for e, F in zip(fitted.layer_estimators_, features)])
    np.testing.assert_allclose(
        fitted.kernel_net_.combiner(torch.as_tensor(stacked)).numpy(),
        fitted.combiner_.decision_function(stacked),
        rtol=0,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        fitted.decision_function(X_test)[:, :10], fitted.combiner_.decision_function(stacked), atol=1e-5
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda X, y: OneVsAllSVC(C=3).fit(X, y),
        lambda X, y: OneVsAllSVC(precompute_kernel=False).fit(X, y),
        lambda X, y: OneVsRestClassifier(SVC(C=3)).fit(X, y),
        lambda X, y: SVC(gamma=0.05).fit(X, y % 2),
        lambda X, y: OneVsAllSVC().fit(X, y % 2),
    ],
    ids=["ova", "ova-rbf", "ovr-svc", "binary-svc", "binary-ova"],
)
def test_kernel_machine_matches_estimators(dnr_digits, make):
    X, y, X_test, _ = dnr_digits
    estimator = make(X[:300].astype(np.float64), y[:300])
    expected = estimator.decision_function(X_test)
    got = kernel_machine_from(estimator)(torch.as_tensor(X_test, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=0, atol=1e-10)


def test_one_vs_all_svc_equals_sklearn_one_vs_rest(dnr_digits):
    X, y, X_test, _ = dnr_digits
    ours = OneVsAllSVC(C=10, gamma=0.05).fit(X, y)
    ovr = OneVsRestClassifier(SVC(C=10, gamma=0.05)).fit(X, y)
    np.testing.assert_allclose(ours.decision_function(X_test), ovr.decision_function(X_test), atol=1e-8)
    np.testing.assert_array_equal(ours.n_support_, [len(e.support_) for e in ovr.estimators_])


def test_input_gradient_matches_finite_differences(dnr_digits, fitted):
    _, _, X_test, _ = dnr_digits
    dnr = copy.deepcopy(fitted)
    dnr.model_.double()  # float64 end to end so finite differences are precise
    # Digits have flat zero regions, where max-pooling ties make the network non-smooth:
    # a little noise moves the points off those ties.
    X_noisy = X_test[:3] + np.random.RandomState(0).uniform(0, 0.05, size=(3, 64))
    x = torch.as_tensor(X_noisy, dtype=torch.float64).reshape(-1, 1, 8, 8).requires_grad_(True)
    forward = dnr.attack_surface().forward
    assert torch.autograd.gradcheck(lambda x: forward(x)[:, :10], (x,), eps=1e-6, atol=1e-5, rtol=1e-3)
    # The float32 path used by attacks has the same gradient up to float32 precision.
    x32 = x.detach().float().requires_grad_(True)
    (grad32,) = torch.autograd.grad(fitted.attack_surface().forward(x32)[:, :10].sum(), x32)
    (grad64,) = torch.autograd.grad(dnr.attack_surface().forward(x)[:, :10].sum(), x)
    np.testing.assert_allclose(grad32.double().numpy(), grad64.numpy(), atol=1e-3)


# ----------------------------------------------------------------------------- threshold and reject


def test_compute_threshold_rejects_exactly_round_p_n(dnr_digits, fitted):
    _, _, X_test, _ = dnr_digits
    dnr = clone_fitted(fitted)
    assert np.sum(dnr.predict(X_test) == -1) == 0  # default: reject nothing
    for p, expected in [(0.0, 0), (0.1, 20), (0.0125, 3), (0.5, 100), (1.0, N_TEST)]:  # 0.0125 * 200 = 2.5 -> 3
        dnr.set_params(threshold=dnr.compute_threshold(X_test, p))
        labels, decision = dnr.predict(X_test), dnr.decision_function(X_test)
        assert np.sum(labels == -1) == expected, p
        np.testing.assert_array_equal(decision.argmax(axis=1) == 10, labels == -1)
        np.testing.assert_array_equal(dnr.score_samples(X_test) < dnr.threshold, labels == -1)
    # Ties at the threshold are kept: duplicated rows cannot be split.
    X_tied = np.repeat(X_test[:5], 4, axis=0)
    dnr.set_params(threshold=dnr.compute_threshold(X_tied, 0.1))
    assert np.sum(dnr.predict(X_tied) == -1) in (0, 4)
    for bad in (-0.1, 10, "0.1"):
        with pytest.raises(ValueError, match="rej_percent"):
            dnr.compute_threshold(X_test, bad)


def clone_fitted(dnr):
    return joblib.load(dump_to_buffer(dnr))


def dump_to_buffer(obj):
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    buffer.seek(0)
    return buffer


def test_predict_with_string_labels_uses_minus_one_for_rejected():
    X, y = make_blobs(n_samples=120, centers=3, random_state=0)
    X = StandardScaler().fit_transform(X)
    labels = np.array(["a", "b", "c"])[y]
    dnr = DeepNeuralRejection(LazyMLP(), layers=["body.2"], random_state=0).fit(X, labels)
    assert set(dnr.predict(X)) <= {"a", "b", "c"}
    dnr.set_params(threshold=dnr.compute_threshold(X, 0.25))
    predicted = dnr.predict(X)
    assert predicted.dtype == object and np.sum(predicted == -1) == 30
    assert set(predicted[predicted != -1]) <= {"a", "b", "c"}


# ----------------------------------------------------------------------------- parameters


def test_nested_set_params_reach_the_right_layer(dnr_digits, cnn):
    X, y, _, _ = dnr_digits
    dnr = DeepNeuralRejection(
        cnn,
        layers=[("features.relu2", OneVsRestClassifier(SVC())), ("classifier.relu3", OneVsAllSVC()), "classifier.fc2"],
        layer_clf=OneVsAllSVC(C=2.0),
        input_shape=(1, 8, 8),
        random_state=0,
    )
    params = dnr.get_params(deep=True)
    assert params["features.relu2__estimator__C"] == 1.0 and params["classifier.relu3__C"] == 1.0
    assert params["layer_clf__C"] == 2.0 and "classifier.fc2" not in params
    dnr.set_params(**{"features.relu2__estimator__C": 7.0, "classifier.relu3__gamma": 0.5, "layer_clf__C": 3.0})
    assert dnr.layers[0][1].estimator.C == 7.0
    assert dnr.layers[1][1].gamma == 0.5 and dnr.layers[1][1].C == 1.0
    assert dnr.layer_clf.C == 3.0
    dnr.set_params(**{"classifier.relu3": OneVsAllSVC(C=5.0)})
    assert dnr.layers[1][1].C == 5.0 and dnr.layers[1][0] == "classifier.relu3"
    assert clone(dnr).get_params()["classifier.relu3__C"] == 5.0

    dnr.fit(X[:200], y[:200])
    assert dnr.layer_names_ == ["features.relu2", "classifier.relu3", "classifier.fc2"]
    assert dnr.layer_estimators_[0].estimators_[0].C == 7.0
    assert dnr.layer_estimators_[1].C == 5.0
    assert dnr.layer_estimators_[2].C == 3.0
    assert len(dnr.kernel_net_.layers) == 3  # OneVsRestClassifier(SVC) converts too
    with pytest.raises(ValueError, match="Invalid parameter"):
        dnr.set_params(**{"features.relu9__C": 1.0})


def test_grid_search_over_a_layer_parameter():
    X, y = make_blobs(n_samples=90, centers=3, random_state=0)
    dnr = DeepNeuralRejection(LazyMLP(), layers=[("body.2", OneVsAllSVC())], random_state=0)
    search = GridSearchCV(dnr, {"body.2__C": [0.01, 10.0]}, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    search.fit(X, y)
    assert search.best_params_ == {"body.2__C": 10.0}
    assert search.best_estimator_.layer_estimators_[0].C == 10.0


def test_n_jobs_two_gives_the_same_model(dnr_digits, cnn):
    X, y, X_test, _ = dnr_digits
    serial = make_dnr(cnn, n_jobs=1).fit(X[:250], y[:250])
    parallel = make_dnr(cnn, n_jobs=2).fit(X[:250], y[:250])
    for a, b in zip(serial.layer_estimators_ + [serial.combiner_], parallel.layer_estimators_ + [parallel.combiner_]):
        np.testing.assert_array_equal(a.support_, b.support_)
        np.testing.assert_array_equal(a.dual_coef_, b.dual_coef_)
        np.testing.assert_array_equal(a.intercept_, b.intercept_)
    # Identical models; evaluating arrays that came back from worker processes (other memory
    # layout) rounds differently in the last bit (measured 3e-15 without OMP_NUM_THREADS=1).
    np.testing.assert_allclose(serial.decision_function(X_test), parallel.decision_function(X_test),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(serial.predict(X_test), parallel.predict(X_test))


def test_cv_int_and_non_partition(dnr_digits, cnn):
    X, y, X_test, _ = dnr_digits
    a = DeepNeuralRejection(cnn, layers=["classifier.relu3"], input_shape=(1, 8, 8), cv=3, random_state=1)
    b = clone(a).set_params(cv=KFold(3, shuffle=True, random_state=0))
    a.fit(X[:150], y[:150])
    assert a.decision_function(X_test).shape == (N_TEST, 11)
    with pytest.raises(ValueError, match="exactly one test fold"):
        b.set_params(cv=ShuffleSplit(3, random_state=0)).fit(X[:150], y[:150])


def test_fold_missing_a_class_warns_and_fits():
    X, y = make_blobs(n_samples=40, centers=3, random_state=0)
    y[0] = 3  # class 3 has a single row: every training fold but one lacks it
    with pytest.warns(UserWarning, match="lack a class"):
        dnr = DeepNeuralRejection(LazyMLP(), layers=["body.2"], random_state=0).fit(X, y)
    assert dnr.decision_function(X).shape == (40, 5)


def test_non_kernel_layer_classifier_runs_without_gradients(dnr_digits, cnn):
    X, y, X_test, _ = dnr_digits
    dnr = DeepNeuralRejection(
        cnn,
        layers=[("classifier.relu3", LogisticRegression(max_iter=300)), "classifier.fc2"],
        input_shape=(1, 8, 8),
        random_state=0,
    ).fit(X[:200], y[:200])
    assert list(dnr.kernel_net_.layers) == ["1"]
    assert dnr.decision_function(X_test).shape == (N_TEST, 11)
    with pytest.raises(ValueError, match="Gradients need"):
        dnr.attack_surface().forward(torch.as_tensor(X_test[:2]).reshape(-1, 1, 8, 8))


# ----------------------------------------------------------------------------- bad input, persistence


def test_bad_input(dnr_digits, cnn, fitted):
    X, y, X_test, _ = dnr_digits
    with pytest.raises(NotFittedError, match="DeepNeuralRejection instance is not fitted yet"):
        make_dnr(cnn).predict(X_test)
    with pytest.raises(ValueError, match="not among the modules of the model"):
        DeepNeuralRejection(cnn, layers=["features.relu9"], input_shape=(1, 8, 8)).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="layers is empty"):
        DeepNeuralRejection(cnn, layers=[], input_shape=(1, 8, 8)).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="no '__'"):
        DeepNeuralRejection(cnn, layers=[("a__b", OneVsAllSVC())], input_shape=(1, 8, 8)).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="unique"):
        DeepNeuralRejection(cnn, layers=["classifier.fc2", "classifier.fc2"], input_shape=(1, 8, 8)).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="Unsupported model"):
        DeepNeuralRejection(LogisticRegression().fit(X, y), layers=["x"]).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="input_shape"):
        DeepNeuralRejection(cnn, layers=["classifier.fc2"], input_shape=(1, 8, 9)).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="1 class"):
        make_dnr(cnn).fit(X[:50], np.zeros(50))
    with pytest.raises(ValueError, match="requires y"):
        make_dnr(cnn).fit(X[:50], None)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X_test[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(np.full((2, 64), np.nan))


# ----------------------------------------------------------------------------- detector view, attacks


def test_detector_view(dnr_digits, fitted):
    X, y, X_test, _ = dnr_digits
    dnr = clone_fitted(fitted)
    dnr.set_params(threshold=dnr.compute_threshold(X_test, 0.2))
    detector = dnr.as_detector()
    assert clone(detector).estimator.estimator is dnr  # frozen: clone keeps the fitted DNR
    flags = detector.predict(X_test)
    assert set(np.unique(flags)) == {-1, 1}
    np.testing.assert_array_equal(flags == -1, dnr.predict(X_test) == -1)
    np.testing.assert_allclose(detector.decision_function(X_test), dnr.score_samples(X_test) - dnr.threshold)
    assert detector.offset_ == dnr.threshold
    np.testing.assert_array_equal(joblib.load(dump_to_buffer(detector)).predict(X_test), flags)

    unfitted = DNRDetector(
        DeepNeuralRejection(fitted.model, layers=["classifier.fc2"], input_shape=(1, 8, 8), threshold=0.0)
    )
    assert set(unfitted.fit(X[:100], y[:100]).predict(X_test)) <= {-1, 1}
    with pytest.raises(ValueError, match="without class labels y"):
        DNRDetector(IsolationForest()).fit(X[:100])


def test_detector_fits_without_y_on_the_networks_predictions(dnr_digits, cnn_net):
    """DNRDetector.fit(X) equals fitting the DNR on the network's own predicted labels."""
    X, _, X_test, _ = dnr_digits
    X_fit = X[:150]
    template = make_dnr(FrozenEstimator(cnn_net), threshold=0.0, random_state=0)
    detector = DNRDetector(template).fit(X_fit)
    predicted = cnn_net.predict(X_fit.reshape(-1, 1, 8, 8))  # skorch's own labels
    by_hand = clone(template).fit(X_fit, predicted)
    np.testing.assert_array_equal(detector.estimator_.classes_, np.unique(predicted))
    np.testing.assert_array_equal(detector.score_samples(X_test), by_hand.score_samples(X_test))
    np.testing.assert_array_equal(detector.predict(X_test) == -1, by_hand.predict(X_test) == -1)
    assert detector.offset_ == detector.threshold_ == 0.0
    # The outlier contract: fit_predict == fit().predict() with no labels at all.
    np.testing.assert_array_equal(clone(detector).fit_predict(X_fit), detector.predict(X_fit))
    # One predicted class cannot train one-vs-all SVMs: a clear error.
    with (
        pytest.raises(ValueError, match="network's predictions on X contain only 1 class"),
        pytest.warns(UserWarning, match="fitted on 10 copies of a single row"),
    ):
        DNRDetector(clone(template)).fit(np.repeat(X_fit[:1], 10, axis=0))


def test_infer_threshold_matches_the_detectors_semantics(dnr_digits, fitted):
    """DNR's infer_threshold accepts threshold_perc % of X, as the detectors' does (hand computation)."""
    _, _, X_test, _ = dnr_digits
    dnr = clone_fitted(fitted)
    scores = dnr.score_samples(X_test)
    for perc in (95, 80.5, 100, 0):
        assert dnr.infer_threshold(X_test, threshold_perc=perc) is dnr
        expected = np.percentile(scores, 100 - perc)
        assert dnr.threshold == dnr.threshold_ == expected
        rejected = dnr.predict(X_test) == -1
        np.testing.assert_array_equal(rejected, scores < expected)
    dnr.infer_threshold(X_test, threshold_perc=90)
    assert rejected.sum() == N_TEST - 1 and np.sum(dnr.predict(X_test) == -1) == N_TEST // 10
    # secml's call still works and agrees where the percentile falls between rows.
    assert np.sum(dnr.predict(X_test) == -1) == np.sum(scores < dnr.compute_threshold(X_test, 0.1))

    # The detector view: same numbers on its own offset_, the wrapped DNR untouched.
    detector = clone_fitted(fitted).as_detector().infer_threshold(X_test, 90)
    assert detector.offset_ == detector.threshold_ == np.percentile(scores, 10)
    assert detector.estimator_.estimator.threshold is None
    np.testing.assert_array_equal(detector.predict(X_test) == -1, dnr.predict(X_test) == -1)
    x = torch.as_tensor(X_test[:4]).reshape(-1, 1, 8, 8)
    assert torch.all(detector.attack_surface().forward(x)[:, -1] == detector.offset_)
    # Both attack surfaces: argmax == K exactly where the estimator rejects.
    for est in (dnr, detector):
        surface = est.attack_surface()
        assert (surface.reject_index, surface.outputs_are_logits) == (len(dnr.classes_), False)
        decision = surface.scores(X_test).argmax(axis=1)
        np.testing.assert_array_equal(decision == surface.reject_index, est.predict(X_test) == -1)

    for est in (dnr, detector):
        with pytest.warns(UserWarning, match="threshold_perc=0.95 is a percent"):
            est.infer_threshold(X_test, 0.95)
        for bad in (-1, 101, "95", True):
            with pytest.raises(ValueError, match="threshold_perc must be a percent"):
                est.infer_threshold(X_test, bad)


def test_rejects_noise_and_attacks_run_end_to_end(dnr_digits, fitted):
    from skadv.attacks import PGD, PGDLineSearch

    _, _, X_test, y_test = dnr_digits
    dnr = clone_fitted(fitted)
    dnr.set_params(threshold=dnr.compute_threshold(X_test, 0.1))
    # RBF scores abate away from the data: uniform noise images are rejected.
    noise = np.random.RandomState(0).uniform(size=(100, 64)).astype(np.float32)
    assert np.mean(dnr.predict(noise) == -1) > 0.9

    X_attack, y_attack = X_test[:40], y_test[:40]
    # Non-adaptive PGD (against the CNN alone): DNR rejects many of its successes.
    X_adv = PGD(dnr, eps=0.3, step_size=0.05, max_iter=20, random_state=0, adaptive=False).generate(X_attack, y_attack)
    fooled_cnn = fitted.model_(torch.as_tensor(X_adv).reshape(-1, 1, 8, 8)).argmax(1).numpy() != y_attack
    rejected = dnr.predict(X_adv) == -1
    assert fooled_cnn.mean() > 0.5 and rejected[fooled_cnn].mean() > 0.3

    # Adaptive attack with secml's reject-aware objective runs against DNR in batches.
    attack = PGDLineSearch(dnr, eps=2.0, step_size=0.5, max_iter=10, batch_size=20)
    X_adaptive = attack.generate(X_attack, y_attack)
    assert X_adaptive.shape == X_attack.shape
    assert np.all(np.linalg.norm(X_adaptive - X_attack, axis=1) <= 2.0 + 1e-4)
    predicted = dnr.predict(X_adaptive)
    evaded = (predicted != -1) & (predicted != y_attack)
    clean_errors = dnr.predict(X_attack) != y_attack
    assert evaded.mean() > clean_errors.mean()


# ----------------------------------------------------------------------------- sklearn common checks


def test_fits_blobs_and_lists_like_the_skipped_common_checks():
    """What check_classifiers_train/_classes verify, with the K+1-column decision_function."""
    X, y = make_blobs(n_samples=300, random_state=0)
    X = StandardScaler().fit_transform(X)
    for X_, y_ in [(X, y), (X[y != 2], y[y != 2])]:
        dnr = DeepNeuralRejection(LazyMLP(), layers=["body.2", "body.3"], random_state=0)
        with pytest.raises(ValueError, match=f"X has {len(X_)} rows but y has {len(X_) - 1} labels"):
            dnr.fit(X_, y_[:-1])
        dnr.fit(X_.tolist(), y_.tolist())
        predicted = dnr.predict(X_)
        assert np.mean(predicted == y_) > 0.83
        decision = dnr.decision_function(X_)
        n_classes = len(np.unique(y_))
        assert decision.shape == (len(X_), n_classes + 1)
        np.testing.assert_array_equal(dnr.classes_[decision.argmax(axis=1)], predicted)
        for method in (dnr.predict, dnr.decision_function, dnr.score_samples):
            with pytest.raises(ValueError, match=f"X has {len(X_)} features, but DeepNeuralRejection is expecting 2"):
                method(X_.T)
    y_named = np.take(["one", "two"], y[y != 2])
    for y_ in (y_named, y_named.astype(object), np.take([-1, 1], y[y != 2])):
        dnr = DeepNeuralRejection(LazyMLP(), layers=["body.2"], random_state=0).fit(X[y != 2], y_)
        np.testing.assert_array_equal(dnr.classes_, np.unique(y_))
        predicted = dnr.predict(X[y != 2])
        np.testing.assert_array_equal(np.unique(predicted), np.unique(y_))
        np.testing.assert_array_equal(dnr.classes_[dnr.decision_function(X[y != 2]).argmax(axis=1)], predicted)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(dnr_digits, cnn, fitted):
    X, y, X_test, _y_test = dnr_digits
    on_gpu = make_dnr(cnn, device="cuda").fit(X, y)
    assert on_gpu.kernel_net_.combiner.support_vectors.is_cuda
    # Same features up to cuDNN rounding (TF32 convolutions by default: ~1e-3 relative on an
    # H100, measured up to 2.3e-3 on the decisions), so the SVMs agree closely with the CPU fit.
    np.testing.assert_allclose(on_gpu.decision_function(X_test), fitted.decision_function(X_test), atol=5e-3)
    assert np.mean(on_gpu.predict(X_test) == fitted.predict(X_test)) > 0.99
    # The CUDA kernel path equals the fitted estimators' decision_function.
    features = on_gpu._layer_features(on_gpu._validate_predict_input(X_test))
    for i, (estimator, F) in enumerate(zip(on_gpu.layer_estimators_, features)):
        scores = on_gpu.kernel_net_.layers[str(i)](torch.as_tensor(F, device="cuda")).cpu().numpy()
        np.testing.assert_allclose(scores, estimator.decision_function(F), atol=1e-5)
    x = torch.as_tensor(X_test[:8], device="cuda").reshape(-1, 1, 8, 8).requires_grad_(True)
    on_gpu.attack_surface().forward(x)[:, :10].sum().backward()
    assert x.grad.is_cuda and torch.isfinite(x.grad).all()
    loaded = clone_fitted(on_gpu)
    assert loaded.device_ == "cuda"
    np.testing.assert_array_equal(loaded.decision_function(X_test), on_gpu.decision_function(X_test))


def test_protects_a_frozen_skorch_net(dnr_digits):
    from skorch import NeuralNetClassifier

    X, y, X_test, _ = dnr_digits
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=1)),
        max_epochs=5,
        lr=0.5,
        train_split=None,
        verbose=0,
    ).fit(X, y)
    dnr = DeepNeuralRejection(FrozenEstimator(net), layers=["1", "2"], random_state=0)
    fitted = clone(dnr).fit(X[:200], y[:200])
    assert fitted.decision_function(X_test).shape == (N_TEST, 11)
    assert np.mean(fitted.predict(X_test) == net.predict(X_test)) > 0.8


def test_fitted_skorch_net_and_its_module_give_the_same_dnr(dnr_digits, cnn_net, cnn):
    X, y, X_test, _ = dnr_digits
    params = {"layers": ["classifier.relu3"], "input_shape": (1, 8, 8), "cv": 3, "random_state": 0}
    from_net = DeepNeuralRejection(cnn_net, **params).fit(X[:150], y[:150])
    from_module = DeepNeuralRejection(cnn, **params).fit(X[:150], y[:150])
    np.testing.assert_array_equal(from_net.decision_function(X_test), from_module.decision_function(X_test))


def test_security_evaluation_on_a_conv_module_takes_input_shape(dnr_digits, cnn):
    from skadv.attacks import PGD
    from skadv.metrics import security_evaluation

    _, _, X_test, y_test = dnr_digits
    result = security_evaluation(cnn, PGD, X_test[:20], y_test[:20], [0.0, 0.1], input_shape=(1, 8, 8), max_iter=3)
    with torch.no_grad():
        clean_labels = cnn(torch.as_tensor(X_test[:20]).reshape(-1, 1, 8, 8)).argmax(1).numpy()
    assert result.accuracy[0] == np.mean(clean_labels == y_test[:20])
    assert result.accuracy[1] <= result.accuracy[0]


def test_security_evaluation_scores_dnr_by_its_own_labels(dnr_digits, fitted):
    import copy

    from skadv.attacks import PGD
    from skadv.metrics import accuracy_with_rejection, security_evaluation

    _, _, X_test, y_test = dnr_digits
    X, y = X_test[:60], y_test[:60]
    dnr = copy.deepcopy(fitted).set_params(threshold=fitted.compute_threshold(X, 0.2))
    result = security_evaluation(dnr, PGD, X, y, [0.0])
    prediction = dnr.predict(X)
    assert (prediction == -1).sum() == 12
    assert result.accuracy_with_rejection[0] == accuracy_with_rejection(y, prediction)
    assert result.evasion_rate[0] == np.mean((prediction != y) & (prediction != -1))

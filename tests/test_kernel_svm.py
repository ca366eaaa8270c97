"""Tests of the shared-kernel one-vs-all SVMs, the Nystroem approximation and DNR's fast paths."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics.pairwise import euclidean_distances, rbf_kernel
from sklearn.model_selection import KFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC
from torch import nn

from skadv import DeepNeuralRejection, NystroemOneVsAll, OneVsAllSVC
from skadv.rejection import FoldFit
from skadv.rejection._kernels import RBFKernelMachine, kernel_machine_from, squared_distances
from skadv.rejection._one_vs_all import OneVsAllFits

from _attack_helpers import digits_data


@pytest.fixture(scope="module")
def svm_digits():
    """All the digits, shuffled, as (X, y)."""
    return digits_data(n_train=1797, n_test=0)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_squared_distances_equal_sklearn(svm_digits, dtype, monkeypatch):
    X, _ = svm_digits
    X = X[:300].astype(dtype)
    monkeypatch.setattr("skadv.rejection._kernels._BLOCK_VALUES", 64 * 64)  # several blocks, both triangles
    expected = euclidean_distances(X.astype(np.float64), squared=True)
    symmetric = squared_distances(X)
    np.testing.assert_allclose(symmetric, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(symmetric, symmetric.T)
    assert np.all(np.diag(symmetric) == 0)
    read_only = X.copy()
    read_only.flags.writeable = False  # a memmap's rows: cast by numpy, without torch's warning
    np.testing.assert_array_equal(squared_distances(read_only), symmetric)
    np.testing.assert_allclose(squared_distances(X[:70], X[100:]), expected[:70, 100:], rtol=0, atol=1e-12)
    approx = squared_distances(X[:70], X[100:], dtype=torch.float32)
    np.testing.assert_allclose(approx, expected[:70, 100:], rtol=1e-5, atol=1e-5)


def test_fold_fits_equal_sklearn_on_each_fold(svm_digits):
    """Every fold's one-vs-all problems, on slices of one kernel, equal sklearn fitted on that fold."""
    X, y = svm_digits[0][:400], svm_digits[1][:400]
    template = OneVsAllSVC(C=3, gamma="scale")
    folds = list(KFold(4, shuffle=True, random_state=0).split(X))
    fitter = template.fold_fitter(X, y, 10, [*folds, (np.arange(len(X)), None)])
    assert isinstance(fitter, OneVsAllFits)
    results = [call(*args, **kwargs) for call, args, kwargs in fitter.tasks()]
    *per_fold, on_all = fitter.collect(iter(results))
    on_all = clone(template).fit_from_fold(on_all)
    for (train, test), (attributes, scores) in zip(folds, per_fold):
        assert attributes is None  # a fold only scores its test rows
        # The same train rows as a subset without test rows give the model behind those scores.
        alone_fitter = template.fold_fitter(X, y, 10, [(train, None)])
        (alone,) = alone_fitter.collect(iter([call(*args, **kwargs) for call, args, kwargs in alone_fitter.tasks()]))
        fitted = clone(template).fit_from_fold(FoldFit(alone.attributes, None))
        reference = OneVsRestClassifier(SVC(C=3, gamma="scale")).fit(X[train].astype(np.float64), y[train])
        np.testing.assert_allclose(scores, reference.decision_function(X[test].astype(np.float64)), atol=1e-7)
        np.testing.assert_allclose(fitted.decision_function(X[test]), scores, atol=1e-10)
    reference = OneVsRestClassifier(SVC(C=3, gamma="scale")).fit(X.astype(np.float64), y)
    np.testing.assert_allclose(on_all.decision_function(X[:50]), reference.decision_function(X[:50]), atol=1e-7)


@pytest.mark.parametrize("precompute", [True, False])
def test_one_vs_all_svc_threads_and_precompute_do_not_change_the_model(svm_digits, precompute):
    X, y = svm_digits[0][:300], svm_digits[1][:300]
    serial = OneVsAllSVC(C=10, gamma=0.05, precompute_kernel=precompute).fit(X, y)
    threaded = OneVsAllSVC(C=10, gamma=0.05, precompute_kernel=precompute, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(serial.support_, threaded.support_)
    np.testing.assert_array_equal(serial.dual_coef_, threaded.dual_coef_)
    ovr = OneVsRestClassifier(SVC(C=10, gamma=0.05)).fit(X.astype(np.float64), y)
    np.testing.assert_allclose(serial.decision_function(X[:40]), ovr.decision_function(X[:40]), atol=1e-8)


def test_float32_gram_fits_nearly_the_float64_model(svm_digits):
    """A float32 Gram matrix changes the kernel by ~1e-7: the model moves by about libsvm's tolerance."""
    # Non-integer pixels: float32 products of the digits' integer pixels would be exact.
    X = (svm_digits[0] / 16 + np.random.default_rng(0).normal(0, 0.05, svm_digits[0].shape)).astype(np.float32)
    y, X_test = svm_digits[1][:600], X[600:1200]
    exact = OneVsAllSVC(C=10, gamma=0.3, precompute_kernel=True).fit(X[:600], y)
    fast = OneVsAllSVC(C=10, gamma=0.3, precompute_kernel=True, gram_dtype="float32").fit(X[:600], y)
    scores, fast_scores = exact.decision_function(X_test), fast.decision_function(X_test)
    assert 0 < np.abs(scores - fast_scores).max() < 1e-3
    np.testing.assert_array_equal(scores.argmax(1), fast_scores.argmax(1))
    with pytest.raises(ValueError, match="gram_dtype"):
        OneVsAllSVC(gram_dtype="float16").fit(X[:600], y)


def test_memory_budget_decides_precomputation():
    assert OneVsAllSVC()._precomputes(11585) and not OneVsAllSVC()._precomputes(11586)
    assert not OneVsAllSVC(max_precomputed_mb=1)._precomputes(400)
    assert OneVsAllSVC(precompute_kernel=True, max_precomputed_mb=0)._precomputes(10)


@pytest.mark.parametrize("binary", [False, True])
def test_nystroem_one_vs_all_equals_sklearn_nystroem_and_ridge_classifier(svm_digits, binary):
    X, y = svm_digits[0][:600].astype(np.float64), svm_digits[1][:600]
    y = y % 2 if binary else y
    ours = NystroemOneVsAll(C=5, gamma=0.05, n_components=150, random_state=0).fit(X, y)
    reference = make_pipeline(
        Nystroem(gamma=0.05, n_components=150, random_state=0), RidgeClassifier(alpha=1 / 5)
    ).fit(X, y)
    np.testing.assert_array_equal(ours.support_vectors_, reference[0].components_)
    expected = reference.decision_function(X[:100])
    # Our fit computes the features' distances in float32: the solutions agree to its precision.
    np.testing.assert_allclose(ours.decision_function(X[:100]), expected, atol=1e-4)
    np.testing.assert_array_equal(ours.predict(X), reference.predict(X))
    machine = kernel_machine_from(ours)
    np.testing.assert_allclose(
        machine(torch.as_tensor(X[:100])).numpy().reshape(expected.shape), ours.decision_function(X[:100]),
        rtol=0, atol=1e-10,
    )


def test_kernel_machine_skips_columns_zero_in_every_support_vector(svm_digits):
    X = svm_digits[0][:300].astype(np.float64)
    support_vectors = X[:120].copy()
    support_vectors[:, 20:26] = 0.0  # dead units, besides the digits' always-blank pixels
    kept = np.flatnonzero(support_vectors.any(axis=0))
    assert 6 < support_vectors.shape[1] - kept.size < 20
    dual_coef = np.random.default_rng(0).normal(size=(120, 3))
    intercept = np.array([0.5, -1.0, 0.25])
    machine = RBFKernelMachine(support_vectors, dual_coef, intercept, gamma=0.02)
    np.testing.assert_array_equal(machine.feature_index.numpy(), kept)
    assert machine.support_vectors.shape == (120, kept.size)
    assert RBFKernelMachine(X[:50] + 1.0, dual_coef[:50], intercept, gamma=0.02).feature_index is None

    z = X[150:250] + np.random.default_rng(1).uniform(0, 4, size=(100, X.shape[1]))  # no column zero here
    expected = rbf_kernel(z, support_vectors, gamma=0.02) @ dual_coef + intercept
    zt = torch.as_tensor(z).requires_grad_(True)
    scores = machine(zt)
    np.testing.assert_allclose(scores.detach().numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(machine(zt.detach(), dtype=torch.float32).numpy(), expected, rtol=1e-4, atol=1e-4)
    # Gradients: the dropped columns move ||z||^2 only, as in the dense expression.
    dense = torch.exp(-0.02 * torch.cdist(zt, torch.as_tensor(support_vectors)) ** 2) @ torch.as_tensor(dual_coef)
    (grad,) = torch.autograd.grad(scores.sum(), zt)
    (dense_grad,) = torch.autograd.grad(dense.sum(), zt)
    np.testing.assert_allclose(grad.numpy(), dense_grad.numpy(), rtol=1e-8, atol=1e-12)

    # A machine saved before columns were dropped (every column, no feature_index buffer) scores alike.
    saved_before = RBFKernelMachine(support_vectors, dual_coef, intercept, gamma=0.02)
    del saved_before._buffers["feature_index"]
    saved_before.support_vectors = torch.as_tensor(support_vectors)
    np.testing.assert_allclose(saved_before(zt.detach()).numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        machine.log_ratio(zt.detach(), 0.1).numpy(), saved_before.log_ratio(zt.detach(), 0.1).numpy(),
        rtol=1e-10, atol=1e-12,
    )


def test_nystroem_scores_decay_to_the_intercept_far_from_the_data(svm_digits):
    X, y = svm_digits
    clf = NystroemOneVsAll(C=1, gamma=0.05, n_components=100, random_state=0).fit(X[:500], y[:500])
    np.testing.assert_allclose(clf.decision_function(X[:3] + 100.0), np.tile(clf.intercept_, (3, 1)), atol=1e-12)


def test_nystroem_fold_scores_equal_ridge_on_the_shared_features(svm_digits):
    """Each fold's least squares, solved from all rows' sums minus its test rows', is a ridge on its rows."""
    X, y = svm_digits[0][:500].astype(np.float64), svm_digits[1][:500]
    rows = np.arange(len(X))
    folds = list(KFold(4, shuffle=True, random_state=0).split(X))
    clf = NystroemOneVsAll(C=5, gamma=0.05, n_components=120, random_state=0)
    fitter = clf.fold_fitter(X, y, 10, [*folds, (rows, None)])
    *fold_fits, on_all = fitter.collect(iter([call(*a, **k) for call, a, k in fitter.tasks()]))
    features = fitter.nystroem.features.astype(np.float64)
    for (train, test), fold_fit in zip(folds, fold_fits):
        assert fold_fit.attributes is None
        expected = RidgeClassifier(alpha=1 / 5).fit(features[train], y[train]).decision_function(features[test])
        np.testing.assert_allclose(fold_fit.test_scores, expected, rtol=0, atol=1e-8)
    # The fit on all rows is the estimator's own fit.
    fitted = clone(clf).fit_from_fold(on_all)
    np.testing.assert_allclose(fitted.decision_function(X), clone(clf).fit(X, y).decision_function(X), atol=1e-12)


def test_nystroem_features_do_not_depend_on_the_blocks(svm_digits):
    X, y = svm_digits[0][:400], svm_digits[1][:400]
    clf = NystroemOneVsAll(C=5, gamma="scale", n_components=100, random_state=3)

    def streamed(block_rows):
        features = clf.feature_stream(len(X), X.shape[1])
        features.set_landmarks(X[features.landmark_rows])
        for start in range(0, len(X), block_rows):
            features.add(start, torch.as_tensor(X[start : start + block_rows]))
        return features.finish()

    one, many = streamed(len(X)), streamed(37)
    assert one.gamma == many.gamma == pytest.approx(1 / (X.shape[1] * X.var()), rel=1e-6)
    np.testing.assert_allclose(one.features, many.features, rtol=0, atol=1e-5)
    expected = clf.fit(X, y).decision_function(X)
    rows = np.arange(len(X))
    fitter = clf.fold_fitter(many, y, 10, [(rows, None)])
    (fit,) = fitter.collect(iter([call(*a, **k) for call, a, k in fitter.tasks()]))
    np.testing.assert_allclose(clone(clf).fit_from_fold(fit).decision_function(X), expected, atol=1e-4)
    incomplete = clf.feature_stream(len(X), X.shape[1])
    incomplete.set_landmarks(X[incomplete.landmark_rows])
    incomplete.add(0, X[:10])
    with pytest.raises(ValueError, match="10 rows were added, but the features are of 400 rows"):
        incomplete.finish()


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def trained_mlp(svm_digits):
    X, y = svm_digits
    net = _mlp()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, t = torch.as_tensor(X[:800]), torch.as_tensor(y[:800])
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), t).backward()
        optimizer.step()
    return net.eval()


def test_float32_kernels_match_float64(svm_digits, trained_mlp):
    X, y = svm_digits
    layers = [("1", OneVsAllSVC(C=10, gamma=0.1)), ("3", OneVsAllSVC(C=1, gamma=0.1))]
    dnr = DeepNeuralRejection(trained_mlp, layers=layers, random_state=0).fit(X[:800], y[:800])
    scores64 = dnr.decision_function(X[800:])
    scores32 = dnr.set_params(kernel_dtype="float32").decision_function(X[800:])
    assert not np.array_equal(scores32, scores64)  # the float32 path really ran
    np.testing.assert_allclose(scores32, scores64, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(scores32.argmax(1), scores64.argmax(1))
    x = torch.as_tensor(X[800:804]).requires_grad_(True)
    (grad,) = torch.autograd.grad(dnr.attack_surface().forward(x)[:, :10].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_dnr_streams_nystroem_layers_into_their_features(svm_digits, trained_mlp):
    """A NystroemOneVsAll layer gets its features batch by batch: the same model as from held outputs."""
    X, y = svm_digits
    nystroem = NystroemOneVsAll(C=10, gamma=0.1, n_components=200, random_state=0)
    layers = [("1", nystroem), ("3", OneVsAllSVC(C=1, gamma=0.1))]

    def fitted(batch_size):
        return DeepNeuralRejection(
            trained_mlp, layers=layers, combiner=NystroemOneVsAll(C=0.1, gamma=1, n_components=300, random_state=0),
            batch_size=batch_size, random_state=0,
        ).fit(X[:600], y[:600])

    dnr = fitted(64)
    X_fit = dnr._validate_predict_input(X[:600])
    streamed = dnr._layer_features(X_fit, specs=[("1", nystroem), ("3", OneVsAllSVC())])
    assert type(streamed[0]).__name__ == "NystroemFeatures" and isinstance(streamed[1], np.ndarray)
    held = dnr._layer_features(X_fit)  # every layer's outputs as arrays
    # The layer refitted on all rows equals the estimator fitted on the held outputs.
    expected = clone(nystroem).fit(held[0], y[:600])
    np.testing.assert_array_equal(dnr.layer_estimators_[0].support_, expected.support_)
    np.testing.assert_allclose(dnr.layer_estimators_[0].dual_coef_, expected.dual_coef_, rtol=1e-6, atol=1e-6)
    # Deterministic, and the batch size changes no decision.
    scores = dnr.decision_function(X[600:])
    np.testing.assert_array_equal(fitted(64).decision_function(X[600:]), scores)
    np.testing.assert_allclose(fitted(256).decision_function(X[600:]), scores, atol=1e-4)


def test_approximate_dnr_agrees_with_exact(svm_digits, trained_mlp):
    X, y = svm_digits
    def dnr(clf):
        return DeepNeuralRejection(
            trained_mlp, layers=[("1", clf(C=10, gamma=0.1)), ("3", clf(C=1, gamma=0.1))], random_state=0
        ).fit(X[:800], y[:800])
    exact = dnr(OneVsAllSVC)
    approx = dnr(lambda **p: NystroemOneVsAll(n_components=300, random_state=0, **p))
    assert all(len(e.support_) == 300 for e in approx.layer_estimators_)
    X_test = X[800:]
    same = np.mean(exact.decision_function(X_test).argmax(1) == approx.decision_function(X_test).argmax(1))
    assert same > 0.97  # measured 0.991

    def decisions(model):  # labels, -1 for the 10 % of X_test each model scores lowest (secml's rule)
        return model.set_params(threshold=model.compute_threshold(X_test, 0.1)).predict(X_test)

    expected = decisions(exact)
    # The reject sets differ more than the labels: measured 0.914 identical decisions with 300
    # landmarks, 0.956 with all 800 rows as landmarks (the exact kernel: what is left is the
    # least-squares loss against libsvm's hinge loss).
    same_300 = np.mean(decisions(approx) == expected)
    assert 0.88 < same_300 < 1.0
    full = dnr(lambda **p: NystroemOneVsAll(n_components=800, random_state=0, **p))
    assert np.mean(decisions(full) == expected) > max(same_300, 0.93)
    # The approximation runs as the same differentiable kernels.
    x = torch.as_tensor(X_test[:4]).requires_grad_(True)
    (grad,) = torch.autograd.grad(approx.attack_surface().forward(x)[:, :10].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0

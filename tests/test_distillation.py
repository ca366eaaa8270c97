
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skadv import ModelDistillationDetector
from skadv.corruptions import gaussian_noise
from skadv.metrics import harmfulness

from _models import seeded_mlp


def _numpy_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _mlp_numpy(module, X):
    """Forward of Flatten-Linear-ReLU-Linear in float64 numpy from the module's weights."""
    layers = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    w1, b1, w2, b2 = (t.detach().double().numpy() for lyr in layers for t in (lyr.weight, lyr.bias))
    return np.maximum(X @ w1.T + b1, 0) @ w2.T + b2


@pytest.mark.parametrize("loss_type", ["kld", "xent"])
def test_score_equals_hand_computed_loss(loss_type):
    rng = np.random.RandomState(0)
    X = rng.rand(40, 5)
    teacher = seeded_mlp(n_features=5, n_classes=3, hidden=4, seed=1)
    temperature = 0.5
    det = ModelDistillationDetector(teacher, loss_type=loss_type, temperature=temperature,
                                    epochs=3, random_state=0).fit(X)
    log_p = _numpy_log_softmax(_numpy_log_softmax(_mlp_numpy(teacher, X)) / temperature)
    p = np.exp(log_p)
    log_q = _numpy_log_softmax(_mlp_numpy(det.distilled_model_, X))
    expected = -(p * log_q).sum(axis=1)
    if loss_type == "kld":
        expected += (p * log_p).sum(axis=1)
    np.testing.assert_allclose(det.adversarial_score(X), expected, atol=1e-6)
    assert det.adversarial_score(X).dtype == np.float64
    np.testing.assert_array_equal(det.score_samples(X), -det.adversarial_score(X))


def test_temperature_changes_targets_as_stated():
    from skadv._core import tempered_proba

    log_p = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    sharp = tempered_proba(log_p, 0.5)
    expected = np.array([0.49, 0.04, 0.01]) / 0.54  # p**(1/T) renormalised
    np.testing.assert_allclose(sharp.numpy()[0], expected, rtol=1e-6)
    assert tempered_proba(log_p, 2.0)[0, 0] < 0.7 < sharp[0, 0]


def test_contamination_and_threshold_perc_flag_stated_share():
    rng = np.random.RandomState(0)
    X = rng.rand(200, 6)
    det = ModelDistillationDetector(seeded_mlp(6, 3, 8), contamination=0.1, epochs=2, random_state=0).fit(X)
    assert (det.predict(X) == -1).sum() == 20
    assert (det.decision_function(X) < 0).sum() == 20
    threshold_from_contamination = det.threshold_
    det.infer_threshold(X, threshold_perc=90)
    assert det.threshold_ == threshold_from_contamination
    det.infer_threshold(X, threshold_perc=75)
    assert (det.predict(X) == -1).sum() == 50
    assert det.detect(X).is_adversarial.sum() == 50
    assert det.offset_ == -det.threshold_
    fixed = ModelDistillationDetector(seeded_mlp(6, 3, 8), threshold=0.0, epochs=2, random_state=0).fit(X)
    assert fixed.threshold_ == 0.0 and np.all(fixed.predict(X) == -1)
    with pytest.raises(ValueError, match="threshold_perc"):
        det.infer_threshold(X, threshold_perc=120)


def test_same_random_state_gives_identical_scores():
    X = np.random.RandomState(1).rand(60, 6)
    a = ModelDistillationDetector(seeded_mlp(6, 3, 8), epochs=3, random_state=7).fit(X)
    b = ModelDistillationDetector(seeded_mlp(6, 3, 8), epochs=3, random_state=7).fit(X)
    c = ModelDistillationDetector(seeded_mlp(6, 3, 8), epochs=3, random_state=8).fit(X)
    np.testing.assert_array_equal(a.adversarial_score(X), b.adversarial_score(X))
    assert not np.array_equal(a.adversarial_score(X), c.adversarial_score(X))


def test_user_model_is_not_modified():
    teacher = seeded_mlp(6, 3, 8)
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    X = np.random.RandomState(2).rand(30, 6)
    X_before = X.copy()
    det = ModelDistillationDetector(teacher, epochs=2, random_state=0).fit(X)
    det.predict(X)
    assert teacher.training and all(m.training for m in teacher.modules())
    assert all(p.requires_grad for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key])
    np.testing.assert_array_equal(X, X_before)


def test_pipeline_and_nd_input(digits):
    X_train, _, X_test, _ = digits
    teacher = seeded_mlp()
    pipe = make_pipeline(StandardScaler(), ModelDistillationDetector(teacher, epochs=2, random_state=0))
    assert set(np.unique(pipe.fit(X_train).predict(X_test))) <= {-1, 1}
    # Images as (n, 1, 8, 8) arrays: rows keep their shape for the model.
    conv_teacher = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                       torch.nn.Linear(4 * 6 * 6, 10))
    det = ModelDistillationDetector(conv_teacher, epochs=2, random_state=0)
    det.fit(X_train.reshape(-1, 1, 8, 8))
    assert det.input_shape_ == (1, 8, 8) and det.n_features_in_ == 64
    np.testing.assert_allclose(det.score_samples(X_test.reshape(-1, 1, 8, 8)),
                               det.score_samples(X_test), rtol=0, atol=0)
    with pytest.raises(ValueError, match="input_shape"):
        ModelDistillationDetector(conv_teacher, input_shape=(1, 7, 7)).fit(X_train)


def test_logistic_regression_teacher(digits):
    X_train, y_train, X_test, _ = digits
    clf = LogisticRegression(max_iter=300).fit(X_train, y_train)
    det = ModelDistillationDetector(clf, epochs=10, random_state=0).fit(X_train)
    assert det.n_classes_ == 10 and det.model_ is None
    assert np.isfinite(det.adversarial_score(X_test)).all()
    with pytest.raises(ValueError, match="scikit-learn classifier has none"):
        det.attack_surface().forward(det._to_tensor(X_test[:2]))


def test_skorch_teacher_and_frozen_estimator(digits, digits_skorch_clf):
    X_train, _, X_test, _ = digits
    det = ModelDistillationDetector(FrozenEstimator(digits_skorch_clf), epochs=3, random_state=0)
    det.fit(X_train)
    assert det.model_.output == "proba"  # skorch's NLLLoss default: the module returns probabilities
    proba = digits_skorch_clf.predict_proba(X_test)
    np.testing.assert_allclose(det.model_(det._to_tensor(X_test)).exp().numpy(), proba, atol=1e-5)
    # clone() of a bare fitted skorch net is unfitted: a clear error, with the remedy.
    with pytest.raises(ValueError, match="FrozenEstimator"):
        clone(ModelDistillationDetector(digits_skorch_clf)).fit(X_train)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((5, 64), np.nan), "NaN"),
        (np.full((5, 64), np.inf), "infinity"),
        (np.zeros((5, 63)), "63 features"),
        (np.zeros((0, 64)), "0 sample"),
        (np.zeros(64), "2D array"),
    ],
)
def test_bad_input_errors(digits, bad, message):
    X_train = digits[0]
    det = ModelDistillationDetector(seeded_mlp(), epochs=1, random_state=0).fit(X_train)
    for method in (det.predict, det.score_samples, det.decision_function, det.adversarial_score):
        with pytest.raises(ValueError, match=message):
            method(bad)


def test_unfitted_and_missing_model_errors(digits):
    with pytest.raises(NotFittedError, match="ModelDistillationDetector instance is not fitted yet"):
        ModelDistillationDetector(seeded_mlp()).predict(digits[2])
    with pytest.raises(ValueError, match="model=None"):
        ModelDistillationDetector().fit(digits[0])
    with pytest.raises(ValueError, match="Unsupported model"):
        ModelDistillationDetector(model="not a model").fit(digits[0])


def _noise_harm_scorer(teacher):
    """AUROC of harmful vs harmless noise-corrupted rows of the fold (higher is better)."""

    def score(detector, X, y):
        X_noisy = gaussian_noise(X, severity=5, random_state=0)
        with torch.no_grad():
            pred_clean = teacher(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()
            pred_noisy = teacher(torch.as_tensor(X_noisy, dtype=torch.float32)).argmax(1).numpy()
        harm = harmfulness(y, pred_clean, pred_noisy)
        rows = harm.harmful | harm.harmless
        return roc_auc_score(harm.harmful[rows], detector.adversarial_score(X_noisy[rows]))

    return score


def _train_digits_teacher(X, y):
    from skorch import NeuralNetClassifier

    torch.manual_seed(0)
    net = NeuralNetClassifier(seeded_mlp(), criterion=torch.nn.CrossEntropyLoss, max_epochs=40, lr=0.01,
                              optimizer=torch.optim.Adam, train_split=None, iterator_train__shuffle=True,
                              verbose=0)
    return net.fit(X, y.astype(np.int64)).module_.eval()


def test_grid_search_over_temperature_and_loss_type(digits):
    X_train, y_train, _, _ = digits
    teacher = _train_digits_teacher(X_train, y_train)
    search = GridSearchCV(
        ModelDistillationDetector(teacher, epochs=3, random_state=0),
        {"temperature": [0.5, 1.0], "loss_type": ["kld", "xent"]},
        scoring=_noise_harm_scorer(teacher),
        cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),
    )
    search.fit(X_train[:600], y_train[:600])
    assert len(search.cv_results_["params"]) == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_estimator_.temperature in (0.5, 1.0)


def test_harmful_corruptions_score_higher_than_harmless(digits):
    X_train, y_train, X_test, y_test = digits
    teacher = _train_digits_teacher(X_train, y_train)
    det = ModelDistillationDetector(teacher, epochs=30, temperature=1.0, random_state=0).fit(X_train)
    auroc = _noise_harm_scorer(teacher)(det, X_test, y_test)
    assert auroc >= 0.8, auroc


def test_training_progress_goes_to_stderr_only_when_verbose(capsys):
    X = np.random.RandomState(0).rand(200, 8).astype("float32")
    teacher = seeded_mlp(n_features=8, n_classes=3, hidden=4)
    ModelDistillationDetector(teacher, epochs=2, random_state=0).fit(X)
    assert capsys.readouterr() == ("", "")
    ModelDistillationDetector(teacher, epochs=2, verbose=True, random_state=0).fit(X)
    out, err = capsys.readouterr()
    assert "train_loss" in out.splitlines()[0]  # skorch's epoch table, one line per epoch
    assert len(out.splitlines()) == 4
    assert "2/2" in err and "train_loss=" in err  # the progress bar (tqdm) on stderr

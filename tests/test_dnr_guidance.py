"""DNR without guesswork: default layers, the layer table, errors that name the fix, secml's calls, progress."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split
from torch import nn

from skadv import DeepNeuralRejection, DNRDetector, OneVsAllSVC
from skadv.utils import LayerInfo, hookable_layers

from _attack_helpers import digits_data
from _models import fit_classifier


class Net(nn.Module):
    """secml's tutorial shape: named ReLU modules, one activation applied as a function."""

    def __init__(self):
        super().__init__()
        self.fc1, self.relu1 = nn.Linear(64, 32), nn.ReLU()
        self.fc2, self.relu2 = nn.Linear(32, 24), nn.ReLU()
        self.fc3, self.drop = nn.Linear(24, 16), nn.Dropout(0.2)
        self.fc4 = nn.Linear(16, 10)

    def forward(self, x):
        x = self.relu1(self.fc1(x))
        x = self.relu2(self.fc2(x))
        x = self.drop(torch.relu(self.fc3(x)))  # torch.relu: no module to hook
        return torch.softmax(self.fc4(x), dim=1)


@pytest.fixture(scope="module")
def data():
    (X, y), (X_test, _) = digits_data(n_train=300, n_test=100)
    return X, y, X_test


@pytest.fixture(scope="module")
def net(data):
    X, y, _ = data
    return fit_classifier(
        nn.Sequential(OrderedDict(fc1=nn.Linear(64, 32), relu1=nn.ReLU(), fc2=nn.Linear(32, 16),
                                  relu2=nn.ReLU(), fc3=nn.Linear(16, 10))),
        X, y, epochs=40, lr=1e-2,
    ).module_


def test_hookable_layers_lists_called_modules_with_widths_and_the_default(data):
    torch.manual_seed(0)
    table = hookable_layers(Net(), data[0][:3])
    assert all(isinstance(row, LayerInfo) for row in table)
    assert [(row.name, row.type, row.width) for row in table] == [
        ("fc1", "Linear", 32), ("relu1", "ReLU", 32), ("fc2", "Linear", 24), ("relu2", "ReLU", 24),
        ("fc3", "Linear", 16), ("drop", "Dropout", 16), ("fc4", "Linear", 10),
    ]
    # fc4 is the output layer; "drop" holds relu(fc3) (the only hookable point after torch.relu).
    assert [row.name for row in table if row.dnr_default] == ["relu2", "fc3", "drop"]
    twice = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Dropout(0.5), nn.Identity(), nn.Linear(8, 3))
    # Dropout in eval mode and Identity repeat ReLU's output: not read twice.
    assert [row.name for row in hookable_layers(twice, data[0][:3]) if row.dnr_default] == ["0", "1"]
    image_net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3))
    rows = hookable_layers(image_net, data[0][:2], input_shape=(1, 8, 8))
    expected = [("0", (2, 6, 6), 72), ("1", (72,), 72), ("2", (3,), 3)]
    assert [(row.name, row.shape, row.width) for row in rows] == expected
    with pytest.raises(ValueError, match=r"input_shape"):
        hookable_layers(image_net, data[0][:2])


def test_layers_none_reads_the_last_three_hidden_layers(data, net):
    X, y, X_test = data
    cv = KFold(3, shuffle=True, random_state=0)
    default = DeepNeuralRejection(net, cv=cv, random_state=0).fit(X, y)
    assert default.layer_names_ == ["relu1", "fc2", "relu2"]
    explicit = DeepNeuralRejection(net, layers=["relu1", "fc2", "relu2"], cv=cv, random_state=0).fit(X, y)
    np.testing.assert_array_equal(default.decision_function(X_test), explicit.decision_function(X_test))
    with pytest.raises(ValueError, match=r"layers is empty.*hookable_layers"):
        DeepNeuralRejection(net, layers=[]).fit(X, y)
    with pytest.raises(ValueError, match=r"found no hidden layer.*hookable_layers"):
        DeepNeuralRejection(nn.Linear(64, 10)).fit(X, y)


def test_errors_name_the_fix(data, net):
    X = data[0]
    with pytest.raises(ValueError, match=r"DNRDetector wraps a DeepNeuralRejection, not a bare network.*"
                                         r"DNRDetector\(DeepNeuralRejection\(net"):
        DNRDetector(net).fit(X)
    with pytest.raises(ValueError, match=r"requires y to be passed.*trains its layer classifiers on class labels.*"
                                         r"fit\(X, y\)"):
        DeepNeuralRejection(net, layers=["relu2"]).fit(X)


def test_secml_compute_threshold_forms_agree(data, net):
    X, y, X_test = data
    dnr = DeepNeuralRejection(net, layers=["relu2"], cv=3, random_state=0).fit(X, y)
    expected = dnr.compute_threshold(X_test, 0.1)
    assert int((dnr.score_samples(X_test) < expected).sum()) == 10

    class Dataset:  # secml's CDataset keeps its rows in .X
        def __init__(self, X, Y):
            self.X, self.Y = X, Y

    assert dnr.compute_threshold(rej_percent=0.1, ds=X_test) == expected
    assert dnr.compute_threshold(rej_percent=0.1, ds=Dataset(X_test, None)) == expected
    assert dnr.compute_threshold(0.1, (X_test, None)) == expected  # secml's positional order
    with pytest.raises(ValueError, match="not both"):
        dnr.compute_threshold(X_test, 0.1, ds=X_test)
    with pytest.raises(ValueError, match=r"compute_threshold\(X, rej_percent\)"):
        dnr.compute_threshold(rej_percent=0.1)


def test_per_layer_parameters_on_one_layer_clf_give_each_layer_its_own_clone(data, net):
    X, y, _ = data
    shared = OneVsAllSVC(C=2.0)
    dnr = DeepNeuralRejection(net, layers=["relu1", "relu2"], layer_clf=shared, cv=3, random_state=0)
    dnr.set_params(relu2__C=10.0)
    assert dnr.layers[0] == "relu1" and dnr.layers[1][0] == "relu2"
    assert dnr.layers[1][1].C == 10.0 and dnr.layers[1][1] is not shared and shared.C == 2.0
    dnr.fit(X, y)
    assert [est.C for est in dnr.layer_estimators_] == [2.0, 10.0]

    one = OneVsAllSVC()  # one instance in two pairs: a setting reaches one layer only
    pairs = DeepNeuralRejection(net, layers=[("relu1", one), ("relu2", one)], cv=3, random_state=0)
    pairs.set_params(relu1__C=5.0)
    assert pairs.layers[0][1].C == 5.0 and pairs.layers[1][1].C == 1.0 and one.C == 1.0
    assert pairs.get_params()["relu1__C"] == 5.0 and pairs.get_params()["relu2__C"] == 1.0

    search = GridSearchCV(DeepNeuralRejection(net, layers=["relu1", "relu2"], cv=3, random_state=0),
                          {"relu2__C": [0.01, 10.0]}, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    search.fit(X, y)
    assert search.best_estimator_.layer_estimators_[1].C == search.best_params_["relu2__C"]
    assert search.best_estimator_.layer_estimators_[0].C == 1.0


def test_verbose_fit_shows_progress_on_stderr_and_is_silent_by_default(data, net, capsys):
    X, y, _ = data
    DeepNeuralRejection(net, layers=["relu1", "relu2"], cv=3, random_state=0).fit(X, y)
    assert capsys.readouterr() == ("", "")
    DeepNeuralRejection(net, layers=["relu1", "relu2"], cv=3, random_state=0, verbose=True).fit(X, y)
    out, err = capsys.readouterr()
    assert out == ""
    assert "reading layers" in err and "300/300" in err
    # The per-layer postfix shows only if tqdm refreshes while that layer fits (timing); the last
    # stage is drawn with refresh=True.
    assert "fitting layers x folds" in err and "combiner" in err


def test_detector_validation_fraction_equals_a_manual_split(data, net):
    X, _, X_test = data
    dnr = DeepNeuralRejection(net, layers=["relu2"], cv=3, random_state=0)
    held = DNRDetector(dnr, validation_fraction=0.25, contamination=0.1).fit(X)
    X_train, X_val = train_test_split(X, test_size=0.25, random_state=0)
    manual = DNRDetector(clone(dnr), contamination=0.1).fit(X_train).infer_threshold(X_val, 90)
    assert held.offset_ == manual.offset_
    np.testing.assert_array_equal(held.score_samples(X_test), manual.score_samples(X_test))
    assert held.offset_ != DNRDetector(clone(dnr), contamination=0.1).fit(X).offset_
    with pytest.raises(ValueError, match="needs an unfitted DeepNeuralRejection without threshold"):
        DNRDetector(manual.estimator_.set_params(threshold=0.0), validation_fraction=0.2).fit(X)


def test_infer_threshold_margin_moves_toward_accepting(data, net):
    X, y, X_test = data
    dnr = DeepNeuralRejection(net, layers=["relu2"], cv=3, random_state=0).fit(X, y)
    base = dnr.infer_threshold(X_test, 90).threshold
    assert dnr.infer_threshold(X_test, 90, margin=0.5, batch_size=16).threshold == base - 0.5
    det = dnr.as_detector().infer_threshold(X_test, 90)
    assert det.infer_threshold(X_test, 90, margin=0.5).offset_ == det.infer_threshold(X_test, 90).offset_ - 0.5

"""Persistence with a user's own module classes, across processes and parallel workers.

The user's classes live in ``user_models/mymodels.py``, importable only through the
``sys.path`` entry these tests add; fresh interpreters load the saved detectors without
having imported it (pickle/skops must import it, the skops way only once trusted).
Crafted files and states must be refused with a ValueError before anything is imported
or run.
"""

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, StratifiedKFold

import skadv
from skadv import (
    AdversarialAEDetector,
    DeepNeuralRejection,
    InconsistentVersionWarning,
    ModelDistillationDetector,
    VAEDetector,
)
from skadv._core import module_from_state, module_to_state

from _models import fit_classifier

cloudpickle = pytest.importorskip("cloudpickle")
sio = pytest.importorskip("skops.io")

USER_MODELS = Path(__file__).resolve().parent / "user_models"
SKADV_ROOT = Path(skadv.__file__).resolve().parent.parent
N_TRAIN, N_TEST = 300, 60


@pytest.fixture(scope="module")
def mymodels():
    sys.path.insert(0, str(USER_MODELS))
    import mymodels

    yield mymodels
    sys.path.remove(str(USER_MODELS))


@pytest.fixture(scope="module")
def data(digits):
    X, y, X_test, _ = digits
    return X[:N_TRAIN], y[:N_TRAIN], X_test[:N_TEST]


@pytest.fixture(scope="module")
def clf_net(mymodels, data):
    X, y, _ = data
    return fit_classifier(mymodels.MyNet(), X, y, epochs=40, lr=0.02)


def _outputs(est, X):
    """What a loaded estimator must reproduce bit for bit."""
    if isinstance(est, DeepNeuralRejection):
        return {"decision_function": est.decision_function(X), "predict": est.predict(X)}
    return {"score_samples": est.score_samples(X), "predict": est.predict(X)}


@pytest.fixture(scope="module")
def fitted(mymodels, data, clf_net):
    """Every detector built on the user's classes, plus skorch-net and FrozenEstimator models."""
    X, y, _ = data
    clf = clf_net.module_
    common = {"epochs": 2, "random_state": 0}
    dnr = DeepNeuralRejection(clf, layers=["hidden", "out"], cv=3, threshold=-0.5, random_state=0).fit(X, y)
    return {
        "aae": AdversarialAEDetector(
            clf, encoder_net=mymodels.MyEncoder(64, 8), decoder_net=mymodels.MyDecoder(8, 64),
            hidden_layer_kld={"hidden": 4}, **common,
        ).fit(X),
        "distillation": ModelDistillationDetector(clf, distilled_model=mymodels.MyNet(hidden=8), **common).fit(X),
        "vae": VAEDetector(
            clf, encoder_net=mymodels.MyEncoder(64, 8), decoder_net=mymodels.MyDecoder(4, 64), latent_dim=4,
            n_samples=3, **common,
        ).fit(X),
        "dnr": dnr,
        "dnr_detector": dnr.as_detector(),
        "skorch_model": ModelDistillationDetector(clf_net, **common).fit(X),
        "frozen_model": ModelDistillationDetector(FrozenEstimator(clf_net), **common).fit(X),
    }


# ----------------------------------------------------------------------------- fresh processes


def _run_fresh(code, spec, *, user_models_on_path=True):
    """Run ``code`` in a clean interpreter with ``spec`` (JSON) as argv[1]; return its last stdout line as JSON."""
    paths = [str(SKADV_ROOT)] + ([str(USER_MODELS)] if user_models_on_path else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), json.dumps(spec)],
        check=False, capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


_LOAD_AND_COMPARE = """
    import json, sys
    import numpy as np
    spec = json.loads(sys.argv[1])
    import skadv, joblib, cloudpickle, skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException
    report = {"imported_before": "mymodels" in sys.modules}
    # skops refuses the file while the user's class is not trusted, without importing it.
    first = spec["files"]["aae"]["skops"]
    try:
        sio.load(first, trusted=[t for t in sio.get_untrusted_types(file=first) if not t.startswith("mymodels.")])
        report["refused"] = False
    except UntrustedTypesFoundException as exc:
        report["refused"] = "mymodels.MyNet" in str(exc)
    report["imported_after_refusal"] = "mymodels" in sys.modules
    X = np.load(spec["X"])
    loaders = {
        "joblib": joblib.load,
        "cloudpickle": lambda p: cloudpickle.load(open(p, "rb")),
        "skops": lambda p: sio.load(p, trusted=sio.get_untrusted_types(file=p)),
    }
    for name, files in spec["files"].items():
        expected = np.load(files["expected"])
        for fmt, path in files.items():
            if fmt == "expected":
                continue
            est = loaders[fmt](path)
            methods = [m for m in expected.files]
            same = all(np.array_equal(getattr(est, m)(X), expected[m]) for m in methods)
            report[f"{name}/{fmt}"] = bool(same)
    print(json.dumps(report))
"""


def test_fresh_process_round_trips_are_bit_identical(fitted, data, tmp_path):
    _, _, X_test = data
    np.save(tmp_path / "X.npy", X_test)
    files = {}
    for name, est in fitted.items():
        np.savez(tmp_path / f"{name}.npz", **_outputs(est, X_test))
        entry = {"expected": str(tmp_path / f"{name}.npz")}
        entry["joblib"] = str(tmp_path / f"{name}.joblib")
        joblib.dump(est, entry["joblib"])
        entry["cloudpickle"] = str(tmp_path / f"{name}.cpkl")
        with open(entry["cloudpickle"], "wb") as f:
            cloudpickle.dump(est, f)
        entry["skops"] = str(tmp_path / f"{name}.skops")
        sio.dump(est, entry["skops"])
        files[name] = entry
    report = _run_fresh(_LOAD_AND_COMPARE, {"X": str(tmp_path / "X.npy"), "files": files})
    assert report.pop("imported_before") is False
    assert report.pop("refused") is True
    assert report.pop("imported_after_refusal") is False
    assert report == {f"{name}/{fmt}": True for name in fitted for fmt in ("joblib", "cloudpickle", "skops")}


def test_skops_lists_the_user_class_and_only_trusted_names(fitted):
    untrusted = set(sio.get_untrusted_types(data=sio.dumps(fitted["aae"])))
    # The user's classes need trust; torch.nn's and skadv's module classes are resolved by name.
    assert {"mymodels.MyNet", "mymodels.MyEncoder", "mymodels.MyDecoder"} <= untrusted
    assert not any(name.startswith("torch.") for name in untrusted), untrusted


_MLFLOW_LOAD = """
    import json, sys
    import numpy as np
    spec = json.loads(sys.argv[1])
    import mlflow.pyfunc
    X = np.load(spec["X"])
    report = {"imported_before": "mymodels" in sys.modules}
    for name, (path, expected) in spec["models"].items():
        report[name] = bool(np.array_equal(np.asarray(mlflow.pyfunc.load_model(path).predict(X)), np.load(expected)))
    print(json.dumps(report))
"""


def test_mlflow_pyfunc_in_a_fresh_process(fitted, data, tmp_path, mymodels):
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    _, _, X_test = data
    np.save(tmp_path / "X.npy", X_test)
    models = {}
    for name in ("aae", "distillation", "vae", "dnr", "dnr_detector"):
        est = fitted[name]
        np.save(tmp_path / f"{name}.npy", est.predict(X_test))
        for fmt in ("cloudpickle", "skops"):
            path = tmp_path / f"{name}-{fmt}"
            options = {"skops_trusted_types": sio.get_untrusted_types(data=sio.dumps(est))} if fmt == "skops" else {}
            # Explicit requirements: MLflow would otherwise pin the installed skadv version.
            mlflow_sklearn.save_model(
                est, str(path), serialization_format=fmt, code_paths=[mymodels.__file__],
                pip_requirements=["skadv", "torch"], **options,
            )
            models[f"{name}/{fmt}"] = (str(path), str(tmp_path / f"{name}.npy"))
    # The user's module reaches the serving process through code_paths only.
    report = _run_fresh(_MLFLOW_LOAD, {"X": str(tmp_path / "X.npy"), "models": models}, user_models_on_path=False)
    assert report.pop("imported_before") is False
    assert report == dict.fromkeys(models, True)


# ----------------------------------------------------------------------------- skorch nets as the model


@pytest.mark.parametrize("name", ["skorch_model", "frozen_model"])
def test_skorch_net_models_round_trip_through_skops(fitted, data, clf_net, name):
    X, _, X_test = data
    det = fitted[name]
    loaded = sio.loads(sio.dumps(det), trusted=sio.get_untrusted_types(data=sio.dumps(det)))
    np.testing.assert_array_equal(loaded.score_samples(X_test), det.score_samples(X_test))
    net = loaded.model.estimator if name == "frozen_model" else loaded.model
    assert isinstance(loaded.model, type(det.model))
    # The restored net is a working fitted net: same predictions, shared module, its optimizer state.
    np.testing.assert_array_equal(net.predict_proba(X_test), clf_net.predict_proba(X_test))
    assert net.module is net.module_ and type(net.module_).__name__ == "MyNet"
    saved_state = clf_net.optimizer_.state_dict()["state"]
    restored_state = net.optimizer_.state_dict()["state"]
    assert all(torch.equal(restored_state[k]["exp_avg"], saved_state[k]["exp_avg"]) for k in saved_state)
    # ...and refitting the loaded detector reproduces the original fit.
    np.testing.assert_array_equal(loaded.fit(X).score_samples(X_test), det.score_samples(X_test))


# ----------------------------------------------------------------------------- parallel workers


def _mean_score(est, X, y=None):
    return float(np.mean(est.score_samples(X)))


def _search(model):
    return GridSearchCV(
        ModelDistillationDetector(model, epochs=2, random_state=0),
        {"temperature": [0.5, 2.0]},
        scoring=_mean_score,
        cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),
        n_jobs=2,
    )


def test_grid_search_processes_with_a_user_class(clf_net, data):
    X, y, X_test = data
    parallel = _search(clf_net.module_).fit(X, y)
    serial = _search(clf_net.module_).set_params(n_jobs=1).fit(X, y)
    # Workers run with other thread counts: float sums may differ in the last bits.
    np.testing.assert_allclose(
        parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], rtol=1e-7
    )
    np.testing.assert_allclose(
        parallel.best_estimator_.score_samples(X_test), serial.best_estimator_.score_samples(X_test), rtol=1e-7
    )


def test_worker_errors_surface_with_their_message(clf_net, data):
    X, y, _ = data
    search = GridSearchCV(
        AdversarialAEDetector(clf_net.module_, epochs=1), {"hidden_layer_kld": [{"no_such_layer": 2}]},
        scoring=_mean_score, cv=2, n_jobs=2, error_score="raise",
    )
    with pytest.raises(ValueError, match="'no_such_layer' is not among the modules of the model"):
        search.fit(X, y)


def test_dnr_n_jobs_with_a_user_class(clf_net, data, fitted):
    X, y, X_test = data
    parallel = DeepNeuralRejection(
        clf_net.module_, layers=["hidden", "out"], cv=3, threshold=-0.5, n_jobs=2, random_state=0
    ).fit(X, y)
    np.testing.assert_array_equal(parallel.decision_function(X_test), fitted["dnr"].decision_function(X_test))


def test_grid_search_on_a_dask_cluster_with_a_user_class(clf_net, data):
    distributed = pytest.importorskip("distributed")
    X, y, X_test = data
    serial = _search(clf_net.module_).set_params(n_jobs=1).fit(X, y)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        # The worker is a separate process: it unpickles the detector and imports mymodels.
        client.run(lambda: sys.path.insert(0, str(USER_MODELS)) if str(USER_MODELS) not in sys.path else None)
        with joblib.parallel_config(backend="dask"):
            remote = _search(clf_net.module_).fit(X, y)
        # A detector shipped to the worker process is unpickled there, importing mymodels.
        remote_scores = client.submit(
            lambda est, rows: est.score_samples(rows), remote.best_estimator_, X_test
        ).result()
        assert all(client.run(lambda: "mymodels" in sys.modules).values())
    np.testing.assert_allclose(remote_scores, remote.best_estimator_.score_samples(X_test), rtol=1e-7)
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], rtol=1e-7)
    np.testing.assert_allclose(
        remote.best_estimator_.score_samples(X_test), serial.best_estimator_.score_samples(X_test), rtol=1e-7
    )


# ----------------------------------------------------------------------------- loading runs nothing untrusted

_CRAFTED_CLASSES = [
    "torch.utils.model_dump.__main__:main",
    "torch.testing._internal.common_utils:TestCase",
    "skadv.__main__:main",
    "skadv._demo:os",
    "mymodels:PropertyNet",
]


def _small_detector():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    X = np.random.RandomState(0).rand(16, 4).astype(np.float32)
    return ModelDistillationDetector(model, epochs=1, batch_size=8, random_state=0).fit(X)


@pytest.fixture(scope="module")
def small_detector():
    return _small_detector()


@pytest.mark.parametrize("crafted", _CRAFTED_CLASSES)
def test_crafted_state_class_names_are_refused_without_imports(small_detector, crafted):
    state = small_detector.__getstate__()
    state["model_"]["children"]["net"]["class"] = crafted
    modules_before = set(sys.modules)
    det = ModelDistillationDetector.__new__(ModelDistillationDetector)
    field = r"ModelDistillationDetector.model_\['children'\]\['net'\]\['class'\]"
    with pytest.raises(ValueError, match=field + ": unknown class"):
        det.__setstate__(state)
    assert set(sys.modules) == modules_before


def _rewrite_skops(data, old, new):
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename == "schema.json":
                assert old.encode() in content
                content = content.replace(old.encode(), new.encode())
            dst.writestr(item, content)
    return out.getvalue()


@pytest.mark.parametrize("crafted", _CRAFTED_CLASSES)
def test_crafted_skops_files_are_refused_without_imports(small_detector, crafted, mymodels):
    data = _rewrite_skops(sio.dumps(small_detector), "torch.nn.modules.container:Sequential", crafted)
    trusted = sio.get_untrusted_types(data=data)
    assert trusted == ["skadv.detectors._distillation.ModelDistillationDetector"]  # what a genuine file lists
    calls_before, modules_before = list(mymodels.SETTER_CALLS), set(sys.modules)
    with pytest.raises(ValueError, match="unknown class"):
        sio.loads(data, trusted=trusted)
    assert set(sys.modules) == modules_before and mymodels.SETTER_CALLS == calls_before


def test_restoring_attributes_runs_no_setter(mymodels):
    module = mymodels.PropertyNet()
    module.gain = 3.0
    state = module_to_state(module)
    assert state["class"] is mymodels.PropertyNet  # not an allow-listed class: stored by reference
    mymodels.SETTER_CALLS.clear()
    state["attrs"]["gain"] = 5.0
    rebuilt = module_from_state(state)
    assert mymodels.SETTER_CALLS == [] and rebuilt.gain == 5.0


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s["model_"].pop("params"), r"model_ lacks the entry 'params'"),
        (lambda s: s["model_"]["children"]["net"].update(training="yes"), r"\['training'\] must be a bool"),
        (lambda s: s["model_"]["children"]["net"].update({"class": 3}), r"\['class'\] must be a str or type"),
        (lambda s: s["model_"]["children"]["net"].update({"class": dict}), r"builtins.dict is not a torch.nn.modules"),
        (lambda s: s["model_"]["attrs"].update(_parameters={}), r"may not set '_parameters'"),
        (lambda s: s.update(model_={"__skadv_ref__": 99}), r"model_ refers to an unknown object 99"),
        (
            lambda s: s["model_"]["children"]["net"]["children"]["0"]["params"]["weight"].update(
                __skadv_tensor__=np.array(["x"], dtype=object)
            ),
            r"must be a numeric numpy array",
        ),
    ],
)
def test_malformed_states_raise_value_errors_naming_the_field(small_detector, edit, match):
    state = small_detector.__getstate__()
    edit(state)
    det = ModelDistillationDetector.__new__(ModelDistillationDetector)
    with pytest.raises(ValueError, match=match):
        det.__setstate__(state)


def test_non_dict_state_is_a_value_error():
    with pytest.raises(ValueError, match="must be a dict"):
        ModelDistillationDetector.__new__(ModelDistillationDetector).__setstate__([1, 2])


def test_version_warning_names_a_real_version(small_detector):
    state = small_detector.__getstate__()
    del state["_skadv_version"]
    with pytest.warns(InconsistentVersionWarning, match="saved with an unknown skadv version into skadv"):
        ModelDistillationDetector.__new__(ModelDistillationDetector).__setstate__(state)


# ----------------------------------------------------------------------------- what the encoding keeps


def test_shared_modules_and_tied_weights_stay_shared():
    encoder = torch.nn.Linear(4, 2)
    tied = torch.nn.Sequential(encoder, torch.nn.ReLU(), torch.nn.Linear(4, 2))
    tied[2].weight = encoder.weight
    pair = torch.nn.ModuleDict({"a": tied, "b": tied})
    rebuilt = pickle.loads(pickle.dumps(module_from_state(module_to_state(pair))))
    assert rebuilt["a"] is rebuilt["b"] and rebuilt["a"][2].weight is rebuilt["a"][0].weight


def test_dtypes_numpy_lacks_round_trip():
    module = torch.nn.Linear(3, 2).to(torch.bfloat16)
    module.register_buffer("flags", torch.tensor([True, False]))
    module.compute_dtype, module.home = torch.float64, torch.device("cpu")
    rebuilt = module_from_state(sio.loads(sio.dumps(module_to_state(module))))
    assert rebuilt.weight.dtype == torch.bfloat16 and torch.equal(rebuilt.weight, module.weight)
    assert torch.equal(rebuilt.flags, module.flags) and rebuilt.weight.requires_grad
    assert rebuilt.compute_dtype is torch.float64 and rebuilt.home == torch.device("cpu")


def test_saved_state_holds_no_tensors(small_detector):
    payload = pickle.dumps(small_detector.__getstate__())
    assert b"torch._utils" not in payload and b"_rebuild" not in payload
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = pickle.loads(pickle.dumps(small_detector))
    X = np.random.RandomState(1).rand(8, 4)
    np.testing.assert_array_equal(restored.score_samples(X), small_detector.score_samples(X))

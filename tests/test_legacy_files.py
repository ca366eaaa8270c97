"""Files written by skadv 0.1.0 (before the family packages) load and score identically.

The fixtures under ``fixtures/v0.1.0`` were written by ``fixtures/make_fixtures.py`` with
that release: each detector saved with joblib, cloudpickle (gzipped) and skops, with the
outputs of its scoring methods on fixed rows. They name the old module paths
(``skadv._vae.VAEDetector``, ``skadv._kernel_svm:RBFKernelMachine`` in skadv's own state
encoding); importing skadv registers those paths.
"""

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest

import skadv

cloudpickle = pytest.importorskip("cloudpickle")
sio = pytest.importorskip("skops.io")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v0.1.0"
USER_MODELS = Path(__file__).resolve().parent / "user_models"
UNTRUSTED = json.loads((FIXTURES / "untrusted.json").read_text())
NAMES = sorted(UNTRUSTED)
KERNEL_MACHINES = ("one_vs_all_svc", "nystroem")  # fitted on hidden-layer features


@pytest.fixture(scope="module", autouse=True)
def mymodels():
    sys.path.insert(0, str(USER_MODELS))
    yield
    sys.path.remove(str(USER_MODELS))


def _rows(name):
    return np.load(FIXTURES / ("features.npy" if name in KERNEL_MACHINES else "X.npy"))


def _assert_same_outputs(est, name):
    expected = np.load(FIXTURES / f"{name}.npz")
    X = _rows(name)
    assert expected.files
    for method in expected.files:
        np.testing.assert_array_equal(getattr(est, method)(X), expected[method], err_msg=f"{name}.{method}")


LOADERS = {
    "joblib": lambda path: joblib.load(path),
    "cloudpickle.gz": lambda path: cloudpickle.load(gzip.open(path, "rb")),
}


@pytest.mark.parametrize("fmt", sorted(LOADERS))
@pytest.mark.parametrize("name", NAMES)
def test_pickled_files_load_with_identical_outputs(name, fmt):
    est = LOADERS[fmt](FIXTURES / f"{name}.{fmt}")
    assert type(est).__module__.startswith(("skadv.detectors.", "skadv.rejection."))
    _assert_same_outputs(est, name)


@pytest.mark.parametrize("name", NAMES)
def test_skops_files_list_the_old_names_and_load_once_trusted(name):
    path = FIXTURES / f"{name}.skops"
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted == UNTRUSTED[name]
    assert any(t.startswith("skadv._") for t in untrusted)  # the 0.1.0 module paths
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException, match="skadv"):
        sio.load(path, trusted=[t for t in untrusted if not t.startswith("skadv.")])
    est = sio.load(path, trusted=untrusted)
    _assert_same_outputs(est, name)

    # Saved again, the file names the new layout, and loads the same.
    data = sio.dumps(est)
    new_names = sio.get_untrusted_types(data=data)
    skadv_names = [t for t in new_names if t.startswith("skadv.")]
    assert skadv_names
    assert all(t.startswith(("skadv.detectors.", "skadv.rejection.")) for t in skadv_names), new_names
    _assert_same_outputs(sio.loads(data, trusted=new_names), name)


def test_old_module_paths_name_the_moved_objects():
    import skadv._base
    import skadv._kernel_svm
    import skadv._vae

    assert skadv._vae.VAEDetector is skadv.VAEDetector
    assert skadv._kernel_svm.OneVsAllSVC is skadv.OneVsAllSVC
    assert skadv._kernel_svm.NystroemOneVsAll is skadv.NystroemOneVsAll
    assert skadv._base.TrainedDetector is skadv.base.TrainedDetector
    assert skadv._base.InconsistentVersionWarning is skadv.InconsistentVersionWarning


def test_state_names_of_the_old_layout_resolve_only_to_skadv_classes():
    from torch import nn

    from skadv._core._persist import _resolve_class
    from skadv.rejection._kernels import RBFKernelMachine

    assert _resolve_class("skadv._kernel_svm:RBFKernelMachine", nn.Module, "f") is RBFKernelMachine
    for name in ("skadv._kernel_svm:squared_distances", "skadv._kernel_svm:np", "skadv._nowhere:X", "os:system"):
        with pytest.raises(ValueError, match="unknown class"):
            _resolve_class(name, nn.Module, "f")


_FRESH = """
    import json, sys
    import joblib, numpy as np
    assert "skadv" not in sys.modules
    est = joblib.load(sys.argv[1])
    expected = np.load(sys.argv[2])
    X = np.load(sys.argv[3])
    print(json.dumps({m: bool(np.array_equal(getattr(est, m)(X), expected[m])) for m in expected.files}))
"""


@pytest.mark.parametrize("name", ["vae", "dnr_detector"])
def test_a_fresh_process_loads_without_importing_skadv_first(name):
    # pickle imports skadv._vae's parent package first, which registers the old paths.
    root = Path(skadv.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(USER_MODELS)])}
    args = [FIXTURES / f"{name}.joblib", FIXTURES / f"{name}.npz", FIXTURES / "X.npy"]
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FRESH), *map(str, args)],
        check=False, capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report and all(report.values()), report

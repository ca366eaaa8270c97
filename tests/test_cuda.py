"""CUDA training, and loading a CUDA-trained estimator on a machine without CUDA.

Skipped where CUDA is absent (CI); run on a GPU machine. The CPU-only side of loading
(the stored state is CPU numpy and the device maps to 'cpu') is tested in test_base.py.
"""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from _models import digits_mlp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _estimators():
    import skadv

    X_shape = dict(random_state=0, device="cuda")
    out = {
        "ModelDistillationDetector": lambda: skadv.ModelDistillationDetector(digits_mlp(), epochs=3, **X_shape),
        "VAEDetector": lambda: skadv.VAEDetector(digits_mlp(), epochs=3, **X_shape),
    }
    if hasattr(skadv, "AdversarialAEDetector"):
        out["AdversarialAEDetector"] = lambda: skadv.AdversarialAEDetector(digits_mlp(), epochs=3, **X_shape)
    if hasattr(skadv, "DeepNeuralRejection"):
        out["DeepNeuralRejection"] = lambda: skadv.DeepNeuralRejection(digits_mlp(), layers=["1", "2"], **X_shape)
    return out


@pytest.mark.parametrize("name", sorted(_estimators()))
def test_cuda_fit_then_cpu_only_load(name, digits, tmp_path):
    X_train, y_train, X_test, _ = digits
    est = _estimators()[name]()
    est.fit(X_train[:400], y_train[:400])
    method = "decision_function" if name == "DeepNeuralRejection" else "score_samples"
    expected = getattr(est, method)(X_test)
    assert est.device_.startswith("cuda")
    # DNR's last column is the threshold: -inf by default (reject nothing)
    assert np.isfinite(expected[:, :-1] if expected.ndim == 2 else expected).all()
    path = tmp_path / "est.pkl"
    path.write_bytes(pickle.dumps(est))
    np.save(tmp_path / "X.npy", X_test)
    script = textwrap.dedent(f"""
        import pickle, warnings, numpy as np, torch
        assert not torch.cuda.is_available()
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            est = pickle.loads(open({str(path)!r}, "rb").read())
        assert est.device_ == "cpu", est.device_
        np.save({str(tmp_path / "out.npy")!r}, est.{method}(np.load({str(tmp_path / "X.npy")!r})))
    """)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=os.path.dirname(__file__))
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-4, atol=1e-5)


def test_adaptive_pgd_on_cuda(digits):
    import skadv
    from skadv.attacks import PGD

    X_train, _, X_test, y_test = digits
    det = skadv.ModelDistillationDetector(digits_mlp(), epochs=3, random_state=0, device="cuda").fit(X_train)
    X_adv = PGD(det, eps=0.1, step_size=0.01, max_iter=10, random_state=0).generate(X_test[:64], y_test[:64])
    assert np.abs(X_adv - X_test[:64]).max() <= 0.1 + 1e-6


def test_dnr_kernels_run_on_cuda_and_match_cpu(digits):
    """Training distances and both kernel precisions on the device equal the CPU's on one fitted model.

    Fits on the two devices are compared loosely: the network's float32 features differ in
    their last bits between devices, and libsvm's solutions (tolerance 1e-3) follow them.
    """
    import skadv
    from skadv._kernel_svm import squared_distances

    X_train, y_train, X_test, _ = digits
    np.testing.assert_allclose(
        squared_distances(X_train[:300], device="cuda"), squared_distances(X_train[:300]), rtol=0, atol=1e-9
    )
    layers = [("1", skadv.OneVsAllSVC(C=10, gamma=0.1)), ("2", skadv.NystroemOneVsAll(C=1, gamma=0.1, random_state=0))]
    on_cpu = skadv.DeepNeuralRejection(digits_mlp(), layers=layers, random_state=0).fit(X_train[:400], y_train[:400])
    on_gpu = skadv.DeepNeuralRejection(digits_mlp(), layers=layers, random_state=0, device="cuda")
    on_gpu.fit(X_train[:400], y_train[:400])
    assert on_gpu.kernel_net_.layers["0"].support_vectors.is_cuda
    fitted_apart = on_gpu.decision_function(X_test)[:, :-1], on_cpu.decision_function(X_test)[:, :-1]
    np.testing.assert_allclose(*fitted_apart, atol=5e-3)
    assert (fitted_apart[0].argmax(axis=1) == fitted_apart[1].argmax(axis=1)).mean() >= 0.99
    # The GPU-fitted model, loaded onto the CPU: the same weights through the CPU kernels.
    state = on_gpu.__getstate__()
    state["device_"] = "cpu"
    gpu_fit_on_cpu = skadv.DeepNeuralRejection.__new__(skadv.DeepNeuralRejection)
    gpu_fit_on_cpu.__setstate__(state)
    for dtype, atol in (("float64", 1e-5), ("float32", 1e-3)):
        np.testing.assert_allclose(
            on_gpu.set_params(kernel_dtype=dtype).decision_function(X_test)[:, :-1],
            gpu_fit_on_cpu.set_params(kernel_dtype=dtype).decision_function(X_test)[:, :-1],
            atol=atol,
        )

"""Where the modules of skadv 0.1.0 went, so that files saved by it keep loading.

pickle, joblib, cloudpickle and skops record a class by its module path (e.g.
``skadv._kernel_svm.OneVsAllSVC``), and skadv's own state encoder records its torch
module classes as ``"module:qualname"``. :func:`install` (run when ``skadv`` is imported,
which pickle does before importing a submodule of it) registers every old module path
in ``sys.modules``: a module that moved as a whole under its new name, a module that
was split as a read-only view of the names of its parts. Nothing is imported from a
file: the table below is fixed.
"""

import importlib
import sys
import types

#: Old module (relative to the package) -> the module(s) now holding its names.
MOVED = {
    "_adversarial_ae": ("detectors._adversarial_ae",),
    "_confidence": ("detectors._confidence",),
    "_distillation": ("detectors._distillation",),
    "_mahalanobis": ("detectors._mahalanobis",),
    "_squeezing": ("detectors._squeezing",),
    "_vae": ("detectors._vae", "metrics._calibration"),
    "_dnr": ("rejection._dnr", "rejection._dnr_detector", "rejection._folds"),
    "_kernel_svm": ("rejection._one_vs_all", "rejection._kernels", "rejection._nystroem"),
    "_base": ("base", "_core._device", "exceptions"),
    "_docs": ("_core._docs",),
    "_layers": ("_core._layers",),
    "_losses": ("_core._losses",),
    "_model": ("_core._model",),
    "_persist": ("_core._persist",),
    "_skorch": ("_core._skorch",),
    "_surface": ("_core._surface",),
}


def _merged(name, modules):
    """A module object named ``name`` exposing the names of ``modules`` (the first one wins)."""
    view = types.ModuleType(name, f"Moved after skadv 0.1.0: the names of {', '.join(m.__name__ for m in modules)}.")
    for module in reversed(modules):
        view.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    return view


def install(package):
    """Register the old module paths of ``package`` (``"skadv"``) in ``sys.modules``."""
    for old, new in MOVED.items():
        name = f"{package}.{old}"
        modules = [importlib.import_module(f"{package}.{path}") for path in new]
        sys.modules[name] = modules[0] if len(modules) == 1 else _merged(name, modules)
        setattr(sys.modules[package], old, sys.modules[name])  # as the import system does for submodules

"""The layout's rules, checked on the source: import graph, package boundaries, public API.

* No import cycle among skadv's modules (imports run at module level).
* A package (a top-level entry of ``skadv/``: ``skadv/_core``, ``skadv/detectors``,
  ``skadv/base.py``, ...) imports another only through that package: never from its
  private modules, never a private name. Inside a package, modules import each other freely.
* Every import of a private scikit-learn module or name is in ``skadv/_core/_sklearn.py``.
* scikit-learn is capped at its next major version; the public names stay.
"""

import ast
import configparser
import importlib
from pathlib import Path

import pytest

import skadv

ROOT = Path(skadv.__file__).resolve().parent
SKLEARN_SEAM = "skadv._core._sklearn"


def _module_name(path):
    parts = ("skadv", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def _resolve(module, node_module, level):
    """Absolute name of an ``ImportFrom``'s module, relative imports resolved from ``module``."""
    if level == 0:
        return node_module
    base = module.split(".") if module in PACKAGES else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([node_module] if node_module else []))


def _imports(module):
    """``(imported module, names, at module level, line)`` for every import statement of ``module``."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found = []

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, [], top, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, child.module, child.level)
                found.append((target, [alias.name for alias in child.names], top, child.lineno))
            else:
                # Function bodies run later; class bodies and if/try blocks at import time.
                nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                visit(child, top and not nested)

    visit(tree, True)
    return found


IMPORTS = {module: _imports(module) for module in MODULES}


def _targets(target, names):
    """The skadv modules an import statement loads: the module and the submodules it names."""
    if not target.startswith("skadv"):
        return []
    out = [target] if target in MODULES else []
    out += [f"{target}.{name}" for name in names if f"{target}.{name}" in MODULES]
    return out


def _package(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph):
    """Strongly connected components with more than one module (or a module importing itself)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return out


def test_the_parser_sees_the_layout():
    assert {"skadv._core", "skadv.detectors", "skadv.rejection", "skadv.utils", "skadv.attacks"} <= PACKAGES
    assert "skadv.base" in MODULES and "skadv.exceptions" in MODULES
    assert _resolve("skadv.detectors._vae", "_core", 2) == "skadv._core"
    assert _resolve("skadv.rejection", None, 1) == "skadv.rejection"
    from_core = [names for target, names, top, _ in IMPORTS["skadv.detectors._mahalanobis"] if target == "skadv._core"]
    assert from_core and "forward_capturing" in from_core[0]
    lazy = [top for target, _, top, _ in IMPORTS["skadv.rejection._dnr"] if target.endswith("._dnr_detector")]
    assert lazy == [False]  # an import inside a function does not count for cycles


def test_imports_name_modules_of_the_layout():
    # An old path (skadv._skorch) still imports, through the aliases kept for saved files;
    # skadv's own code must name the module where the code is.
    unresolved = [
        f"{module}:{line} imports {target}"
        for module, imports in IMPORTS.items()
        for target, _, _, line in imports
        if target.partition(".")[0] == "skadv" and target not in MODULES
    ]
    assert unresolved == []


def test_no_import_cycle():
    graph = {
        module: {t for target, names, top, _ in imports if top for t in _targets(target, names) if t != module}
        for module, imports in IMPORTS.items()
    }
    assert _cycles(graph) == []
    # The detector found the cycle this layout removed.
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_packages_import_each_other_through_their_public_face():
    problems = []
    for module, imports in IMPORTS.items():
        for target, names, _, line in imports:
            if not target.startswith("skadv.") or _package(target) == _package(module):
                continue
            inside = target.split(".")[2:]
            if any(part.startswith("_") for part in inside):
                problems.append(f"{module}:{line} imports from the private module {target}")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                problems.append(f"{module}:{line} imports private names {private} from {target}")
    assert problems == []


def test_scikit_learn_private_imports_only_in_one_module():
    problems = []
    for module, imports in IMPORTS.items():
        for target, names, _, line in imports:
            if target.partition(".")[0] != "sklearn":
                continue
            private = any(p.startswith("_") for p in target.split(".")) or any(n.startswith("_") for n in names)
            if private and module != SKLEARN_SEAM:
                problems.append(f"{module}:{line}: {target} {names}")
    assert problems == []
    assert any(target.startswith("sklearn.utils._param_validation") for target, *_ in IMPORTS[SKLEARN_SEAM])


def test_scikit_learn_is_capped_at_the_next_major_version():
    config = configparser.ConfigParser()
    config.read(ROOT.parent / "setup.cfg")
    requirements = [line.strip() for line in config["options"]["install_requires"].splitlines()]
    assert "scikit-learn>=1.6,<2" in requirements


PUBLIC = {
    "skadv": [
        "AdversarialAEDetector", "BaseDetector", "ConfidenceDetector", "DNRDetector", "DeepNeuralRejection",
        "FeatureSqueezingDetector", "InconsistentVersionWarning", "MahalanobisDetector",
        "ModelDistillationDetector", "NystroemOneVsAll", "OneVsAllSVC", "ProtectedModel", "VAEDetector",
        "__version__", "attacks", "calibration_analysis", "compat", "corruptions", "datasets", "metrics",
        "plotting", "utils",
    ],
    "skadv.attacks": [
        "APGD", "AttackFailureWarning", "AutoAttack", "BaseAttack", "CarliniWagnerL2", "FGSM", "OrthogonalPGD",
        "PGD", "PGDLineSearch", "Square", "check_attack_failure",
    ],
    "skadv.metrics": [
        "accuracy_with_rejection", "adversarial_scores", "clean_vs_attacked", "deployed_predictions",
        "detection_auroc", "detection_threshold", "evasion_rate", "harmfulness", "ks_drift_test",
        "loss_by_confidence", "make_attack_scorer", "security_evaluation", "tpr_at_fpr", "tpr_at_threshold",
    ],
    "skadv.plotting": [
        "AttackTraceDisplay", "DistinctLabelsDisplay", "ReconstructionCalibrationDisplay",
        "ScoreHistogramDisplay", "SecurityEvaluationDisplay", "plot_detection_roc",
    ],
    "skadv.datasets": ["DigitsCNN", "load_digits28", "load_digits8", "make_digits_classifier"],
    "skadv.utils": ["AttackSurface", "ModelAdapter", "ProtectedModel", "adapt_model", "resolve_attack_surface"],
    "skadv.compat": ["alibi_correct", "alibi_predict", "to_channels_first", "to_channels_last"],
    "skadv.corruptions": [
        "CORRUPTIONS", "ImageCorruption", "brightness", "corrupt", "gaussian_blur", "gaussian_noise", "pixelate",
    ],
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_the_public_names_of_the_previous_layout_remain(name):
    module = importlib.import_module(name)
    assert set(PUBLIC[name]) <= set(module.__all__)
    assert all(hasattr(module, attr) for attr in module.__all__)


def test_top_level_names_only_gain_the_base_and_exceptions_modules():
    assert set(skadv.__all__) == {*PUBLIC["skadv"], "base", "exceptions"}


def test_warnings_live_in_exceptions_and_keep_their_old_paths():
    from skadv import attacks, exceptions

    assert set(exceptions.__all__) == {"AttackFailureWarning", "InconsistentVersionWarning"}
    assert skadv.InconsistentVersionWarning is exceptions.InconsistentVersionWarning
    assert attacks.AttackFailureWarning is exceptions.AttackFailureWarning

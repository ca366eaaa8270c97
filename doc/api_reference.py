"""What the API reference lists, grouped as scikit-learn's API reference groups it.

``conf.py`` writes one page per public module from :data:`API_REFERENCE` (into ``doc/api/``,
generated, not committed), and autosummary writes one page per public name (``doc/generated/``).

To add a public module, add one line ``("skadv.newmodule", "Title", None)``: ``None`` lists the
module's whole ``__all__`` in one table. A module given sections must place every name of its
``__all__`` in exactly one of them; :func:`module_pages` raises otherwise, so that the build (and
``tests/test_docs.py``) fails on a public name that has no page.
"""

import importlib
import inspect
import pkgutil
import types

# (module, page title, sections). A section is (title, description, names); None: all of __all__.
API_REFERENCE = [
    (
        "skadv",
        "Detectors and rejection",
        [
            (
                "Detectors",
                "Outlier detectors fitted on clean rows next to the classifier they protect: "
                "``score_samples`` (higher = more normal), ``decision_function``, ``predict`` (+1 / -1).",
                ["AdversarialAEDetector", "ModelDistillationDetector", "VAEDetector"],
            ),
            (
                "Baselines",
                "Detectors that train no network: what every detector above must beat.",
                ["ConfidenceDetector", "MahalanobisDetector", "FeatureSqueezingDetector"],
            ),
            (
                "Rejection (DNR)",
                "Deep Neural Rejection: a classifier with a reject option (label -1), its detector view, "
                "and the one-vs-all kernel SVMs it is built from.",
                ["DeepNeuralRejection", "DNRDetector", "OneVsAllSVC", "NystroemOneVsAll"],
            ),
            ("Analysis", "", ["calibration_analysis"]),
            (
                "Base classes and warnings",
                "For writing a detector of your own; the protected-model wrapper every estimator uses.",
                ["BaseDetector", "ProtectedModel", "InconsistentVersionWarning"],
            ),
        ],
    ),
    (
        "skadv.attacks",
        "Attacks",
        [
            (
                "Gradient attacks",
                "White-box attacks; adaptive (classifier and detector together) when the target is a "
                "skadv estimator.",
                ["FGSM", "PGD", "APGD", "OrthogonalPGD", "PGDLineSearch", "CarliniWagnerL2"],
            ),
            ("Black-box attacks", "", ["Square"]),
            ("Ensembles", "", ["AutoAttack"]),
            ("Attack-failure checks", "", ["check_attack_failure", "AttackFailureWarning"]),
            ("Base class", "", ["BaseAttack"]),
        ],
    ),
    (
        "skadv.metrics",
        "Evaluation metrics",
        [
            (
                "Detection",
                "",
                [
                    "detection_auroc",
                    "tpr_at_fpr",
                    "tpr_at_threshold",
                    "clean_vs_attacked",
                    "adversarial_scores",
                    "detection_threshold",
                ],
            ),
            (
                "Security evaluation",
                "",
                [
                    "evasion_rate",
                    "accuracy_with_rejection",
                    "deployed_predictions",
                    "security_evaluation",
                    "make_attack_scorer",
                ],
            ),
            ("Corruptions and calibration", "", ["harmfulness", "ks_drift_test", "loss_by_confidence",
                                                 "calibration_analysis"]),
        ],
    ),
    ("skadv.evaluation", "Evaluation on your own model", None),
    ("skadv.plotting", "Displays", None),
    ("skadv.datasets", "Datasets", None),
    ("skadv.corruptions", "Corruptions", None),
    ("skadv.detectors", "Detectors by family", None),
    ("skadv.rejection", "Rejection by family", None),
    ("skadv.base", "Base classes", None),
    ("skadv.exceptions", "Exceptions and warnings", None),
    ("skadv.utils", "Utilities", None),
    ("skadv.utils.discovery", "Discovery", None),
    ("skadv.utils.estimator_checks", "Contract checks", None),
    ("skadv.compat", "Compatibility", None),
]


def public_names(module_name):
    """The names of ``module.__all__`` that get a page: no submodules, no dunders.

    A module without ``__all__`` (it should have one) contributes the public classes and
    functions it defines itself, classes first.
    """
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        defined = [
            (name, value)
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module_name
        ]
        names = [name for name, value in sorted(defined, key=lambda item: not inspect.isclass(item[1]))]
    return [
        name
        for name in names
        if not name.startswith("__") and not isinstance(getattr(module, name), types.ModuleType)
    ]


def public_modules(package="skadv"):
    """``package`` and every module below it whose dotted name has no part starting with ``_``."""
    root = importlib.import_module(package)
    found = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(info.name)
    return found


def module_pages():
    """``{module: (title, [(section title, description, names), ...])}``, checked against ``__all__``."""
    pages = {}
    for module_name, title, sections in API_REFERENCE:
        names = public_names(module_name)
        if sections is None:
            sections = [("", "", names)]
        listed = [name for _, _, section_names in sections for name in section_names]
        missing = sorted(set(names) - set(listed))
        extra = sorted(set(listed) - set(names))
        twice = sorted({name for name in listed if listed.count(name) > 1})
        if missing or extra or twice:
            raise ValueError(
                f"doc/api_reference.py and {module_name}.__all__ disagree: not listed {missing}, "
                f"not public {extra}, listed twice {twice}. Put each public name in one section."
            )
        pages[module_name] = (title, sections)
    return pages


def canonical_names():
    """``{id(object): full name}``: the page of an object public under several names.

    The page goes to the first module of :data:`API_REFERENCE` that lists the object (so
    ``skadv.AdversarialAEDetector``, not ``skadv.detectors.AdversarialAEDetector``); the
    other modules' pages declare the other names and link to it.
    """
    canonical = {}
    for module_name, _, sections in API_REFERENCE:
        module = importlib.import_module(module_name)
        names = public_names(module_name) if sections is None else [n for _, _, ns in sections for n in ns]
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isroutine(obj):
                canonical.setdefault(id(obj), f"{module_name}.{name}")
    return canonical


def _object_type(obj):
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    return "function" if inspect.isroutine(obj) else "data"


def _underline(text, char):
    return f"{text}\n{char * len(text)}\n"


def _write_if_changed(path, text):
    # Sphinx rereads a source whose modification time changed: leave unchanged pages alone.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_pages(directory):
    """Write ``index.rst`` and one page per module of :data:`API_REFERENCE` into ``directory``.

    Returns the module pages' paths, the sources autosummary generates the name pages from.
    """
    directory.mkdir(parents=True, exist_ok=True)
    canonical = canonical_names()
    index = [
        ".. _api_reference:\n",
        _underline("API reference", "="),
        "One page per public class and function, grouped by module. The estimators follow "
        "scikit-learn's API (https://scikit-learn.org/stable/developers/develop.html).\n",
        ".. toctree::\n   :hidden:\n\n" + "".join(f"   {module}\n" for module, _, _ in API_REFERENCE),
    ]
    for module_name, (title, sections) in module_pages().items():
        module = importlib.import_module(module_name)
        label = f"api_{module_name.replace('.', '_')}"
        page = [
            f".. _{label}:\n",
            _underline(f"{title}: ``{module_name}``", "="),
            f".. automodule:: {module_name}\n   :no-members:\n",
            f".. currentmodule:: {module_name}\n",
        ]
        summary = (module.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        index.append(_underline(f"{title}: ``{module_name}``", "-"))
        index.append(f"{summary} (:ref:`the module's page <{label}>`)\n")
        for section_title, description, names in sections:
            if section_title:
                page.append(_underline(section_title, "-"))
                index.append(f".. rubric:: {section_title}\n")
            if description:
                page.append(description + "\n")
            full_names = [canonical.get(id(getattr(module, name)), f"{module_name}.{name}") for name in names]
            here = [name for name, full_name in zip(names, full_names) if full_name == f"{module_name}.{name}"]
            if here:
                page.append(".. autosummary::\n   :toctree: ../generated/\n   :nosignatures:\n")
                page.append("".join(f"   {name}\n" for name in here))
            for name, full_name in zip(names, full_names):
                if full_name != f"{module_name}.{name}":
                    # The other name is declared too, so that references to it resolve.
                    kind = _object_type(getattr(module, name))
                    page.append(f".. py:{kind}:: {name}\n   :no-contents-entry:\n\n"
                                f"   The same object as :obj:`{full_name}`.\n")
            index.append(".. autosummary::\n   :nosignatures:\n")
            index.append("".join(f"   {full_name}\n" for full_name in dict.fromkeys(full_names)))
        _write_if_changed(directory / f"{module_name}.rst", "\n".join(page))
    _write_if_changed(directory / "index.rst", "\n".join(index))
    return [directory / f"{module_name}.rst" for module_name, _, _ in API_REFERENCE]


def prune_generated(directory):
    """Remove autosummary pages of names no longer listed (autosummary only ever adds pages)."""
    canonical = canonical_names()
    pages = set()
    for module_name, _, _ in API_REFERENCE:
        module = importlib.import_module(module_name)
        for name in public_names(module_name):
            pages.add(canonical.get(id(getattr(module, name)), f"{module_name}.{name}") + ".rst")
    for path in directory.glob("*.rst"):
        if path.name not in pages:
            path.unlink()

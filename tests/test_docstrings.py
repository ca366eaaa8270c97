"""Documented defaults and choices of every public parameter match the code.

For every public estimator (its constructor) and public function, each parameter whose
numpydoc type line says ``default=...`` must have that default in the signature, and a
``{'a', 'b'}`` set of string choices must equal the ``StrOptions`` of its
``_parameter_constraints`` (estimators) or the parameter's ``validate_params`` options.
"""

import ast
import inspect

import numpy as np
import pytest
from numpydoc.docscrape import ClassDoc, FunctionDoc

import skadv
from skadv._core import StrOptions

_PUBLIC_MODULES = [
    skadv,
    skadv.attacks,
    skadv.base,
    skadv.compat,
    skadv.corruptions,
    skadv.datasets,
    skadv.metrics,
    skadv.plotting,
    skadv.rejection,
    skadv.utils,
]


def _public_objects():
    seen = {}
    for module in _PUBLIC_MODULES:
        for name in getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")]):
            obj = getattr(module, name, None)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                if getattr(obj, "__module__", "").startswith("skadv") and not issubclass_safe(obj, Warning):
                    seen.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return sorted(seen.items())


def issubclass_safe(obj, cls):
    return inspect.isclass(obj) and issubclass(obj, cls)


def _documented_parameters(obj):
    doc = ClassDoc(obj) if inspect.isclass(obj) else FunctionDoc(obj)
    for parameter in doc["Parameters"]:
        for name in parameter.name.split(","):
            yield name.strip().lstrip("*"), parameter.type


def _signature(obj):
    return inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters


def _documented_default(type_line):
    """The text after ``default=`` (up to the end of the type line), or None."""
    if "default=" not in type_line:
        return None
    return type_line.split("default=", 1)[1].strip()


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def _choices(type_line):
    """The string choices of a ``{'a', 'b'}`` type, or None."""
    start, end = type_line.find("{"), type_line.find("}")
    if start < 0 or end < start:
        return None
    values = _literal(type_line[start : end + 1])
    if not isinstance(values, set) or not all(isinstance(v, str) for v in values):
        return None
    return values


def _string_options(obj, name):
    """The strings the code accepts for parameter ``name``: from StrOptions constraints."""
    constraints = getattr(obj, "_parameter_constraints", None)
    if not constraints or name not in constraints:
        return None
    options = set()
    for constraint in constraints[name] if isinstance(constraints[name], list) else [constraints[name]]:
        if isinstance(constraint, StrOptions):
            options |= set(constraint.options) - set(getattr(constraint, "internal", ()))
    return options or None


PUBLIC = _public_objects()


def test_the_public_api_is_found():
    names = {name.rsplit(".", 1)[1] for name, _ in PUBLIC}
    assert {"AdversarialAEDetector", "DeepNeuralRejection", "PGD", "hookable_layers", "alibi_predict"} <= names
    assert len(PUBLIC) > 40


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_documented_defaults_match_the_signature(name, obj):
    signature = _signature(obj)
    mismatches = []
    for parameter, type_line in _documented_parameters(obj):
        documented = _documented_default(type_line)
        if documented is None or parameter not in signature:
            continue
        actual = signature[parameter].default
        if actual is inspect.Parameter.empty:
            mismatches.append(f"{parameter}: documented default={documented}, but the parameter is required")
            continue
        expected = _literal(documented)
        if expected is None and documented not in ("None",):
            # Not a literal (e.g. np.inf, a class): compare with the default's repr or name.
            rendered = {repr(actual), str(actual), getattr(actual, "__name__", None)}
            if documented not in rendered and not (documented in ("np.inf", "inf") and actual == np.inf):
                mismatches.append(f"{parameter}: documented default={documented}, signature {actual!r}")
            continue
        same = (expected == actual and type(expected) is not bool) or expected is actual
        if isinstance(expected, (tuple, list)) and isinstance(actual, (tuple, list)):
            same = tuple(expected) == tuple(actual)
        if not same:
            mismatches.append(f"{parameter}: documented default={documented}, signature {actual!r}")
    assert not mismatches, f"{name}: " + "; ".join(mismatches)


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_documented_string_choices_match_the_constraints(name, obj):
    mismatches = []
    for parameter, type_line in _documented_parameters(obj):
        documented = _choices(type_line)
        if documented is None:
            continue
        accepted = _string_options(obj, parameter)
        if accepted is not None and documented != accepted:
            mismatches.append(f"{parameter}: documented {sorted(documented)}, accepted {sorted(accepted)}")
        default = _signature(obj).get(parameter)
        if default is not None and isinstance(default.default, str) and default.default not in documented:
            mismatches.append(f"{parameter}: default {default.default!r} is not among {sorted(documented)}")
    assert not mismatches, f"{name}: " + "; ".join(mismatches)


def test_model_output_auto_is_documented_as_the_code_reads_it():
    doc = skadv.ModelDistillationDetector.__doc__
    assert "logits for a module" not in doc
    assert "non-negative values summing" in doc and "to 1 are probabilities" in doc

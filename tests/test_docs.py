"""The documentation: the documented build is warning-free and every public name has its page.

``doc/api_reference.py`` says which page lists which public name; the build (run once per
session, shared with ``test_examples.py``) writes the pages. A public module missing from the
reference, or a public name missing from its page, fails here.
"""

import importlib
import importlib.util
import inspect
import re

import pytest

from _docs_build import DOC, HTML, build_docs


def _api_reference():
    spec = importlib.util.spec_from_file_location("api_reference", DOC / "api_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


api_reference = _api_reference()
MODULES = [module for module, _, _ in api_reference.API_REFERENCE]
PUBLIC = [(module, name) for module in MODULES for name in api_reference.public_names(module)]


@pytest.fixture(scope="module")
def docs_build():
    return build_docs()


def _canonical(module_name, name):
    """The full name whose page documents ``module_name.name``."""
    obj = getattr(importlib.import_module(module_name), name)
    return api_reference.canonical_names().get(id(obj), f"{module_name}.{name}")


def test_build_is_warning_free(docs_build):
    returncode, output = docs_build
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert returncode == 0 and not warnings, "\n".join(warnings) or output[-5000:]


def test_every_public_module_is_in_the_reference():
    assert sorted(api_reference.public_modules("skadv")) == sorted(MODULES)
    for module in ("skadv", "skadv.attacks", "skadv.metrics", "skadv.plotting", "skadv.datasets", "skadv.utils",
                   "skadv.compat", "skadv.corruptions", "skadv.base", "skadv.exceptions", "skadv.detectors",
                   "skadv.rejection", "skadv.utils.discovery", "skadv.utils.estimator_checks"):
        assert module in MODULES


def test_reference_places_every_public_name_once():
    pages = api_reference.module_pages()
    for module in MODULES:
        listed = [name for _, _, names in pages[module][1] for name in names]
        assert sorted(listed) == sorted(api_reference.public_names(module))


def test_unlisted_public_name_fails(monkeypatch):
    import skadv.compat

    monkeypatch.setattr(skadv.compat, "__all__", [*skadv.compat.__all__, "new_function"])
    monkeypatch.setattr(skadv.compat, "new_function", lambda: None, raising=False)
    sections = [("", "", ["alibi_predict"])]
    monkeypatch.setattr(api_reference, "API_REFERENCE", [("skadv.compat", "Compatibility", sections)])
    with pytest.raises(ValueError, match=r"skadv.compat.__all__ disagree: not listed \['alibi_correct', "):
        api_reference.module_pages()


@pytest.mark.parametrize(("module", "name"), PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_public_name_has_a_page(module, name, docs_build):
    source = (DOC / "api" / f"{module}.rst").read_text()
    canonical = _canonical(module, name)
    if canonical == f"{module}.{name}":
        assert re.search(rf"^   {re.escape(name)}$", source, re.MULTILINE), (module, name)
    else:  # declared where it is public too, so that references to this name resolve
        assert re.search(rf"^\.\. py:\w+:: {re.escape(name)}\n.*\n\n   The same object as :obj:`{canonical}`\.$",
                         source, re.MULTILINE), (module, name)
        assert f'id="{module}.{name}"' in (HTML / "api" / f"{module}.html").read_text()
    page = HTML / "generated" / f"{canonical}.html"
    assert page.is_file(), page
    html = page.read_text()
    obj = getattr(importlib.import_module(module), name)
    # The docstring's Examples section is rendered, and scikit-learn's boilerplate left out.
    if re.search(r"^\s*Examples\n\s*--------", inspect.getdoc(obj) or "", re.MULTILINE):
        assert "Examples" in html and "&gt;&gt;&gt;" in html, page
    hidden = re.findall(r"set_output|set_\w+_request|with_traceback|add_note", html)
    assert not hidden, (page, hidden)
    if inspect.isclass(obj) and hasattr(obj, "fit"):
        assert f"{canonical}.fit" in html  # the estimator's own methods are documented


def test_api_index_links_every_module(docs_build):
    index = (HTML / "api" / "index.html").read_text()
    for module in MODULES:
        assert f'href="{module}.html' in index, module

"""Sphinx configuration of skadv's documentation.

Build (from the repository root; nothing is downloaded)::

    python -m sphinx -W --keep-going -b html doc doc/_build/html
"""

import pathlib
import re
import sys
import warnings

DOC = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOC))
# Document the checkout being built, whatever skadv is installed.
sys.path.insert(0, str(DOC.parent))

import torch  # noqa: E402
from api_reference import prune_generated, write_pages  # noqa: E402

import skadv  # noqa: E402

project = "skadv"
author = "skadv developers"
copyright = "skadv developers"
release = skadv.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_css_files = ["skadv.css"]
html_title = f"skadv {release}"
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    # A page's table of contents on the right, except on the landing page and in the gallery,
    # whose code and output need the width (pages no pattern matches get no right sidebar).
    "secondary_sidebar_items": {"user_guide/**": ["page-toc"], "api/**": ["page-toc"], "generated/**": ["page-toc"]},
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "**": ["sidebar-nav-bs"]}
pygments_style = "sphinx"

# --- API reference: doc/api/*.rst from doc/api_reference.py, one page per name by autosummary.
# The module pages are named explicitly: a page new since the last build is then read too.
autosummary_generate = [str(page.relative_to(DOC)) for page in write_pages(DOC / "api")]
prune_generated(DOC / "generated")
autosummary_imported_members = False
add_module_names = False
toc_object_entries_show_parents = "hide"  # "fit()" in a page's table of contents, not "Class.fit()"
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# scikit-learn's boilerplate (set_output, the metadata-routing set_*_request methods), the
# methods of Python's exceptions and those of torch's nn.Module are left out of the class pages
# (_templates/autosummary/class.rst); a torch module's own forward stays.
autosummary_context = {
    "torch_module_methods": sorted(name for name in dir(torch.nn.Module) if not name.startswith("_")
                                   and name != "forward"),
}

# --- Gallery: every example runs during the build (its small settings are its defaults).
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",  # run every example, with or without figures
    "subsection_order": [
        f"../examples/{topic}" for topic in ("attacks", "detectors", "rejection", "evaluation", "workflows")
    ],
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("skadv",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skadv": None},
    "image_scrapers": ("matplotlib",),
    "remove_config_comments": True,
    "capture_repr": (),  # the pages show what the examples print, not the values of expressions
    # The running time says how busy the building machine was, not what the example costs.
    "min_reported_time": float("inf"),
    "show_memory": False,
    "download_all_examples": False,
    "show_signature": False,
    "matplotlib_animations": False,
}

# Warnings from the examples' libraries that are not skadv's to fix.
warnings.filterwarnings("ignore", category=UserWarning, message="Matplotlib is currently using agg")
warnings.filterwarnings("ignore", category=UserWarning, message="FigureCanvasAgg is non-interactive")


# Docstrings inherited from scikit-learn (e.g. ``score``) cite scikit-learn's own labels
# (``:ref:`User Guide <accuracy_score>```), which this site does not have: keep their text.
_SKLEARN_REF = re.compile(r":ref:`([^`<]*?)\s*<[^`>]*>`|:ref:`([^`<]*)`")


# numpydoc renders a parameter's type as reST: the star of a shape such as
# (n_samples, *input_shape) is Python's unpacking, not the start of an emphasis. Literals
# (``...``) are left as they are.
_STARRED_SHAPE = re.compile(r"(?<=[(,] )\*(?=\w+\))|(?<=\()\*(?=\w+\))")
_LITERAL = re.compile(r"(``.+?``)")


def _escape_starred_shapes(line):
    parts = _LITERAL.split(line)
    return "".join(part if i % 2 else _STARRED_SHAPE.sub(r"\\*", part) for i, part in enumerate(parts))


def _fix_docstring(app, what, name, obj, options, lines):
    from_sklearn = (getattr(obj, "__module__", "") or "").split(".")[0] == "sklearn"
    for i, line in enumerate(lines):
        if from_sklearn:
            line = _SKLEARN_REF.sub(lambda m: m.group(1) or m.group(2), line)
        lines[i] = _escape_starred_shapes(line)


def setup(app):
    app.connect("autodoc-process-docstring", _fix_docstring)

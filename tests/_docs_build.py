"""The documentation build, run once per test session by the tests that read what it produced.

The build is exactly the documented command. It executes every example of the gallery, so the
examples' tests read their printed output from the generated pages instead of running them a
second time. Every example is re-run (its checksum file is removed first): sphinx-gallery
otherwise skips an unchanged example even when skadv itself changed. A later build of an
unchanged checkout (``.ci/run``'s docs step) then finds every example up to date.
"""

import functools
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "doc"
HTML = DOC / "_build" / "html"
GALLERY = DOC / "auto_examples"
EXAMPLES = ROOT / "examples"
BUILD_COMMAND = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "doc", "doc/_build/html"]


@functools.cache
def build_docs():
    """Run the documented build once; return ``(returncode, output)``."""
    for checksum in GALLERY.rglob("*.md5"):
        checksum.unlink()
    result = subprocess.run(BUILD_COMMAND, cwd=ROOT, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def gallery_page(script):
    """The generated reST page of an example script."""
    return GALLERY / script.relative_to(EXAMPLES).with_suffix(".rst")


_OUTPUT_BLOCK = re.compile(
    r"^\.\. rst-class:: sphx-glr-script-out\n\n \.\. code-block:: none\n\n((?:    .*\n|\n)*)", re.MULTILINE
)


def printed_output(script):
    """What the example printed during the build, all of its cells' outputs joined."""
    text = gallery_page(script).read_text()
    blocks = _OUTPUT_BLOCK.findall(text)
    return "".join(
        "\n".join(line[4:] for line in block.rstrip("\n").split("\n")) + "\n" for block in blocks
    )


def figures(script):
    """The figures the build captured from the example."""
    return sorted((gallery_page(script).parent / "images").glob(f"sphx_glr_{script.stem}_[0-9][0-9][0-9].png"))

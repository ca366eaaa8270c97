#!/usr/bin/env bash
# Build the peer environments that the side-by-side benchmarks compare skadv with, each
# installed the way its own users install it, in a virtual environment of its own:
#
#   secml 0.15.6        Python 3.10, numpy<2, scikit-learn<1.4, torch 2.4.1 from PyPI
#   alibi-detect 0.13.0 the "tensorflow" extra (TensorFlow 2.18)
#
# Usage: bash benchmarks/setup_peers.sh DEST   (a few minutes; needs the package index)
# Then: python benchmarks/dnr.py --scale seed --secml-python DEST/secml/bin/python
#       python benchmarks/adversarial_ae_seed.py --alibi-python DEST/alibi/bin/python
set -euo pipefail
dest=${1:?usage: bash benchmarks/setup_peers.sh DEST}
mkdir -p "$dest"

if [ ! -x "$dest/secml/bin/python" ]; then
  # secml 0.15.6 does not install on Python 3.11: find a 3.10 (pyenv's first, then PATH).
  python310=$(ls "$HOME"/.pyenv/versions/3.10*/bin/python 2>/dev/null | head -n 1 || true)
  if [ -z "$python310" ]; then python310=$(command -v python3.10 || true); fi
  if [ -z "$python310" ]; then echo "secml 0.15.6 needs Python 3.10: none found" >&2; exit 1; fi
  "$python310" -m venv "$dest/secml"
  "$dest/secml/bin/pip" install --quiet secml==0.15.6 "numpy<2" "scikit-learn<1.4" "setuptools<81" \
    torch==2.4.1 torchvision==0.19.1
fi

if [ ! -x "$dest/alibi/bin/python" ]; then
  python3 -m venv "$dest/alibi"
  "$dest/alibi/bin/pip" install --quiet "alibi-detect[tensorflow]==0.13.0"
fi

"$dest/secml/bin/python" -c "import secml, torch; print('secml', secml.__version__, 'with torch', torch.__version__)"
"$dest/alibi/bin/python" -c "import alibi_detect, tensorflow as t; print('alibi-detect', alibi_detect.__version__, 'with tensorflow', t.__version__)"
echo "--secml-python $dest/secml/bin/python"
echo "--alibi-python $dest/alibi/bin/python"

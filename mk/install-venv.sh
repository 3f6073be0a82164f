#!/bin/sh
# Install a workshop-runner wheel into a fresh virtual environment, the way the image does.
# The Dockerfile and tests/integration/test_wheel.py both run this script, so the test
# exercises exactly the image's install.
#
#   install-venv.sh PYTHON VENV WHEEL
#
# Wheels only (--only-binary): every dependency must ship a wheel, so the builder needs no
# compiler either. pip compiles the .pyc files at install time, which matters because the pod's
# root filesystem is read-only. pip and setuptools are removed at the end: the image runs the
# venv, it never installs into it. Pip's cache is the caller's choice (PIP_NO_CACHE_DIR=1 in the
# image).
set -eu
if [ "$#" -ne 3 ]; then
    echo "usage: $0 PYTHON VENV WHEEL" >&2
    exit 2
fi
python=$1
venv=$2
wheel=$3

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --only-binary=:all: "$wheel"
"$venv/bin/python" -m pip uninstall --disable-pip-version-check --yes pip setuptools
"$venv/bin/workshop-runner" --help >/dev/null

#!/usr/bin/env bash
# Create .venv and install the pinned dependency set (requirements.lock) plus this project.
# The Makefile runs it only when requirements.lock or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.8

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: llm-resilience needs Python >= 3.11; '$PYTHON' is $("$PYTHON" --version 2>&1 || echo missing)." >&2
  echo "       Set PYTHON=/path/to/python3.11 (or newer) and run make again." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip
[ "$(.venv/bin/uv --version 2>/dev/null)" = "uv $UV_VERSION" ] || .venv/bin/python -m pip install -q "uv==$UV_VERSION"

export VIRTUAL_ENV="$PWD/.venv"
# llama-cpp-python compiles llama.cpp here (about 4-6 minutes on 2 cores, once; uv caches the wheel).
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
echo "installing the pinned dependencies (requirements.lock) into .venv ..."
.venv/bin/uv pip install --quiet -r requirements.lock
.venv/bin/uv pip install --quiet --no-deps -r requirements-nodeps.lock
.venv/bin/uv pip install --quiet --no-deps -e .
echo "installed: $(.venv/bin/python -c 'import prefect; print("prefect", prefect.__version__)')"

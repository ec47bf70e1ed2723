#!/usr/bin/env bash
# The test suite: starts a RabbitMQ broker if none answers (see
# ensure-broker.sh), prepares Python with pika and msgpack for the
# cross-language test (best effort), and runs every test of the workspace.
# Arguments are passed to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-broker.sh

if [ -z "${RPC_TEST_PYTHON:-}" ]; then
    venv=target/py-venv
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pika, msgpack" 2>/dev/null; then
        if command -v python3 >/dev/null && python3 -m venv "$venv" >/dev/null 2>&1 \
            && "$venv/bin/pip" install -q pika msgpack >/dev/null 2>&1; then
            echo "==> prepared $venv with pika and msgpack"
        else
            echo "==> note: no Python virtualenv with pika and msgpack; the Python interop test will be skipped"
        fi
    fi
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import pika, msgpack" 2>/dev/null; then
        export RPC_TEST_PYTHON="$PWD/$venv/bin/python"
    fi
fi

cargo test --workspace "$@"

#!/usr/bin/env bash
# The test suite: starts a RabbitMQ broker if none answers (see
# ensure-broker.sh), prepares Python with pika, msgpack and the
# OpenTelemetry SDK for the cross-language tests (best effort), and runs
# every test of the workspace, then the OpenTelemetry tests (a feature).
# Arguments are passed to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-broker.sh

if [ -z "${RPC_TEST_PYTHON:-}" ]; then
    venv=target/py-venv
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pika, msgpack, opentelemetry.sdk" 2>/dev/null; then
        if command -v python3 >/dev/null && python3 -m venv "$venv" >/dev/null 2>&1 \
            && "$venv/bin/pip" install -q pika msgpack opentelemetry-sdk >/dev/null 2>&1; then
            echo "==> prepared $venv with pika, msgpack and opentelemetry-sdk"
        else
            echo "==> note: no Python virtualenv with pika and msgpack; the Python interop test will be skipped"
        fi
    fi
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import pika, msgpack" 2>/dev/null; then
        export RPC_TEST_PYTHON="$PWD/$venv/bin/python"
    fi
fi

cargo test --workspace "$@"
# The `opentelemetry` feature of rpc-runtime, through the tests' `otel`
# feature: its own build, and only the tests that need it.
cargo test -p rpc-tests --features otel --test tracing_otel "$@"

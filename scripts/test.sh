#!/usr/bin/env bash
# The test suite: starts a RabbitMQ broker if none answers (see
# ensure-broker.sh), prepares Python with pika, msgpack and the
# OpenTelemetry SDK for the cross-language tests (best effort), and runs
# every test of the workspace, then the OpenTelemetry tests (a feature).
# Arguments are passed to `cargo test`.
#
# RPC_TEST_FEATURES: features for every `cargo test` here, say
# `rpc-runtime/amqprs` to run the suite on the amqprs transport; unset, the
# default build (lapin). RPC_TEST_TARGET_DIR: a target directory of its own
# for that build (so that switching transports does not rebuild the other's).
set -euo pipefail
cd "$(dirname "$0")/.."

features=()
# What does not depend on the transport runs on the default build only: the
# doc tests, the macro's compile-time messages (macro_ui) and the
# OpenTelemetry context handling (the trace context's headers are checked
# on both, by the rest of the suite). CI's time allows no more.
scope=()
skip=()
if [ -n "${RPC_TEST_FEATURES:-}" ]; then
    features=(--features "$RPC_TEST_FEATURES")
    scope=(--tests)
    skip=(--skip macro_ui)
    echo "==> with features: $RPC_TEST_FEATURES (no doc tests, macro_ui or OpenTelemetry tests)"
fi
if [ -n "${RPC_TEST_TARGET_DIR:-}" ]; then
    # Absolute: the macro's UI tests (trybuild) build from another
    # directory.
    CARGO_TARGET_DIR=$(realpath -m "$RPC_TEST_TARGET_DIR")
    export CARGO_TARGET_DIR
fi
target=${CARGO_TARGET_DIR:-target}

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

if [ $# -gt 0 ]; then
    cargo test --workspace ${features[@]+"${features[@]}"} "$@"
else
    # The cluster scenarios (six minutes or so, on private nodes of their
    # own) run beside the rest of the suite rather than after it, so that
    # the suite fits CI's time: everything here holds on a busy machine
    # (docs/RELIABILITY.md). Their binary runs by itself (a second `cargo
    # test` would wait for the first's lock), its output shown at the end.
    mkdir -p "$target"
    cargo test --workspace ${features[@]+"${features[@]}"} ${scope[@]+"${scope[@]}"} --no-run 2>&1 | tee "$target/test-build.log"
    cluster_bin=$(sed -n 's/.*Executable tests\/cluster.rs (\(.*\))$/\1/p' "$target/test-build.log")
    if [ -z "$cluster_bin" ]; then
        echo "error: the cluster tests' binary was not found" >&2
        exit 1
    fi
    cluster_log=$(realpath -m "$target/cluster-tests.log")
    cluster_bin=$(realpath -m "$cluster_bin")
    (cd tests && "$cluster_bin" > "$cluster_log" 2>&1) &
    cluster=$!
    status=0
    cargo test --workspace ${features[@]+"${features[@]}"} ${scope[@]+"${scope[@]}"} -- \
        --skip a_quorum_request_queue_survives --skip a_classic_request_queue_is_unavailable \
        ${skip[@]+"${skip[@]}"} || status=$?
    cluster_status=0
    wait "$cluster" || cluster_status=$?
    echo "==> the cluster tests (run beside the rest):"
    cat "$cluster_log"
    if [ "$status" -ne 0 ] || [ "$cluster_status" -ne 0 ]; then
        exit 1
    fi
fi
# The `opentelemetry` feature of rpc-runtime, through the tests' `otel`
# feature: its own build, and only the tests that need it.
if [ -z "${RPC_TEST_FEATURES:-}" ]; then
    cargo test -p rpc-tests --features otel --test tracing_otel "$@"
fi

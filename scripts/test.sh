#!/usr/bin/env bash
# The test suite: starts a RabbitMQ broker if none answers (see
# ensure-broker.sh), prepares Python with pika, msgpack and the
# OpenTelemetry SDK for the cross-language tests (best effort), and runs
# every test of the workspace, then the OpenTelemetry tests (a feature).
# Arguments are passed to `cargo test` (the default build only).
#
# RPC_TEST_TRANSPORTS: the transports to run the suite on, `lapin` (the
# default), `amqprs`, or both (`"lapin amqprs"`, as CI runs it). On amqprs
# the suite leaves out what does not touch the transport: the doc tests, the
# macro's compile-time messages (macro_ui) and the OpenTelemetry context
# handling (the trace context's headers are checked on both by the rest).
# RPC_TEST_FEATURES=rpc-runtime/amqprs is the same as
# RPC_TEST_TRANSPORTS=amqprs. RPC_TEST_TARGET_DIR: a target directory of
# its own for the builds.
#
# RPC_TEST_BESIDE: a command run while the cluster scenarios run (CI lints
# there), before the rest of the suite; its failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

transports=${RPC_TEST_TRANSPORTS:-lapin}
case "${RPC_TEST_FEATURES:-}" in
    "") ;;
    rpc-runtime/amqprs) transports=amqprs ;;
    *)
        echo "error: RPC_TEST_FEATURES may only be rpc-runtime/amqprs (or use RPC_TEST_TRANSPORTS)" >&2
        exit 2
        ;;
esac
for transport in $transports; do
    case "$transport" in
        lapin | amqprs) ;;
        *)
            echo "error: unknown transport in RPC_TEST_TRANSPORTS: $transport (lapin or amqprs)" >&2
            exit 2
            ;;
    esac
done
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

# The cargo features of a transport.
features() {
    case "$1" in
        lapin) ;;
        amqprs) echo "--features rpc-runtime/amqprs" ;;
    esac
}

# The cargo arguments of a transport's build and of what runs on it.
cargo_args() {
    case "$1" in
        lapin) ;;
        amqprs) echo "$(features amqprs) --tests" ;;
    esac
}

if [ $# -gt 0 ]; then
    # As asked, on each transport: one `cargo test`, the cluster scenarios
    # (if selected) in turn with the rest.
    for transport in $transports; do
        # shellcheck disable=SC2046
        cargo test --workspace $(features "$transport") "$@"
        if [ "$transport" = lapin ]; then
            cargo test -p rpc-tests --features otel --test tracing_otel "$@"
        fi
    done
    exit 0
fi

# The cluster scenarios (six minutes or so each, on private nodes of their
# own, mostly waiting for nodes to boot, fail and come back) run beside the
# rest of the suite rather than after it, every transport's at once, so that
# the suite fits CI's time: everything here holds on a busy machine
# (docs/RELIABILITY.md). Each transport's binaries are built first; its
# cluster binary then runs by itself (a `cargo test` of it would wait for
# the other's lock), its output shown at the end.
mkdir -p "$target"
clusters=()
for transport in $transports; do
    echo "==> building the suite on $transport"
    build_log="$target/test-build-$transport.log"
    # shellcheck disable=SC2046
    cargo test --workspace $(cargo_args "$transport") --no-run 2>&1 | tee "$build_log"
    cluster_bin=$(sed -n 's/.*Executable tests\/cluster.rs (\(.*\))$/\1/p' "$build_log")
    if [ -z "$cluster_bin" ]; then
        echo "error: the cluster tests' binary was not found" >&2
        exit 1
    fi
    cluster_log=$(realpath -m "$target/cluster-tests-$transport.log")
    cluster_bin=$(realpath -m "$cluster_bin")
    (cd tests && "$cluster_bin" > "$cluster_log" 2>&1) &
    clusters+=("$transport:$!:$cluster_log")
done

status=0
if [ -n "${RPC_TEST_BESIDE:-}" ]; then
    echo "==> beside the cluster scenarios: $RPC_TEST_BESIDE"
    bash -c "$RPC_TEST_BESIDE" || status=$?
fi
for transport in $transports; do
    skip=(--skip a_quorum_request_queue_survives --skip a_classic_request_queue_is_unavailable)
    if [ "$transport" = amqprs ]; then
        skip+=(--skip macro_ui)
        echo "==> the suite on amqprs (no doc tests, macro_ui or OpenTelemetry tests)"
    else
        echo "==> the suite on lapin"
    fi
    # shellcheck disable=SC2046
    cargo test --workspace $(cargo_args "$transport") -- "${skip[@]}" || status=$?
    # The `opentelemetry` feature of rpc-runtime, through the tests' `otel`
    # feature: its own build, and only the tests that need it.
    if [ "$transport" = lapin ]; then
        cargo test -p rpc-tests --features otel --test tracing_otel || status=$?
    fi
done
for cluster in "${clusters[@]}"; do
    IFS=: read -r transport pid log <<< "$cluster"
    cluster_status=0
    wait "$pid" || cluster_status=$?
    echo "==> the cluster tests on $transport (run beside the rest):"
    cat "$log"
    if [ "$cluster_status" -ne 0 ]; then
        status=1
    fi
done
exit "$status"

#!/usr/bin/env bash
# The test suite: starts a RabbitMQ broker if none answers (see
# ensure-broker.sh), prepares Python with pika, msgpack and the
# OpenTelemetry SDK for the cross-language tests (best effort), and runs
# every test of the workspace, then the OpenTelemetry tests (a feature).
# Arguments are passed to `cargo test`, which then runs every test in turn
# (the cluster and UI tests too: nothing runs beside).
#
# RPC_TEST_TRANSPORTS: the transports to run the suite on, `lapin` (the
# default), `amqprs`, or both (`"lapin amqprs"`). On amqprs
# the suite leaves out what does not touch the transport: the doc tests, the
# macro's compile-time messages (macro_ui) and the OpenTelemetry context
# handling (the trace context's headers are checked on both by the rest).
# RPC_TEST_FEATURES=rpc-runtime/amqprs is the same as
# RPC_TEST_TRANSPORTS=amqprs. RPC_TEST_TARGET_DIR: a target directory of
# its own for the builds.
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
            cargo test --workspace --features rpc-tests/otel --test tracing_otel "$@"
        fi
    done
    exit 0
fi

# Two test binaries are long and run beside the rest rather than in turn
# with it, so that the suite fits CI's time (everything here holds on a busy
# machine: docs/RELIABILITY.md): the cluster scenarios (six to ten minutes
# each transport, on private nodes of their own, mostly waiting for nodes to
# boot, fail and come back) and the macro's compile-time messages (macro_ui:
# trybuild compiles in a target directory of its own, three to six minutes).
# Each transport's binaries are built first; these two are then started by
# themselves (a `cargo test` of them would wait for the other's lock), each
# from its package's directory as cargo would, their output shown at the end.
mkdir -p "$target"
beside=()
start_beside() { # name, package directory, binary
    local log
    log=$(realpath -m "$target/beside-$1.log")
    (cd "$2" && "$3" > "$log" 2>&1) &
    beside+=("$1:$!:$log")
}
for transport in $transports; do
    echo "==> building the suite on $transport"
    build_log="$target/test-build-$transport.log"
    # shellcheck disable=SC2046
    cargo test --workspace $(cargo_args "$transport") --no-run 2>&1 | tee "$build_log"
    for test in cluster macro_ui; do
        if [ "$test" = macro_ui ] && [ "$transport" != lapin ]; then
            continue
        fi
        bin=$(sed -n "s/.*Executable tests\/$test.rs (\(.*\))\$/\1/p" "$build_log")
        if [ -z "$bin" ]; then
            echo "error: the $test tests' binary was not found" >&2
            exit 1
        fi
        case "$test" in
            cluster) dir=tests ;;
            macro_ui) dir=rpc-runtime ;;
        esac
        start_beside "$test-on-$transport" "$dir" "$(realpath -m "$bin")"
    done
done

status=0
for transport in $transports; do
    skip=(--skip a_quorum_request_queue_survives --skip a_classic_request_queue_is_unavailable --skip macro_ui)
    if [ "$transport" = amqprs ]; then
        echo "==> the suite on amqprs (no doc tests, macro_ui or OpenTelemetry tests)"
    else
        echo "==> the suite on lapin"
    fi
    # shellcheck disable=SC2046
    cargo test --workspace $(cargo_args "$transport") -- "${skip[@]}" || status=$?
    # The `opentelemetry` feature of rpc-runtime, through the tests' `otel`
    # feature: its own build, and only the tests that need it. With the
    # whole workspace selected, as above, so that the dependencies keep the
    # features they were built with (a `-p rpc-tests` build would resolve
    # them for that package alone and compile some 170 crates again).
    if [ "$transport" = lapin ]; then
        cargo test --workspace --features rpc-tests/otel --test tracing_otel || status=$?
    fi
done
for started in "${beside[@]}"; do
    IFS=: read -r name pid log <<< "$started"
    started_status=0
    wait "$pid" || started_status=$?
    echo "==> $name (run beside the rest):"
    cat "$log"
    if [ "$started_status" -ne 0 ]; then
        status=1
    fi
done
exit "$status"

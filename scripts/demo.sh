#!/usr/bin/env bash
# The Fibonacci demo: starts a RabbitMQ broker if none answers (see
# ensure-broker.sh), runs fib_server, calls it with fib_client, stops the
# server. Arguments are passed to fib_client (default: 0 1 10 30 93, then 94).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-broker.sh
# Built as the test suite builds them (every package, the tests too):
# dependencies' features are resolved for what is built, dev-dependencies
# included, so that a narrower build would compile some 170 crates again,
# and what one script built the other reuses.
cargo build -q --workspace --bins --tests
# Where cargo put them: CARGO_TARGET_DIR if set (a relative one is from
# here, the workspace root, as for cargo).
bin="${CARGO_TARGET_DIR:-target}/debug"

log=$(mktemp)
"$bin/fib_server" >"$log" 2>&1 &
server=$!
stop_server() {
    kill -INT "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -f "$log"
}
trap stop_server EXIT

for _ in $(seq 1 100); do
    grep -q "Awaiting RPC requests" "$log" && break
    if ! kill -0 "$server" 2>/dev/null; then
        cat "$log" >&2
        echo "error: fib_server exited" >&2
        exit 1
    fi
    sleep 0.1
done
cat "$log"

if [ $# -gt 0 ]; then
    "$bin/fib_client" "$@"
else
    "$bin/fib_client" 0 1 10 30 93
    echo "==> fib(94) overflows u64: the service answers with its application error, and fib_client exits non-zero"
    if "$bin/fib_client" 94; then
        echo "error: fib(94) should have failed" >&2
        exit 1
    fi
fi

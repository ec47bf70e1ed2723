#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers at $AMQP_URL (default
# amqp://guest:guest@127.0.0.1:5672/%2f). If none does and the URL points at
# this machine, installs Debian's rabbitmq-server package when it is missing,
# starts the broker with `rabbitmq-server -detached`, and waits until it
# accepts connections. Both README commands run this first.
set -euo pipefail

url="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
# Of several, comma-separated (a cluster's nodes): the first.
url="${url%%,amqp*}"
authority="${url#*://}"
authority="${authority%%/*}"
authority="${authority##*@}"
host="${authority%%:*}"
port="${authority##*:}"
[ "$port" = "$authority" ] && port=5672
[ -n "$host" ] || host=127.0.0.1

answers() {
    timeout 1 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

if answers; then
    exit 0
fi

case "$host" in
    127.0.0.1 | localhost | ::1) ;;
    *)
        echo "error: no broker answers at $host:$port, and it is not this machine: start it, or set AMQP_URL" >&2
        exit 1
        ;;
esac

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "error: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

if ! command -v rabbitmq-server >/dev/null && [ ! -x /usr/sbin/rabbitmq-server ]; then
    echo "==> installing rabbitmq-server (Debian package)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server
fi

# The package may have started it already.
if ! answers; then
    echo "==> starting rabbitmq-server"
    as_root env PATH="$PATH:/usr/sbin" rabbitmq-server -detached
fi

printf '==> waiting for the broker at %s:%s' "$host" "$port"
for _ in $(seq 1 120); do
    if answers; then
        echo " up"
        exit 0
    fi
    printf '.'
    sleep 1
done
echo
echo "error: the broker did not start within 120 s; see /var/log/rabbitmq/" >&2
exit 1

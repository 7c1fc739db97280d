# shellcheck shell=bash
# Shared helpers for scripts/setup, scripts/demo and scripts/test. Source it; do not run it.

EBATS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EBATS_SO="$EBATS_ROOT/build/ebats.so"
export EBATS_ROOT EBATS_SO

# Debian 12 packages needed to build the extension, run it and run its tests (systemd for systemd-analyze and
# supervisor for supervisord: tests/php/DeployTest.php checks deploy/ with them; prometheus for promtool and
# a real Prometheus server: tests/php/MetricsTest.php; chromium and chromium-driver for the dashboard's
# browser tests: tests/php/DashboardTest.php drives a headless Chromium through WebDriver; podman and its
# helpers for the container images and the compose file: scripts/containers, tests/php/ContainersTest.php).
EBATS_CONTAINER_PACKAGES=(podman buildah podman-compose runc debootstrap netavark aardvark-dns iptables catatonit python3-venv)
EBATS_PACKAGES=(
    php8.2-dev php8.2-cli libclang-dev build-essential libssl-dev pkg-config openssl
    php8.2-fpm php-amqp php-amqplib phpunit git
    systemd supervisor prometheus chromium chromium-driver fonts-dejavu-core
    "${EBATS_CONTAINER_PACKAGES[@]}"
)

# Each step's line carries the time of day, so a log shows what each step took.
say() { printf '==> %s %s\n' "$(date +%H:%M:%S)" "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "must run as root to execute: $*"
    fi
}

# True when the Debian package is installed (not merely known or half-configured).
pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

_ebats_apt_updated=0

# ensure_packages [PKG...]: install the missing ones (default: EBATS_PACKAGES).
ensure_packages() {
    local pkgs=("$@") missing=() p
    [ ${#pkgs[@]} -gt 0 ] || pkgs=("${EBATS_PACKAGES[@]}")
    for p in "${pkgs[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "packages: all ${#pkgs[@]} present"
        return 0
    fi
    say "packages: installing ${missing[*]}"
    if [ "$_ebats_apt_updated" -eq 0 ]; then
        as_root apt-get update -q
        _ebats_apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

rabbitmq_running() {
    as_root rabbitmqctl -q status >/dev/null 2>&1
}

# ensure_rabbitmq: install RabbitMQ if needed, start it if it is not running, wait until it accepts work.
ensure_rabbitmq() {
    if ! command -v rabbitmq-server >/dev/null 2>&1 && ! pkg_installed rabbitmq-server; then
        ensure_packages rabbitmq-server
    fi
    if rabbitmq_running; then
        say "rabbitmq: running"
        return 0
    fi
    say "rabbitmq: starting"
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl start rabbitmq-server || true
    fi
    if ! rabbitmq_running; then
        # Debian's wrapper switches to the rabbitmq user by itself.
        as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    fi
    local deadline=$((SECONDS + ${EBATS_RABBITMQ_TIMEOUT:-90}))
    until as_root rabbitmqctl -q await_startup >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            die "rabbitmq did not start within ${EBATS_RABBITMQ_TIMEOUT:-90} s (see /var/log/rabbitmq/)"
        fi
        sleep 1
    done
    say "rabbitmq: running"
}

# Put cargo on PATH when rustup installed it for this user but the shell does not know it.
find_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        PATH="$HOME/.cargo/bin:$PATH"
        export PATH
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install a current Rust toolchain with rustup (https://rustup.rs), then run this again"
}

# build_ext: cargo build (release, or debug with EBATS_PROFILE=debug) and copy the library to $EBATS_SO.
build_ext() {
    local profile="${EBATS_PROFILE:-release}" flags=()
    case "$profile" in
        release) flags=(--release) ;;
        debug) flags=() ;;
        *) die "EBATS_PROFILE must be 'release' or 'debug', not '$profile'" ;;
    esac
    find_cargo
    say "build: cargo build${flags[*]:+ ${flags[*]}} ($profile profile)"
    (cd "$EBATS_ROOT" && cargo build "${flags[@]}")
    local lib="${CARGO_TARGET_DIR:-$EBATS_ROOT/target}/$profile/libebats.so"
    [ -f "$lib" ] || die "build produced no $lib"
    mkdir -p "$(dirname "$EBATS_SO")"
    # Copy then rename, so a PHP process that has the old file mapped is not disturbed.
    cp -f "$lib" "$EBATS_SO.tmp.$$"
    mv -f "$EBATS_SO.tmp.$$" "$EBATS_SO"
    if ! php -d extension="$EBATS_SO" -r 'exit(extension_loaded("ebats") ? 0 : 1);'; then
        die "PHP cannot load $EBATS_SO"
    fi
    say "build: $EBATS_SO ($(php -d extension="$EBATS_SO" -r 'echo phpversion("ebats") ?: "no version";'))"
}

# Print the names of queues or exchanges (KIND = queues|exchanges) that start with "PREFIX.".
broker_names() {
    local kind="$1" prefix="$2"
    as_root rabbitmqctl -q "list_$kind" --no-table-headers name 2>/dev/null |
        awk -v p="$prefix." 'index($0, p) == 1' || true
}

# delete_broker_names PREFIX: delete every queue and exchange named "PREFIX.*" on the local broker's
# default vhost (guest account). Uses the php-amqp extension (one connection for all) when available, rabbitmqctl otherwise.
delete_broker_names() {
    local prefix="$1"
    case "$prefix" in
        "" | ebats) die "refusing to delete the names of prefix '$prefix'" ;;
    esac
    local queues exchanges
    queues="$(broker_names queues "$prefix")"
    exchanges="$(broker_names exchanges "$prefix")"
    if [ -z "$queues" ] && [ -z "$exchanges" ]; then
        return 0
    fi
    if php -r 'exit(extension_loaded("amqp") ? 0 : 1);' 2>/dev/null; then
        # shellcheck disable=SC2016
        { printf '%s\n' "$queues" | sed '/^$/d; s/^/q /'; printf '%s\n' "$exchanges" | sed '/^$/d; s/^/x /'; } |
            php -r '
                $c = new AMQPConnection([
                    "host" => "127.0.0.1", "port" => 5672,
                    "login" => "guest", "password" => "guest", "vhost" => "/",
                ]);
                $c->connect();
                while (($line = fgets(STDIN)) !== false) {
                    [$kind, $name] = explode(" ", rtrim($line, "\n"), 2);
                    $ch = new AMQPChannel($c);
                    try {
                        if ($kind === "q") { $q = new AMQPQueue($ch); $q->setName($name); $q->delete(); }
                        else { $x = new AMQPExchange($ch); $x->setName($name); $x->delete(); }
                    } catch (AMQPException $e) {
                        fwrite(STDERR, "could not delete $name: " . $e->getMessage() . "\n");
                    }
                }
            ' && return 0
        warn "php-amqp clean-up failed; falling back to rabbitmqctl"
    fi
    local q
    while IFS= read -r q; do
        [ -n "$q" ] && as_root rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1
    done <<<"$queues"
    return 0
}

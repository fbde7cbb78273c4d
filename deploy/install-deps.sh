#!/bin/sh
# Installs what dbmon's local stack and tests need beyond Rust itself:
#   - Debian's etcd-server (etcd 3.4) for real etcd clusters on loopback and
#     in containers;
#   - docker-compose, for the container deployment (a running Docker
#     engine is expected: the tests build and run images on it);
#   - kubernetes-validate (PyPI), which checks the Kubernetes manifests;
#   - OpenSSL headers (libssl-dev, pkg-config), which the WebAuthn library
#     builds against;
#   - chromium and libnss3-tools (certutil), for the test that signs in with
#     a real browser;
#   - Debian's postgresql, for the tests of servers sharing one database;
#   - Debian's prometheus-alertmanager and aiosmtpd (PyPI), the real
#     receivers of the alerting tests;
#   - Debian's nats-server, for the NATS preset's test (a real cluster);
#   - Debian's prometheus, whose promtool checks the server's /metrics;
#   - Debian's redis-server (with redis-cli), for the Redis kind's tests
#     (masters, replicas and a Redis Cluster on loopback); the PostgreSQL
#     kind's tests use the postgresql package above;
#   - Debian's prometheus-postgres-exporter and prometheus-redis-exporter,
#     which Prometheus scrapes beside dbmon in the benchmark.
# protoc is not needed: the build uses a vendored one.
set -eu

command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs first" >&2; exit 1; }

mode=${1:-}
need=""
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
# OpenSSL headers: the WebAuthn library verifies passkey signatures with it.
pkg-config --exists openssl 2>/dev/null || need="$need libssl-dev pkg-config"
[ "$mode" = --local ] || command -v docker-compose >/dev/null 2>&1 || need="$need docker-compose"
# A real browser for the sign-in test (headless, with a virtual authenticator),
# and certutil to make it trust the test CA.
[ "$mode" = --local ] || command -v chromium >/dev/null 2>&1 || need="$need chromium"
[ "$mode" = --local ] || command -v certutil >/dev/null 2>&1 || need="$need libnss3-tools"
# PostgreSQL for the shared-store tests (they start their own server).
[ "$mode" = --local ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql"
# A real Alertmanager for the alerting tests.
[ "$mode" = --local ] || command -v prometheus-alertmanager >/dev/null 2>&1 || need="$need prometheus-alertmanager"
# promtool checks /metrics (it comes with Debian's prometheus package).
[ "$mode" = --local ] || command -v promtool >/dev/null 2>&1 || need="$need prometheus"
# A real NATS cluster for the NATS preset (Debian puts it in /usr/sbin).
[ "$mode" = --local ] || command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need="$need nats-server"
# Real Redis servers for the Redis kind; the exporters Prometheus scrapes
# beside dbmon in the benchmark.
[ "$mode" = --local ] || command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
[ "$mode" = --local ] || command -v prometheus-postgres-exporter >/dev/null 2>&1 || need="$need prometheus-postgres-exporter"
[ "$mode" = --local ] || command -v prometheus-redis-exporter >/dev/null 2>&1 || need="$need prometheus-redis-exporter"
if [ -n "$need" ]; then
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "missing:$need; install it with your package manager" >&2
        exit 1
    fi
    echo "installing:$need"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
command -v etcd >/dev/null 2>&1 || { echo "etcd still not on PATH after installing etcd-server" >&2; exit 1; }
# `make local` needs nothing more.
[ "$mode" = --local ] && exit 0

if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
    echo "installing: kubernetes-validate (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --user kubernetes-validate==1.37.0
fi

if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    echo "installing: aiosmtpd (PyPI), the SMTP server of the mail test"
    python3 -m pip install --quiet --disable-pip-version-check aiosmtpd==1.4.6 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --user aiosmtpd==1.4.6
fi

# `make bench` compares with Prometheus on the same targets.
if [ "$mode" = "--bench" ] && ! command -v prometheus >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    echo "installing: prometheus"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable (docker info failed): start it, or run as a user allowed to use it" >&2; exit 1; }

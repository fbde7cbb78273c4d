#!/bin/sh
# Installs what dbmon's local stack and tests need beyond Rust itself:
# Debian's etcd-server (etcd 3.4) for real etcd clusters on loopback.
# protoc is not needed: the build uses a vendored one.
set -eu

need=""
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs first" >&2; exit 1; }

if [ -n "$need" ]; then
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "missing:$need; install it with your package manager (needs etcd 3.4 or later)" >&2
        exit 1
    fi
    echo "installing:$need"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
    # Debian starts a system etcd on 2379 where systemd runs; dbmon's clusters
    # use their own ports, so it is left as the system has it.
fi
command -v etcd >/dev/null 2>&1 || { echo "etcd still not on PATH after installing etcd-server" >&2; exit 1; }

#!/bin/sh
# Builds the images dbmon:local and dbmon-etcd:local from binaries on this
# machine: each image gets the binary and the shared libraries `ldd` lists,
# on `scratch`. Usage: deploy/build-images.sh [PATH-TO-DBMON-BINARY]
# (default: a release build). Needs Docker; etcd from Debian's etcd-server.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-${DBMON_BINARY:-}}
if [ -z "$bin" ]; then
    (cd "$here/.." && cargo build --release --locked --bin dbmon)
    target=$(cd "$here/.." && cargo metadata --no-deps --format-version 1 | sed 's/.*"target_directory":"\([^"]*\)".*/\1/')
    bin="$target/release/dbmon"
fi
etcd=$(command -v etcd || true)
[ -n "$etcd" ] || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }

# stage ROOTFS BINARY DEST: the binary at DEST and every library it links.
stage() {
    mkdir -p "$1$(dirname "$3")" "$1/etc"
    cp "$2" "$1$3"
    ldd "$2" | awk '/=>/ && $3 ~ /^\// {print $3} /^[[:space:]]*\/.*ld-linux/ {print $1}' | while read -r lib; do
        mkdir -p "$1$(dirname "$lib")"
        cp -L "$lib" "$1$lib"
    done
    printf 'root:x:0:0::/:/sbin/nologin\ndbmon:x:65532:65532::/nonexistent:/sbin/nologin\n' > "$1/etc/passwd"
    printf 'root:x:0:\ndbmon:x:65532:\n' > "$1/etc/group"
    printf 'hosts: files dns\n' > "$1/etc/nsswitch.conf"
}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/dbmon" "$ctx/etcd"
stage "$ctx/dbmon/rootfs" "$bin" /usr/local/bin/dbmon
stage "$ctx/etcd/rootfs" "$etcd" /usr/bin/etcd
docker build -q -t dbmon:local -f "$here/Dockerfile" "$ctx/dbmon" >/dev/null
docker build -q -t dbmon-etcd:local -f "$here/etcd.Dockerfile" "$ctx/etcd" >/dev/null
echo "built dbmon:local ($(docker image inspect -f '{{.Size}}' dbmon:local) bytes) and dbmon-etcd:local"

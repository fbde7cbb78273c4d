#!/bin/sh
# Brings up dbmon in containers: makes the PKI (once), hands each container
# only the certificates it needs, builds the images, starts the stack, and
# says how to connect dbmon-client.
#   DBMON_RUN_DIR   where certificates and configuration live (deploy/run)
#   DBMON_PORT      host port of the server's people endpoint (7070)
#   DBMON_BINARY    a dbmon binary to put in the image (default: release build)
#   COMPOSE_PROJECT_NAME  (dbmon)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DBMON_RUN_DIR="${DBMON_RUN_DIR:-$here/run}"
export DBMON_PORT="${DBMON_PORT:-7070}"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-dbmon}"
run=$DBMON_RUN_DIR
mkdir -p "$run"

dbmon=${DBMON_BINARY:-}
if [ -z "$dbmon" ]; then
    (cd "$here/.." && cargo build --release --locked --bin dbmon)
    target=$(cd "$here/.." && cargo metadata --no-deps --format-version 1 | sed 's/.*"target_directory":"\([^"]*\)".*/\1/')
    dbmon="$target/release/dbmon"
fi

# The PKI stays on the host; containers get copies of what they need.
if [ ! -f "$run/pki/ca.key" ]; then
    "$dbmon" pki init --dir "$run/pki" --host server --host localhost --host 127.0.0.1 >/dev/null
    "$dbmon" pki issue collector --name c1 --dir "$run/pki" >/dev/null
    "$dbmon" pki issue collector --name c2 --dir "$run/pki" >/dev/null
fi
mkdir -p "$run/server" "$run/c1" "$run/c2" "$run/config" "$run/auth" "$run/data" "$run/c1-spill" "$run/c2-spill" "$run/etcd1" "$run/etcd2" "$run/etcd3"
chmod 700 "$run/auth" "$run/data" "$run/c1-spill" "$run/c2-spill" "$run/etcd1" "$run/etcd2" "$run/etcd3"
cp "$run/pki/ca.crt" "$run/pki/ca.crl" "$run/pki/server.crt" "$run/pki/server.key" "$run/server/"
for c in c1 c2; do
    cp "$run/pki/ca.crt" "$run/pki/collector.$c.crt" "$run/pki/collector.$c.key" "$run/$c/"
done

cat > "$run/config/server.yaml" <<YAML
server:
  listen: 0.0.0.0:7070
  collector_listen: 0.0.0.0:7072
  http_listen: 127.0.0.1:7071
  pki_dir: /pki
  store: /data/reports.redb
  auth:
    dir: /auth
    # What browsers on this machine open: passkeys are bound to it.
    origin: https://localhost:$DBMON_PORT
  assignments:
    c1: [etcd-a]
    c2: [etcd-b]
YAML
for c in c1 c2; do
    if [ "$c" = c1 ]; then cluster=etcd-a; else cluster=etcd-b; fi
    cat > "$run/config/$c.yaml" <<YAML
collector:
  id: $c
  server: https://server:7072
  pki_dir: /pki
  # Unacknowledged reports past the memory buffer, kept across restarts.
  spill_dir: /spill
  spill_max_size: 256MiB
  http_listen: 127.0.0.1:7073
clusters:
  - name: $cluster
    kind: etcd
    interval: 1s
    timeout: 1s
    max_backoff: 2s
    nodes: [http://etcd1:2379, http://etcd2:2379, http://etcd3:2379]
    labels: {env: compose}
YAML
done

# Containers run as 65532; when we are root, hand them their files.
if [ "$(id -u)" -eq 0 ]; then
    chown -R 65532:65532 "$run/server" "$run/c1" "$run/c2" "$run/config" "$run/auth" "$run/data" "$run/c1-spill" "$run/c2-spill" "$run/etcd1" "$run/etcd2" "$run/etcd3"
    export DBMON_UID=65532 DBMON_GID=65532
else
    export DBMON_UID="$(id -u)" DBMON_GID="$(id -g)"
fi

"$here/build-images.sh" "$dbmon"
docker-compose -f "$here/compose.yaml" up -d

i=0
until [ "$(docker inspect -f '{{.State.Health.Status}}' "${COMPOSE_PROJECT_NAME}_server_1" 2>/dev/null)" = healthy ]; do
    i=$((i + 1))
    if [ "$i" -gt 120 ]; then
        docker-compose -f "$here/compose.yaml" logs server >&2
        echo "the server did not become healthy" >&2
        exit 1
    fi
    sleep 0.5
done

user() { docker-compose -f "$here/compose.yaml" exec -T server dbmon user --config /config/server.yaml "$@"; }
if ! user list | grep -q 'passkeys: [1-9]'; then
    # Nobody can sign in yet: invite an admin (again, if an earlier invite went unused).
    if user list | grep -q '^admin '; then invite=$(user invite admin); else invite=$(user add admin --role admin); fi
    printf '%s\n\n' "$invite"
    echo "Register a passkey there (the page is served with a certificate from $run/pki/ca.crt)."
    echo "On a remote machine (over SSH, no browser there), forward the port and open the URL in your own"
    echo "browser; passkeys need the localhost origin, which the forward keeps:"
    echo "  ssh -L $DBMON_PORT:localhost:$DBMON_PORT YOU@THIS-MACHINE"
    echo "Then sign in:"
    echo "  dbmon-client --server https://localhost:$DBMON_PORT --ca $run/pki/ca.crt login"
    echo
fi

cat <<TXT
dbmon is up (project $COMPOSE_PROJECT_NAME). Watch it from this machine:
  dbmon-client --server https://localhost:$DBMON_PORT --ca $run/pki/ca.crt watch
  dbmon-client --server https://localhost:$DBMON_PORT --ca $run/pki/ca.crt status
More people: docker-compose -f $here/compose.yaml exec server dbmon user --config /config/server.yaml add NAME --role viewer
Stop it with: deploy/down.sh
TXT

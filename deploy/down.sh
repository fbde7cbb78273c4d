#!/bin/sh
# Stops and removes the compose deployment: containers, networks, tmpfs data.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DBMON_RUN_DIR="${DBMON_RUN_DIR:-$here/run}"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-dbmon}"
docker-compose -f "$here/compose.yaml" down --volumes --remove-orphans --timeout 5

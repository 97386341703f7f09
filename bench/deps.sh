#!/usr/bin/env bash
# What the benchmarks need beyond `make deps` (never part of `make test` or .ci/run): jq and curl
# for the scripts, and Go with Debian's Centrifuge library for the Centrifuge peer
# (bench/peers/centrifuge/). Debian's centrifuge package misses four of its dependencies, named
# here too; lib/pq is the peer's Postgres driver. Idempotent: installs only what is missing.
# Node 20 (the Node peers) comes with the machine; `npm ci` in bench/peers is done by the scripts.
#
#   bench/deps.sh
set -euo pipefail

PACKAGES=(jq curl golang-go golang-github-centrifugal-centrifuge-dev golang-github-centrifugal-protocol-dev
    golang-github-fzambia-eagle-dev golang-github-igm-sockjs-go-dev golang-github-mna-redisc-dev
    golang-github-lib-pq-dev)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "bench/deps.sh: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v node >/dev/null || echo "bench/deps.sh: WARNING: node (20) is missing; the Node peers need it" >&2

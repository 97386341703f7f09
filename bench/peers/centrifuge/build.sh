#!/usr/bin/env bash
# Builds the Centrifuge peer (main.go here) into OUT, offline, in GOPATH mode from Debian's Go
# packages (bench/deps.sh installs them). The binary is never committed.
#
#   bench/peers/centrifuge/build.sh OUT
#
# Go's build cache ($GOCACHE, default ~/.cache/go-build) makes a rebuild take seconds; the first
# build takes about a minute on 2 cores.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-}
[ -n "$out" ] || { echo "usage: $0 OUT" >&2; exit 2; }
command -v go >/dev/null || { echo "go is missing: run bench/deps.sh (Debian's golang-go)" >&2; exit 1; }
for pkg in centrifugal/centrifuge centrifugal/protocol lib/pq; do
    [ -d "/usr/share/gocode/src/github.com/$pkg" ] ||
        { echo "github.com/$pkg is missing from /usr/share/gocode: run bench/deps.sh" >&2; exit 1; }
done
cd "$HERE"
GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= go build -o "$out" .

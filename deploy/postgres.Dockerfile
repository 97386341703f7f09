# syntax=docker/dockerfile:1
# Postgres 15 with the realtime extension installed and created in database `postgres`.
# Build context is the repository root:
#   docker build -f deploy/postgres.Dockerfile -t realtime-postgres .
# The relay needs `wal_level=logical` (see deploy/compose.yaml for the server flags).

FROM rust:1-bookworm AS extension
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-server-dev-15 libclang-dev clang \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-pgrx --version 0.18.0 --locked \
    && cargo pgrx init --pg15 /usr/lib/postgresql/15/bin/pg_config
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY extension/ extension/
COPY sql/ sql/
COPY crates/realtime-core/ crates/realtime-core/
COPY relay/ relay/
COPY tests/ tests/
COPY bench/loadgen/ bench/loadgen/
COPY scripts/ scripts/
# pgrx packages the current version's script; install-sql.sh adds sql/'s frozen 0.1.0 install
# script and the upgrade scripts, so ALTER EXTENSION realtime UPDATE works on an older database.
RUN cd extension \
    && cargo pgrx package --pg-config /usr/lib/postgresql/15/bin/pg_config --out-dir /out \
    && PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config ../scripts/install-sql.sh /out/usr/share/postgresql/15/extension

FROM postgres:15-bookworm
# The package tree mirrors pg_config's paths (/usr/lib/postgresql/15/lib, /usr/share/postgresql/15/extension).
COPY --from=extension /out/usr/ /usr/
# Run once, on an empty data directory: the default roles and CREATE EXTENSION realtime.
COPY deploy/initdb/ /docker-entrypoint-initdb.d/

# syntax=docker/dockerfile:1
# realtime-relay container image. Build at the repository root:
#   docker build -t realtime-relay .
# Run (settings as environment variables, see `realtime-relay --help`):
#   docker run -e DATABASE_URL=... -e REALTIME_JWT_SECRET=... -p 4000:4000 realtime-relay
#   docker run -e DATABASE_URL=... -e REALTIME_JWT_SECRET=... realtime-relay check

FROM rust:1-bookworm AS builder
WORKDIR /src
# Every workspace member's sources must be present for cargo to load the workspace; only the
# relay is compiled.
COPY Cargo.toml Cargo.lock ./
COPY crates/realtime-core/ crates/realtime-core/
COPY relay/ relay/
COPY extension/ extension/
COPY tests/ tests/
COPY bench/loadgen/ bench/loadgen/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p realtime-relay \
    && install -m 0755 target/release/realtime-relay /usr/local/bin/realtime-relay

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin realtime
COPY --from=builder /usr/local/bin/realtime-relay /usr/local/bin/realtime-relay
USER realtime:realtime
ENV REALTIME_BIND=0.0.0.0:4000
EXPOSE 4000
# The image has no curl: the relay asks its own /healthz (REALTIME_BIND, wildcard → loopback).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["realtime-relay", "healthcheck"]
ENTRYPOINT ["realtime-relay"]

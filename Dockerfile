# syntax=docker/dockerfile:1
#
# One image for every kurz role; `docker run kurz <role>` (or compose's `command:`)
# picks it: `serve` (all roles, embedded storage), `command-api`, `projector`,
# `query-edge`.

# ---- build ---------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# rdkafka builds librdkafka from source (cmake) against OpenSSL, SASL and zlib.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake libssl-dev pkg-config libsasl2-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Cache mounts keep the registry and incremental target dir between builds; the binary
# is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kurz \
 && install -D -m 0755 target/release/kurz /out/kurz

# ---- runtime -------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates for TLS to backends, curl for health checks, and the shared libraries
# the binary links dynamically (OpenSSL, SASL, zlib).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl libssl3 libsasl2-2 zlib1g \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 kurz \
 && useradd --system --uid 10001 --gid kurz --home-dir /var/lib/kurz --shell /usr/sbin/nologin kurz \
 && install -d -o kurz -g kurz -m 0750 /var/lib/kurz /var/lib/kurz/import

COPY --from=builder /out/kurz /usr/local/bin/kurz

USER 10001:10001
WORKDIR /var/lib/kurz

ENV KURZ_HTTP_ADDR=0.0.0.0:8080 \
    KURZ_DATA_DIR=/var/lib/kurz
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://localhost:8080/health/ready >/dev/null || exit 1

ENTRYPOINT ["kurz"]
CMD ["serve"]

# syntax=docker/dockerfile:1
# qcloud server image: `docker compose up` (see docker-compose.yml) or
#   docker build -t qcloud:local . && docker run -e DATABASE_URL=postgres://... -p 8080:8080 qcloud:local

# --- build ----------------------------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target dir between builds; the binary is copied out of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p qcloud \
    && install -D -m 0755 target/release/qcloud /out/qcloud

# --- runtime --------------------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates for TLS to Postgres / webhooks; curl for the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/qcloud qcloud
COPY --from=builder /out/qcloud /usr/local/bin/qcloud
# The binary embeds its migrations; they are shipped too so `qcloud migrate` is transparent about what it runs.
COPY migrations /usr/share/qcloud/migrations
USER qcloud
WORKDIR /var/lib/qcloud
ENV QCLOUD_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 \
    CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["qcloud"]
CMD ["serve"]

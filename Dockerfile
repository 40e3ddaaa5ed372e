# kvault server image. Multi-stage: build with the Rust toolchain, run on a slim Debian as a
# non-root user. The defaults are compiled into the binary; mount your own settings and point
# KVAULT_CONFIG at them, e.g.
#   docker run -v ./kvault.yaml:/etc/kvault/config.yaml:ro -e KVAULT_CONFIG=/etc/kvault/config.yaml \
#     -e KVAULT__AUTH__JWT_SECRET=... -v kvault-data:/var/lib/kvault -p 8080:8080 kvault
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kvault

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/kvault --create-home kvault
COPY --from=build /src/target/release/kvault /usr/local/bin/kvault
USER kvault
WORKDIR /var/lib/kvault
ENV KVAULT__SERVER__HOST=0.0.0.0 \
    KVAULT__BACKUP__BASE_PATH=/var/lib/kvault/backups \
    KVAULT__DATABASE__URL=sqlite:///var/lib/kvault/kvault.db?mode=rwc
EXPOSE 8080
VOLUME ["/var/lib/kvault"]
ENTRYPOINT ["kvault"]
CMD ["serve"]

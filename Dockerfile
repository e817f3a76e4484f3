# updraft: one binary, several roles (scheduler, worker, webserver, standalone).
# Multi-stage: build with the full Rust toolchain, run on a slim Debian with only the binary,
# the DAGs and CA certificates (reqwest uses rustls; librdkafka is linked statically).

FROM rust:1-bookworm AS build
# librdkafka (rdkafka-sys) builds from source with make and a C/C++ compiler; zlib for `libz`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin updraft \
 && strip target/release/updraft

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/updraft --create-home updraft
COPY --from=build /src/target/release/updraft /usr/local/bin/updraft
COPY dags /opt/updraft/dags
ENV UPDRAFT_DAGS_FOLDER=/opt/updraft/dags \
    UPDRAFT_HOME=/var/lib/updraft \
    UPDRAFT_LOG=info
USER updraft
ENTRYPOINT ["updraft"]
CMD ["standalone"]

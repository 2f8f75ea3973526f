# Parley: one image holding the three services (parley-edge, parley-inference,
# parley-persistence). Each Kubernetes Deployment picks its binary with
# `command:`; see docs/operations.md ("Container image") for why one image.
#
# The runtime stage's package list is checked by tests/deploy: every shared
# library the built binaries need must come from one of those packages or
# their dependencies. Keep it minimal and keep that test passing.

# ---- build ------------------------------------------------------------------
FROM debian:12 AS build
WORKDIR /src
# The same package list developers and CI use, from the same script.
COPY scripts/install-deps scripts/install-deps
RUN scripts/install-deps && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPARLEY_BUILD_TESTS=OFF -DCMAKE_CXX_COMPILER_LAUNCHER= \
 && cmake --build /build --target parley-edge parley-inference parley-persistence \
 && mkdir -p /out \
 && for b in parley-edge parley-inference parley-persistence; do \
      objcopy --strip-debug "/build/bin/$b" "/out/$b"; \
    done

# ---- runtime ----------------------------------------------------------------
FROM debian:12-slim AS runtime
# Shared libraries only; no compilers, headers or shells beyond the base image.
# ca-certificates: the openai engine verifies HTTPS upstreams.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates \
      libabsl20220623 \
      libboost-json1.81.0 \
      libc-ares2 \
      libgrpc++1.51 \
      libgrpc29 \
      libpq5 \
      libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 \
      libprotobuf32 \
      libre2-9 \
      libsqlite3-0 \
      libssl3 \
      libstdc++6 \
      zlib1g \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric id so Kubernetes can enforce runAsNonRoot without a name lookup.
RUN groupadd --system --gid 10001 parley \
 && useradd --system --uid 10001 --gid parley --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin parley \
 && mkdir -p /var/lib/parley && chown parley:parley /var/lib/parley
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/parley
# edge: WebSocket, HTTP, /metrics; inference and persistence: gRPC 50051, /metrics 9090.
EXPOSE 8080 50051 9090
ENTRYPOINT ["/usr/local/bin/parley-edge"]

# syntax=docker/dockerfile:1
#
# ecr-creds-refresher: a static (musl) binary on an empty base image.
#
#   docker build -t ecr-creds-refresher:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REPO:TAG --push .
#
# The builder runs on the target platform (emulated under buildx when it differs), so
# the native musl toolchain of that platform is used and no cross linker is needed.
# The binary needs no CA bundle from the image: AWS endpoints are verified against
# compiled-in webpki roots and the Kubernetes API against the mounted service-account
# ca.crt.

# Pinned: the toolchain (and the Debian release under it) change only by editing this
# line. tests/chart/test.sh refuses an unpinned or :latest base image. `scratch` is
# Docker's reserved empty image: it has no version and nothing to pin.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
# The musl target of this platform, installed before the sources so the layer is cached.
RUN set -eux; \
    case "$(uname -m)" in \
      x86_64) target=x86_64-unknown-linux-musl ;; \
      aarch64) target=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;; \
    esac; \
    echo "$target" > /rust-target; \
    rustup target add "$target"
WORKDIR /src
COPY . .
# The commit `--version` prints (the release workflow passes github.sha); without it the
# build reads it from .git when the context has one, else prints `unknown`.
ARG GIT_COMMIT=""
ENV ECR_CREDS_REFRESHER_COMMIT=${GIT_COMMIT}
# ring compiles C and assembly: point the musl target at musl-gcc. The link itself uses
# the toolchain's rust-lld (.cargo/config.toml: packed relocations keep the x86_64
# static-pie under 4.5 MiB). The final check refuses a dynamically linked binary, which
# scratch could not start (no loader).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    target="$(cat /rust-target)"; \
    cc_var="CC_$(echo "$target" | tr - _)"; \
    env "$cc_var=musl-gcc" cargo build --release --locked --target "$target" --bin ecr-creds-refresher; \
    mkdir -p /out; \
    cp "target/$target/release/ecr-creds-refresher" /out/; \
    if readelf -l /out/ecr-creds-refresher | grep -q 'Requesting program interpreter'; then \
      echo "binary is not static" >&2; exit 1; \
    fi

FROM scratch
LABEL org.opencontainers.image.title="ecr-creds-refresher" \
      org.opencontainers.image.description="Keeps Amazon ECR pull secrets fresh in Kubernetes namespaces and attaches them to ServiceAccounts" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/ecr-creds-refresher /ecr-creds-refresher
# Non-root, matching runAsUser/runAsGroup in deploy/deployment.yaml (distroless "nonroot").
USER 65532:65532
# 8080: /metrics, 8081: /healthz and /readyz.
EXPOSE 8080 8081
ENTRYPOINT ["/ecr-creds-refresher"]

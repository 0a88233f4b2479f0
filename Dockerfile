# trailstack: the official Fluent Bit image with out_trailstack.so, its configuration and a
# CA bundle for Papertrail. One architecture: docker build -t trailstack .
# Both (linux/amd64 and linux/arm64), tagged with the version: make image IMAGE=registry/trailstack:$(cat VERSION)
#
# The builder runs on the build machine's platform and cross-compiles the cgo .so for the
# target with Debian's cross gcc. It is Debian 12 (bookworm): glibc 2.36, no newer than the
# Fluent Bit image's, so the .so loads there.
ARG GO_VERSION=1.26.8
ARG FLUENT_BIT_VERSION=5.1.1

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETARCH
# make image passes the version with git's commit (the build context has no .git); without
# it, the VERSION file's.
ARG VERSION=
RUN if [ "$TARGETARCH" = arm64 ] && [ "$(go env GOARCH)" != arm64 ]; then \
      apt-get update && apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross; \
    fi
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN if [ "$TARGETARCH" = arm64 ] && [ "$(go env GOARCH)" != arm64 ]; then export CC=aarch64-linux-gnu-gcc; fi; \
    VERSION=${VERSION:-$(cat VERSION)}; \
    CGO_ENABLED=1 GOARCH=$TARGETARCH go build -buildmode=c-shared -trimpath -ldflags="-s -w -X github.com/trailstack/trailstack/metrics.Version=${VERSION}" -o /out/out_trailstack.so ./plugin && \
    CGO_ENABLED=0 GOARCH=$TARGETARCH go build -trimpath -ldflags='-s -w' -o /out/trailstack-launch ./launch

FROM fluent/fluent-bit:${FLUENT_BIT_VERSION}
COPY --from=build /out/out_trailstack.so /fluent-bit/plugins/out_trailstack.so
COPY --from=build /out/trailstack-launch /fluent-bit/bin/trailstack-launch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /fluent-bit/certs/ca-certificates.crt
COPY conf/fluent-bit.yaml /fluent-bit/etc/
# trailstack-launch hands tail the rest of logs rotated while no agent ran, then becomes
# Fluent Bit (exec): on every start of the container, a restart included. It is the
# ENTRYPOINT because the base image's is fluent-bit: a CMD alone would be handed to fluent-bit
# as its arguments (it reads "-db" as -d, daemon mode, and the container exits at once). The
# CMD is Fluent Bit's arguments only, as in the base image, so `docker run IMAGE -c other.yaml`
# or a pod's args change the configuration and keep the launcher.
ENTRYPOINT ["/fluent-bit/bin/trailstack-launch", "-db", "/var/lib/trailstack/tail.db", "-resume", "/var/lib/trailstack/resume", "--", "/fluent-bit/bin/fluent-bit"]
CMD ["-c", "/fluent-bit/etc/fluent-bit.yaml"]

# trailstack: the official Fluent Bit image with out_trailstack.so, its configuration and a
# CA bundle for Papertrail. Build: docker build -t trailstack .
#
# The builder is Debian 12 (bookworm): glibc 2.36, no newer than the Fluent Bit image's, so
# the cgo-built .so loads there.
ARG GO_VERSION=1.26.8
ARG FLUENT_BIT_VERSION=5.1.1

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -buildmode=c-shared -trimpath -o /out/out_trailstack.so ./plugin

FROM fluent/fluent-bit:${FLUENT_BIT_VERSION}
COPY --from=build /out/out_trailstack.so /fluent-bit/plugins/out_trailstack.so
COPY --from=build /etc/ssl/certs/ca-certificates.crt /fluent-bit/certs/ca-certificates.crt
COPY conf/fluent-bit.conf conf/plugins.conf /fluent-bit/etc/
CMD ["/fluent-bit/bin/fluent-bit", "-c", "/fluent-bit/etc/fluent-bit.conf"]

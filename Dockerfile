# syntax=docker/dockerfile:1
#
# The wanwu hub as a container: a static binary on distroless, run as the
# image's non-root user (65532), its data directory a volume at /data.
#
#   docker build -t wanwu \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse HEAD)" .
#   docker run -d --name wanwu --stop-timeout 45 -v wanwu-data:/data \
#     -p 8080:8080 -p 8443:8443 -p 1883:1883 -p 8883:8883 -p 5684:5684/udp \
#     wanwu --tls-hosts hub.example.com,localhost
#   docker exec wanwu wanwu ctl tenant list --data-dir /data
#
# Arguments after the image name are appended to the hub's flags below and
# override them (the last value of a flag wins), e.g. --tls-hosts, or
# --config /data/hub.yaml. A bind mount instead of a volume must be
# writable by uid 65532. See the README's "Running on a server".

FROM golang:1.26 AS build
WORKDIR /src
# The module's dependencies first, so that a source change does not fetch
# them again; third_party/ is needed here because go.mod replaces two
# modules with it.
COPY go.mod go.sum ./
COPY third_party/ third_party/
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=""
ARG COMMIT=""
# -buildvcs=false: .git is not in the build context (.dockerignore); the
# version and the commit come from the build arguments instead.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -buildvcs=false \
	-ldflags="-s -w -X github.com/wanwu-iot/wanwu/internal/cli.Version=${VERSION} -X github.com/wanwu-iot/wanwu/internal/cli.Commit=${COMMIT}" \
	-o /out/wanwu ./cmd/wanwu \
	&& mkdir -p /out/data

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot
# (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wanwu /usr/local/bin/wanwu
# A new named volume starts as a copy of this directory, owned by nonroot.
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME /data
USER 65532:65532
# HTTP API, HTTPS API, MQTT, MQTT over TLS, CoAP over DTLS.
EXPOSE 8080/tcp 8443/tcp 1883/tcp 8883/tcp 5684/udp
# The hub drains and closes its stores on SIGTERM within 30 s: give
# 'docker stop' more than its default 10 s (--stop-timeout 45).
STOPSIGNAL SIGTERM
# The hub's defaults listen on 127.0.0.1 only, which inside a container
# nothing outside can reach: listen on every address of the container.
ENTRYPOINT ["/usr/local/bin/wanwu", "hub", "--data-dir", "/data", \
	"--http.listen", "0.0.0.0:8080", "--http.tls-listen", "0.0.0.0:8443", \
	"--mqtt.listen", "0.0.0.0:1883", "--mqtt.tls-listen", "0.0.0.0:8883", \
	"--coap.dtls-listen", "0.0.0.0:5684"]
CMD []

# syntax=docker/dockerfile:1
# The spillway image: the static binary on distroless, as a non-root user.
#
#   docker build -t spillway .
#   docker build --build-arg TAGS=kubernetes -t spillway:k8s .   # lb --discovery kubernetes://… (deploy/kubernetes)
#   docker build --build-arg TAGS=noplot -t spillway:slim .      # no drill charts (docs/DEPLOY.md)
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 -t spillway .
#
# Every subcommand runs from it: the arguments choose (docker run spillway
# lb --listen :8080 ...). internal/repo's TestDockerfile parses this file
# with BuildKit's own parser and checks the rules below.

# The builder runs on the build machine's platform and cross-compiles:
# the binary is pure Go (CGO_ENABLED=0), so no emulation is needed.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETOS TARGETARCH TARGETVARIANT
# TAGS: Go build tags (kubernetes, noplot), comma-separated.
ARG TAGS=""
# VERSION: what `spillway version` prints. .git is not sent to the
# builder (.dockerignore), so without it the version is "devel":
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" .
ARG VERSION=""
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=${TARGETVARIANT#v} \
    go build -trimpath -tags "$TAGS" \
    -ldflags "-s -w -X github.com/spillway-dev/spillway/internal/buildinfo.version=$VERSION" \
    -o /out/spillway ./cmd/spillway

# distroless/static: CA certificates, tzdata and /etc/passwd (nonroot is
# 65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/spillway /spillway
# Numeric, so that Kubernetes' runAsNonRoot can verify it without
# /etc/passwd (deploy/kubernetes runs as 65532 too).
USER 65532:65532
# lb: proxy 8080, admin 8081. login: service 8001, health 9001. The
# defaults listen on 127.0.0.1: give --listen :PORT in a container.
EXPOSE 8080 8081 8001 9001
# No HEALTHCHECK: distroless has no shell (so no CMD-SHELL, no curl), and
# one image runs several roles with different health addresses (lb's
# admin 8081, login's health port 9001): no single command fits every
# container. Kubernetes ignores HEALTHCHECK and uses its probes
# (deploy/kubernetes). With Compose, a login container can use the exec
# form, which needs no shell:
#   healthcheck: {test: ["CMD", "/spillway", "probe", "127.0.0.1:9001"], interval: 30s}
# (`spillway probe` checks the instance contract: /livez, /readyz and the
# /health report; docs/CONTRACT.md.)
ENTRYPOINT ["/spillway"]
CMD ["help"]

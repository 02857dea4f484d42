# The image for `kubectl debug --image=...`: the static tcpvet binary alone.
# goreleaser builds it (dockers_v2 in .goreleaser.yaml) from its own build
# output, one directory per platform.
FROM scratch
ARG TARGETPLATFORM
COPY $TARGETPLATFORM/tcpvet /usr/local/bin/tcpvet
ENV TERM=xterm-256color
ENTRYPOINT ["/usr/local/bin/tcpvet"]

# The image for `kubectl debug --image=...`: the static tcpvet binary alone.
# goreleaser builds it (see .goreleaser.yaml); the binary comes from its build.
FROM scratch
COPY tcpvet /usr/local/bin/tcpvet
ENV TERM=xterm-256color
ENTRYPOINT ["/usr/local/bin/tcpvet"]

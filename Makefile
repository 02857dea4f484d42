# tcpvet. Kernel tests need root: they build network namespaces. `make run`
# and `make check` work as root and, through sudo, as a user.
GO        ?= go
# Go's own tarball installs in /usr/local/go, which a root shell's PATH often
# lacks; appended, so a go found first still wins.
export PATH := $(PATH):/usr/local/go/bin
# Empty for root, which has no use for sudo (and often no sudo at all).
SUDO      := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Extra go test flags for `make unit`, `test` or `check`, in shell syntax:
# TESTFLAGS="-run 'TestUnprivileged|TestTUIInTmux' -v".
TESTFLAGS ?=
# Flags for tcpvet in `make run`, e.g. ARGS="--pid 4242".
ARGS      ?=
# Fuzz budgets are execution counts: a duration (-fuzztime 5s) can fail at
# its deadline with "context deadline exceeded" on Go 1.26 (go.dev/issue/75804).
FUZZTIME  ?= 150000x
# The model fuzz target renders a screen per key: a thousand times slower.
MODEL_FUZZTIME ?= 3000x
BIN       ?= tcpvet
# Tools run from the Go module proxy at pinned versions: nothing to install.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
# v2.14.3: the newest release that builds with Go 1.26 from the module proxy.
GORELEASER  ?= $(GO) run github.com/goreleaser/goreleaser/v2@v2.14.3
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# Every fuzz target, as package:Target.
FUZZ_TARGETS = \
	./diag:FuzzDecodeDiagMsg \
	./diag:FuzzDecodeTCPInfo \
	./diag:FuzzSocketInode \
	./diag:FuzzParseCgroups \
	./diag:FuzzDecodeIPVSConfig \
	./diag:FuzzDecodeIPVSService \
	./diag:FuzzParseIPVSConns \
	./diag:FuzzDecodeIPVSDest \
	./node:FuzzPodFromCgroup
MODEL_FUZZ_TARGETS = ./ui:FuzzModelKeys

.PHONY: all build run deps check test unit fuzz fuzz-short lint release-check snapshot bench bench-ss bench-liveview bench-deaths bench-allnetns soak screenshots clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) .

# The live view of the namespace you are in, as root: reading each socket's
# own options takes CAP_SYS_PTRACE.
run: build
	$(SUDO) ./$(BIN) $(ARGS)

# What the suite needs: the Debian packages listed in scripts/deb-packages
# (apt-get runs only when one is missing) and the Go modules.
deps:
	@scripts/deps.sh
	$(GO) mod download

# The README's test command: deps, then the whole suite. This is what CI runs.
# A recipe rather than prerequisites, so that make -j cannot test before
# installing.
check: deps
	$(MAKE) test

# The whole suite: lint, every test with the race detector, a short run of
# every fuzz target, and the release configuration.
test: lint unit fuzz-short release-check

# Every test with the race detector. The test binaries run as root (through
# sudo for a user) in a temporary directory removed afterwards: see the script.
# -parallel 4: the kernel tests mostly wait for a timeout to pass (the
# scenario matrix's scenarios, the watches), so they overlap past the
# 2 CPUs the default would allow.
unit:
	GO="$(GO)" scripts/gotest-root.sh -race -count=1 -parallel 4 -timeout 30m $(TESTFLAGS) ./...

# fuzz-run runs each package:Target of $(1) for $(2).
define fuzz-run
for t in $(1); do \
	pkg=$${t%%:*}; name=$${t##*:}; \
	echo "fuzz $$name ($(2))"; \
	$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(2) $$pkg || exit 1; \
done
endef

fuzz-short:
	@$(call fuzz-run,$(FUZZ_TARGETS),$(FUZZTIME))
	@$(call fuzz-run,$(MODEL_FUZZ_TARGETS),$(MODEL_FUZZTIME))

# Long fuzzing, about ten minutes a target.
fuzz:
	$(MAKE) fuzz-short FUZZTIME=20000000x MODEL_FUZZTIME=300000x

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# goreleaser's own check, and a snapshot build of the static binaries.
release-check:
	$(GORELEASER) check
	$(GORELEASER) build --snapshot --clean

snapshot:
	$(GORELEASER) build --snapshot --clean

bench:
	$(GO) test -run '^$$' -bench . -benchtime 5x ./...

# tcpvet --json against ss -tan, ss -tanp and ss -tanoiep on 40,000 sockets.
bench-ss:
	scripts/bench-vs-ss.sh 40000 5

# The live view of 40,000 sockets for 20 s: its resident memory and CPU.
bench-liveview:
	scripts/bench-liveview.sh 40000 20

# Connections closed at 1,000 a second for 10 s in a namespace: every
# death the kernel announces is received or counted lost (the short run,
# 2 s, is in the suite).
bench-deaths:
	TCPVET_DEATHS=10s $(GO) test -count=1 -run '^TestDestroyLoad$$' -v ./diag

# tcpvet --all-netns --json against nsenter + ss -tanoie over 100
# namespaces of 200 sockets, then 250 x 200 with time and peak RSS.
bench-allnetns:
	scripts/bench-allnetns.sh 100 200
	scripts/bench-allnetns.sh 250 200 1

clean:
	rm -rf $(BIN) dist

# The live view for an hour against a churning namespace, watching RSS.
soak:
	TCPVET_SOAK=1h $(GO) test -count=1 -timeout 70m -run '^TestSoakLiveView$$' -v .

# PNGs of the main table, details, findings and help from a real scenario.
screenshots:
	scripts/screenshots.sh

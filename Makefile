# tcpvet. Kernel tests need root: they build network namespaces.
GO        ?= go
# Fuzz budgets are execution counts: a duration (-fuzztime 5s) can fail at
# its deadline with "context deadline exceeded" on Go 1.26 (go.dev/issue/75804).
FUZZTIME  ?= 150000x
BIN       ?= tcpvet
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# Every fuzz target, as package:Target.
FUZZ_TARGETS = \
	./diag:FuzzDecodeDiagMsg \
	./diag:FuzzDecodeTCPInfo \
	./diag:FuzzSocketInode \
	./diag:FuzzParseCgroups

.PHONY: all build test unit fuzz fuzz-short lint bench bench-ss screenshots clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) .

# The whole suite: vet, every test with the race detector, and a short run
# of every fuzz target. This is what CI runs.
test: lint unit fuzz-short

unit:
	$(GO) test -race -count=1 ./...

fuzz-short:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

# Long fuzzing, about ten minutes a target.
fuzz:
	$(MAKE) fuzz-short FUZZTIME=20000000x

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 5x ./...

# tcpvet --json against ss -tanoiep on 40,000 sockets.
bench-ss:
	scripts/bench-vs-ss.sh 40000 5

clean:
	rm -f $(BIN)

# PNGs of the main table, details, findings and help from a real scenario.
screenshots:
	scripts/screenshots.sh

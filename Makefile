# tandem: make gameday rehearses a deploy and a region failover on the
# embedded local platform; make test runs the test suite. Both install what
# they need first (make deps).

GO        ?= go
BIN       := bin
# Packages that build without the Pulumi SDK (infra/ is a tree of its own).
CORE_PKGS := ./stacks/... ./internal/... ./operator/... ./services/...
BINARIES  := $(BIN)/tandem $(BIN)/eligibility $(BIN)/claims $(BIN)/notifications
TEST_FLAGS ?= -count=1 -timeout 20m

.PHONY: all deps build gameday test test-core test-infra vet fmt-check soak clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(GO) build -o $(BIN)/ ./operator/cmd/tandem ./services/eligibility ./services/claims ./services/notifications

gameday: build
	$(BIN)/tandem gameday --state-dir .tandem-gameday

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The engines and the proxy also run under the race detector, and so do the
# platform's fault and in-region failover tests (its watcher runs beside the
# control API).
RACE_PKGS := ./operator/deploy/... ./operator/failover/... ./operator/local/proxy/...

test: build fmt-check vet
	$(GO) test $(TEST_FLAGS) ./...
	$(GO) test -race $(TEST_FLAGS) $(RACE_PKGS)
	$(GO) test -race $(TEST_FLAGS) -run 'TestInRegionFailover|TestZoneFailures|TestFaults' ./operator/local/

test-core: build
	$(GO) test $(TEST_FLAGS) $(CORE_PKGS)

test-infra: deps
	$(GO) test $(TEST_FLAGS) ./infra/...

# Longer runs: a gameday at a higher rate with longer steady phases.
soak: build
	$(BIN)/tandem gameday --state-dir .tandem-soak --rate 600 --steady 60s

clean:
	rm -rf $(BIN) .tandem .tandem-gameday .tandem-soak

# Straddle's build, test and tooling entry points. Tools are built from the Go module proxy into bin/ once.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

STATICCHECK_VERSION := v0.8.2

# Packages whose tests run under the race detector (everything; the engine runs goroutines throughout).
UNIT_PKGS := ./...

.PHONY: all build test test-unit test-integration lint fmt vet staticcheck bench demo fuzz clean

all: build

build: $(BIN)/straddle

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

$(BIN)/straddle: FORCE
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o $@ ./cmd/straddle

FORCE:

## test runs every test tier that exists so far.
test: test-unit test-integration

test-unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

# Integration tiers (real MinIO, real kube-apiserver + etcd) append their prerequisites and commands here.
INTEGRATION_DEPS :=
INTEGRATION_CMDS :=
-include hack/*.mk

test-integration: $(INTEGRATION_DEPS)
	$(INTEGRATION_CMDS)

lint: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^hack/tools/')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck: $(BIN)/staticcheck
	$(BIN)/staticcheck ./...

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## fuzz runs every fuzz target for FUZZTIME each (their seeds, and crashers found before, run in test-unit).
FUZZTIME ?= 20s
fuzz:
	FUZZTIME=$(FUZZTIME) ./hack/fuzz.sh

## bench compares Straddle with restic on generated data; BENCH_SCALE=0.1 for a quick run.
BENCH_SCALE ?= 1
BENCH_SETS ?= small,mix
bench: build
	@command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic; }
	$(GO) run ./bench/cmd/straddle-bench -straddle $(BIN)/straddle -scale $(BENCH_SCALE) -sets $(BENCH_SETS) -out bench/out/results-$(BENCH_SCALE).md

## demo backs up a generated folder twice, restores both snapshots and verifies them byte for byte.
demo: build
	STRADDLE=$(BIN)/straddle ./hack/demo.sh

clean:
	rm -rf $(BIN)

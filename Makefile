# Straddle's build, test and tooling entry points. Tools are built from the Go module proxy into bin/ once.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

STATICCHECK_VERSION := v0.8.2

# Packages whose tests run under the race detector (everything; the engine runs goroutines throughout).
UNIT_PKGS := ./...

.PHONY: all build images tools test test-unit test-integration test-e2e lint fmt vet staticcheck bench bench-controller demo demo-repo fuzz clean generate verify-generated

all: build

build: $(BIN)/straddle $(BIN)/straddle-restore-helper

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

$(BIN)/straddle: FORCE
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o $@ ./cmd/straddle

# The restore helper is its own static image: standard library only, no cgo.
$(BIN)/straddle-restore-helper: FORCE
	CGO_ENABLED=0 $(GO) build -o $@ ./cmd/straddle-restore-helper

FORCE:

## images writes the OCI image archives (one multi-arch index per image, linux/amd64 and linux/arm64) and their
## SPDX SBOMs under out/images/, without a container engine (hack/images; about 2 minutes the first time).
IMAGES_DIR := $(CURDIR)/out/images
images:
	$(GO) run ./hack/images -out $(IMAGES_DIR) -version $(VERSION) -revision $$(git rev-parse HEAD 2>/dev/null || echo unknown)

## test runs every test tier.
test: tools test-unit test-integration test-e2e

# tools builds what the integration and e2e tiers run, two at a time: each go build keeps both cores busy while it
# compiles, but its link step and module downloads do not, so a fresh machine's first run overlaps them. A no-op
# once bin/ holds them.
TOOLS := $(BIN)/kube-apiserver $(BIN)/etcd $(BIN)/minio $(BIN)/registry $(BIN)/helm
tools:
	@$(MAKE) --no-print-directory -j2 $(TOOLS)

test-unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

# The integration tier runs against a real kube-apiserver and etcd (envtest) and a real MinIO server, built or
# installed once into bin/.
# test/airgap also pushes the image archives into a real registry and renders the Helm chart with helm.
test-integration: $(BIN)/kube-apiserver $(BIN)/etcd $(BIN)/minio $(BIN)/registry $(BIN)/helm images
	KUBEBUILDER_ASSETS=$(BIN) STRADDLE_MINIO_BIN=$(BIN)/minio STRADDLE_REGISTRY_BIN=$(BIN)/registry STRADDLE_HELM_BIN=$(BIN)/helm STRADDLE_IMAGES_DIR=$(IMAGES_DIR) $(GO) test -race -count=1 -tags integration ./api/... ./deploy/... ./cmd/... ./controller/... ./node-agent/... ./repo/... ./test/...

# The e2e tier runs the whole system: control plane, MinIO, `straddle install`, the controller and two node-agent
# processes, and a kubelet simulator (test/e2e). It builds its own straddle binary, without the race detector,
# so the 200 MiB volume backs up at the speed users see.
test-e2e: $(BIN)/kube-apiserver $(BIN)/etcd $(BIN)/minio
	KUBEBUILDER_ASSETS=$(BIN) STRADDLE_MINIO_BIN=$(BIN)/minio $(GO) test -count=1 -tags e2e -timeout 30m ./test/e2e/...

KUBE_VERSION := v1.37.2
CONTROLLER_GEN_VERSION := v0.23.0
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c

# kube-apiserver from the Go module proxy through hack/tools (about 10 minutes the first time).
$(BIN)/kube-apiserver:
	cd hack/tools && CGO_ENABLED=0 $(GO) build -ldflags "-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION)" -o $@ k8s.io/kubernetes/cmd/kube-apiserver

# etcd from Debian's etcd-server package (3.4, which serves kube-apiserver $(KUBE_VERSION) under envtest).
$(BIN)/etcd:
	@test -x /usr/bin/etcd || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
	@mkdir -p $(BIN) && ln -sf /usr/bin/etcd $@

# MinIO from the Go module proxy (about 5 minutes the first time), for the S3 storage tests.
$(BIN)/minio:
	GOBIN=$(BIN) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

# So `make bin/minio`, as the tests' message says, names the same file as $(BIN)/minio.
bin/minio: $(BIN)/minio

# The CNCF distribution registry, for the image push tests, from the Go module proxy through its own tools
# module hack/tools/registry (4.5 minutes of CPU the first time; 28 minutes on a 2-core machine shared by three builds).
$(BIN)/registry:
	cd hack/tools/registry && CGO_ENABLED=0 $(GO) build -o $@ github.com/distribution/distribution/v3/cmd/registry

# helm, for the chart tests, from the Go module proxy through hack/tools/helm (4.5 minutes of CPU the first time;
# 27 minutes on a 2-core machine shared by three builds).
$(BIN)/helm:
	cd hack/tools/helm && CGO_ENABLED=0 $(GO) build -o $@ helm.sh/helm/v3/cmd/helm

bin/registry: $(BIN)/registry
bin/helm: $(BIN)/helm

$(BIN)/controller-gen:
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

## generate writes DeepCopy methods and the CRDs (deploy/crds) from the API types.
generate: $(BIN)/controller-gen
	$(BIN)/controller-gen object paths=./api/...
	$(BIN)/controller-gen crd paths=./api/... output:crd:artifacts:config=deploy/crds
	rm -f deploy/helm/straddle/crds/*.yaml && cp deploy/crds/*.yaml deploy/helm/straddle/crds/

## verify-generated fails when the committed generated files differ from what the API types generate.
verify-generated: generate
	@git diff --exit-code -- api deploy/crds deploy/helm/straddle/crds || { echo "generated files are stale: run make generate and commit"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard -- api deploy/crds deploy/helm/straddle/crds)" || { echo "generated files are not committed: run make generate and commit"; exit 1; }

lint: fmt vet staticcheck verify-generated

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^hack/tools/')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Integration and e2e tests build only with their tags, so vet and staticcheck look at every build.
vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) vet -tags e2e ./...

staticcheck: $(BIN)/staticcheck
	$(BIN)/staticcheck ./...
	$(BIN)/staticcheck -tags integration ./...
	$(BIN)/staticcheck -tags e2e ./...

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## fuzz runs every fuzz target for FUZZTIME each (their seeds, and crashers found before, run in test-unit).
FUZZTIME ?= 20s
fuzz:
	FUZZTIME=$(FUZZTIME) ./hack/fuzz.sh

## bench compares Straddle with restic on generated data; BENCH_SCALE=0.1 for a quick run; BENCH_SETS=files1m for a
## million small files (issue 11), BENCH_SETS=index,snapshots for the index at 10 M blobs and 2,000 snapshots; BENCH_STORAGE=dir,minio
## also runs both against a MinIO server on 127.0.0.1 (bin/minio) that the harness starts and stops;
## BENCH_RUNS=3 interleaves three runs of each tool and reports medians (for a busy machine).
BENCH_SCALE ?= 1
BENCH_SETS ?= small,mix
BENCH_STORAGE ?= dir
BENCH_RUNS ?= 1
comma := ,
bench: build $(if $(findstring minio,$(BENCH_STORAGE)),$(BIN)/minio)
	@command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic; }
	$(GO) run ./bench/cmd/straddle-bench -straddle $(BIN)/straddle -minio $(BIN)/minio -scale $(BENCH_SCALE) -sets $(BENCH_SETS) -storage $(BENCH_STORAGE) -runs $(BENCH_RUNS) -out bench/out/results-$(BENCH_SCALE)-$(subst $(comma),-,$(BENCH_STORAGE)).md

## bench-controller runs a freshly built `straddle controller` against envtest's kube-apiserver and etcd with
## BENCH_PODS pods on 50 nodes (three volumes each) and prints time to every PodVolumeBackup, API requests per
## volume, CPU and peak RSS (bench/cmd/controller-bench; about 3 minutes on an idle 2-core machine).
BENCH_PODS ?= 1000
bench-controller: $(BIN)/kube-apiserver $(BIN)/etcd
	@mkdir -p bench/out
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o bench/out/straddle ./cmd/straddle
	$(GO) run ./bench/cmd/controller-bench -straddle bench/out/straddle -assets $(BIN) -pods $(BENCH_PODS) -out bench/out/results-controller.md

## demo runs the seed scenario on a local control plane (test/demo): kube-apiserver and etcd, `straddle install`
## against a filesystem location in a temporary folder (STORAGE=minio: a MinIO server), the controller, two
## node-agents and the kubelet simulator; namespace voting is annotated, backed up, deleted, restored and checked
## byte for byte, each step printed as the command a user types. About a minute; nothing is left running.
STORAGE ?= filesystem
demo: build $(BIN)/kube-apiserver $(BIN)/etcd $(if $(filter minio,$(STORAGE)),$(BIN)/minio)
	$(GO) run ./test/demo -straddle $(BIN)/straddle -restore-helper $(BIN)/straddle-restore-helper -assets $(BIN) -minio $(BIN)/minio -storage $(STORAGE)

## demo-repo is the engine alone, no cluster and nothing to build first: a generated folder backed up twice with
## `straddle repo`, both snapshots restored and verified byte for byte (hack/demo.sh, a few seconds).
demo-repo: build
	STRADDLE=$(BIN)/straddle ./hack/demo.sh

clean:
	rm -rf $(BIN)

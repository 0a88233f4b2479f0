# trailstack: `make` builds the plugin and the C host; `make test` is what CI runs.
GO      ?= go
CC      ?= gcc
BUILD   := build
SO      := $(BUILD)/out_trailstack.so
SO_ARM64 := $(BUILD)/arm64/out_trailstack.so
LAUNCH  := $(BUILD)/trailstack-launch
# The version is the VERSION file (the CHANGELOG's top entry; the image tag, the
# kustomization and the Helm values name it: conf's tests hold them together), so every clone
# has it, tags or not. Stamped into the .so (logged at start, trailstack_build_info) with
# git's commit appended where there is one (0.1.0+ef42208, .dirty with uncommitted changes);
# the image build gets it as an argument, its context having no .git.
RELEASE := $(shell cat VERSION)
COMMIT  := $(shell git rev-parse --short HEAD 2>/dev/null)
VERSION ?= $(RELEASE)$(if $(COMMIT),+$(COMMIT)$(if $(shell git status --porcelain 2>/dev/null),.dirty))
STAMP   := -X github.com/trailstack/trailstack/metrics.Version=$(VERSION)
IMAGE   ?= trailstack:$(RELEASE)
TEST_SO := $(BUILD)/out_trailstack_test.so
HOST    := $(BUILD)/flbhost
GOFILES := $(shell find . -name '*.go' -not -path './build/*' -not -path './conf/*') go.mod go.sum
FIXTURES ?= ../shared/fixtures/fluent-bit-5.1.1
# Absolute, for the Go benchmarks too (they run in their package's directory).
override FIXTURES := $(abspath $(FIXTURES))
export FIXTURES
FLUENT_BIT_BIN ?= ../shared/engine/fluent-bit

.PHONY: version check-conf all test test-unit test-host test-engine test-node test-cluster bench bench-distance bench-memory demo vet lint clean image fuzz

all: $(SO) $(HOST) $(LAUNCH)

# What make stamps: make -s version
version:
	@echo $(VERSION)

# The shipped plugin, stripped as the Dockerfile builds it.
$(SO): $(GOFILES)
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -trimpath -ldflags='-s -w $(STAMP)' -o $@ ./plugin

# The step the image runs before Fluent Bit (launch/): pure Go, built for any architecture
# without a cross compiler.
$(LAUNCH): $(GOFILES)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $@ ./launch

# The arm64 image's plugin, cross-built with Debian's gcc-aarch64-linux-gnu.
$(SO_ARM64): $(GOFILES)
	CGO_ENABLED=1 GOARCH=arm64 CC=aarch64-linux-gnu-gcc $(GO) build -buildmode=c-shared -trimpath -ldflags='-s -w $(STAMP)' -o $@ ./plugin
	readelf -h $@ | grep Machine
	readelf -d $@ | grep NEEDED

# The image for both architectures (needs a Docker engine with buildx; pushes to IMAGE).
image:
	docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=$(VERSION) -t $(IMAGE) --push .

# The same plugin with a destination the tests can inspect (package testkit/testsink).
$(TEST_SO): $(GOFILES)
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -trimpath -tags trailstack_testsink -o $@ ./plugin

$(BUILD)/syslogdrain: $(GOFILES)
	CGO_ENABLED=0 $(GO) build -o $@ ./tools/syslogdrain

$(BUILD)/fakelogging: $(GOFILES)
	CGO_ENABLED=0 $(GO) build -o $@ ./tools/fakelogging

$(BUILD)/enginebench: $(GOFILES)
	CGO_ENABLED=0 $(GO) build -o $@ ./tools/enginebench

$(HOST): tools/flbhost/flbhost.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -Wall -Wextra -o $@ tools/flbhost/flbhost.c -ldl -lpthread

# What every change must pass, offline: formatting, vet (both modules, and the test build of
# the plugin), and every package but plugin/ without cgo. make test runs it first.
vet:
	@test -z "$$(gofmt -l $$(find . -name '*.go' -not -path './build/*'))" || { gofmt -l . ; echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags trailstack_testsink ./plugin
	cd conf && $(GO) vet ./...
	CGO_ENABLED=0 $(GO) build $$($(GO) list ./... | grep -v /plugin$$)

# vet, then staticcheck, go.mod and go.sum tidy, and known vulnerabilities. govulncheck asks
# vuln.go.dev, so this needs the network (CI's make test does not run it); where that is out of
# reach, GOVULNDB=file:///path names a copy of the database in its v1 layout.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK ?= $(GO) run golang.org/x/vuln/cmd/govulncheck@v1.9.0 $(if $(GOVULNDB),-db $(GOVULNDB))
lint: vet
	$(STATICCHECK) ./... && $(STATICCHECK) -tags trailstack_testsink ./plugin
	cd conf && $(STATICCHECK) ./...
	$(GO) mod tidy -diff
	cd conf && $(GO) mod tidy -diff
	$(GOVULNCHECK) ./...
	cd conf && $(GOVULNCHECK) ./...

# The arm64 .so is built where Debian's cross gcc is installed (.ci/run installs it);
# elsewhere its test says it skipped.
ifneq ($(shell command -v aarch64-linux-gnu-gcc 2>/dev/null),)
ARM64_TEST := $(SO_ARM64)
ARM64_ENV  := TRAILSTACK_SO_ARM64=$(abspath $(SO_ARM64))
endif

# Unit tests, the .so through the C host, the real engine (../shared/engine/fluent-bit or
# FLUENT_BIT_BIN) and the node harness (conf/, as root).
TEST_ENV := TRAILSTACK_TEST_SO=$(abspath $(TEST_SO)) FLBHOST=$(abspath $(HOST)) \
	TRAILSTACK_SO=$(abspath $(SO)) TRAILSTACK_LAUNCH=$(abspath $(LAUNCH)) $(ARM64_ENV)
test: all $(TEST_SO) $(ARM64_TEST) vet
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 60m ./...
	cd conf && $(TEST_ENV) $(GO) test -race -count=1 -timeout 75m ./...

# The same tests a tier at a time. A test's name says its tier: TestHost* load the .so in
# the C host, TestEngine* run the real Fluent Bit, TestNode* run the node harness (conf/, as
# root), TestCluster* the install on a real one-node Kubernetes (conf/, as root; its first
# run builds Kubernetes, about 10 minutes); every other test is a unit test, and needs
# neither an engine nor root.
TIERS := ^Test(Host|Engine|Node|Cluster)
test-unit: all $(TEST_SO) $(ARM64_TEST) vet
	$(TEST_ENV) $(GO) test -race -count=1 -skip '$(TIERS)' ./...
	cd conf && $(TEST_ENV) $(GO) test -race -count=1 -skip '$(TIERS)' ./...
test-host: all $(TEST_SO)
	$(TEST_ENV) $(GO) test -race -count=1 -run '^TestHost' ./...
test-engine: all $(TEST_SO)
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 30m -run '^TestEngine' ./...
test-node: all
	cd conf && $(TEST_ENV) $(GO) test -race -count=1 -timeout 30m -run '^TestNode' ./...
test-cluster: all
	cd conf && $(TEST_ENV) $(GO) test -race -count=1 -timeout 45m -run '^TestCluster' ./...

# Checks a Fluent Bit configuration's trailstack outputs offline with the plugin's own
# parser, as Init would (make check-conf CONF=path/to/fluent-bit.yaml), the Secret's values
# from PAPERTRAIL_ENV included.
CONF ?= conf/fluent-bit.yaml
PAPERTRAIL_ENV ?= conf/papertrail.env
check-conf:
	set -a && . ./$(PAPERTRAIL_ENV) && set +a && $(GO) run ./tools/confcheck $(CONF)

# Every fuzz target for FUZZTIME each (not part of make test; the seed corpora are).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run XXX -fuzz '^FuzzDecoder$$' -fuzztime $(FUZZTIME) ./record
	$(GO) test -run XXX -fuzz '^FuzzObjectLen$$' -fuzztime $(FUZZTIME) ./record
	$(GO) test -run XXX -fuzz '^FuzzExtract$$' -fuzztime $(FUZZTIME) ./accessor
	$(GO) test -run XXX -fuzz '^FuzzFrame$$' -fuzztime $(FUZZTIME) ./syslog
	$(GO) test -run XXX -fuzz '^FuzzFrameFields$$' -fuzztime $(FUZZTIME) ./syslog
	$(GO) test -run XXX -fuzz '^FuzzAppendBody$$' -fuzztime $(FUZZTIME) ./stackdriver

# Benchmarks: decoding in Go, then the whole .so through the C host with the null sink,
# then both sinks, and last the real engine beside Fluent Bit's own outputs (about 20 min).
bench: all $(BUILD)/syslogdrain $(BUILD)/fakelogging $(BUILD)/enginebench
	$(GO) test -run XXX -bench . -benchmem -benchtime 200000x ./record
	$(GO) test -run XXX -bench . -benchmem ./accessor
	@echo "--- one flush with its metrics, alone and while the endpoint is scraped"
	$(GO) test -run XXX -bench . -benchmem ./core ./metrics
	@echo "--- FlushCtx cost: 200,000 flushes of a one-record chunk, null sink"
	$(HOST) -q -n 200000 $(SO) -i -o sink=null -- testdata/one-record.msgpack | tail -1
	@echo "--- 1,000,000 kube-20k records (8 chunks x 50), null sink, 1 thread"
	$(HOST) -q -n 50 $(SO) -i -o sink=null -- $(FIXTURES)/kube-20k/*.msgpack | tail -1
	$(GO) test -run XXX -bench . -benchmem ./syslog
	@echo "--- 1,000,000 kube-20k records, syslog sink over TLS to a counting receiver on loopback"
	BUILD=$(BUILD) FIXTURES=$(FIXTURES) scripts/bench-syslog.sh
	$(GO) test -run XXX -bench . -benchmem ./stackdriver
	@echo "--- 1,000,000 kube-20k records, stackdriver sink to a local Cloud Logging stand-in over gRPC"
	BUILD=$(BUILD) FIXTURES=$(FIXTURES) scripts/bench-stackdriver.sh
	@echo "--- each record shape through the .so via the C host, 100 chunks of 2 MB, both sinks"
	BUILD=$(BUILD) scripts/bench-shapes.sh
	@echo "--- the real engine: 1,000,000 lines of each shape, each output 3 times, Fluent Bit's C outputs beside ours"
	$(BUILD)/enginebench -engine $(FLUENT_BIT_BIN) -so $(SO) -bin $(BUILD) -runs 3
	@echo "--- the real engine at a steady 20,000 lines/s for 30 s: peak RSS"
	$(BUILD)/enginebench -engine $(FLUENT_BIT_BIN) -so $(SO) -bin $(BUILD) -shapes kube -runs 1 -rate 20000 -seconds 30
	@echo "--- the shipped configuration with its destinations far away"
	$(MAKE) bench-distance
	@echo "--- a busy node: memory at the highest rate, through an outage, above what the destinations take"
	$(MAKE) bench-memory

# The shipped configuration on the node harness with its destinations at a distance (delay
# lines): 110 containers, 2 minutes a row; the lag of every line at the receivers, loss,
# duplicates, flushes and peak RSS (docs/benchmarks.md: Distance). As root, about 15 min.
DISTANCE = cd conf && TRAILSTACK_SO=$(abspath $(SO)) FLUENT_BIT_BIN=$(abspath $(FLUENT_BIT_BIN)) \
	$(GO) test -count=1 -timeout 20m -run '^TestNodeDistance$$' -v . -distance.for 2m
bench-distance: all
	$(DISTANCE) -distance.papertrail-rtt 0 -distance.cloud-rtt 0 | grep 'distance:'
	$(DISTANCE) -distance.null | grep 'distance:'
	$(DISTANCE) -distance.workers 2 -distance.max-p99 10m | grep 'distance:'
	$(DISTANCE) -distance.max-p99 2s | grep 'distance:'
	$(DISTANCE) -distance.rate 10000 -distance.max-p99 5s | grep 'distance:'
	$(DISTANCE) -distance.papertrail-rtt 300ms -distance.cloud-rtt 300ms -distance.max-p99 10m | grep 'distance:'

# A busy node's memory (docs/benchmarks.md: A busy node), both shipped outputs on loopback:
# 110 containers at 40,000 lines/s (about what this 2-core machine's writer, engine and
# receivers sustain together) and at 60,000 (more than the engine reads), and a 5-minute
# outage of both destinations at 3,000 lines/s followed by the drain; then the same with
# the settings of before (256 chunks up, GOMEMLIMIT 128MiB, inflight_limit 16M). Peak RSS,
# anonymous memory, the cgroup's usage, the Go runtime's, lag and loss. As root, about 30 min.
MEMORY = cd conf && TRAILSTACK_SO=$(abspath $(SO)) FLUENT_BIT_BIN=$(abspath $(FLUENT_BIT_BIN)) \
	$(GO) test -count=1 -timeout 30m -run '^TestNodeDistance$$' -v . -distance.papertrail-rtt 0 -distance.cloud-rtt 0 \
	-distance.max-p99 30m -distance.drain 15m
BEFORE = -distance.service storage.max_chunks_up=256 -distance.env GOMEMLIMIT=128MiB -distance.output inflight_limit=16M
bench-memory: all
	$(MEMORY) -distance.rate 40000 -distance.for 30s | grep 'distance:'
	$(MEMORY) -distance.rate 60000 -distance.for 30s | grep 'distance:'
	$(MEMORY) -distance.rate 3000 -distance.for 6m -distance.outage 5m | grep 'distance:'
	$(MEMORY) -distance.rate 40000 -distance.for 30s $(BEFORE) | grep 'distance:'
	$(MEMORY) -distance.rate 60000 -distance.for 30s $(BEFORE) | grep 'distance:'
	$(MEMORY) -distance.rate 3000 -distance.for 6m -distance.outage 5m $(BEFORE) | grep 'distance:'

# Sample Kubernetes chunks (testdata/) through the real .so into local stand-ins for
# Papertrail and Cloud Logging.
demo: all $(BUILD)/syslogdrain $(BUILD)/fakelogging
	BUILD=$(BUILD) scripts/demo.sh

clean:
	rm -rf $(BUILD)

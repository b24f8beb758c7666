# cairn — see README.md. The two commands a newcomer needs: `make demo`, `make test`.
GO      ?= go
BIN     ?= bin/cairn
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: all build demo test test-unit test-e2e fuzz bench bench-libvirt bench-openstack vet clean

all: build

build:
	$(GO) build -ldflags "-X github.com/cairn-backup/cairn/cli.Version=$(VERSION)" -o $(BIN) ./cli/cairn

# Build, create a repository, back up a sample VM disk it makes itself,
# list, restore and verify byte for byte.
demo: build
	scripts/demo.sh $(BIN)

# Every test tier: unit, fuzz seeds, end-to-end against real qemu-img, FUSE,
# and (as root) the real OpenStack and libvirt that scripts/*-up.sh start.
test:
	GO=$(GO) scripts/test.sh

test-unit:
	$(GO) test -count=1 -short ./repo/... ./ingest/... ./cli/... ./fs/...

vet:
	$(GO) vet ./...

# Short fuzzing of every decoder (FUZZTIME=30s per target by default).
FUZZTIME ?= 30s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# Throughput and efficiency figures (needs ~25 GB free disk, several minutes).
bench: build
	scripts/bench.sh $(BIN)

# libvirt strategy vs virtnbdbackup on the same domain and changes (needs scripts/libvirt-up.sh).
bench-libvirt:
	CAIRN_BENCH=1 CAIRN_REQUIRE_LIBVIRT=1 $(GO) test -count=1 -timeout 30m -run Bench -v ./test/libvirt/

# 4 GiB volume through the Glance paths, backup and restore (needs scripts/openstack-up.sh).
bench-openstack:
	CAIRN_BENCH=1 CAIRN_REQUIRE_OPENSTACK=1 $(GO) test -count=1 -timeout 60m -run 'Throughput' -v ./test/openstack/

clean:
	rm -rf bin .demo .bench

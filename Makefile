# Thin front door over CMake. The two commands a user needs:
#   make run    install what is missing, build, start a broker if none, run komoku
#   make test   install what is missing, build, run every unit and integration test
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CONFIG ?= $(wildcard config/komoku.yaml)

.PHONY: all deps build run test bench fuzz test-asan test-tsan clean format lint

all: build

# Extra package groups of scripts/install-deps.sh; `make test` adds its own.
DEPS_GROUPS ?=

deps:
	@scripts/install-deps.sh $(DEPS_GROUPS)

build: deps
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	@scripts/run.sh $(BUILD_DIR)/src/app/komoku $(CONFIG)

test: DEPS_GROUPS += test
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# The code's habits (scripts/lint.sh): `make format` formats every C++ file
# as .clang-format says; `make lint` fails on a file that differs and runs
# clang-tidy on the files changed since LINT_BASE (default: the parent commit).
format: DEPS_GROUPS += lint
format: deps
	@scripts/lint.sh --fix

lint: DEPS_GROUPS += lint
lint: build
	@BUILD_DIR=$(BUILD_DIR) scripts/lint.sh

# Installs the binary, the systemd unit, /etc/komoku/komoku.yaml (kept when it
# exists) and the docs: make install [PREFIX=/usr/local] [DESTDIR=/tmp/root]
PREFIX ?= /usr/local
.PHONY: install deb
install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD_DIR) --prefix $(PREFIX) --strip

# The Debian package, in $(BUILD_DIR)/komoku_<version>-<revision>+deb<N>_<arch>.deb:
# builds komoku and the package's generated files (manual page, changelog),
# not the tests. With ARCH=arm64 or ARCH=armhf, cross-built with Debian's
# cross compilers into build-<arch>/ (scripts/cross-check.sh --deb, which
# also runs that architecture's tests under qemu: docs/operations.md).
ARCH ?=
ifeq ($(ARCH),)
deb: deps
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS) --target deb
else
deb:
	JOBS=$(JOBS) scripts/cross-check.sh --deb --tests=none $(ARCH)
endif

bench:
	@scripts/install-deps.sh bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DKOMOKU_BUILD_TESTS=OFF -DKOMOKU_BUILD_BENCH=ON
	cmake --build build-bench -j $(JOBS)
	cmake --build build-bench --target run-bench

fuzz:
	@scripts/install-deps.sh fuzz
	CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOMOKU_BUILD_TESTS=OFF -DKOMOKU_BUILD_FUZZERS=ON
	cmake --build build-fuzz -j $(JOBS)
	cmake --build build-fuzz --target run-fuzz

# Unit and integration tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: DEPS_GROUPS += test
test-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKOMOKU_SANITIZE=address,undefined
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)

# Unit tests under ThreadSanitizer.
test-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DKOMOKU_SANITIZE=thread
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && ctest --output-on-failure -j $(JOBS) -L unit

clean:
	rm -rf $(BUILD_DIR) build-bench build-fuzz build-asan build-tsan

# resnet-compile — the two commands:
#   make demo   install what is missing (clang, libomp-dev), build, compile the
#               built-in ResNet-20 to C, build that C and run it
#   make test   the whole test suite (what CI runs)
# and make install / make uninstall (PREFIX, default /usr/local).

SHELL      := /bin/bash
SWIFT      ?= swift
BUILD_DIR  := .build/debug
TOOL       := $(BUILD_DIR)/resnet-compile
DEMO_DIR   := out/demo
CC         ?= cc

# Debian's libomp-dev keeps libomp.so under /usr/lib/llvm-N/lib; clang -fopenmp needs -L to it.
OMP_LIBDIR := $(patsubst %/libomp.so,%,$(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libomp.so /usr/lib/llvm-*/lib/libomp.so)))
DEMO_CC    := clang
DEMO_CFLAGS := -std=c11 -O3 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Werror -fopenmp $(if $(OMP_LIBDIR),-L$(OMP_LIBDIR) -Wl$(comma)-rpath$(comma)$(OMP_LIBDIR))
comma := ,

# make install: the tool, the DSL library and module (model files are compiled
# against them) and the C templates and runtime it reads, found relative to
# bin/ (Sources/ResNetCompiler/IO/Resources.swift). CONFIG picks SwiftPM's build
# (release by default); BUILD=no installs what is already built without running
# swift build (the install test does so inside swift test). DESTDIR stages a package.
PREFIX     ?= /usr/local
CONFIG     ?= release
BUILD      ?= yes
DESTDIR    ?=
SHARE_DIR  := share/resnet-compile
MANIFEST   := $(SHARE_DIR)/install_manifest.txt
MODULE_DIR := lib/swift/$(if $(filter Darwin,$(shell uname -s)),macosx,linux)
DSL_LIB    := libResNetDSL.$(if $(filter Darwin,$(shell uname -s)),dylib,so)

.PHONY: all build demo test fuzz bench deps clean help install uninstall

all: build

help:
	@echo "make demo   - install deps if missing, build, compile ResNet-20 to C, build and run it"
	@echo "make test   - run the whole test suite"
	@echo "make build  - build the compiler (swift build)"
	@echo "make install [PREFIX=/usr/local] [CONFIG=release]"
	@echo "             - build, then install bin/resnet-compile, lib/$(DSL_LIB), $(MODULE_DIR)/ResNetDSL.swiftmodule"
	@echo "               and $(SHARE_DIR)/{templates,runtime} (BUILD=no: install what is built; DESTDIR stages)"
	@echo "make uninstall [PREFIX=/usr/local]"
	@echo "             - remove exactly what make install put there (from $(SHARE_DIR)/install_manifest.txt)"
	@echo "make fuzz   - fuzz the weight/checkpoint loader and the data reader longer (RESNET_FUZZ_SECONDS, default 600 each)"
	@echo "make bench  - ours vs onnxruntime, OpenVINO and PyTorch (installs them into .venv), and compiler speed"
	@echo "make clean  - remove build outputs"

# Installs clang's OpenMP runtime (and clang/gcc if absent) when missing, and
# the aarch64 cross compiler and user-mode qemu for the NEON tests (ISATests);
# needs root or sudo. The cross tools are best effort: without them (no network)
# the aarch64 tests skip with the reason, and fail when CI=true. The fuzz tests
# need a clang that links -fsanitize=fuzzer (Swift's clang does); when the clang
# on PATH cannot, Debian's libFuzzer (libclang-rt-N-dev) is installed for it.
# OpenMPI (openmpi-bin, libopenmpi-dev) runs the data-parallel test under mpirun.
deps:
	@missing=""; cross=""; \
	command -v clang >/dev/null 2>&1 || missing="$$missing clang"; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	ls /usr/lib/x86_64-linux-gnu/libomp.so >/dev/null 2>&1 || ls /usr/lib/llvm-*/lib/libomp.so >/dev/null 2>&1 || missing="$$missing libomp-dev"; \
	command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1 || missing="$$missing openmpi-bin libopenmpi-dev"; \
	command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || cross="$$cross gcc-aarch64-linux-gnu"; \
	fuzzdir=$$(mktemp -d); echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { (void)d; (void)n; return 0; }' > $$fuzzdir/p.c; \
	if command -v clang >/dev/null 2>&1 && ! clang -fsanitize=fuzzer,address,undefined $$fuzzdir/p.c -o $$fuzzdir/p >/dev/null 2>&1; then \
	  v=$$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1); missing="$$missing libclang-rt-$$v-dev"; fi; \
	rm -rf $$fuzzdir; \
	command -v qemu-aarch64 >/dev/null 2>&1 || command -v qemu-aarch64-static >/dev/null 2>&1 || cross="$$cross qemu-user"; \
	SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	if [ -n "$$missing$$cross" ]; then $$SUDO apt-get update -qq || true; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null || exit 1; \
	else echo "dependencies present: clang, gcc, libomp-dev, libFuzzer, OpenMPI"; fi; \
	if [ -n "$$cross" ]; then \
	  echo "installing:$$cross"; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$cross >/dev/null \
	    || echo "warning: could not install$$cross; the aarch64 tests will skip (and fail with CI=true)"; \
	else echo "dependencies present: aarch64-linux-gnu-gcc, qemu-aarch64"; fi

build:
	$(SWIFT) build

demo: deps build
	$(TOOL) -o $(DEMO_DIR) --verbose
	$(MAKE) --no-print-directory -C Examples/embed-c GEN=$(CURDIR)/$(DEMO_DIR) run

test: deps
	$(SWIFT) build
	$(SWIFT) test

# FileSafetyTests alone, with longer fuzzing (make test fuzzes 30 s per target).
fuzz: deps
	RESNET_FUZZ_SECONDS=$${RESNET_FUZZ_SECONDS:-600} $(SWIFT) test --filter FileSafetyTests

# Speed of the generated C beside onnxruntime, OpenVINO and PyTorch (eager,
# frozen TorchScript, torch.compile): one run, the same threads for all (1 and
# all cores), ResNet-20/56/110 and ResNet-18/50; then the compiler's own speed.
# bench/setup_venv.sh first installs the Python packages into .venv (or
# $BENCH_VENV) when missing. The tables, with date, machine and command, go to
# out/bench/results.md for BENCHMARKS.md. Options for bench.py go in BENCH_ARGS,
# e.g. make bench BENCH_ARGS="--models resnet20 --batches 1 --min-time 0.1".
bench:
	$(SWIFT) build -c release
	bash bench/setup_venv.sh
	"$${BENCH_VENV:-.venv}/bin/python" bench/bench.py --compiler .build/release/resnet-compile \
	    --markdown out/bench/results.md --json out/bench/results.json $(BENCH_ARGS)
	bash bench/compile_speed.sh

clean:
	rm -rf .build out

# Every file and every folder that did not exist before is recorded in the
# manifest (one "file PATH" or "dir PATH" per line, relative to the prefix);
# uninstall removes those files and then those folders when they are empty.
# A reinstall keeps the folders the first install created, and removes files
# an earlier install listed that this one no longer installs.
install:
ifneq ($(BUILD),no)
	$(SWIFT) build -c $(CONFIG) --product resnet-compile
	$(SWIFT) build -c $(CONFIG) --product ResNetDSL
endif
	@set -euo pipefail; from=".build/$(CONFIG)"; p="$(DESTDIR)$(PREFIX)"; \
	for f in resnet-compile $(DSL_LIB) Modules/ResNetDSL.swiftmodule; do \
	  [ -f "$$from/$$f" ] || { echo "make install: $$from/$$f is missing (swift build -c $(CONFIG) makes it)" >&2; exit 1; }; done; \
	new=$$(mktemp); trap 'rm -f "$$new"' EXIT; \
	if [ -f "$$p/$(MANIFEST)" ]; then grep '^dir ' "$$p/$(MANIFEST)" >> "$$new" || true; fi; \
	if [ ! -d "$$p" ]; then mkdir -p "$$p"; echo "dir ." >> "$$new"; fi; \
	folder() { [ -d "$$p/$$1" ] && return 0; [ "$${1%/*}" = "$$1" ] || folder "$${1%/*}"; mkdir "$$p/$$1"; echo "dir $$1" >> "$$new"; }; \
	put() { folder "$${2%/*}"; install -m "$$3" "$$1" "$$p/$$2"; echo "file $$2" >> "$$new"; }; \
	put "$$from/resnet-compile" bin/resnet-compile 755; \
	put "$$from/$(DSL_LIB)" lib/$(DSL_LIB) 755; \
	put "$$from/Modules/ResNetDSL.swiftmodule" $(MODULE_DIR)/ResNetDSL.swiftmodule 644; \
	if [ -f "$$from/Modules/ResNetDSL.swiftdoc" ]; then put "$$from/Modules/ResNetDSL.swiftdoc" $(MODULE_DIR)/ResNetDSL.swiftdoc 644; fi; \
	for f in templates/*.mustache runtime/*.c; do put "$$f" "$(SHARE_DIR)/$$f" 644; done; \
	echo "file $(MANIFEST)" >> "$$new"; \
	if [ -f "$$p/$(MANIFEST)" ]; then \
	  grep '^file ' "$$p/$(MANIFEST)" | while read -r kind path; do \
	    grep -qxF "file $$path" "$$new" || rm -f "$$p/$$path"; done; fi; \
	install -m 644 "$$new" "$$p/$(MANIFEST)"; \
	echo "installed resnet-compile ($(CONFIG)) into $$p: $$(grep -c '^file ' "$$new") files, listed in $$p/$(MANIFEST)"

uninstall:
	@set -euo pipefail; p="$(DESTDIR)$(PREFIX)"; m="$$p/$(MANIFEST)"; \
	[ -f "$$m" ] || { echo "make uninstall: $$m not found: nothing was installed into $$p by make install" >&2; exit 1; }; \
	list=$$(mktemp); trap 'rm -f "$$list"' EXIT; cp "$$m" "$$list"; \
	grep '^file ' "$$list" | while read -r kind path; do rm -f "$$p/$$path"; done; \
	grep '^dir ' "$$list" | sort -r | while read -r kind path; do \
	  if [ "$$path" = . ]; then rmdir "$$p" 2>/dev/null || true; else rmdir "$$p/$$path" 2>/dev/null || true; fi; done; \
	echo "removed $$(grep -c '^file ' "$$list") files of resnet-compile from $$p"

# resnet-compile — the two commands:
#   make demo   install what is missing (clang, libomp-dev), build, compile the
#               built-in ResNet-20 to C, build that C and run it
#   make test   the whole test suite (what CI runs)

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

.PHONY: all build demo test fuzz bench deps clean help

all: build

help:
	@echo "make demo   - install deps if missing, build, compile ResNet-20 to C, build and run it"
	@echo "make test   - run the whole test suite"
	@echo "make build  - build the compiler (swift build)"
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

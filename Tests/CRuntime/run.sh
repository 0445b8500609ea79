#!/bin/sh
# Builds and runs the C runtime tests (runtime_tests.c) against
# runtime/runtime.c with every compiler available, the way the
# generated C is held to: warning-free at -Wall -Wextra -Wpedantic -Wshadow
# -Wconversion -Werror (CBuild.warningFlags), with and without OpenMP, plus a
# sanitizer build. Works from any directory; build output goes to a temporary
# directory that is removed afterwards.
#
# Usage: Tests/CRuntime/run.sh            (CC_LIST="gcc clang" by default)
# Exits non-zero if any build or test fails. Needs no Python.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
runtime="$root/runtime"
work=$(mktemp -d "${TMPDIR:-/tmp}/rc_runtime_build.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP PIPE    # so that the EXIT trap cleans up

status=0
fail() { echo "FAIL: $*"; status=1; }

# runtime.c is placed verbatim into generated files as a Mustache partial,
# so it must not contain anything Mustache would expand.
if grep -n '{{' "$runtime/runtime.c"; then
    fail "$runtime/runtime.c has mustache tags"
fi

warn="-std=c11 -O2 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Werror"

# Runs: build NAME COMPILER EXTRA-FLAGS...
build_and_run() {
    name=$1; cc=$2; shift 2
    exe="$work/$name"
    # shellcheck disable=SC2086  # $warn is a list of flags
    if ! "$cc" $warn "$@" -I"$runtime" "$here/runtime_tests.c" -o "$exe" -lm; then
        fail "$name: build failed ($cc $*)"
        return
    fi
    echo "== $name"
    if ! "$exe"; then
        fail "$name: tests failed"
    fi
}

# Whether CC can build and link a program with these flags (OpenMP and the
# sanitizers need runtime libraries that a toolchain may lack).
can_link() {
    cc=$1; shift
    echo 'int main(void) { return 0; }' > "$work/probe.c"
    "$cc" "$@" "$work/probe.c" -o "$work/probe" >/dev/null 2>&1
}

compilers=0
for cc in ${CC_LIST:-gcc clang}; do
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "== $cc: not found, skipped"
        continue
    fi
    compilers=$((compilers + 1))
    build_and_run "$cc" "$cc"
    if can_link "$cc" -fopenmp; then
        build_and_run "$cc-openmp" "$cc" -fopenmp
    else
        # No OpenMP runtime to link: still hold the code to compiling
        # warning-free under -fopenmp.
        # shellcheck disable=SC2086
        if "$cc" $warn -fopenmp -fsyntax-only -I"$runtime" "$here/runtime_tests.c"; then
            echo "== $cc-openmp: compiles (no OpenMP runtime to link, not run)"
        else
            fail "$cc-openmp: compile failed"
        fi
    fi
done
[ "$compilers" -gt 0 ] || fail "no C compiler found (tried: ${CC_LIST:-gcc clang})"

# One sanitizer build catches out-of-bounds reads in the JSON parser that a
# plain run might survive.
for cc in ${CC_LIST:-gcc clang}; do
    command -v "$cc" >/dev/null 2>&1 || continue
    if can_link "$cc" -fsanitize=address,undefined; then
        ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 \
            build_and_run "$cc-sanitize" "$cc" -O1 -g -fno-omit-frame-pointer \
            -fsanitize=address,undefined -fno-sanitize-recover=all
        break
    fi
done

if [ "$status" -ne 0 ]; then
    echo "runtime tests: FAILED"
else
    echo "runtime tests: all passed"
fi
exit "$status"

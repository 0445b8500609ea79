#!/usr/bin/env python3
"""Interoperability of the C safetensors code with the reference readers.

Checks, in both directions, that runtime/runtime.c and the
`safetensors` Python package agree on the format:

  * files written by safetensors.numpy / safetensors.torch (and the committed
    fixtures in Tests/Fixtures/, written by PyTorch) load in rc_st_load with
    identical bytes;
  * files written by rc_st_save load in safetensors.numpy and .torch with the
    same values, and a torch module's state dict saved by C goes back through
    load_state_dict(strict=True);
  * dtypes the runtime does not handle (BF16, F16) are refused as RC_ERR_DTYPE.

Needs numpy and safetensors (torch optional); run.sh does not call this, since
CI has no Python packages. Usage: python3 Tests/CRuntime/interop.py
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import safetensors.numpy

try:
    import torch
    import safetensors.torch
except ImportError:  # the numpy checks still run
    torch = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUNTIME = os.path.join(ROOT, "runtime", "runtime.c")

# A driver that exposes rc_st_load / rc_st_save to this script. The tensor
# list comes on stdin, one per line: hex(name) dtype ndim extents...; data
# travels as the tensors' raw bytes, concatenated in that order.
DRIVER = r"""
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include "runtime.c"

int main(int argc, char **argv)
{
    /* argv: load|save FILE RAW */
    if (argc != 4) return 2;
    int load = strcmp(argv[1], "load") == 0;
    rc_tensor t[4096];
    size_t bytes[4096];
    int nt = 0;
    char hex[4096];
    int dtype, ndim;
    while (nt < 4096 && scanf("%4095s %d %d", hex, &dtype, &ndim) == 3) {
        rc_tensor *d = &t[nt];
        memset(d, 0, sizeof *d);
        size_t n = strlen(hex) / 2;
        char *name = calloc(n + 1, 1);
        for (size_t i = 0; i < n; i++) {
            unsigned v;
            sscanf(hex + 2 * i, "%2x", &v);
            name[i] = (char)v;
        }
        d->name = name;
        d->dtype = dtype;
        d->ndim = ndim;
        bytes[nt] = dtype == RC_F32 ? 4 : 8;
        for (int k = 0; k < ndim; k++) {
            long long e;
            if (scanf("%lld", &e) != 1) return 2;
            d->shape[k] = e;
            bytes[nt] *= (size_t)e;
        }
        d->data = malloc(bytes[nt] ? bytes[nt] : 1);
        nt++;
    }
    FILE *raw = fopen(argv[3], load ? "wb" : "rb");
    if (raw == NULL) return 2;
    int rc;
    if (load) {
        rc = rc_st_load(argv[2], t, nt);
        if (rc == RC_OK)
            for (int i = 0; i < nt; i++) fwrite(t[i].data, 1, bytes[i], raw);
    } else {
        for (int i = 0; i < nt; i++)
            if (fread(t[i].data, 1, bytes[i], raw) != bytes[i]) return 2;
        rc = rc_st_save(argv[2], t, nt);
    }
    fclose(raw);
    printf("%d\n", rc);
    return 0;
}
"""

RC_F32, RC_I64 = 1, 2
RC_OK, RC_ERR_DTYPE = 0, -9
DTYPES = {np.dtype(np.float32): RC_F32, np.dtype(np.int64): RC_I64}

failures = 0
checks = 0


def check(ok, what):
    global failures, checks
    checks += 1
    if not ok:
        failures += 1
        print("FAIL:", what)


def build_driver(work):
    src = os.path.join(work, "driver.c")
    with open(src, "w") as f:
        f.write(DRIVER)
    exe = os.path.join(work, "driver")
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang") or "cc"
    subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-I", os.path.dirname(RUNTIME), src, "-o", exe, "-lm"], check=True)
    return exe


def spec(tensors):
    """The driver's stdin for an ordered dict of name -> (rc dtype, shape)."""
    lines = []
    for name, (dtype, shape) in tensors.items():
        lines.append(" ".join([name.encode().hex(), str(dtype), str(len(shape))] + [str(e) for e in shape]))
    return "\n".join(lines) + "\n"


def c_load(exe, work, path, tensors):
    """rc_st_load of path with the given descriptors; returns (rc, {name: bytes})."""
    raw = os.path.join(work, "loaded.raw")
    out = subprocess.run([exe, "load", path, raw], input=spec(tensors), capture_output=True, text=True, check=True)
    rc = int(out.stdout)
    if rc != RC_OK:
        return rc, None
    data, pos = open(raw, "rb").read(), 0
    got = {}
    for name, (dtype, shape) in tensors.items():
        n = (4 if dtype == RC_F32 else 8) * int(np.prod(shape, dtype=np.int64))
        got[name] = data[pos:pos + n]
        pos += n
    return rc, got


def c_save(exe, work, path, arrays):
    """rc_st_save of numpy arrays (float32 / int64) in dict order; returns rc."""
    raw = os.path.join(work, "tosave.raw")
    with open(raw, "wb") as f:
        for a in arrays.values():
            f.write(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
    tensors = {k: (DTYPES[a.dtype], a.shape) for k, a in arrays.items()}
    out = subprocess.run([exe, "save", path, raw], input=spec(tensors), capture_output=True, text=True, check=True)
    return int(out.stdout)


def python_written_loads_in_c(exe, work, label, path, arrays):
    tensors = {k: (DTYPES[a.dtype], a.shape) for k, a in arrays.items()}
    rc, got = c_load(exe, work, path, tensors)
    check(rc == RC_OK, f"{label}: rc_st_load returned {rc}")
    if rc == RC_OK:
        for k, a in arrays.items():
            want = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
            check(got[k] == want, f"{label}: {k} differs")


def sample_arrays():
    rng = np.random.default_rng(0)
    return {
        "conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "bn1.weight": rng.standard_normal(4).astype(np.float32),
        "bn1.num_batches_tracked": np.array(123456789012, dtype=np.int64),
        "fc.weight": rng.standard_normal((10, 4)).astype(np.float32),
        "fc.bias": np.array([0.0, -0.0, 1e-40, 3.4e38, -1, 2, 3, 4, 5, 6], dtype=np.float32),
        "odd \"name\"\\ \u00e9\U0001F600": np.arange(3, dtype=np.int64) - 1,
    }


def main():
    work = tempfile.mkdtemp(prefix="rc_interop.")
    try:
        exe = build_driver(work)
        arrays = sample_arrays()

        # Python writes, C reads.
        path = os.path.join(work, "from_numpy.safetensors")
        safetensors.numpy.save_file(arrays, path, metadata={"format": "np", "note": "\"quoted\" \u00e9"})
        python_written_loads_in_c(exe, work, "numpy save_file", path, arrays)
        if torch is not None:
            path = os.path.join(work, "from_torch.safetensors")
            safetensors.torch.save_file({k: torch.from_numpy(a.copy()) for k, a in arrays.items()}, path)
            python_written_loads_in_c(exe, work, "torch save_file", path, arrays)

        # Committed PyTorch fixtures, whatever they hold.
        fixtures = os.path.join(ROOT, "Tests", "Fixtures")
        for name in sorted(os.listdir(fixtures)) if os.path.isdir(fixtures) else []:
            if name.endswith(".safetensors"):
                loaded = safetensors.numpy.load_file(os.path.join(fixtures, name))
                if all(a.dtype in DTYPES for a in loaded.values()):
                    python_written_loads_in_c(exe, work, f"fixture {name}", os.path.join(fixtures, name), loaded)

        # C writes, Python reads.
        path = os.path.join(work, "from_c.safetensors")
        rc = c_save(exe, work, path, arrays)
        check(rc == RC_OK, f"rc_st_save returned {rc}")
        back = safetensors.numpy.load_file(path)
        check(set(back) == set(arrays), "numpy load_file: names differ")
        for k, a in arrays.items():
            check(k in back and back[k].dtype == a.dtype and back[k].shape == a.shape
                  and back[k].tobytes() == a.tobytes(), f"numpy load_file: {k} differs")
        with open(path, "rb") as f:
            hlen = int.from_bytes(f.read(8), "little")
        check(hlen % 8 == 0, f"header length {hlen} not a multiple of 8")
        if torch is not None:
            tb = safetensors.torch.load_file(path)
            for k, a in arrays.items():
                check(k in tb and np.array_equal(tb[k].numpy(), a), f"torch load_file: {k} differs")

            # A real module's state dict, saved by C, is accepted strictly.
            torch.manual_seed(0)
            def make_module():
                return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4),
                                           torch.nn.Linear(4, 5))
            module = make_module()
            module[1].num_batches_tracked.fill_(7)
            state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
            path = os.path.join(work, "state.safetensors")
            check(c_save(exe, work, path, state) == RC_OK, "state dict: rc_st_save failed")
            fresh = make_module()
            try:
                fresh.load_state_dict(safetensors.torch.load_file(path), strict=True)
                same = all(torch.equal(fresh.state_dict()[k], v) for k, v in module.state_dict().items())
                check(same, "state dict: values differ after load_state_dict")
            except RuntimeError as e:
                check(False, f"state dict: load_state_dict(strict=True) refused the file: {e}")

            # Dtypes the runtime does not handle are refused, not misread.
            for dt in (torch.bfloat16, torch.float16):
                path = os.path.join(work, "half.safetensors")
                safetensors.torch.save_file({"fc.bias": torch.zeros(10, dtype=dt)}, path)
                rc, _ = c_load(exe, work, path, {"fc.bias": (RC_F32, (10,))})
                check(rc == RC_ERR_DTYPE, f"{dt} file: rc_st_load returned {rc}, want {RC_ERR_DTYPE}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{checks - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

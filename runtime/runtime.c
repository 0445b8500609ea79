/*
 * The C runtime shared by every generated NAME.c and by the trainer
 * (runtime/trainer.c): error codes and their messages, safetensors reading
 * and saving, atomic file replacement, and the seeded generator behind
 * NAME_init_params. It is plain C, not a template: the emitter places its
 * text verbatim into each generated file (which stays standalone), and the
 * trainer, the C tests and the fuzz targets #include it. One reader, then,
 * is the one that is tested and fuzzed.
 *
 * Every symbol is static because the generated file exports only its API,
 * and marked RC_UNUSED because a given user need not call every helper.
 * There is no mutable global state (the generated library is re-entrant), so
 * all state, the generator's included, is passed in explicitly. The includer
 * defines _POSIX_C_SOURCE 200809L before any system header.
 *
 * safetensors (https://github.com/huggingface/safetensors) is an 8-byte
 * little-endian header length N, N bytes of UTF-8 JSON giving each tensor's
 * dtype, shape and byte range, then the little-endian C-order data. Loading
 * is all-or-nothing: the whole file is read once and checked, values
 * included, before a single byte reaches the model, so a bad file never
 * leaves it half-loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/types.h>

#if defined(__GNUC__) || defined(__clang__)
#define RC_UNUSED __attribute__((unused))
#else
#define RC_UNUSED
#endif

/* ---------------------------------------------------------------- errors */

#define RC_OK                0     /* success */
#define RC_ERR_NULL         (-1)  /* a required pointer argument is NULL */
#define RC_ERR_BATCH        (-2)  /* batch size n outside 1..max_batch */
#define RC_ERR_NOMEM        (-3)  /* out of memory */
#define RC_ERR_OPEN         (-4)  /* cannot open file */
#define RC_ERR_TRUNCATED    (-5)  /* file shorter than its header says, or a read error */
#define RC_ERR_FORMAT       (-6)  /* not a valid safetensors file */
#define RC_ERR_NAME_UNKNOWN (-7)  /* file has a tensor the model does not have */
#define RC_ERR_NAME_MISSING (-8)  /* a tensor the model needs is absent */
#define RC_ERR_DTYPE        (-9)  /* tensor has the wrong dtype */
#define RC_ERR_SHAPE        (-10) /* tensor has the wrong shape */
#define RC_ERR_WRITE        (-11) /* cannot write or rename the output */
#define RC_ERR_LABEL        (-12) /* label outside 0..classes-1 */
#define RC_ERR_NONFINITE    (-13) /* NaN/Inf in a weight file, or a non-finite loss */
#define RC_ERR_ARG          (-14) /* invalid argument value */
#define RC_ERR_CHANGED      (-15) /* the file changed while it was being read */
#define RC_ERR_ALLREDUCE    (-16) /* the all-reduce hook returned an error */
#define RC_ERR_NOTRAIN      (-17) /* the model was built by create_in without training state */

/// One line of English for every code the generated API can return.
RC_UNUSED static const char *rc_strerror(int code)
{
    switch (code) {
    case RC_OK:               return "success";
    case RC_ERR_NULL:         return "a required pointer argument is NULL";
    case RC_ERR_BATCH:        return "batch size is outside 1..max_batch";
    case RC_ERR_NOMEM:        return "out of memory";
    case RC_ERR_OPEN:         return "cannot open file";
    case RC_ERR_TRUNCATED:    return "file is truncated (shorter than its header says) or could not be read";
    case RC_ERR_FORMAT:       return "not a valid safetensors file (bad header length, JSON, offsets or duplicate names)";
    case RC_ERR_NAME_UNKNOWN: return "file contains a tensor the model does not have";
    case RC_ERR_NAME_MISSING: return "file lacks a tensor the model needs";
    case RC_ERR_DTYPE:        return "tensor has the wrong dtype";
    case RC_ERR_SHAPE:        return "tensor has the wrong shape";
    case RC_ERR_WRITE:        return "cannot write or rename the output file";
    case RC_ERR_LABEL:        return "label is outside 0..classes-1";
    case RC_ERR_NONFINITE:    return "non-finite value (NaN or Inf in weights, or non-finite loss)";
    case RC_ERR_ARG:          return "invalid argument value";
    case RC_ERR_CHANGED:      return "file changed while it was being read (written by another process?)";
    case RC_ERR_ALLREDUCE:    return "the all-reduce hook (set_allreduce) returned an error";
    case RC_ERR_NOTRAIN:      return "model has no training state (built by create_in with training = 0)";
    default:                  return "unknown error code";
    }
}

/* ------------------------------------------- data-parallel training hook */

/* The caller's all-reduce (NAME_set_allreduce): sums `count` floats in place
 * across `replicas` models, each training on its shard of the batch. fn NULL
 * or replicas 1 is one process: the reductions are skipped. A failed call is
 * remembered and the step's later reductions are skipped (the step then
 * fails as a whole, before anything reaches the model). */
typedef int (*rc_allreduce_fn)(float *data, size_t count, void *ctx);
typedef struct {
    rc_allreduce_fn fn;
    void *ctx;
    int replicas;
    int failed;
    /* Set by a training step with replicas (else lo is NULL): the gradient
     * kernels store each gradient's double sum as grads[i] (its float) and
     * lo[i] (what that rounding lost, exactly), and rc_allreduce_grads sums
     * the two across replicas exactly, through tmp (tmp_floats floats). */
    float *grads, *lo, *tmp;
    size_t tmp_floats;
} rc_reducer;

/* The replicas whose batches make up the global one: 1 without a hook. */
RC_UNUSED static int rc_replicas(const rc_reducer *r)
{
    return r->fn && r->replicas > 1 ? r->replicas : 1;
}

RC_UNUSED static void rc_allreduce(rc_reducer *r, float *data, size_t count)
{
    if (rc_replicas(r) == 1 || r->failed || count == 0) return;
    if (r->fn(data, count, r->ctx) != 0) r->failed = 1;
}

/* 2^k as a double, for -1022 <= k <= 1023 (no libm). */
RC_UNUSED static double rc_pow2(int k)
{
    const uint64_t bits = (uint64_t)(k + 1023) << 52;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* A quiet NaN (no math.h). */
RC_UNUSED static double rc_quiet_nan(void)
{
    const uint64_t bits = 0x7FF8000000000000u;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* The k with 2^(k-1) <= |v| < 2^k, for a finite v != 0 (subnormals: -1021). */
RC_UNUSED static int rc_exponent(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    const int e = (int)((bits >> 52) & 0x7FF);
    return e == 0 ? -1021 : e - 1022;
}

/* Exact sums across replicas, whatever order the hook adds in, in two calls
 * per batch of values. The first sums |v| as floats, giving every value a
 * scale 2^E above twice its sum over replicas (the same on every replica,
 * since the hook returns the same sums everywhere); the second sums each
 * value as an integer multiple of 2^(E−62) in four 16-bit pieces, which
 * floats add without rounding for up to 256 replicas. The global sum then has
 * the same bits in any order of addition, within replicas · 2^−62 of its
 * scale (each replica's value is rounded once), far below a float's rounding:
 * a replica's share reaches the sum as the value it computed, and the sum
 * rounds to the float one model gets from its own (double) sum over the whole
 * batch. Sums beyond float's range (3.4e38) come back NaN. */

/* E for a summed |v| of s (2000: not finite). 2^E > 2·s >= the sum of |v|
 * over replicas (each float rounds by at most 2^−24); E at least −960, so
 * that 2^(E−62) stays normal. */
RC_UNUSED static int rc_fixed_scale(float s)
{
    const double d = (double)s;
    if (!(d < 1e300)) return 2000;  /* Inf and NaN too */
    const int e = d > 0.0 ? rc_exponent(d) + 1 : -960;
    return e < -960 ? -960 : e;
}

/* round(v · 2^(62−e)): |v| < 2^(e−1) gives |q| < 2^61. */
RC_UNUSED static int64_t rc_fixed(double v, int e)
{
    if (e > 1000) return 0;
    const double t = v * rc_pow2(62 - e);
    return (int64_t)(t < 0.0 ? t - 0.5 : t + 0.5);
}

/* q as four 16-bit pieces (the last signed) at p[0], p[stride], p[2·stride], p[3·stride]. */
RC_UNUSED static void rc_fixed_split(int64_t q, float *p, size_t stride)
{
    p[0] = (float)(q & 0xFFFF);
    p[stride] = (float)((q >> 16) & 0xFFFF);
    p[2 * stride] = (float)((q >> 32) & 0xFFFF);
    p[3 * stride] = (float)(q >> 48);
}

/* The value of four summed pieces at scale e (NaN for e = 2000). */
RC_UNUSED static double rc_fixed_join(const float *p, size_t stride, int e)
{
    if (e > 1000) return rc_quiet_nan();
    const int64_t q = (int64_t)p[0] + (int64_t)p[stride] * 65536 + (int64_t)p[2 * stride] * 4294967296
                      + (int64_t)p[3 * stride] * 281474976710656;
    return (double)q * rc_pow2(e - 62);
}

/* Sums `count` doubles across replicas exactly (above). tmp holds 4·count
 * floats. (Above 256 replicas: one float sum.) */
RC_UNUSED static void rc_allreduce_doubles(rc_reducer *r, double *v, float *tmp, size_t count)
{
    if (rc_replicas(r) == 1 || r->failed || count == 0) return;
    if (r->replicas > 256) {
        for (size_t i = 0; i < count; i++) tmp[i] = (float)v[i];
        rc_allreduce(r, tmp, count);
        for (size_t i = 0; i < count; i++) v[i] = (double)tmp[i];
        return;
    }
    for (size_t i = 0; i < count; i++) tmp[i] = (float)(v[i] < 0.0 ? -v[i] : v[i]);
    rc_allreduce(r, tmp, count);
    if (r->failed) return;
    /* v[i] keeps E until the pieces are back. */
    for (size_t i = 0; i < count; i++) {
        const int e = rc_fixed_scale(tmp[i]);
        rc_fixed_split(rc_fixed(v[i], e), tmp + i, count);
        v[i] = (double)e;
    }
    rc_allreduce(r, tmp, 4 * count);
    if (r->failed) return;
    for (size_t i = 0; i < count; i++) v[i] = rc_fixed_join(tmp + i, count, (int)v[i]);
}

/* A gradient kernel's result: element i of dst (in r->grads) is the double
 * sum v. With replicas, what rounding v to float lost is kept too, exactly,
 * in r->lo at the gradient's offset: v − hi is a multiple of 2^(k−54) below
 * 2^(k−25) in size (2^(k−1) <= |hi| < 2^k), so an int32 count of those units
 * (its bytes in the float slot; 0 where hi is not a normal float). Then
 * rc_allreduce_grads sums v itself. */
RC_UNUSED static inline void rc_grad_store(const rc_reducer *r, float *dst, size_t i, double v)
{
    const float hi = (float)v;
    dst[i] = hi;
    if (r && r->lo) {
        const double h = (double)hi;
        int32_t units = 0;
        const double size = h < 0.0 ? -h : h;
        if (size >= 0x1p-126 && size < 1e300)  /* a normal float (else nothing worth keeping is lost) */
            units = (int32_t)((v - h) * rc_pow2(54 - rc_exponent(h)));  /* exact: v − h and the count */
        memcpy(r->lo + (size_t)(dst - r->grads) + i, &units, sizeof units);
    }
}

/* What rounding gradient g to float lost, from its slot in r->lo. */
RC_UNUSED static double rc_grad_rest(float g, const float *slot)
{
    int32_t units;
    memcpy(&units, slot, sizeof units);
    const double h = (double)g;
    return units == 0 ? 0.0 : (double)units * rc_pow2(rc_exponent(h) - 54);
}

/* Sums the gradients g[0..count) (a range of r->grads) across replicas: with
 * what their rounding lost (r->lo), exactly, in batches of tmp_floats / 5;
 * without, as floats. */
RC_UNUSED static void rc_allreduce_grads(rc_reducer *r, float *g, size_t count)
{
    if (rc_replicas(r) == 1 || r->failed || count == 0) return;
    if (!r->lo || r->replicas > 256 || r->tmp_floats < 5) {
        rc_allreduce(r, g, count);
        return;
    }
    const float *lo = r->lo + (size_t)(g - r->grads);
    const size_t batch = r->tmp_floats / 5;
    for (size_t c0 = 0; c0 < count && !r->failed; c0 += batch) {
        const size_t c = count - c0 < batch ? count - c0 : batch;
        float *s = r->tmp, *p = r->tmp + c;
        for (size_t i = 0; i < c; i++) {
            const double a = (double)g[c0 + i], b = rc_grad_rest(g[c0 + i], lo + c0 + i);
            s[i] = (float)((a < 0.0 ? -a : a) + (b < 0.0 ? -b : b));
        }
        rc_allreduce(r, s, c);
        if (r->failed) return;
        for (size_t i = 0; i < c; i++) {
            const int e = rc_fixed_scale(s[i]);
            rc_fixed_split(rc_fixed((double)g[c0 + i], e) + rc_fixed(rc_grad_rest(g[c0 + i], lo + c0 + i), e), p + i, c);
        }
        rc_allreduce(r, p, 4 * c);
        if (r->failed) return;
        for (size_t i = 0; i < c; i++) g[c0 + i] = (float)rc_fixed_join(p + i, c, rc_fixed_scale(s[i]));
    }
}

/* ------------------------------------------------------ tensor descriptor */

/* The dtypes a model holds, and (from RC_I32 on) the other safetensors
 * dtypes, known so that any file's layout can be checked. */
#define RC_F32 1
#define RC_I64 2
#define RC_I32 3
#define RC_U8 4
#define RC_F64 5
#define RC_F16 6
#define RC_BF16 7
#define RC_I16 8
#define RC_I8 9
#define RC_U16 10
#define RC_U32 11
#define RC_U64 12
#define RC_BOOL 13
#define RC_F8_E4M3 14
#define RC_F8_E5M2 15

/// A named tensor as the model holds it; load writes into `data`, save reads it.
typedef struct {
    const char *name;   /* full tensor name, e.g. "layer1.0.conv1.weight" */
    int dtype;          /* RC_F32 or RC_I64 */
    int ndim;           /* 0..4 (0 = scalar, shape [] in the file) */
    int64_t shape[4];
    void *data;         /* load: destination; save: source. numel = product of shape (1 for ndim 0) */
    int optional;       /* load only: the file may omit it (data then left unchanged) */
} rc_tensor;

/* Past this a header is surely corrupt; real ones are kilobytes. Bounding it
 * also bounds what a hostile file can make us allocate before any check. */
#define RC_ST_MAX_HEADER ((uint64_t)100 << 20)

/* Deep enough for any metadata anyone writes, shallow enough that recursion
 * on a hostile header cannot exhaust the stack. */
#define RC_JSON_MAX_DEPTH 64

/* ------------------------------------------------- overflow-checked sizes */

/* Sizes from a file are untrusted, so every product and sum is checked:
 * a wrapped size would turn a huge claimed tensor into a small one. */
RC_UNUSED static int rc_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

RC_UNUSED static int rc_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b > UINT64_MAX - a) return 0;
    *out = a + b;
    return 1;
}

RC_UNUSED static int rc_fits_size(uint64_t v)
{
#if SIZE_MAX < UINT64_MAX
    return v <= SIZE_MAX;
#else
    (void)v;
    return 1;
#endif
}

/* Decided at run time so no endianness macro is needed; compilers fold it. */
RC_UNUSED static int rc_host_is_le(void)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

RC_UNUSED static const struct { const char *name; int dtype; size_t size; } rc_dtypes[] = {
    { "F32", RC_F32, 4 }, { "I64", RC_I64, 8 }, { "I32", RC_I32, 4 }, { "U8", RC_U8, 1 },
    { "F64", RC_F64, 8 }, { "F16", RC_F16, 2 }, { "BF16", RC_BF16, 2 }, { "I16", RC_I16, 2 },
    { "I8", RC_I8, 1 }, { "U16", RC_U16, 2 }, { "U32", RC_U32, 4 }, { "U64", RC_U64, 8 },
    { "BOOL", RC_BOOL, 1 }, { "F8_E4M3", RC_F8_E4M3, 1 }, { "F8_E5M2", RC_F8_E5M2, 1 },
};

/* Bytes per element of dtype, 0 for an unknown code. */
RC_UNUSED static size_t rc_dtype_size(int dtype)
{
    for (size_t i = 0; i < sizeof rc_dtypes / sizeof rc_dtypes[0]; i++)
        if (rc_dtypes[i].dtype == dtype) return rc_dtypes[i].size;
    return 0;
}

/* The dtype code of the len-byte name s, 0 if it is not a safetensors dtype. */
RC_UNUSED static int rc_dtype_named(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof rc_dtypes / sizeof rc_dtypes[0]; i++)
        if (len == strlen(rc_dtypes[i].name) && memcmp(s, rc_dtypes[i].name, len) == 0) return rc_dtypes[i].dtype;
    return 0;
}

/* The name of dtype code, "?" for an unknown one. */
RC_UNUSED static const char *rc_dtype_name(int dtype)
{
    for (size_t i = 0; i < sizeof rc_dtypes / sizeof rc_dtypes[0]; i++)
        if (rc_dtypes[i].dtype == dtype) return rc_dtypes[i].name;
    return "?";
}

/* Copies n bytes of elements of size es, reversing each element's bytes.
 * Converts between the file's little-endian order and a big-endian host. */
RC_UNUSED static void rc_copy_swapped(unsigned char *dst, const unsigned char *src, size_t n, size_t es)
{
    for (size_t i = 0; i + es <= n; i += es)
        for (size_t b = 0; b < es; b++)
            dst[i + b] = src[i + es - 1 - b];
}

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the well-formed UTF-8 sequence at p (at most `avail` bytes), or
 * 0 if it is malformed, overlong, a surrogate, or past U+10FFFF. */
RC_UNUSED static size_t rc_utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
    size_t n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;        /* overlong */
        if (c == 0xED) hi = 0x9F;        /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;        /* overlong */
        if (c == 0xF4) hi = 0x8F;        /* past U+10FFFF */
    } else return 0;
    if (avail < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

/* Writes code point cp as UTF-8 at w and returns the byte count. */
RC_UNUSED static size_t rc_utf8_put(char *w, uint32_t cp)
{
    if (cp < 0x80) {
        w[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        w[0] = (char)(0xC0 | (cp >> 6));
        w[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        w[0] = (char)(0xE0 | (cp >> 12));
        w[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        w[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    w[0] = (char)(0xF0 | (cp >> 18));
    w[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    w[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    w[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* -------------------------------------------------------------- JSON read */

/*
 * A strict JSON reader over the header bytes, just big enough for
 * safetensors. Strings are decoded in place: an escape never decodes to more
 * bytes than it occupies, so the decoded text always trails the read cursor
 * and no allocation is needed. Decoded strings carry a length because
 * \u0000 may put a NUL inside a name. Each reader returns 1 on success and
 * 0 on malformed input.
 */
typedef struct {
    char *p;            /* next unread byte */
    char *end;          /* one past the header */
} rc_json;

RC_UNUSED static void rc_json_ws(rc_json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* Consumes punctuation c (after whitespace) if it is next. */
RC_UNUSED static int rc_json_eat(rc_json *j, char c)
{
    rc_json_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}

RC_UNUSED static int rc_json_peek(rc_json *j, char c)
{
    rc_json_ws(j);
    return j->p < j->end && *j->p == c;
}

RC_UNUSED static int rc_json_hex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        uint32_t d;
        if (c >= '0' && c <= '9') d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (uint32_t)(c - 'A' + 10);
        else return 0;
        v = v * 16 + d;
    }
    *out = v;
    return 1;
}

/* Reads a string, decoding escapes in place; s and len give the decoded text. */
RC_UNUSED static int rc_json_string(rc_json *j, const char **s, size_t *len)
{
    if (!rc_json_eat(j, '"')) return 0;
    char *w = j->p;
    const char *start = w;
    for (;;) {
        if (j->p >= j->end) return 0;
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            break;
        }
        if (c < 0x20) return 0;             /* raw control characters are not JSON */
        if (c >= 0x80) {
            size_t n = rc_utf8_seq((const unsigned char *)j->p, (size_t)(j->end - j->p));
            if (n == 0) return 0;
            memmove(w, j->p, n);
            w += n;
            j->p += n;
            continue;
        }
        if (c != '\\') {
            *w++ = *j->p++;
            continue;
        }
        if (j->end - j->p < 2) return 0;
        char e = j->p[1];
        j->p += 2;
        switch (e) {
        case '"':  *w++ = '"';  break;
        case '\\': *w++ = '\\'; break;
        case '/':  *w++ = '/';  break;
        case 'b':  *w++ = '\b'; break;
        case 'f':  *w++ = '\f'; break;
        case 'n':  *w++ = '\n'; break;
        case 'r':  *w++ = '\r'; break;
        case 't':  *w++ = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (j->end - j->p < 4 || !rc_json_hex4(j->p, &cp)) return 0;
            j->p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return 0;         /* lone low surrogate */
            if (cp >= 0xD800 && cp <= 0xDBFF) {                 /* needs its low half */
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
                    !rc_json_hex4(j->p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return 0;
                j->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            w += rc_utf8_put(w, cp);
            break;
        }
        default:
            return 0;
        }
    }
    *s = start;
    *len = (size_t)(w - start);
    return 1;
}

/* Reads a non-negative integer that fits in uint64_t. Shapes and offsets are
 * always written as plain integers, so a sign, fraction or exponent means a
 * corrupt header rather than something to round. */
RC_UNUSED static int rc_json_uint(rc_json *j, uint64_t *out)
{
    rc_json_ws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return 0;
    uint64_t v = 0;
    if (*j->p == '0') {
        j->p++;                              /* JSON forbids leading zeros */
    } else {
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            if (!rc_mul_u64(v, 10, &v) || !rc_add_u64(v, (uint64_t)(*j->p - '0'), &v)) return 0;
            j->p++;
        }
    }
    if (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return 0;
    *out = v;
    return 1;
}

RC_UNUSED static int rc_json_digits(rc_json *j)
{
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    return 1;
}

/* Skips any JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
RC_UNUSED static int rc_json_skip_number(rc_json *j)
{
    if (j->p < j->end && *j->p == '-') j->p++;
    if (j->p < j->end && *j->p == '0') j->p++;
    else if (!rc_json_digits(j)) return 0;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!rc_json_digits(j)) return 0;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (!rc_json_digits(j)) return 0;
    }
    return 1;
}

RC_UNUSED static int rc_json_word(rc_json *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) return 0;
    j->p += n;
    return 1;
}

/* Skips one value of any kind, checking that it is well-formed. */
RC_UNUSED static int rc_json_skip(rc_json *j, int depth)
{
    const char *s;
    size_t len;
    if (depth > RC_JSON_MAX_DEPTH) return 0;
    rc_json_ws(j);
    if (j->p >= j->end) return 0;
    switch (*j->p) {
    case '{':
        j->p++;
        if (rc_json_eat(j, '}')) return 1;
        do {
            if (!rc_json_string(j, &s, &len) || !rc_json_eat(j, ':') || !rc_json_skip(j, depth + 1))
                return 0;
        } while (rc_json_eat(j, ','));
        return rc_json_eat(j, '}');
    case '[':
        j->p++;
        if (rc_json_eat(j, ']')) return 1;
        do {
            if (!rc_json_skip(j, depth + 1)) return 0;
        } while (rc_json_eat(j, ','));
        return rc_json_eat(j, ']');
    case '"': return rc_json_string(j, &s, &len);
    case 't': return rc_json_word(j, "true");
    case 'f': return rc_json_word(j, "false");
    case 'n': return rc_json_word(j, "null");
    default:  return rc_json_skip_number(j);
    }
}

RC_UNUSED static int rc_str_is(const char *s, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

/* ------------------------------------------------- safetensors: the index */

/* Byte size of a descriptor that rc_st_index has already accepted (so the
 * product is known not to overflow). */
RC_UNUSED static uint64_t rc_tensor_bytes(const rc_tensor *d)
{
    uint64_t bytes = rc_dtype_size(d->dtype);
    for (int k = 0; k < d->ndim; k++) bytes *= (uint64_t)d->shape[k];
    return bytes;
}

/* A model tensor's name, for sorting and binary search. */
typedef struct {
    const char *name;
    size_t len;
    int index;          /* into the caller's t[] */
} rc_st_key;

/* Orders (name, len) pairs bytewise; shared by keys and file entries. */
RC_UNUSED static int rc_st_name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0) return c;
    return (alen > blen) - (alen < blen);
}

RC_UNUSED static int rc_st_key_cmp(const void *pa, const void *pb)
{
    const rc_st_key *a = pa, *b = pb;
    return rc_st_name_cmp(a->name, a->len, b->name, b->len);
}

/* Checks the caller's descriptors (they come from generated code, so a bad
 * one is a bug: RC_ERR_NULL / RC_ERR_ARG) and returns them sorted by name.
 * Sorting makes name lookup O(log n): ResNet-1202 checkpoints have
 * thousands of tensors. */
RC_UNUSED static int rc_st_index(const rc_tensor *t, int nt, rc_st_key **out)
{
    size_t n = (size_t)nt;
    rc_st_key *keys = malloc((n > 0 ? n : 1) * sizeof *keys);
    if (keys == NULL) return RC_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const rc_tensor *d = &t[i];
        uint64_t bytes = rc_dtype_size(d->dtype);
        if (d->name == NULL || d->data == NULL) {
            free(keys);
            return RC_ERR_NULL;
        }
        if ((d->dtype != RC_F32 && d->dtype != RC_I64) || d->ndim < 0 || d->ndim > 4 ||
            strcmp(d->name, "__metadata__") == 0) {
            free(keys);
            return RC_ERR_ARG;
        }
        for (int k = 0; k < d->ndim; k++) {
            if (d->shape[k] < 0 || !rc_mul_u64(bytes, (uint64_t)d->shape[k], &bytes)) {
                free(keys);
                return RC_ERR_ARG;
            }
        }
        if (!rc_fits_size(bytes) || bytes > (uint64_t)INT64_MAX) {
            free(keys);
            return RC_ERR_ARG;
        }
        keys[i].name = d->name;
        keys[i].len = strlen(d->name);
        keys[i].index = (int)i;
    }
    if (n > 1) qsort(keys, n, sizeof *keys, rc_st_key_cmp);
    for (size_t i = 1; i < n; i++) {
        if (rc_st_key_cmp(&keys[i - 1], &keys[i]) == 0) {
            free(keys);
            return RC_ERR_ARG;
        }
    }
    *out = keys;
    return RC_OK;
}

/* --------------------------------------------------- safetensors: reading */

/*
 * Reading is split so that the generated runtime and the trainer share every
 * check. A file is read into memory once (rc_read_file: its size and
 * times are compared before and after, so a file that changes meanwhile is
 * refused rather than half-new), its header parsed (rc_st_parse: syntax,
 * UTF-8, duplicate names), and its layout checked (rc_st_check_layout: each
 * range the size its dtype and shape say, inside the data, the ranges
 * disjoint and together covering the data without a hole, as the format
 * requires). The runtime matches names against the model between the last
 * two, so a misnamed or mis-shaped file is reported as that.
 */

/* Where a file under test may be changed between the read and the check
 * that it did not change; empty in generated code. */
#ifndef RC_ST_AFTER_READ
#define RC_ST_AFTER_READ(fd) ((void)0)
#endif

/* A tensor of more dimensions than this is still parsed and its layout
 * checked; only the first RC_ST_MAX_RANK extents are kept. */
#define RC_ST_MAX_RANK 8

/* One tensor entry of a file's header, as read. */
typedef struct {
    const char *name;   /* decoded in place inside the header buffer; may contain NUL */
    size_t name_len;
    int dtype;          /* RC_F32, RC_I64, ... or 0 for a dtype string not in rc_dtypes */
    int ndim;           /* extents in the file, counted up to RC_ST_MAX_RANK + 1 ("more") */
    uint64_t shape[RC_ST_MAX_RANK];
    uint64_t numel;     /* product of every extent, when numel_ok */
    int numel_ok;       /* 0: the product overflows uint64_t */
    uint64_t begin, end;/* data_offsets, relative to the data buffer */
    int model;          /* index into the caller's t[] once matched, else -1 */
} rc_st_entry;

/* Bytes of a message saying why a call failed (rc_st_file, NAME_last_error). */
#define RC_WHY_BYTES 256

/// A safetensors file in memory, parsed. Entries are sorted by name; their
/// names point into the header, which is decoded in place: in the file's own
/// bytes when f owns them, else in a copy of the header (the data is then
/// read where the caller keeps it, never written).
typedef struct {
    unsigned char *owned;       /* what rc_st_close frees: the whole file, or a copy of its header */
    size_t size;
    const unsigned char *data;  /* the data buffer: the file's bytes + 8 + header length */
    uint64_t data_len;
    rc_st_entry *entries;
    size_t count;
    char why[RC_WHY_BYTES];     /* what was wrong, in English, after a failed call */
} rc_st_file;

/* Records why a check failed (for the caller's messages) and returns code. */
RC_UNUSED static int rc_st_fail(rc_st_file *f, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->why, sizeof f->why, fmt, ap);
    va_end(ap);
    return code;
}

RC_UNUSED static int rc_st_entry_name_cmp(const void *pa, const void *pb)
{
    const rc_st_entry *a = pa, *b = pb;
    return rc_st_name_cmp(a->name, a->name_len, b->name, b->name_len);
}

/* Reads {"dtype": "...", "shape": [...], "data_offsets": [b, e]}. Unknown
 * keys are skipped, as the reference reader does; repeated or missing
 * required keys are malformed. */
RC_UNUSED static int rc_st_parse_entry(rc_json *j, rc_st_entry *e)
{
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (!rc_json_eat(j, '{') || rc_json_eat(j, '}')) return 0;
    do {
        const char *key, *s;
        size_t klen, slen;
        if (!rc_json_string(j, &key, &klen) || !rc_json_eat(j, ':')) return 0;
        if (rc_str_is(key, klen, "dtype")) {
            if (have_dtype++ || !rc_json_string(j, &s, &slen)) return 0;
            e->dtype = rc_dtype_named(s, slen);
        } else if (rc_str_is(key, klen, "shape")) {
            if (have_shape++ || !rc_json_eat(j, '[')) return 0;
            e->ndim = 0;
            e->numel = 1;
            e->numel_ok = 1;
            if (!rc_json_eat(j, ']')) {
                do {
                    uint64_t v;
                    if (!rc_json_uint(j, &v)) return 0;
                    if (e->ndim < RC_ST_MAX_RANK) e->shape[e->ndim] = v;
                    if (e->ndim <= RC_ST_MAX_RANK) e->ndim++;
                    if (e->numel_ok && !rc_mul_u64(e->numel, v, &e->numel)) e->numel_ok = 0;
                } while (rc_json_eat(j, ','));
                if (!rc_json_eat(j, ']')) return 0;
            }
        } else if (rc_str_is(key, klen, "data_offsets")) {
            if (have_offsets++ || !rc_json_eat(j, '[') || !rc_json_uint(j, &e->begin) ||
                !rc_json_eat(j, ',') || !rc_json_uint(j, &e->end) || !rc_json_eat(j, ']'))
                return 0;
        } else if (!rc_json_skip(j, 1)) {
            return 0;
        }
    } while (rc_json_eat(j, ','));
    return rc_json_eat(j, '}') && have_dtype && have_shape && have_offsets;
}

/* Parses the header's JSON (n bytes at buf) into f->entries. */
RC_UNUSED static int rc_st_parse_json(rc_st_file *f, char *buf, size_t n)
{
    rc_json j = { buf, buf + n };
    size_t cap = 0;
    int have_metadata = 0;
    if (!rc_json_eat(&j, '{')) goto bad;
    if (!rc_json_eat(&j, '}')) {
        do {
            const char *name;
            size_t len;
            if (!rc_json_string(&j, &name, &len) || !rc_json_eat(&j, ':')) goto bad;
            if (rc_str_is(name, len, "__metadata__")) {
                /* string→string by the spec; other values are skipped, not
                 * refused, since nothing here reads them */
                if (have_metadata++ || !rc_json_peek(&j, '{') || !rc_json_skip(&j, 1)) goto bad;
                continue;
            }
            if (f->count == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                rc_st_entry *grown;
                if (ncap > SIZE_MAX / sizeof *grown) return rc_st_fail(f, RC_ERR_NOMEM, "out of memory");
                grown = realloc(f->entries, ncap * sizeof *grown);
                if (grown == NULL) return rc_st_fail(f, RC_ERR_NOMEM, "out of memory");
                f->entries = grown;
                cap = ncap;
            }
            rc_st_entry *e = &f->entries[f->count++];
            memset(e, 0, sizeof *e);
            e->name = name;
            e->name_len = len;
            e->model = -1;
            if (!rc_st_parse_entry(&j, e)) goto bad;
        } while (rc_json_eat(&j, ','));
        if (!rc_json_eat(&j, '}')) goto bad;
    }
    rc_json_ws(&j);             /* writers pad the header with spaces */
    if (j.p != j.end) goto bad;
    return RC_OK;
bad:
    return rc_st_fail(f, RC_ERR_FORMAT, "malformed safetensors header (JSON) at header byte %zu",
                      (size_t)(j.p - buf));
}

/// Parses the file in bytes[0..size): the header length, the header as
/// UTF-8 JSON, and unique names. Entries end up sorted by name. `owned` is
/// either bytes itself, malloc'd memory that f takes over (freed by
/// rc_st_close, also after a failure), or NULL: bytes stays the caller's and
/// is only read (the header is decoded in a copy), so a const array of
/// embedded weights can be loaded in place.
RC_UNUSED static int rc_st_parse(rc_st_file *f, const unsigned char *bytes, size_t size, unsigned char *owned)
{
    memset(f, 0, sizeof *f);
    f->owned = owned;
    f->size = size;
    if (size < 8)
        return rc_st_fail(f, RC_ERR_TRUNCATED, "%zu bytes is shorter than the 8-byte header length", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | bytes[i];
    if (hlen < 2 || hlen > RC_ST_MAX_HEADER)
        return rc_st_fail(f, RC_ERR_FORMAT, "header length %" PRIu64 " is not plausible", hlen);
    if (hlen > (uint64_t)size - 8)
        return rc_st_fail(f, RC_ERR_TRUNCATED, "header length %" PRIu64 " is past the end of the %zu-byte file",
                          hlen, size);
    for (size_t i = 8; i < 8 + (size_t)hlen;) {
        size_t n = rc_utf8_seq(bytes + i, 8 + (size_t)hlen - i);
        if (n == 0) return rc_st_fail(f, RC_ERR_FORMAT, "header is not UTF-8 (header byte %zu)", i - 8);
        i += n;
    }
    f->data = bytes + 8 + hlen;
    f->data_len = (uint64_t)size - 8 - hlen;
    char *header;
    if (owned != NULL) {
        header = (char *)owned + 8;
    } else {
        /* hlen <= RC_ST_MAX_HEADER, and the file is that long: a real allocation */
        header = malloc((size_t)hlen);
        if (header == NULL) return rc_st_fail(f, RC_ERR_NOMEM, "out of memory for the %" PRIu64 "-byte header", hlen);
        memcpy(header, bytes + 8, (size_t)hlen);
        f->owned = (unsigned char *)header;
    }
    int rc = rc_st_parse_json(f, header, (size_t)hlen);
    if (rc != RC_OK) return rc;
    /* (A header with no tensors has entries == NULL, which qsort may not get.) */
    if (f->count > 1) qsort(f->entries, f->count, sizeof *f->entries, rc_st_entry_name_cmp);
    for (size_t i = 1; i < f->count; i++)
        if (rc_st_entry_name_cmp(&f->entries[i - 1], &f->entries[i]) == 0)
            return rc_st_fail(f, RC_ERR_FORMAT, "tensor '%.*s' appears twice in the header",
                              (int)(f->entries[i].name_len < 100 ? f->entries[i].name_len : 100), f->entries[i].name);
    return RC_OK;
}

RC_UNUSED static int rc_st_offset_cmp(const void *pa, const void *pb)
{
    const rc_st_entry *a = *(const rc_st_entry *const *)pa, *b = *(const rc_st_entry *const *)pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return 0;
}

/// Checks where the parsed tensors lie: each range holds exactly its dtype
/// and shape's bytes inside the data buffer, and the ranges, in file order,
/// follow each other from 0 to the end of the data, overlapping nothing and
/// leaving no hole (two tensors sharing bytes, or bytes that belong to none,
/// mean a corrupt or crafted file).
RC_UNUSED static int rc_st_check_layout(rc_st_file *f)
{
    for (size_t i = 0; i < f->count; i++) {
        const rc_st_entry *e = &f->entries[i];
        int shown = (int)(e->name_len < 100 ? e->name_len : 100);
        uint64_t bytes;
        if (rc_dtype_size(e->dtype) == 0)
            return rc_st_fail(f, RC_ERR_DTYPE, "tensor '%.*s' has a dtype this reader does not know", shown, e->name);
        if (!e->numel_ok || !rc_mul_u64(e->numel, rc_dtype_size(e->dtype), &bytes) || e->begin > e->end ||
            e->end - e->begin != bytes)
            return rc_st_fail(f, RC_ERR_FORMAT, "tensor '%.*s': data_offsets [%" PRIu64 ", %" PRIu64
                              "] do not span the bytes its dtype and shape need", shown, e->name, e->begin, e->end);
        if (e->end > f->data_len)
            return rc_st_fail(f, RC_ERR_TRUNCATED, "tensor '%.*s': data_offsets [%" PRIu64 ", %" PRIu64
                              "] lie outside the %" PRIu64 " data bytes (truncated file?)", shown, e->name,
                              e->begin, e->end, f->data_len);
    }
    const rc_st_entry **order = malloc((f->count > 0 ? f->count : 1) * sizeof *order);
    if (order == NULL) return rc_st_fail(f, RC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < f->count; i++) order[i] = &f->entries[i];
    if (f->count > 1) qsort(order, f->count, sizeof *order, rc_st_offset_cmp);
    uint64_t at = 0;
    int rc = RC_OK;
    for (size_t i = 0; i < f->count && rc == RC_OK; i++) {
        if (order[i]->begin != at)
            rc = rc_st_fail(f, RC_ERR_FORMAT, "tensor '%.*s' starts at data byte %" PRIu64 ", not %" PRIu64
                            " (tensors must follow each other without overlap or gap)",
                            (int)(order[i]->name_len < 100 ? order[i]->name_len : 100), order[i]->name,
                            order[i]->begin, at);
        at = order[i]->end;
    }
    free(order);
    if (rc == RC_OK && at != f->data_len)
        rc = rc_st_fail(f, RC_ERR_FORMAT, "%" PRIu64 " data bytes after the last tensor belong to no tensor",
                        f->data_len - at);
    return rc;
}

/* pread until n bytes arrive; end of file or an error is a truncated file. */
RC_UNUSED static int rc_pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    unsigned char *p = buf;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t got = pread(fd, p, chunk, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return RC_ERR_TRUNCATED;
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return RC_OK;
}

/* Whether two stats of one file show the same size and modification: the
 * POSIX seconds everywhere, and the nanoseconds where Linux has them. */
RC_UNUSED static int rc_same_file_state(const struct stat *a, const struct stat *b)
{
    int same = a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtime == b->st_mtime && a->st_ctime == b->st_ctime;
#ifdef __linux__
    same = same && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
#endif
    return same;
}

/// Reads the whole regular file at path into a malloc'd buffer, once. A
/// file whose size or times differ after the read from before it, or that
/// has grown past the size it had, was being written meanwhile:
/// RC_ERR_CHANGED, and nothing of it is used.
RC_UNUSED static int rc_read_file(const char *path, unsigned char **out, size_t *size)
{
    struct stat before, after;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return RC_ERR_OPEN;
    if (fstat(fd, &before) != 0 || !S_ISREG(before.st_mode)) {
        close(fd);
        return RC_ERR_OPEN;
    }
    if (before.st_size < 0 || !rc_fits_size((uint64_t)before.st_size) || (uint64_t)before.st_size == SIZE_MAX) {
        close(fd);
        return RC_ERR_NOMEM;
    }
    size_t n = (size_t)before.st_size;
    unsigned char *bytes = malloc(n + 1);
    if (bytes == NULL) {
        close(fd);
        return RC_ERR_NOMEM;
    }
    int rc = rc_pread_all(fd, bytes, n, 0);
    if (rc == RC_ERR_TRUNCATED) rc = RC_ERR_CHANGED;     /* shorter than fstat said */
    RC_ST_AFTER_READ(fd);
    if (rc == RC_OK) {
        ssize_t more;
        do more = pread(fd, bytes + n, 1, (off_t)n); while (more < 0 && errno == EINTR);
        if (more != 0 || fstat(fd, &after) != 0 || !rc_same_file_state(&before, &after)) rc = RC_ERR_CHANGED;
    }
    close(fd);
    if (rc != RC_OK) {
        free(bytes);
        return rc;
    }
    *out = bytes;
    *size = n;
    return RC_OK;
}

/// Frees what rc_st_parse (or rc_st_open) holds.
RC_UNUSED static void rc_st_close(rc_st_file *f)
{
    free(f->entries);
    free(f->owned);
    f->entries = NULL;
    f->owned = NULL;
    f->count = 0;
}

/// Reads, parses and checks the layout of a whole file (what the trainer
/// uses: it looks tensors up with rc_st_find). On failure f->why says what
/// was wrong; rc_st_close is needed either way.
RC_UNUSED static int rc_st_open(const char *path, rc_st_file *f)
{
    unsigned char *bytes = NULL;
    size_t size = 0;
    memset(f, 0, sizeof *f);
    int rc = rc_read_file(path, &bytes, &size);
    if (rc != RC_OK) return rc_st_fail(f, rc, "%s", rc_strerror(rc));
    rc = rc_st_parse(f, bytes, size, bytes);
    return rc == RC_OK ? rc_st_check_layout(f) : rc;
}

/// The entry named name (a C string), or NULL.
RC_UNUSED static const rc_st_entry *rc_st_find(const rc_st_file *f, const char *name)
{
    rc_st_entry probe;
    memset(&probe, 0, sizeof probe);
    probe.name = name;
    probe.name_len = strlen(name);
    if (f->count == 0) return NULL;
    return bsearch(&probe, f->entries, f->count, sizeof *f->entries, rc_st_entry_name_cmp);
}

/* --------------------------------------------------- safetensors: loading */

/* The index of the first little-endian F32 among the n bytes at p that is
 * NaN or ±Inf (all exponent bits set), or n / 4 when all are finite. Works
 * on the bits, so it needs no host float order. */
RC_UNUSED static size_t rc_first_nonfinite_f32(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i += 4) {
        uint32_t bits = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 |
                        (uint32_t)p[i + 2] << 16 | (uint32_t)p[i + 3] << 24;
        if ((bits & 0x7F800000u) == 0x7F800000u) return i / 4;
    }
    return n / 4;
}

/* Writes a shape as "[16,3,3,3]" into out (cap bytes, truncated safely);
 * `more`: the file had extents past these (an entry of rank > RC_ST_MAX_RANK). */
RC_UNUSED static void rc_shape_text(char *out, size_t cap, const uint64_t *shape, int ndim, int more)
{
    int used = snprintf(out, cap, "[");
    for (int d = 0; d < ndim && used >= 0 && (size_t)used < cap; d++)
        used += snprintf(out + used, cap - (size_t)used, "%s%" PRIu64, d > 0 ? "," : "", shape[d]);
    if (used >= 0 && (size_t)used < cap) snprintf(out + used, cap - (size_t)used, "%s]", more ? (ndim > 0 ? ",..." : "...") : "");
}

/// Loads the tensors t[0..nt) from a safetensors file in memory,
/// bytes[0..size), all or nothing: every name, dtype, shape, offset and F32
/// value is checked first; only a fully valid file is copied, so on any
/// error no `data` is touched. `owned`: bytes itself when it is malloc'd and
/// taken over (freed here), or NULL when it stays the caller's, read only
/// (see rc_st_parse). On failure why (cap bytes; may be NULL) says which
/// tensor and what was wrong, e.g. "conv1.weight: shape [16,3,3,3]
/// expected, file has [8,3,3,3]". NAME_load, NAME_load_buffer (and so
/// NAME_init_embedded) and NAME_load_checkpoint all come here.
RC_UNUSED static int rc_st_load_bytes(const unsigned char *bytes, size_t size, unsigned char *owned,
                                      const rc_tensor *t, int nt, char *why, size_t cap)
{
    rc_st_key *keys = NULL;
    unsigned char *found = NULL;
    rc_st_file f;
    int rc;

    memset(&f, 0, sizeof f);
    f.owned = owned;
    if ((t == NULL && nt > 0) || (bytes == NULL && size > 0)) {
        rc = rc_st_fail(&f, RC_ERR_NULL, "%s is NULL", bytes == NULL ? "the file's bytes" : "the tensor list");
        goto done;
    }
    if (nt < 0) {
        rc = rc_st_fail(&f, RC_ERR_ARG, "%d tensors", nt);
        goto done;
    }
    if ((rc = rc_st_index(t, nt, &keys)) != RC_OK) {
        rc_st_fail(&f, rc, "the model's tensor list is invalid: %s", rc_strerror(rc));
        goto done;
    }
    if ((rc = rc_st_parse(&f, bytes, size, owned)) != RC_OK) goto done;

    found = calloc((size_t)nt + 1, 1);
    if (found == NULL) { rc = rc_st_fail(&f, RC_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < f.count; i++) {
        rc_st_entry *e = &f.entries[i];
        const int shown = (int)(e->name_len < 100 ? e->name_len : 100);
        rc_st_key probe = { e->name, e->name_len, 0 };
        const rc_st_key *k = bsearch(&probe, keys, (size_t)nt, sizeof *keys, rc_st_key_cmp);
        if (k == NULL) { rc = rc_st_fail(&f, RC_ERR_NAME_UNKNOWN, "%.*s: not in the model", shown, e->name); goto done; }
        const rc_tensor *m = &t[k->index];
        if (e->dtype != m->dtype) {
            rc = rc_st_fail(&f, RC_ERR_DTYPE, "%s: dtype %s expected, file has %s", m->name, rc_dtype_name(m->dtype),
                            e->dtype == 0 ? "one this reader does not know" : rc_dtype_name(e->dtype));
            goto done;
        }
        int same = e->ndim == m->ndim;
        for (int d = 0; same && d < m->ndim; d++) same = e->shape[d] == (uint64_t)m->shape[d];
        if (!same) {
            uint64_t want[4];
            char a[64], b[96];
            for (int d = 0; d < m->ndim; d++) want[d] = (uint64_t)m->shape[d];
            rc_shape_text(a, sizeof a, want, m->ndim, 0);
            rc_shape_text(b, sizeof b, e->shape, e->ndim < RC_ST_MAX_RANK ? e->ndim : RC_ST_MAX_RANK, e->ndim > RC_ST_MAX_RANK);
            rc = rc_st_fail(&f, RC_ERR_SHAPE, "%s: shape %s expected, file has %s", m->name, a, b);
            goto done;
        }
        e->model = k->index;
        found[k->index] = 1;
    }
    for (int i = 0; i < nt; i++)
        if (!found[i] && !t[i].optional) { rc = rc_st_fail(&f, RC_ERR_NAME_MISSING, "%s: missing from the file", t[i].name); goto done; }
    if ((rc = rc_st_check_layout(&f)) != RC_OK) goto done;
    for (size_t i = 0; i < f.count; i++) {
        const rc_st_entry *e = &f.entries[i];
        const size_t n = (size_t)(e->end - e->begin);
        const size_t at = e->dtype == RC_F32 ? rc_first_nonfinite_f32(f.data + e->begin, n) : n / 4;
        if (at < n / 4) {
            rc = rc_st_fail(&f, RC_ERR_NONFINITE, "%s: element %zu is not finite (NaN or Inf)", t[e->model].name, at);
            goto done;
        }
    }

    /* Valid throughout: only now touch the model. */
    int le = rc_host_is_le();
    for (size_t i = 0; i < f.count; i++) {
        const rc_st_entry *e = &f.entries[i];
        size_t n = (size_t)(e->end - e->begin);
        if (le) memcpy(t[e->model].data, f.data + e->begin, n);
        else rc_copy_swapped(t[e->model].data, f.data + e->begin, n, rc_dtype_size(e->dtype));
    }
    rc = RC_OK;

done:
    if (rc != RC_OK && why != NULL && cap > 0) snprintf(why, cap, "%s", f.why);
    rc_st_close(&f);
    free(found);
    free(keys);
    return rc;
}

/// Loads the tensors t[0..nt) from the safetensors file at path, all or
/// nothing (see rc_st_load_bytes, and why). The file is read into memory
/// once, so what is checked is what is loaded.
RC_UNUSED static int rc_st_load(const char *path, const rc_tensor *t, int nt, char *why, size_t cap)
{
    unsigned char *bytes = NULL;
    size_t size = 0;
    int rc = RC_OK;
    if (path == NULL || (t == NULL && nt > 0)) rc = RC_ERR_NULL;
    else if (nt < 0) rc = RC_ERR_ARG;
    else rc = rc_read_file(path, &bytes, &size);
    if (rc != RC_OK) {
        if (why != NULL && cap > 0) snprintf(why, cap, "%s: %s", path != NULL ? path : "(NULL path)", rc_strerror(rc));
        return rc;
    }
    return rc_st_load_bytes(bytes, size, bytes, t, nt, why, cap);
}

/* ---------------------------------------------------- safetensors: saving */

/* A growing byte buffer; `failed` latches the first allocation failure so
 * the header can be built without checking every append. */
typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} rc_sbuf;

RC_UNUSED static void rc_sbuf_add(rc_sbuf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (n > SIZE_MAX - b->len) { b->failed = 1; return; }
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n) {
            if (ncap > SIZE_MAX / 2) { b->failed = 1; return; }
            ncap *= 2;
        }
        char *grown = realloc(b->p, ncap);
        if (grown == NULL) { b->failed = 1; return; }
        b->p = grown;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

RC_UNUSED static void rc_sbuf_str(rc_sbuf *b, const char *s)
{
    rc_sbuf_add(b, s, strlen(s));
}

RC_UNUSED static void rc_sbuf_u64(rc_sbuf *b, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRIu64, v);
    rc_sbuf_add(b, num, (size_t)n);
}

/* Appends name as a JSON string. Returns 0 if it is not valid UTF-8, which
 * no JSON reader would accept. */
RC_UNUSED static int rc_sbuf_json_string(rc_sbuf *b, const char *name)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t left = strlen(name);
    rc_sbuf_add(b, "\"", 1);
    while (left > 0) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = { '\\', (char)*p };
            rc_sbuf_add(b, esc, 2);
        } else if (*p < 0x20) {
            char esc[8];
            int n = snprintf(esc, sizeof esc, "\\u%04x", (unsigned)*p);
            rc_sbuf_add(b, esc, (size_t)n);
        } else {
            size_t n = rc_utf8_seq(p, left);
            if (n == 0) return 0;
            rc_sbuf_add(b, (const char *)p, n);
            p += n;
            left -= n;
            continue;
        }
        p++;
        left--;
    }
    rc_sbuf_add(b, "\"", 1);
    return 1;
}

/* write() until all n bytes are out. */
RC_UNUSED static int rc_write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t put = write(fd, p, chunk);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) return 0;
        p += put;
        n -= (size_t)put;
    }
    return 1;
}

/* Writes n bytes of host-order elements of size es in little-endian order. */
RC_UNUSED static int rc_write_le(int fd, const void *data, size_t n, size_t es)
{
    if (rc_host_is_le()) return rc_write_all(fd, data, n);
    const unsigned char *src = data;
    unsigned char chunk[4096];          /* a multiple of every element size */
    while (n > 0) {
        size_t m = n < sizeof chunk ? n : sizeof chunk;
        rc_copy_swapped(chunk, src, m, es);
        if (!rc_write_all(fd, chunk, m)) return 0;
        src += m;
        n -= m;
    }
    return 1;
}

/* Best effort: makes the rename itself durable. A failure here does not
 * undo a completed save, so it is not reported. */
RC_UNUSED static void rc_fsync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(n + 2);
    if (dir == NULL) return;
    if (n == 0) strcpy(dir, ".");
    else {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/// A file being replaced atomically: written under a temporary name beside
/// its target, then synced and renamed over it, so that the target is at
/// every moment either its old contents or the complete new ones (a process
/// killed meanwhile leaves at worst a stray temporary file).
typedef struct {
    int fd;             /* the temporary file, -1 when none is open */
    char *tmp;          /* its name */
} rc_atomic;

/// Creates the temporary file for replacing path.
RC_UNUSED static int rc_atomic_begin(rc_atomic *a, const char *path)
{
    /* pid separates processes and the address of a local separates threads
     * of one process; O_EXCL settles anything left over. */
    size_t cap = strlen(path) + 64;
    a->fd = -1;
    a->tmp = malloc(cap);
    if (a->tmp == NULL) return RC_ERR_NOMEM;
    unsigned char anchor = 0;
    for (unsigned attempt = 0; attempt < 100; attempt++) {
        snprintf(a->tmp, cap, "%s.tmp.%ld.%" PRIxPTR ".%u", path, (long)getpid(),
                 (uintptr_t)(void *)&anchor, attempt);
        a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (a->fd >= 0 || errno != EEXIST) break;
    }
    if (a->fd < 0) {
        free(a->tmp);
        a->tmp = NULL;
        return RC_ERR_WRITE;
    }
    return RC_OK;
}

/// Gives up a replacement: the temporary file is removed, the target untouched.
/// Keeps errno, so a caller can still report why it gave up.
RC_UNUSED static void rc_atomic_abort(rc_atomic *a)
{
    int saved = errno;
    if (a->fd >= 0) close(a->fd);
    if (a->tmp != NULL) unlink(a->tmp);
    free(a->tmp);
    a->fd = -1;
    a->tmp = NULL;
    errno = saved;
}

/// Finishes a replacement whose contents are all written: fsync, close,
/// rename over path, fsync of the directory. On failure the temporary file
/// is removed and path is as it was.
RC_UNUSED static int rc_atomic_commit(rc_atomic *a, const char *path)
{
    if (fsync(a->fd) != 0) {
        rc_atomic_abort(a);
        return RC_ERR_WRITE;
    }
    int closed = close(a->fd);
    a->fd = -1;
    if (closed != 0 || rename(a->tmp, path) != 0) {
        rc_atomic_abort(a);
        return RC_ERR_WRITE;
    }
    free(a->tmp);
    a->tmp = NULL;                      /* renamed: nothing to remove */
    rc_fsync_parent_dir(path);
    return RC_OK;
}

/// Replaces the file at path by the n bytes at p, atomically (rc_atomic).
RC_UNUSED static int rc_write_file_atomic(const char *path, const void *p, size_t n)
{
    rc_atomic a;
    if (path == NULL || (p == NULL && n > 0)) return RC_ERR_NULL;
    int rc = rc_atomic_begin(&a, path);
    if (rc != RC_OK) return rc;
    if (!rc_write_all(a.fd, p, n)) {
        rc_atomic_abort(&a);
        return RC_ERR_WRITE;
    }
    return rc_atomic_commit(&a, path);
}

/// Saves t[0..nt) as a safetensors file that PyTorch and numpy readers load:
/// `__metadata__` from the nmeta (key, value) pairs in meta[0..2·nmeta),
/// then the tensors in the given order, contiguous, header space-padded to
/// 8 bytes. The file is replaced atomically (rc_atomic), so `path` is
/// either the old file or the complete new one.
RC_UNUSED static int rc_st_save_with_metadata(const char *path, const rc_tensor *t, int nt,
                                              const char *const *meta, int nmeta)
{
    rc_st_key *keys = NULL;
    rc_sbuf h = { NULL, 0, 0, 0 };
    rc_atomic a = { -1, NULL };
    int rc;

    if (path == NULL || (t == NULL && nt > 0) || (meta == NULL && nmeta > 0)) return RC_ERR_NULL;
    if (nt < 0 || nmeta < 0) return RC_ERR_ARG;
    /* Also refuses duplicate names, which would make the file unreadable. */
    rc = rc_st_index(t, nt, &keys);
    if (rc != RC_OK) return rc;

    rc_sbuf_str(&h, "{\"__metadata__\":{");
    for (int i = 0; i < nmeta; i++) {
        if (i > 0) rc_sbuf_add(&h, ",", 1);
        if (meta[2 * i] == NULL || meta[2 * i + 1] == NULL) { rc = RC_ERR_NULL; goto done; }
        if (!rc_sbuf_json_string(&h, meta[2 * i])) { rc = RC_ERR_ARG; goto done; }
        rc_sbuf_add(&h, ":", 1);
        if (!rc_sbuf_json_string(&h, meta[2 * i + 1])) { rc = RC_ERR_ARG; goto done; }
    }
    rc_sbuf_add(&h, "}", 1);
    uint64_t offset = 0;
    for (int i = 0; i < nt; i++) {
        uint64_t bytes = rc_tensor_bytes(&t[i]);
        rc_sbuf_add(&h, ",", 1);
        if (!rc_sbuf_json_string(&h, t[i].name)) { rc = RC_ERR_ARG; goto done; }
        rc_sbuf_str(&h, t[i].dtype == RC_F32 ? ":{\"dtype\":\"F32\",\"shape\":[" : ":{\"dtype\":\"I64\",\"shape\":[");
        for (int d = 0; d < t[i].ndim; d++) {
            if (d > 0) rc_sbuf_add(&h, ",", 1);
            rc_sbuf_u64(&h, (uint64_t)t[i].shape[d]);
        }
        rc_sbuf_str(&h, "],\"data_offsets\":[");
        rc_sbuf_u64(&h, offset);
        rc_sbuf_add(&h, ",", 1);
        if (!rc_add_u64(offset, bytes, &offset)) { rc = RC_ERR_ARG; goto done; }
        rc_sbuf_u64(&h, offset);
        rc_sbuf_str(&h, "]}");
    }
    rc_sbuf_add(&h, "}", 1);
    while (!h.failed && h.len % 8 != 0) rc_sbuf_add(&h, " ", 1);
    if (h.failed) { rc = RC_ERR_NOMEM; goto done; }
    if ((uint64_t)h.len > RC_ST_MAX_HEADER) { rc = RC_ERR_ARG; goto done; }  /* rc_st_load would refuse it */

    if ((rc = rc_atomic_begin(&a, path)) != RC_OK) goto done;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    rc = RC_ERR_WRITE;
    if (!rc_write_all(a.fd, len8, 8) || !rc_write_all(a.fd, h.p, h.len)) goto done;
    for (int i = 0; i < nt; i++) {
        if (!rc_write_le(a.fd, t[i].data, (size_t)rc_tensor_bytes(&t[i]), rc_dtype_size(t[i].dtype)))
            goto done;
    }
    rc = rc_atomic_commit(&a, path);

done:
    if (a.tmp != NULL) rc_atomic_abort(&a);
    free(h.p);
    free(keys);
    return rc;
}

/// rc_st_save_with_metadata with PyTorch's {"format": "pt"}.
RC_UNUSED static int rc_st_save(const char *path, const rc_tensor *t, int nt)
{
    static const char *const pt[2] = { "format", "pt" };
    return rc_st_save_with_metadata(path, t, nt, pt, 1);
}

/* ------------------------------------------------------- random numbers */

/// splitmix64 (Vigna's splitmix64.c, after Steele, Lea and Flood 2014): one
/// word of state, and its stream is fixed by the seed alone.
///
/// NAME_init_params(seed) gives the same bits with every compiler, flag and
/// libm because everything after the integer generator is an operation IEEE
/// 754 rounds exactly (+, −, ×, ÷, sqrt, conversions, frexp) and the
/// integers: no libm log, exp or cos, whose last bit differs between libms
/// and even within one glibc between its FMA and SSE2 versions (Box–Muller
/// with glibc's log and cos gave 13 244 different doubles in 2·10⁷ draws
/// when glibc was made to pick its non-FMA code), and no addition of a
/// rounded product, which -ffp-contract may or may not fuse (gcc's default
/// outside ISO mode, and clang's within an expression, on FMA targets).
/// (Not under -ffast-math, and not on x87, which rounds doubles twice:
/// neither is a supported build of the generated C.)
typedef struct { uint64_t s; } rc_rng;

RC_UNUSED static void rc_rng_seed(rc_rng *r, uint64_t seed)
{
    r->s = seed;
}

RC_UNUSED static uint64_t rc_rng_u64(rc_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/// Uniform in [0, 1) from the top 53 bits: every value is an exact double
/// (and so is 2u − 1, the symmetric uniform init_params takes from it).
RC_UNUSED static double rc_rng_uniform(rc_rng *r)
{
    return (double)(rc_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/// ln x for x in [2^-62, 1], from exactly rounded operations only (see
/// rc_rng), with no floating-point addition that takes a rounded product, so
/// that contracting a multiply-add into an FMA (or not) cannot change it:
/// x = m·2^e with m in [√½, √2), and ln m = 2s(1 + Σ s^2k/(2k+1)), s = (m − 1)/(m + 1),
/// |s| < 0.172, whose terms (k = 1…8, leaving < 1e-15) are products, summed
/// exactly as 62-bit fixed-point integers; e·ln 2 + ln m is summed the same
/// way, with ln 2 split into 40 bits and the rest: within 2e-15 relative of ln x.
RC_UNUSED static double rc_ln(double x)
{
    static const double odd_reciprocal[8] = {
        1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9, 1.0 / 11, 1.0 / 13, 1.0 / 15, 1.0 / 17,
    };
    const double ln2_hi = 0x1.62e42fefa4000p-1, ln2_lo = -0x1.8432a1b0e2634p-43; /* e·ln2_hi is exact */
    int e;
    double m = frexp(x, &e); /* x = m·2^e, m in [1/2, 1) */
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e -= 1;
    }
    const double s = (m - 1.0) / (m + 1.0); /* m − 1 is exact (Sterbenz) */
    const double z = s * s;
    int64_t series = (int64_t)1 << 62; /* 1 + Σ z^k/(2k+1) in units of 2^-62: < 1.011 · 2^62 */
    double zk = 1.0;
    for (int k = 0; k < 8; k++) {
        zk *= z;
        series += (int64_t)(zk * odd_reciprocal[k] * 0x1p62);
    }
    const double ln_m = 2.0 * s * ((double)series * 0x1p-62);
    if (e == 0) return ln_m;
    /* |e·ln 2 + ln m| < 43 (x ≥ 2^-62), in units of 2^-56: < 2^62. */
    const int64_t sum = (int64_t)((double)e * ln2_hi * 0x1p56) + (int64_t)((double)e * ln2_lo * 0x1p56)
        + (int64_t)(ln_m * 0x1p56);
    return (double)sum * 0x1p-56;
}

/// Two independent standard normals by Marsaglia's polar method: a point
/// (u, v) uniform in [−1, 1)², each coordinate 32 bits of one draw, is kept
/// when it falls inside the unit disk (π/4 of draws; the test is exact, in
/// integers), and then u·k and v·k, k = √(−2 ln s / s), s = u² + v², are
/// independent N(0, 1).
RC_UNUSED static void rc_rng_normal_pair(rc_rng *r, double z[2])
{
    for (;;) {
        const uint64_t w = rc_rng_u64(r);
        const int64_t u = (int64_t)(w >> 32) - ((int64_t)1 << 31); /* in units of 2^-31 */
        const int64_t v = (int64_t)(w & 0xFFFFFFFFu) - ((int64_t)1 << 31);
        const uint64_t s = (uint64_t)(u * u) + (uint64_t)(v * v);  /* exact: < 2^63, units 2^-62 */
        if (s == 0 || s >= (uint64_t)1 << 62) continue;
        const double sd = (double)s * 0x1p-62;
        const double k = sqrt(-2.0 * rc_ln(sd) / sd);
        z[0] = (double)u * 0x1p-31 * k;
        z[1] = (double)v * 0x1p-31 * k;
        return;
    }
}

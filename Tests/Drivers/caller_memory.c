/* NET_create_in: a model in the caller's memory, under a counting allocator.
 *
 * Build: cc -DNET=resnet20 -DUNET=RESNET20 '-DNET_HEADER="resnet20.h"' caller_memory.c resnet20.c -lm [-fopenmp]
 * Run:   caller_memory MAX_BATCH STEPS
 *
 * The malloc family (malloc, calloc, realloc, free, posix_memalign,
 * aligned_alloc, memalign) is interposed: the program's definitions below
 * count every call, the model's and the OpenMP runtime's alike, and forward
 * to glibc's; a call whose return address lies in this executable (the model
 * and this program) is also counted apart from the shared libraries' (the
 * OpenMP runtime's). It checks, printing one "name value" line each (the
 * test reads them):
 *   - the header's macros are integer constant expressions (a static block
 *     sized by NET_MODEL_BYTES_INFER(1)) and agree with NET_arena_bytes;
 *   - create_in refuses NULL, a misaligned block, a block one byte short and
 *     max_batch 0, writing nothing into the block;
 *   - a training model built in a block filled with 0xFF (NaN in every float)
 *     gives the same bits as NET_create's model over STEPS rounds of
 *     NET_infer + NET_train_step, and writes no byte outside its block;
 *   - the allocator calls: during create_in, during the first round (where the
 *     OpenMP runtime starts its threads), and during the STEPS rounds after it;
 *   - a model built with training = 0 refuses to train;
 *   - whether the OpenMP runtime is LLVM's libomp built with debug traces
 *     (KMP_DEBUG: it formats a trace string with malloc, and frees it, in
 *     every worksharing loop, so it never reaches a steady state without
 *     allocating).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include NET_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(x) CAT(NET, CAT(_, x))
#define U(x) CAT(UNET, CAT(_, x))

#define IMAGE (U(INPUT_C) * U(INPUT_H) * U(INPUT_W))

/* ---- the counting allocator (glibc: its __libc_* entry points do the work) ---- */

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t alignment, size_t size);

static _Atomic long allocator_calls, program_calls;
static _Atomic int counting;

/* Not inlined into this file's callers, so that the return address is the caller's. */
#define NOINLINE __attribute__((noinline))

/* The executable's code, as the linker delimits it. */
extern char __executable_start[], etext[];

#define count_call()                                                                   \
    do {                                                                               \
        if (counting) {                                                                \
            const char *from = __builtin_return_address(0);                            \
            allocator_calls++;                                                         \
            if (from >= __executable_start && from < etext) program_calls++;           \
        }                                                                              \
    } while (0)

NOINLINE void *malloc(size_t size)
{
    count_call();
    return __libc_malloc(size);
}

NOINLINE void *calloc(size_t count, size_t size)
{
    count_call();
    return __libc_calloc(count, size);
}

NOINLINE void *realloc(void *p, size_t size)
{
    count_call();
    return __libc_realloc(p, size);
}

NOINLINE void free(void *p)
{
    if (p) count_call();
    __libc_free(p);
}

NOINLINE int posix_memalign(void **out, size_t alignment, size_t size)
{
    count_call();
    void *p = __libc_memalign(alignment, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

NOINLINE void *aligned_alloc(size_t alignment, size_t size)
{
    count_call();
    return __libc_memalign(alignment, size);
}

NOINLINE void *memalign(size_t alignment, size_t size)
{
    count_call();
    return __libc_memalign(alignment, size);
}

/* Calls to the allocator while `counting` was set since the last reset
 * (*program: those from this executable). */
static long take_count(long *program)
{
    counting = 0;
    const long n = allocator_calls;
    if (program) *program += program_calls;
    allocator_calls = 0;
    program_calls = 0;
    return n;
}

/* ---- the checks ---- */

/* A constant batch gives constant sizes: this is a file-scope array, not a VLA. */
static _Alignas(U(MODEL_ALIGN)) unsigned char static_block[U(MODEL_BYTES_INFER)(1)];

static int all_bytes(const unsigned char *p, size_t n, unsigned char value)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != value) return 0;
    return 1;
}

/* Deterministic inputs and labels for round r. */
/* An all-reduce as if two replicas held the same values. */
static int twice(float *data, size_t count, void *ctx)
{
    (void)ctx;
    for (size_t i = 0; i < count; i++) data[i] *= 2.0f;
    return 0;
}

static void fill_batch(float *x, int32_t *labels, int n, int r)
{
    uint64_t s = UINT64_C(0x9E3779B97F4A7C15) * (uint64_t)(r + 1);
    for (size_t i = 0; i < (size_t)n * IMAGE; i++) {
        s = s * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        x[i] = (float)((double)(s >> 40) / 16777216.0 * 2.0 - 1.0);
    }
    for (int i = 0; i < n; i++) labels[i] = (int32_t)((unsigned)(r * 7 + i * 3) % (unsigned)U(NUM_CLASSES));
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MAX_BATCH STEPS\n", argv[0]);
        return 2;
    }
    const int max_batch = atoi(argv[1]), steps = atoi(argv[2]);
    if (max_batch < 1 || steps < 1) return 2;
    const int n = max_batch;

    printf("arena_macros_agree %d\n",
           F(arena_bytes)(max_batch, 0) == U(ARENA_BYTES_INFER)(max_batch)
           && F(arena_bytes)(max_batch, 1) == U(ARENA_BYTES_TRAIN)(max_batch)
           && U(MODEL_BYTES_INFER)(max_batch) > U(ARENA_BYTES_INFER)(max_batch)
           && U(MODEL_BYTES_TRAIN)(max_batch) > U(MODEL_BYTES_INFER)(max_batch));

    /* The block sits 64 bytes into a larger one; canary bytes (0x5A) on both sides. */
    const size_t bytes = U(MODEL_BYTES_TRAIN)(max_batch), guard = 4096;
    unsigned char *outer = aligned_alloc(U(MODEL_ALIGN), bytes + 2 * guard);
    float *x = malloc((size_t)n * IMAGE * sizeof(float));
    int32_t *labels = malloc((size_t)n * sizeof(int32_t));
    float *probs = malloc((size_t)n * U(NUM_CLASSES) * sizeof(float));
    float *expected = malloc((size_t)n * U(NUM_CLASSES) * sizeof(float));
    F(model) *reference = F(create)(max_batch);
    if (!outer || !x || !labels || !probs || !expected || !reference) return 3;
    unsigned char *block = outer + guard;
    memset(outer, 0x5A, bytes + 2 * guard);

    /* The attribution sees this program's own calls. */
    long own = 0;
    counting = 1;
    void *volatile probe = malloc(16);
    free(probe);
    take_count(&own);
    printf("attribution_works %d\n", own == 2);

    /* Refusals write nothing. */
    int refused = F(create_in)(NULL, bytes, max_batch, 1) == NULL;
    refused &= F(create_in)(block + 8, bytes, max_batch, 1) == NULL;
    refused &= F(create_in)(block, bytes - 1, max_batch, 1) == NULL;
    refused &= F(create_in)(block, U(MODEL_BYTES_INFER)(max_batch) - 1, max_batch, 0) == NULL;
    refused &= F(create_in)(block, bytes, 0, 1) == NULL;
    refused &= F(create_in)(block, bytes, -1, 0) == NULL;
    printf("refusals_null %d\n", refused);
    printf("refusals_write_nothing %d\n", all_bytes(outer, bytes + 2 * guard, 0x5A));

    /* The inference-only model in a static block sized by the macro; its first
     * inference is the first parallel region, where an OpenMP runtime starts. */
    long program = 0;
    F(model) *small = F(create_in)(static_block, sizeof static_block, 1, 0);
    fill_batch(x, labels, 1, 0);
    float loss = 0.0f;
    counting = 1;
    const int small_ok = small != NULL && F(infer)(small, x, 1, probs) == 0;
    printf("first_use_calls %ld\n", take_count(&program));
    printf("static_block_infer %d\n", small_ok);
    printf("static_block_train_refused %d\n", small != NULL ? F(train_step)(small, x, labels, 1, 0.1f, &loss) : 0);
    F(destroy)(small);

    memset(block, 0xFF, bytes);
    counting = 1;
    F(model) *m = F(create_in)(block, bytes, max_batch, 1);
    printf("create_in_calls %ld\n", take_count(&program));
    if (!m) return 3;

    int same = 1, ok = 1;
    long first_round = 0, later_rounds = 0;
    for (int r = 0; r <= steps; r++) {
        fill_batch(x, labels, n, r);
        float loss_ref = 0.0f, loss_in = -1.0f;
        ok &= F(infer)(reference, x, n, expected) == 0;
        ok &= F(train_step)(reference, x, labels, n, 0.05f, &loss_ref) == 0;
        counting = 1;
        ok &= F(infer)(m, x, n, probs) == 0;
        ok &= F(train_step)(m, x, labels, n, 0.05f, &loss_in) == 0;
        const long calls = take_count(&program);
        if (r == 0) first_round = calls;
        else later_rounds += calls;
        same &= memcmp(probs, expected, (size_t)n * U(NUM_CLASSES) * sizeof(float)) == 0 && loss_in == loss_ref;
    }
    /* One more inference after the last step (it refolds the weights). */
    counting = 1;
    ok &= F(infer)(m, x, n, probs) == 0;
    later_rounds += take_count(&program);
    ok &= F(infer)(reference, x, n, expected) == 0;
    same &= memcmp(probs, expected, (size_t)n * U(NUM_CLASSES) * sizeof(float)) == 0;

    printf("calls_ok %d\n", ok);
    printf("same_bits_as_create %d\n", same);
    printf("first_round_calls %ld\n", first_round);
    printf("later_rounds_calls %ld\n", later_rounds);
    printf("program_calls %ld\n", program);
    printf("libomp_debug_traces %d\n", dlsym(RTLD_DEFAULT, "kmp_d_debug") != NULL);
    printf("writes_outside_block %d\n", !(all_bytes(outer, guard, 0x5A) && all_bytes(block + bytes, guard, 0x5A)));

    /* Replicas: a block of MODEL_BYTES_TRAIN has no room for them (refused,
     * nothing allocated); one with DP_BYTES more trains with them, without
     * the allocator. */
    counting = 1;
    const int refused_replicas = F(set_allreduce)(m, twice, NULL, 2);
    take_count(&program);
    printf("replicas_refused_without_room %d\n", refused_replicas);
    F(destroy)(m);
    unsigned char *roomy = aligned_alloc(U(MODEL_ALIGN), bytes + U(DP_BYTES));
    F(model) *dp = roomy ? F(create_in)(roomy, bytes + U(DP_BYTES), max_batch, 1) : NULL;
    fill_batch(x, labels, n, 0);
    int dp_ok = dp != NULL && F(set_allreduce)(dp, twice, NULL, 2) == 0;
    counting = 1;
    for (int r = 0; r < 2 && dp_ok; r++) dp_ok &= F(train_step)(dp, x, labels, n, 0.05f, &loss) == 0;
    dp_ok &= F(infer)(dp, x, n, probs) == 0;
    take_count(&program);
    printf("replicas_with_room %d\n", dp_ok);
    printf("program_calls_with_replicas %ld\n", program);
    F(destroy)(dp);
    free(roomy);
    F(destroy)(reference);
    free(outer);
    free(x);
    free(labels);
    free(probs);
    free(expected);
    return 0;
}

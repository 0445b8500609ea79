/*
 * libFuzzer target for the weight and checkpoint loader: runtime.c's
 * rc_st_load_bytes, which NAME_load and NAME_load_checkpoint call once the
 * file is in memory and NAME_load_buffer on the caller's bytes, against the descriptor tables of a small network's
 * state dict and of its checkpoint (state dict, momentum buffers,
 * optimizer.step/momentum/weight_decay), and the reader the trainer uses
 * (rc_st_parse + rc_st_check_layout). Besides the sanitizers' checks, every
 * input asserts the loader's promise: a load that fails leaves every
 * destination byte as it was, and one that succeeds wrote only finite F32s.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I runtime Tests/Fuzz/fuzz_weights.c -o fuzz_weights -lm
 *   ./fuzz_weights -max_total_time=60 NEW_CORPUS Tests/Fuzz/corpus/weights
 *
 * FuzzTests.swift builds and runs it in the suite; seeds are in corpus/weights.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include "runtime.c"

/* A conv + batch norm + classifier, as torchvision names them. */
typedef struct {
    float conv[4][3][3][3];
    float bn_w[4], bn_b[4], bn_mean[4], bn_var[4];
    int64_t bn_count;
    float fc_w[2][4], fc_b[2];
    float m_conv[4][3][3][3], m_bn_w[4], m_bn_b[4], m_fc_w[2][4], m_fc_b[2];
    int64_t step;
    float momentum, weight_decay;
} net;

enum { STATE = 8, CHECKPOINT = STATE + 8 };

static void describe(net *n, rc_tensor t[CHECKPOINT])
{
    const rc_tensor d[CHECKPOINT] = {
        { "conv1.weight", RC_F32, 4, { 4, 3, 3, 3 }, n->conv, 0 },
        { "bn1.weight", RC_F32, 1, { 4, 0, 0, 0 }, n->bn_w, 0 },
        { "bn1.bias", RC_F32, 1, { 4, 0, 0, 0 }, n->bn_b, 0 },
        { "bn1.running_mean", RC_F32, 1, { 4, 0, 0, 0 }, n->bn_mean, 0 },
        { "bn1.running_var", RC_F32, 1, { 4, 0, 0, 0 }, n->bn_var, 0 },
        { "bn1.num_batches_tracked", RC_I64, 0, { 0, 0, 0, 0 }, &n->bn_count, 1 },
        { "fc.weight", RC_F32, 2, { 2, 4, 0, 0 }, n->fc_w, 0 },
        { "fc.bias", RC_F32, 1, { 2, 0, 0, 0 }, n->fc_b, 0 },
        { "optimizer.momentum_buffer.conv1.weight", RC_F32, 4, { 4, 3, 3, 3 }, n->m_conv, 0 },
        { "optimizer.momentum_buffer.bn1.weight", RC_F32, 1, { 4, 0, 0, 0 }, n->m_bn_w, 0 },
        { "optimizer.momentum_buffer.bn1.bias", RC_F32, 1, { 4, 0, 0, 0 }, n->m_bn_b, 0 },
        { "optimizer.momentum_buffer.fc.weight", RC_F32, 2, { 2, 4, 0, 0 }, n->m_fc_w, 0 },
        { "optimizer.momentum_buffer.fc.bias", RC_F32, 1, { 2, 0, 0, 0 }, n->m_fc_b, 0 },
        { "optimizer.step", RC_I64, 0, { 0, 0, 0, 0 }, &n->step, 0 },
        { "optimizer.momentum", RC_F32, 0, { 0, 0, 0, 0 }, &n->momentum, 0 },
        { "optimizer.weight_decay", RC_F32, 0, { 0, 0, 0, 0 }, &n->weight_decay, 0 },
    };
    memcpy(t, d, sizeof d);
}

/* Loads data as the state dict (checkpoint = 0) or the checkpoint. */
static void load_as(const uint8_t *data, size_t size, int checkpoint)
{
    net n, before;
    rc_tensor t[CHECKPOINT];
    memset(&n, 0x5A, sizeof n);
    memcpy(&before, &n, sizeof n);
    describe(&n, t);
    if (checkpoint) t[5].optional = 0;  /* a checkpoint always has the counters */
    /* The state dict as NAME_load reads it (a malloc'd copy the loader takes
     * over), the checkpoint as NAME_load_buffer does (the input itself, only read). */
    char why[RC_WHY_BYTES] = "";
    int rc;
    if (checkpoint) {
        rc = rc_st_load_bytes(data, size, NULL, t, CHECKPOINT, why, sizeof why);
    } else {
        unsigned char *copy = malloc(size > 0 ? size : 1);
        if (copy == NULL) return;
        if (size > 0) memcpy(copy, data, size);
        rc = rc_st_load_bytes(copy, size, copy, t, STATE, why, sizeof why);
    }
    if (rc != RC_OK) {
        if (memcmp(&n, &before, sizeof n) != 0) abort();   /* a failed load changed the model */
        if (rc > 0 || strcmp(rc_strerror(rc), "unknown error code") == 0) abort();
        if (why[0] == '\0') abort();                        /* every failure says why */
        return;
    }
    int count = checkpoint ? CHECKPOINT : STATE;
    for (int i = 0; i < count; i++) {
        if (t[i].dtype != RC_F32) continue;
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (uint64_t)t[i].shape[d];
        const float *v = t[i].data;
        for (uint64_t k = 0; k < numel; k++) {
            if (!isfinite(v[k])) abort();                   /* the fill pattern is finite: this was loaded */
        }
    }
}

/* The trainer's path: any tensors, layout checked; lookups stay in bounds. */
static void open_generic(const uint8_t *data, size_t size)
{
    rc_st_file f;
    unsigned char *copy = malloc(size > 0 ? size : 1);
    if (copy == NULL) return;
    if (size > 0) memcpy(copy, data, size);
    int rc = rc_st_parse(&f, copy, size, copy);
    if (rc == RC_OK) rc = rc_st_check_layout(&f);
    if (rc == RC_OK) {
        uint64_t total = 0;
        for (size_t i = 0; i < f.count; i++) {
            const rc_st_entry *e = &f.entries[i];
            if (e->end > f.data_len || e->begin > e->end) abort();
            total += e->end - e->begin;
            volatile unsigned char sink = 0;
            for (uint64_t k = e->begin; k < e->end; k++) sink ^= f.data[k];  /* ASan checks every byte */
            (void)sink;
            char name[64];
            size_t len = e->name_len < sizeof name - 1 ? e->name_len : sizeof name - 1;
            memcpy(name, e->name, len);
            name[len] = '\0';
            if (strlen(name) == e->name_len && rc_st_find(&f, name) != e) abort();
        }
        if (total != f.data_len) abort();                   /* contiguous, no hole */
    }
    rc_st_close(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_as(data, size, 0);
    load_as(data, size, 1);
    open_generic(data, size);
    return 0;
}

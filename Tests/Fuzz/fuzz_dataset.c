/*
 * libFuzzer target for the trainer's data reader (runtime/dataset.c): the
 * first input byte picks the source, the rest is the file. 0: a CIFAR-10
 * binary batch for a 3×32×32, 10-class network, appended to images already
 * read; otherwise a safetensors data set (`images`, `labels`) for a 1×4×4
 * network with (byte % 5) + 1 classes, read by runtime.c's rc_st_parse and
 * rc_st_check_layout as the trainer reads it. An accepted data set must
 * hold only labels in range and finite pixels, and a refused CIFAR batch
 * must leave what was read before as it was.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I runtime Tests/Fuzz/fuzz_dataset.c -o fuzz_dataset -lm
 *   ./fuzz_dataset -max_total_time=60 NEW_CORPUS Tests/Fuzz/corpus/dataset
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include "runtime.c"
#include "dataset.c"

static void check_accepted(const rc_dataset *d, const rc_data_shape *s)
{
    size_t image = rc_data_image_size(s);
    for (size_t i = 0; i < d->count; i++)
        if (d->labels[i] < 0 || d->labels[i] >= s->classes) abort();
    if (d->f32 != NULL)
        for (size_t i = 0; i < d->count * image; i++)
            if (!isfinite(d->f32[i])) abort();
    if (d->u8 != NULL) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < d->count * image; i++) sink ^= d->u8[i];
        (void)sink;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256];
    if (size == 0) return 0;
    if (data[0] == 0) {
        const rc_data_shape cifar = { 3, 32, 32, 10 };
        rc_dataset d = { 0, NULL, NULL, NULL };
        /* One record read before, which a refused batch must not disturb. */
        unsigned char first[1 + 3072];
        memset(first, 7, sizeof first);
        first[0] = 3;
        if (rc_data_append_cifar(&d, first, sizeof first, &cifar, why, sizeof why) != RC_OK) abort();
        int rc = rc_data_append_cifar(&d, data + 1, size - 1, &cifar, why, sizeof why);
        if (rc != RC_OK && (d.count != 1 || d.labels[0] != 3 || d.u8[3071] != 7)) abort();
        if (rc == RC_OK) check_accepted(&d, &cifar);
        rc_dataset_free(&d);
        return 0;
    }
    const rc_data_shape small = { 1, 4, 4, data[0] % 5 + 1 };
    unsigned char *copy = malloc(size - 1 > 0 ? size - 1 : 1);
    if (copy == NULL) return 0;
    memcpy(copy, data + 1, size - 1);
    rc_st_file f;
    int rc = rc_st_parse(&f, copy, size - 1, copy);
    if (rc == RC_OK) rc = rc_st_check_layout(&f);
    if (rc == RC_OK) {
        rc_dataset d;
        rc = rc_data_from_safetensors(&d, &f, &small, why, sizeof why);
        if (rc == RC_OK) {
            check_accepted(&d, &small);
            rc_dataset_free(&d);
        } else if (d.labels != NULL || d.u8 != NULL || d.f32 != NULL) {
            abort();                                        /* a refused read kept memory */
        }
    }
    rc_st_close(&f);
    return 0;
}

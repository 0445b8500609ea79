/* Two generated networks in one program, used at the same time from several
 * threads: each job (inference, SGD steps, inference again; model_job.h) must
 * give bit for bit what it gives alone. The generated C has no globals but
 * constant tables, and its C API symbols are prefixed by the network name, so
 * two networks link together. SanitizerTests builds this with
 * -fsanitize=thread, which also reports any data race between the threads.
 *
 * Build: cc -pthread -DNET_A=resnet8 -DUNET_A=RESNET8 '-DNET_A_HEADER="resnet8.h"' \
 *           -DNET_B=mixnet -DUNET_B=MIXNET '-DNET_B_HEADER="mixnet.h"' -I a -I b \
 *           two_models.c a/resnet8.c b/mixnet.c -lm
 * Run:   two_models   prints one line per job; exits 0 when all agree, 1 if not.
 *
 * The threads run network A, network B and a second model of network A, so
 * two models of one network meet too (a static scratch buffer in a kernel
 * would be shared by them).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

enum { JOB_BATCH = 2, JOB_STEPS = 2, JOB_RESULT = 256 };

/* One thread's work and what it found. */
typedef struct job {
    const char *name;
    int (*run)(struct job *);
    uint64_t seed;
    int status;
    size_t count;
    float result[JOB_RESULT];
} job;

/* Inputs in [-1, 1) from a seed (splitmix64), the same on every run. */
static void fill_inputs(float *x, size_t count, uint64_t seed)
{
    for (size_t i = 0; i < count; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15u);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        z ^= z >> 31;
        x[i] = (float)(z >> 40) / (float)(1u << 23) - 1.0f;
    }
}

#define NET NET_A
#define UNET UNET_A
#define NET_HEADER NET_A_HEADER
#include "model_job.h"
#undef NET
#undef UNET
#undef NET_HEADER

#define NET NET_B
#define UNET UNET_B
#define NET_HEADER NET_B_HEADER
#include "model_job.h"
#undef NET
#undef UNET
#undef NET_HEADER

#define STRING_(x) #x
#define STRING(x) STRING_(x)

static void *run_job(void *arg)
{
    job *j = arg;
    j->status = j->run(j);
    return NULL;
}

int main(void)
{
    enum { JOBS = 3 };
    static job alone[JOBS] = {
        { STRING(NET_A), CAT(NET_A, _job), 1, 0, 0, { 0 } },
        { STRING(NET_B), CAT(NET_B, _job), 2, 0, 0, { 0 } },
        { STRING(NET_A) " (second model)", CAT(NET_A, _job), 3, 0, 0, { 0 } },
    };
    static job together[JOBS];
    for (int k = 0; k < JOBS; k++) {
        run_job(&alone[k]);
        together[k] = alone[k];
        together[k].status = -1;
        together[k].count = 0;
        memset(together[k].result, 0, sizeof together[k].result);
    }
    pthread_t threads[JOBS];
    for (int k = 0; k < JOBS; k++) {
        if (pthread_create(&threads[k], NULL, run_job, &together[k]) != 0) {
            printf("error: pthread_create failed\n");
            return 1;
        }
    }
    for (int k = 0; k < JOBS; k++) pthread_join(threads[k], NULL);
    int status = 0;
    for (int k = 0; k < JOBS; k++) {
        const job *a = &alone[k], *t = &together[k];
        const int same = a->status == 0 && t->status == 0 && a->count == t->count
                         && memcmp(a->result, t->result, a->count * sizeof(float)) == 0;
        printf("%s: %s (status alone %d, in threads %d; %zu floats)\n", a->name,
               same ? "identical alone and in threads" : "DIFFERS", a->status, t->status, a->count);
        if (!same) status = 1;
    }
    return status;
}

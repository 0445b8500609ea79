/* Paired timing of variants of one generated network: each variant is the
 * generated C built as a shared library; the runner loads them all and takes
 * training steps (or inferences) in turn, A B C A B C ..., so that every
 * variant sees the same machine at nearly the same moment. On a shared VM,
 * whose speed drifts by ±15% over seconds, the pairing is what makes a
 * difference of a few percent visible.
 *
 *   resnet-compile zoo.swift --network resnet110 -o a
 *   resnet-compile zoo.swift --network resnet110 --no-recompute -o b
 *   for v in a b; do cc -std=gnu11 -O3 -march=native -fopenmp -shared -fPIC \
 *       $v/resnet110.c -o $v/lib.so -lm; done
 *   cc -O2 bench/ab_step.c -o ab -ldl
 *   OMP_NUM_THREADS=1 ./ab resnet110 32 t 20 a/lib.so b/lib.so
 *
 * AB_INPUT=150528,1000 for ImageNet shapes (floats per image, classes).
 * Prints, per variant, the median and the best CPU time per call, and each
 * variant's median ratio to the first over the rounds (paired).
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void *(*create_fn)(int);
typedef int (*infer_fn)(void *, const float *, int, float *);
typedef int (*train_fn)(void *, const float *, const int32_t *, int, float, float *);

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s NAME BATCH t|i ROUNDS LIB.so [LIB.so ...]\n", argv[0]);
        return 2;
    }
    const char *name = argv[1];
    const int n = atoi(argv[2]), train = argv[3][0] == 't', rounds = atoi(argv[4]), k = argc - 5;
    if (n < 1 || rounds < 1) return 2;
    char sym[256];
    void *model[16];
    infer_fn infer[16];
    train_fn step[16];
    if (k > 16) return 2;
    const char *shape = getenv("AB_INPUT");  /* floats per image,classes: CIFAR's by default */
    size_t in = 3 * 32 * 32;
    int classes = 10;
    if (shape && sscanf(shape, "%zu,%d", &in, &classes) != 2) return 2;
    for (int v = 0; v < k; v++) {
        void *h = dlopen(argv[5 + v], RTLD_NOW | RTLD_LOCAL);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        snprintf(sym, sizeof sym, "%s_create", name);
        create_fn create = (create_fn)dlsym(h, sym);
        snprintf(sym, sizeof sym, "%s_infer", name);
        infer[v] = (infer_fn)dlsym(h, sym);
        snprintf(sym, sizeof sym, "%s_train_step", name);
        step[v] = (train_fn)dlsym(h, sym);
        if (!create || !infer[v] || (train && !step[v])) { fprintf(stderr, "%s: missing symbols\n", argv[5 + v]); return 1; }
        model[v] = create(n);
        if (!model[v]) { fprintf(stderr, "%s: create failed\n", argv[5 + v]); return 1; }
    }
    float *x = malloc(in * (size_t)n * sizeof *x), *p = malloc((size_t)n * (size_t)classes * sizeof *p);
    int32_t *lab = malloc((size_t)n * sizeof *lab);
    if (!x || !p || !lab) return 1;
    for (size_t i = 0; i < in * (size_t)n; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (int i = 0; i < n; i++) lab[i] = i % classes;
    double *t = calloc((size_t)(k * rounds), sizeof *t);
    float loss;
    for (int r = -2; r < rounds; r++)  /* two rounds of warm-up */
        for (int v = 0; v < k; v++) {
            const double c0 = cpu_now();
            if (train) step[v](model[v], x, lab, n, 0.01f, &loss);
            else infer[v](model[v], x, n, p);
            if (r >= 0) t[v * rounds + r] = cpu_now() - c0;
        }
    double *ratio = malloc((size_t)rounds * sizeof *ratio);
    for (int v = 0; v < k; v++) {
        for (int r = 0; r < rounds; r++) ratio[r] = t[v * rounds + r] / t[r];
        const double rmed = median(ratio, rounds);
        double best = t[v * rounds];
        for (int r = 1; r < rounds; r++) if (t[v * rounds + r] < best) best = t[v * rounds + r];
        const double med = median(t + v * rounds, rounds);
        printf("%-40s median %9.3f ms  best %9.3f ms  paired ratio to the first %.4f\n", argv[5 + v], med * 1e3,
               best * 1e3, rmed);
    }
    return 0;
}

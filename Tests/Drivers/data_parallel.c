/* Data-parallel training through NAME_set_allreduce, against one model
 * trained on the whole batch. Two transports:
 *
 *   threads (default, -pthread): R models in R threads of this process, the
 *     hooks summing through shared memory (a barrier, then each thread adds
 *     its slice of every replica's buffer in replica order);
 *   MPI (-DDP_MPI, built with mpicc, run under mpirun -np R): one replica
 *     per rank, the hook MPI_Allreduce in place.
 *
 * Built with NET, UNET and NET_HEADER defined (as driver.c).
 *
 *   data_parallel R N STEPS DIR          (threads)
 *   mpirun -np R data_parallel N STEPS DIR  (MPI)
 *
 * trains STEPS steps on R·N images (one model, DIR/whole.safetensors) and
 * R replicas on N images each (DIR/replica<r>.safetensors), prints every
 * step's losses ("step S whole L replicas L0 L1 …"), then checks, printing
 * one line each: the replicas' weights are the same bits; a hook that fails
 * makes every replica's step fail (RC_ERR_ALLREDUCE) and leaves its weights
 * as they were; NAME_set_allreduce(m, NULL, NULL, 1) trains alone again;
 * and whether replica 0's weights are the whole batch model's bits (the
 * caller compares the weight files too). Exit status 0 when every step and check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include NET_HEADER
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef DP_MPI
#include <mpi.h>
#else
#include <pthread.h>
#endif

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define F(x) CAT(NET, CAT(_, x))
#define U(x) CAT(UNET, CAT(_, x))

enum { IMAGE = U(INPUT_C) * U(INPUT_H) * U(INPUT_W), CLASSES = U(NUM_CLASSES), MAX_R = 8, MAX_STEPS = 64 };

/* What the replicas share: a switch that makes every hook fail, the hook
 * calls of one replica, and (threads) each call's buffers and a barrier. */
typedef struct {
    int replicas;
    int fail;
    long calls;
#ifndef DP_MPI
    pthread_barrier_t barrier;
    float *data[MAX_R];
    size_t count[MAX_R];
#endif
} group;

typedef struct {
    group *g;
    int rank;
    F(model) *m;
    const float *x;
    const int32_t *labels;
    int n, steps, rc;
    float losses[MAX_STEPS];
} replica;

#ifdef DP_MPI
static int sum_across(float *data, size_t count, void *ctx)
{
    replica *r = ctx;
    if (r->g->fail) return -1;
    if (r->rank == 0) r->g->calls++;
    return count <= (size_t)0x7FFFFFFF
        && MPI_Allreduce(MPI_IN_PLACE, data, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1;
}
#else
static int sum_across(float *data, size_t count, void *ctx)
{
    replica *r = ctx;
    group *g = r->g;
    if (g->fail) return -1;
    g->data[r->rank] = data;
    g->count[r->rank] = count;
    pthread_barrier_wait(&g->barrier);
    int same = 1;
    for (int k = 0; k < g->replicas; k++) same &= g->count[k] == count;
    if (same) {
        const size_t from = count * (size_t)r->rank / (size_t)g->replicas;
        const size_t to = count * (size_t)(r->rank + 1) / (size_t)g->replicas;
        for (size_t i = from; i < to; i++) {
            float s = 0.0f;
            for (int k = 0; k < g->replicas; k++) s += g->data[k][i];
            for (int k = 0; k < g->replicas; k++) g->data[k][i] = s;
        }
    }
    if (r->rank == 0) g->calls++;
    pthread_barrier_wait(&g->barrier);
    return same ? 0 : -1;
}
#endif

static void *train_replica(void *arg)
{
    replica *r = arg;
    r->rc = 0;
    for (int s = 0; s < r->steps && r->rc == 0; s++)
        r->rc = F(train_step)(r->m, r->x, r->labels, r->n, 0.05f, &r->losses[s]);
    return NULL;
}

/* Runs `steps` steps of this process's replicas (threads: all R; MPI: its own); 0 when all succeeded. */
static int run_replicas(replica *reps, int local, int steps)
{
    int failed = 0;
#ifdef DP_MPI
    reps[0].steps = steps;
    train_replica(&reps[0]);
    failed = reps[0].rc != 0;
    (void)local;
#else
    pthread_t threads[MAX_R];
    for (int r = 0; r < local; r++) {
        reps[r].steps = steps;
        pthread_create(&threads[r], NULL, train_replica, &reps[r]);
    }
    for (int r = 0; r < local; r++) {
        pthread_join(threads[r], NULL);
        failed |= reps[r].rc != 0;
    }
#endif
    return failed;
}

static long read_file(const char *path, unsigned char **bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    *bytes = malloc((size_t)size);
    const long got = *bytes ? (long)fread(*bytes, 1, (size_t)size, f) : -1;
    fclose(f);
    return got == size ? size : -1;
}

/* 1 when the two files hold the same bytes. */
static int same_file(const char *a, const char *b)
{
    unsigned char *pa = NULL, *pb = NULL;
    const long na = read_file(a, &pa), nb = read_file(b, &pb);
    const int same = na >= 0 && na == nb && memcmp(pa, pb, (size_t)na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* 1 when every process's `ok` is 1 (MPI: across ranks). */
static int all(int ok)
{
#ifdef DP_MPI
    int every = 0;
    MPI_Allreduce(&ok, &every, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return every;
#else
    return ok;
#endif
}

int main(int argc, char **argv)
{
    int R, rank = 0, local;
#ifdef DP_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    local = 1;
    char **args = argv;
#define DP_USAGE "usage: mpirun -np R data_parallel N STEPS DIR"
#else
    if (argc != 5) {
        fprintf(stderr, "usage: data_parallel R N STEPS DIR\n");
        return 2;
    }
    R = atoi(argv[1]);
    local = R;
    char **args = argv + 1;
    argc--;
#define DP_USAGE "usage: data_parallel R N STEPS DIR"
#endif
    if (argc != 4) {
        fprintf(stderr, DP_USAGE "\n");
        return 2;
    }
    const int N = atoi(args[1]), steps = atoi(args[2]);
    const char *dir = args[3];
    if (R < 1 || R > MAX_R || N < 1 || steps < 1 || steps > MAX_STEPS) return 2;
    const size_t images = (size_t)R * (size_t)N;
    float *x = malloc(images * IMAGE * sizeof(float));
    int32_t *labels = malloc(images * sizeof(int32_t));
    if (!x || !labels) return 1;
    uint64_t state = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i < images * IMAGE; i++) {
        state = state * 6364136223846793005u + 1442695040888963407u;
        x[i] = (float)(state >> 40) / (float)(1u << 24) * 2.0f - 1.0f;
    }
    for (size_t i = 0; i < images; i++) labels[i] = (int32_t)((i * 7 + 3) % CLASSES);
    char path[4096], other[4096];
    int ok = 1;

    /* One model on the whole batch (rank 0). */
    float whole_loss[MAX_STEPS];
    if (rank == 0) {
        F(model) *whole = F(create)((int)images);
        if (!whole || F(init_params)(whole, 11) != 0) return 1;
        for (int s = 0; s < steps; s++) {
            const int rc = F(train_step)(whole, x, labels, (int)images, 0.05f, &whole_loss[s]);
            if (rc != 0) {
                fprintf(stderr, "whole batch, step %d: %s\n", s, F(strerror)(rc));
                return 1;
            }
        }
        snprintf(path, sizeof path, "%s/whole.safetensors", dir);
        if (F(save)(whole, path) != 0) return 1;
        F(destroy)(whole);
    }

    /* The replicas: replica r trains on images r·N … r·N + N − 1. */
    group g = { .replicas = R };
#ifndef DP_MPI
    pthread_barrier_init(&g.barrier, NULL, (unsigned)R);
#endif
    replica reps[MAX_R];
    for (int k = 0; k < local; k++) {
        const int r = rank + k;
        reps[k] = (replica){ .g = &g, .rank = r, .m = F(create)(N), .x = x + (size_t)r * (size_t)N * IMAGE,
                             .labels = labels + (size_t)r * (size_t)N, .n = N };
        if (!reps[k].m || F(init_params)(reps[k].m, 11) != 0) return 1;
        if (F(set_allreduce)(reps[k].m, sum_across, &reps[k], R) != 0) return 1;
    }
    if (!all(run_replicas(reps, local, steps) == 0)) {
        for (int k = 0; k < local; k++) fprintf(stderr, "replica %d: %s\n", rank + k, F(strerror)(reps[k].rc));
        return 1;
    }
    float losses[MAX_R * MAX_STEPS];
#ifdef DP_MPI
    MPI_Gather(reps[0].losses, MAX_STEPS, MPI_FLOAT, losses, MAX_STEPS, MPI_FLOAT, 0, MPI_COMM_WORLD);
#else
    for (int r = 0; r < R; r++) memcpy(losses + r * MAX_STEPS, reps[r].losses, sizeof reps[r].losses);
#endif
    for (int k = 0; k < local; k++) {
        snprintf(path, sizeof path, "%s/replica%d.safetensors", dir, rank + k);
        if (F(save)(reps[k].m, path) != 0) return 1;
    }
    all(1);  /* every replica's file is written */
    if (rank == 0) {
        for (int s = 0; s < steps; s++) {
            printf("step %d whole %.9g replicas", s, (double)whole_loss[s]);
            for (int r = 0; r < R; r++) printf(" %.9g", (double)losses[r * MAX_STEPS + s]);
            printf("\n");
        }
        printf("hook calls per step: %ld\n", g.calls / steps);
        int identical = 1;
        snprintf(other, sizeof other, "%s/replica0.safetensors", dir);
        for (int r = 1; r < R; r++) {
            snprintf(path, sizeof path, "%s/replica%d.safetensors", dir, r);
            identical &= same_file(other, path);
        }
        printf("replicas identical: %s\n", identical ? "yes" : "NO");
        ok &= identical;
        snprintf(path, sizeof path, "%s/whole.safetensors", dir);
        printf("replicas have the whole batch's bits: %s\n", same_file(other, path) ? "yes" : "no");
    }

    /* A failing hook: every replica's step fails and its weights stay as they were. */
    if (R > 1) {
        g.fail = 1;
        run_replicas(reps, local, 1);
        int failed = 1, unchanged = 1;
        for (int k = 0; k < local; k++) {
            failed &= reps[k].rc == -16;  /* RC_ERR_ALLREDUCE */
            snprintf(other, sizeof other, "%s/failed%d.safetensors", dir, rank + k);
            snprintf(path, sizeof path, "%s/replica%d.safetensors", dir, rank + k);
            if (F(save)(reps[k].m, other) != 0) return 1;
            unchanged &= same_file(path, other);
        }
        failed = all(failed);
        unchanged = all(unchanged);
        if (rank == 0)
            printf("failing hook: every step failed (%s): %s; weights unchanged: %s\n", F(strerror)(reps[0].rc),
                   failed ? "yes" : "NO", unchanged ? "yes" : "NO");
        ok &= failed && unchanged;
        g.fail = 0;
    }

    /* Back to one process. */
    float loss = 0.0f;
    const int alone = all(F(set_allreduce)(reps[0].m, NULL, NULL, 1) == 0
                          && F(train_step)(reps[0].m, reps[0].x, reps[0].labels, N, 0.05f, &loss) == 0);
    if (rank == 0) printf("alone again: %s (loss %.6g)\n", alone ? "yes" : "NO", (double)loss);
    ok &= alone;

    for (int k = 0; k < local; k++) F(destroy)(reps[k].m);
#ifdef DP_MPI
    ok = all(ok);
    MPI_Finalize();
#else
    pthread_barrier_destroy(&g.barrier);
#endif
    free(x);
    free(labels);
    return ok ? 0 : 1;
}

/* Data-parallel training speed of one generated network under MPI: every rank
 * trains its shard of a global batch through NAME_set_allreduce (the hook is
 * MPI_Allreduce in place, timed), as bench/dp_bench.sh runs it beside
 * PyTorch's DistributedDataParallel (bench/ddp_train.py).
 *
 *   mpicc -std=c11 -O3 -march=native -fopenmp -Igen -DNET=resnet20 -DUNET=RESNET20 \
 *       '-DNET_HEADER="resnet20.h"' bench/dp_train.c gen/resnet20.c -o dp_train -lm
 *   OMP_NUM_THREADS=1 mpirun -np 2 ./dp_train 128 [seconds]
 *
 * The global batch (128) is split evenly; inputs are random, labels cycle.
 * After 3 untimed steps, steps run for about `seconds` (default 10); rank 0
 * prints ranks, threads, the median and fastest step time, images/s at the
 * median, and the time per step spent inside the hook (all-reduce calls:
 * their wait for the slowest rank included).
 */
#define _POSIX_C_SOURCE 200809L
#include NET_HEADER
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define F(x) CAT(NET, CAT(_, x))
#define U(x) CAT(UNET, CAT(_, x))

enum { IMAGE = U(INPUT_C) * U(INPUT_H) * U(INPUT_W), CLASSES = U(NUM_CLASSES), MAX_STEPS = 4096 };

typedef struct {
    double seconds;
    long calls;
} hook_time;

static int mpi_sum(float *data, size_t count, void *ctx)
{
    hook_time *t = ctx;
    const double t0 = MPI_Wtime();
    const int rc = MPI_Allreduce(MPI_IN_PLACE, data, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    t->seconds += MPI_Wtime() - t0;
    t->calls++;
    return rc == MPI_SUCCESS ? 0 : -1;
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int ranks, rank;
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const int batch = argc > 1 ? atoi(argv[1]) : 128;
    const double budget = argc > 2 ? atof(argv[2]) : 10.0;
    if (batch < ranks || batch % ranks != 0) {
        if (rank == 0) fprintf(stderr, "dp_train: the batch (%d) must split evenly over %d ranks\n", batch, ranks);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const int n = batch / ranks;
    float *x = malloc((size_t)n * IMAGE * sizeof(float));
    int32_t *labels = malloc((size_t)n * sizeof(int32_t));
    F(model) *m = F(create)(n);
    if (!x || !labels || !m || F(init_params)(m, 1) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
    uint64_t state = 0x9E3779B97F4A7C15u + (uint64_t)rank;
    for (size_t i = 0; i < (size_t)n * IMAGE; i++) {
        state = state * 6364136223846793005u + 1442695040888963407u;
        x[i] = (float)(state >> 40) / (float)(1u << 24) * 2.0f - 1.0f;
    }
    for (int i = 0; i < n; i++) labels[i] = (int32_t)((rank * n + i) % CLASSES);
    hook_time hook = { 0.0, 0 };
    if (ranks > 1 && F(set_allreduce)(m, mpi_sum, &hook, ranks) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
    float loss;
    for (int s = 0; s < 3; s++)
        if (F(train_step)(m, x, labels, n, 0.01f, &loss) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
    static double times[MAX_STEPS];
    int steps = 0;
    hook.seconds = 0.0;
    hook.calls = 0;
    const double start = MPI_Wtime();
    int more = 1;
    while (more) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        if (F(train_step)(m, x, labels, n, 0.01f, &loss) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
        times[steps++] = MPI_Wtime() - t0;
        more = steps < MAX_STEPS && MPI_Wtime() - start < budget;
        MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
    }
    qsort(times, (size_t)steps, sizeof times[0], by_value);
    const char *threads = getenv("OMP_NUM_THREADS");
    if (rank == 0)
        printf("ranks %d threads %s batch %d steps %d median_ms %.2f fastest_ms %.2f images_per_s %.1f "
               "allreduce_ms_per_step %.2f calls_per_step %ld loss %.6f\n",
               ranks, threads ? threads : "?", batch, steps, times[steps / 2] * 1e3, times[0] * 1e3,
               batch / times[steps / 2], hook.seconds / steps * 1e3, hook.calls / steps, (double)loss);
    F(destroy)(m);
    free(x);
    free(labels);
    MPI_Finalize();
    return 0;
}

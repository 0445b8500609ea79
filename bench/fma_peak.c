/* Measured FP32 peak of this machine: every OpenMP thread runs independent
 * fused multiply-adds on the widest vectors -march=native allows, and the
 * best of several runs is reported in GFLOP/s (2 FLOPs per lane per FMA).
 * It shows the clock the cores really run at under FMA load (turbo, or the
 * lower AVX-512 clock), which /proc/cpuinfo does not tell inside a VM.
 *
 *   cc -O3 -march=native -fopenmp fma_peak.c -o fma_peak && ./fma_peak [seconds]
 * Prints: "<GFLOP/s> <threads> <lanes> <isa>"
 */
#include <immintrin.h>
/* The OpenMP runtime's own functions, declared here: Swift's clang does not
 * ship omp.h, but libgomp and libomp both export these. */
int omp_get_max_threads(void);
int omp_get_thread_num(void);
double omp_get_wtime(void);
#include <stdio.h>
#include <stdlib.h>

#define ACC 12                 /* independent chains: > latency × FMA ports */

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define ISA "avx512"
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
static float hsum(vec v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 vec;
#define LANES 8
#define ISA "avx2+fma"
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
static float hsum(vec v) { float t[8]; _mm256_storeu_ps(t, v); float s = 0; for (int i = 0; i < 8; i++) s += t[i]; return s; }
#else
typedef float vec;
#define LANES 1
#define ISA "scalar"
#define SET1(x) (x)
#define FMA(a, b, c) ((a) * (b) + (c))
#define ADD(a, b) ((a) + (b))
static float hsum(vec v) { return v; }
#endif

static float run(long iters, float seed) {
    vec acc[ACC];
    for (int i = 0; i < ACC; i++) acc[i] = SET1(seed + (float)i * 1e-3f);
    const vec a = SET1(0.999999f), b = SET1(1e-7f);
    /* the chains stay in registers; the result is used, and without
     * -ffast-math the compiler may not fold the FMA chains */
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < ACC; i++) acc[i] = FMA(acc[i], a, b);
    vec s = acc[0];
    for (int i = 1; i < ACC; i++) s = ADD(s, acc[i]);
    return hsum(s);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    int threads = omp_get_max_threads();
    long iters = 1000000;
    volatile float sink = 0;
    /* size the run to about `seconds` */
    for (;;) {
        double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
        sink += run(iters, (float)omp_get_thread_num());
        double dt = omp_get_wtime() - t0;
        if (dt > seconds / 4) { iters = (long)(iters * seconds / dt); break; }
        iters *= 4;
    }
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
        sink += run(iters, (float)omp_get_thread_num());
        double dt = omp_get_wtime() - t0;
        double gflops = (double)threads * iters * ACC * LANES * 2 / dt / 1e9;
        if (gflops > best) best = gflops;
    }
    printf("%.1f %d %d %s\n", best, threads, LANES, ISA);
    return sink == 12345.0f;   /* use the result */
}

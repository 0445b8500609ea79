/*
 * Kills a process in the middle of NET_save and NET_save_checkpoint, many
 * times, and checks that the file it was replacing is intact every time.
 *
 *   kill_save DIR ITERATIONS SEED
 *
 * For each of save and checkpoint: a reference "old" file (model A) and
 * "new" file (model B) are written first; then ITERATIONS times the target
 * is set to the old contents, a child process saves model B over it in a
 * loop, and the parent SIGKILLs the child after a random delay of up to
 * twice the time one save takes. The target must then be byte for byte the
 * old file or the new one, never anything else; temporary files a killed
 * save leaves behind are counted (each is a kill that landed mid-save) and
 * removed. Prints one line per kind and "N intact, M damaged"; exits 1 if
 * any target was damaged. Built against any generated network with
 * training, like Tests/Drivers/driver.c:
 *
 *   cc -std=c11 -O2 -DNET=resnet20 -DUNET=RESNET20 '-DNET_HEADER="resnet20.h"' \
 *      -I generated/resnet20 Tests/CRuntime/kill_save.c generated/resnet20/resnet20.c -o kill_save -lm
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include NET_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(x) CAT(NET, CAT(_, x))

typedef int (*save_fn)(const CAT(NET, _model) *m, const char *path);

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return p;
}

static int same(const unsigned char *a, size_t na, const unsigned char *b, size_t nb)
{
    return na == nb && memcmp(a, b, na) == 0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Removes the temporary files a killed save left in dir; returns how many. */
static int sweep(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strstr(e->d_name, ".tmp.") == NULL) continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
        n++;
    }
    closedir(d);
    return n;
}

static int run(const char *dir, const char *kind, save_fn save, CAT(NET, _model) *a, CAT(NET, _model) *b,
               int iterations, unsigned *seed)
{
    char old_path[4200], new_path[4200], target[4200];
    snprintf(old_path, sizeof old_path, "%s/%s-old.ref", dir, kind);
    snprintf(new_path, sizeof new_path, "%s/%s-new.ref", dir, kind);
    snprintf(target, sizeof target, "%s/%s.safetensors", dir, kind);
    if (save(a, old_path) != 0 || save(b, new_path) != 0) {
        printf("%s: cannot write the reference files\n", kind);
        return 1;
    }
    size_t nold, nnew;
    unsigned char *old = slurp(old_path, &nold), *fresh = slurp(new_path, &nnew);
    if (!old || !fresh || same(old, nold, fresh, nnew)) {
        printf("%s: reference files unreadable or equal\n", kind);
        return 1;
    }
    double t0 = now();
    for (int i = 0; i < 5; i++) save(b, target);
    double per_save = (now() - t0) / 5;

    int intact_old = 0, intact_new = 0, damaged = 0, mid_save = 0;
    for (int i = 0; i < iterations; i++) {
        if (save(a, target) != 0) {
            printf("%s: cannot reset the target\n", kind);
            return 1;
        }
        /* Up to two saves' time: some kills land before the first save
         * starts, most inside one (the child saves back to back). */
        long delay_ns = (long)(per_save * 2e9 * (double)rand_r(seed) / (double)RAND_MAX);
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            printf("%s: fork failed\n", kind);
            return 1;
        }
        if (pid == 0) {
            for (;;) save(b, target);
        }
        struct timespec d = { delay_ns / 1000000000L, delay_ns % 1000000000L };
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        size_t n;
        unsigned char *got = slurp(target, &n);
        if (got && same(got, n, old, nold)) intact_old++;
        else if (got && same(got, n, fresh, nnew)) intact_new++;
        else {
            damaged++;
            printf("%s: iteration %d: target is neither the old nor the new file (%zu bytes)\n", kind, i, got ? n : 0);
        }
        free(got);
        mid_save += sweep(dir) > 0;
    }
    printf("%s: %d kills (one save %.2f ms): %d old file, %d new file, %d damaged; %d killed mid-save (temporary file left)\n",
           kind, iterations, per_save * 1e3, intact_old, intact_new, damaged, mid_save);
    free(old);
    free(fresh);
    return damaged;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s DIR ITERATIONS SEED\n", argv[0]);
        return 2;
    }
    int iterations = atoi(argv[2]);
    unsigned seed = (unsigned)strtoul(argv[3], NULL, 10);
    CAT(NET, _model) *a = F(create)(1), *b = F(create)(1);
    if (!a || !b || F(init_params)(a, 1) != 0 || F(init_params)(b, 2) != 0) return 2;
    int damaged = run(argv[1], "save", F(save), a, b, iterations, &seed);
    damaged += run(argv[1], "checkpoint", F(save_checkpoint), a, b, iterations, &seed);
    printf("%d intact, %d damaged\n", 2 * iterations - damaged, damaged);
    F(destroy)(a);
    F(destroy)(b);
    return damaged > 0;
}

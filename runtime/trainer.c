/* trainer.c: the training program that `resnet-compile train` builds around a
 * generated network. It is not a template: it is compiled as it is together
 * with any generated NAME.c that has the training API (NAME_train_step,
 * NAME_save_checkpoint, ...), naming the network with macros:
 *
 *   cc -std=c11 -O3 -march=native -fopenmp -DNET=resnet20 -DUNET=RESNET20 \
 *      '-DNET_HEADER="resnet20.h"' -I runtime -I gen runtime/trainer.c gen/resnet20.c -o train -lm
 *
 * It #includes runtime.c (the safetensors reader and atomic saves the
 * generated C has too) and dataset.c (its data reader) from runtime/.
 *   ./train --data cifar-10-batches-bin --out run      (./train --help for the rest)
 *
 * What it does: reads the data (a CIFAR-10 binary directory, or a safetensors
 * file with `images` and `labels`), takes the per-pixel mean image of the
 * training images, and runs SGD steps on shuffled, augmented batches with the
 * CIFAR recipe of He et al. (2015), Sec. 4.2: batch 128, lr 0.1 divided by 10
 * at 32k and 48k iterations, 64k iterations, momentum 0.9, weight decay 1e-4,
 * 4-pixel zero padding + random crop + random horizontal flip. It logs to
 * OUT/train.csv, evaluates on the test (and validation) images, checkpoints,
 * and at the end saves OUT/NAME.safetensors.
 *
 * Determinism. Every random draw is a pure function of (seed, stream,
 * counter): the shuffle of epoch e comes from a generator seeded with
 * (seed, SHUFFLE, e), the crops and flips of iteration i from one seeded with
 * (seed, AUGMENT, i). The sample stream is the concatenation of the epochs'
 * permutations and iteration i takes samples i*batch ... i*batch+batch-1 of it.
 * So (seed, iteration) is the whole random state; checkpoint.state records
 * both, and a resumed run sees exactly the batches an uninterrupted run sees.
 *
 * Exit status: 0 done; 1 the model failed (a train step error, a save that
 * failed, out of memory); 2 bad options or bad data; 130 interrupted by
 * SIGINT/SIGTERM (after writing a checkpoint, so --resume continues).
 *
 * Several processes (-DRC_MPI, built with mpicc, run under mpirun -np N):
 * every rank builds the same global batch (so the batches are those of one
 * process, whatever N) and trains on its N-th of it, the model's all-reduce
 * hook (NAME_set_allreduce) summing through MPI_Allreduce, so every rank
 * takes the global batch's step. Only rank 0 prints progress, evaluates and
 * writes files; a stop (signal, --stop-at) happens at the same iteration on
 * every rank; a rank that fails aborts the job (MPI_Abort), naming itself.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include NET_HEADER
#ifdef RC_MPI
#include <mpi.h>
#endif
/* The safetensors reader, atomic saves and error codes the generated C has
 * too (one implementation), and the data reader. */
#include "runtime.c"
#include "dataset.c"

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(x) CAT(NET, CAT(_, x))
#define U(x) CAT(UNET, CAT(_, x))
#define STR_(x) #x
#define STR(x) STR_(x)

#define NET_NAME STR(NET)
#define IN_C ((size_t)U(INPUT_C))
#define IN_H ((size_t)U(INPUT_H))
#define IN_W ((size_t)U(INPUT_W))
#define IMAGE (IN_C * IN_H * IN_W)
#define CLASSES ((int)U(NUM_CLASSES))

enum { EXIT_MODEL = 1, EXIT_INPUT = 2, EXIT_INTERRUPTED = 130 };

/* This process's rank and the number of ranks (1 and 0 without MPI). */
static int rank = 0, ranks = 1;
/* Images per rank and step (--batch / ranks): the model's batch. */
static long long shard = 1;

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

static void fail(int status, const char *format, ...)
{
    va_list ap;
    fflush(stdout);
    if (ranks > 1) fprintf(stderr, "train: error (rank %d of %d): ", rank, ranks);
    else fputs("train: error: ", stderr);
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    fputc('\n', stderr);
#ifdef RC_MPI
    if (ranks > 1) MPI_Abort(MPI_COMM_WORLD, status);  /* the other ranks stop too */
#endif
    exit(status);
}

#ifdef RC_MPI
/* The model's all-reduce hook: MPI_Allreduce in place over every rank. */
static int mpi_sum(float *data, size_t count, void *ctx)
{
    (void)ctx;
    if (count > (size_t)INT32_MAX) return -1;
    return MPI_Allreduce(MPI_IN_PLACE, data, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1;
}
#endif

/* Whether `flag` is set on any rank (every rank calls it at the same point). */
static int on_any_rank(int flag)
{
#ifdef RC_MPI
    int any = flag;
    if (ranks > 1) MPI_Allreduce(&flag, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any;
#else
    return flag;
#endif
}

/* Rank 0's value of `*v` on every rank. */
static void from_rank0(int *v)
{
#ifdef RC_MPI
    if (ranks > 1) MPI_Bcast(v, 1, MPI_INT, 0, MPI_COMM_WORLD);
#else
    (void)v;
#endif
}

static void note(const char *format, ...)
{
    va_list ap;
    fputs("train: note: ", stdout);
    va_start(ap, format);
    vfprintf(stdout, format, ap);
    va_end(ap);
    fputc('\n', stdout);
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) fail(EXIT_MODEL, "out of memory (%zu bytes)", bytes);
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

/* a * b, or fail when it does not fit in size_t. */
static size_t mul_size(size_t a, size_t b, const char *what)
{
    if (a != 0 && b > SIZE_MAX / a) fail(EXIT_INPUT, "%s: size overflows", what);
    return a * b;
}

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* "1h02m", "12m05s", "45s". */
static void format_duration(double seconds, char *buf, size_t cap)
{
    if (!(seconds >= 0) || seconds > 1e9) {
        snprintf(buf, cap, "?");
        return;
    }
    long long s = (long long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, cap, "%lldh%02lldm", s / 3600, (s / 60) % 60);
    else if (s >= 60) snprintf(buf, cap, "%lldm%02llds", s / 60, s % 60);
    else snprintf(buf, cap, "%llds", s);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *bytes;
    size_t size;
} blob;

static int is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The whole file, read once (rc_read_file), or fail naming it and `what`
 * it was meant to be. */
static blob read_file(const char *path, const char *what)
{
    blob b = { NULL, 0 };
    if (is_directory(path)) fail(EXIT_INPUT, "%s %s is not a regular file", what, path);
    int rc = rc_read_file(path, &b.bytes, &b.size);
    if (rc == RC_ERR_OPEN) fail(EXIT_INPUT, "cannot read %s %s: %s", what, path, strerror(errno));
    if (rc == RC_ERR_NOMEM) fail(EXIT_MODEL, "out of memory reading %s %s", what, path);
    if (rc != RC_OK) fail(EXIT_INPUT, "cannot read %s %s: %s", what, path, rc_strerror(rc));
    return b;
}

/* Writes bytes to path atomically (rc_write_file_atomic: a temporary file
 * beside it, synced, renamed over it, the directory synced). Returns 0, or
 * -1 with errno set. */
static int write_atomically(const char *path, const void *bytes, size_t size)
{
    return rc_write_file_atomic(path, bytes, size) == RC_OK ? 0 : -1;
}

/* A growable text buffer for the state file and the CSV. */
typedef struct {
    char *text;
    size_t length, capacity;
} text_buffer;

static void append(text_buffer *t, const char *format, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, format);
        size_t room = t->capacity - t->length;
        int n = vsnprintf(t->text ? t->text + t->length : NULL, t->text ? room : 0, format, ap);
        va_end(ap);
        if (n < 0) fail(EXIT_MODEL, "cannot format text");
        if (t->text && (size_t)n < room) {
            t->length += (size_t)n;
            return;
        }
        size_t wanted = t->length + (size_t)n + 1;
        size_t capacity = t->capacity ? t->capacity : 256;
        while (capacity < wanted) capacity *= 2;
        char *grown = realloc(t->text, capacity);
        if (!grown) fail(EXIT_MODEL, "out of memory");
        t->text = grown;
        t->capacity = capacity;
    }
}

/* FNV-1a over 8-byte words (and the tail bytes): a fingerprint of the data. */
static uint64_t fingerprint(uint64_t h, const void *bytes, size_t size)
{
    const uint8_t *p = bytes;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < size; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* ------------------------------------------------------------------------ */
/* Random numbers: xoshiro256**, seeded by splitmix64 from (seed, stream,   */
/* counter), so any draw can be reproduced without replaying the others.   */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint64_t s[4];
} rng;

enum { STREAM_SHUFFLE = 1, STREAM_AUGMENT = 2 };

/* splitmix64 is the runtime's rc_rng (runtime.c), stepping *x. */
static uint64_t splitmix64(uint64_t *x)
{
    rc_rng r = { *x };
    const uint64_t v = rc_rng_u64(&r);
    *x = r.s;
    return v;
}

static rng rng_for(uint64_t seed, uint64_t stream, uint64_t counter)
{
    uint64_t k = seed;
    k = splitmix64(&k) ^ (stream * 0xd1b54a32d192ed03ull);
    k = splitmix64(&k) ^ (counter * 0xaef17502108ef2d9ull);
    rng r;
    for (int i = 0; i < 4; i++) r.s[i] = splitmix64(&k);
    return r;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n), unbiased (rejection). */
static uint64_t rng_below(rng *r, uint64_t n)
{
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = rng_next(r);
        if (x >= threshold) return x % n;
    }
}

/* ------------------------------------------------------------------------ */
/* safetensors: runtime.c's reader, which checks everything it relies on.  */
/* ------------------------------------------------------------------------ */

/* Reads and checks a whole safetensors file; fails with the file's name. */
static void st_open(const char *path, const char *what, rc_st_file *f)
{
    if (is_directory(path)) fail(EXIT_INPUT, "%s %s is not a regular file", what, path);
    int rc = rc_st_open(path, f);
    if (rc == RC_ERR_OPEN) fail(EXIT_INPUT, "cannot read %s %s: %s", what, path, strerror(errno));
    if (rc == RC_ERR_NOMEM) fail(EXIT_MODEL, "out of memory reading %s %s", what, path);
    if (rc != RC_OK) fail(EXIT_INPUT, "%s: not a valid safetensors file: %s", path, f->why);
}

/* ------------------------------------------------------------------------ */
/* Data sets                                                                */
/* ------------------------------------------------------------------------ */

/* Images n×C×H×W, kept as stored: bytes (scaled by 1/255 when read) or
 * floats (dataset.c), and where they came from. */
typedef struct {
    char *source;             /* the file or directory it came from, for messages */
    size_t count;
    uint8_t *u8;
    float *f32;
    int32_t *labels;
} dataset;

static const rc_data_shape network_shape = { IN_C, IN_H, IN_W, CLASSES };

static float pixel(const dataset *d, size_t image, size_t p)
{
    size_t at = image * IMAGE + p;
    return d->u8 ? (float)d->u8[at] / 255.0f : d->f32[at];
}

static void take(dataset *d, rc_dataset *r)
{
    d->count = r->count;
    d->u8 = r->u8;
    d->f32 = r->f32;
    d->labels = r->labels;
}

/* The read's failure, named by path: out of memory is the model's exit
 * status, anything else bad data. */
static void data_fail(int rc, const char *path, const char *why)
{
    fail(rc == RC_ERR_NOMEM ? EXIT_MODEL : EXIT_INPUT, "%s: %s%s", path, why,
         rc == RC_ERR_LABEL || rc == RC_ERR_SHAPE ? " (network " NET_NAME ")" : "");
}

/* Appends the records of one CIFAR-10 binary file (1 label byte + 3072 bytes
 * of R, G, B planes, 32×32 each) to d. */
static void cifar_append(dataset *d, const char *path)
{
    blob b = read_file(path, "CIFAR-10 batch");
    rc_dataset r = { d->count, d->u8, d->f32, d->labels };
    char why[256];
    int rc = rc_data_append_cifar(&r, b.bytes, b.size, &network_shape, why, sizeof why);
    free(b.bytes);
    if (rc != RC_OK) data_fail(rc, path, why);
    take(d, &r);
}

static void cifar_check_network(const char *path)
{
    if (IN_C != 3 || IN_H != 32 || IN_W != 32) {
        fail(EXIT_INPUT, "%s: CIFAR-10 images are 3×32×32, but network " NET_NAME " takes %zu×%zu×%zu",
             path, IN_C, IN_H, IN_W);
    }
    if (CLASSES != 10) note("CIFAR-10 has 10 classes; network " NET_NAME " has %d outputs", CLASSES);
}

/* images (N×C×H×W, U8 or F32) and labels (N, I32, I64 or U8) from a safetensors file. */
static void safetensors_load(dataset *d, const char *path, const char *what)
{
    rc_st_file f;
    rc_dataset r;
    char why[256];
    st_open(path, what, &f);
    int rc = rc_data_from_safetensors(&r, &f, &network_shape, why, sizeof why);
    rc_st_close(&f);
    if (rc != RC_OK) data_fail(rc, path, why);
    take(d, &r);
    d->source = xstrdup(path);
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A CIFAR-10 directory may be given as the folder holding the batches or as
 * its parent (where cifar-10-binary.tar.gz was extracted). */
static void cifar_directory(const char *path, char *dir, size_t cap)
{
    char inner[4096];
    snprintf(inner, sizeof inner, "%s/cifar-10-batches-bin", path);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/data_batch_1.bin", path);
    if (!file_exists(probe) && is_directory(inner)) snprintf(dir, cap, "%s", inner);
    else snprintf(dir, cap, "%s", path);
}

/* A single CIFAR-10 .bin file, or else a safetensors file. */
static void load_file(dataset *d, const char *path, const char *what)
{
    if (has_suffix(path, ".bin")) {
        cifar_check_network(path);
        cifar_append(d, path);
        d->source = xstrdup(path);
    } else {
        safetensors_load(d, path, what);
    }
}

/* Training images: a CIFAR-10 directory (data_batch_1..5.bin) or a safetensors file. */
static void load_training(dataset *d, const char *path, char *default_test, size_t cap)
{
    memset(d, 0, sizeof *d);
    default_test[0] = '\0';
    if (is_directory(path)) {
        char dir[4096];
        cifar_directory(path, dir, sizeof dir);
        cifar_check_network(dir);
        for (int i = 1; i <= 5; i++) {
            char file[4200];
            snprintf(file, sizeof file, "%s/data_batch_%d.bin", dir, i);
            if (!file_exists(file)) {
                fail(EXIT_INPUT, "%s is not a CIFAR-10 binary directory: %s is missing "
                     "(expected data_batch_1.bin ... data_batch_5.bin and test_batch.bin)", path, file);
            }
            cifar_append(d, file);
        }
        d->source = xstrdup(dir);
        snprintf(default_test, cap, "%s/test_batch.bin", dir);
        if (!file_exists(default_test)) default_test[0] = '\0';
    } else {
        load_file(d, path, "training data");
    }
}

/* Test images: test_batch.bin (or any CIFAR-10 .bin file, or a CIFAR-10
 * directory) or a safetensors file. */
static void load_test(dataset *d, const char *path)
{
    memset(d, 0, sizeof *d);
    if (is_directory(path)) {
        char dir[4096], file[4200];
        cifar_directory(path, dir, sizeof dir);
        snprintf(file, sizeof file, "%s/test_batch.bin", dir);
        cifar_check_network(file);
        cifar_append(d, file);
        d->source = xstrdup(file);
    } else {
        load_file(d, path, "test data");
    }
}

static uint64_t data_fingerprint(const dataset *d)
{
    uint64_t h = 0xcbf29ce484222325ull;
    uint64_t n = d->count;
    h = fingerprint(h, &n, sizeof n);
    h = fingerprint(h, d->labels, d->count * sizeof(int32_t));
    if (d->u8) h = fingerprint(h, d->u8, d->count * IMAGE);
    else h = fingerprint(h, d->f32, d->count * IMAGE * sizeof(float));
    return h;
}

/* ------------------------------------------------------------------------ */
/* Options. One table drives parsing, --help, the state file and the       */
/* resume checks.                                                           */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *data, *test, *out, *recipe, *milestones;
    long long batch, iterations, pad, seed, val, eval_every, checkpoint_every, print_every, train_error_images, stop_at;
    double lr, lr_decay, momentum, weight_decay, warmup_lr, warmup_error;
    int flip, augment, mean, warmup, resume;
} config;

static config cfg = {
    .data = "", .test = "", .out = ".", .recipe = "paper", .milestones = "32000,48000",
    .batch = 128, .iterations = 64000, .pad = 4, .seed = 0, .val = 0,
    .eval_every = 1000, .checkpoint_every = 1000, .print_every = 100, .train_error_images = 1000, .stop_at = 0,
    .lr = 0.1, .lr_decay = 0.1, .momentum = 0.9, .weight_decay = 1e-4, .warmup_lr = 0.01, .warmup_error = 80,
    .flip = 1, .augment = 1, .mean = 1, .warmup = 0, .resume = 0,
};

enum kind { TEXT, INTEGER, REAL, FLAG_ON, FLAG_OFF };
enum resume_rule {
    NOT_STORED,   /* not part of the run (where it is written, whether to resume) */
    MAY_CHANGE,   /* a resumed run may change it (with a note) */
    MUST_MATCH,   /* decides which batches are seen: a resumed run must keep it */
};

typedef struct {
    const char *flag;      /* "--batch" */
    const char *key;       /* its name in checkpoint.state */
    enum kind kind;
    enum resume_rule rule;
    void *value;
    const char *argument;  /* for --help */
    const char *help;
    int given;
} option;

static option options[] = {
    { "--data", "data", TEXT, MAY_CHANGE, &cfg.data, "PATH",
      "training data: a CIFAR-10 binary directory (data_batch_1..5.bin, test_batch.bin) or a\n"
      "safetensors file with images (N×C×H×W, U8 or F32) and labels (N, I32/I64/U8)", 0 },
    { "--test", "test", TEXT, MAY_CHANGE, &cfg.test, "PATH",
      "test data (safetensors, or CIFAR-10 .bin); default: test_batch.bin of a CIFAR-10 --data", 0 },
    { "--out", NULL, TEXT, NOT_STORED, &cfg.out, "DIR", "where train.csv, checkpoints and the weights go (default .)", 0 },
    { "--recipe", "recipe", TEXT, MUST_MATCH, &cfg.recipe, "paper|none",
      "paper: per-pixel mean subtraction and pad/crop/flip augmentation (default); none: neither", 0 },
    { "--batch", "batch", INTEGER, MUST_MATCH, &cfg.batch, "N", "images per SGD step (default 128)", 0 },
    { "--lr", "lr", REAL, MAY_CHANGE, &cfg.lr, "X", "initial learning rate (default 0.1)", 0 },
    { "--lr-decay", "lr_decay", REAL, MAY_CHANGE, &cfg.lr_decay, "X", "lr is multiplied by X at each milestone (default 0.1)", 0 },
    { "--milestones", "milestones", TEXT, MAY_CHANGE, &cfg.milestones, "I,J,...",
      "iterations where lr decays (default 32000,48000; 'none' for a constant lr)", 0 },
    { "--iterations", "iterations", INTEGER, MAY_CHANGE, &cfg.iterations, "N", "SGD steps in all (default 64000)", 0 },
    { "--momentum", "momentum", REAL, MAY_CHANGE, &cfg.momentum, "X", "SGD momentum (default 0.9)", 0 },
    { "--weight-decay", "weight_decay", REAL, MAY_CHANGE, &cfg.weight_decay, "X", "L2 weight decay (default 1e-4)", 0 },
    { "--pad", "pad", INTEGER, MUST_MATCH, &cfg.pad, "N", "zero padding on each side before the random crop (default 4)", 0 },
    { "--no-flip", "flip", FLAG_OFF, MUST_MATCH, &cfg.flip, NULL, "no random horizontal flips", 0 },
    { "--no-augment", "augment", FLAG_OFF, MUST_MATCH, &cfg.augment, NULL, "no padding, cropping or flipping", 0 },
    { "--no-mean", "mean", FLAG_OFF, MUST_MATCH, &cfg.mean, NULL, "do not subtract the mean image", 0 },
    { "--seed", "seed", INTEGER, MUST_MATCH, &cfg.seed, "N", "seeds initialisation, shuffling and augmentation (default 0)", 0 },
    { "--val", "val", INTEGER, MUST_MATCH, &cfg.val, "N",
      "hold out the last N training images as a validation set (5000: the paper's 45k/5k split)", 0 },
    { "--warmup", "warmup", FLAG_ON, MAY_CHANGE, &cfg.warmup, NULL,
      "lr --warmup-lr until the training error is below --warmup-error (the paper's ResNet-110)", 0 },
    { "--warmup-lr", "warmup_lr", REAL, MAY_CHANGE, &cfg.warmup_lr, "X", "learning rate while warming up (default 0.01)", 0 },
    { "--warmup-error", "warmup_error", REAL, MAY_CHANGE, &cfg.warmup_error, "PCT", "warm-up ends below this training error (default 80)", 0 },
    { "--eval-every", "eval_every", INTEGER, MAY_CHANGE, &cfg.eval_every, "N", "test (and validation) error every N iterations and at the end; 0: at the end only (default 1000)", 0 },
    { "--checkpoint-every", "checkpoint_every", INTEGER, MAY_CHANGE, &cfg.checkpoint_every, "N", "checkpoint every N iterations and at the end; 0: at the end only (default 1000)", 0 },
    { "--print-every", "print_every", INTEGER, MAY_CHANGE, &cfg.print_every, "N", "a progress line and CSV row every N iterations (default 100)", 0 },
    { "--train-error-images", "train_error_images", INTEGER, MAY_CHANGE, &cfg.train_error_images, "N",
      "training error is measured on N fixed training images at each progress line; 0: never (default 1000)", 0 },
    { "--resume", NULL, FLAG_ON, NOT_STORED, &cfg.resume, NULL, "continue the run in --out from its checkpoint", 0 },
    { "--stop-at", NULL, INTEGER, NOT_STORED, &cfg.stop_at, "N",
      "checkpoint and stop after iteration N, as if interrupted there (continue with --resume)", 0 },
};
#define OPTION_COUNT (sizeof options / sizeof options[0])

static void usage(FILE *to)
{
    fprintf(to,
            "usage: train --data PATH [--test PATH] [--out DIR] [options]\n"
            "Trains network " NET_NAME " (input %zu×%zu×%zu, %d classes) with SGD; see the top of trainer.c.\n\n",
            IN_C, IN_H, IN_W, CLASSES);
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        char head[64];
        snprintf(head, sizeof head, "%s%s%s", options[i].flag, options[i].argument ? " " : "",
                 options[i].argument ? options[i].argument : "");
        fprintf(to, "  %-26s ", head);
        for (const char *h = options[i].help; *h; h++) {
            fputc(*h, to);
            if (*h == '\n') fprintf(to, "  %-26s ", "");
        }
        fputc('\n', to);
    }
    fprintf(to, "  %-26s %s\n", "--help", "this text");
}

static long long parse_integer(const char *flag, const char *text)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end) fail(EXIT_INPUT, "%s expects an integer, not '%s'", flag, text);
    return v;
}

static double parse_real(const char *flag, const char *text)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v)) fail(EXIT_INPUT, "%s expects a number, not '%s'", flag, text);
    return v;
}

/* Sets option o from text (an argument or a state-file value). */
static void set_option(option *o, const char *text)
{
    switch (o->kind) {
    case TEXT: *(const char **)o->value = text; break;
    case INTEGER: *(long long *)o->value = parse_integer(o->flag, text); break;
    case REAL: *(double *)o->value = parse_real(o->flag, text); break;
    case FLAG_ON:
    case FLAG_OFF: *(int *)o->value = (int)parse_integer(o->flag, text); break;
    }
}

/* Option o's value as text, exact enough to read back (%.17g for reals). */
static void option_text(const option *o, char *buf, size_t cap)
{
    switch (o->kind) {
    case TEXT: snprintf(buf, cap, "%s", *(const char *const *)o->value); break;
    case INTEGER: snprintf(buf, cap, "%lld", *(const long long *)o->value); break;
    case REAL: snprintf(buf, cap, "%.17g", *(const double *)o->value); break;
    case FLAG_ON:
    case FLAG_OFF: snprintf(buf, cap, "%d", *(const int *)o->value); break;
    }
}

/* The option as a person would type it, for messages: "--batch 64", "--lr 0.1",
 * "--no-flip", "no --no-flip". */
static void option_spelling(const option *o, const char *value, char *buf, size_t cap)
{
    int active = (o->kind == FLAG_ON) == (strcmp(value, "1") == 0);
    if (o->kind == FLAG_ON || o->kind == FLAG_OFF) snprintf(buf, cap, active ? "%s" : "no %s", o->flag);
    else if (o->kind == REAL) snprintf(buf, cap, "%s %g", o->flag, strtod(value, NULL));
    else snprintf(buf, cap, "%s %s", o->flag, *value ? value : "''");
}

static void parse_arguments(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        const char *inline_value = NULL;
        char name[64];
        const char *eq = strchr(arg, '=');
        if (eq && strncmp(arg, "--", 2) == 0 && (size_t)(eq - arg) < sizeof name) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = '\0';
            inline_value = eq + 1;
            arg = name;
        }
        option *o = NULL;
        if (strcmp(arg, "-o") == 0) arg = "--out";
        for (size_t k = 0; k < OPTION_COUNT && !o; k++) {
            if (strcmp(arg, options[k].flag) == 0) o = &options[k];
        }
        if (!o) {
            fprintf(stderr, "train: error: unknown option '%s'\n", argv[i]);
            usage(stderr);
            exit(EXIT_INPUT);
        }
        if (o->kind == FLAG_ON || o->kind == FLAG_OFF) {
            if (inline_value) fail(EXIT_INPUT, "%s takes no value", o->flag);
            *(int *)o->value = o->kind == FLAG_ON;
        } else {
            const char *value = inline_value;
            if (!value) {
                if (i + 1 >= argc) fail(EXIT_INPUT, "%s needs a value (%s)", o->flag, o->argument);
                value = argv[++i];
            }
            set_option(o, value);
        }
        o->given = 1;
    }
}

#define MAX_MILESTONES 64

typedef struct {
    long long at[MAX_MILESTONES];
    int count;
} schedule;

static schedule parse_milestones(const char *text)
{
    schedule s = { { 0 }, 0 };
    if (*text == '\0' || strcmp(text, "none") == 0) return s;
    const char *p = text;
    for (;;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno || end == p || v < 1) fail(EXIT_INPUT, "--milestones expects positive iterations separated by commas, not '%s'", text);
        if (s.count == MAX_MILESTONES) fail(EXIT_INPUT, "--milestones: at most %d", MAX_MILESTONES);
        if (s.count && v <= s.at[s.count - 1]) fail(EXIT_INPUT, "--milestones must increase: '%s'", text);
        s.at[s.count++] = v;
        if (*end == '\0') break;
        if (*end != ',') fail(EXIT_INPUT, "--milestones expects positive iterations separated by commas, not '%s'", text);
        p = end + 1;
    }
    return s;
}

static void check_options(void)
{
    if (strcmp(cfg.recipe, "paper") != 0 && strcmp(cfg.recipe, "none") != 0) {
        fail(EXIT_INPUT, "--recipe must be 'paper' or 'none', not '%s'", cfg.recipe);
    }
    if (!*cfg.data) fail(EXIT_INPUT, "--data PATH is required (a CIFAR-10 binary directory or a safetensors file)");
    if (!*cfg.out) fail(EXIT_INPUT, "--out must not be empty");
    if (cfg.batch < 1 || cfg.batch > (1 << 20)) fail(EXIT_INPUT, "--batch must be between 1 and %d, not %lld", 1 << 20, cfg.batch);
    if (cfg.iterations < 1) fail(EXIT_INPUT, "--iterations must be at least 1");
    if (!(cfg.lr > 0)) fail(EXIT_INPUT, "--lr must be positive");
    if (!(cfg.lr_decay > 0)) fail(EXIT_INPUT, "--lr-decay must be positive");
    if (cfg.momentum < 0) fail(EXIT_INPUT, "--momentum must not be negative");
    if (cfg.weight_decay < 0) fail(EXIT_INPUT, "--weight-decay must not be negative");
    if (cfg.pad < 0 || (size_t)cfg.pad > IN_H || (size_t)cfg.pad > IN_W) {
        fail(EXIT_INPUT, "--pad must be between 0 and the image size (%zu×%zu)", IN_H, IN_W);
    }
    if (cfg.seed < 0) fail(EXIT_INPUT, "--seed must not be negative");
    if (cfg.val < 0) fail(EXIT_INPUT, "--val must not be negative");
    if (cfg.eval_every < 0 || cfg.checkpoint_every < 0) fail(EXIT_INPUT, "--eval-every and --checkpoint-every must not be negative");
    if (cfg.print_every < 1) fail(EXIT_INPUT, "--print-every must be at least 1");
    if (cfg.stop_at < 0) fail(EXIT_INPUT, "--stop-at must not be negative");
    if (cfg.train_error_images < 0) fail(EXIT_INPUT, "--train-error-images must not be negative");
    if (!(cfg.warmup_lr > 0)) fail(EXIT_INPUT, "--warmup-lr must be positive");
    if (!(cfg.warmup_error > 0 && cfg.warmup_error <= 100)) fail(EXIT_INPUT, "--warmup-error must be a percentage in (0, 100]");
    if (cfg.warmup && cfg.train_error_images == 0) fail(EXIT_INPUT, "--warmup needs the training error: --train-error-images must be above 0");
    if (strchr(cfg.data, '\n') || strchr(cfg.test, '\n') || strchr(cfg.out, '\n')) fail(EXIT_INPUT, "paths must not contain newlines");
}

/* ------------------------------------------------------------------------ */
/* Training state (checkpoint.state): what the model checkpoint does not   */
/* hold. Text, one "key value" a line, written atomically.                  */
/* ------------------------------------------------------------------------ */

#define STATE_FORMAT "resnet-compile-train-state 1"

typedef struct {
    long long iteration;     /* SGD steps done */
    double elapsed;          /* wall seconds over all sessions, at the checkpoint */
    int warming;             /* still in warm-up */
    double loss_sum;         /* losses since the last row (for the next row's mean) */
    long long loss_count;
    uint64_t data_hash;      /* fingerprint of the training file(s), validation part included */
    long long data_images;   /* images in the training file(s), validation part included */
    long long checkpoint_bytes;
    uint64_t checkpoint_hash;
} run_state;

static void state_write(const char *path, const run_state *s, const char *checkpoint_file, const char *mean_file)
{
    text_buffer t = { 0 };
    append(&t, "# resnet-compile training state for " NET_NAME " (written by trainer.c at each checkpoint; do not edit)\n");
    append(&t, "# Randomness is counter-based: epoch e is shuffled by xoshiro256** seeded from (seed, %d, e), and\n", STREAM_SHUFFLE);
    append(&t, "# iteration i's crops and flips come from (seed, %d, i); so seed + iteration are the whole RNG state.\n", STREAM_AUGMENT);
    append(&t, "format %s\n", STATE_FORMAT);
    append(&t, "network %s\n", NET_NAME);
    append(&t, "iteration %lld\n", s->iteration);
    append(&t, "rng_next_sample %lld\n", s->iteration * cfg.batch);
    append(&t, "rng_shuffle_epoch %lld\n", s->data_images > cfg.val ? s->iteration * cfg.batch / (s->data_images - cfg.val) : 0);
    append(&t, "elapsed %a\n", s->elapsed);
    append(&t, "warming %d\n", s->warming);
    append(&t, "loss_sum %a\n", s->loss_sum);
    append(&t, "loss_count %lld\n", s->loss_count);
    append(&t, "data_images %lld\n", s->data_images);
    append(&t, "data_hash %016llx\n", (unsigned long long)s->data_hash);
    append(&t, "mean_file %s\n", mean_file);
    append(&t, "checkpoint_file %s\n", checkpoint_file);
    append(&t, "checkpoint_bytes %lld\n", s->checkpoint_bytes);
    append(&t, "checkpoint_hash %016llx\n", (unsigned long long)s->checkpoint_hash);
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        if (options[i].rule == NOT_STORED) continue;
        char value[4200];
        option_text(&options[i], value, sizeof value);
        append(&t, "%s %s\n", options[i].key, value);
    }
    if (write_atomically(path, t.text, t.length) != 0) fail(EXIT_MODEL, "cannot write %s: %s", path, strerror(errno));
    free(t.text);
}

static uint64_t parse_hex(const char *path, const char *key, const char *text)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 16);
    if (errno || end == text || *end) fail(EXIT_INPUT, "%s: bad value for %s: '%s'", path, key, text);
    return v;
}

static double parse_hex_real(const char *path, const char *key, const char *text)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !isfinite(v)) fail(EXIT_INPUT, "%s: bad value for %s: '%s'", path, key, text);
    return v;
}

/* Reads checkpoint.state: fills s, and every option not given on the
 * command line; a given option that must match and differs is an error. */
static void state_read(const char *path, run_state *s, char *mean_file, char *checkpoint_file, size_t cap)
{
    blob b = read_file(path, "training state");
    char *text = xmalloc(b.size + 1);
    memcpy(text, b.bytes, b.size);
    text[b.size] = '\0';
    free(b.bytes);
    enum { FORMAT, NETWORK, ITERATION, ELAPSED, WARMING, LOSS_SUM, LOSS_COUNT, DATA_IMAGES, DATA_HASH,
           MEAN_FILE, CHECKPOINT_FILE, CHECKPOINT_BYTES, CHECKPOINT_HASH, REQUIRED };
    static const char *const required[REQUIRED] = {
        "format", "network", "iteration", "elapsed", "warming", "loss_sum", "loss_count", "data_images",
        "data_hash", "mean_file", "checkpoint_file", "checkpoint_bytes", "checkpoint_hash",
    };
    int seen[REQUIRED] = { 0 };
    int option_seen[OPTION_COUNT] = { 0 };
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (*line == '#' || *line == '\0') continue;
        char *space = strchr(line, ' ');
        const char *value = space ? space + 1 : "";
        if (space) *space = '\0';
        const char *key = line;
        int k = -1;
        for (int i = 0; i < REQUIRED; i++) if (strcmp(key, required[i]) == 0) k = i;
        if (k >= 0) {
            seen[k] = 1;
            switch (k) {
            case FORMAT:
                if (strcmp(value, STATE_FORMAT) != 0) fail(EXIT_INPUT, "%s: format '%s' is not '%s'", path, value, STATE_FORMAT);
                break;
            case NETWORK:
                if (strcmp(value, NET_NAME) != 0) {
                    fail(EXIT_INPUT, "%s: the checkpoint is of network '%s', not " NET_NAME, path, value);
                }
                break;
            case ITERATION: s->iteration = parse_integer("iteration", value); break;
            case ELAPSED: s->elapsed = parse_hex_real(path, key, value); break;
            case WARMING: s->warming = (int)parse_integer("warming", value); break;
            case LOSS_SUM: s->loss_sum = parse_hex_real(path, key, value); break;
            case LOSS_COUNT: s->loss_count = parse_integer("loss_count", value); break;
            case DATA_IMAGES: s->data_images = parse_integer("data_images", value); break;
            case DATA_HASH: s->data_hash = parse_hex(path, key, value); break;
            case MEAN_FILE: snprintf(mean_file, cap, "%s", value); break;
            case CHECKPOINT_FILE: snprintf(checkpoint_file, cap, "%s", value); break;
            case CHECKPOINT_BYTES: s->checkpoint_bytes = parse_integer("checkpoint_bytes", value); break;
            case CHECKPOINT_HASH: s->checkpoint_hash = parse_hex(path, key, value); break;
            }
            continue;
        }
        option *o = NULL;
        for (size_t i = 0; i < OPTION_COUNT && !o; i++) {
            if (options[i].key && strcmp(options[i].key, key) == 0) {
                o = &options[i];
                option_seen[i] = 1;
            }
        }
        if (!o) continue; /* informational lines (rng_next_sample, ...) */
        if (!o->given) {
            set_option(o, o->kind == TEXT ? xstrdup(value) : value); /* text lives as long as the run */
            continue;
        }
        char now[4200], then[4200], was[4200], is[4200];
        option_text(o, now, sizeof now);
        option saved = *o;
        double real;
        long long integer;
        int flag;
        const char *string;
        switch (o->kind) {
        case TEXT: saved.value = &string; break;
        case INTEGER: saved.value = &integer; break;
        case REAL: saved.value = &real; break;
        default: saved.value = &flag; break;
        }
        set_option(&saved, value);
        option_text(&saved, then, sizeof then);
        if (strcmp(now, then) == 0) continue;
        option_spelling(o, now, is, sizeof is);
        option_spelling(o, then, was, sizeof was);
        if (o->rule == MUST_MATCH) {
            fail(EXIT_INPUT, "%s: the run was started with %s; resuming with %s would not continue it "
                 "(it decides which batches are seen); drop the option, or start a new run in another --out",
                 path, was, is);
        }
        note("resuming with %s instead of the run's %s", is, was);
    }
    for (int i = 0; i < REQUIRED; i++) {
        if (!seen[i]) fail(EXIT_INPUT, "%s lacks '%s': it is damaged or not a training state file", path, required[i]);
    }
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        if (options[i].rule != NOT_STORED && !option_seen[i]) {
            fail(EXIT_INPUT, "%s lacks '%s': it is damaged or not a training state file", path, options[i].key);
        }
    }
    free(text);
}

/* ------------------------------------------------------------------------ */
/* Batches                                                                  */
/* ------------------------------------------------------------------------ */

/* The training images are d[0 .. train), the validation images d[train .. count). */
typedef struct {
    const dataset *d;
    size_t train;
    const float *mean;        /* IMAGE floats, or NULL */
    size_t *perm;             /* the permutation of the cached epoch */
    long long perm_epoch;     /* -1: none cached */
} sampler;

static void shuffle_epoch(sampler *s, long long epoch)
{
    rng r = rng_for((uint64_t)cfg.seed, STREAM_SHUFFLE, (uint64_t)epoch);
    for (size_t i = 0; i < s->train; i++) s->perm[i] = i;
    for (size_t i = s->train; i > 1; i--) {
        size_t j = (size_t)rng_below(&r, i);
        size_t t = s->perm[i - 1];
        s->perm[i - 1] = s->perm[j];
        s->perm[j] = t;
    }
    s->perm_epoch = epoch;
}

/* Image `index` with the mean subtracted (the original view). */
static void plain_image(const sampler *s, size_t index, float *x)
{
    for (size_t p = 0; p < IMAGE; p++) x[p] = pixel(s->d, index, p) - (s->mean ? s->mean[p] : 0.0f);
}

/* The batch of iteration `iteration` (0-based): samples iteration*batch ... of
 * the shuffled stream, each padded, randomly cropped and flipped. */
static void training_batch(sampler *s, long long iteration, float *x, int32_t *labels)
{
    rng r = rng_for((uint64_t)cfg.seed, STREAM_AUGMENT, (uint64_t)iteration);
    const long long pad = cfg.pad;
    for (long long b = 0; b < cfg.batch; b++) {
        unsigned long long k = (unsigned long long)iteration * (unsigned long long)cfg.batch + (unsigned long long)b;
        long long epoch = (long long)(k / s->train);
        if (epoch != s->perm_epoch) shuffle_epoch(s, epoch);
        size_t index = s->perm[k % s->train];
        labels[b] = s->d->labels[index];
        float *out = x + (size_t)b * IMAGE;
        /* Draw all three always, so turning flips off does not change the crops. */
        long long dy = (long long)rng_below(&r, (uint64_t)(2 * pad + 1));
        long long dx = (long long)rng_below(&r, (uint64_t)(2 * pad + 1));
        int flip = (int)rng_below(&r, 2);
        if (!cfg.augment) {
            plain_image(s, index, out);
            continue;
        }
        if (!cfg.flip) flip = 0;
        const long long h = (long long)IN_H, w = (long long)IN_W;
        for (size_t c = 0; c < IN_C; c++) {
            for (long long y = 0; y < h; y++) {
                long long sy = y + dy - pad;
                for (long long xx = 0; xx < w; xx++) {
                    long long sx = (flip ? w - 1 - xx : xx) + dx - pad;
                    float v = 0.0f; /* padding is zero after mean subtraction */
                    if (sy >= 0 && sy < h && sx >= 0 && sx < w) {
                        size_t p = (c * IN_H + (size_t)sy) * IN_W + (size_t)sx;
                        v = pixel(s->d, index, p) - (s->mean ? s->mean[p] : 0.0f);
                    }
                    out[(c * IN_H + (size_t)y) * IN_W + (size_t)xx] = v;
                }
            }
        }
    }
}

/* Percent of the images misclassified by NET_infer (eval mode, original view).
 * indices == NULL: images first .. first+count-1 of s->d. */
static double error_percent(F(model) *m, const sampler *s, const dataset *d, const float *mean,
                            size_t first, size_t count, const size_t *indices, float *x, float *probs, long long iteration)
{
    sampler view = *s;
    view.d = d;
    view.mean = mean;
    size_t wrong = 0;
    for (size_t done = 0; done < count;) {
        size_t n = count - done < (size_t)shard ? count - done : (size_t)shard;
        for (size_t i = 0; i < n; i++) {
            size_t index = indices ? indices[done + i] : first + done + i;
            plain_image(&view, index, x + i * IMAGE);
        }
        int rc = F(infer)(m, x, (int)n, probs);
        if (rc < 0) fail(EXIT_MODEL, "iteration %lld: " NET_NAME "_infer failed: %s (code %d)", iteration, F(strerror)(rc), rc);
        for (size_t i = 0; i < n; i++) {
            const float *p = probs + i * (size_t)CLASSES;
            int best = 0;
            for (int c = 1; c < CLASSES; c++) if (p[c] > p[best]) best = c;
            size_t index = indices ? indices[done + i] : first + done + i;
            if (best != d->labels[index]) wrong++;
        }
        done += n;
    }
    return count ? 100.0 * (double)wrong / (double)count : 0.0;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t interrupted = 0;

static void on_signal(int sig)
{
    interrupted = sig;
}

static double lr_at(const schedule *s, long long iteration, int warming)
{
    double lr = cfg.lr;
    for (int i = 0; i < s->count; i++) if (iteration >= s->at[i]) lr *= cfg.lr_decay;
    if (warming && cfg.warmup_lr < lr) lr = cfg.warmup_lr;
    return lr;
}

static void out_path(char *buf, size_t cap, const char *name)
{
    if (snprintf(buf, cap, "%s/%s", cfg.out, name) >= (int)cap) fail(EXIT_INPUT, "--out path too long");
}

static const char *csv_comment =
    "# resnet-compile training log for " NET_NAME " (trainer.c). A row every --print-every iterations, at every --eval-every, and at the end.\n"
    "# loss: mean softmax cross-entropy of the training steps since the previous row (train mode, augmented batches, as NAME_train_step reports it).\n"
    "# train_error: % misclassified by NAME_infer (eval mode) on a fixed subset of the training images (--train-error-images, evenly spaced),\n"
    "#   original view with the mean subtracted; measured at every row, so it costs no extra forward pass on the training batches.\n"
    "# test_error, val_error: % misclassified by NAME_infer on the test set and on the --val held-out images (original view); empty when not measured.\n"
    "# images_per_second: training images per second of training time (batch preparation + NAME_train_step) since the previous row.\n"
    "# elapsed_seconds: wall-clock seconds since the run started, resumed sessions included.\n"
    "iteration,lr,loss,train_error,test_error,images_per_second,elapsed_seconds,val_error\n";

/* On resume, drops the rows after the checkpoint (a run that went on past its
 * last checkpoint before it stopped), so the log matches an unbroken run. */
static void csv_truncate(const char *path, long long iteration)
{
    if (!file_exists(path)) {
        FILE *f = fopen(path, "w");
        if (!f) fail(EXIT_INPUT, "cannot write %s: %s", path, strerror(errno));
        fputs(csv_comment, f);
        fclose(f);
        return;
    }
    blob b = read_file(path, "training log");
    text_buffer kept = { 0 };
    size_t start = 0;
    for (size_t i = 0; i < b.size; i++) {
        if (b.bytes[i] != '\n') continue;
        const char *line = (const char *)b.bytes + start;
        size_t length = i + 1 - start;
        int keep = 1;
        if (line[0] >= '0' && line[0] <= '9' && atoll(line) > iteration) keep = 0;
        if (keep) append(&kept, "%.*s", (int)length, line);
        start = i + 1;
    }
    if (write_atomically(path, kept.text ? kept.text : "", kept.length) != 0) {
        fail(EXIT_MODEL, "cannot rewrite %s: %s", path, strerror(errno));
    }
    free(kept.text);
    free(b.bytes);
}

static void csv_row(const char *path, long long iteration, double lr, double loss, int has_loss, double train_error,
                    int has_train, double test_error, int has_test, double rate, double elapsed, double val_error, int has_val)
{
    FILE *f = fopen(path, "a");
    if (!f) fail(EXIT_MODEL, "cannot append to %s: %s", path, strerror(errno));
    fprintf(f, "%lld,%.6g,", iteration, lr);
    if (has_loss) fprintf(f, "%.6f", loss);
    fputc(',', f);
    if (has_train) fprintf(f, "%.2f", train_error);
    fputc(',', f);
    if (has_test) fprintf(f, "%.2f", test_error);
    fprintf(f, ",%.1f,%.1f,", rate, elapsed);
    if (has_val) fprintf(f, "%.2f", val_error);
    fputc('\n', f);
    if (fclose(f) != 0) fail(EXIT_MODEL, "cannot write %s: %s", path, strerror(errno));
}

static uint64_t file_hash(const char *path, long long *bytes)
{
    blob b = read_file(path, "checkpoint");
    uint64_t h = fingerprint(0xcbf29ce484222325ull, b.bytes, b.size);
    *bytes = (long long)b.size;
    free(b.bytes);
    return h;
}

/* mkdir -p */
static void make_directories(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) fail(EXIT_INPUT, "--out path too long");
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) fail(EXIT_INPUT, "cannot create %s: %s", buf, strerror(errno));
            *p = saved;
            if (saved == '\0') break;
        }
    }
    if (!is_directory(path)) fail(EXIT_INPUT, "--out %s is not a directory", path);
}

/* NET_save_checkpoint, then the state that goes with it (which names the
 * checkpoint's size and fingerprint, so a pair torn by a crash is noticed). */
static void write_checkpoint(const F(model) *m, const char *checkpoint_path, const char *checkpoint_file,
                             const char *state_path, const char *mean_file, run_state *state)
{
    int rc = F(save_checkpoint)(m, checkpoint_path);
    if (rc < 0) {
        fail(EXIT_MODEL, "iteration %lld: " NET_NAME "_save_checkpoint(%s) failed: %s (code %d)", state->iteration,
             checkpoint_path, F(strerror)(rc), rc);
    }
    state->checkpoint_hash = file_hash(checkpoint_path, &state->checkpoint_bytes);
    state_write(state_path, state, checkpoint_file, mean_file);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef RC_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) fail(EXIT_INPUT, "cannot silence stdout");
#endif
    if (!rc_host_is_le()) fail(EXIT_INPUT, "this trainer reads little-endian data files and needs a little-endian machine");
    parse_arguments(argc, argv);

    /* Where everything goes; on --resume, the run's settings. */
    char state_path[4200], csv_path[4200], checkpoint_path[4200], mean_path[4200], weights_path[4200];
    char mean_file[4096] = "mean.safetensors", checkpoint_file[4096] = "checkpoint.safetensors";
    out_path(state_path, sizeof state_path, "checkpoint.state");
    out_path(csv_path, sizeof csv_path, "train.csv");
    out_path(weights_path, sizeof weights_path, NET_NAME ".safetensors");
    run_state state = { 0 };
    if (cfg.resume) {
        if (!file_exists(state_path)) {
            fail(EXIT_INPUT, "nothing to resume: %s does not exist (start the run without --resume)", state_path);
        }
        state_read(state_path, &state, mean_file, checkpoint_file, sizeof mean_file);
        if (strchr(mean_file, '/') || strchr(checkpoint_file, '/') || !*checkpoint_file) {
            fail(EXIT_INPUT, "%s: bad file names in the state", state_path);
        }
    } else if (file_exists(state_path)) {
        fail(EXIT_INPUT, "%s already holds a run (%s exists): continue it with --resume, or choose another --out",
             cfg.out, state_path);
    }
    if (strcmp(cfg.recipe, "none") == 0) {
        cfg.augment = 0;
        cfg.mean = 0;
    }
    check_options();
    if (cfg.batch % ranks != 0) fail(EXIT_INPUT, "--batch %lld does not split evenly over %d ranks", cfg.batch, ranks);
    shard = cfg.batch / ranks;
    const schedule milestones = parse_milestones(cfg.milestones);
    if (!cfg.mean) mean_file[0] = '\0';
    out_path(checkpoint_path, sizeof checkpoint_path, checkpoint_file);
    out_path(mean_path, sizeof mean_path, mean_file);

    /* Data. */
    dataset data, test;
    char default_test[4200];
    memset(&test, 0, sizeof test);
    load_training(&data, cfg.data, default_test, sizeof default_test);
    if ((unsigned long long)cfg.val >= data.count) {
        fail(EXIT_INPUT, "--val %lld leaves no training images (%s has %zu)", cfg.val, data.source, data.count);
    }
    const size_t train = data.count - (size_t)cfg.val;
    const char *test_path = *cfg.test ? cfg.test : default_test;
    const int have_test = *test_path != '\0';
    if (have_test) load_test(&test, test_path);
    const uint64_t data_hash = data_fingerprint(&data);
    if (cfg.resume && (data_hash != state.data_hash || (long long)data.count != state.data_images)) {
        fail(EXIT_INPUT, "%s: the training data differ from the run's (%zu images, fingerprint %016llx; the run had %lld, %016llx)",
             data.source, data.count, (unsigned long long)data_hash, state.data_images, (unsigned long long)state.data_hash);
    }
    state.data_hash = data_hash;
    state.data_images = (long long)data.count;
    if (rank == 0) make_directories(cfg.out); /* only now: bad options or data leave nothing behind */

    /* The per-pixel mean of the training images (validation images excluded),
     * summed in image order in double: the same bits every time. */
    float *mean = NULL;
    if (cfg.mean) {
        mean = xmalloc(IMAGE * sizeof(float));
        if (cfg.resume) {
            rc_st_file f;
            st_open(mean_path, "mean image", &f);
            const rc_st_entry *t = rc_st_find(&f, "mean");
            if (!t || t->dtype != RC_F32 || t->ndim != 3 || t->shape[0] != IN_C || t->shape[1] != IN_H || t->shape[2] != IN_W) {
                fail(EXIT_INPUT, "%s: tensor 'mean' must be F32 [%zu, %zu, %zu]", mean_path, IN_C, IN_H, IN_W);
            }
            memcpy(mean, f.data + t->begin, IMAGE * sizeof(float)); /* little-endian host: checked in main */
            rc_st_close(&f);
        } else {
            double *sum = calloc(IMAGE, sizeof(double));
            if (!sum) fail(EXIT_MODEL, "out of memory");
            for (size_t i = 0; i < train; i++) {
                for (size_t p = 0; p < IMAGE; p++) sum[p] += pixel(&data, i, p);
            }
            for (size_t p = 0; p < IMAGE; p++) mean[p] = (float)(sum[p] / (double)train);
            free(sum);
            static const char *const about[4] = {
                "format", "pt", "content",
                "per-pixel mean of the training images (pixels scaled to [0,1]); subtract it from every input to " NET_NAME "_infer"
            };
            rc_tensor t = { "mean", RC_F32, 3, { (int64_t)IN_C, (int64_t)IN_H, (int64_t)IN_W, 0 }, mean, 0 };
            if (rank == 0 && rc_st_save_with_metadata(mean_path, &t, 1, about, 2) != RC_OK) {
                fail(EXIT_MODEL, "cannot write %s: %s", mean_path, strerror(errno));
            }
        }
    }

    /* The model. */
    F(model) *m = F(create)((int)shard);
    if (!m) fail(EXIT_MODEL, NET_NAME "_create(%lld) failed (out of memory?)", shard);
    int rc;
    if (cfg.resume) {
        long long bytes;
        uint64_t hash = file_hash(checkpoint_path, &bytes);
        if (bytes != state.checkpoint_bytes || hash != state.checkpoint_hash) {
            fail(EXIT_INPUT, "%s is not the checkpoint %s describes (the run stopped while writing a checkpoint?)",
                 checkpoint_path, state_path);
        }
        rc = F(load_checkpoint)(m, checkpoint_path);
        if (rc < 0) fail(EXIT_INPUT, "%s: " NET_NAME "_load_checkpoint failed: %s (code %d)", checkpoint_path, F(strerror)(rc), rc);
    } else {
        rc = F(init_params)(m, (uint64_t)cfg.seed);
        if (rc < 0) fail(EXIT_MODEL, NET_NAME "_init_params failed: %s (code %d)", F(strerror)(rc), rc);
    }
    rc = F(set_optimizer)(m, (float)cfg.momentum, (float)cfg.weight_decay);
    if (rc < 0) fail(EXIT_INPUT, NET_NAME "_set_optimizer(%g, %g) failed: %s (code %d)", cfg.momentum, cfg.weight_decay, F(strerror)(rc), rc);
#ifdef RC_MPI
    rc = F(set_allreduce)(m, ranks > 1 ? mpi_sum : NULL, NULL, ranks);
    if (rc < 0) fail(EXIT_MODEL, NET_NAME "_set_allreduce failed: %s (code %d)", F(strerror)(rc), rc);
#endif

    if (rank != 0) {
        /* rank 0 keeps the log */
    } else if (cfg.resume) {
        csv_truncate(csv_path, state.iteration);
    } else if (write_atomically(csv_path, csv_comment, strlen(csv_comment)) != 0) {
        fail(EXIT_INPUT, "cannot write %s: %s", csv_path, strerror(errno));
    }

    /* Buffers, the sampler, and the fixed subset the training error is measured on. */
    float *x = xmalloc(mul_size((size_t)cfg.batch, IMAGE * sizeof(float), "batch"));
    float *probs = xmalloc((size_t)cfg.batch * (size_t)CLASSES * sizeof(float));
    int32_t *labels = xmalloc((size_t)cfg.batch * sizeof(int32_t));
    sampler s = { &data, train, mean, xmalloc(train * sizeof(size_t)), -1 };
    const size_t subset = (unsigned long long)cfg.train_error_images < train ? (size_t)cfg.train_error_images : train;
    size_t *subset_index = xmalloc(subset * sizeof(size_t));
    for (size_t i = 0; i < subset; i++) subset_index[i] = (size_t)((unsigned long long)i * train / subset);

    printf("train: " NET_NAME " (%zu×%zu×%zu, %d classes): %zu training images", IN_C, IN_H, IN_W, CLASSES, train);
    if (cfg.val) printf(" + %lld validation", cfg.val);
    printf(" from %s", data.source);
    if (have_test) printf(", %zu test images from %s", test.count, test.source);
    printf("\ntrain: recipe %s: %s%s; batch %lld, lr %g", cfg.recipe, cfg.mean ? "mean subtracted" : "no mean subtraction",
           cfg.augment ? (cfg.flip ? ", pad + crop + flip" : ", pad + crop") : ", no augmentation", cfg.batch, cfg.lr);
    if (milestones.count) printf(" ×%g at %s", cfg.lr_decay, cfg.milestones);
    printf("%s, %lld iterations (%.1f epochs), momentum %g, weight decay %g, seed %lld\n",
           cfg.warmup ? " (warm-up first)" : "", cfg.iterations, (double)cfg.iterations * (double)cfg.batch / (double)train,
           cfg.momentum, cfg.weight_decay, cfg.seed);
    size_t arena = F(arena_bytes)((int)shard, 1);
    if (arena) printf("train: training arena %.1f MiB; writing to %s\n", (double)arena / (1024.0 * 1024.0), cfg.out);
    if (ranks > 1) printf("train: %d ranks, %lld images each per step\n", ranks, shard);
    if (cfg.resume) printf("train: resuming at iteration %lld from %s\n", state.iteration, checkpoint_path);
    if (!have_test && !cfg.val) note("no test set (--test) and no --val: only the training error is measured");

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    /* A second Ctrl-C ends it at once. glibc's SA_RESETHAND is 0x80000000, an
     * unsigned int, for an int field: the cast says the wrap is meant. */
    action.sa_flags = (int)SA_RESETHAND;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);

    /* The loop. A row (CSV + progress line) every --print-every iterations, at
     * every evaluation and at the end; a checkpoint every --checkpoint-every
     * and at the end, always after the row, so the state is between rows. */
    long long it = state.iteration;
    const long long first_iteration = it;
    int warming = cfg.resume ? state.warming : cfg.warmup;
    double loss_sum = state.loss_sum;
    long long loss_count = state.loss_count;
    const double session_start = seconds_now();
    const double elapsed_before = state.elapsed; /* wall seconds of earlier sessions */
    double window_time = 0;
    long long window_images = 0, checkpointed = cfg.resume ? it : -1;
    double test_error = NAN, val_error = NAN;
    while (it < cfg.iterations && !(cfg.stop_at && it >= cfg.stop_at)) {
        /* a signal on any rank stops every rank here */
        if (on_any_rank(interrupted != 0)) {
            if (!interrupted) interrupted = SIGTERM;
            break;
        }
        const double t0 = seconds_now();
        const double lr = lr_at(&milestones, it, warming);
        training_batch(&s, it, x, labels);
        float loss = 0;
        rc = F(train_step)(m, x + (size_t)rank * (size_t)shard * IMAGE, labels + (size_t)rank * (size_t)shard, (int)shard,
                           (float)lr, &loss);
        if (rc >= 0 && !isfinite(loss)) rc = -1;
        if (rc < 0) {
            fail(EXIT_MODEL, "iteration %lld: " NET_NAME "_train_step failed: %s (code %d); nothing further is saved%s%s",
                 it + 1, rc == -1 && !isfinite(loss) ? "non-finite loss" : F(strerror)(rc), rc,
                 checkpointed >= 0 ? "; the last checkpoint is in " : "", checkpointed >= 0 ? cfg.out : "");
        }
        window_time += seconds_now() - t0;
        window_images += cfg.batch;
        loss_sum += loss;
        loss_count++;
        it++;

        const int final = it == cfg.iterations;
        const int eval = final || (cfg.eval_every && it % cfg.eval_every == 0);
        if ((eval || it % cfg.print_every == 0) && rank != 0) {
            from_rank0(&warming);
        } else if (eval || it % cfg.print_every == 0) {
            double train_error = NAN;
            if (subset) train_error = error_percent(m, &s, &data, mean, 0, subset, subset_index, x, probs, it);
            if (eval && have_test) test_error = error_percent(m, &s, &test, mean, 0, test.count, NULL, x, probs, it);
            if (eval && cfg.val) val_error = error_percent(m, &s, &data, mean, train, (size_t)cfg.val, NULL, x, probs, it);
            const double now = seconds_now();
            const double elapsed = elapsed_before + (now - session_start);
            const double rate = window_time > 0 ? (double)window_images / window_time : 0;
            const double loss_mean = loss_count ? loss_sum / (double)loss_count : NAN;
            csv_row(csv_path, it, lr, loss_mean, loss_count > 0, train_error, subset > 0, test_error, eval && have_test,
                    rate, elapsed, val_error, eval && cfg.val);
            char eta[32];
            format_duration((now - session_start) / (double)(it - first_iteration) * (double)(cfg.iterations - it), eta, sizeof eta);
            printf(fabs(loss_mean) < 1000 ? "iter %lld/%lld  lr %g  loss %.4f" : "iter %lld/%lld  lr %g  loss %.4g",
                   it, cfg.iterations, lr, loss_mean);
            if (subset) printf("  train-err %.1f%%", train_error);
            if (eval && have_test) printf("  test-err %.2f%%", test_error);
            if (eval && cfg.val) printf("  val-err %.2f%%", val_error);
            printf("  %.0f img/s  ETA %s\n", rate, eta);
            loss_sum = 0;
            loss_count = 0;
            window_time = 0;
            window_images = 0;
            if (warming && subset && train_error < cfg.warmup_error) {
                warming = 0;
                note("warm-up done at iteration %lld (training error %.1f%% < %g%%): lr back to %g", it, train_error,
                     cfg.warmup_error, lr_at(&milestones, it, 0));
            }
            from_rank0(&warming);
        }
        if (final || (cfg.checkpoint_every && it % cfg.checkpoint_every == 0)) {
            state.iteration = it;
            state.elapsed = elapsed_before + (seconds_now() - session_start);
            state.warming = warming;
            state.loss_sum = loss_sum;
            state.loss_count = loss_count;
            if (rank == 0) write_checkpoint(m, checkpoint_path, checkpoint_file, state_path, mean_file, &state);
            checkpointed = it;
        }
    }

    /* Stopped early: a checkpoint to resume from. Otherwise the end: the
     * weights, and the final numbers (measured at the last row, or now when a
     * resumed run had nothing left to do). Either way everything is freed. */
    int status = 0;
    if (it < cfg.iterations && (interrupted || cfg.stop_at)) {
        if (checkpointed != it) {
            state.iteration = it;
            state.elapsed = elapsed_before + (seconds_now() - session_start);
            state.warming = warming;
            state.loss_sum = loss_sum;
            state.loss_count = loss_count;
            if (rank == 0) write_checkpoint(m, checkpoint_path, checkpoint_file, state_path, mean_file, &state);
        }
        printf("train: %s at iteration %lld; checkpoint in %s; continue with --resume\n",
               interrupted ? "interrupted" : "stopped (--stop-at)", it, cfg.out);
        status = interrupted ? EXIT_INTERRUPTED : 0;
    } else {
        if (it == first_iteration && rank == 0) {
            if (have_test) test_error = error_percent(m, &s, &test, mean, 0, test.count, NULL, x, probs, it);
            if (cfg.val) val_error = error_percent(m, &s, &data, mean, train, (size_t)cfg.val, NULL, x, probs, it);
            printf("train: already at iteration %lld of %lld; nothing to train\n", it, cfg.iterations);
        }
        rc = rank == 0 ? F(save)(m, weights_path) : RC_OK;
        if (rc < 0) fail(EXIT_MODEL, NET_NAME "_save(%s) failed: %s (code %d)", weights_path, F(strerror)(rc), rc);
        char took[32];
        format_duration(elapsed_before + (seconds_now() - session_start), took, sizeof took);
        printf("train: done: %lld iterations in %s", it, took);
        if (have_test) printf("; test error %.2f%% (accuracy %.2f%%) on %zu images", test_error, 100 - test_error, test.count);
        if (cfg.val) printf("; validation error %.2f%% on %lld images", val_error, cfg.val);
        printf("\ntrain: saved %s", weights_path);
        if (cfg.mean) printf(" (inputs must have %s subtracted)", mean_path);
        printf("\n");
    }

    F(destroy)(m);
    free(x);
    free(probs);
    free(labels);
    free(s.perm);
    free(subset_index);
    free(mean);
    free(data.u8);
    free(data.f32);
    free(data.labels);
    free(data.source);
    free(test.source);
    free(test.u8);
    free(test.f32);
    free(test.labels);
#ifdef RC_MPI
    MPI_Finalize();
#endif
    return status;
}

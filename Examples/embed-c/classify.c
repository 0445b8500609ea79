/* classify.c — classify one image with a network compiled by resnet-compile.
 *
 * A plain C11 program that embeds the generated NET.c/NET.h (by default the
 * checked-in ResNet-20 in generated/resnet20/). It shows the whole C API a
 * user needs for inference: create, load or init_params, save, infer,
 * strerror and destroy.
 *
 * Usage:
 *   classify WEIGHTS.safetensors [IMAGE]   classify IMAGE with trained weights
 *   classify --init SEED [IMAGE]           ... with He-initialised weights
 *   classify --save OUT.safetensors --init SEED
 *                                          write He-initialised weights and exit
 *
 * IMAGE is a raw file of C×H×W little-endian float32 values (channel-major,
 * already normalised the way the network was trained). Without IMAGE, or
 * with IMAGE given as "-", a deterministic synthetic test image is used.
 *
 * Building against another network: the Makefile passes -DNET=name,
 * -DNET_UPPER=NAME and -DNET_HEADER="name.h"; the defaults below are for
 * resnet20, so `cc -I../../generated/resnet20 classify.c
 * ../../generated/resnet20/resnet20.c -lm` works without it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#ifndef NET
#define NET resnet20
#define NET_UPPER RESNET20
#define NET_HEADER "resnet20.h"
#endif
#include NET_HEADER

/* The generated API is prefixed with the network's name (resnet20_create,
 * RESNET20_NUM_CLASSES, ...). These aliases let the rest of the file read
 * the same whatever NET is; with a fixed network just call the names
 * directly. */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define STR_(x) #x
#define STR(x) STR_(x)
#define API(fn) CAT(NET, _##fn)        /* API(create) -> resnet20_create */
#define CONST(x) CAT(NET_UPPER, _##x)  /* CONST(INPUT_C) -> RESNET20_INPUT_C */

typedef API(model) model_t;
#define model_create API(create)
#define model_destroy API(destroy)
#define model_init_params API(init_params)
#define model_load API(load)
#define model_save API(save)
#define model_infer API(infer)
#define model_strerror API(strerror)

enum {
    IN_C = CONST(INPUT_C),
    IN_H = CONST(INPUT_H),
    IN_W = CONST(INPUT_W),
    NUM_CLASSES = CONST(NUM_CLASSES),
    IMAGE_FLOATS = IN_C * IN_H * IN_W,
    TOP_K = NUM_CLASSES < 5 ? NUM_CLASSES : 5,
};

/* Exit statuses: 0 success, 1 runtime error, 2 bad command line. */
enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static const char *progname = "classify";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s WEIGHTS.safetensors [IMAGE]\n"
            "       %s --init SEED [IMAGE]\n"
            "       %s --save OUT.safetensors --init SEED\n"
            "\n"
            "Classifies IMAGE (raw %dx%dx%d little-endian float32, C x H x W) with\n"
            "the network '%s' and prints the top %d classes. Without IMAGE, or\n"
            "with IMAGE '-', a deterministic synthetic test image is used.\n"
            "  --init SEED   use He-initialised weights (seed: unsigned integer)\n"
            "                instead of a weight file\n"
            "  --save OUT    write the weights to OUT (safetensors) and exit\n",
            progname, progname, progname, IN_C, IN_H, IN_W, STR(NET), TOP_K);
}

/* Class names for 10-class networks, which the zoo's CIFAR ResNets are. */
#if CONST(NUM_CLASSES) == 10
static const char *const cifar10_names[10] = {
    "airplane", "automobile", "bird", "cat", "deer",
    "dog",      "frog",       "horse", "ship", "truck",
};
#endif

/* Writes a printable name for class k into buf. */
static const char *class_name(int k, char *buf, size_t size)
{
#if CONST(NUM_CLASSES) == 10
    (void)buf;
    (void)size;
    return cifar10_names[k];
#else
    snprintf(buf, size, "class %d", k);
    return buf;
#endif
}

/* Parses a seed: a decimal unsigned 64-bit integer. */
static int parse_seed(const char *s, uint64_t *seed)
{
    if (*s < '0' || *s > '9')
        return -1; /* also rejects "-1", which strtoull would wrap */
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *seed = (uint64_t)v;
    return 0;
}

/* Fills x with a deterministic test image: a diagonal gradient, different
 * per channel, with a bright square in the middle, in roughly [-1, 1] (the
 * range of normalised inputs). Integer arithmetic only, so it is the same
 * on every machine. */
static void synthetic_image(float *x)
{
    for (int c = 0; c < IN_C; c++)
        for (int h = 0; h < IN_H; h++)
            for (int w = 0; w < IN_W; w++) {
                int diag = (c % 2 == 0) ? h + w : h + (IN_W - 1 - w);
                float v = 2.0f * (float)diag / (float)(IN_H + IN_W - 2) - 1.0f;
                int in_square = 4 * h >= IN_H && 4 * h < 3 * IN_H &&
                                4 * w >= IN_W && 4 * w < 3 * IN_W;
                if (in_square)
                    v = 0.5f * v + 0.5f * (float)(c + 1) / (float)IN_C;
                x[((size_t)c * IN_H + (size_t)h) * IN_W + (size_t)w] = v;
            }
}

/* Reads exactly IMAGE_FLOATS little-endian float32 values from path into x.
 * Returns 0, or -1 after printing why. */
static int read_image(const char *path, float *x)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot open image '%s': %s\n", progname, path,
                strerror(errno));
        return -1;
    }
    int rc = -1;
    size_t expect = (size_t)IMAGE_FLOATS * 4;
    unsigned char *buf = malloc(expect + 1);
    if (buf == NULL) {
        fprintf(stderr, "%s: out of memory\n", progname);
        goto done;
    }
    /* Ask for one byte more than needed to detect an over-long file. */
    size_t got = fread(buf, 1, expect + 1, f);
    if (ferror(f)) {
        fprintf(stderr, "%s: error reading image '%s'\n", progname, path);
        goto done;
    }
    if (got != expect) {
        fprintf(stderr,
                "%s: image '%s' has %s%zu bytes; expected %zu "
                "(%dx%dx%d float32)\n",
                progname, path, got > expect ? "more than " : "",
                got > expect ? expect : got, expect, IN_C, IN_H, IN_W);
        goto done;
    }
    /* Assemble each value from its bytes so this works on any host order. */
    for (size_t i = 0; i < (size_t)IMAGE_FLOATS; i++) {
        const unsigned char *b = buf + 4 * i;
        uint32_t bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 |
                        (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        float v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v)) {
            fprintf(stderr, "%s: image '%s': value %zu is not finite\n",
                    progname, path, i);
            goto done;
        }
        x[i] = v;
    }
    rc = 0;
done:
    free(buf);
    fclose(f);
    return rc;
}

/* Prints the TOP_K most probable classes, most probable first (ties: lower
 * class index first). */
static void print_top(const float *probs)
{
    int order[NUM_CLASSES];
    for (int k = 0; k < NUM_CLASSES; k++)
        order[k] = k;
    /* Partial selection sort: only the first TOP_K places matter. */
    for (int i = 0; i < TOP_K; i++) {
        int best = i;
        for (int j = i + 1; j < NUM_CLASSES; j++)
            if (probs[order[j]] > probs[order[best]])
                best = j;
        int t = order[i];
        order[i] = order[best];
        order[best] = t;
    }
    printf("top %d of %d classes:\n", TOP_K, NUM_CLASSES);
    for (int i = 0; i < TOP_K; i++) {
        char buf[32];
        int k = order[i];
        printf("  %d. %-12s %.6f (%5.2f%%)\n", i + 1,
               class_name(k, buf, sizeof buf), (double)probs[k],
               100.0 * (double)probs[k]);
    }
}

int main(int argc, char **argv)
{
    if (argc > 0 && argv[0] != NULL && argv[0][0] != '\0')
        progname = argv[0];

    /* ---- Command line ------------------------------------------------ */
    const char *weights = NULL;   /* weight file to load, or NULL with --init */
    const char *image = NULL;     /* image file, or NULL for the synthetic one */
    const char *save_path = NULL; /* --save OUT */
    int have_seed = 0;
    uint64_t seed = 0;
    int npos = 0;
    const char *pos[2] = {NULL, NULL};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--init") == 0 || strcmp(a, "--save") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs an argument\n", progname, a);
                usage(stderr);
                return EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (strcmp(a, "--save") == 0) {
                save_path = v;
            } else if (parse_seed(v, &seed) == 0) {
                have_seed = 1;
            } else {
                fprintf(stderr, "%s: --init: '%s' is not an unsigned 64-bit "
                        "integer\n", progname, v);
                return EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "%s: unknown option '%s'\n", progname, a);
            usage(stderr);
            return EXIT_USAGE;
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "%s: too many arguments\n", progname);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    /* The weights come from a file (first positional) or from --init. */
    if (have_seed) {
        if (npos > 1) {
            fprintf(stderr, "%s: with --init, give at most an IMAGE\n", progname);
            usage(stderr);
            return EXIT_USAGE;
        }
        image = pos[0];
    } else {
        if (npos == 0) {
            usage(stderr);
            return EXIT_USAGE;
        }
        weights = pos[0];
        image = pos[1];
    }
    if (save_path != NULL && image != NULL) {
        fprintf(stderr, "%s: --save writes weights and exits; it takes no IMAGE\n",
                progname);
        return EXIT_USAGE;
    }
    if (image != NULL && strcmp(image, "-") == 0)
        image = NULL;

    /* ---- Model -------------------------------------------------------- */
    int status = EXIT_RUNTIME;
    float *x = NULL;
    float probs[NUM_CLASSES];
    int rc;
    /* One image at a time: max_batch = 1 sizes the activation arena. */
    model_t *m = model_create(1);
    if (m == NULL) {
        fprintf(stderr, "%s: cannot create the model (out of memory)\n", progname);
        return EXIT_RUNTIME;
    }

    if (weights != NULL) {
        rc = model_load(m, weights);
        if (rc != 0) {
            fprintf(stderr, "%s: cannot load weights '%s': %s\n", progname,
                    weights, model_strerror(rc));
            goto done;
        }
        printf("network %s: weights from %s\n", STR(NET), weights);
    } else {
        rc = model_init_params(m, seed);
        if (rc != 0) {
            fprintf(stderr, "%s: cannot initialise weights: %s\n", progname,
                    model_strerror(rc));
            goto done;
        }
        printf("network %s: He-initialised weights, seed %" PRIu64 "\n",
               STR(NET), seed);
    }

    if (save_path != NULL) {
        rc = model_save(m, save_path);
        if (rc != 0) {
            fprintf(stderr, "%s: cannot save weights to '%s': %s\n", progname,
                    save_path, model_strerror(rc));
            goto done;
        }
        printf("saved %lld parameter floats to %s\n", (long long)CONST(PARAM_COUNT),
               save_path);
        status = 0;
        goto done;
    }

    /* ---- Input -------------------------------------------------------- */
    x = malloc(sizeof *x * (size_t)IMAGE_FLOATS);
    if (x == NULL) {
        fprintf(stderr, "%s: out of memory\n", progname);
        goto done;
    }
    if (image != NULL) {
        if (read_image(image, x) != 0)
            goto done;
        printf("image %s (%dx%dx%d float32)\n", image, IN_C, IN_H, IN_W);
    } else {
        synthetic_image(x);
        printf("no image given: using a deterministic synthetic %dx%dx%d "
               "test image\n", IN_C, IN_H, IN_W);
    }

    /* ---- Inference ---------------------------------------------------- */
    rc = model_infer(m, x, 1, probs);
    if (rc != 0) {
        fprintf(stderr, "%s: inference failed: %s\n", progname, model_strerror(rc));
        goto done;
    }
    print_top(probs);
    status = 0;

done:
    free(x);
    model_destroy(m);
    return status;
}

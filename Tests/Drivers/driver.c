/* A generic driver for any generated network, used by the tests.
 *
 * Build: cc -DNET=resnet20 -DUNET=RESNET20 '-DNET_HEADER="resnet20.h"' driver.c resnet20.c -lm
 * Run:   driver [--in infer|train] MAX_BATCH COMMAND... where the commands run in order:
 *          init SEED                 NET_init_params
 *          load PATH                 NET_load
 *          tryload PATH              NET_load, but go on after an error
 *          loadbuf PATH              NET_load_buffer of the file's bytes (read here into memory)
 *          tryloadbuf PATH           the same, but go on after an error
 *          embedded                  NET_init_embedded (built with -DNET_EMBEDDED and NET_weights.c)
 *          save PATH                 NET_save
 *          infer INPUT N OUTPUT      NET_infer on N images of raw little-endian f32
 *          train INPUT LABELS N LR   NET_train_step (labels: raw int32); prints "loss VALUE"
 *          trytrain …                the same, but go on after an error
 *          opt MOMENTUM DECAY        NET_set_optimizer
 *          savecp PATH / loadcp PATH NET_save_checkpoint / NET_load_checkpoint
 *          tryloadcp PATH            NET_load_checkpoint, but go on after an error
 *          badargs                   every argument check of the API, one line each, then
 *                                    NET_last_error after some of them
 *        Each command prints "ok" or "error CODE STRERROR: LAST_ERROR"; the driver exits 3 after
 *        the first error (so "a failed load leaves the model unchanged" can be tested
 *        by running another command after it in a separate invocation).
 *        With --in, the model is built by NET_create_in (for inference only, or
 *        to train too) in a block of exactly NET_MODEL_BYTES_*(MAX_BATCH) bytes
 *        filled with 0xFF (a NaN in every float), so that a result computed from
 *        memory nothing wrote shows as NaN.
 *        Built against inference-only C (NET_TRAINING 0), the training commands
 *        are absent and badargs checks that a model that trains cannot be made.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include NET_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(x) CAT(NET, CAT(_, x))
#define U(x) CAT(UNET, CAT(_, x))

#define IMAGE (U(INPUT_C) * U(INPUT_H) * U(INPUT_W))

static int report(const F(model) *m, int rc)
{
    if (rc == 0) printf("ok\n");
    else printf("error %d %s: %s\n", rc, F(strerror)(rc), F(last_error)(m));
    return rc;
}

/* NET_load_buffer of the whole file at path, read into memory here. */
static int load_buffer(F(model) *m, const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *bytes = NULL;
    size_t size = 0, capacity = 0;
    if (!f) {
        printf("error reading %s\n", path);
        return 3;
    }
    for (;;) {
        if (size == capacity) {
            capacity = capacity ? 2 * capacity : 65536;
            unsigned char *grown = realloc(bytes, capacity);
            if (!grown) break;
            bytes = grown;
        }
        const size_t got = fread(bytes + size, 1, capacity - size, f);
        if (got == 0) break;
        size += got;
    }
    fclose(f);
    const int rc = report(m, F(load_buffer)(m, bytes, size));
    free(bytes);
    return rc;
}

static float *read_floats(const char *path, size_t count)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *p = malloc(count * sizeof(float) + 1);
    if (p && fread(p, sizeof(float), count, f) != count) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

#if U(TRAINING)
/* One train_step on images and int32 labels read from files; prints its loss. */
static int train(F(model) *m, const char *images_path, const char *labels_path, int n, float lr)
{
    const size_t images = n > 0 ? (size_t)n : 1;
    float *x = read_floats(images_path, images * IMAGE);
    int32_t *labels = (int32_t *)read_floats(labels_path, images);
    int status;
    if (!x || !labels) {
        printf("error reading %s or %s\n", images_path, labels_path);
        status = 3;
    } else {
        float loss = -1.0f;
        status = report(m, F(train_step)(m, x, labels, n, lr, &loss));
        if (status == 0) printf("loss %.9g\n", (double)loss);
    }
    free(x);
    free(labels);
    return status;
}
#endif

static void bad_arguments(F(model) *m, int max_batch)
{
    float *x = calloc((size_t)(max_batch + 1) * IMAGE, sizeof(float));
    float *p = calloc((size_t)(max_batch + 1) * U(NUM_CLASSES), sizeof(float));
    printf("create(0) %s\n", F(create)(0) == NULL ? "NULL" : "non-NULL");
    printf("create(-1) %s\n", F(create)(-1) == NULL ? "NULL" : "non-NULL");
    printf("arena_bytes(0,0) %zu\n", F(arena_bytes)(0, 0));
    printf("infer(NULL model) %d\n", F(infer)(NULL, x, 1, p));
    printf("infer(NULL x) %d\n", F(infer)(m, NULL, 1, p));
    printf("infer(NULL probs) %d\n", F(infer)(m, x, 1, NULL));
    printf("infer(n=0) %d\n", F(infer)(m, x, 0, p));
    printf("infer(n=max+1) %d\n", F(infer)(m, x, max_batch + 1, p));
    printf("infer(n=-1) %d\n", F(infer)(m, x, -1, p));
    printf("create(INT_MAX) %s\n", F(create)(INT_MAX) == NULL ? "NULL" : "non-NULL");
    printf("load(NULL path) %d\n", F(load)(m, NULL));
    printf("load(NULL model) %d\n", F(load)(NULL, "x"));
    printf("save(NULL path) %d\n", F(save)(m, NULL));
    printf("save(NULL model) %d\n", F(save)(NULL, "x"));
    printf("init_params(NULL) %d\n", F(init_params)(NULL, 1));
    printf("strerror(-9999) %s\n", F(strerror)(-9999));
    int named = 1;
    for (int code = -1; code >= -17; code--) {
        const char *s = F(strerror)(code);
        named &= s != NULL && strcmp(s, F(strerror)(-9999)) != 0 && strcmp(s, F(strerror)(0)) != 0;
        for (int other = code + 1; other <= -1; other++) named &= strcmp(s, F(strerror)(other)) != 0;
    }
    printf("strerror(-1...-17) %s\n", named ? "distinct messages" : "missing or repeated message");
    printf("load_buffer(NULL model) %d\n", F(load_buffer)(NULL, x, 8));
    printf("load_buffer(NULL bytes) %d %s\n", F(load_buffer)(m, NULL, 8), F(last_error)(m));
    printf("load_buffer(len 0) %d %s\n", F(load_buffer)(m, x, 0), F(last_error)(m));
    printf("last_error(NULL) %s\n", F(last_error)(NULL));
    printf("infer(n=0) %d %s\n", F(infer)(m, x, 0, p), F(last_error)(m));
    printf("infer(NULL x) %d %s\n", F(infer)(m, NULL, 1, p), F(last_error)(m));
    printf("load(missing) %d %s\n", F(load)(m, "/nonexistent/w.safetensors"), F(last_error)(m));
    printf("after a success '%s'\n", F(infer)(m, x, 1, p) == 0 ? F(last_error)(m) : "(infer failed)");
#if U(TRAINING)
    int32_t labels[2] = { 0, U(NUM_CLASSES) };
    float loss = 0.0f;
    printf("train_step(NULL labels) %d\n", F(train_step)(m, x, NULL, 1, 0.1f, &loss));
    printf("train_step(NULL loss) %d\n", F(train_step)(m, x, labels, 1, 0.1f, NULL));
    printf("train_step(n=0) %d\n", F(train_step)(m, x, labels, 0, 0.1f, &loss));
    printf("train_step(label=classes) %d\n", F(train_step)(m, x, labels + 1, 1, 0.1f, &loss));
    printf("train_step(lr=NaN) %d\n", F(train_step)(m, x, labels, 1, NAN, &loss));
    printf("train_step(NULL model) %d\n", F(train_step)(NULL, x, labels, 1, 0.1f, &loss));
    printf("train_step(NULL x) %d\n", F(train_step)(m, NULL, labels, 1, 0.1f, &loss));
    printf("train_step(n=-1) %d\n", F(train_step)(m, x, labels, -1, 0.1f, &loss));
    printf("train_step(n=max+1) %d\n", F(train_step)(m, x, labels, max_batch + 1, 0.1f, &loss));
    int32_t negative = -1;
    printf("train_step(label=-1) %d\n", F(train_step)(m, x, &negative, 1, 0.1f, &loss));
    printf("train_step(lr=-1) %d\n", F(train_step)(m, x, labels, 1, -1.0f, &loss));
    printf("train_step(lr=Inf) %d\n", F(train_step)(m, x, labels, 1, INFINITY, &loss));
    printf("set_optimizer(-1, 0) %d\n", F(set_optimizer)(m, -1.0f, 0.0f));
    printf("set_optimizer(NULL) %d\n", F(set_optimizer)(NULL, 0.9f, 0.0f));
    printf("set_optimizer(NaN, 0) %d\n", F(set_optimizer)(m, NAN, 0.0f));
    printf("set_optimizer(0, Inf) %d\n", F(set_optimizer)(m, 0.0f, INFINITY));
    printf("set_allreduce(NULL model) %d\n", F(set_allreduce)(NULL, NULL, NULL, 1));
    printf("set_allreduce(replicas=0) %d\n", F(set_allreduce)(m, NULL, NULL, 0));
    printf("set_allreduce(NULL fn, replicas=2) %d\n", F(set_allreduce)(m, NULL, NULL, 2));
    printf("set_allreduce(NULL, 1) %d\n", F(set_allreduce)(m, NULL, NULL, 1));
    printf("save_checkpoint(NULL) %d\n", F(save_checkpoint)(m, NULL));
    printf("save_checkpoint(NULL model) %d\n", F(save_checkpoint)(NULL, "x"));
    printf("load_checkpoint(missing) %d\n", F(load_checkpoint)(m, "/nonexistent/checkpoint"));
    printf("load_checkpoint(NULL path) %d\n", F(load_checkpoint)(m, NULL));
    printf("load_checkpoint(NULL model) %d\n", F(load_checkpoint)(NULL, "x"));
    int32_t many[2] = { 1, U(NUM_CLASSES) + 5 };
    printf("train_step(labels[1]=classes+5) %d %s\n", F(train_step)(m, x, many, 2, 0.1f, &loss), F(last_error)(m));
    printf("train_step(n=0) %d %s\n", F(train_step)(m, x, labels, 0, 0.1f, &loss), F(last_error)(m));
#else
    printf("arena_bytes(1,1) %zu\n", F(arena_bytes)(1, 1));
    static _Alignas(U(MODEL_ALIGN)) unsigned char block[U(MODEL_BYTES_INFER)(1)];
    printf("create_in(training=1) %s\n", F(create_in)(block, sizeof block, 1, 1) == NULL ? "NULL" : "non-NULL");
    printf("create_in(training=0) %s\n", F(create_in)(block, sizeof block, 1, 0) == NULL ? "NULL" : "non-NULL");
#endif
    F(destroy)(NULL);
    free(x);
    free(p);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MAX_BATCH COMMAND...\n", argv[0]);
        return 2;
    }
    int first = 1, in_caller = -1;  /* -1: NET_create; 0 or 1: NET_create_in(…, training) */
    if (argc > 3 && !strcmp(argv[1], "--in")) {
        in_caller = !strcmp(argv[2], "train");
        first = 3;
    }
    const int max_batch = atoi(argv[first]);
    void *block = NULL;
    F(model) *m = NULL;
    if (in_caller < 0) {
        m = F(create)(max_batch);
    } else if (max_batch > 0) {
#if U(TRAINING)
        const size_t bytes = in_caller ? U(MODEL_BYTES_TRAIN)(max_batch) : U(MODEL_BYTES_INFER)(max_batch);
#else
        const size_t bytes = U(MODEL_BYTES_INFER)(max_batch);
#endif
        block = aligned_alloc(U(MODEL_ALIGN), (bytes + U(MODEL_ALIGN) - 1) / U(MODEL_ALIGN) * U(MODEL_ALIGN));
        if (block) {
            memset(block, 0xFF, bytes);
            m = F(create_in)(block, bytes, max_batch, in_caller);
        }
    }
    if (!m) {
        printf("error create(%d) returned NULL\n", max_batch);
        free(block);
        return 3;
    }
    int status = 0;
    for (int i = first + 1; i < argc && status == 0; i++) {
        if (!strcmp(argv[i], "init") && i + 1 < argc) {
            status = report(m, F(init_params)(m, strtoull(argv[++i], NULL, 10)));
        } else if (!strcmp(argv[i], "load") && i + 1 < argc) {
            status = report(m, F(load)(m, argv[++i]));
        } else if (!strcmp(argv[i], "tryload") && i + 1 < argc) {
            report(m, F(load)(m, argv[++i]));
        } else if (!strcmp(argv[i], "loadbuf") && i + 1 < argc) {
            status = load_buffer(m, argv[++i]);
        } else if (!strcmp(argv[i], "tryloadbuf") && i + 1 < argc) {
            load_buffer(m, argv[++i]);
#ifdef NET_EMBEDDED
        } else if (!strcmp(argv[i], "embedded")) {
            status = report(m, F(init_embedded)(m));
#endif
        } else if (!strcmp(argv[i], "save") && i + 1 < argc) {
            status = report(m, F(save)(m, argv[++i]));
        } else if (!strcmp(argv[i], "infer") && i + 3 < argc) {
            const int n = atoi(argv[i + 2]);
            const size_t images = n > 0 ? (size_t)n : 1;
            float *x = read_floats(argv[i + 1], images * IMAGE);
            if (!x) {
                printf("error reading %s\n", argv[i + 1]);
                status = 3;
                break;
            }
            float *probs = calloc(images * U(NUM_CLASSES), sizeof(float));
            status = report(m, F(infer)(m, x, n, probs));
            if (status == 0) {
                FILE *f = fopen(argv[i + 3], "wb");
                if (!f || fwrite(probs, sizeof(float), images * U(NUM_CLASSES), f) != images * U(NUM_CLASSES)) status = 3;
                if (f) fclose(f);
            }
            free(x);
            free(probs);
            i += 3;
#if U(TRAINING)
        } else if ((!strcmp(argv[i], "train") || !strcmp(argv[i], "trytrain")) && i + 4 < argc) {
            const int keep_going = !strcmp(argv[i], "trytrain");
            const int rc = train(m, argv[i + 1], argv[i + 2], atoi(argv[i + 3]), strtof(argv[i + 4], NULL));
            if (!keep_going) status = rc;
            i += 4;
        } else if (!strcmp(argv[i], "opt") && i + 2 < argc) {
            status = report(m, F(set_optimizer)(m, strtof(argv[i + 1], NULL), strtof(argv[i + 2], NULL)));
            i += 2;
        } else if (!strcmp(argv[i], "savecp") && i + 1 < argc) {
            status = report(m, F(save_checkpoint)(m, argv[++i]));
        } else if (!strcmp(argv[i], "loadcp") && i + 1 < argc) {
            status = report(m, F(load_checkpoint)(m, argv[++i]));
        } else if (!strcmp(argv[i], "tryloadcp") && i + 1 < argc) {
            report(m, F(load_checkpoint)(m, argv[++i]));
#endif
        } else if (!strcmp(argv[i], "badargs")) {
            bad_arguments(m, max_batch);
        } else {
            printf("error unknown command %s\n", argv[i]);
            status = 2;
        }
    }
    F(destroy)(m);
    free(block);
    return status == 0 ? 0 : 3;
}

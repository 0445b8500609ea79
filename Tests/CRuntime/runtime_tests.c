/*
 * Tests for runtime/runtime.c: safetensors round trips, one hand-made bad
 * file per error rc_st_load can return (each also checking that the
 * destination was left untouched), a file changed while it is read, atomic
 * save, the generator and rc_strerror. run.sh builds this with -I runtime/.
 * Ends with "N passed, M failed".
 */
#define _POSIX_C_SOURCE 200809L
/* The same preamble a generated NAME.c has before the runtime. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* Called by rc_read_file between its read and its check that the file did
 * not change: test_changed_while_read changes the file there. */
static void (*after_read)(int fd);
#define RC_ST_AFTER_READ(fd) do { if (after_read != NULL) after_read(fd); } while (0)
#include "runtime.c"

#include <dirent.h>
#include <stdarg.h>

static int passed, failed;
static char scratch_dir[4096];  /* this run's scratch directory */

#define CHECK(ok, ...) check((ok), __LINE__, __VA_ARGS__)

static void check(int ok, int line, const char *fmt, ...)
{
    if (ok) {
        passed++;
        return;
    }
    failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL (line %d): ", line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

#define PATH_LEN 4352

/* The path of name inside the scratch directory, written into buf. */
static char *path_in(char *buf, const char *name)
{
    snprintf(buf, PATH_LEN, "%s/%s", scratch_dir, name);
    return buf;
}

/* The same, for a path used once and at once: the next call overwrites it. */
static const char *in_dir(const char *name)
{
    static char path[PATH_LEN];
    return path_in(path, name);
}

/* ------------------------------------------------------------ the model */

/* A small stand-in for a network's parameters: a conv-like weight, a bias,
 * BN's I64 scalar, and one optional tensor. */
typedef struct {
    float w[2][3];
    float b[3];
    int64_t n;
    float opt[2];
} model;

#define NT 4

static void describe(model *m, rc_tensor t[NT])
{
    rc_tensor d[NT] = {
        { "a.weight", RC_F32, 2, { 2, 3, 0, 0 }, m->w, 0 },
        { "a.bias", RC_F32, 1, { 3, 0, 0, 0 }, m->b, 0 },
        { "a.num_batches_tracked", RC_I64, 0, { 0, 0, 0, 0 }, &m->n, 0 },
        { "opt", RC_F32, 1, { 2, 0, 0, 0 }, m->opt, 1 },
    };
    memcpy(t, d, sizeof d);
}

static void fill_values(model *m, float base)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < 6; i++) m->w[i / 3][i % 3] = base + (float)i * 0.25f - 1.0f;
    m->w[1][2] = -0.0f;
    m->b[0] = 1e-40f;                   /* subnormal */
    m->b[1] = -3.5f;
    m->b[2] = 3.4e38f;
    m->n = -1234567890123LL;
    m->opt[0] = base;
    m->opt[1] = -base;
}

/* --------------------------------------------------------- file writing */

static void remove_tree(const char *path);

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        printf("cannot write test file %s\n", path);
        remove_tree(scratch_dir);
        exit(2);
    }
}

/* A safetensors file whose header length field says hlen. */
static void write_st_len(const char *path, uint64_t hlen, const char *json, const void *data, size_t ndata)
{
    size_t jlen = strlen(json);
    size_t total = 8 + jlen + ndata;
    unsigned char *buf = malloc(total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, json, jlen);
    if (ndata > 0) memcpy(buf + 8 + jlen, data, ndata);
    write_bytes(path, buf, total);
    free(buf);
}

static void write_st(const char *path, const char *json, const void *data, size_t ndata)
{
    write_st_len(path, strlen(json), json, data, ndata);
}

/* Little-endian data for the three required tensors: w = 0..5, b = 10..12,
 * n = 7, plus room for opt (two floats) and slack. */
static unsigned char good_data[64];

static void make_good_data(void)
{
    for (int i = 0; i < 9; i++) {
        float v = i < 6 ? (float)i : (float)(i + 4);
        uint32_t bits;
        memcpy(&bits, &v, 4);
        for (int k = 0; k < 4; k++) good_data[4 * i + k] = (unsigned char)(bits >> (8 * k));
    }
    memset(good_data + 36, 0, 8);
    good_data[36] = 7;
    for (int i = 0; i < 2; i++) {
        float v = 100.0f + (float)i;
        uint32_t bits;
        memcpy(&bits, &v, 4);
        for (int k = 0; k < 4; k++) good_data[44 + 4 * i + k] = (unsigned char)(bits >> (8 * k));
    }
}

#define ENTRY_W "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"
#define ENTRY_B "\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]}"
#define ENTRY_N "\"a.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[36,44]}"
#define ENTRY_O "\"opt\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[44,52]}"

/* --------------------------------------------------------------- checks */

/* Loads the file's bytes as NAME_load_buffer does (rc_st_load_bytes with the
 * bytes left the caller's) from a read-only mapping of the file, so that
 * any write to them faults: the same code and the same model as from the
 * file. */
static void expect_same_from_memory(const char *label, const char *path, int want, const model *from_file)
{
    static const unsigned char nothing[1];
    struct stat st;
    /* Failures of the file itself (missing, a directory, changed while read) have no bytes to compare. */
    if (want == RC_ERR_OPEN || want == RC_ERR_CHANGED) return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    const unsigned char *bytes = nothing;
    size_t size = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        size = (size_t)st.st_size;
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        CHECK(p != MAP_FAILED, "%s: mmap failed", label);
        if (p == MAP_FAILED) size = 0;
        else bytes = p;
    }
    close(fd);
    model m;
    rc_tensor t[NT];
    char why[RC_WHY_BYTES] = "";
    memset(&m, 0xA5, sizeof m);
    describe(&m, t);
    int rc = rc_st_load_bytes(bytes, size, NULL, t, NT, why, sizeof why);
    CHECK(rc == want, "%s: from memory, rc_st_load_bytes returned %d (%s), want %d", label, rc, rc_strerror(rc), want);
    CHECK(memcmp(&m, from_file, sizeof m) == 0, "%s: from memory, the model differs from the file's load", label);
    CHECK((rc == RC_OK) == (why[0] == '\0'), "%s: from memory, the message is '%s' for code %d", label, why, rc);
    if (bytes != nothing) munmap((void *)(uintptr_t)bytes, size);
}

/* Loads path into a model full of a sentinel pattern and checks the result
 * code and that a failure says why; on failure the model must still hold
 * exactly the sentinel. The same bytes loaded from memory give the same. */
static int expect_load(const char *label, const char *path, int want, model *out)
{
    model m, before;
    rc_tensor t[NT];
    char why[RC_WHY_BYTES] = "";
    memset(&m, 0xA5, sizeof m);
    memcpy(&before, &m, sizeof m);
    describe(&m, t);
    int rc = rc_st_load(path, t, NT, why, sizeof why);
    CHECK(rc == want, "%s: rc_st_load returned %d (%s), want %d (%s)", label, rc, rc_strerror(rc), want,
          rc_strerror(want));
    CHECK((rc == RC_OK) == (why[0] == '\0'), "%s: the message is '%s' for code %d", label, why, rc);
    if (rc != RC_OK)
        CHECK(memcmp(&m, &before, sizeof m) == 0, "%s: destination changed although the load failed", label);
    expect_same_from_memory(label, path, rc, &m);
    if (out != NULL) memcpy(out, &m, sizeof m);
    return rc;
}

/* Writes the case to a file and loads it: want's code and exactly the message want_why. */
static void expect_why(const char *label, const char *json, const unsigned char *data, size_t ndata, int want,
                       const char *want_why)
{
    char path[PATH_LEN];
    model m;
    rc_tensor t[NT];
    char why[RC_WHY_BYTES] = "";
    write_st(path_in(path, "why.safetensors"), json, data, ndata);
    describe(&m, t);
    int rc = rc_st_load(path, t, NT, why, sizeof why);
    CHECK(rc == want && strcmp(why, want_why) == 0, "%s: code %d, message '%s'; want %d, '%s'", label, rc, why, want,
          want_why);
}

/* Writes the case to a file with a correct length prefix, then loads it. */
static void expect_json(const char *label, const char *json, size_t ndata, int want)
{
    char path[PATH_LEN];
    write_st(path_in(path, "case.safetensors"), json, good_data, ndata);
    expect_load(label, path, want, NULL);
}

static int count_temp_files(const char *where)
{
    DIR *d = opendir(where);
    int n = 0;
    if (d == NULL) return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strstr(e->d_name, ".tmp.") != NULL) n++;
    closedir(d);
    return n;
}

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            char child[8192];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* ---------------------------------------------------------------- tests */

static void test_round_trip(void)
{
    model a, b;
    rc_tensor ta[NT], tb[NT];
    char path[PATH_LEN];
    path_in(path, "round.safetensors");
    fill_values(&a, 2.0f);
    describe(&a, ta);
    int rc = rc_st_save(path, ta, NT);
    CHECK(rc == RC_OK, "round trip: save returned %d (%s)", rc, rc_strerror(rc));

    memset(&b, 0, sizeof b);
    describe(&b, tb);
    rc = rc_st_load(path, tb, NT, NULL, 0);
    CHECK(rc == RC_OK, "round trip: load returned %d (%s)", rc, rc_strerror(rc));
    CHECK(memcmp(a.w, b.w, sizeof a.w) == 0, "round trip: F32 [2,3] differs");
    CHECK(memcmp(a.b, b.b, sizeof a.b) == 0, "round trip: F32 [3] (subnormal, max) differs");
    CHECK(a.n == b.n, "round trip: I64 scalar %lld != %lld", (long long)b.n, (long long)a.n);
    CHECK(memcmp(a.opt, b.opt, sizeof a.opt) == 0, "round trip: optional tensor differs");
    CHECK(count_temp_files(scratch_dir) == 0, "round trip: temporary file left behind");

    /* The layout the spec asks for: padded header, metadata first, data
     * contiguous in the order given. */
    FILE *f = fopen(path, "rb");
    unsigned char head[8];
    long size = -1;
    if (f != NULL && fread(head, 1, 8, f) == 8 && fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | head[i];
    CHECK(hlen % 8 == 0, "save: header length %llu is not a multiple of 8", (unsigned long long)hlen);
    CHECK(size == (long)(8 + hlen + 24 + 12 + 8 + 8), "save: file size %ld does not match header + data", size);
    char *json = calloc(hlen + 1, 1);
    if (f != NULL && fseek(f, 8, SEEK_SET) == 0 && fread(json, 1, hlen, f) == hlen) {
        CHECK(strncmp(json, "{\"__metadata__\":{\"format\":\"pt\"},\"a.weight\":", 43) == 0,
              "save: header starts %.60s", json);
        CHECK(strstr(json, "\"opt\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[44,52]}") != NULL,
              "save: offsets not contiguous in order: %s", json);
        CHECK(strstr(json, "\"shape\":[],") != NULL, "save: scalar shape not []: %s", json);
    } else {
        CHECK(0, "save: cannot read back header");
    }
    free(json);
    if (f != NULL) fclose(f);

    /* A name needing escapes survives save and load. */
    float x[1] = { 42.0f }, y[1] = { 0.0f };
    const char *odd = "we\"ird\\na\nme \xC3\xA9\xF0\x9F\x98\x80";
    rc_tensor so = { odd, RC_F32, 1, { 1, 0, 0, 0 }, x, 0 };
    rc_tensor lo = { odd, RC_F32, 1, { 1, 0, 0, 0 }, y, 0 };
    rc = rc_st_save(in_dir("odd.safetensors"), &so, 1);
    CHECK(rc == RC_OK, "escaped name: save returned %d", rc);
    rc = rc_st_load(in_dir("odd.safetensors"), &lo, 1, NULL, 0);
    CHECK(rc == RC_OK && y[0] == 42.0f, "escaped name: load returned %d, value %g", rc, (double)y[0]);

    /* Zero tensors is a valid (empty) file. */
    rc = rc_st_save(in_dir("empty.safetensors"), NULL, 0);
    CHECK(rc == RC_OK, "empty save returned %d", rc);
    rc = rc_st_load(in_dir("empty.safetensors"), NULL, 0, NULL, 0);
    CHECK(rc == RC_OK, "empty load returned %d", rc);
}

static void test_valid_variants(void)
{
    model m;
    expect_json("baseline", "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", 44, RC_OK);
    write_st(in_dir("v.safetensors"), "{" ENTRY_N "," ENTRY_W "," ENTRY_B "}", good_data, 44);
    if (expect_load("values", in_dir("v.safetensors"), RC_OK, &m) == RC_OK) {
        CHECK(m.w[0][0] == 0.0f && m.w[1][2] == 5.0f && m.b[0] == 10.0f && m.b[2] == 12.0f && m.n == 7,
              "values: loaded w[0][0]=%g w[1][2]=%g b[0]=%g n=%lld", (double)m.w[0][0], (double)m.w[1][2],
              (double)m.b[0], (long long)m.n);
        unsigned char sentinel[sizeof m.opt];
        memset(sentinel, 0xA5, sizeof sentinel);
        CHECK(memcmp(m.opt, sentinel, sizeof m.opt) == 0, "optional absent: its buffer was written");
    }
    write_st(in_dir("o.safetensors"), "{" ENTRY_W "," ENTRY_B "," ENTRY_N "," ENTRY_O "}", good_data, 52);
    if (expect_load("optional present", in_dir("o.safetensors"), RC_OK, &m) == RC_OK)
        CHECK(m.opt[0] == 100.0f && m.opt[1] == 101.0f, "optional present: opt = %g %g", (double)m.opt[0],
              (double)m.opt[1]);

    expect_json("metadata with every kind of value",
                "{\"__metadata__\":{\"format\":\"pt\",\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\","
                "\"k\":[1,-2.5e+3,0.5,0,-0,1E9,true,false,null,{\"z\":[[]]},{}]}, " ENTRY_W "," ENTRY_B "," ENTRY_N "}",
                44, RC_OK);
    expect_json("whitespace and space padding",
                " {\n\t\"__metadata__\" : { } ,\r\n" ENTRY_W " , " ENTRY_B "," ENTRY_N "}        ", 44, RC_OK);
    expect_json("escaped name matches",
                "{\"a.w\\u0065ight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}," ENTRY_B "," ENTRY_N
                "}", 44, RC_OK);
    expect_json("unknown key in entry is skipped",
                "{\"a.weight\":{\"extra\":{\"x\":[1,2]},\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                ENTRY_B "," ENTRY_N "}", 44, RC_OK);
    expect_json("tensors stored out of order",
                "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[20,44]},"
                "\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]},"
                "\"a.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}}",
                44, RC_OK);

    /* NaN bit patterns in an I64 are just integers. */
    unsigned char d[44];
    memcpy(d, good_data, 44);
    memset(d + 36, 0xFF, 8);
    write_st(in_dir("i.safetensors"), "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", d, 44);
    if (expect_load("I64 with all bits set", in_dir("i.safetensors"), RC_OK, &m) == RC_OK)
        CHECK(m.n == -1, "I64 with all bits set loaded as %lld", (long long)m.n);
}

static void test_bad_files(void)
{
    char path[PATH_LEN];
    path_in(path, "bad.safetensors");

    /* Opening and the length prefix. */
    expect_load("missing file", in_dir("does-not-exist.safetensors"), RC_ERR_OPEN, NULL);
    mkdir(in_dir("a-directory"), 0777);
    expect_load("path is a directory", in_dir("a-directory"), RC_ERR_OPEN, NULL);
    write_bytes(path, "\x10\x00\x00", 3);
    expect_load("3-byte file", path, RC_ERR_TRUNCATED, NULL);
    write_bytes(path, "", 0);
    expect_load("empty file", path, RC_ERR_TRUNCATED, NULL);
    write_st_len(path, 4096, "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", good_data, 44);
    expect_load("header length larger than the file", path, RC_ERR_TRUNCATED, NULL);
    write_st_len(path, (uint64_t)1 << 63, "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", good_data, 44);
    expect_load("header length 2^63", path, RC_ERR_FORMAT, NULL);
    write_st_len(path, UINT64_MAX, "{}", NULL, 0);
    expect_load("header length 2^64-1", path, RC_ERR_FORMAT, NULL);
    write_st_len(path, 0, "{}", NULL, 0);
    expect_load("header length 0", path, RC_ERR_FORMAT, NULL);

    /* JSON syntax. */
    static const struct { const char *label, *json; } syntax[] = {
        { "not JSON", "hello, world" },
        { "unclosed object", "{" ENTRY_W "," ENTRY_B "," ENTRY_N },
        { "top level array", "[1,2]" },
        { "trailing comma", "{" ENTRY_W "," ENTRY_B "," ENTRY_N ",}" },
        { "missing comma", "{" ENTRY_W " " ENTRY_B "," ENTRY_N "}" },
        { "missing colon", "{\"a.weight\" {\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}" },
        { "unterminated string", "{\"a.weight" },
        { "raw newline in a name", "{\"a.wei\nght\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}" },
        { "bad escape", "{\"a.w\\xeight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}" },
        { "short \\u escape", "{\"a.w\\u06\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}" },
        { "lone high surrogate", "{\"\\ud800x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}" },
        { "lone low surrogate", "{\"\\udc00\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}" },
        { "invalid UTF-8", "{\"a.w\xFF\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}" },
        { "overlong UTF-8", "{\"a.w\xC0\xAF\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}" },
        { "UTF-8 surrogate in a name", "{\"a.w\xED\xA0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}" },
        { "truncated UTF-8 sequence at the end", "{" ENTRY_W "," ENTRY_B "," ENTRY_N "} \xE2\x82" },
        { "invalid UTF-8 in the padding", "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}\xFF   " },
        { "Latin-1 in a metadata value", "{\"__metadata__\":{\"a\":\"caf\xE9\"}," ENTRY_W "," ENTRY_B "," ENTRY_N "}" },
        { "float in shape", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2.0,3],\"data_offsets\":[0,24]}}" },
        { "exponent in shape", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2e0,3],\"data_offsets\":[0,24]}}" },
        { "leading zero", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[02,3],\"data_offsets\":[0,24]}}" },
        { "shape is a string", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":\"2,3\",\"data_offsets\":[0,24]}}" },
        { "extent overflows u64",
          "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999,3],\"data_offsets\":[0,24]}}" },
        { "dtype not a string", "{\"a.weight\":{\"dtype\":1,\"shape\":[2,3],\"data_offsets\":[0,24]}}" },
        { "entry missing data_offsets", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3]}}" },
        { "entry missing dtype", "{\"a.weight\":{\"shape\":[2,3],\"data_offsets\":[0,24]}}" },
        { "entry is empty", "{\"a.weight\":{}}" },
        { "entry is not an object", "{\"a.weight\":[0,24]}" },
        { "dtype given twice",
          "{\"a.weight\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}" },
        { "three offsets", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24,48]}}" },
        { "one offset", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24]}}" },
        { "metadata not an object", "{\"__metadata__\":\"pt\"," ENTRY_W "," ENTRY_B "," ENTRY_N "}" },
        { "metadata misspelt literal", "{\"__metadata__\":{\"a\":nul}," ENTRY_W "," ENTRY_B "," ENTRY_N "}" },
        { "metadata bad number", "{\"__metadata__\":{\"a\":1.}," ENTRY_W "," ENTRY_B "," ENTRY_N "}" },
        { "metadata nested too deep",
          "{\"__metadata__\":{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
          "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}," ENTRY_W "," ENTRY_B "," ENTRY_N "}" },
        { "trailing garbage", "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}   x" },
        { "negative offset", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[-1,23]}," ENTRY_B
          "," ENTRY_N "}" },
        { "negative extent", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[-2,3],\"data_offsets\":[0,24]}," ENTRY_B
          "," ENTRY_N "}" },
    };
    for (size_t i = 0; i < sizeof syntax / sizeof syntax[0]; i++)
        expect_json(syntax[i].label, syntax[i].json, 44, RC_ERR_FORMAT);
    {
        /* A NUL after the object: safetensors pads with spaces, never NUL. */
        const char *json = "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}";
        size_t n = strlen(json) + 1;
        unsigned char *buf = malloc(8 + n + 44);
        for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
        memcpy(buf + 8, json, n);
        memcpy(buf + 8 + n, good_data, 44);
        write_bytes(path, buf, 8 + n + 44);
        free(buf);
        expect_load("trailing NUL", path, RC_ERR_FORMAT, NULL);
    }

    /* Names. */
    expect_json("duplicate name", "{" ENTRY_W "," ENTRY_B "," ENTRY_N "," ENTRY_W "}", 44, RC_ERR_FORMAT);
    expect_json("duplicate name via escape",
                "{" ENTRY_W ",\"a.w\\u0065ight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}," ENTRY_B
                "," ENTRY_N "}", 44, RC_ERR_FORMAT);
    expect_json("duplicate metadata",
                "{\"__metadata__\":{},\"__metadata__\":{}," ENTRY_W "," ENTRY_B "," ENTRY_N "}", 44, RC_ERR_FORMAT);
    expect_json("unknown name",
                "{" ENTRY_W "," ENTRY_B "," ENTRY_N ",\"zzz\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[44,48]}}",
                48, RC_ERR_NAME_UNKNOWN);
    expect_json("name with an embedded NUL",
                "{\"a.weight\\u0000\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}," ENTRY_B "," ENTRY_N
                "}", 44, RC_ERR_NAME_UNKNOWN);
    expect_json("name is a prefix", "{\"a.weigh\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                ENTRY_B "," ENTRY_N "}", 44, RC_ERR_NAME_UNKNOWN);
    expect_json("missing name", "{" ENTRY_W "," ENTRY_N "}", 44, RC_ERR_NAME_MISSING);
    expect_json("empty header", "{}", 0, RC_ERR_NAME_MISSING);

    /* Types and shapes. */
    expect_json("wrong dtype",
                "{" ENTRY_W ",\"a.bias\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[24,48]}," ENTRY_N "}", 48,
                RC_ERR_DTYPE);
    expect_json("BF16 dtype",
                "{" ENTRY_W ",\"a.bias\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[24,30]}," ENTRY_N "}", 44,
                RC_ERR_DTYPE);
    expect_json("F16 dtype",
                "{" ENTRY_W ",\"a.bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]}," ENTRY_N "}", 44,
                RC_ERR_DTYPE);
    expect_json("F64 for an I64 scalar",
                "{" ENTRY_W "," ENTRY_B ",\"a.num_batches_tracked\":{\"dtype\":\"F64\",\"shape\":[],"
                "\"data_offsets\":[36,44]}}", 44, RC_ERR_DTYPE);
    expect_json("wrong rank (flattened)",
                "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}," ENTRY_B "," ENTRY_N "}", 44,
                RC_ERR_SHAPE);
    expect_json("scalar stored as [1]",
                "{" ENTRY_W "," ENTRY_B ",\"a.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[1],"
                "\"data_offsets\":[36,44]}}", 44, RC_ERR_SHAPE);
    expect_json("rank 5",
                "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3,1,1,1],\"data_offsets\":[0,24]}," ENTRY_B "," ENTRY_N
                "}", 44, RC_ERR_SHAPE);
    expect_json("wrong extent (transposed)",
                "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]}," ENTRY_B "," ENTRY_N "}", 44,
                RC_ERR_SHAPE);
    expect_json("huge extent",
                "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,24]},"
                ENTRY_B "," ENTRY_N "}", 44, RC_ERR_SHAPE);

    /* Offsets. */
    expect_json("overlapping offsets",
                "{" ENTRY_W ",\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[20,32]}," ENTRY_N "}", 44,
                RC_ERR_FORMAT);
    expect_json("identical offsets",
                "{" ENTRY_W ",\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}," ENTRY_N "}", 44,
                RC_ERR_FORMAT);
    expect_json("begin after end",
                "{" ENTRY_W ",\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[36,24]}," ENTRY_N "}", 44,
                RC_ERR_FORMAT);
    expect_json("range length disagrees with shape",
                "{" ENTRY_W ",\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,40]}," ENTRY_N "}", 48,
                RC_ERR_FORMAT);
    expect_json("offsets near 2^64 (length matches)",
                "{" ENTRY_W ",\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],"
                "\"data_offsets\":[18446744073709551600,18446744073709551612]}," ENTRY_N "}", 44, RC_ERR_TRUNCATED);
    expect_json("data truncated", "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", 40, RC_ERR_TRUNCATED);
    expect_json("bytes after the last tensor", "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", 60, RC_ERR_FORMAT);
    expect_json("gap between tensors",
                "{" ENTRY_W ",\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[28,40]},"
                "\"a.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[40,48]}}", 48,
                RC_ERR_FORMAT);
    expect_json("first tensor not at 0",
                "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[4,28]},"
                "\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[28,40]},"
                "\"a.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[40,48]}}", 48,
                RC_ERR_FORMAT);
    expect_json("one tensor inside another",
                "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                "\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]},"
                "\"a.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[24,32]}}", 44,
                RC_ERR_FORMAT);
    expect_json("unknown name with an unknown dtype",
                "{" ENTRY_W "," ENTRY_B "," ENTRY_N ",\"zzz\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[44,48]}}",
                48, RC_ERR_NAME_UNKNOWN);
    expect_json("no data at all", "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", 0, RC_ERR_TRUNCATED);

    /* Values. */
    unsigned char d[44];
    memcpy(d, good_data, 44);
    d[24 + 4 + 2] = 0xC0;               /* b[1] = quiet NaN: 0x7FC00000 */
    d[24 + 4 + 3] = 0x7F;
    d[24 + 4 + 0] = 0;
    d[24 + 4 + 1] = 0;
    write_st(path, "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", d, 44);
    expect_load("NaN value", path, RC_ERR_NONFINITE, NULL);
    memcpy(d, good_data, 44);
    d[20] = 0x00, d[21] = 0x00, d[22] = 0x80, d[23] = 0xFF;  /* w[1][2] = -Inf */
    write_st(path, "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", d, 44);
    expect_load("-Inf value", path, RC_ERR_NONFINITE, NULL);

    /* What the message says: the tensor, and what was wrong with it. */
    expect_why("message: unknown name",
               "{" ENTRY_W "," ENTRY_B "," ENTRY_N ",\"layer9.0.conv1.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
               "\"data_offsets\":[44,48]}}", good_data, 48, RC_ERR_NAME_UNKNOWN, "layer9.0.conv1.weight: not in the model");
    expect_why("message: missing name", "{" ENTRY_W "," ENTRY_N "}", good_data, 44, RC_ERR_NAME_MISSING,
               "a.bias: missing from the file");
    expect_why("message: dtype",
               "{" ENTRY_W ",\"a.bias\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[24,48]}," ENTRY_N "}",
               good_data, 48, RC_ERR_DTYPE, "a.bias: dtype F32 expected, file has I64");
    expect_why("message: shape",
               "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]}," ENTRY_B "," ENTRY_N "}",
               good_data, 44, RC_ERR_SHAPE, "a.weight: shape [2,3] expected, file has [3,2]");
    expect_why("message: scalar as [1]",
               "{" ENTRY_W "," ENTRY_B ",\"a.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[1],"
               "\"data_offsets\":[36,44]}}", good_data, 44, RC_ERR_SHAPE, "a.num_batches_tracked: shape [] expected, file has [1]");
    expect_why("message: rank past the reader's",
               "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3,1,1,1,1,1,1,1,1],\"data_offsets\":[0,24]}," ENTRY_B ","
               ENTRY_N "}", good_data, 44, RC_ERR_SHAPE, "a.weight: shape [2,3] expected, file has [2,3,1,1,1,1,1,1,...]");
    memcpy(d, good_data, 44);
    d[20] = 0x00, d[21] = 0x00, d[22] = 0x80, d[23] = 0xFF;  /* w[1][2] = -Inf */
    expect_why("message: non-finite", "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", d, 44, RC_ERR_NONFINITE,
               "a.weight: element 5 is not finite (NaN or Inf)");
    expect_why("message: truncated", "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", good_data, 40, RC_ERR_TRUNCATED,
               "tensor 'a.num_batches_tracked': data_offsets [36, 44] lie outside the 40 data bytes (truncated file?)");
}

static void test_bad_arguments(void)
{
    model m;
    rc_tensor t[NT];
    memset(&m, 0, sizeof m);
    char path[PATH_LEN];
    write_st(path_in(path, "args.safetensors"), "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", good_data, 44);

    describe(&m, t);
    CHECK(rc_st_load(NULL, t, NT, NULL, 0) == RC_ERR_NULL, "load with NULL path");
    CHECK(rc_st_load(path, NULL, NT, NULL, 0) == RC_ERR_NULL, "load with NULL tensors");
    CHECK(rc_st_load(path, t, -1, NULL, 0) == RC_ERR_ARG, "load with nt = -1");
    CHECK(rc_st_save(NULL, t, NT) == RC_ERR_NULL, "save with NULL path");
    CHECK(rc_st_save(in_dir("x"), NULL, 1) == RC_ERR_NULL, "save with NULL tensors");
    CHECK(rc_st_save(in_dir("x"), t, -1) == RC_ERR_ARG, "save with nt = -1");

    describe(&m, t);
    t[0].data = NULL;
    CHECK(rc_st_load(path, t, NT, NULL, 0) == RC_ERR_NULL, "descriptor with NULL data");
    describe(&m, t);
    t[0].name = NULL;
    CHECK(rc_st_save(in_dir("x"), t, NT) == RC_ERR_NULL, "descriptor with NULL name");
    describe(&m, t);
    t[0].ndim = 5;
    CHECK(rc_st_load(path, t, NT, NULL, 0) == RC_ERR_ARG, "descriptor with ndim 5");
    describe(&m, t);
    t[0].dtype = 3;
    CHECK(rc_st_load(path, t, NT, NULL, 0) == RC_ERR_ARG, "descriptor with dtype 3");
    describe(&m, t);
    t[0].shape[0] = -2;
    CHECK(rc_st_save(in_dir("x"), t, NT) == RC_ERR_ARG, "descriptor with negative extent");
    describe(&m, t);
    t[0].shape[0] = INT64_MAX;
    CHECK(rc_st_save(in_dir("x"), t, NT) == RC_ERR_ARG, "descriptor whose size overflows");
    describe(&m, t);
    t[1].name = "a.weight";
    CHECK(rc_st_save(in_dir("x"), t, NT) == RC_ERR_ARG, "duplicate descriptor names (save)");
    CHECK(rc_st_load(path, t, NT, NULL, 0) == RC_ERR_ARG, "duplicate descriptor names (load)");
    describe(&m, t);
    t[1].name = "__metadata__";
    CHECK(rc_st_save(in_dir("x"), t, NT) == RC_ERR_ARG, "descriptor named __metadata__");
    describe(&m, t);
    t[1].name = "bad\xFFutf8";
    CHECK(rc_st_save(in_dir("x"), t, NT) == RC_ERR_ARG, "descriptor name not UTF-8");
    CHECK(access(in_dir("x"), F_OK) != 0, "a refused save created its file");
    CHECK(count_temp_files(scratch_dir) == 0, "a refused save left a temporary file");

    /* No tensors wanted, but the file has some. */
    CHECK(rc_st_load(path, NULL, 0, NULL, 0) == RC_ERR_NAME_UNKNOWN, "nt = 0 against a non-empty file");
}

static void test_atomic_save(void)
{
    model a, b, got;
    rc_tensor ta[NT], tb[NT], tg[NT];
    char path[PATH_LEN];
    path_in(path, "atomic.safetensors");
    fill_values(&a, 1.0f);
    fill_values(&b, 5.0f);
    describe(&a, ta);
    describe(&b, tb);

    /* Replacing goes through a new file (a new inode), never an in-place
     * rewrite that a crash could leave half done. */
    CHECK(rc_st_save(path, ta, NT) == RC_OK, "atomic: first save");
    struct stat s1, s2;
    int st1 = stat(path, &s1);
    CHECK(rc_st_save(path, tb, NT) == RC_OK, "atomic: second save over the first");
    int st2 = stat(path, &s2);
    CHECK(st1 == 0 && st2 == 0 && s1.st_ino != s2.st_ino, "atomic: file was rewritten in place, not renamed");
    memset(&got, 0, sizeof got);
    describe(&got, tg);
    CHECK(rc_st_load(path, tg, NT, NULL, 0) == RC_OK && memcmp(got.w, b.w, sizeof b.w) == 0 && got.opt[0] == 5.0f,
          "atomic: replaced file does not hold the second model");
    CHECK(count_temp_files(scratch_dir) == 0, "atomic: temporary file left behind");

    /* Failures: the directory does not exist; the target is a directory
     * (rename fails after the temporary file is fully written). */
    CHECK(rc_st_save(in_dir("no/such/dir/m.safetensors"), ta, NT) == RC_ERR_WRITE,
          "save into a missing directory did not return RC_ERR_WRITE");
    CHECK(count_temp_files(scratch_dir) == 0, "save into a missing directory left a temporary file");
    mkdir(in_dir("target-is-dir"), 0777);
    CHECK(rc_st_save(in_dir("target-is-dir"), ta, NT) == RC_ERR_WRITE,
          "save over a directory did not return RC_ERR_WRITE");
    CHECK(count_temp_files(scratch_dir) == 0, "failed rename left a temporary file");
    struct stat sd;
    CHECK(stat(in_dir("target-is-dir"), &sd) == 0 && S_ISDIR(sd.st_mode),
          "failed save did not leave its target as it was");
}

/* The after_read hooks: each changes the file the way a writer might. */
static const char *changing_path;

static void grow_file(int fd)
{
    (void)fd;
    int w = open(changing_path, O_WRONLY | O_APPEND);
    if (w >= 0) {
        if (write(w, "more", 4) != 4) printf("grow_file: write failed\n");
        close(w);
    }
}

static void shrink_file(int fd)
{
    (void)fd;
    if (truncate(changing_path, 20) != 0) printf("shrink_file: truncate failed\n");
}

/* Same size, new bytes; the modification time moves (set explicitly, as a
 * coarse clock could otherwise leave it equal). */
static void rewrite_file(int fd)
{
    struct stat st;
    int w = open(changing_path, O_WRONLY);
    if (w >= 0 && fstat(fd, &st) == 0) {
        if (pwrite(w, "\0\0\0\0", 4, (off_t)st.st_size - 4) != 4) printf("rewrite_file: write failed\n");
        struct timespec times[2] = { st.st_atim, st.st_mtim };
        times[1].tv_sec += 1;
        futimens(w, times);
    }
    if (w >= 0) close(w);
}

static void test_changed_while_read(void)
{
    static const struct { const char *label; void (*hook)(int); } cases[] = {
        { "file grew while read", grow_file },
        { "file shrank while read", shrink_file },
        { "file rewritten in place while read", rewrite_file },
    };
    char path[PATH_LEN];
    path_in(path, "changing.safetensors");
    changing_path = path;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st(path, "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", good_data, 44);
        after_read = cases[i].hook;
        expect_load(cases[i].label, path, RC_ERR_CHANGED, NULL);
        after_read = NULL;
    }
    /* The same file, left alone, loads. */
    write_st(path, "{" ENTRY_W "," ENTRY_B "," ENTRY_N "}", good_data, 44);
    expect_load("file left alone", path, RC_OK, NULL);
}

/* What the normal stream's fingerprint must be (test_rng). */
#define NORMAL_STREAM_FNV 0x926277f7264a5bb2ull

static void test_rng(void)
{
    rc_rng r, q;
    rc_rng_seed(&r, 0);
    /* Reference values of splitmix64 from seed 0 (Vigna's splitmix64.c). */
    uint64_t a = rc_rng_u64(&r), b = rc_rng_u64(&r), c = rc_rng_u64(&r);
    CHECK(a == 0xE220A8397B1DCDAFull && b == 0x6E789E6AA1B965F4ull && c == 0x06C45D188009454Full,
          "splitmix64 from seed 0: %016llx %016llx %016llx", (unsigned long long)a, (unsigned long long)b,
          (unsigned long long)c);

    rc_rng_seed(&r, 42);
    rc_rng_seed(&q, 42);
    int same = 1;
    for (int i = 0; i < 1000; i++) {
        double a2[2], b2[2];
        rc_rng_normal_pair(&r, a2);
        rc_rng_normal_pair(&q, b2);
        same &= a2[0] == b2[0] && a2[1] == b2[1];
    }
    CHECK(same, "same seed gave different normals");
    rc_rng_seed(&q, 43);
    CHECK(rc_rng_u64(&r) != rc_rng_u64(&q), "different seeds gave the same value");

    /* The stream's bits are the same with every compiler, flag and libm (see
     * rc_rng): FNV-1a over the doubles of 10^5 pairs from seed 12345, as this
     * file computed it with gcc and clang at -O0 and -O3 (native, AVX2,
     * baseline, -ffp-contract=fast), glibc's non-FMA code, and aarch64 under
     * qemu. A change here changes every NAME_init_params. */
    rc_rng_seed(&r, 12345);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 100000; i++) {
        double z[2];
        rc_rng_normal_pair(&r, z);
        for (int j = 0; j < 2; j++) {
            uint64_t bits;
            memcpy(&bits, &z[j], sizeof bits);
            h = (h ^ bits) * 0x100000001b3ull;
        }
    }
    CHECK(h == NORMAL_STREAM_FNV, "normal stream from seed 12345: fingerprint %016llx, expected %016llx",
          (unsigned long long)h, (unsigned long long)NORMAL_STREAM_FNV);

    /* rc_ln against libm's log (which is within an ulp or so) over its domain. */
    double worst = 0;
    rc_rng_seed(&r, 99);
    for (int i = 0; i < 100000; i++) {
        const double x = ldexp(1.0 - rc_rng_uniform(&r), -(int)(rc_rng_u64(&r) % 62));
        const double want = log(x);
        const double err = want == 0 ? fabs(rc_ln(x)) : fabs(rc_ln(x) - want) / fabs(want);
        worst = err > worst ? err : worst;
    }
    CHECK(worst < 4e-15 && rc_ln(1.0) == 0.0, "rc_ln: worst relative error %g, ln 1 = %g", worst, rc_ln(1.0));

    rc_rng_seed(&r, 7);
    double lo = 1, hi = 0, sum = 0, sum2 = 0, sum4 = 0;
    const int n = 200000;
    int finite = 1;
    for (int i = 0; i < n; i++) {
        double u = rc_rng_uniform(&r);
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    CHECK(lo >= 0.0 && hi < 1.0 && lo < 1e-3 && hi > 1 - 1e-3, "uniform range [%g, %g]", lo, hi);
    for (int i = 0; i < n; i += 2) {
        double z[2];
        rc_rng_normal_pair(&r, z);
        for (int j = 0; j < 2; j++) {
            finite &= isfinite(z[j]) != 0;
            sum += z[j];
            sum2 += z[j] * z[j];
            sum4 += z[j] * z[j] * z[j] * z[j];
        }
    }
    double mean = sum / n, var = sum2 / n - mean * mean, kurtosis = sum4 / n;
    CHECK(finite, "normal produced a non-finite value");
    CHECK(fabs(mean) < 0.01 && fabs(var - 1) < 0.02 && fabs(kurtosis - 3) < 0.1, "normal mean %g variance %g fourth moment %g",
          mean, var, kurtosis);
}

/* A transport for `replicas` replicas that all hold the same values: each sum is replicas × the value. */
static int same_everywhere(float *data, size_t count, void *ctx)
{
    const int replicas = *(const int *)ctx;
    for (size_t i = 0; i < count; i++) data[i] *= (float)replicas;
    return 0;
}

static int failing(float *data, size_t count, void *ctx)
{
    (void)data, (void)count, (void)ctx;
    return -1;
}

/* rc_allreduce_doubles: sums within 2^−52 of their size (each replica's value
 * rounded once to a multiple of 2^(E−62); the 16-bit pieces add without
 * rounding; the sum back in a double), at every magnitude in float's range,
 * signs and zero; NaN and sums beyond float's range come back NaN; a failure
 * is kept. */
static void test_allreduce_doubles(void)
{
    const double values[] = { 0.0, 1.0, -1.0, 3.0e-300, -7.25e30, 0.1, -2.0 / 3.0, 123456789.123456789, 1e-12, -5e-9 };
    enum { K = (int)(sizeof values / sizeof values[0]) };
    for (int replicas = 2; replicas <= 256; replicas *= 4) {
        rc_reducer r = { .fn = same_everywhere, .ctx = &replicas, .replicas = replicas };
        double v[K];
        float tmp[4 * K];
        memcpy(v, values, sizeof v);
        rc_allreduce_doubles(&r, v, tmp, K);
        for (int i = 0; i < K; i++) {
            const double want = values[i] * replicas, err = fabs(v[i] - want);
            CHECK(err <= fabs(want) * 0x1p-52 + 0x1p-1022 * replicas, "%d replicas: sum of %.17g is %.17g, not %.17g", replicas, values[i], v[i], want);
        }
    }
    int two = 2;
    rc_reducer r = { .fn = same_everywhere, .ctx = &two, .replicas = 2 };
    double v[3] = { 1.5, 0.0, 1e39 };
    float tmp[12];
    v[1] = v[1] / v[1];  /* NaN */
    rc_allreduce_doubles(&r, v, tmp, 3);
    CHECK(v[0] == 3.0 && v[1] != v[1] && v[2] != v[2], "1.5, NaN, 1e39: %g %g %g", v[0], v[1], v[2]);
    rc_reducer bad = { .fn = failing, .ctx = NULL, .replicas = 2 };
    rc_allreduce_doubles(&bad, v, tmp, 2);
    CHECK(bad.failed == 1, "a failing hook is remembered");
    rc_reducer alone = { .fn = NULL, .ctx = NULL, .replicas = 1 };
    v[0] = 0.25;
    rc_allreduce_doubles(&alone, v, tmp, 1);
    CHECK(v[0] == 0.25 && rc_replicas(&alone) == 1, "one replica: nothing to sum");
}

/* rc_grad_store and rc_allreduce_grads: a double sum v per gradient reaches
 * the sum across replicas with what its rounding lost, so the result is the float of
 * the exact sum (R · v for R equal replicas) — not the sum of R floats —
 * in batches smaller than the range; a bucket in the middle of the
 * gradients; without them, one float sum. */
static void test_allreduce_grads(void)
{
    enum { P = 40, START = 7, COUNT = 29 };
    for (int replicas = 2; replicas <= 256; replicas *= 2) {
        float grads[P], lo[P], tmp[5 * 8];
        rc_reducer r = { .fn = same_everywhere, .ctx = &replicas, .replicas = replicas };
        r.grads = grads;
        r.lo = lo;
        r.tmp = tmp;
        r.tmp_floats = sizeof tmp / sizeof tmp[0];
        double v[P];
        uint64_t state = 12345u + (uint64_t)replicas;
        for (int i = 0; i < P; i++) {
            state = state * 6364136223846793005u + 1442695040888963407u;
            const double u = (double)(state >> 11) * 0x1p-53;           /* [0, 1), 53 bits */
            v[i] = (i % 2 ? -u : u) * rc_pow2(i % 9 * 7 - 30) * (1.0 + 0x1p-30);
            rc_grad_store(&r, grads, (size_t)i, v[i]);
        }
        int kept = 1;
        for (int i = 0; i < P; i++) kept &= (double)grads[i] + rc_grad_rest(grads[i], lo + i) == v[i];
        CHECK(kept, "rc_grad_store keeps exactly what rounding to float lost");
        rc_allreduce_grads(&r, grads + START, COUNT);
        int exact = 1;
        for (int i = START; i < START + COUNT; i++) exact &= grads[i] == (float)(v[i] * replicas);
        CHECK(exact && !r.failed, "%d replicas: the sums are the floats of the exact sums", replicas);
        CHECK(grads[START - 1] == (float)v[START - 1] && grads[START + COUNT] == (float)v[START + COUNT],
              "%d replicas: outside the bucket nothing changes", replicas);
    }
    int two = 2;
    float g[2] = { 1.5f, -0.25f };
    rc_reducer plain = { .fn = same_everywhere, .ctx = &two, .replicas = 2 };
    rc_allreduce_grads(&plain, g, 2);
    CHECK(g[0] == 3.0f && g[1] == -0.5f, "no rounding kept: one float sum (%g %g)", (double)g[0], (double)g[1]);
    rc_reducer bad = { .fn = failing, .ctx = NULL, .replicas = 2 };
    rc_allreduce_grads(&bad, g, 2);
    CHECK(bad.failed == 1 && g[0] == 3.0f, "a failing hook is remembered, the values kept");
}

static void test_strerror(void)
{
    const char *seen[18];
    for (int code = 0; code >= -17; code--) {
        const char *s = rc_strerror(code);
        CHECK(s != NULL && strlen(s) > 5 && strcmp(s, "unknown error code") != 0, "rc_strerror(%d) = %s", code,
              s != NULL ? s : "(null)");
        for (int k = 0; k < -code; k++)
            CHECK(strcmp(seen[k], s) != 0, "rc_strerror(%d) repeats rc_strerror(%d)", code, -k);
        seen[-code] = s;
    }
    CHECK(strcmp(rc_strerror(-18), "unknown error code") == 0, "rc_strerror(-18)");
    CHECK(strcmp(rc_strerror(1), "unknown error code") == 0, "rc_strerror(1)");
}

#ifdef _OPENMP
/* Re-entrancy: many threads save and load at once, each to its own file,
 * and several to the same file (the last rename wins; none may tear). */
static void test_threads(void)
{
    int bad = 0;
    char shared[PATH_LEN];
    path_in(shared, "shared-by-threads.safetensors");
#pragma omp parallel for reduction(+ : bad) num_threads(8)
    for (int i = 0; i < 64; i++) {
        model m, got;
        rc_tensor t[NT], tg[NT];
        char own[8192];
        fill_values(&m, (float)i);
        describe(&m, t);
        snprintf(own, sizeof own, "%s/thread%d.safetensors", scratch_dir, i);
        bad += rc_st_save(own, t, NT) != RC_OK;
        bad += rc_st_save(shared, t, NT) != RC_OK;
        memset(&got, 0, sizeof got);
        describe(&got, tg);
        bad += rc_st_load(own, tg, NT, NULL, 0) != RC_OK || memcmp(got.w, m.w, sizeof m.w) != 0;
    }
    CHECK(bad == 0, "threads: %d failed saves or loads", bad);
    model got;
    rc_tensor tg[NT];
    describe(&got, tg);
    CHECK(rc_st_load(shared, tg, NT, NULL, 0) == RC_OK,
          "threads: file saved concurrently by many threads is not valid");
    CHECK(count_temp_files(scratch_dir) == 0, "threads: temporary file left behind");
}
#endif

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(scratch_dir, sizeof scratch_dir, "%s/rc_runtime_tests.XXXXXX",
             base != NULL && *base != '\0' ? base : "/tmp");
    if (mkdtemp(scratch_dir) == NULL) {
        printf("cannot create a temporary directory: %s\n", strerror(errno));
        return 2;
    }
    make_good_data();
    test_round_trip();
    test_valid_variants();
    test_bad_files();
    test_bad_arguments();
    test_atomic_save();
    test_changed_while_read();
    test_rng();
    test_strerror();
    test_allreduce_doubles();
    test_allreduce_grads();
#ifdef _OPENMP
    test_threads();
#endif
    if (getenv("RC_KEEP_TMP") == NULL) remove_tree(scratch_dir);
    else printf("kept %s\n", scratch_dir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0 ? 1 : 0;
}

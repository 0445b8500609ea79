/*
 * The trainer's data reader: labelled images from a CIFAR-10 binary batch or
 * from a safetensors file with `images` (N×C×H×W, U8 or F32) and `labels`
 * (N; I32, I64 or U8), checked against the image shape and class count the
 * network takes. It works on bytes already in memory and reports every
 * problem as an RC_ code with a sentence in `why` (nothing here exits), so
 * the trainer and a fuzz target (Tests/Fuzz/fuzz_dataset.c) run the same
 * code. Needs runtime.c first, for the safetensors reader and the codes.
 */

/// What the network takes: image extents and the number of classes.
typedef struct {
    size_t channels, height, width;
    int classes;
} rc_data_shape;

/// Images n×C×H×W kept as stored (bytes, scaled by 1/255 when used, or
/// floats) and one label per image. All NULL and 0 when empty.
typedef struct {
    size_t count;
    uint8_t *u8;
    float *f32;
    int32_t *labels;
} rc_dataset;

RC_UNUSED static void rc_dataset_free(rc_dataset *d)
{
    free(d->u8);
    free(d->f32);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

RC_UNUSED static int rc_data_fail(char *why, size_t cap, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why != NULL && cap > 0) vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return code;
}

/* Pixels per image, or 0 when the product does not fit in size_t. */
RC_UNUSED static size_t rc_data_image_size(const rc_data_shape *s)
{
    uint64_t n;
    if (!rc_mul_u64(s->channels, s->height, &n) || !rc_mul_u64(n, s->width, &n) || !rc_fits_size(n)) return 0;
    return (size_t)n;
}

/// Appends the records of a CIFAR-10 binary batch (bytes[0..n): each a
/// label byte and 3×32×32 bytes of R, G, B planes) to d. On failure d is
/// as it was.
RC_UNUSED static int rc_data_append_cifar(rc_dataset *d, const unsigned char *bytes, size_t n,
                                          const rc_data_shape *s, char *why, size_t cap)
{
    const size_t image = 3 * 32 * 32, record = 1 + image;
    if (s->channels != 3 || s->height != 32 || s->width != 32)
        return rc_data_fail(why, cap, RC_ERR_SHAPE, "CIFAR-10 images are 3×32×32, but the network takes %zu×%zu×%zu",
                            s->channels, s->height, s->width);
    if (d->f32 != NULL) return rc_data_fail(why, cap, RC_ERR_ARG, "cannot append bytes to F32 images");
    if (n == 0 || n % record != 0)
        return rc_data_fail(why, cap, RC_ERR_FORMAT,
                            "%zu bytes is not a whole number of CIFAR-10 records (%zu bytes each: label + 3×32×32)",
                            n, record);
    size_t records = n / record;
    for (size_t i = 0; i < records; i++) {
        int label = bytes[i * record];
        if (label >= s->classes)
            return rc_data_fail(why, cap, RC_ERR_LABEL, "record %zu has label %d, outside 0...%d (the network has %d classes)",
                                i, label, s->classes - 1, s->classes);
    }
    uint64_t total, pixels, labels;
    if (!rc_add_u64(d->count, records, &total) || !rc_mul_u64(total, image, &pixels) || !rc_fits_size(pixels) ||
        !rc_mul_u64(total, sizeof(int32_t), &labels) || !rc_fits_size(labels))
        return rc_data_fail(why, cap, RC_ERR_NOMEM, "too many images");
    uint8_t *grown_images = realloc(d->u8, (size_t)pixels);
    if (grown_images == NULL) return rc_data_fail(why, cap, RC_ERR_NOMEM, "out of memory");
    d->u8 = grown_images;
    int32_t *grown_labels = realloc(d->labels, (size_t)labels);
    if (grown_labels == NULL) return rc_data_fail(why, cap, RC_ERR_NOMEM, "out of memory");
    d->labels = grown_labels;
    for (size_t i = 0; i < records; i++) {
        d->labels[d->count + i] = bytes[i * record];
        memcpy(d->u8 + (d->count + i) * image, bytes + i * record + 1, image);
    }
    d->count = (size_t)total;
    return RC_OK;
}

/* "[60000, 3, 32, 32]" */
RC_UNUSED static void rc_data_shape_text(const rc_st_entry *e, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < e->ndim && i < RC_ST_MAX_RANK && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRIu64, i ? ", " : "", e->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "%s]", e->ndim > RC_ST_MAX_RANK ? ", ..." : "");
}

/* Little-endian integer of `size` bytes at p (signed unless U8). */
RC_UNUSED static int64_t rc_data_read_le(const uint8_t *p, size_t size, int is_signed)
{
    uint64_t v = 0;
    for (size_t i = size; i-- > 0;) v = (v << 8) | p[i];
    if (is_signed && size < 8 && (v >> (8 * size - 1)) & 1) v |= ~(uint64_t)0 << (8 * size);
    return (int64_t)v;
}

/// Fills d (empty) from f, a file rc_st_open accepted: `images` and
/// `labels`, every label in 0..classes-1 and every F32 pixel finite.
RC_UNUSED static int rc_data_from_safetensors(rc_dataset *d, const rc_st_file *f, const rc_data_shape *s,
                                              char *why, size_t cap)
{
    char shape[200];
    const rc_st_entry *images = rc_st_find(f, "images"), *labels = rc_st_find(f, "labels");
    memset(d, 0, sizeof *d);
    if (images == NULL || labels == NULL)
        return rc_data_fail(why, cap, RC_ERR_NAME_MISSING, "no tensor '%s' (a data set holds 'images' and 'labels')",
                            images == NULL ? "images" : "labels");
    if (images->dtype != RC_U8 && images->dtype != RC_F32)
        return rc_data_fail(why, cap, RC_ERR_DTYPE, "tensor 'images' has dtype %s; expected U8 (scaled by 1/255) or F32",
                            rc_dtype_name(images->dtype));
    rc_data_shape_text(images, shape, sizeof shape);
    if (images->ndim != 4 || images->shape[1] != s->channels || images->shape[2] != s->height ||
        images->shape[3] != s->width) {
        int nhwc = images->ndim == 4 && images->shape[3] == s->channels && images->shape[1] == s->height &&
                   images->shape[2] == s->width;
        return rc_data_fail(why, cap, RC_ERR_SHAPE,
                            "tensor 'images' has shape %s; the network needs [N, %zu, %zu, %zu] (N×C×H×W)%s", shape,
                            s->channels, s->height, s->width,
                            nhwc ? "; this looks like N×H×W×C: transpose it to N×C×H×W" : "");
    }
    uint64_t n = images->shape[0];
    if (n == 0) return rc_data_fail(why, cap, RC_ERR_SHAPE, "tensor 'images' holds no images");
    if (labels->dtype != RC_I32 && labels->dtype != RC_I64 && labels->dtype != RC_U8)
        return rc_data_fail(why, cap, RC_ERR_DTYPE, "tensor 'labels' has dtype %s; expected I32, I64 or U8",
                            rc_dtype_name(labels->dtype));
    if (labels->ndim != 1 || labels->shape[0] != n) {
        rc_data_shape_text(labels, shape, sizeof shape);
        return rc_data_fail(why, cap, RC_ERR_SHAPE, "tensor 'labels' has shape %s; expected [%" PRIu64 "], one per image",
                            shape, n);
    }
    /* The layout check has bounded both tensors by the file size, so these
     * products fit; size_t is checked for 32-bit hosts. */
    size_t image = rc_data_image_size(s), label_size = rc_dtype_size(labels->dtype);
    if (image == 0 || !rc_fits_size(n) || !rc_fits_size(images->end - images->begin))
        return rc_data_fail(why, cap, RC_ERR_NOMEM, "too many images");
    size_t count = (size_t)n, values = (size_t)(images->end - images->begin) / rc_dtype_size(images->dtype);
    const uint8_t *label_bytes = f->data + labels->begin;
    for (size_t i = 0; i < count; i++) {
        int64_t label = rc_data_read_le(label_bytes + i * label_size, label_size, labels->dtype != RC_U8);
        if (label < 0 || label >= s->classes)
            return rc_data_fail(why, cap, RC_ERR_LABEL, "labels[%zu] is %" PRId64 ", outside 0...%d (the network has %d classes)",
                                i, label, s->classes - 1, s->classes);
    }
    if (images->dtype == RC_F32) {
        const size_t at = rc_first_nonfinite_f32(f->data + images->begin, values * sizeof(float));
        if (at < values)
            return rc_data_fail(why, cap, RC_ERR_NONFINITE, "tensor 'images' holds a non-finite value in image %zu",
                                at / image);
    }
    d->labels = malloc(count * sizeof(int32_t));
    if (images->dtype == RC_U8) d->u8 = malloc(values > 0 ? values : 1);
    else d->f32 = malloc(values * sizeof(float));
    if (d->labels == NULL || (d->u8 == NULL && d->f32 == NULL)) {
        rc_dataset_free(d);
        return rc_data_fail(why, cap, RC_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < count; i++)
        d->labels[i] = (int32_t)rc_data_read_le(label_bytes + i * label_size, label_size, labels->dtype != RC_U8);
    if (d->u8 != NULL) {
        memcpy(d->u8, f->data + images->begin, values);
    } else if (rc_host_is_le()) {
        memcpy(d->f32, f->data + images->begin, values * sizeof(float));
    } else {
        rc_copy_swapped((unsigned char *)d->f32, f->data + images->begin, values * sizeof(float), sizeof(float));
    }
    d->count = count;
    return RC_OK;
}

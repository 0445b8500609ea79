/* One network's share of two_models.c, included once per network with NET,
 * UNET and NET_HEADER defined (as for driver.c). Defines NET_job, which fills
 * a job's result from a model of its own: the probabilities of JOB_BATCH
 * images, the losses of JOB_STEPS SGD steps on them, and the probabilities
 * after those steps. Everything a job touches is its own (model, inputs,
 * outputs), so running jobs in parallel threads must change nothing.
 */
#include NET_HEADER

#define F(x) CAT(NET, CAT(_, x))
#define U(x) CAT(UNET, CAT(_, x))

static int F(job)(job *j)
{
    enum { N = JOB_BATCH, IMAGE = U(INPUT_C) * U(INPUT_H) * U(INPUT_W), CLASSES = U(NUM_CLASSES) };
    _Static_assert(2 * N * CLASSES + JOB_STEPS <= JOB_RESULT, "job results do not fit");
    float *x = malloc((size_t)N * IMAGE * sizeof(float));
    F(model) *m = F(create)(N);
    int32_t labels[N];
    size_t count = 0;
    int rc = x && m ? F(init_params)(m, j->seed) : -1;
    if (rc == 0) {
        fill_inputs(x, (size_t)N * IMAGE, j->seed);
        for (int i = 0; i < N; i++) labels[i] = i % CLASSES;
        rc = F(infer)(m, x, N, j->result);
        count = (size_t)N * CLASSES;
    }
    for (int step = 0; step < JOB_STEPS && rc == 0; step++) {
        rc = F(train_step)(m, x, labels, N, 0.05f, &j->result[count]);
        count++;
    }
    if (rc == 0) {
        rc = F(infer)(m, x, N, &j->result[count]);
        count += (size_t)N * CLASSES;
    }
    j->count = count;
    F(destroy)(m);
    free(x);
    return rc;
}

#undef F
#undef U

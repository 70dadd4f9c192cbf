// rt.h: the runtime's internal interface, shared by its files (the compiled
// model's interface is fnnrt.h). One section per file.
#ifndef RT_H
#define RT_H

#include "fnnrt.h"

#include <stddef.h>
#include <stdint.h>

// util.c
void rt_rng_seed(uint64_t s[4], uint64_t seed, uint64_t stream);
double rt_rng_unit(uint64_t s[4]);
uint64_t rt_rng_below(uint64_t s[4], uint64_t n);
double rt_rng_normal(uint64_t s[4]);
void rt_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rt_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double rt_now(void);
int rt_hexval(char c);  // a hexadecimal digit's value, or -1
float *rt_alloc_floats(const char *prog, const char *what, int64_t n);
void rt_advise_huge(void *p, int64_t bytes);
int rt_flag_value(const char *prog, int argc, char **argv, int *i, const char *name, const char **val);
int rt_parse_int(const char *prog, const char *flag, const char *s, int64_t min, int64_t *out);
int rt_parse_pos_real(const char *prog, const char *flag, const char *s, double *out);
void rt_unknown_flag(const char *prog, const char *arg, const char *const *names);

// data.c
typedef struct RtData RtData;
RtData *rt_data_load(const char *prog, const char *dir, const char *kind, const char *f0, const char *f1,
                     const char *column, int in_rank, const int64_t *in_dims, int classify, int64_t width,
                     double mean, double std);
RtData *rt_data_load_inputs(const char *prog, const char *file, const char *column, int in_rank,
                            const int64_t *in_dims, int classify, int64_t width, double mean, double std);
RtData *rt_data_load_text(const char *prog, const char *dir, const char *file, const char *vocab, int64_t T,
                          int64_t limit, const RtData *like);
int rt_data_vocab(const RtData *d, unsigned char *chars);
int64_t rt_data_count(const RtData *d);
void rt_data_batch(const RtData *d, const int64_t *idx, int64_t n, float *x, void *y);
void rt_data_batch_parallel(const RtData *d, const int64_t *idx, int64_t n, float *x, void *y);
void rt_data_batch_copies(const RtData *d, const int64_t *idx, int64_t n, float *x, int64_t stride, int64_t copies,
                          void *y);
void rt_data_free(RtData *d);
int rt_data_bytes_vectorized(const RtData *d);  // IDX bytes normalised 16 at a time (AVX-512)
int rt_data_split(const char *prog, RtData **d, double frac, uint64_t rng[4], RtData **val);
float *rt_data_feature_stats(const RtData *d);
void rt_data_standardize(RtData *d, const float *stats);

// plot.c
typedef struct {
  const char *name;
  int right;        // on the right axis
  int dashed;
  int64_t n;
  const double *x, *y;
} RtSeries;
int rt_plot_svg(const char *prog, const char *path, const char *title, const char *left, const char *right,
                const RtSeries *s, int ns);

// ckpt.c (safetensors checkpoints)
typedef struct {
  const char *name;
  int rank;
  int64_t dims[8];
  const float *data;
} RtCkTensor;
typedef struct RtCk RtCk;
int rt_ck_save(const char *prog, const char *path, const RtCkTensor *t, int nt, const char *const *meta, int nmeta);
RtCk *rt_ck_load(const char *prog, const char *path);
void rt_ck_free(RtCk *c);
const char *rt_ck_meta(const RtCk *c, const char *key);
int rt_ck_count(const RtCk *c);
const char *rt_ck_tensor(const RtCk *c, int i, int *rank, const int64_t **dims);
int rt_ck_find(const RtCk *c, const char *name);
void rt_ck_read(const RtCk *c, int i, float *dst);
const char *rt_ck_shape_str(int rank, const int64_t *dims, char *buf, size_t cap);
int rt_ck_check_writable(const char *prog, const char *path);

// profile.c
void *rt_prof_new(int64_t nkernels);
void rt_prof_rows(void *prof, int64_t rows, int64_t batch);  // before each step: is it a full batch?
void rt_prof_print(void *prof, const char *const *entry, const char *const *name);
void rt_prof_free(void *prof);

// train.c
typedef struct RtModel RtModel;
RtModel *rt_model_open(const FnnModel *m);
int rt_model_setup(RtModel *r, const char *prog, int64_t batch, uint64_t seed, FnnArgs *a);
void rt_model_free(RtModel *r);
const char *rt_model_name(const RtModel *r);
int rt_model_nparams(const RtModel *r);
int64_t rt_model_input_numel(const RtModel *r);
int64_t rt_model_target(const RtModel *r, int *classify);
const char *rt_model_param(const RtModel *r, int i, int64_t *offset, int64_t *numel, char *shape, size_t cap);
// A tokens[T] model: the input's vocabulary (0 if the input is not tokens) and
// the target's ids per sample (0 if it is not a tokens[T] target).
int64_t rt_model_tokens(const RtModel *r, int64_t *steps);
int rt_model_bidirectional(const RtModel *r);  // some output reads later steps
int64_t rt_model_y_words(const RtModel *r);     // a sample's target: int32 ids or floats
int64_t rt_model_out_floats(const RtModel *r);  // a sample's eval_step outputs
const char *rt_model_text_vocab(const RtModel *r);  // the training text's vocab= mode, or NULL
const FnnModel *rt_model_compiled(const RtModel *r);

// sample.c: --sample N, after the weights are loaded into a's parameter slab.
typedef struct {
  const char *prog;
  int64_t n, seed;
  double temperature;
  const char *prime;    // or NULL
  const char *ckpt;     // the checkpoint the weights came from, for messages
  const char *vocab;    // its metadata 'vocab' (hex, read with the weights), or NULL
} RtSampleOpts;
int rt_sample(const RtModel *r, FnnArgs *a, const RtSampleOpts *o);
int64_t rt_model_param_grad(const RtModel *r, int i);
int rt_model_param_zero(const RtModel *r, int i);

#endif

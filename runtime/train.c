// train.c - the model descriptor, the slabs, parameter initialisation, and the
// trainer (fnn_main): flags, data, shuffling, epochs, evaluation, logging and
// the progress bar; checkpoint save / resume / init on top of ckpt.c.
#include "rt.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// PRNG streams (see util.c): one per parameter, one per epoch's shuffle, one
// for the validation split.
#define STREAM_PARAM 0x100u
#define STREAM_SHUFFLE 0x10000u
#define STREAM_SPLIT 0x20000u

//
// The model descriptor (format: docs/architecture.md, written by compiler/entry.c).
//
#define RT_MAXRANK 8
enum { INIT_KAIMING, INIT_BIAS, INIT_ZERO, INIT_ONE, INIT_NORMAL };

typedef struct {
  char *name;
  int64_t offset, fan_in, numel;  // offset and numel in floats
  int64_t toff;                   // offset in the gradient slab and state slots; -1: frozen
  int init;
  int rank;
  int64_t dims[RT_MAXRANK];
} RtParam;

// A LoRA adapter (a `lora` descriptor line): W' = W + scale * B A, parameter
// indices of the base weight W [O, ...], its bias (or -1), A [R, ...] and B [O, R, ...].
typedef struct {
  int base, bias, a, b;
  double scale;
} RtLora;

typedef struct {
  int present;
  char *kind, *files[2];
  char *column;  // csv: the target column by name, or ""
} RtSource;

typedef struct RtModel {
  const FnnModel *m;
  char *text;  // the descriptor, tokenised in place
  char *name;
  int in_rank;
  int64_t in_dims[RT_MAXRANK], in_numel;
  int classify;
  int64_t width;  // classes, or target values per sample
  int64_t vocab_in;  // tokens[T] input: ids below this; 0 for a float input
  int64_t steps;     // tokens[T] target: class ids per sample; 0 for one class or values
  int bidirectional; // some step's output reads later steps: no --sample
  int input_copies;  // train_step's threads each read the whole batch: give each its own copy
  int nvocab;        // the training text's vocabulary (vocab="file"), once loaded
  unsigned char vocab[256];
  int64_t batch, epochs, seed;
  int shuffle;
  int adam;         // adam or adamw: two state slots and Adam's bias corrections
  const char *opt;  // adam, adamw or sgd
  double lr, beta1, beta2, eps, momentum, weight_decay;
  int sched;                 // -1: none; else constant, step, cosine (after warmup)
  int64_t warmup, step_size; // the schedule's steps
  double gamma, min_lr;
  double lr_now;             // the lr of the last step (the log's lr column), NAN before one
  double mean, std;
  int standardize;    // CSV features by the training rows' mean and std
  double validation;  // the fraction of the training data held out, or 0
  RtSource train, test;
  int64_t param_floats, state_floats, work_per_n, work_fixed;
  int64_t train_floats;    // the gradient slab and each state slot (trainable parameters)
  int state_slots;
  int64_t scratch_floats;  // per thread
  int nkernels;            // `kernel ID ENTRY NAME` lines, for --profile
  const char *kentry[512], *kname[512];
  int nparams;
  RtParam *params;
  int nlora;
  RtLora *lora;
  // Slabs, from rt_model_setup.
  float *pslab, *gslab, *sslab, *wslab, *xslab;
} RtModel;

void rt_model_free(RtModel *r) {
  if (!r) return;
  free(r->pslab);
  free(r->gslab);
  free(r->sslab);
  free(r->wslab);
  free(r->xslab);
  free(r->params);
  free(r->lora);
  free(r->text);
  free(r);
}

// Splits a line into tokens in place: bare words, or "strings" in which a
// backslash escapes a quote or a backslash.
// Returns the count, or -1 if malformed.
static int tokenize(char *s, char **tok, int max) {
  int n = 0;
  for (;;) {
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return n;
    if (n == max) return -1;
    if (*s == '"') {
      char *o = ++s;
      tok[n++] = o;
      for (;; s++) {
        if (!*s) return -1;
        if (*s == '"') break;
        if (*s == '\\') {
          s++;
          if (*s != '"' && *s != '\\') return -1;
        }
        *o++ = *s;
      }
      s++;
      if (*s && *s != ' ' && *s != '\t') return -1;
      *o = 0;
      if (*s) s++;
    } else {
      tok[n++] = s;
      while (*s && *s != ' ' && *s != '\t') {
        if (*s == '"') return -1;
        s++;
      }
      if (*s) *s++ = 0;
    }
  }
}

static int tok_int(const char *s, int64_t min, int64_t *out) {
  char *end;
  if (!*s) return -1;
  long long v = strtoll(s, &end, 10);
  if (*end || v < min) return -1;
  *out = v;
  return 0;
}

static int tok_real(const char *s, double *out) {
  char *end;
  if (!*s) return -1;
  double v = strtod(s, &end);
  if (*end || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

// "RANK D1 ... DR" at tok[0..]; returns the tokens used, or -1.
static int tok_dims(char **tok, int ntok, int *rank, int64_t *dims, int64_t *numel) {
  int64_t r;
  if (ntok < 1 || tok_int(tok[0], 0, &r) || r > RT_MAXRANK || ntok < 1 + r) return -1;
  *rank = (int)r;
  *numel = 1;
  for (int i = 0; i < r; i++) {
    if (tok_int(tok[1 + i], 1, &dims[i]) || dims[i] > ((int64_t)1 << 40) / *numel) return -1;
    *numel *= dims[i];
  }
  return 1 + (int)r;
}

// Parses the descriptor; NULL (after an internal error message) if malformed.
// Reads `lora BASE BIAS A B SCALE`: the four parameters must exist and fit
// together (B A has W's shape, flattened to [O, R] and [R, rest]). Returns 0,
// or 1 if the line is bad.
static int lora_line(RtModel *r, char **tok) {
  int64_t ix[4];
  double scale;
  for (int i = 0; i < 4; i++)
    if (tok_int(tok[1 + i], i == 1 ? -1 : 0, &ix[i]) || ix[i] >= r->nparams) return 1;
  if (tok_real(tok[5], &scale) || !(scale > 0)) return 1;
  const RtParam *w = &r->params[ix[0]], *a = &r->params[ix[2]], *b = &r->params[ix[3]];
  int64_t rank = a->rank > 0 ? a->dims[0] : 0;
  if (w->rank < 2 || a->rank < 2 || b->rank < 2 || rank < 1 || b->dims[0] != w->dims[0] || b->dims[1] != rank ||
      b->numel != w->dims[0] * rank || a->numel != rank * (w->numel / w->dims[0]))
    return 1;
  RtLora *nl = realloc(r->lora, sizeof *nl * (size_t)(r->nlora + 1));
  if (!nl) return 1;
  r->lora = nl;
  r->lora[r->nlora++] = (RtLora){(int)ix[0], (int)ix[1], (int)ix[2], (int)ix[3], scale};
  return 0;
}

RtModel *rt_model_open(const FnnModel *m) {
  RtModel *r = calloc(1, sizeof *r);
  if (!r || !m || !m->desc || !(r->text = strdup(m->desc))) {
    fprintf(stderr, "fnn: internal error: no model descriptor\n");
    rt_model_free(r);
    return NULL;
  }
  r->m = m;
  r->sched = -1;
  r->lr_now = NAN;
  enum { R_FNN, R_MODEL, R_INPUT, R_TARGET, R_BATCH, R_EPOCHS, R_SEED, R_SHUFFLE, R_OPT, R_NORM, R_TRAIN, R_TEST,
         R_PARAMS, R_STATE, R_WORK, R_SCRATCH, R_END, R_STD, R_VALID, R_TOKENS, R_STEPS, R_SCHED, R_BIDIR, R_COPIES, R_COUNT };
  static const char *const recs[R_COUNT] = {"fnn",   "model",  "input",     "target", "batch", "epochs",
                                            "seed",  "shuffle", "optimizer", "normalize", "train", "test",
                                            "params", "state",  "work",      "scratch", "end", "standardize",
                                            "validation", "tokens", "steps", "schedule", "bidirectional", "input_copies"};
  int seen[R_COUNT] = {0};
  int nparam_seen = 0;
  int lineno = 0;
  char *line = r->text;
  while (line && *line) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    lineno++;
    char *tok[4 + RT_MAXRANK + 8];
    int nt = tokenize(line, tok, (int)(sizeof tok / sizeof tok[0]));
    int k = -1;
    if (nt > 0)
      for (k = 0; k < R_COUNT && strcmp(tok[0], recs[k]); k++) {
      }
    // `param` lines follow `params` and come before `state`.
    int is_param = nt > 0 && !strcmp(tok[0], "param");
    if (nt > 0 && !strcmp(tok[0], "lora")) {
      // `lora BASE BIAS A B SCALE` lines follow the `param` lines.
      if (nt != 6 || !seen[R_PARAMS] || seen[R_STATE] || nparam_seen != r->nparams || lora_line(r, tok)) goto bad;
      line = nl ? nl + 1 : NULL;
      continue;
    }
    if (nt == 4 && !strcmp(tok[0], "kernel") && seen[R_SCRATCH] && !seen[R_END]) {
      int64_t id;
      if (tok_int(tok[1], 0, &id) || id != r->nkernels || r->nkernels >= 512) goto bad;
      r->kentry[r->nkernels] = tok[2];
      r->kname[r->nkernels++] = tok[3];
      line = nl ? nl + 1 : NULL;
      continue;
    }
    if (nt <= 0 || (!is_param && (k == R_COUNT || seen[k])) || seen[R_END] || (lineno == 1) != (k == R_FNN))
      goto bad;
    if (is_param) {
      if (!seen[R_PARAMS] || seen[R_STATE] || nparam_seen >= r->nparams || nt < 7) goto bad;
      RtParam *p = &r->params[nparam_seen++];
      static const char *const inits[] = {"kaiming_uniform", "bias_uniform", "zero", "one", "normal"};
      p->name = tok[1];
      p->init = -1;
      for (int i = 0; i < 5; i++)
        if (nt > 5 && !strcmp(tok[5], inits[i])) p->init = i;
      int used = tok_dims(tok + 6, nt - 6, &p->rank, p->dims, &p->numel);
      if (!*p->name || tok_int(tok[2], 0, &p->offset) || tok_int(tok[3], -1, &p->toff) ||
          tok_int(tok[4], 0, &p->fan_in) || p->init < 0 || used < 0 || 6 + used != nt ||
          p->offset + p->numel > r->param_floats ||
          ((p->init == INIT_KAIMING || p->init == INIT_BIAS) && p->fan_in < 1))
        goto bad;
      line = nl ? nl + 1 : NULL;
      continue;
    }
    seen[k] = 1;
    int ok = 0;
    switch (k) {
    case R_FNN:
      ok = nt == 2 && !strcmp(tok[1], "1");
      break;
    case R_MODEL:
      ok = nt == 2 && *tok[1];
      r->name = tok[1];
      break;
    case R_INPUT: {
      int used = tok_dims(tok + 1, nt - 1, &r->in_rank, r->in_dims, &r->in_numel);
      ok = used > 0 && 1 + used == nt && r->in_rank >= 1;
      break;
    }
    case R_TARGET:
      ok = nt == 3 && (!strcmp(tok[1], "class") || !strcmp(tok[1], "values")) && !tok_int(tok[2], 1, &r->width) &&
           r->width <= ((int64_t)1 << 31);
      r->classify = nt == 3 && !strcmp(tok[1], "class");
      break;
    case R_BATCH:
      ok = nt == 2 && !tok_int(tok[1], 1, &r->batch);
      break;
    case R_EPOCHS:
      ok = nt == 2 && !tok_int(tok[1], 1, &r->epochs);
      break;
    case R_SEED:
      ok = nt == 2 && !tok_int(tok[1], 0, &r->seed);
      break;
    case R_SHUFFLE:
      ok = nt == 2 && (!strcmp(tok[1], "0") || !strcmp(tok[1], "1"));
      r->shuffle = ok && tok[1][0] == '1';
      break;
    case R_OPT:
      ok = nt == 8 && (!strcmp(tok[1], "adam") || !strcmp(tok[1], "adamw") || !strcmp(tok[1], "sgd")) &&
           !tok_real(tok[2], &r->lr) && !tok_real(tok[3], &r->beta1) && !tok_real(tok[4], &r->beta2) &&
           !tok_real(tok[5], &r->eps) && !tok_real(tok[6], &r->momentum) && !tok_real(tok[7], &r->weight_decay) &&
           r->lr > 0;
      r->adam = nt == 8 && strcmp(tok[1], "sgd") != 0;
      r->opt = nt > 1 ? tok[1] : "";
      break;
    case R_NORM:
      ok = nt == 3 && !tok_real(tok[1], &r->mean) && !tok_real(tok[2], &r->std) && r->std != 0;
      break;
    case R_TRAIN:
    case R_TEST: {
      RtSource *s = k == R_TRAIN ? &r->train : &r->test;
      ok = (nt == 4 || nt == 5) && (!strcmp(tok[1], "idx") || !strcmp(tok[1], "csv") || !strcmp(tok[1], "text")) &&
           *tok[2] && (!strcmp(tok[1], "csv") || *tok[3]);
      s->present = 1;
      s->kind = tok[1];
      s->files[0] = nt > 2 ? tok[2] : NULL;
      s->files[1] = nt > 3 ? tok[3] : NULL;
      s->column = nt > 4 ? tok[4] : "";
      break;
    }
    case R_STD:
      ok = nt == 2 && !strcmp(tok[1], "1");
      r->standardize = 1;
      break;
    case R_VALID:
      ok = nt == 2 && !tok_real(tok[1], &r->validation) && r->validation > 0 && r->validation < 1;
      break;
    case R_TOKENS:
      ok = nt == 2 && !tok_int(tok[1], 2, &r->vocab_in) && r->vocab_in <= ((int64_t)1 << 31);
      break;
    case R_STEPS:
      ok = nt == 2 && !tok_int(tok[1], 1, &r->steps) && r->steps <= ((int64_t)1 << 31);
      break;
    case R_BIDIR:
      ok = nt == 1;
      r->bidirectional = 1;
      break;
    case R_COPIES:
      ok = nt == 1;
      r->input_copies = 1;
      break;
    case R_SCHED: {
      static const char *const kinds[] = {"constant", "step", "cosine"};
      r->sched = -1;
      for (int i = 0; nt == 6 && i < 3; i++)
        if (!strcmp(tok[1], kinds[i])) r->sched = i;
      ok = r->sched >= 0 && !tok_int(tok[2], 0, &r->warmup) && !tok_int(tok[3], 0, &r->step_size) &&
           !tok_real(tok[4], &r->gamma) && !tok_real(tok[5], &r->min_lr) && (r->sched != 1 || r->step_size > 0);
      break;
    }
    case R_PARAMS: {
      int64_t count;
      ok = nt == 3 && !tok_int(tok[1], 0, &r->param_floats) && !tok_int(tok[2], 0, &count) &&
           r->param_floats <= ((int64_t)1 << 40) && count <= 1000000;
      if (ok) {
        r->nparams = (int)count;
        r->params = calloc((size_t)count + 1, sizeof *r->params);
        ok = r->params != NULL;
      }
      break;
    }
    case R_STATE: {
      int64_t slots = 0;
      ok = nt == 3 && !tok_int(tok[1], 0, &slots) && slots <= 2 && !tok_int(tok[2], 0, &r->train_floats) &&
           r->train_floats <= r->param_floats && nparam_seen == r->nparams;
      r->state_slots = (int)slots;
      r->state_floats = slots * r->train_floats;
      for (int i = 0; ok && i < r->nparams; i++)
        ok = r->params[i].toff < 0 || r->params[i].toff + r->params[i].numel <= r->train_floats;
      break;
    }
    case R_WORK:
      ok = nt == 3 && !tok_int(tok[1], 0, &r->work_per_n) && !tok_int(tok[2], 0, &r->work_fixed) &&
           r->work_per_n <= ((int64_t)1 << 40) && r->work_fixed <= ((int64_t)1 << 40);
      break;
    case R_SCRATCH:
      ok = nt == 2 && !tok_int(tok[1], 0, &r->scratch_floats) && r->scratch_floats <= ((int64_t)1 << 36);
      break;
    case R_END:
      ok = nt == 1;
      break;
    }
    if (!ok) goto bad;
    line = nl ? nl + 1 : NULL;
  }
  for (int k = 0; k < R_COUNT; k++)
    if (k != R_TRAIN && k != R_TEST && k != R_STD && k != R_VALID && k != R_TOKENS && k != R_STEPS && k != R_SCHED &&
        k != R_BIDIR && k != R_COPIES && !seen[k]) {
      lineno++;
      goto bad;
    }
  return r;
bad:
  fflush(stdout);
  fprintf(stderr, "fnn: internal error: bad model descriptor line %d\n", lineno);
  rt_model_free(r);
  return NULL;
}

// Allocates the slabs for batches of up to `batch` rows (params, grads, state
// zeroed, workspace) and initialises the parameters from `seed` like PyTorch's
// defaults. Fills the slab pointers of *a. Returns 0, or 1 after an error.
int rt_model_setup(RtModel *r, const char *prog, int64_t batch, uint64_t seed, FnnArgs *a) {
  free(r->pslab);
  free(r->gslab);
  free(r->sslab);
  free(r->wslab);
  free(r->xslab);
  r->pslab = r->gslab = r->sslab = r->wslab = r->xslab = NULL;
  if (r->work_per_n && batch > (INT64_MAX / 8 - r->work_fixed) / r->work_per_n) {
    rt_error(prog, "batch %lld is too large for this model's workspace", (long long)batch);
    return 1;
  }
  if (!(r->pslab = rt_alloc_floats(prog, "the parameters", r->param_floats)) ||
      !(r->gslab = rt_alloc_floats(prog, "the gradients", r->train_floats)) ||
      !(r->sslab = rt_alloc_floats(prog, "the optimizer state", r->state_floats)) ||
      !(r->wslab = rt_alloc_floats(prog, "the workspace", r->work_per_n * batch + r->work_fixed)) ||
      !(r->xslab = rt_alloc_floats(prog, "the scratch", r->scratch_floats * fnn_threads() + 16)))
    return 1;
  // kaiming_uniform(a=sqrt(5)) and the bias default are both U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  for (int i = 0; i < r->nparams; i++) {
    RtParam *p = &r->params[i];
    float *w = r->pslab + p->offset;
    uint64_t s[4];
    rt_rng_seed(s, seed, STREAM_PARAM + (uint64_t)i);
    double bound = p->fan_in > 0 ? 1.0 / sqrt((double)p->fan_in) : 0;
    for (int64_t j = 0; j < p->numel; j++) {
      switch (p->init) {
      case INIT_KAIMING:
      case INIT_BIAS:
        w[j] = (float)((2.0 * rt_rng_unit(s) - 1.0) * bound);
        break;
      case INIT_ZERO:
        w[j] = 0;
        break;
      case INIT_NORMAL:
        w[j] = (float)rt_rng_normal(s);
        break;
      default:
        w[j] = 1;
        break;
      }
    }
  }
  memset(a, 0, sizeof *a);
  a->params = r->pslab;
  a->grads = r->gslab;
  a->state = r->sslab;
  a->work = r->wslab;
  a->scratch = r->xslab;
  return 0;
}

// Accessors for check.c.
const char *rt_model_name(const RtModel *r) { return r->name; }
int rt_model_nparams(const RtModel *r) { return r->nparams; }
int64_t rt_model_input_numel(const RtModel *r) { return r->in_numel; }
// Classes (*classify = 1) or target values per sample (*classify = 0).
int64_t rt_model_target(const RtModel *r, int *classify) {
  *classify = r->classify;
  return r->width;
}
int rt_model_bidirectional(const RtModel *r) { return r->bidirectional; }
int64_t rt_model_tokens(const RtModel *r, int64_t *steps) {
  *steps = r->steps;
  return r->vocab_in;
}
const char *rt_model_text_vocab(const RtModel *r) {
  return r->train.present && !strcmp(r->train.kind, "text") ? r->train.files[1] : NULL;
}
const FnnModel *rt_model_compiled(const RtModel *r) { return r->m; }
// int32 target ids per sample (classifiers), the target's 4-byte words per
// sample (ids, or a regression's floats), and the floats of eval_step's
// outputs per sample (the probabilities of every step, or the values).
static int64_t y_ints(const RtModel *r) { return r->steps ? r->steps : 1; }
int64_t rt_model_y_words(const RtModel *r) { return r->classify ? y_ints(r) : r->width; }
int64_t rt_model_out_floats(const RtModel *r) { return y_ints(r) * r->width; }

// Parameter i's offset in the gradient slab, or -1 if it is frozen (no gradient).
int64_t rt_model_param_grad(const RtModel *r, int i) { return r->params[i].toff; }
// Parameter i: its name; its offset and size in floats; its shape as "[32,1,3,3]".
const char *rt_model_param(const RtModel *r, int i, int64_t *offset, int64_t *numel, char *shape, size_t cap) {
  const RtParam *p = &r->params[i];
  *offset = p->offset;
  *numel = p->numel;
  size_t k = (size_t)snprintf(shape, cap, "[");
  for (int d = 0; d < p->rank && k < cap; d++)
    k += (size_t)snprintf(shape + k, cap - k, d ? ",%lld" : "%lld", (long long)p->dims[d]);
  if (k < cap) snprintf(shape + k, cap - k, "]");
  return p->name;
}
// Is parameter i initialised to zeros (LoRA's B)?
int rt_model_param_zero(const RtModel *r, int i) { return r->params[i].init == INIT_ZERO; }

// "1.6 MB": bytes in a short human form.
static const char *fmt_bytes(double b, char *buf, size_t cap) {
  if (b < 1024)
    snprintf(buf, cap, "%.0f B", b);
  else if (b < 1024 * 1024)
    snprintf(buf, cap, "%.1f KB", b / 1024);
  else if (b < 1024.0 * 1024 * 1024)
    snprintf(buf, cap, "%.1f MB", b / (1024 * 1024));
  else
    snprintf(buf, cap, "%.2f GB", b / (1024.0 * 1024 * 1024));
  return buf;
}

// The memory summary: trainable and frozen parameter counts, and the bytes of
// the parameter, gradient and optimizer state slabs and of the activations
// (the planned workspace for `batch` rows, and the per-thread scratch).
static void print_memory(FILE *out, const RtModel *r, int64_t batch) {
  int64_t train = 0, frozen = 0;
  for (int i = 0; i < r->nparams; i++) {
    if (r->params[i].toff >= 0)
      train += r->params[i].numel;
    else
      frozen += r->params[i].numel;
  }
  char b[4][32];
  double work = 4.0 * (double)(r->work_per_n * batch + r->work_fixed),
         scratch = 4.0 * (double)r->scratch_floats * fnn_threads();
  fprintf(out, "%s: %lld parameters: %lld trainable, %lld frozen\n", r->name, (long long)(train + frozen),
          (long long)train, (long long)frozen);
  fprintf(out, "memory: parameters %s, gradients %s, optimizer state %s, activations %s (batch %lld)",
          fmt_bytes(4.0 * (double)r->param_floats, b[0], 32), fmt_bytes(4.0 * (double)r->train_floats, b[1], 32),
          fmt_bytes(4.0 * (double)r->state_floats, b[2], 32), fmt_bytes(work, b[3], 32), (long long)batch);
  fprintf(out, ", scratch %s\n", fmt_bytes(scratch, b[0], 32));
}

//
// The trainer.
//
typedef struct {
  const char *prog;
  int64_t epochs, batch, seed, threads, steps;  // steps: -1 = no limit
  double lr;
  const char *data, *log;
  int quiet, profile;
  const char *save, *resume, *init;  // checkpoints (ckpt.c)
  int64_t save_every;                // 0: only at the end
  int init_partial, eval;
  const char *predict, *pred_out;    // --predict FILE, --out FILE
  const char *plot;                  // --plot FILE.svg
  int64_t log_every;                 // --log-every N: 0 = per epoch only
  int64_t sample;                    // --sample N: characters to generate, 0 = off
  double temperature;                // --temperature X (0 if not given)
  const char *prime;                 // --prime TEXT
  int merge_lora;                    // --merge-lora: save W + scale*B*A, without the adapters
  int argc;
  char **argv;
} Opts;

static const char *const train_flags[] = {"--epochs", "--batch", "--lr",    "--seed",  "--threads", "--data",
                                          "--log",    "--steps", "--quiet", "--profile", "--help", "--save",
                                          "--save-every", "--resume", "--init", "--init-partial", "--eval", "--predict",
                                          "--out", "--plot", "--log-every", "--sample", "--temperature", "--prime", "--merge-lora", NULL};

static void usage(const RtModel *r, const char *prog) {
  printf("usage: %s [flags]\n"
         "trains the model '%s' (defaults: %lld epochs, batch %lld, %s lr %g, seed %lld)\n"
         "\n"
         "  --epochs N     passes over the training data\n"
         "  --batch N      rows per training step\n"
         "  --lr X         learning rate\n"
         "  --seed N       seeds initialisation and shuffling\n"
         "  --threads N    worker threads (default: the number of online cores)\n"
         "  --data DIR     data files resolve against DIR (default ./data)\n"
         "  --log FILE     CSV metrics: epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s\n"
         "  --steps N      stop after N training steps; 0 sets up and exits without loading data\n"
         "  --quiet        no progress bar and no per-epoch lines\n"
         "  --profile      print the time spent in each compiled kernel (to stderr)\n"
         "  --save FILE    save a safetensors checkpoint at the end (and on SIGINT/SIGTERM)\n"
         "  --save-every N also save every N steps (needs --save)\n"
         "  --resume FILE  continue training exactly from a checkpoint\n"
         "  --init FILE    load the weights only (pretrained); --init-partial allows missing tensors\n"
         "  --merge-lora   --save the LoRA adapters folded into their base weights (a plain checkpoint)\n"
         "  --eval         with --init or --resume: evaluate on the test set, no training\n"
         "  --predict FILE with --init or --resume: the model's output for each sample of FILE\n"
         "                 (IDX images or CSV) to stdout, one line each; --out FILE.csv writes CSV\n"
         "  --log-every N  also a --log row (and --plot point) every N steps\n"
         "  --plot FILE    draw the training curves as an SVG chart\n"
         "  --sample N     with --init or --resume (tokens models): generate N characters;\n"
         "                 --temperature X (default 1) and --prime TEXT (the text to start from)\n",
         prog, r->name, (long long)r->epochs, (long long)r->batch, r->opt, r->lr,
         (long long)r->seed);
}

// Returns -1 to go on, else the exit status (after --help or an error).
static int parse_flags(const RtModel *r, Opts *o, int argc, char **argv) {
  long nproc = sysconf(_SC_NPROCESSORS_ONLN);
  o->epochs = r->epochs;
  o->batch = r->batch;
  o->seed = r->seed;
  o->lr = r->lr;
  o->threads = nproc > 64 ? 64 : nproc > 0 ? nproc : 1;
  o->steps = -1;
  o->data = "data";
  o->log = NULL;
  o->quiet = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    int k;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(r, o->prog);
      return 0;
    }
    if (!strcmp(a, "--quiet")) {
      o->quiet = 1;
      continue;
    }
    if (!strcmp(a, "--profile")) {
      o->profile = 1;
      continue;
    }
    if (!strcmp(a, "--init-partial")) {
      o->init_partial = 1;
      continue;
    }
    if (!strcmp(a, "--eval")) {
      o->eval = 1;
      continue;
    }
    if (!strcmp(a, "--merge-lora")) {
      o->merge_lora = 1;
      continue;
    }
    if (!strncmp(a, "--quiet=", 8) || !strncmp(a, "--help=", 7) || !strncmp(a, "--profile=", 10) ||
        !strncmp(a, "--init-partial=", 15) || !strncmp(a, "--eval=", 7) || !strncmp(a, "--merge-lora=", 13)) {
      rt_error(o->prog, "'%.*s' takes no value", (int)strcspn(a, "="), a);
      return 1;
    }
    if ((k = rt_flag_value(o->prog, argc, argv, &i, "--epochs", &v))) {
      if (k < 0 || rt_parse_int(o->prog, "--epochs", v, 1, &o->epochs)) return 1;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--batch", &v))) {
      if (k < 0 || rt_parse_int(o->prog, "--batch", v, 1, &o->batch)) return 1;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--lr", &v))) {
      if (k < 0 || rt_parse_pos_real(o->prog, "--lr", v, &o->lr)) return 1;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--seed", &v))) {
      if (k < 0 || rt_parse_int(o->prog, "--seed", v, 0, &o->seed)) return 1;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--threads", &v))) {
      if (k < 0 || rt_parse_int(o->prog, "--threads", v, 1, &o->threads)) return 1;
      if (o->threads > 64) {
        rt_error(o->prog, "--threads must be at most 64, got %lld", (long long)o->threads);
        return 1;
      }
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--steps", &v))) {
      if (k < 0 || rt_parse_int(o->prog, "--steps", v, 0, &o->steps)) return 1;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--data", &v))) {
      if (k < 0) return 1;
      o->data = v;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--log", &v))) {
      if (k < 0) return 1;
      o->log = v;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--save-every", &v))) {
      if (k < 0 || rt_parse_int(o->prog, "--save-every", v, 1, &o->save_every)) return 1;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--save", &v))) {
      if (k < 0) return 1;
      o->save = v;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--resume", &v))) {
      if (k < 0) return 1;
      o->resume = v;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--init", &v))) {
      if (k < 0) return 1;
      o->init = v;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--predict", &v))) {
      if (k < 0) return 1;
      o->predict = v;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--out", &v))) {
      if (k < 0) return 1;
      o->pred_out = v;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--plot", &v))) {
      if (k < 0) return 1;
      o->plot = v;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--log-every", &v))) {
      if (k < 0 || rt_parse_int(o->prog, "--log-every", v, 1, &o->log_every)) return 1;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--sample", &v))) {
      if (k < 0 || rt_parse_int(o->prog, "--sample", v, 1, &o->sample)) return 1;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--temperature", &v))) {
      if (k < 0 || rt_parse_pos_real(o->prog, "--temperature", v, &o->temperature)) return 1;
    } else if ((k = rt_flag_value(o->prog, argc, argv, &i, "--prime", &v))) {
      if (k < 0) return 1;
      if (!*v) {
        rt_error(o->prog, "'--prime' needs some text to start from");
        return 1;
      }
      o->prime = v;
    } else {
      rt_unknown_flag(o->prog, a, train_flags);
      return 1;
    }
  }
  if (o->save_every && !o->save) {
    rt_error(o->prog, "'--save-every' needs '--save FILE' (the file to save to)");
    return 1;
  }
  if (r->sched == 2 && o->lr <= r->min_lr) {
    rt_error(o->prog, "--lr %g is not above the cosine schedule's min_lr %g", o->lr, r->min_lr);
    return 1;
  }
  if (o->merge_lora && !o->save) {
    rt_error(o->prog, "'--merge-lora' needs '--save FILE' (the file to write the merged weights to)");
    return 1;
  }
  if (o->merge_lora && !r->nlora) {
    rt_error(o->prog, "'--merge-lora': the model '%s' has no LoRA adapters", r->name);
    rt_hint("attach one with 'dense(N, lora=lora(rank=R, alpha=A))'");
    return 1;
  }
  if (o->init && o->resume) {
    rt_error(o->prog, "'--init' and '--resume' cannot be used together ('--resume' restores the weights too)");
    return 1;
  }
  if (o->init_partial && !o->init) {
    rt_error(o->prog, "'--init-partial' needs '--init FILE'");
    return 1;
  }
  if (o->eval && !o->init && !o->resume) {
    rt_error(o->prog, "'--eval' needs '--init FILE' or '--resume FILE' (the weights to evaluate)");
    return 1;
  }
  if (o->eval && (o->save || o->steps >= 0)) {
    rt_error(o->prog, "'--eval' does not train: it takes no '%s'", o->save ? "--save" : "--steps");
    return 1;
  }
  if (o->predict && !o->init && !o->resume) {
    rt_error(o->prog, "'--predict' needs '--init FILE' or '--resume FILE' (the weights to run)");
    return 1;
  }
  if (o->predict && (o->eval || o->save || o->steps >= 0 || o->log || o->plot)) {
    rt_error(o->prog, "'--predict' does not train or evaluate: it takes no '%s'",
             o->eval ? "--eval" : o->save ? "--save" : o->steps >= 0 ? "--steps" : o->log ? "--log" : "--plot");
    return 1;
  }
  if ((o->temperature > 0 || o->prime) && !o->sample) {
    rt_error(o->prog, "'%s' needs '--sample N' (the characters to generate)", o->prime ? "--prime" : "--temperature");
    return 1;
  }
  if (o->sample && !o->init && !o->resume) {
    rt_error(o->prog, "'--sample' needs '--init FILE' or '--resume FILE' (the trained weights)");
    return 1;
  }
  if (o->sample && (o->eval || o->predict || o->save || o->steps >= 0 || o->log || o->plot)) {
    rt_error(o->prog, "'--sample' does not train or evaluate: it takes no '%s'",
             o->eval ? "--eval" : o->predict ? "--predict" : o->save ? "--save" : o->steps >= 0 ? "--steps" : o->log ? "--log" : "--plot");
    return 1;
  }
  if (o->predict && (r->vocab_in || r->steps)) {
    rt_error(o->prog, "'--predict' reads IDX or CSV inputs, but the model '%s' reads tokens; use '--sample N'", r->name);
    return 1;
  }
  if (o->sample && (!r->vocab_in || !r->steps)) {
    rt_error(o->prog, "'--sample' generates text from a model with 'input x: tokens[T]' and a tokens[T] target; '%s' is not one",
             r->name);
    return 1;
  }
  if (o->pred_out && !o->predict) {
    rt_error(o->prog, "'--out' needs '--predict FILE' (the inputs to predict)");
    return 1;
  }
  if (o->log_every && !o->log && !o->plot) {
    rt_error(o->prog, "'--log-every' needs '--log FILE' or '--plot FILE' (where the rows go)");
    return 1;
  }
  if (o->plot && o->eval) {
    rt_error(o->prog, "'--plot' draws training curves; '--eval' does not train");
    return 1;
  }
  if (o->batch > ((int64_t)1 << 24)) {
    rt_error(o->prog, "'--batch' must be at most %lld, got %lld", (long long)1 << 24, (long long)o->batch);
    return 1;
  }
  return -1;
}

// A loss for humans: 4 decimals, or 3 significant digits when tiny.
static const char *fmt_loss(char *buf, size_t cap, double v) {
  if (v == 0 || fabs(v) >= 1e-3 || !isfinite(v))
    snprintf(buf, cap, "%.4f", v);
  else
    snprintf(buf, cap, "%.3e", v);
  return buf;
}

static void fmt_duration(char *buf, size_t cap, double s) {
  if (s < 0 || !isfinite(s)) s = 0;
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

typedef struct {
  int on;          // stderr is a terminal and not --quiet
  double last;     // time of the last redraw
  int drawn;       // something is on the line
} Bar;

static void bar_clear(Bar *b) {
  if (b->on && b->drawn) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
    b->drawn = 0;
  }
}

// Redraws "epoch 1/10 [=====>    ] 312/938  loss 0.2345  5230 img/s  ETA 0:08" at most 10 times a second.
static void bar_draw(Bar *b, int force, int64_t epoch, int64_t epochs, int64_t done, int64_t total, double loss,
                     double rate, double eta) {
  if (!b->on) return;
  double t = rt_now();
  if (!force && t - b->last < 0.1) return;
  b->last = t;
  enum { W = 24 };
  char bar[W + 1];
  int fill = total > 0 ? (int)((double)W * (double)done / (double)total) : 0;
  for (int i = 0; i < W; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
  bar[W] = 0;
  char ls[32], es[32];
  fmt_loss(ls, sizeof ls, loss);
  fmt_duration(es, sizeof es, eta);
  fprintf(stderr, "\r\033[Kepoch %lld/%lld [%s] %lld/%lld  loss %s  %.0f img/s  ETA %s", (long long)epoch,
          (long long)epochs, bar, (long long)done, (long long)total, ls, rate, es);
  fflush(stderr);
  b->drawn = 1;
}

typedef struct {
  double loss, acc;  // acc < 0: none (regression); per step for tokens[T] targets
  double bpc;        // tokens[T] targets: bits per character, loss / ln 2; NAN otherwise
  double r2;         // regression: the coefficient of determination; NAN for classifiers
  int have;
} EvalResult;

static const EvalResult no_eval = {0, -1, NAN, NAN, 0};

static int64_t argmax(const float *p, int64_t k) {
  int64_t best = 0;
  for (int64_t j = 1; j < k; j++)
    if (p[j] > p[best]) best = j;
  return best;
}

// Mean loss, accuracy and R^2 over a whole data set, in order, in batches.
// out: FNN_OUT_ROWS + batch * width floats. R^2 = 1 - SS_res / SS_tot per
// target value, averaged over the values whose SS_tot is not 0, from the
// predictions eval_step writes. With cm (K*K, classifiers), also counts
// cm[true * K + predicted] from the probabilities it writes.
static EvalResult evaluate(const RtModel *r, FnnArgs *a, const RtData *d, int64_t batch, float *x, void *y,
                           int64_t *idx, float *out, int64_t *cm) {
  EvalResult e = {0, -1, NAN, NAN, 1};
  int64_t n = rt_data_count(d), W = r->width;
  double loss = 0, correct = 0;
  double *ss = r->classify ? NULL : calloc((size_t)(3 * W), sizeof(double));  // per value: sum t, sum t^2, sum (p - t)^2
  float hyper[FNN_HYP_COUNT] = {0};
  a->hyper = hyper;
  a->out = out;
  a->x = x;
  a->y = y;
  for (int64_t s = 0; s < n; s += batch) {
    int64_t m = n - s < batch ? n - s : batch;
    for (int64_t i = 0; i < m; i++) idx[i] = s + i;
    rt_data_batch(d, idx, m, x, y);
    hyper[FNN_HYP_INVN] = 1.0f / (float)m;
    out[FNN_OUT_LOSS] = out[FNN_OUT_CORRECT] = 0;
    a->n = m;
    rt_prof_rows(a->prof, m, batch);
    r->m->eval_step(a);
    loss += (double)out[FNN_OUT_LOSS] * (double)m;
    correct += out[FNN_OUT_CORRECT];
    const float *pred = out + FNN_OUT_ROWS;
    for (int64_t i = 0; cm && i < m; i++) {  // (no matrix for tokens[T] targets)
      int32_t t = ((const int32_t *)y)[i];
      cm[t * W + argmax(pred + i * W, W)]++;
    }
    for (int64_t i = 0; ss && i < m; i++)
      for (int64_t k = 0; k < W; k++) {
        double t = ((const float *)y)[i * W + k], p = pred[i * W + k];
        ss[3 * k] += t;
        ss[3 * k + 1] += t * t;
        ss[3 * k + 2] += (p - t) * (p - t);
      }
  }
  e.loss = loss / (double)n;
  if (r->classify) e.acc = correct / ((double)n * (double)y_ints(r));  // per step for tokens[T] targets
  if (r->steps) e.bpc = e.loss / log(2.0);
  if (ss) {
    double sum = 0;
    int64_t used = 0;
    for (int64_t k = 0; k < W; k++) {
      double tot = ss[3 * k + 1] - ss[3 * k] * ss[3 * k] / (double)n;
      if (tot > 0) {
        sum += 1 - ss[3 * k + 2] / tot;
        used++;
      }
    }
    if (used) e.r2 = sum / (double)used;
    free(ss);
  }
  return e;
}

// The learning rate of step t (0-based) of a run of `total` steps: what
// PyTorch's schedulers give when scheduler.step() follows every
// optimizer.step() (per step, not per epoch). The first W = warmup steps are
// LinearLR(start_factor=1/W, total_iters=W-1), base*(t+1)/W; from step W on
// (SequentialLR with milestone W), at t' = t - W:
//   constant  base
//   step      StepLR(step_size, gamma): base * gamma^floor(t'/step_size)
//   cosine    CosineAnnealingLR(T_max = total - W, eta_min = min_lr):
//             min_lr + (base - min_lr) * (1 + cos(pi t'/T_max)) / 2
static double sched_lr(const RtModel *r, double base, int64_t t, int64_t total) {
  if (r->sched < 0) return base;
  if (t < r->warmup) return base * (double)(t + 1) / (double)r->warmup;
  t -= r->warmup;
  if (r->sched == 1) return base * pow(r->gamma, (double)(t / r->step_size));
  if (r->sched == 2) {
    int64_t T = total - r->warmup > 0 ? total - r->warmup : 1;
    if (t > T) t = T;
    return r->min_lr + (base - r->min_lr) * (1 + cos(3.14159265358979323846 * (double)t / (double)T)) / 2;
  }
  return base;
}

// The --log CSV. The first 7 columns are always there; regression models add
// test_r2, and a validation set adds val_loss and val_acc (or val_r2).
static void log_header(FILE *f, const RtModel *r, int val) {
  if (!f) return;
  fprintf(f, "epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s");
  if (!r->classify) fprintf(f, ",test_r2");
  if (r->steps) fprintf(f, ",test_bpc");
  if (val) fprintf(f, r->steps ? ",val_loss,val_acc,val_bpc" : r->classify ? ",val_loss,val_acc" : ",val_loss,val_r2");
  if (r->sched >= 0) fprintf(f, ",lr");
  fprintf(f, "\n");
  fflush(f);
}

static void put_num(FILE *f, int have, double v) {
  fputc(',', f);
  if (have && isfinite(v)) fprintf(f, "%.9g", v);
}

// One row. `epoch` is whole for the row at the end of an epoch, and a fraction
// of the epochs done for a --log-every row; train_loss NAN leaves it empty.
static void log_row(FILE *f, const RtModel *r, int val, double epoch, int64_t step, double train_loss, EvalResult ev,
                    EvalResult vv, double rate, double elapsed) {
  if (!f) return;
  if (epoch == floor(epoch))
    fprintf(f, "%lld,%lld", (long long)epoch, (long long)step);
  else
    fprintf(f, "%.6f,%lld", epoch, (long long)step);
  put_num(f, 1, train_loss);
  put_num(f, ev.have, ev.loss);
  put_num(f, ev.have && ev.acc >= 0, ev.acc);
  fprintf(f, ",%.1f,%.3f", rate, elapsed);
  if (!r->classify) put_num(f, ev.have, ev.r2);
  if (r->steps) put_num(f, ev.have, ev.bpc);
  if (val) {
    put_num(f, vv.have, vv.loss);
    put_num(f, vv.have, r->classify ? vv.acc : vv.r2);
    if (r->steps) put_num(f, vv.have, vv.bpc);
  }
  if (r->sched >= 0) put_num(f, 1, r->lr_now);
  fputc('\n', f);
  fflush(f);
}

static void print_metrics(const char *what, EvalResult ev) {
  char b[32];
  if (!ev.have) return;
  printf("  %s_loss %s", what, fmt_loss(b, sizeof b, ev.loss));
  if (ev.acc >= 0) printf("  %s_acc %.2f%%", what, 100 * ev.acc);
  if (isfinite(ev.bpc)) printf("  %s_bpc %.4f", what, ev.bpc);
  if (isfinite(ev.r2)) printf("  %s_r2 %.4f", what, ev.r2);
}

static void print_epoch(const char *head, double train_loss, EvalResult ev, EvalResult vv, double rate, double secs) {
  char b1[32];
  printf("%s  train_loss %s", head, fmt_loss(b1, sizeof b1, train_loss));
  print_metrics("val", vv);
  print_metrics("test", ev);
  printf("  %.0f img/s  %.1fs\n", rate, secs);
  fflush(stdout);
}

//
// Checkpoints (the file format is in ckpt.c): the parameters under their
// PyTorch names, the optimizer state as NAME.__adam_m / NAME.__adam_v (Adam) or
// NAME.__momentum (SGD), and the training position in __metadata__.
//
typedef struct {
  int64_t epoch;     // epochs completed
  int64_t pos;       // batches done in epoch `epoch + 1`
  int64_t step;      // training steps done (Adam's t)
  double loss_sum;   // the running train loss of the current epoch
  int64_t seen;      // and its rows
} Progress;

#define CK_FORMAT "fnnc-checkpoint 1"

static const char *slot_suffix(const RtModel *r, int s, char *buf, size_t cap) {
  if (r->adam && s < 2)
    snprintf(buf, cap, s ? ".__adam_v" : ".__adam_m");
  else if (!r->adam && s == 0)
    snprintf(buf, cap, ".__momentum");
  else
    snprintf(buf, cap, ".__state%d", s);
  return buf;
}

// The tensors of a checkpoint: parameters, then (with_state) the optimizer
// state of the trainable ones (frozen parameters have none). Names are
// malloc'ed into *names. Returns the count, or -1 (out of memory).
static int ck_tensors(const RtModel *r, int with_state, RtCkTensor **out, char ***names) {
  int slots = with_state ? r->state_slots : 0, ntrain = 0;
  for (int i = 0; i < r->nparams; i++) ntrain += r->params[i].toff >= 0;
  int n = r->nparams + ntrain * slots;
  RtCkTensor *t = calloc((size_t)n + 1, sizeof *t);
  char **nm = calloc((size_t)n + 1, sizeof *nm);
  if (!t || !nm) {
    free(t);
    free(nm);
    return -1;
  }
  int k = 0;
  for (int s = -1; s < slots; s++)
    for (int i = 0; i < r->nparams; i++) {
      const RtParam *p = &r->params[i];
      if (s >= 0 && p->toff < 0) continue;
      char suf[32] = "";
      if (s >= 0) slot_suffix(r, s, suf, sizeof suf);
      size_t len = strlen(p->name) + strlen(suf) + 1;
      if (!(nm[k] = malloc(len))) {
        for (int j = 0; j < k; j++) free(nm[j]);
        free(nm);
        free(t);
        return -1;
      }
      snprintf(nm[k], len, "%s%s", p->name, suf);
      t[k].name = nm[k];
      t[k].rank = p->rank;
      memcpy(t[k].dims, p->dims, sizeof t[k].dims);
      t[k].data = s < 0 ? r->pslab + p->offset : r->sslab + (int64_t)s * r->train_floats + p->toff;
      k++;
    }
  *out = t;
  *names = nm;
  return n;
}

static void free_names(char **nm, int n) {
  if (!nm) return;
  for (int i = 0; i < n; i++) free(nm[i]);
  free(nm);
}

// --merge-lora: W + scale * B A for each adapter, with B [O, R] and A
// [R, K] (K = the rest of W's shape, flattened), computed in double. Points
// the base weights of t (the parameters, in order) at the merged copies in
// merged[] and drops the adapters' tensors. Returns the new count, or -1.
static int merge_lora(const RtModel *r, RtCkTensor *t, int n, float **merged) {
  for (int l = 0; l < r->nlora; l++) {
    const RtLora *lo = &r->lora[l];
    const RtParam *w = &r->params[lo->base], *pa = &r->params[lo->a];
    int64_t O = w->dims[0], R = pa->dims[0], K = w->numel / O;
    const float *W = r->pslab + w->offset, *A = r->pslab + pa->offset, *B = r->pslab + r->params[lo->b].offset;
    float *m = merged[l] = malloc(sizeof(float) * (size_t)w->numel);
    if (!m) return -1;
    for (int64_t o = 0; o < O; o++)
      for (int64_t k = 0; k < K; k++) {
        double acc = 0;
        for (int64_t j = 0; j < R; j++) acc += (double)B[o * R + j] * (double)A[j * K + k];
        m[o * K + k] = (float)((double)W[o * K + k] + lo->scale * acc);
      }
    t[lo->base].data = m;
  }
  int k = 0;
  for (int i = 0; i < n; i++) {
    int adapter = 0;
    for (int l = 0; l < r->nlora; l++) adapter |= i == r->lora[l].a || i == r->lora[l].b;
    if (!adapter) t[k++] = t[i];
  }
  return k;
}

// The text vocabulary as checkpoints keep it: its bytes in id order, as hex
// pairs ("0a2021": newline, space, '!'); hex has room for 2 * 256 + 1 chars.
static void vocab_hex(const RtModel *r, char *hex) {
  for (int i = 0; i < r->nvocab; i++) snprintf(hex + 2 * i, 3, "%02x", r->vocab[i]);
  hex[2 * r->nvocab] = 0;
}

static int ck_save(const RtModel *r, const Opts *o, const Progress *pr) {
  RtCkTensor *t = NULL;
  char **nm = NULL, *flags = NULL;
  int rc = 1;
  // A merged checkpoint holds the weights only: the adapters' optimizer state
  // has no place in the original architecture.
  int n = ck_tensors(r, !o->merge_lora, &t, &nm), nt = n;
  float **merged = o->merge_lora && n >= 0 ? calloc((size_t)r->nlora + 1, sizeof *merged) : NULL;
  if (n >= 0 && o->merge_lora) nt = merged ? merge_lora(r, t, n, merged) : -1;
  size_t fl = 1;
  for (int i = 1; i < o->argc; i++) fl += strlen(o->argv[i]) + 1;
  if (n < 0 || nt < 0 || !(flags = malloc(fl))) {
    rt_error(o->prog, "out of memory");
    goto out;
  }
  flags[0] = 0;
  for (int i = 1; i < o->argc; i++) {
    if (i > 1) strcat(flags, " ");
    strcat(flags, o->argv[i]);
  }
  char v[12][64];
  snprintf(v[0], 64, "%lld", (long long)pr->step);
  snprintf(v[1], 64, "%lld", (long long)pr->epoch);
  snprintf(v[2], 64, "%lld", (long long)pr->pos);
  snprintf(v[3], 64, "%lld", (long long)o->seed);
  snprintf(v[4], 64, "%lld", (long long)o->batch);
  snprintf(v[5], 64, "%.17g", o->lr);
  snprintf(v[6], 64, "%lld", (long long)o->epochs);
  snprintf(v[7], 64, "%lld", (long long)o->threads);
  snprintf(v[8], 64, "%.17g", pr->loss_sum);
  snprintf(v[9], 64, "%lld", (long long)pr->seen);
  // A text vocabulary (vocab="file") goes with the weights, so that --sample
  // can map ids back to characters: "vocab" is its bytes in id order, in hex.
  char hex[2 * 256 + 1];
  vocab_hex(r, hex);
  const char *meta[] = {"format",    CK_FORMAT,
                        "model",     r->name,
                        "step",      v[0],
                        "epoch",     v[1],
                        "position",  v[2],
                        "seed",      v[3],
                        "batch",     v[4],
                        "lr",        v[5],
                        "optimizer", r->opt,
                        "epochs",    v[6],
                        "threads",   v[7],
                        "log",       o->log ? o->log : "",
                        "epoch_loss_sum", v[8],
                        "epoch_rows", v[9],
                        "flags",     flags,
                        "vocab",     hex};  // last: left out without a vocabulary
  int nmeta = (int)(sizeof meta / sizeof meta[0] / 2) - (r->nvocab ? 0 : 1);
  rc = rt_ck_save(o->prog, o->save, t, nt, meta, nmeta);
out:
  if (merged)
    for (int l = 0; l < r->nlora; l++) free(merged[l]);
  free(merged);
  free(flags);
  if (n >= 0) {
    free(t);
    free_names(nm, n);
  }
  return rc;
}

// Checks that the checkpoint holds exactly the tensors of `t` with their
// shapes (missing ones are allowed with allow_missing), listing every problem;
// then copies them. Returns 0, or 1 after the errors (nothing copied).
static int ck_restore(const char *prog, const char *file, const RtCk *c, RtCkTensor *t, int n, int allow_missing,
                      const char *what) {
  int bad = 0, bad_state = 0, missing = 0;
  char s1[128], s2[128];
  int *at = malloc(sizeof(int) * ((size_t)n + 1));
  if (!at) {
    rt_error(prog, "out of memory");
    return 1;
  }
  for (int i = 0; i < n; i++) {
    int rank;
    const int64_t *dims;
    at[i] = rt_ck_find(c, t[i].name);
    if (at[i] < 0) {
      missing++;
      if (allow_missing <= 0) {
        bad_state += strstr(t[i].name, ".__") != NULL;
        if (!bad++) rt_error(prog, "%s: the checkpoint does not match the model (%s):", file, what);
        fprintf(stderr, "  missing tensor %s %s\n", t[i].name, rt_ck_shape_str(t[i].rank, t[i].dims, s1, sizeof s1));
      }
      continue;
    }
    rt_ck_tensor(c, at[i], &rank, &dims);
    int same = rank == t[i].rank;
    for (int d = 0; same && d < rank; d++) same = dims[d] == t[i].dims[d];
    if (!same) {
      if (!bad++) rt_error(prog, "%s: the checkpoint does not match the model (%s):", file, what);
      fprintf(stderr, "  shape mismatch for %s: the model has %s, the file has %s\n", t[i].name,
              rt_ck_shape_str(t[i].rank, t[i].dims, s1, sizeof s1), rt_ck_shape_str(rank, dims, s2, sizeof s2));
    }
  }
  int unused = 0;
  for (int k = 0; k < rt_ck_count(c); k++) {
    int rank;
    const int64_t *dims;
    const char *name = rt_ck_tensor(c, k, &rank, &dims);
    int known = 0;
    for (int i = 0; i < n && !known; i++) known = !strcmp(name, t[i].name);
    // --init ignores a checkpoint's optimizer state (written by --save).
    if (!known && allow_missing >= 0 && strstr(name, ".__")) continue;
    // --init-partial also leaves out the tensors the model has no use for
    // (the old head of a network being fine-tuned), listed below.
    if (!known && allow_missing > 0) {
      unused++;
      continue;
    }
    if (!known) {
      bad_state += strstr(name, ".__") != NULL;
      if (!bad++) rt_error(prog, "%s: the checkpoint does not match the model (%s):", file, what);
      fprintf(stderr, "  unexpected tensor %s %s\n", name, rt_ck_shape_str(rank, dims, s1, sizeof s1));
    }
  }
  if (bad && bad == bad_state)
    rt_hint("only the optimizer state differs: the checkpoint was trained with other layers frozen (frozen "
            "tensors have no state); resume with the same model file, or load the weights alone with --init");
  if (bad) {
    free(at);
    return 1;
  }
  if (missing) {
    fflush(stdout);
    fprintf(stderr, "%s: warning: %s: %d tensor%s not in the file, left at their initialisation:\n", prog, file,
            missing, missing == 1 ? "" : "s");
    for (int i = 0; i < n; i++)
      if (at[i] < 0) fprintf(stderr, "  %s %s\n", t[i].name, rt_ck_shape_str(t[i].rank, t[i].dims, s1, sizeof s1));
  }
  if (unused) {
    fflush(stdout);
    fprintf(stderr, "%s: warning: %s: %d tensor%s not in the model, not loaded:\n", prog, file, unused,
            unused == 1 ? "" : "s");
    for (int k = 0; k < rt_ck_count(c); k++) {
      int rank, known = 0;
      const int64_t *dims;
      const char *name = rt_ck_tensor(c, k, &rank, &dims);
      for (int i = 0; i < n && !known; i++) known = !strcmp(name, t[i].name);
      if (!known && !strstr(name, ".__")) fprintf(stderr, "  %s %s\n", name, rt_ck_shape_str(rank, dims, s1, sizeof s1));
    }
  }
  for (int i = 0; i < n; i++)
    if (at[i] >= 0) rt_ck_read(c, at[i], (float *)t[i].data);
  free(at);
  return 0;
}

// The checkpoint's vocabulary (metadata 'vocab', hex), kept for --sample and
// for the check on --resume, so that the file is read once. 0, or 1 if out of memory.
static int keep_vocab(const char *prog, const RtCk *c, char **vocab) {
  const char *v = rt_ck_meta(c, "vocab");
  *vocab = v ? strdup(v) : NULL;
  if (v && !*vocab) rt_error(prog, "out of memory");
  return v && !*vocab;
}

// --init: the weights only.
static int ck_init(RtModel *r, const Opts *o, char **vocab) {
  RtCk *c = rt_ck_load(o->prog, o->init);
  if (!c) return 1;
  RtCkTensor *t;
  char **nm;
  int n = ck_tensors(r, 0, &t, &nm);
  int rc = 1;
  if (n < 0)
    rt_error(o->prog, "out of memory");
  else
    rc = ck_restore(o->prog, o->init, c, t, n, o->init_partial, "--init") || keep_vocab(o->prog, c, vocab);
  if (n >= 0) {
    free(t);
    free_names(nm, n);
  }
  rt_ck_free(c);
  return rc;
}

static int meta_int(const char *prog, const char *file, const RtCk *c, const char *key, int64_t *out) {
  const char *v = rt_ck_meta(c, key);
  char *end;
  if (!v || !*v) {
    rt_error(prog, "%s: not an fnnc checkpoint: the metadata has no '%s'", file, key);
    return 1;
  }
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (*end || x < 0 || errno) {
    rt_error(prog, "%s: the metadata '%s' is not a whole number: '%.40s'", file, key, v);
    return 1;
  }
  *out = x;
  return 0;
}

// --resume: weights, optimizer state and position. Refuses a different model,
// parameter set, optimizer or batch size; warns about other differences.
static int ck_resume(RtModel *r, const Opts *o, Progress *pr, char **vocab) {
  RtCk *c = rt_ck_load(o->prog, o->resume);
  if (!c) return 1;
  int rc = 1;
  const char *fmt = rt_ck_meta(c, "format"), *model = rt_ck_meta(c, "model"), *opt = rt_ck_meta(c, "optimizer");
  const char *file = o->resume;
  int64_t batch, seed, threads;
  if (!fmt || strcmp(fmt, CK_FORMAT)) {
    rt_error(o->prog, "%s: not an fnnc checkpoint (metadata 'format' is '%.40s', expected '%s'); use --init to load weights only",
             file, fmt ? fmt : "(none)", CK_FORMAT);
    goto out;
  }
  if (!model || strcmp(model, r->name)) {
    rt_error(o->prog, "%s: the checkpoint is of the model '%.60s', not '%s'", file, model ? model : "(none)", r->name);
    goto out;
  }
  if (!opt || strcmp(opt, r->opt)) {
    rt_error(o->prog, "%s: the checkpoint was trained with the optimizer '%.20s', the model uses '%s'", file,
             opt ? opt : "(none)", r->opt);
    goto out;
  }
  if (meta_int(o->prog, file, c, "step", &pr->step) || meta_int(o->prog, file, c, "epoch", &pr->epoch) ||
      meta_int(o->prog, file, c, "position", &pr->pos) || meta_int(o->prog, file, c, "batch", &batch) ||
      meta_int(o->prog, file, c, "seed", &seed) || meta_int(o->prog, file, c, "threads", &threads) ||
      meta_int(o->prog, file, c, "epoch_rows", &pr->seen))
    goto out;
  const char *ls = rt_ck_meta(c, "epoch_loss_sum"), *lr = rt_ck_meta(c, "lr"), *log = rt_ck_meta(c, "log");
  char *end;
  pr->loss_sum = ls ? strtod(ls, &end) : 0;
  if (!ls || *end || !isfinite(pr->loss_sum)) pr->loss_sum = 0;
  if (batch != o->batch) {
    rt_error(o->prog, "%s: the checkpoint was trained with --batch %lld, this run has --batch %lld; resuming needs the same batch size",
             file, (long long)batch, (long long)o->batch);
    rt_hint("add '--batch %lld'", (long long)batch);
    goto out;
  }
  fflush(stdout);
  if (seed != o->seed)
    fprintf(stderr, "%s: warning: %s: saved with --seed %lld, resumed with --seed %lld: the shuffle order of the remaining epochs differs\n",
            o->prog, file, (long long)seed, (long long)o->seed);
  if (lr && strtod(lr, NULL) != o->lr)
    fprintf(stderr, "%s: warning: %s: saved with --lr %s, resumed with --lr %.17g\n", o->prog, file, lr, o->lr);
  if (threads != o->threads)
    fprintf(stderr, "%s: warning: %s: saved with --threads %lld, resumed with --threads %lld (harmless: results do not depend on it)\n",
            o->prog, file, (long long)threads, (long long)o->threads);
  if (log && strcmp(log, o->log ? o->log : ""))
    fprintf(stderr, "%s: warning: %s: saved with --log '%s', resumed with --log '%s' (harmless)\n", o->prog, file, log,
            o->log ? o->log : "");
  RtCkTensor *t;
  char **nm;
  int n = ck_tensors(r, 1, &t, &nm);
  if (n < 0) {
    rt_error(o->prog, "out of memory");
    goto out;
  }
  rc = ck_restore(o->prog, file, c, t, n, -1, "--resume") || keep_vocab(o->prog, c, vocab);
  free(t);
  free_names(nm, n);
out:
  rt_ck_free(c);
  return rc;
}

// --resume on a text with vocab="file": the checkpoint's ids (its vocabulary
// v, or NULL) must mean the same characters as the text's now. Returns 0, or
// 1 after an error.
static int ck_same_vocab(const RtModel *r, const Opts *o, const char *v) {
  char hex[2 * 256 + 1];
  vocab_hex(r, hex);
  int bad = !v || strcmp(v, hex);
  if (bad)
    rt_error(o->prog, "%s: the checkpoint's vocabulary is not the one of the training text (%d characters)%s", o->resume,
             r->nvocab, v ? "" : ": it has none");
  return bad;
}

// SIGINT / SIGTERM during training: finish the step, save, exit 128 + signal.
static volatile sig_atomic_t g_signal;
static void on_signal(int sig) { g_signal = sig; }

// --eval for classifiers: the confusion matrix (up to 20 classes) and the
// per-class accuracy, from the counts cm[true * K + predicted].
static void print_confusion(const RtModel *r, const int64_t *cm) {
  int64_t K = r->width;
  if (K <= 20) {
    printf("confusion matrix (rows: true class, columns: predicted)\n%6s", "");
    for (int64_t c = 0; c < K; c++) printf(" %6lld", (long long)c);
    printf("\n");
    for (int64_t t = 0; t < K; t++) {
      printf("%6lld", (long long)t);
      for (int64_t c = 0; c < K; c++) printf(" %6lld", (long long)cm[t * K + c]);
      printf("\n");
    }
  }
  printf("per-class accuracy\n");
  for (int64_t t = 0; t < K; t++) {
    int64_t ok = cm[t * K + t], tot = 0;
    for (int64_t c = 0; c < K; c++) tot += cm[t * K + c];
    if (tot)
      printf("  class %lld: %.2f%% (%lld/%lld)\n", (long long)t, 100.0 * (double)ok / (double)tot, (long long)ok,
             (long long)tot);
    else
      printf("  class %lld: no samples\n", (long long)t);
  }
  fflush(stdout);
}

// --predict: runs eval_step over the samples of `d` in batches and writes one
// line per sample: "CLASS PROBABILITY" (classifiers) or the predicted values,
// to stdout, or as CSV (with a header and the sample number) to --out.
static int predict(const RtModel *r, FnnArgs *a, const Opts *o, const RtData *d, float *x, void *y, int64_t *idx,
                   float *out) {
  FILE *f = stdout;
  int csv = o->pred_out != NULL;
  if (csv && !(f = fopen(o->pred_out, "w"))) {
    rt_error(o->prog, "cannot write '%s': %s", o->pred_out, strerror(errno));
    return 1;
  }
  int64_t n = rt_data_count(d), W = r->width;
  if (csv) {
    fprintf(f, r->classify ? "sample,class,probability" : "sample");
    for (int64_t k = 0; !r->classify && k < W; k++) fprintf(f, W == 1 ? ",value" : ",value%lld", (long long)k);
    fputc('\n', f);
  }
  float hyper[FNN_HYP_COUNT] = {0};
  a->hyper = hyper;
  a->out = out;
  a->x = x;
  a->y = y;
  for (int64_t s = 0; s < n; s += o->batch) {
    int64_t m = n - s < o->batch ? n - s : o->batch;
    for (int64_t i = 0; i < m; i++) idx[i] = s + i;
    rt_data_batch(d, idx, m, x, y);
    hyper[FNN_HYP_INVN] = 1.0f / (float)m;
    a->n = m;
    rt_prof_rows(a->prof, m, o->batch);
    r->m->eval_step(a);
    for (int64_t i = 0; i < m; i++) {
      const float *p = out + FNN_OUT_ROWS + i * W;
      if (csv) fprintf(f, "%lld,", (long long)(s + i));
      if (r->classify) {
        int64_t c = argmax(p, W);
        fprintf(f, csv ? "%lld,%.6g\n" : "%lld %.6g\n", (long long)c, p[c]);
        continue;
      }
      for (int64_t k = 0; k < W; k++) fprintf(f, k == 0 ? "%.9g" : csv ? ",%.9g" : " %.9g", p[k]);
      fputc('\n', f);
    }
  }
  if (fflush(f) || ferror(f) || (csv && fclose(f))) {
    rt_error(o->prog, "cannot write '%s'", csv ? o->pred_out : "standard output");
    return 1;
  }
  return 0;
}

//
// Training curves for --plot: one point per log row, drawn by plot.c.
//
typedef struct {
  double epoch, train, test_loss, test_m, val_loss, val_m;  // _m: accuracy or R^2; NAN: none
  int interval;                                             // a --log-every row
} CurveRow;

typedef struct {
  CurveRow *rows;
  int64_t n, cap;
} Curves;

static void curves_add(Curves *c, double epoch, int interval, double train, EvalResult ev, EvalResult vv, int classify) {
  if (c->n == c->cap) {
    int64_t nc = c->cap ? 2 * c->cap : 64;
    CurveRow *nr = realloc(c->rows, (size_t)nc * sizeof *nr);
    if (!nr) return;  // the chart loses points, training goes on
    c->rows = nr;
    c->cap = nc;
  }
  CurveRow *w = &c->rows[c->n++];
  w->epoch = epoch;
  w->interval = interval;
  w->train = train;
  w->test_loss = ev.have ? ev.loss : NAN;
  w->test_m = !ev.have ? NAN : classify ? (ev.acc >= 0 ? ev.acc : NAN) : ev.r2;
  w->val_loss = vv.have ? vv.loss : NAN;
  w->val_m = !vv.have ? NAN : classify ? (vv.acc >= 0 ? vv.acc : NAN) : vv.r2;
}

// Writes the chart: train loss (every --log-every interval if there are any,
// else per epoch), test and validation loss on the left axis; test and
// validation accuracy (or R^2) on the right.
static int curves_write(const RtModel *r, const Opts *o, const Curves *c) {
  int64_t n = c->n;
  double *buf = malloc(sizeof(double) * (size_t)(12 * (n ? n : 1)));
  if (!buf) {
    rt_error(o->prog, "out of memory");
    return 1;
  }
  int have_iv = 0;
  for (int64_t i = 0; i < n; i++) have_iv |= c->rows[i].interval;
  RtSeries s[5];
  const char *mname = r->classify ? "accuracy" : "R\xc2\xb2";
  static char names[5][40];
  snprintf(names[0], sizeof names[0], have_iv ? "train loss, every %lld steps" : "train loss", (long long)o->log_every);
  snprintf(names[1], sizeof names[1], "test loss");
  snprintf(names[2], sizeof names[2], "validation loss");
  snprintf(names[3], sizeof names[3], "test %s", mname);
  snprintf(names[4], sizeof names[4], "validation %s", mname);
  for (int k = 0; k < 5; k++) {
    s[k] = (RtSeries){names[k], k >= 3, k == 2 || k == 4, 0, buf + (2 * k) * n, buf + (2 * k + 1) * n};
    for (int64_t i = 0; i < n; i++) {
      const CurveRow *w = &c->rows[i];
      double v = k == 0 ? (have_iv && !w->interval ? NAN : w->train)
               : k == 1 ? w->test_loss : k == 2 ? w->val_loss : k == 3 ? w->test_m : w->val_m;
      if (!isfinite(v)) continue;
      ((double *)s[k].x)[s[k].n] = w->epoch;
      ((double *)s[k].y)[s[k].n++] = v;
    }
  }
  char title[160];
  snprintf(title, sizeof title, "%s: training curves", r->name);
  int rc = rt_plot_svg(o->prog, o->plot, title, "loss", mname, s, 5);
  free(buf);
  return rc;
}

// The data sets of a run: the training set (to train, or for the statistics
// of standardize()) less its validation part, the test set, and the inputs of
// --predict, all standardized with the statistics of the training rows.
typedef struct {
  RtData *train, *val, *test, *pred;
} Sets;

// One data source. A text's ids must be below both the input's vocabulary and
// the classes of the output; a test text with vocab="file" takes the training
// text's vocabulary (`train`).
static RtData *load_source(const RtModel *r, const Opts *o, const RtSource *src, const RtData *train) {
  if (!strcmp(src->kind, "text")) {
    int64_t limit = r->vocab_in < r->width ? r->vocab_in : r->width;
    if (!r->vocab_in || !r->steps || r->in_rank != 1) {
      rt_error(o->prog, "text(...) data need a model with 'input x: tokens[T]' and a tokens[T] target");
      return NULL;
    }
    return rt_data_load_text(o->prog, o->data, src->files[0], src->files[1], r->steps, limit, train);
  }
  return rt_data_load(o->prog, o->data, src->kind, src->files[0], src->files[1], src->column, r->in_rank, r->in_dims,
                      r->classify, r->width, r->mean, r->std);
}

static int load_sets(RtModel *r, const Opts *o, Sets *d) {
  int training = !o->eval && !o->predict;
  if (training || r->standardize) {
    if (!r->train.present) {
      rt_error(o->prog, "the model '%s' has no training data%s", r->name,
               training ? "" : " (standardize() takes its statistics from it)");
      rt_hint("add 'train = idx(...)' or 'train = csv(...)' to its data section");
      return 1;
    }
    d->train = load_source(r, o, &r->train, NULL);
    if (!d->train) return 1;
    r->nvocab = rt_data_vocab(d->train, r->vocab);
    if (r->validation > 0) {
      uint64_t s[4];
      rt_rng_seed(s, (uint64_t)o->seed, STREAM_SPLIT);
      if (rt_data_split(o->prog, &d->train, r->validation, s, &d->val)) return 1;
    }
  }
  if (o->eval && !r->test.present) {
    rt_error(o->prog, "--eval: the model '%s' has no test data", r->name);
    return 1;
  }
  if (r->test.present && !o->predict) {
    if (!strcmp(r->test.kind, "text") && !strcmp(r->test.files[1], "file") && !d->train) {
      // --eval: the test text's ids are those of the training text's vocabulary.
      if (!r->train.present || strcmp(r->train.kind, "text")) {
        rt_error(o->prog, "the test text of '%s' uses the vocabulary of the training text, and the model has none", r->name);
        return 1;
      }
      if (!(d->train = load_source(r, o, &r->train, NULL))) return 1;
      r->nvocab = rt_data_vocab(d->train, r->vocab);
    }
    d->test = load_source(r, o, &r->test, d->train);
    if (!d->test) return 1;
  }
  if (o->predict) {
    const char *col = r->train.present ? r->train.column : r->test.present ? r->test.column : "";
    d->pred = rt_data_load_inputs(o->prog, o->predict, col, r->in_rank, r->in_dims, r->classify, r->width, r->mean,
                                  r->std);
    if (!d->pred) return 1;
  }
  if (r->standardize) {
    float *st = rt_data_feature_stats(d->train);
    if (!st) {
      rt_error(o->prog, "out of memory");
      return 1;
    }
    rt_data_standardize(d->train, st);
    rt_data_standardize(d->val, st);
    rt_data_standardize(d->test, st);
    rt_data_standardize(d->pred, st);
    free(st);
  }
  return 0;
}

int fnn_main(const FnnModel *m, int argc, char **argv) {
  Opts o = {0};
  o.prog = argc > 0 && argv[0] ? argv[0] : "fnn";
  o.argc = argc;
  o.argv = argv;
  RtModel *r = rt_model_open(m);
  if (!r) return 1;
  if (!m->train_step || !m->eval_step) {
    fprintf(stderr, "fnn: internal error: the model has no train_step or eval_step\n");
    rt_model_free(r);
    return 1;
  }
  int rc = parse_flags(r, &o, argc, argv);
  if (rc >= 0) {
    rt_model_free(r);
    return rc;
  }
  rc = 1;
  Sets ds = {0};
  float *x = NULL, *yf = NULL, *out = NULL;
  int64_t *idx = NULL, *perm = NULL, *cm = NULL;
  FILE *logf = NULL;
  Curves curves = {0};
  FnnArgs a = {0};
  char *ck_vocab = NULL;  // the vocabulary of the --init or --resume checkpoint
  fnn_set_threads((int)o.threads);
  if (rt_model_setup(r, o.prog, o.batch, (uint64_t)o.seed, &a)) goto out;
  Progress pr = {0};
  if (o.save && rt_ck_check_writable(o.prog, o.save)) goto out;
  if (o.init && ck_init(r, &o, &ck_vocab)) goto out;
  if (o.resume && ck_resume(r, &o, &pr, &ck_vocab)) goto out;
  if (o.sample) {
    RtSampleOpts so = {o.prog, o.sample, o.seed, o.temperature > 0 ? o.temperature : 1.0, o.prime,
                       o.init ? o.init : o.resume, ck_vocab};
    rc = rt_sample(r, &a, &so);
    goto out;
  }
  if (o.profile && !(a.prof = rt_prof_new(r->nkernels))) {
    rt_error(o.prog, "out of memory");
    goto out;
  }
  if (!o.quiet && !o.eval && !o.predict) print_memory(stdout, r, o.batch);
  if (o.steps == 0) {
    if (!o.quiet)
      printf("%s: %d tensors set up; --steps 0, so no training\n", r->name, r->nparams);
    rc = o.save ? ck_save(r, &o, &pr) : 0;
    goto out;
  }
  if (!o.eval && !o.predict && !r->train.present) {
    rt_error(o.prog, "the model '%s' has no training data", r->name);
    rt_hint("add 'train = idx(...)' or 'train = csv(...)' to its data section");
    goto out;
  }
  if (o.log && !(logf = fopen(o.log, "w"))) {
    rt_error(o.prog, "cannot write the log file '%s': %s", o.log, strerror(errno));
    goto out;
  }
  if (o.plot) {
    // Found out now rather than after training.
    FILE *pf = fopen(o.plot, "w");
    if (!pf) {
      rt_error(o.prog, "cannot write the plot '%s': %s", o.plot, strerror(errno));
      goto out;
    }
    fclose(pf);
  }
  if (load_sets(r, &o, &ds)) goto out;
  if (o.resume && r->nvocab && ck_same_vocab(r, &o, ck_vocab)) goto out;
  int64_t ntrain = ds.train && !o.eval && !o.predict ? rt_data_count(ds.train) : 1;
  // One copy of the batch per thread when train_step's threads each read all
  // of it (input_copies), and a copy fits a core's cache (1 MB): what it
  // saves is reading lines another core wrote. Evaluation and the other
  // entries read copy 0.
  int64_t stride = o.batch * r->in_numel;
  int64_t copies = r->input_copies && !o.eval && !o.predict && fnn_threads() > 1 && stride <= (1 << 18) ? fnn_threads() : 1;
  x = rt_alloc_floats(o.prog, "the input batch", copies * stride);
  yf = rt_alloc_floats(o.prog, "the target batch", o.batch * rt_model_y_words(r));
  out = rt_alloc_floats(o.prog, "the outputs", FNN_OUT_ROWS + o.batch * rt_model_out_floats(r));
  idx = malloc(sizeof(int64_t) * (size_t)o.batch);
  perm = malloc(sizeof(int64_t) * (size_t)ntrain);
  if (!x || !yf || !out || !idx || !perm) {
    if (x && yf && out) rt_error(o.prog, "out of memory");
    goto out;
  }
  a.x_copies = copies;  // read by train_step only
  a.x_stride = stride;
  if (o.predict) {
    rc = predict(r, &a, &o, ds.pred, x, yf, idx, out);
    goto out;
  }
  int val = ds.val != NULL && !o.eval;
  log_header(logf, r, val);
  if (o.eval) {
    if (r->classify && !r->steps && !(cm = calloc((size_t)(r->width * r->width), sizeof *cm))) {
      rt_error(o.prog, "out of memory");
      goto out;
    }
    double t0 = rt_now();
    EvalResult ev = evaluate(r, &a, ds.test, o.batch, x, yf, idx, out, cm);
    double el = rt_now() - t0;
    printf("%s: evaluated %lld test samples", r->name, (long long)rt_data_count(ds.test));
    print_metrics("test", ev);
    printf("\n");
    if (cm) print_confusion(r, cm);
    fflush(stdout);
    log_row(logf, r, 0, (double)pr.epoch, pr.step, NAN, ev, no_eval,
            el > 0 ? (double)rt_data_count(ds.test) / el : 0, el);
    rc = 0;
    goto out;
  }
  if (pr.epoch >= o.epochs && !o.quiet)
    printf("%s: the checkpoint has %lld epochs done, --epochs is %lld: nothing to train\n", r->name,
           (long long)pr.epoch, (long long)o.epochs);
  int64_t ep0 = pr.epoch + 1, b0 = pr.pos;
  if (pr.pos > 0 && pr.pos >= (ntrain + o.batch - 1) / o.batch) {
    rt_error(o.prog, "%s: the checkpoint is at batch %lld of its epoch, but an epoch has %lld batches here: the training data differ",
             o.resume, (long long)pr.pos, (long long)((ntrain + o.batch - 1) / o.batch));
    goto out;
  }
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  g_signal = 0;

  Bar bar = {isatty(2) && !o.quiet, 0, 0};
  int64_t per_epoch = (ntrain + o.batch - 1) / o.batch;
  int64_t step = pr.step;
  int warned = 0;
  float hyper[FNN_HYP_COUNT];
  if (m->ready) m->ready();
  double t_start = rt_now();
  double iv_sum = 0, iv_t = t_start;  // --log-every: the loss and start of the current interval
  int64_t iv_rows = 0;
  for (int64_t ep = ep0; ep <= o.epochs && !g_signal; ep++) {
    double t_epoch = rt_now();
    for (int64_t i = 0; i < ntrain; i++) perm[i] = i;
    if (r->shuffle) {
      // Fisher-Yates from the identity: epoch e's order depends only on (seed, e).
      uint64_t s[4];
      rt_rng_seed(s, (uint64_t)o.seed, STREAM_SHUFFLE + (uint64_t)ep);
      for (int64_t i = ntrain - 1; i > 0; i--) {
        int64_t j = (int64_t)rt_rng_below(s, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
      }
    }
    double loss_sum = ep == ep0 ? pr.loss_sum : 0;
    int64_t seen = ep == ep0 ? pr.seen : 0, done = ep == ep0 ? b0 : 0;
    int64_t seen0 = seen;  // rows of this epoch trained before a --resume
    int stopped = 0;
    for (int64_t b = done; b < per_epoch; b++) {
      if (o.steps >= 0 && step >= o.steps) {
        stopped = 1;
        break;
      }
      int64_t s0 = b * o.batch, n = ntrain - s0 < o.batch ? ntrain - s0 : o.batch;
      if (copies > 1)
        rt_data_batch_copies(ds.train, perm + s0, n, x, stride, copies, yf);
      else
        rt_data_batch_parallel(ds.train, perm + s0, n, x, yf);
      step++;
      r->lr_now = sched_lr(r, o.lr, step - 1, o.steps >= 0 ? o.steps : o.epochs * per_epoch);
      hyper[FNN_HYP_LR] = (float)r->lr_now;
      hyper[FNN_HYP_BC1] = (float)(1.0 - pow(r->beta1, (double)step));
      hyper[FNN_HYP_BC2] = (float)(1.0 - pow(r->beta2, (double)step));
      hyper[FNN_HYP_INVN] = 1.0f / (float)n;
      out[FNN_OUT_LOSS] = out[FNN_OUT_CORRECT] = 0;
      a.x = x;
      a.y = yf;
      a.hyper = hyper;
      a.out = out;
      a.n = n;
      rt_prof_rows(a.prof, n, o.batch);
      r->m->train_step(&a);
      if (!isfinite(out[FNN_OUT_LOSS]) && !warned) {
        bar_clear(&bar);
        fflush(stdout);
        fprintf(stderr, "%s: warning: the training loss is %g at step %lld\n", o.prog, out[FNN_OUT_LOSS],
                (long long)step);
        warned = 1;
      }
      loss_sum += (double)out[FNN_OUT_LOSS] * (double)n;
      seen += n;
      done++;
      iv_sum += (double)out[FNN_OUT_LOSS] * (double)n;
      iv_rows += n;
      pr.step = step;
      if (done == per_epoch) {
        pr.epoch = ep;
        pr.pos = 0;
        pr.loss_sum = 0;
        pr.seen = 0;
      } else {
        pr.epoch = ep - 1;
        pr.pos = done;
        pr.loss_sum = loss_sum;
        pr.seen = seen;
      }
      if (o.log_every && step % o.log_every == 0) {
        // A row for the last N steps, unless the epoch's own row comes now.
        if (done < per_epoch && !(o.steps >= 0 && step >= o.steps)) {
          double now = rt_now(), e = (double)(ep - 1) + (double)done / (double)per_epoch;
          log_row(logf, r, val, e, step, iv_sum / (double)iv_rows, no_eval, no_eval,
                  now > iv_t ? (double)iv_rows / (now - iv_t) : 0, now - t_start);
          if (o.plot) curves_add(&curves, e, 1, iv_sum / (double)iv_rows, no_eval, no_eval, r->classify);
        }
        iv_sum = 0;
        iv_rows = 0;
        iv_t = rt_now();
      }
      if (o.save_every && step % o.save_every == 0 && ck_save(r, &o, &pr)) goto out;
      if (g_signal) break;
      double el = rt_now() - t_epoch;
      double rate = el > 0 ? (double)(seen - seen0) / el : 0;
      bar_draw(&bar, done == per_epoch, ep, o.epochs, done, per_epoch, loss_sum / (double)seen, rate,
               rate > 0 ? (double)(ntrain - seen) / rate : 0);
    }
    if (g_signal) break;
    if (seen == 0) break;  // stopped by --steps before the first batch
    double t_train = rt_now() - t_epoch;
    double rate = t_train > 0 ? (double)(seen - seen0) / t_train : 0;
    double train_loss = loss_sum / (double)seen;
    EvalResult ev = no_eval, vv = no_eval;
    double t_eval = rt_now();
    if (ds.val) vv = evaluate(r, &a, ds.val, o.batch, x, yf, idx, out, NULL);
    if (ds.test) ev = evaluate(r, &a, ds.test, o.batch, x, yf, idx, out, NULL);
    bar_clear(&bar);
    double now = rt_now();
    char head[96];
    if (stopped || done < per_epoch)
      snprintf(head, sizeof head, "epoch %lld/%lld  stopped at step %lld", (long long)ep, (long long)o.epochs,
               (long long)step);
    else
      snprintf(head, sizeof head, "epoch %lld/%lld", (long long)ep, (long long)o.epochs);
    if (!o.quiet) print_epoch(head, train_loss, ev, vv, rate, now - t_epoch);
    double e = (double)ep;
    log_row(logf, r, val, e, step, train_loss, ev, vv, rate, now - t_start);
    if (o.plot) curves_add(&curves, e, 0, train_loss, ev, vv, r->classify);
    iv_t += rt_now() - t_eval;  // evaluation (and logging) time is not training time
    if (stopped || (o.steps >= 0 && step >= o.steps)) break;
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  bar_clear(&bar);
  if (o.save && ck_save(r, &o, &pr)) goto out;
  if (o.plot && curves_write(r, &o, &curves)) goto out;
  rc = 0;
  if (g_signal) {
    fflush(stdout);
    fprintf(stderr, "%s: %s at step %lld%s%s%s\n", o.prog, g_signal == SIGINT ? "interrupted" : "terminated",
            (long long)step, o.save ? ", saved to '" : "", o.save ? o.save : "", o.save ? "'" : "");
    rc = 128 + g_signal;
  }
  rt_prof_print(a.prof, r->kentry, r->kname);
  if (a.prof) print_memory(stderr, r, o.batch);
out:
  free(ck_vocab);
  rt_prof_free(a.prof);
  if (logf && fclose(logf)) {
    rt_error(o.prog, "cannot write the log file '%s'", o.log);
    rc = 1;
  }
  rt_data_free(ds.train);
  rt_data_free(ds.val);
  rt_data_free(ds.test);
  rt_data_free(ds.pred);
  free(curves.rows);
  free(cm);
  free(x);
  free(yf);
  free(out);
  free(idx);
  free(perm);
  rt_model_free(r);
  return rc;
}

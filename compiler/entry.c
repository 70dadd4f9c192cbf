// entry.c: the three entry points built from one program, and the model
// descriptor the runtime reads.
#include "fnnc.h"
#include "fnnrt.h"

#include <string.h>

const char *const entry_names[ENTRY_COUNT] = {"train_step", "eval_step", "grad_step"};

Graph *build_entry(Node *prog, Entry e) {
  Graph *g = lower_program(prog);
  if (!g) return NULL;
  optimizer_layout(g);
  Builder b = {g, g->loss->loc, PH_FWD};
  ir_store(&b, g->loss, BUF_OUT, -1, 0);
  if (e == ENTRY_TRAIN || e == ENTRY_GRAD) {
    // The gradients go to the gradient slab, where the optimizer's update
    // reads them as one flat tensor.
    autodiff(g);
    for (int i = 0; i < g->nparams; i++)
      if (g->params[i].grad) {
        b.loc = g->params[i].loc;
        b.phase = PH_BWD;
        ir_store(&b, g->params[i].grad, BUF_GRAD, i, 0);
      }
    if (e == ENTRY_TRAIN) optimizer_lower(g);
  }
  b.loc = g->loss->loc;
  b.phase = PH_FWD;
  if (e == ENTRY_EVAL && g->info.classify && g->logits) {
    Value *in[2] = {g->logits, g->y};
    ir_store(&b, ir_new(&b, OP_correct, 2, in, NULL, 0), BUF_OUT, -1, 1);
  }
  // The model's outputs, one row per sample from out[2]: the class
  // probabilities softmax(logits) [B,K] of a classifier (the same softmax the
  // loss reads), or the prediction [B,W] given to mse.
  if (e == ENTRY_EVAL && g->logits) {
    Value *o = g->info.classify ? ir_unary(&b, OP_softmax, g->logits) : g->logits;
    ir_store(&b, o, BUF_OUT, -1, FNN_OUT_ROWS);
  }
  simplify(g);
  return g;
}

static void put_str(char **buf, size_t *len, size_t *cap, const char *s) {
  size_t n = strlen(s);
  if (*len + n + 1 > *cap) {
    size_t nc = (*cap + n + 1) * 2;
    char *nb = arena_alloc(nc);
    memcpy(nb, *buf, *len);
    *buf = nb;
    *cap = nc;
  }
  memcpy(*buf + *len, s, n + 1);
  *len += n;
}

static const char *quote(const char *s) {
  size_t n = strlen(s);
  char *q = arena_alloc(2 * n + 3), *o = q;
  *o++ = '"';
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') *o++ = '\\';
    *o++ = *s == '\n' ? ' ' : *s;
  }
  *o++ = '"';
  return q;
}

static const char *dims(Shape s, bool drop_batch) {
  int from = drop_batch && shape_batched(s) ? 1 : 0;
  char *r = arena_printf("%d", s.rank - from);
  for (int i = from; i < s.rank; i++) r = arena_printf("%s %lld", r, (long long)s.d[i]);
  return r;
}

char *model_descriptor(Graph *g, int64_t work_per_n, int64_t work_fixed, int64_t scratch, Program **progs) {
  static const char *init_name[] = {"kaiming_uniform", "bias_uniform", "zero", "one", "normal"};
  ModelInfo *m = &g->info;
  char *buf = arena_alloc(256);
  size_t len = 0, cap = 256;
#define P(...) put_str(&buf, &len, &cap, arena_printf(__VA_ARGS__))
  P("fnn 1\n");
  P("model %s\n", m->name);
  P("input %s\n", dims(m->input, true));
  if (m->tokens) P("tokens %lld\n", (long long)m->vocab);
  if (m->steps) P("steps %lld\n", (long long)m->steps);
  if (m->sees_ahead) P("bidirectional\n");
  if (m->classify)
    P("target class %lld\n", (long long)m->nclasses);
  else
    P("target values %lld\n", (long long)m->nclasses);
  P("batch %lld\nepochs %lld\nseed %lld\nshuffle %d\n", (long long)m->batch, (long long)m->epochs,
    (long long)m->seed, m->shuffle ? 1 : 0);
  static const char *const opt_name[] = {"sgd", "adam", "adamw"};
  P("optimizer %s %.9g %.9g %.9g %.9g %.9g %.9g\n", opt_name[m->opt.kind], m->opt.lr, m->opt.beta1, m->opt.beta2,
    m->opt.eps, m->opt.momentum, m->opt.weight_decay);
  const Schedule *sc = &m->opt.sched;
  if (sc->given) {
    static const char *const sched_name[] = {"constant", "step", "cosine"};
    P("schedule %s %lld %lld %.9g %.9g\n", sched_name[sc->kind], (long long)sc->warmup, (long long)sc->step_size,
      sc->gamma, sc->min_lr);
  }
  P("normalize %.9g %.9g\n", m->norm_mean, m->norm_std);
  if (m->standardize) P("standardize 1\n");
  if (m->validation > 0) P("validation %.9g\n", m->validation);
  if (m->has_train)
    P("train %s %s %s %s\n", m->train.kind, quote(m->train.files[0]), quote(m->train.files[1]),
      quote(m->train.column ? m->train.column : ""));
  if (m->has_test)
    P("test %s %s %s %s\n", m->test.kind, quote(m->test.files[0]), quote(m->test.files[1]),
      quote(m->test.column ? m->test.column : ""));
  P("params %lld %d\n", (long long)g->param_floats, g->nparams);
  for (int i = 0; i < g->nparams; i++) {
    Param *p = &g->params[i];
    P("param %s %lld %lld %lld %s %s\n", p->name, (long long)p->offset, (long long)p->toff, (long long)p->fan_in,
      init_name[p->init], dims(p->shape, false));
  }
  for (int i = 0; i < g->loras.len; i++) {
    Lora *lo = g->loras.data[i];
    P("lora %d %d %d %d %.17g\n", lo->base, lo->bias, lo->a, lo->b, lo->scale);
  }
  P("state %d %lld\n", optimizer_slots(&m->opt), (long long)g->train_floats);
  P("work %lld %lld\n", (long long)work_per_n, (long long)work_fixed);
  P("scratch %lld\n", (long long)scratch);
  if (progs[ENTRY_TRAIN] && progs[ENTRY_TRAIN]->input_copies) P("input_copies\n");
  int id = 0;
  for (int e = 0; e < ENTRY_COUNT; e++)
    for (int i = 0; progs[e] && i < progs[e]->kernels.len; i++)
      P("kernel %d %s %s\n", id++, entry_names[e], ((Kernel *)progs[e]->kernels.data[i])->name);
  P("end\n");
#undef P
  return buf;
}


// lower.c: AST -> IR. Checks names, arguments, types and shapes, reporting
// every problem with its location, and lowers layers to primitive ops:
//
//   dense(O)            y = matmul(x, W^T) + bcast(b)          W[O,I], b[O]
//   conv2d(O, kernel=K) y = conv2d(x, W) + bcast(b)            W[O,C,K,K], b[O]
//   ..., lora=lora(rank=R, alpha=A)   on dense and conv2d: W frozen, and
//                       y += (A/R) * (x A^T) B^T  (conv: a conv with R output
//                       channels, then a 1x1 conv)   A[R,I...], B[O,R...]
//   flatten             y = reshape(x, [B, prod])
//   cross_entropy(z, y) L = xent(softmax(z), y) * (1/n)
//   mse(p, t)           L = sum(0.5 * (p - t)^2) * (1/n) / W
//   recurrent over t in x { state h: [H] = 0; h = ...; emit h }
//                       a loop (loop.c): the body is a graph of its own
//   rnn(H), lstm(H), gru(H)   the same loop, built here with PyTorch's equations
//   last                the last step of a sequence [T, ...]
//   embedding(V, D)     y = embed(ids, W)                      W[V,D]; ids: tokens[T], i32
//   cross_entropy(z, y) on steps: z [T,V], y tokens[T]:
//                       L = xent(softmax(z), y) * (1/n) * (1/T)
//
// Shapes in messages are per sample (without the batch axis), as users write them.
#include "fnnc.h"

#include <math.h>
#include <string.h>

//
// The layer catalogue: names, tensor arity, and accepted arguments (positional
// arguments fill the first names in order).
//
typedef enum {
  L_CONV2D, L_DENSE, L_RELU, L_TANH, L_SIGMOID, L_EXP, L_LOG, L_SQRT, L_SOFTMAX, L_FLATTEN,
  L_MAXPOOL, L_CONCAT, L_LAST, L_RNN, L_LSTM, L_GRU, L_EMBED, L_XENT, L_MSE,
} LayerKind;

typedef struct {
  const char *name;
  LayerKind kind;
  int ntensors;         // tensor operands (the piped value counts as the first)
  bool has_params;
  bool is_loss;
  const char *args[6];  // configuration arguments, NULL-terminated
} LayerSpec;

static const LayerSpec layer_specs[] = {
    {"conv2d", L_CONV2D, 1, true, false, {"out", "kernel", "stride", "pad", "bias"}},
    {"dense", L_DENSE, 1, true, false, {"out", "bias"}},
    {"relu", L_RELU, 1, false, false, {0}},
    {"tanh", L_TANH, 1, false, false, {0}},
    {"sigmoid", L_SIGMOID, 1, false, false, {0}},
    {"exp", L_EXP, 1, false, false, {0}},
    {"log", L_LOG, 1, false, false, {0}},
    {"sqrt", L_SQRT, 1, false, false, {0}},
    {"softmax", L_SOFTMAX, 1, false, false, {0}},
    {"flatten", L_FLATTEN, 1, false, false, {0}},
    {"maxpool", L_MAXPOOL, 1, false, false, {"size", "stride"}},
    {"concat", L_CONCAT, 2, false, false, {"axis"}},
    {"last", L_LAST, 1, false, false, {0}},
    {"rnn", L_RNN, 1, true, false, {"hidden", "layers", "bidirectional", "activation"}},
    {"lstm", L_LSTM, 1, true, false, {"hidden", "layers", "bidirectional"}},
    {"gru", L_GRU, 1, true, false, {"hidden", "layers", "bidirectional"}},
    {"embedding", L_EMBED, 1, true, false, {"vocab", "dim"}},
    {"cross_entropy", L_XENT, 2, false, true, {0}},
    {"mse", L_MSE, 2, false, true, {0}},
};
#define NSPECS (int)(sizeof layer_specs / sizeof layer_specs[0])

static const LayerSpec *find_spec(const char *name) {
  for (int i = 0; i < NSPECS; i++)
    if (!strcmp(layer_specs[i].name, name)) return &layer_specs[i];
  return NULL;
}

static const char *const *spec_names(void) {
  static const char *names[NSPECS + 1];
  for (int i = 0; i < NSPECS; i++) names[i] = layer_specs[i].name;
  return names;
}

// A named layer instance: applying it again reuses its parameters.
typedef struct {
  const char *name;
  const LayerSpec *spec;
  Loc loc;
  int64_t cfg[6];   // the configuration, by argument position
  int wparam, bparam;
  // Fine-tuning: which of its tensors are frozen (the weights, the biases),
  // where that was said first, and the learning-rate multiplier.
  bool freeze_w, freeze_b;
  Loc frozen_at;
  double lr_mult;
  int64_t lora_rank;  // lora(rank=R, alpha=A) given to the layer: R, else 0
  double lora_alpha;
  Loc lora_loc;
  Lora *adapter;      // its parameters once the layer is built
} Layer;

typedef struct {
  const char *name;
  Value *v;
  Loc loc;
  bool is_target;
} Binding;

// The recurrent block being lowered: its body is built with Lower.b while
// outer values it reads become formals.
typedef struct {
  LoopInfo *loop;
  Builder outer;     // the builder of the enclosing graph
  const char *tvar;  // the step variable
  int bind0;         // bindings before the block (outer names)
  Node **pending;    // states declared later in the block
  int npending;
} Recur;

// A stacked loop output whose last step is also a state's final value.
typedef struct {
  Value *stack, *last;
} LastOf;

typedef struct {
  Graph *g;
  Builder b;
  Vec bindings;  // Binding*
  Vec layers;    // Layer*
  int counter[L_MSE + 1];
  Value *y;      // the target leaf
  Node *target_node;
  int nerr0;
  Recur *rec;    // inside a recurrent block, else NULL
  Vec lasts;     // LastOf*
  Loc last_freeze;  // the last freeze statement or trainable=, for "nothing left to train"
} Lower;

static Binding *lookup(Lower *L, const char *name) {
  for (int i = L->bindings.len - 1; i >= 0; i--) {
    Binding *b = L->bindings.data[i];
    if (!strcmp(b->name, name)) return b;
  }
  return NULL;
}

static Layer *find_layer(Lower *L, const char *name) {
  for (int i = 0; i < L->layers.len; i++) {
    Layer *l = L->layers.data[i];
    if (!strcmp(l->name, name)) return l;
  }
  return NULL;
}

static const char **binding_names(Lower *L) {
  const char **names = arena_alloc(sizeof(char *) * (size_t)(L->bindings.len + L->layers.len + 1));
  int n = 0;
  for (int i = 0; i < L->bindings.len; i++) names[n++] = ((Binding *)L->bindings.data[i])->name;
  for (int i = 0; i < L->layers.len; i++) names[n++] = ((Layer *)L->layers.data[i])->name;
  return names;
}

static void bind(Lower *L, const char *name, Value *v, Loc loc) {
  Binding *b = arena_alloc(sizeof(Binding));
  b->name = name;
  b->v = v;
  b->loc = loc;
  vec_push(&L->bindings, b);
  if (v && !v->name) v->name = name;
}

//
// Parameters
//
// Parameter LAYER.SUFFIX ("conv1.weight", "lstm1.bias_hh_l0": PyTorch's
// names); the layer is remembered for freezing and lr_mult.
static int add_param(Lower *L, Layer *layer, const char *suffix, Shape s, int64_t fan_in, InitKind init, Loc loc) {
  Graph *g = L->g;
  Param *np = arena_alloc(sizeof(Param) * (size_t)(g->nparams + 1));
  if (g->nparams) memcpy(np, g->params, sizeof(Param) * (size_t)g->nparams);
  g->params = np;
  Param *p = &g->params[g->nparams];
  const char *name = arena_printf("%s.%s", layer->name, suffix);
  p->name = name;
  p->layer = layer->name;
  p->bias = !strncmp(suffix, "bias", 4);
  p->shape = s;
  p->fan_in = fan_in;
  p->init = init;
  p->offset = g->param_floats;
  p->loc = loc;
  p->lr_mult = 1;
  g->param_floats += pad16(shape_numel(s));
  int idx = g->nparams++;
  Builder ob = {g, loc, PH_FWD};
  p->value = ir_leaf(&ob, OP_param, s, T_F32, 0, idx);
  p->value->name = name;
  return idx;
}

// A value of the enclosing graph as seen from where the lowering is: inside a
// recurrent block, a loop-invariant formal of the loop.
static Value *outer_use(Lower *L, Value *v) {
  if (!L->rec || !v) return v;
  return loop_formal(L->rec->loop, LF_INVAR, v, v->shape, v->name);
}

// Parameter i's value where the lowering is.
static Value *pval(Lower *L, int i) { return outer_use(L, L->g->params[i].value); }

//
// Arguments
//
typedef struct {
  Node *node[6];  // by argument position; NULL if not given
  Node *trainable, *lr_mult;  // the fine-tuning options every layer with parameters takes
} Args;

// Splits a call's arguments into tensors (positional, first) and configuration.
// Reports unknown or repeated keyword arguments.
static bool split_args(Lower *L, Node *call, const LayerSpec *spec, Node *piped, Node **tensors, int *ntensors,
                       Args *cfg) {
  bool ok = true;
  int nt = 0, npos = 0;
  memset(cfg, 0, sizeof *cfg);
  if (piped) tensors[nt++] = piped;
  int nargs = 0;
  while (spec->args[nargs]) nargs++;
  for (int i = 0; call && i < call->nargs; i++) {
    Node *a = call->args[i];
    if (a->kind == N_KWARG) {
      Node **opt = !spec->has_params             ? NULL
                   : !strcmp(a->name, "trainable") ? &cfg->trainable
                   : !strcmp(a->name, "lr_mult")   ? &cfg->lr_mult
                                                   : NULL;
      if (opt) {
        if (*opt) {
          error_at(a->loc, "argument '%s' is given twice", a->name);
          ok = false;
        }
        *opt = a->lhs;
        continue;
      }
      int j = 0;
      while (j < nargs && strcmp(spec->args[j], a->name)) j++;
      if (j == nargs) {
        error_at(a->loc, "unknown argument '%s' for %s", a->name, spec->name);
        static const char *const ft_opts[] = {"trainable", "lr_mult", NULL};
        const char *c = closest_word(a->name, spec->args);
        if (!c && spec->has_params) c = closest_word(a->name, ft_opts);
        if (c)
          hint("did you mean '%s'?", c);
        else if (nargs)
          hint("%s takes: %s%s%s%s%s", spec->name, spec->args[0], nargs > 1 ? ", " : "", nargs > 1 ? spec->args[1] : "",
               nargs > 2 ? ", ..." : "", "");
        else
          hint("%s takes no arguments", spec->name);
        ok = false;
        continue;
      }
      if (cfg->node[j]) {
        error_at(a->loc, "argument '%s' is given twice", a->name);
        ok = false;
        continue;
      }
      cfg->node[j] = a->lhs;
      continue;
    }
    if (nt < spec->ntensors) {
      tensors[nt++] = a;
      continue;
    }
    if (npos >= nargs) {
      error_at(a->loc, "too many arguments for %s", spec->name);
      ok = false;
      continue;
    }
    if (cfg->node[npos]) {
      error_at(a->loc, "argument '%s' is given twice", spec->args[npos]);
      ok = false;
    }
    cfg->node[npos++] = a;
  }
  *ntensors = nt;
  if (ok && nt < spec->ntensors) {
    error_at(call ? call->loc : piped->loc, "%s needs %d tensor operand%s, got %d", spec->name, spec->ntensors,
             spec->ntensors > 1 ? "s" : "", nt);
    ok = false;
  }
  return ok;
}

// An integer argument in [lo, hi]; `def` if absent (or -1 and an error if
// required).
static int64_t int_arg(Node *n, const char *layer, const char *name, int64_t def, int64_t lo, int64_t hi,
                       Loc where) {
  if (!n) {
    if (def == INT64_MIN) {
      error_at(where, "%s needs '%s'", layer, name);
      return -1;
    }
    return def;
  }
  if (n->kind == N_BOOL) return (int64_t)n->num;
  if (n->kind != N_NUM || !n->is_int) {
    error_at(n->loc, "'%s' of %s must be a whole number", name, layer);
    return -1;
  }
  if (n->num < (double)lo || n->num > (double)hi) {
    if (hi >= (int64_t)1 << 30)
      error_at(n->loc, "'%s' of %s must be at least %lld, got %g", name, layer, (long long)lo, n->num);
    else
      error_at(n->loc, "'%s' of %s must be between %lld and %lld, got %g", name, layer, (long long)lo,
               (long long)hi, n->num);
    return -1;
  }
  return (int64_t)n->num;
}

static bool bool_arg(Node *n, const char *layer, const char *name, bool def) {
  if (!n) return def;
  if (n->kind == N_BOOL) return n->num != 0;
  error_at(n->loc, "'%s' of %s must be true or false", name, layer);
  return def;
}

static Value *lower_expr(Lower *L, Node *n);

//
// Recurrent layers: rnn, lstm and gru are loops built here, with PyTorch's
// equations, gate order (lstm: i, f, g, o; gru: r, z, n) and parameters
// NAME.weight_ih_l0 [G*H, F], NAME.weight_hh_l0 [G*H, H], NAME.bias_ih_l0 and
// NAME.bias_hh_l0 [G*H], all initialised from U(-1/sqrt(H), 1/sqrt(H)):
//
//   rnn   h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)
//   lstm  i, f, g, o = sig, sig, tanh, sig of the four quarters of
//         x W_ih^T + b_ih + h W_hh^T + b_hh;  c' = f*c + i*g;  h' = o*tanh(c')
//   gru   r, z = sig of the first two thirds of (x W_ih^T + b_ih) + (h W_hh^T + b_hh)
//         n = tanh(xn + r * hn) with xn, hn the last thirds;  h' = (1-z)*n + z*h
//
// The layer's value is every step's h' [T, H]; `-> last` takes the last one.
static int rnn_param(Lower *L, Layer *layer, const char *suffix, Shape s, int64_t H, Loc loc) {
  const char *name = arena_printf("%s.%s", layer->name, suffix);
  for (int i = 0; i < L->g->nparams; i++)
    if (!strcmp(L->g->params[i].name, name)) return i;
  return add_param(L, layer, suffix, s, H, INIT_BIAS_UNIFORM, loc);
}

static Value *gate(Builder *b, Value *g, int64_t k, int64_t H) {
  int64_t ia[8] = {1, k * H, H};
  return ir_new(b, OP_slice, 1, &g, ia, 0);
}

static Value *affine(Builder *b, Value *x, Value *w, Value *bias) {
  int64_t ia[8] = {0, 1};
  Value *in[2] = {x, w};
  Value *y = ir_new(b, OP_matmul, 2, in, ia, 0);
  if (!y) return NULL;
  return ir_binary(b, OP_add, y, ir_bcast(b, bias, y->shape, 1u << 1));
}

static void note_last(Lower *L, Value *stack, Value *last) {
  LastOf *lo = arena_alloc(sizeof *lo);
  lo->stack = stack;
  lo->last = last;
  vec_push(&L->lasts, lo);
}

// One direction of one layer: a loop over x [B, T, F], in reverse for the
// backward direction of a bidirectional layer (PyTorch's "_reverse" weights,
// whose output at step t has seen steps t..T-1). Returns the stacked h'.
static Value *rnn_direction(Lower *L, Layer *layer, Value *x, int k, bool rev, Node *site) {
  Shape s = x->shape;
  int64_t H = layer->cfg[0], T = s.d[1], F = s.d[2];
  int G = layer->spec->kind == L_LSTM ? 4 : layer->spec->kind == L_GRU ? 3 : 1;
  int64_t wi[2] = {G * H, F}, wh[2] = {G * H, H}, bd[1] = {G * H};
  const char *sfx = arena_printf("l%d%s", k, rev ? "_reverse" : "");
  if (rev) L->g->info.sees_ahead = true;
  int pwi = rnn_param(L, layer, arena_printf("weight_ih_%s", sfx), shape_make(2, wi), H, layer->loc);
  if (!shape_eq(L->g->params[pwi].shape, shape_make(2, wi))) {
    error_at(site->loc, "layer '%s' was built for [%lld] inputs, got %s", layer->name,
             (long long)L->g->params[pwi].shape.d[1], shape_str_sample(s));
    return NULL;
  }
  int pwh = rnn_param(L, layer, arena_printf("weight_hh_%s", sfx), shape_make(2, wh), H, layer->loc);
  int pbi = rnn_param(L, layer, arena_printf("bias_ih_%s", sfx), shape_make(1, bd), H, layer->loc);
  int pbh = rnn_param(L, layer, arena_printf("bias_hh_%s", sfx), shape_make(1, bd), H, layer->loc);
  LoopInfo *l = loop_new(L->g, T, site->loc);
  l->reverse = rev;
  l->name = k == 0 && !rev ? layer->name : arena_printf("%s.%s", layer->name, sfx);
  Builder *ob = &L->b;
  ob->loc = site->loc;
  Builder bb = {l->body, site->loc, PH_FWD};
  int64_t hd[2] = {DIM_BATCH, H};
  Shape hs = shape_make(2, hd);
  Value *zero = ir_const(ob, 0);
  Value *xt = loop_formal(l, LF_SLICE, x, hs, "x");
  Value *Wi = loop_formal(l, LF_INVAR, L->g->params[pwi].value, hs, NULL);
  Value *Wh = loop_formal(l, LF_INVAR, L->g->params[pwh].value, hs, NULL);
  Value *bi = loop_formal(l, LF_INVAR, L->g->params[pbi].value, hs, NULL);
  Value *bh = loop_formal(l, LF_INVAR, L->g->params[pbh].value, hs, NULL);
  Value *h = loop_formal(l, LF_STATE, zero, hs, "h");
  int hformal = l->nformals - 1, cformal = -1;
  Value *gi = affine(&bb, xt, Wi, bi), *gh = affine(&bb, h, Wh, bh);
  Value *hn = NULL, *cn = NULL;
  switch (layer->spec->kind) {
  case L_RNN: hn = ir_unary(&bb, layer->cfg[3] ? OP_relu : OP_tanh, ir_binary(&bb, OP_add, gi, gh)); break;
  case L_LSTM: {
    Value *c = loop_formal(l, LF_STATE, zero, hs, "c");
    cformal = l->nformals - 1;
    Value *g = ir_binary(&bb, OP_add, gi, gh);
    Value *ig = ir_unary(&bb, OP_sigmoid, gate(&bb, g, 0, H));
    Value *fg = ir_unary(&bb, OP_sigmoid, gate(&bb, g, 1, H));
    Value *gg = ir_unary(&bb, OP_tanh, gate(&bb, g, 2, H));
    Value *og = ir_unary(&bb, OP_sigmoid, gate(&bb, g, 3, H));
    cn = ir_binary(&bb, OP_add, ir_binary(&bb, OP_mul, fg, c), ir_binary(&bb, OP_mul, ig, gg));
    hn = ir_binary(&bb, OP_mul, og, ir_unary(&bb, OP_tanh, cn));
    break;
  }
  case L_GRU: {
    Value *r = ir_unary(&bb, OP_sigmoid, ir_binary(&bb, OP_add, gate(&bb, gi, 0, H), gate(&bb, gh, 0, H)));
    Value *z = ir_unary(&bb, OP_sigmoid, ir_binary(&bb, OP_add, gate(&bb, gi, 1, H), gate(&bb, gh, 1, H)));
    Value *n = ir_unary(&bb, OP_tanh, ir_binary(&bb, OP_add, gate(&bb, gi, 2, H),
                                                ir_binary(&bb, OP_mul, r, gate(&bb, gh, 2, H))));
    // h' = n + z*(h - n), the same as (1-z)*n + z*h
    hn = ir_binary(&bb, OP_add, n, ir_binary(&bb, OP_mul, z, ir_binary(&bb, OP_sub, h, n)));
    break;
  }
  default: unreachable();
  }
  if (!hn) return NULL;
  hn->name = arena_printf("%s.h", layer->name);
  l->formals[hformal].next = loop_output(l, LO_LAST, hn);
  if (cformal >= 0) l->formals[cformal].next = loop_output(l, LO_LAST, cn);
  int ys = loop_output(l, LO_STACK, hn);
  Value *outs[8];
  if (!loop_finish(ob, l, outs)) return NULL;
  outs[ys]->name = l->name;
  if (!rev) note_last(L, outs[ys], outs[0]);
  return outs[ys];
}

static Value *recurrent_layer(Lower *L, Layer *layer, Value *x, Node *site) {
  Shape s = x->shape;
  const char *ln = layer->spec->name;
  if (L->rec) {
    error_at(site->loc, "%s cannot be used inside a recurrent block", ln);
    return NULL;
  }
  if (!shape_batched(s) || s.rank != 3 || x->type != T_F32) {
    error_at(site->loc, "%s(%lld) expects a sequence [T, F], got %s", ln, (long long)layer->cfg[0],
             shape_str_sample(s));
    return NULL;
  }
  // Layer k reads layer k-1's steps; the two directions' outputs are
  // concatenated along the features, forward first.
  for (int k = 0; k < layer->cfg[1] && x; k++) {
    Value *y = rnn_direction(L, layer, x, k, false, site);
    if (y && layer->cfg[2]) {
      Value *in[2] = {y, rnn_direction(L, layer, x, k, true, site)};
      int64_t ia[8] = {2};
      L->b.loc = site->loc;
      y = in[1] ? ir_new(&L->b, OP_concat, 2, in, ia, 0) : NULL;
    }
    x = y;
  }
  return x;
}

// The last step of a sequence [B, T, ...]: a state's final value when the
// sequence is what a loop emitted, else a slice.
static Value *last_step(Lower *L, Value *x, Node *site) {
  for (int i = 0; i < L->lasts.len; i++) {
    LastOf *lo = L->lasts.data[i];
    if (lo->stack == x) return lo->last;
  }
  Shape s = x->shape;
  if (!shape_batched(s) || s.rank < 3) {
    error_at(site->loc, "last expects a sequence [T, ...], got %s", shape_str_sample(s));
    return NULL;
  }
  int64_t ia[8] = {1, s.d[1] - 1, 1};
  Value *sl = ir_new(&L->b, OP_slice, 1, &x, ia, 0);
  Shape r = s;
  r.rank--;
  for (int i = 1; i < r.rank; i++) r.d[i] = s.d[i + 1];
  return ir_reshape(&L->b, sl, r);
}

//
// Tokens: embedding(V, D) maps the ids of a tokens[T] input to rows of its
// table NAME.weight [V, D] (PyTorch's nn.Embedding, initialised from N(0, 1)).
// The smallest V of the embeddings that read the input bounds its ids: the data
// loader checks them against it.
//
static Value *embedding(Lower *L, Layer *layer, Value *ids, Node *site) {
  int64_t V = layer->cfg[0], D = layer->cfg[1];
  if (ids->type != T_I32 || ids != L->g->x) {
    error_at(site->loc, "embedding(%lld, %lld) expects token ids (an 'input x: tokens[T]'), got %s %s", (long long)V,
             (long long)D, ids->type == T_I32 ? "class labels" : "a float tensor", shape_str_sample(ids->shape));
    if (ids->type != T_I32) hint("declare the input as 'input x: tokens[T]'");
    return NULL;
  }
  if (layer->wparam < 0) {
    int64_t wd[2] = {V, D};
    layer->wparam = add_param(L, layer, "weight", shape_make(2, wd), 0, INIT_NORMAL, layer->loc);
  }
  ModelInfo *m = &L->g->info;
  if (!m->vocab || V < m->vocab) m->vocab = V;
  Value *in[2] = {ids, pval(L, layer->wparam)};
  L->b.loc = site->loc;
  return ir_new(&L->b, OP_embed, 2, in, NULL, 0);
}

// The mean cross-entropy of logits z against class ids y, over the batch (and
// over `steps` per sample; 1 for one class per sample): the logits are the
// model's outputs unless others came first.
static Value *xent_loss(Lower *L, Value *z, Value *y, int64_t steps) {
  Builder *b = &L->b;
  if (!L->g->logits) L->g->logits = z;
  Value *xin[2] = {ir_unary(b, OP_softmax, z), y};
  Value *ce = ir_new(b, OP_xent, 2, xin, NULL, 0);
  Value *invn = ir_leaf(b, OP_hyper, shape_make(0, NULL), T_F32, HYP_INVN, 0);
  return ir_binary(b, OP_mul, ce, steps > 1 ? ir_binary(b, OP_mul, invn, ir_const(b, 1.0 / (double)steps)) : invn);
}

// cross_entropy on the steps of a sequence: logits z [T, V] against a
// tokens[T] target, the mean over the steps and the batch, as PyTorch's
// cross_entropy(z.reshape(-1, V), y.reshape(-1)).
static Value *step_xent(Lower *L, Value *z, Value *y, Node *site) {
  Shape s = z->shape;
  int64_t T = y->shape.d[1];
  if (z->type != T_F32 || !shape_batched(s) || s.rank != 3 || s.d[1] != T) {
    error_at(site->loc, "cross_entropy with a tokens[%lld] target expects logits [%lld, V] (one row per step), got %s",
             (long long)T, (long long)T, shape_str_sample(s));
    if (shape_batched(s) && s.rank == 2) hint("keep every step: leave out 'last'");
    return NULL;
  }
  if (L->g->info.nclasses && L->g->info.nclasses != s.d[2]) {
    error_at(site->loc, "cross_entropy: the logits have %lld classes, but the target already has %lld (from another cross_entropy)", (long long)s.d[2],
             (long long)L->g->info.nclasses);
    return NULL;
  }
  L->g->info.nclasses = s.d[2];
  return xent_loss(L, z, y, T);
}

//
// LoRA adapters
//
// lora(rank=R, alpha=A) on a dense or conv2d layer freezes the layer's weight
// and bias and adds two trainable parameters, named as PEFT names them:
//   NAME.lora_A.weight  [R, I] or [R, C, K, K]  kaiming-uniform (as PEFT)
//   NAME.lora_B.weight  [O, R] or [O, R, 1, 1]  zeros, so training starts from W
// and the layer computes W' = W + (A/R) B A without ever forming B A:
//   dense   y += (A/R) * matmul(matmul(x, lora_A^T), lora_B^T)
//   conv2d  y += (A/R) * conv1x1(conv2d(x, lora_A; stride, pad), lora_B)
// The scale multiplies the rank-R intermediate. Their gradients come from
// autodiff like any other parameter's.

// Takes `lora=...` out of a call's arguments (only dense and conv2d take it):
// returns the call without it, and the lora(...) node in *lora, or NULL after
// an error.
static Node *take_lora(Node *call, const LayerSpec *spec, Node **lora) {
  *lora = NULL;
  int n = 0;
  for (int i = 0; i < call->nargs; i++) {
    Node *a = call->args[i];
    if (a->kind != N_KWARG || strcmp(a->name, "lora")) continue;
    if (n++) {
      error_at(a->loc, "argument 'lora' is given twice");
      return NULL;
    }
    *lora = a;
  }
  if (!*lora) return call;
  if (spec->kind != L_DENSE && spec->kind != L_CONV2D) {
    error_at((*lora)->loc, "LoRA adapters attach to dense and conv2d layers, not %s", spec->name);
    return NULL;
  }
  Node *c = arena_alloc(sizeof *c);
  *c = *call;
  c->args = arena_alloc(sizeof(Node *) * (size_t)call->nargs);
  c->nargs = 0;
  for (int i = 0; i < call->nargs; i++)
    if (call->args[i] != *lora) c->args[c->nargs++] = call->args[i];
  *lora = (*lora)->lhs;
  return c;
}

// Reads lora(rank=R, alpha=A) into the layer (alpha defaults to R: scale 1).
static bool lora_config(Layer *l, Node *n) {
  static const char *const names[] = {"rank", "alpha", NULL};
  if (n->kind != N_CALL || strcmp(n->name, "lora")) {
    error_at(n->loc, "expected lora(rank=R, alpha=A) after 'lora='");
    return false;
  }
  Node *given[2] = {0};
  bool ok = true;
  for (int i = 0; i < n->nargs; i++) {
    Node *a = n->args[i];
    int j = i;  // positional: rank, then alpha
    if (a->kind == N_KWARG) {
      for (j = 0; names[j] && strcmp(names[j], a->name);) j++;
      if (!names[j]) {
        error_at(a->loc, "unknown argument '%s' for lora", a->name);
        const char *h = closest_word(a->name, names);
        hint(h ? "did you mean '%s'?" : "lora takes rank and alpha", h);
        ok = false;
        continue;
      }
    } else if (j > 1) {
      error_at(a->loc, "too many arguments for lora");
      ok = false;
      continue;
    }
    if (given[j]) {
      error_at(a->loc, "argument '%s' is given twice", names[j]);
      ok = false;
      continue;
    }
    given[j] = a->kind == N_KWARG ? a->lhs : a;
  }
  if (!ok) return false;
  l->lora_rank = int_arg(given[0], "lora", "rank", INT64_MIN, 1, (int64_t)1 << 30, n->loc);
  if (l->lora_rank < 0) return false;
  l->lora_alpha = (double)l->lora_rank;
  Node *al = given[1];
  if (al) {
    if (al->kind != N_NUM) {
      error_at(al->loc, "'alpha' of lora must be a number");
      return false;
    }
    if (!(al->num > 0) || al->num > 1e6) {
      error_at(al->loc, "'alpha' of lora must be greater than 0, got %g", al->num);
      return false;
    }
    l->lora_alpha = al->num;
  }
  l->lora_loc = n->loc;
  return true;
}

// Creates the adapter of a layer whose weight was just made. `as` and `bs`
// are the shapes of lora_A and lora_B, `fan_in` lora_A's, and `most` the
// largest rank the weight allows (its smaller side).
static bool lora_params(Lower *L, Layer *l, Shape as, Shape bs, int64_t fan_in, int64_t most) {
  Graph *g = L->g;
  if (l->lora_rank > most) {
    error_at(l->lora_loc, "LoRA rank %lld is larger than layer '%s': its weight is %s, so the rank is at most %lld",
             (long long)l->lora_rank, l->name, shape_str(g->params[l->wparam].shape), (long long)most);
    return false;
  }
  Lora *lo = arena_alloc(sizeof *lo);
  lo->base = l->wparam;
  lo->bias = l->bparam;
  lo->rank = l->lora_rank;
  lo->scale = l->lora_alpha / (double)l->lora_rank;
  g->params[l->wparam].frozen = true;
  if (l->bparam >= 0) g->params[l->bparam].frozen = true;
  lo->a = add_param(L, l, "lora_A.weight", as, fan_in, INIT_KAIMING_UNIFORM, l->lora_loc);
  lo->b = add_param(L, l, "lora_B.weight", bs, l->lora_rank, INIT_ZERO, l->lora_loc);
  vec_push(&g->loras, lo);
  l->adapter = lo;
  return true;
}

// y + scale * (the adapter's path from x), or y if the layer has no adapter.
static Value *lora_add(Lower *L, Layer *l, Value *x, Value *y) {
  Lora *lo = l->adapter;
  if (!y || !lo) return y;
  Builder *b = &L->b;
  Value *h, *d;
  if (l->spec->kind == L_DENSE) {
    int64_t ia[8] = {0, 1};
    Value *in1[2] = {x, pval(L, lo->a)};
    h = ir_new(b, OP_matmul, 2, in1, ia, 0);
    if (h && lo->scale != 1) h = ir_binary(b, OP_mul, h, ir_const(b, lo->scale));
    Value *in2[2] = {h, pval(L, lo->b)};
    d = h ? ir_new(b, OP_matmul, 2, in2, ia, 0) : NULL;
  } else {
    int64_t ia1[8] = {l->cfg[2], l->cfg[3]}, ia2[8] = {1, 0};
    Value *in1[2] = {x, pval(L, lo->a)};
    h = ir_new(b, OP_conv2d, 2, in1, ia1, 0);
    if (h && lo->scale != 1) h = ir_binary(b, OP_mul, h, ir_const(b, lo->scale));
    Value *in2[2] = {h, pval(L, lo->b)};
    d = h ? ir_new(b, OP_conv2d, 2, in2, ia2, 0) : NULL;
  }
  if (h) h->name = arena_printf("%s.lora", l->name);
  return d ? ir_binary(b, OP_add, y, d) : NULL;
}

//
// Layers
//
static Value *apply_layer(Lower *L, Layer *layer, Value **x, Node *site) {
  Builder *b = &L->b;
  const LayerSpec *spec = layer->spec;
  Value *in = x[0];
  Shape s = in->shape;
  const char *ss = shape_str_sample(s);
  int r = s.rank - (shape_batched(s) ? 1 : 0);
  b->loc = site->loc;
  if (spec->is_loss && L->rec) {
    error_at(site->loc, "%s inside a recurrent block; compute the loss on what the block emits", spec->name);
    return NULL;
  }
  for (int i = 0; i < spec->ntensors && spec->kind != L_EMBED && !spec->is_loss; i++)
    if (x[i]->type == T_I32) {
      error_at(site->loc, "%s needs a float tensor, got %s", spec->name,
               x[i] == L->g->x ? "token ids" : "class labels");
      hint(x[i] == L->g->x ? "token ids go through 'embedding(vocab, dim)' first" : "class labels can only be used by a loss");
      return NULL;
    }
  switch (spec->kind) {
  case L_LAST: return last_step(L, in, site);
  case L_EMBED: return embedding(L, layer, in, site);
  case L_RNN:
  case L_LSTM:
  case L_GRU: return recurrent_layer(L, layer, in, site);
  case L_DENSE: {
    int64_t out = layer->cfg[0];
    // A sequence [T, N] gets the same dense layer at every step: [T, out].
    bool seq = r == 2 && shape_batched(s) && !L->rec;
    if ((r != 1 && !seq) || in->type != T_F32) {
      error_at(site->loc, "%s(%lld) expects a [N] input, got %s%s", spec->name, (long long)out, ss,
               r > 1 ? "; insert 'flatten'" : "");
      return NULL;
    }
    int64_t fan_in = s.d[s.rank - 1];
    if (layer->wparam < 0) {
      int64_t wd[2] = {out, fan_in};
      layer->wparam = add_param(L, layer, "weight", shape_make(2, wd), fan_in,
                                INIT_KAIMING_UNIFORM, layer->loc);
      if (layer->cfg[1])
        layer->bparam = add_param(L, layer, "bias", shape_make(1, &out), fan_in,
                                  INIT_BIAS_UNIFORM, layer->loc);
      int64_t ad[2] = {layer->lora_rank, fan_in}, bd[2] = {out, layer->lora_rank};
      if (layer->lora_rank && !lora_params(L, layer, shape_make(2, ad), shape_make(2, bd), fan_in,
                                           out < fan_in ? out : fan_in))
        return NULL;
    } else if (L->g->params[layer->wparam].shape.d[1] != fan_in) {
      error_at(site->loc, "layer '%s' was built for [%lld] inputs, got %s", layer->name,
               (long long)L->g->params[layer->wparam].shape.d[1], ss);
      return NULL;
    }
    b->loc = site->loc;
    int64_t ia[8] = {0, 1};
    Value *mm_in[2] = {in, pval(L, layer->wparam)};
    Value *y = ir_new(b, OP_matmul, 2, mm_in, ia, 0);
    if (layer->bparam >= 0)
      y = ir_binary(b, OP_add, y, ir_bcast(b, pval(L, layer->bparam), y ? y->shape : s, 1u << (s.rank - 1)));
    return lora_add(L, layer, in, y);
  }
  case L_CONV2D: {
    int64_t out = layer->cfg[0], k = layer->cfg[1], st = layer->cfg[2], pad = layer->cfg[3];
    if (r != 3 || in->type != T_F32) {
      error_at(site->loc, "%s(%lld) expects a [C, H, W] input, got %s", spec->name, (long long)out, ss);
      return NULL;
    }
    int64_t c = s.d[s.rank - 3];
    if (s.d[s.rank - 2] + 2 * pad < k || s.d[s.rank - 1] + 2 * pad < k) {
      error_at(site->loc, "a %lldx%lld kernel does not fit the %s input (padding %lld)", (long long)k, (long long)k,
               ss, (long long)pad);
      return NULL;
    }
    if (layer->wparam < 0) {
      int64_t wd[4] = {out, c, k, k};
      layer->wparam = add_param(L, layer, "weight", shape_make(4, wd), c * k * k,
                                INIT_KAIMING_UNIFORM, layer->loc);
      if (layer->cfg[4])
        layer->bparam = add_param(L, layer, "bias", shape_make(1, &out), c * k * k,
                                  INIT_BIAS_UNIFORM, layer->loc);
      int64_t ad[4] = {layer->lora_rank, c, k, k}, bd[4] = {out, layer->lora_rank, 1, 1};
      if (layer->lora_rank && !lora_params(L, layer, shape_make(4, ad), shape_make(4, bd), c * k * k,
                                           out < c * k * k ? out : c * k * k))
        return NULL;
    } else if (L->g->params[layer->wparam].shape.d[1] != c) {
      error_at(site->loc, "layer '%s' was built for %lld input channels, got %s", layer->name,
               (long long)L->g->params[layer->wparam].shape.d[1], ss);
      return NULL;
    }
    b->loc = site->loc;
    int64_t ia[8] = {st, pad};
    Value *cin[2] = {in, pval(L, layer->wparam)};
    Value *y = ir_new(b, OP_conv2d, 2, cin, ia, 0);
    if (y && layer->bparam >= 0)
      y = ir_binary(b, OP_add, y, ir_bcast(b, pval(L, layer->bparam), y->shape, 1u << 1));
    return lora_add(L, layer, in, y);
  }
  case L_RELU: return ir_unary(b, OP_relu, in);
  case L_TANH: return ir_unary(b, OP_tanh, in);
  case L_SIGMOID: return ir_unary(b, OP_sigmoid, in);
  case L_EXP: return ir_unary(b, OP_exp, in);
  case L_LOG: return ir_unary(b, OP_log, in);
  case L_SQRT: return ir_unary(b, OP_sqrt, in);
  case L_SOFTMAX:
    if (r < 1) {
      error_at(site->loc, "softmax needs a vector, got a scalar");
      return NULL;
    }
    return ir_unary(b, OP_softmax, in);
  case L_FLATTEN: {
    if (!shape_batched(s)) {
      error_at(site->loc, "flatten needs a per-sample tensor, got a scalar or parameter");
      return NULL;
    }
    int64_t d[2] = {DIM_BATCH, shape_numel(s)};
    return ir_reshape(b, in, shape_make(2, d));
  }
  case L_MAXPOOL: {
    int64_t k = layer->cfg[0], st = layer->cfg[1] > 0 ? layer->cfg[1] : k;
    if (r < 2) {
      error_at(site->loc, "maxpool(%lld) expects a [C, H, W] or [H, W] input, got %s", (long long)k, ss);
      return NULL;
    }
    int64_t ia[8] = {k, st};
    return ir_new(b, OP_maxpool, 1, &in, ia, 0);
  }
  case L_CONCAT: {
    int64_t axis = layer->cfg[0];
    if (axis >= r || x[1]->shape.rank != s.rank) {
      error_at(site->loc, "concat along axis %lld of %s and %s: no such axis", (long long)axis, ss,
               shape_str_sample(x[1]->shape));
      return NULL;
    }
    int64_t ia[8] = {axis + (shape_batched(s) ? 1 : 0)};
    return ir_new(b, OP_concat, 2, x, ia, 0);
  }
  case L_XENT: {
    Value *y = x[1];
    if (y->op == OP_label && L->g->info.steps) return step_xent(L, in, y, site);
    if (y->op != OP_label || y->type != T_I32) {
      error_at(site->loc, "cross_entropy needs class labels as its second operand (a 'target y: class(K)' or 'tokens[T]')");
      return NULL;
    }
    if (r != 1) {
      error_at(site->loc, "cross_entropy expects [K] logits, got %s%s", ss, r > 1 ? "; insert 'flatten'" : "");
      return NULL;
    }
    if (s.d[s.rank - 1] != L->g->info.nclasses) {
      error_at(site->loc, "cross_entropy: the logits have %lld classes but the target has class(%lld)",
               (long long)s.d[s.rank - 1], (long long)L->g->info.nclasses);
      return NULL;
    }
    return xent_loss(L, in, y, 1);
  }
  case L_MSE: {
    Value *t = x[1];
    if (t->type != T_F32 || !shape_eq(t->shape, s)) {
      error_at(site->loc, "mse needs two tensors of the same shape, got %s and %s%s", ss,
               t->type == T_I32 ? "class labels" : shape_str_sample(t->shape),
               t->type == T_I32 ? " (use cross_entropy for classes)" : "");
      return NULL;
    }
    if (!L->g->logits) L->g->logits = in;
    Value *d = ir_binary(b, OP_sub, in, t);
    Value *sq = ir_binary(b, OP_mul, ir_binary(b, OP_mul, d, d), ir_const(b, 0.5));
    Value *tot = ir_sum(b, sq, shape_make(0, NULL), 0);
    double w = (double)shape_numel(s);
    Value *scale = ir_binary(b, OP_mul, ir_leaf(b, OP_hyper, shape_make(0, NULL), T_F32, HYP_INVN, 0),
                             ir_const(b, 1.0 / w));
    return ir_binary(b, OP_mul, tot, scale);
  }
  }
  unreachable();
}

// The fine-tuning options of a layer with parameters:
//   trainable=false   every tensor frozen      trainable=bias   only the biases train
//   lr_mult=F         its learning rate is F times the optimizer's
static bool layer_options(Lower *L, Layer *l, Args *cfg) {
  Node *t = cfg->trainable, *m = cfg->lr_mult;
  if (t) {
    bool is_bias = t->kind == N_IDENT && !strcmp(t->name, "bias");
    if (t->kind != N_BOOL && !is_bias) {
      error_at(t->loc, "'trainable' of %s must be true, false or bias", l->spec->name);
      return false;
    }
    if (is_bias || t->num == 0) {
      l->freeze_w = true;
      l->freeze_b = !is_bias;
      l->frozen_at = L->last_freeze = t->loc;
    }
  }
  if (m) {
    if (m->kind != N_NUM || !(m->num > 0) || m->num > 1e6) {
      error_at(m->loc, "'lr_mult' of %s must be a number above 0 and at most 1e6", l->spec->name);
      if (m->kind == N_NUM && m->num == 0) hint("to keep a layer's weights fixed, write 'trainable=false'");
      return false;
    }
    l->lr_mult = m->num;
  }
  return true;
}

// Looks up or creates the layer a call site refers to.
static Layer *make_layer(Lower *L, const LayerSpec *spec, Node *call, Args *cfg) {
  Layer *l = arena_alloc(sizeof(Layer));
  l->spec = spec;
  l->wparam = l->bparam = -1;
  l->lr_mult = 1;
  l->loc = call->loc;
  const char *ln = spec->name;
  Loc where = call->loc;
  switch (spec->kind) {
  case L_CONV2D:
    l->cfg[0] = int_arg(cfg->node[0], ln, "out", INT64_MIN, 1, 1 << 20, where);
    l->cfg[1] = int_arg(cfg->node[1], ln, "kernel", INT64_MIN, 1, 64, where);
    l->cfg[2] = int_arg(cfg->node[2], ln, "stride", 1, 1, 64, where);
    l->cfg[3] = int_arg(cfg->node[3], ln, "pad", 0, 0, 64, where);
    l->cfg[4] = bool_arg(cfg->node[4], ln, "bias", true);
    break;
  case L_DENSE:
    l->cfg[0] = int_arg(cfg->node[0], ln, "out", INT64_MIN, 1, 1 << 24, where);
    l->cfg[1] = bool_arg(cfg->node[1], ln, "bias", true);
    break;
  case L_MAXPOOL:
    l->cfg[0] = int_arg(cfg->node[0], ln, "size", INT64_MIN, 1, 64, where);
    l->cfg[1] = int_arg(cfg->node[1], ln, "stride", 0, 1, 64, where);
    break;
  case L_CONCAT: l->cfg[0] = int_arg(cfg->node[0], ln, "axis", 0, 0, 5, where); break;
  case L_RNN:
  case L_LSTM:
  case L_GRU: {
    l->cfg[0] = int_arg(cfg->node[0], ln, "hidden", INT64_MIN, 1, 1 << 16, where);
    l->cfg[1] = int_arg(cfg->node[1], ln, "layers", 1, 1, 16, where);
    l->cfg[2] = bool_arg(cfg->node[2], ln, "bidirectional", false);
    Node *act = cfg->node[3];
    if (act && (act->kind != N_IDENT || (strcmp(act->name, "tanh") && strcmp(act->name, "relu")))) {
      error_at(act->loc, "'activation' of %s must be tanh or relu", ln);
      return NULL;
    }
    l->cfg[3] = act && !strcmp(act->name, "relu");
    break;
  }
  case L_EMBED:
    l->cfg[0] = int_arg(cfg->node[0], ln, "vocab", INT64_MIN, 2, 1 << 24, where);
    l->cfg[1] = int_arg(cfg->node[1], ln, "dim", INT64_MIN, 1, 1 << 16, where);
    break;
  default: break;
  }
  for (int i = 0; i < 6; i++)
    if (l->cfg[i] < 0) return NULL;
  // Name: "as NAME", else the kind and a counter (conv1, conv2, dense1, ...).
  if (call->alias) {
    Layer *prev = find_layer(L, call->alias);
    if (prev || lookup(L, call->alias)) {
      error_at(call->alias_loc, "the name '%s' is already used", call->alias);
      return NULL;
    }
    l->name = call->alias;
    l->loc = call->alias_loc;
  } else if (spec->has_params) {
    const char *base = spec->kind == L_CONV2D ? "conv" : spec->name;
    do
      l->name = arena_printf("%s%d", base, ++L->counter[spec->kind]);
    while (find_layer(L, l->name));
  } else {
    l->name = spec->name;
    return l;  // unnamed and parameterless: not recorded
  }
  if (spec->has_params && !layer_options(L, l, cfg)) return NULL;
  vec_push(&L->layers, l);
  return l;
}

static void unknown_callee(Lower *L, Node *n, const char *name) {
  error_at(n->loc, "unknown layer or function '%s'", name);
  const char *c = closest_word(name, spec_names());
  if (!c) c = closest_word(name, binding_names(L));
  if (c) hint("did you mean '%s'?", c);
}

// A call `f(args)`, with `piped` the value flowing in from `lhs -> f(args)`.
static Value *lower_call(Lower *L, Node *call, Node *piped_node, Value *piped) {
  // A reused layer: `h -> conv1` or `conv1(h)`.
  Layer *reuse = call->nargs == 0 || piped == NULL ? find_layer(L, call->name) : NULL;
  if (reuse && call->alias == NULL) {
    Value *x[2] = {piped, NULL};
    if (!piped) {
      if (call->nargs != 1) {
        error_at(call->loc, "layer '%s' takes one tensor", call->name);
        return NULL;
      }
      x[0] = lower_expr(L, call->args[0]);
      if (!x[0]) return NULL;
    }
    return apply_layer(L, reuse, x, call);
  }
  const LayerSpec *spec = find_spec(call->name);
  if (!spec) {
    unknown_callee(L, call, call->name);
    return NULL;
  }
  Node *lora;
  if (!(call = take_lora(call, spec, &lora))) return NULL;
  Node *tensors[4];
  int nt;
  Args cfg;
  if (!split_args(L, call, spec, piped_node, tensors, &nt, &cfg)) return NULL;
  Value *x[4] = {0};
  bool ok = true;
  for (int i = 0; i < nt; i++) {
    x[i] = (i == 0 && piped) ? piped : lower_expr(L, tensors[i]);
    ok &= x[i] != NULL;
  }
  if (!ok) return NULL;
  Layer *layer = make_layer(L, spec, call, &cfg);
  if (!layer || (lora && !lora_config(layer, lora))) return NULL;
  return apply_layer(L, layer, x, call);
}

//
// Recurrent blocks
//
//   recurrent over t in x {       x: a sequence [T, F]; the block's value is
//       state h: [H] = 0          every step's emitted value, [T, ...]
//       h = f(x[t], h)            a state's last assignment is its update
//       emit h
//   }
static bool lower_type(Lower *L, Node *t, Shape *s, bool *is_class, int64_t *k);

static int binding_index(Lower *L, Binding *bd) {
  for (int i = L->bindings.len - 1; i >= 0; i--)
    if (L->bindings.data[i] == bd) return i;
  return -1;
}

static bool is_state_name(Recur *r, const char *name, Node **decl) {
  for (int i = 0; i < r->npending; i++)
    if (!strcmp(r->pending[i]->name, name)) {
      *decl = r->pending[i];
      return true;
    }
  return false;
}

static Value *lower_index(Lower *L, Node *n) {
  Recur *r = L->rec;
  Node *seq = n->lhs, *ix = n->rhs;
  if (!r) {
    error_at(n->loc, "'%s[%s]' outside a recurrent block", seq->name, ix->kind == N_IDENT ? ix->name : "...");
    hint("a time step x[t] is only defined inside 'recurrent over t in x { ... }'");
    return NULL;
  }
  if (ix->kind != N_IDENT || strcmp(ix->name, r->tvar)) {
    error_at(ix->loc, "a sequence is indexed by the step variable '%s'", r->tvar);
    return NULL;
  }
  Binding *bd = lookup(L, seq->name);
  if (!bd) {
    error_at(seq->loc, "undefined tensor '%s'", seq->name);
    return NULL;
  }
  if (!bd->v) return NULL;
  if (binding_index(L, bd) >= r->bind0) {
    error_at(seq->loc, "'%s' is a tensor of this block, not a sequence it runs over", seq->name);
    return NULL;
  }
  Shape s = bd->v->shape;
  if (!shape_batched(s) || s.rank < 3 || s.d[1] != r->loop->T) {
    error_at(seq->loc, "'%s' is %s, not a sequence of %lld steps", seq->name, shape_str_sample(s),
             (long long)r->loop->T);
    return NULL;
  }
  return loop_formal(r->loop, LF_SLICE, bd->v, s, seq->name);
}

static Value *lower_recur(Lower *L, Node *n) {
  if (L->rec) {
    error_at(n->loc, "recurrent blocks cannot be nested");
    return NULL;
  }
  Binding *sb = lookup(L, n->lhs->name);
  if (!sb) {
    error_at(n->lhs->loc, "undefined tensor '%s'", n->lhs->name);
    return NULL;
  }
  if (!sb->v) return NULL;
  Shape ss = sb->v->shape;
  if (!shape_batched(ss) || ss.rank < 3) {
    error_at(n->lhs->loc, "recurrent runs over a sequence [T, ...], but '%s' is %s", n->lhs->name,
             shape_str_sample(ss));
    if (sb->v->type == T_I32) hint("embed token ids first: 'e = %s -> embedding(vocab, dim)', then 'recurrent over t in e'", n->lhs->name);
    return NULL;
  }
  Recur rec = {0};
  rec.loop = loop_new(L->g, ss.d[1], n->loc);
  rec.loop->name = "recurrent";
  rec.outer = L->b;
  rec.tvar = n->name;
  rec.bind0 = L->bindings.len;
  rec.pending = arena_alloc(sizeof(Node *) * (size_t)(n->nargs + 1));
  for (int i = 0; i < n->nargs; i++)
    if (n->args[i]->kind == N_STATE) rec.pending[rec.npending++] = n->args[i];
  int errs = error_count();
  L->rec = &rec;
  L->b = (Builder){rec.loop->body, n->loc, PH_FWD};
  Node **states = arena_alloc(sizeof(Node *) * (size_t)(n->nargs + 1));
  int *sformal = arena_alloc(sizeof(int) * (size_t)(n->nargs + 1));
  int nstates = 0;
  Node *emit = NULL;
  Value *emitted = NULL;
  for (int i = 0; i < n->nargs; i++) {
    Node *st = n->args[i];
    switch (st->kind) {
    case N_STATE: {
      for (int j = 0; j < rec.npending; j++)
        if (rec.pending[j] == st) rec.pending[j] = rec.pending[--rec.npending];
      Binding *prev = lookup(L, st->name);
      if (prev && binding_index(L, prev) >= rec.bind0) {
        error_at(st->loc, "the name '%s' is already used in this block", st->name);
        continue;
      }
      Shape s;
      bool cls;
      int64_t k;
      if (!lower_type(L, st->lhs, &s, &cls, &k)) continue;
      if (cls || st->lhs->name) {
        error_at(st->lhs->loc, "a state needs a shape such as [128], not a class or tokens type");
        continue;
      }
      // The initial value belongs to the enclosing graph.
      Builder inner = L->b;
      Recur *keep = L->rec;
      L->b = rec.outer;
      L->rec = NULL;
      Value *init = lower_expr(L, st->rhs);
      L->b = inner;
      L->rec = keep;
      if (!init) continue;
      if (init->shape.rank != 0 && !shape_eq(init->shape, s)) {
        error_at(st->rhs->loc, "state '%s' is %s but its initial value is %s", st->name, shape_str_sample(s),
                 shape_str_sample(init->shape));
        continue;
      }
      Value *leaf = loop_formal(rec.loop, LF_STATE, init, s, st->name);
      states[nstates] = st;
      sformal[nstates++] = rec.loop->nformals - 1;
      bind(L, st->name, leaf, st->loc);
      break;
    }
    case N_ASSIGN: {
      Value *v = lower_expr(L, st->lhs);
      bind(L, st->name, v, st->loc);
      if (v && !v->name) v->name = st->name;
      break;
    }
    case N_EMIT:
      if (emit) {
        error_at(st->loc, "a recurrent block emits one value; the first 'emit' is on line %d", emit->loc.line);
        continue;
      }
      emit = st;
      emitted = lower_expr(L, st->lhs);
      if (emitted && !shape_batched(emitted->shape)) {
        error_at(st->lhs->loc, "emit needs a per-sample tensor, got %s", shape_str(emitted->shape));
        emitted = NULL;
      }
      break;
    default: error_at(st->loc, "expected 'state', an assignment or 'emit' in a recurrent block"); break;
    }
  }
  LoopInfo *l = rec.loop;
  // Each state's update is its newest binding.
  for (int i = 0; i < nstates; i++) {
    Binding *bd = lookup(L, states[i]->name);
    Value *leaf = NULL;
    for (int j = 0; j < l->body->values.len && !leaf; j++) {
      Value *v = l->body->values.data[j];
      if (v->op == OP_formal && v->ia[0] == sformal[i]) leaf = v;
    }
    if (!bd->v) continue;
    if (bd->v == leaf) {
      error_at(states[i]->loc, "state '%s' is never updated", states[i]->name);
      hint("assign it in the block: '%s = ...'", states[i]->name);
      continue;
    }
    if (!shape_eq(bd->v->shape, l->formals[sformal[i]].shape)) {
      error_at(bd->loc, "the update of state '%s' is %s, but the state is %s", states[i]->name,
               shape_str_sample(bd->v->shape), shape_str_sample(l->formals[sformal[i]].shape));
      continue;
    }
    l->formals[sformal[i]].next = loop_output(l, LO_LAST, bd->v);
  }
  if (!emit) error_at(n->loc, "a recurrent block needs 'emit VALUE' (what each step outputs)");
  L->bindings.len = rec.bind0;
  L->b = rec.outer;
  L->rec = NULL;
  if (error_count() > errs || !emitted) return NULL;
  int ys = loop_output(l, LO_STACK, emitted);
  Value *outs[128];
  L->b.loc = n->loc;
  if (!loop_finish(&L->b, l, outs)) return NULL;
  for (int j = 0; j < l->nouts; j++)
    if (l->outs[j].kind == LO_LAST && l->outs[j].store->in[0] == l->outs[ys].store->in[0])
      note_last(L, outs[ys], outs[j]);
  return outs[ys];
}

static Value *lower_expr(Lower *L, Node *n) {
  Builder *b = &L->b;
  switch (n->kind) {
  case N_NUM: b->loc = n->loc; return ir_const(b, n->num);
  case N_INDEX: return lower_index(L, n);
  case N_RECUR: return lower_recur(L, n);
  case N_IDENT: {
    Binding *bd = lookup(L, n->name);
    Node *decl;
    if (L->rec && !bd && is_state_name(L->rec, n->name, &decl)) {
      error_at(n->loc, "state '%s' is used before it is declared", n->name);
      hint("'state %s' is declared on line %d", n->name, decl->loc.line);
      return NULL;
    }
    if (bd && L->rec && binding_index(L, bd) < L->rec->bind0) return outer_use(L, bd->v);
    if (bd) return bd->v;
    if (find_spec(n->name) || find_layer(L, n->name)) {
      error_at(n->loc, "'%s' is a layer, not a tensor", n->name);
      hint("apply it with 'x -> %s' or '%s(x)'", n->name, n->name);
      return NULL;
    }
    error_at(n->loc, "undefined tensor '%s'", n->name);
    const char *c = closest_word(n->name, binding_names(L));
    if (c) hint("did you mean '%s'?", c);
    return NULL;
  }
  case N_CALL: return lower_call(L, n, NULL, NULL);
  case N_PIPE: {
    Value *x = lower_expr(L, n->lhs);
    if (!x) return NULL;
    Node *st = n->rhs;
    if (st->kind == N_IDENT) {
      Node call = *st;
      call.kind = N_CALL;
      call.nargs = 0;
      call.args = NULL;
      return lower_call(L, &call, n->lhs, x);
    }
    if (st->kind != N_CALL) {
      error_at(st->loc, "expected a layer after '->'");
      return NULL;
    }
    return lower_call(L, st, n->lhs, x);
  }
  case N_BINOP: {
    Value *a = lower_expr(L, n->lhs), *c = lower_expr(L, n->rhs);
    if (!a || !c) return NULL;
    b->loc = n->loc;
    Op op = n->op == '+' ? OP_add : n->op == '-' ? OP_sub : n->op == '*' ? OP_mul : OP_div;
    return ir_binary(b, op, a, c);
  }
  case N_NEG: {
    Value *a = lower_expr(L, n->lhs);
    b->loc = n->loc;
    return a ? ir_unary(b, OP_neg, a) : NULL;
  }
  case N_STR: error_at(n->loc, "a string is not a tensor"); return NULL;
  case N_BOOL: error_at(n->loc, "'%s' is not a tensor", n->num ? "true" : "false"); return NULL;
  case N_LIST: error_at(n->loc, "a list is not a tensor"); return NULL;
  default: error_at(n->loc, "expected an expression"); return NULL;
  }
}

//
// Freezing
//
//   freeze conv1, conv2        layers by name
//   freeze conv1..conv2        a range, in the order the layers were defined
//   freeze up to conv2         every layer up to and including conv2
//   freeze conv1.weight        one kind of tensor: conv1 then trains its bias only
//
// Frozen parameters get no gradient and no optimizer state (autodiff.c, optim.c).
static int layer_pos(Lower *L, Layer *l) {
  for (int i = 0; i < L->layers.len; i++)
    if (L->layers.data[i] == l) return i;
  return -1;
}

static const char **layer_names(Lower *L) {
  const char **names = arena_alloc(sizeof(char *) * (size_t)(L->layers.len + 1));
  for (int i = 0; i < L->layers.len; i++) names[i] = ((Layer *)L->layers.data[i])->name;
  return names;
}

// The layer with parameters a freeze statement names, or NULL after an error.
static Layer *freeze_target(Lower *L, Node *id) {
  Layer *l = find_layer(L, id->name);
  if (l && l->spec->has_params) return l;
  if (l)
    error_at(id->loc, "layer '%s' (%s) has no parameters to freeze", id->name, l->spec->name);
  else if (lookup(L, id->name))
    error_at(id->loc, "'%s' is a tensor, not a layer; freeze names layers such as 'conv1'", id->name);
  else if (find_spec(id->name))
    error_at(id->loc, "'%s' is a kind of layer; freeze names layers such as 'conv1' or 'dense2'", id->name);
  else {
    error_at(id->loc, "no layer named '%s' to freeze", id->name);
    const char *c = closest_word(id->name, layer_names(L));
    if (c) hint("did you mean '%s'?", c);
    else hint("layers are named conv1, dense1, ... in order, or 'as NAME'");
  }
  return NULL;
}

static void freeze_layer(Lower *L, Layer *l, bool w, bool b, Loc at) {
  if ((w && l->freeze_w) || (b && l->freeze_b)) {
    error_at(at, "layer '%s' is frozen twice", l->name);
    hint("it is first frozen on line %d", l->frozen_at.line);
    return;
  }
  if (!l->freeze_w && !l->freeze_b) l->frozen_at = at;
  l->freeze_w |= w;
  l->freeze_b |= b;
}

static void lower_freeze(Lower *L, Node *st) {
  L->last_freeze = st->loc;
  for (int i = 0; i < st->nargs; i++) {
    Node *it = st->args[i];
    if (it->kind == N_RANGE) {
      Layer *a = it->lhs ? freeze_target(L, it->lhs) : L->layers.len ? L->layers.data[0] : NULL;
      Layer *b = freeze_target(L, it->rhs);
      if (!a || !b) continue;
      int ia = layer_pos(L, a), ib = layer_pos(L, b);
      if (ia > ib) {
        error_at(it->loc, "the range %s..%s runs backwards: '%s' comes before '%s'", a->name, b->name, b->name,
                 a->name);
        hint("write 'freeze %s..%s'", b->name, a->name);
        continue;
      }
      for (int k = ia; k <= ib; k++) {
        Layer *l = L->layers.data[k];
        if (l->spec->has_params) freeze_layer(L, l, true, true, it->loc);
      }
      continue;
    }
    Layer *l = freeze_target(L, it);
    if (!l) continue;
    if (!it->rhs) {
      freeze_layer(L, l, true, true, it->loc);
      continue;
    }
    const char *part = it->rhs->name;
    if (strcmp(part, "weight") && strcmp(part, "bias")) {
      error_at(it->rhs->loc, "'%s.%s': a layer's tensors are frozen as '%s.weight' or '%s.bias'", l->name, part,
               l->name, l->name);
      continue;
    }
    if (!strcmp(part, "bias") && l->bparam < 0 && l->spec->kind != L_RNN && l->spec->kind != L_LSTM &&
        l->spec->kind != L_GRU) {
      error_at(it->rhs->loc, "layer '%s' has no bias", l->name);
      continue;
    }
    freeze_layer(L, l, !strcmp(part, "weight"), !strcmp(part, "bias"), it->loc);
  }
}

// Marks the parameters of frozen layers, and gives each its layer's learning
// rate multiplier.
static void apply_freezing(Lower *L) {
  Graph *g = L->g;
  int trainable = 0;
  for (int i = 0; i < g->nparams; i++) {
    Param *p = &g->params[i];
    Layer *l = find_layer(L, p->layer);
    if (!l) continue;
    // (a LoRA adapter's base is frozen already; its adapters count as weights)
    p->frozen = p->frozen || (p->bias ? l->freeze_b : l->freeze_w);
    p->lr_mult = l->lr_mult;
    trainable += !p->frozen;
  }
  if (g->nparams && !trainable) {
    error_at(L->last_freeze, "every parameter is frozen: nothing is left to train");
    hint("leave at least one layer trainable, such as the classifier");
  }
}

//
// Declarations and sections
//
static bool lower_type(Lower *L, Node *t, Shape *s, bool *is_class, int64_t *k) {
  *is_class = false;
  if (t->kind == N_TCLASS) {
    if (t->num < 2 || t->num != floor(t->num) || t->num > 1e7) {
      error_at(t->loc, "class(K) needs a whole number of classes K >= 2, got %g", t->num);
      return false;
    }
    *is_class = true;
    *k = (int64_t)t->num;
    s->rank = 1;
    s->d[0] = DIM_BATCH;
    return true;
  }
  if (t->name && strcmp(t->name, "tokens")) {
    error_at(t->loc, "unknown type '%s'", t->name);
    hint("the types are [dims], class(K) and tokens[T]");
    return false;
  }
  if (t->name && t->nargs != 1) {
    error_at(t->loc, "tokens[T] has one dimension, the number of steps T; got %d", t->nargs);
    return false;
  }
  if (t->nargs < 1 || t->nargs > MAXRANK - 1) {
    error_at(t->loc, "a tensor type needs 1 to %d dimensions, got %d", MAXRANK - 1, t->nargs);
    return false;
  }
  s->rank = t->nargs + 1;
  s->d[0] = DIM_BATCH;
  for (int i = 0; i < t->nargs; i++) {
    Node *d = t->args[i];
    if (d->kind != N_NUM || !d->is_int || d->num < 1 || d->num > 1e8) {
      error_at(d->loc, "a dimension must be a positive whole number");
      return false;
    }
    s->d[i + 1] = (int64_t)d->num;
  }
  return true;
}

static void lower_model(Lower *L, Node *m) {
  Graph *g = L->g;
  Builder *b = &L->b;
  g->info.name = m->name;
  int errs = error_count();
  Node *input = NULL, *target = NULL, *loss = NULL;
  for (int i = 0; i < m->nargs; i++) {
    Node *st = m->args[i];
    b->loc = st->loc;
    switch (st->kind) {
    case N_INPUT:
    case N_TARGET: {
      Node **slot = st->kind == N_INPUT ? &input : &target;
      if (lookup(L, st->name)) {
        error_at(st->loc, "the name '%s' is already used", st->name);
        continue;
      }
      if (*slot) {
        error_at(st->loc, "only one %s is supported; '%s' is already declared", st->kind == N_INPUT ? "input" : "target",
                 (*slot)->name);
        continue;
      }
      *slot = st;
      Shape s;
      bool cls;
      int64_t k = 0;
      if (!lower_type(L, st->lhs, &s, &cls, &k)) {
        bind(L, st->name, NULL, st->loc);
        continue;
      }
      bool tok = st->lhs->kind == N_TSHAPE && st->lhs->name;
      if (st->kind == N_INPUT) {
        if (cls) {
          error_at(st->lhs->loc, "an input needs a shape such as [1, 28, 28], not a class type");
          continue;
        }
        g->info.tokens = tok;
        g->x = ir_leaf(b, OP_input, s, tok ? T_I32 : T_F32, 0, 0);
        g->x->name = st->name;
        g->info.input = s;
        bind(L, st->name, g->x, st->loc);
      } else if (tok) {
        // Class ids per step; the classes come from the logits of cross_entropy.
        g->info.classify = true;
        g->info.steps = s.d[1];
        g->y = ir_leaf(b, OP_label, s, T_I32, 0, 0);
        g->y->name = st->name;
        L->y = g->y;
        bind(L, st->name, g->y, st->loc);
      } else {
        g->info.classify = cls;
        g->info.nclasses = cls ? k : shape_numel(s);
        if (!cls && s.rank != 2) {
          error_at(st->lhs->loc, "a regression target needs one dimension, such as [1]");
          continue;
        }
        g->y = ir_leaf(b, OP_label, s, cls ? T_I32 : T_F32, 0, 0);
        g->y->name = st->name;
        L->y = g->y;
        bind(L, st->name, g->y, st->loc);
      }
      break;
    }
    case N_ASSIGN: {
      if (find_layer(L, st->name)) {
        error_at(st->loc, "'%s' names a layer; pick another name for the tensor", st->name);
        continue;
      }
      Binding *prev = lookup(L, st->name);
      if (prev && (prev->v == g->x || prev->v == g->y)) {
        error_at(st->loc, "cannot assign to '%s': it is the model's %s", st->name, prev->v == g->x ? "input" : "target");
        continue;
      }
      Value *v = lower_expr(L, st->lhs);
      bind(L, st->name, v, st->loc);
      if (v) v->name = st->name;
      break;
    }
    case N_LOSS: {
      if (loss) {
        error_at(st->loc, "a model has one loss; add the terms instead");
        continue;
      }
      loss = st;
      Value *v = lower_expr(L, st->lhs);
      if (!v) continue;
      if (v->shape.rank != 0) {
        error_at(st->lhs->loc, "the loss must be a scalar, got %s", shape_str_sample(v->shape));
        hint("use cross_entropy(logits, y) or mse(prediction, target)");
        continue;
      }
      g->loss = v;
      break;
    }
    case N_FREEZE: break;  // after the layers exist
    default: error_at(st->loc, "unexpected statement in a model"); break;
    }
  }
  int ferrs = error_count();
  for (int i = 0; i < m->nargs; i++)
    if (m->args[i]->kind == N_FREEZE) lower_freeze(L, m->args[i]);
  if (error_count() == ferrs) apply_freezing(L);
  if (!input) error_at(m->loc, "model '%s' has no input; declare one, e.g. 'input x: [1, 28, 28]'", m->name);
  if (!target) error_at(m->loc, "model '%s' has no target; declare one, e.g. 'target y: class(10)'", m->name);
  if (!loss) error_at(m->loc, "model '%s' has no loss; add e.g. 'loss cross_entropy(logits, y)'", m->name);
  // (only when nothing else is wrong: a failed embedding call says it first)
  if (input && g->x && g->info.tokens && !g->info.vocab && error_count() == errs) {
    error_at(input->loc, "the tokens input '%s' is not read by an embedding", input->name);
    hint("token ids become float vectors through '%s -> embedding(vocab, dim)'", input->name);
  }
  if (loss && g->loss && g->info.steps && !g->info.nclasses)
    error_at(target->loc, "the tokens target '%s' is not used: give it to cross_entropy with per-step logits [%lld, V]",
             target->name, (long long)g->info.steps);
}

// Reads a numeric keyword argument; reports anything else.
static bool num_kwarg(Node *a, double *out, double lo, double hi, bool lo_open, const char *where) {
  Node *v = a->lhs;
  double x;
  if (v->kind == N_NUM)
    x = v->num;
  else if (v->kind == N_NEG && v->lhs->kind == N_NUM)
    x = -v->lhs->num;
  else {
    error_at(v->loc, "'%s' of %s must be a number", a->name, where);
    return false;
  }
  if (x < lo || x > hi || (lo_open && x == lo) || isnan(x)) {
    if (hi >= 1e6)
      error_at(v->loc, "'%s' of %s must be %s %g, got %g", a->name, where, lo_open ? "greater than" : "at least", lo, x);
    else
      error_at(v->loc, "'%s' of %s must be between %g and %g, got %g", a->name, where, lo, hi, x);
    return false;
  }
  *out = x;
  return true;
}

// schedule=constant(warmup=W) | step(step_size=S, gamma=G, warmup=W)
//        | cosine(min_lr=M, warmup=W): how the runtime moves lr over the run.
static void lower_schedule(Node *n, Schedule *sc, double lr) {
  static const char *const kinds[] = {"constant", "step", "cosine", NULL};
  static const char *const args[3][4] = {{"warmup", NULL}, {"step_size", "gamma", "warmup", NULL},
                                         {"min_lr", "warmup", NULL}};
  if (n->kind != N_CALL) {
    error_at(n->loc, "a schedule is constant(...), step(...) or cosine(...)");
    hint("e.g. 'schedule=cosine(warmup=100, min_lr=1e-5)'");
    return;
  }
  int k = 0;
  while (kinds[k] && strcmp(kinds[k], n->name)) k++;
  if (!kinds[k]) {
    error_at(n->loc, "unknown schedule '%s'", n->name);
    const char *h = closest_word(n->name, kinds);
    hint(h ? "did you mean '%s'?" : "the schedules are %s", h ? h : "constant, step and cosine");
    return;
  }
  *sc = (Schedule){.kind = (SchedKind)k, .given = true, .gamma = 0.1};
  bool have_size = false;
  for (int i = 0; i < n->nargs; i++) {
    Node *a = n->args[i];
    if (a->kind != N_KWARG) {
      error_at(a->loc, "the arguments of %s are given by name", n->name);
      continue;
    }
    int j = 0;
    while (args[k][j] && strcmp(args[k][j], a->name)) j++;
    if (!args[k][j]) {
      error_at(a->loc, "unknown argument '%s' for the %s schedule", a->name, n->name);
      const char *h = closest_word(a->name, args[k]);
      if (h) hint("did you mean '%s'?", h);
      continue;
    }
    if (!strcmp(a->name, "warmup")) sc->warmup = int_arg(a->lhs, arena_printf("the %s schedule", n->name), "warmup", 0, 0, (int64_t)1 << 40, a->loc);
    if (!strcmp(a->name, "step_size")) {
      sc->step_size = int_arg(a->lhs, "the step schedule", "step_size", 0, 1, (int64_t)1 << 40, a->loc);
      have_size = true;
    }
    if (!strcmp(a->name, "gamma")) num_kwarg(a, &sc->gamma, 0, 1, true, "the step schedule");
    if (!strcmp(a->name, "min_lr") && num_kwarg(a, &sc->min_lr, 0, 1e6, false, "the cosine schedule") &&
        sc->min_lr >= lr)
      error_at(a->lhs->loc, "min_lr (%g) must be below the learning rate (%g)", sc->min_lr, lr);
  }
  if (k == SCHED_STEP && !have_size) error_at(n->loc, "the step schedule needs 'step_size' (steps between decays)");
}

// betas=[B1, B2], as PyTorch writes them.
static void betas_kwarg(Node *a, Optimizer *o, const char *where) {
  Node *l = a->lhs;
  if (l->kind != N_LIST || l->nargs != 2) {
    error_at(l->loc, "'betas' of %s must be a list of two numbers, such as [0.9, 0.999]", where);
    return;
  }
  Node k1 = {.kind = N_KWARG, .loc = l->args[0]->loc, .name = "beta1", .lhs = l->args[0]};
  Node k2 = {.kind = N_KWARG, .loc = l->args[1]->loc, .name = "beta2", .lhs = l->args[1]};
  num_kwarg(&k1, &o->beta1, 0, 1, false, where);
  num_kwarg(&k2, &o->beta2, 0, 1, false, where);
}

static void lower_optimizer(Lower *L, Node *sec) {
  Optimizer *o = &L->g->info.opt;
  Node *c = sec->lhs;
  o->loc = c->loc;
  static const char *const opts[] = {"adam", "adamw", "sgd", NULL};
  static const char *const adam_args[] = {"lr", "beta1", "beta2", "betas", "eps", "weight_decay", "clip", "schedule",
                                          NULL};
  static const char *const sgd_args[] = {"lr", "momentum", "weight_decay", "clip", "schedule", NULL};
  const char *const *names;
  if (!strcmp(c->name, "adam") || !strcmp(c->name, "adamw")) {
    o->kind = c->name[4] ? OPT_ADAMW : OPT_ADAM;
    if (o->kind == OPT_ADAMW) o->weight_decay = 0.01;  // PyTorch's default
    names = adam_args;
  } else if (!strcmp(c->name, "sgd")) {
    o->kind = OPT_SGD;
    names = sgd_args;
  } else {
    error_at(c->loc, "unknown optimizer '%s'", c->name);
    const char *h = closest_word(c->name, opts);
    hint(h ? "did you mean '%s'?" : "the optimizers are %s", h ? h : "adam, adamw and sgd");
    return;
  }
  Node *sched = NULL;
  for (int i = 0; i < c->nargs; i++) {
    Node *a = c->args[i];
    Node kw;
    if (a->kind != N_KWARG) {
      if (i != 0) {
        error_at(a->loc, "only the learning rate may be given without a name");
        continue;
      }
      kw = (Node){.kind = N_KWARG, .loc = a->loc, .name = "lr", .lhs = a};
      a = &kw;
    }
    int j = 0;
    while (names[j] && strcmp(names[j], a->name)) j++;
    if (!names[j]) {
      error_at(a->loc, "unknown argument '%s' for %s", a->name, c->name);
      const char *h = closest_word(a->name, names);
      if (h) hint("did you mean '%s'?", h);
      continue;
    }
    if (!strcmp(a->name, "lr")) num_kwarg(a, &o->lr, 0, 1e6, true, c->name);
    if (!strcmp(a->name, "beta1")) num_kwarg(a, &o->beta1, 0, 1, false, c->name);
    if (!strcmp(a->name, "beta2")) num_kwarg(a, &o->beta2, 0, 1, false, c->name);
    if (!strcmp(a->name, "betas")) betas_kwarg(a, o, c->name);
    if (!strcmp(a->name, "eps")) num_kwarg(a, &o->eps, 0, 1, true, c->name);
    if (!strcmp(a->name, "momentum")) num_kwarg(a, &o->momentum, 0, 1, false, c->name);
    if (!strcmp(a->name, "weight_decay")) num_kwarg(a, &o->weight_decay, 0, 1, false, c->name);
    if (!strcmp(a->name, "clip")) num_kwarg(a, &o->clip, 0, 1e9, true, c->name);
    if (!strcmp(a->name, "schedule")) sched = a->lhs;
  }
  if ((o->beta1 >= 1 || o->beta2 >= 1) && o->kind != OPT_SGD)
    error_at(c->loc, "%s's beta1 and beta2 must be below 1", c->name);
  if (o->momentum >= 1) error_at(c->loc, "sgd's momentum must be below 1");
  if (sched) lower_schedule(sched, &o->sched, o->lr);  // after lr, which min_lr must stay below
}

static const char *str_arg(Node *a, const char *what) {
  if (a->kind != N_STR) {
    error_at(a->loc, "%s must be a file name in double quotes", what);
    return NULL;
  }
  return a->name;
}

// The options of a data source call after its files:
//   label="NAME" / target="NAME"   (csv) the class or target column, by name
//   validation=F                   (train only) a fraction held out for validation
//   vocab="bytes" / vocab="file"   (text) ids are the bytes, or the file's distinct bytes
static void data_options(Lower *L, Node *c, int nfiles, DataSource *ds, bool is_train) {
  static const char *const csv_opts[] = {"label", "target", "validation", NULL};
  static const char *const idx_opts[] = {"validation", NULL};
  static const char *const text_opts[] = {"vocab", "validation", NULL};
  bool csv = !strcmp(c->name, "csv"), text = !strcmp(c->name, "text");
  const char *const *names = csv ? csv_opts : text ? text_opts : idx_opts;
  for (int i = nfiles; i < c->nargs; i++) {
    Node *a = c->args[i];
    if (a->kind != N_KWARG) {
      error_at(a->loc, "%s takes %d file%s, then options by name", c->name, nfiles, nfiles == 1 ? "" : "s");
      hint(csv ? "csv(\"FILE\", label=\"COLUMN\") or csv(\"FILE\", target=\"COLUMN\")"
               : "idx(\"IMAGES\", \"LABELS\", validation=0.1)");
      continue;
    }
    int j = 0;
    while (names[j] && strcmp(names[j], a->name)) j++;
    if (!names[j]) {
      error_at(a->loc, "unknown option '%s' for %s", a->name, c->name);
      const char *h = closest_word(a->name, names);
      if (h) hint("did you mean '%s'?", h);
      else hint("%s takes %s", c->name, csv ? "label=, target= and validation=" : text ? "vocab= and validation=" : "validation=");
      continue;
    }
    if (!strcmp(a->name, "vocab")) {
      if (a->lhs->kind != N_STR || (strcmp(a->lhs->name, "bytes") && strcmp(a->lhs->name, "file")))
        error_at(a->lhs->loc, "'vocab' of text is \"bytes\" (the ids are the bytes, 256 of them) or \"file\" (the file's distinct bytes)");
      else
        ds->files[1] = a->lhs->name;  // a text's vocabulary: the descriptor's second file field
      continue;
    }
    if (!strcmp(a->name, "validation")) {
      if (!is_train) {
        error_at(a->loc, "validation= carves a validation set out of the training data: give it on 'train = ...'");
        continue;
      }
      double f = 0;
      if (num_kwarg(a, &f, -1e9, 1e9, false, c->name) && (f <= 0 || f >= 1))
        error_at(a->lhs->loc, "'validation' is the fraction of the training data held out: above 0 and below 1, got %g", f);
      else
        L->g->info.validation = f;
      continue;
    }
    if (a->lhs->kind != N_STR || !*a->lhs->name) {
      error_at(a->lhs->loc, "'%s' of csv must be a column name in double quotes", a->name);
      continue;
    }
    if (ds->column) {
      error_at(a->loc, "csv takes one target column: 'label=' (a class) or 'target=' (a value)");
      continue;
    }
    ds->column = a->lhs->name;
    ds->column_is_label = !strcmp(a->name, "label");
    ds->column_loc = a->loc;
  }
}

static void lower_data(Lower *L, Node *sec) {
  ModelInfo *info = &L->g->info;
  static const char *const srcs[] = {"idx", "csv", "text", NULL};
  static const char *const keys[] = {"train", "test", NULL};
  for (int i = 0; i < sec->nargs; i++) {
    Node *st = sec->args[i];
    if (st->kind == N_CALL && !strcmp(st->name, "standardize")) {
      if (st->nargs) error_at(st->args[0]->loc, "standardize takes no arguments");
      info->standardize = true;
      info->standardize_loc = st->loc;
      continue;
    }
    if (st->kind == N_CALL) {
      if (strcmp(st->name, "normalize")) {
        error_at(st->loc, "unknown data setting '%s'", st->name);
        hint("the data block holds 'train = ...', 'test = ...', 'normalize(mean=..., std=...)' and 'standardize()'");
        continue;
      }
      info->normalize_loc = st->loc;
      for (int j = 0; j < st->nargs; j++) {
        Node *a = st->args[j];
        if (a->kind != N_KWARG || (strcmp(a->name, "mean") && strcmp(a->name, "std"))) {
          error_at(a->loc, "normalize takes 'mean=' and 'std='");
          continue;
        }
        if (!strcmp(a->name, "mean")) num_kwarg(a, &info->norm_mean, -1e9, 1e9, false, "normalize");
        if (!strcmp(a->name, "std")) num_kwarg(a, &info->norm_std, 0, 1e9, true, "normalize");
      }
      continue;
    }
    if (st->kind != N_ASSIGN || !st->lhs || st->lhs->kind != N_CALL) {
      error_at(st->loc, "expected 'train = idx(...)' or 'test = ...'");
      continue;
    }
    DataSource *ds;
    bool *has;
    if (!strcmp(st->name, "train")) {
      ds = &info->train;
      has = &info->has_train;
    } else if (!strcmp(st->name, "test")) {
      ds = &info->test;
      has = &info->has_test;
    } else {
      error_at(st->loc, "unknown data set '%s'", st->name);
      const char *h = closest_word(st->name, keys);
      if (h) hint("did you mean '%s'?", h);
      continue;
    }
    Node *c = st->lhs;
    ds->loc = c->loc;
    int nfiles = 0;
    while (nfiles < c->nargs && c->args[nfiles]->kind != N_KWARG) nfiles++;
    // The sources: their files (positional arguments) and what each one is.
    static const struct {
      const char *name, *wrong_count, *what[2];
      int nfiles;
    } kinds[] = {{"idx", "idx needs two files: images and labels", {"the image file", "the label file"}, 2},
                 {"csv", "csv needs one file", {"the csv file"}, 1},
                 {"text", "text needs one file", {"the text file"}, 1}};
    int kind = 0;
    while (kind < 3 && strcmp(c->name, kinds[kind].name)) kind++;
    if (kind < 3) {
      if (nfiles != kinds[kind].nfiles) {
        error_at(c->loc, "%s", kinds[kind].wrong_count);
        continue;
      }
      ds->kind = kinds[kind].name;
      ds->files[1] = !strcmp(ds->kind, "text") ? "bytes" : "";  // (a text's vocabulary, by default)
      for (int f = 0; f < nfiles; f++) ds->files[f] = str_arg(c->args[f], kinds[kind].what[f]);
    } else {
      error_at(c->loc, "unknown data source '%s'", c->name);
      const char *h = closest_word(c->name, srcs);
      hint(h ? "did you mean '%s'?" : "the data sources are %s", h ? h : "idx, csv and text");
      continue;
    }
    data_options(L, c, nfiles, ds, ds == &info->train);
    *has = true;
  }
}

// After all sections: the data options against the model's target.
static void check_data(Lower *L) {
  ModelInfo *info = &L->g->info;
  DataSource *ds[2] = {&info->train, &info->test};
  for (int i = 0; i < 2; i++) {
    if (!ds[i]->column || !info->input.rank) continue;
    if (ds[i]->column_is_label && !info->classify)
      error_at(ds[i]->column_loc, "'label=' names a class column, but the model's target is values, not class(K); use 'target='");
    else if (!ds[i]->column_is_label && info->classify)
      error_at(ds[i]->column_loc, "'target=' names a value column, but the model's target is class(%lld); use 'label='",
               (long long)info->nclasses);
    else if (!info->classify && info->nclasses != 1)
      error_at(ds[i]->column_loc, "a named target column holds one value, but the model's target is %lld values",
               (long long)info->nclasses);
  }
  for (int i = 0; i < 2; i++) {
    if (!(i ? info->has_test : info->has_train) || !info->input.rank) continue;
    bool text = !strcmp(ds[i]->kind, "text");
    if (text && (!info->tokens || !info->steps))
      error_at(ds[i]->loc, "text(...) makes sequences of token ids: the model needs 'input x: tokens[T]' and 'target y: tokens[T]'");
    else if (!text && (info->tokens || info->steps))
      error_at(ds[i]->loc, "a model with tokens[T] reads its data with text(\"FILE\"), not %s(...)", ds[i]->kind);
    else if (text && info->input.d[1] != info->steps)
      error_at(ds[i]->loc, "text(...) gives the input and the target the same steps, but they are tokens[%lld] and tokens[%lld]",
               (long long)info->input.d[1], (long long)info->steps);
  }
  if (info->standardize) {
    bool idx = (info->has_train && !strcmp(ds[0]->kind, "idx")) || (info->has_test && !strcmp(ds[1]->kind, "idx"));
    if (info->tokens) {
      error_at(info->standardize_loc, "standardize() works on CSV features, and this model reads token ids");
    } else if (idx) {
      error_at(info->standardize_loc, "standardize() works on CSV features, and this model reads IDX images");
      hint("IDX images take 'normalize(mean=..., std=...)'");
    }
    if (info->normalize_loc.src) error_at(info->normalize_loc, "use either normalize(...) or standardize(), not both");
  }
}

static void lower_train(Lower *L, Node *sec) {
  ModelInfo *info = &L->g->info;
  static const char *const keys[] = {"batch", "epochs", "shuffle", "seed", "bptt", NULL};
  for (int i = 0; i < sec->nargs; i++) {
    Node *a = sec->args[i];
    if (a->kind != N_KWARG) {
      error_at(a->loc, "expected 'key=value' in the train block");
      continue;
    }
    int j = 0;
    while (keys[j] && strcmp(keys[j], a->name)) j++;
    if (!keys[j]) {
      error_at(a->loc, "unknown training setting '%s'", a->name);
      const char *h = closest_word(a->name, keys);
      if (h)
        hint("did you mean '%s'?", h);
      else
        hint("the settings are batch, epochs, shuffle, seed and bptt");
      continue;
    }
    if (!strcmp(a->name, "shuffle")) {
      info->shuffle = bool_arg(a->lhs, "train", "shuffle", true);
      continue;
    }
    int64_t v = int_arg(a->lhs, "train", a->name, 0, strcmp(a->name, "seed") ? 1 : 0, (int64_t)1 << 40, a->loc);
    if (v < 0) continue;
    if (!strcmp(a->name, "batch")) info->batch = v;
    if (!strcmp(a->name, "epochs")) info->epochs = v;
    if (!strcmp(a->name, "seed")) info->seed = v;
    if (!strcmp(a->name, "bptt")) info->bptt = v;
  }
}

Graph *lower_program(Node *prog) {
  Lower L = {0};
  L.g = graph_new();
  L.b.g = L.g;
  L.b.phase = PH_FWD;
  for (int i = 0; i < L_MSE + 1; i++) L.counter[i] = 0;
  ModelInfo *info = &L.g->info;
  info->opt = (Optimizer){.kind = OPT_ADAM, .lr = 0.001, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  info->norm_mean = 0;
  info->norm_std = 1;
  info->batch = 64;
  info->epochs = 1;
  info->seed = 1;
  info->shuffle = true;
  int errs = error_count();
  Node *model = NULL;
  bool seen[4] = {0};
  for (int i = 0; i < prog->nargs; i++) {
    Node *sec = prog->args[i];
    int kind = sec->kind == N_MODEL ? 0 : sec->kind == N_OPTIMIZER ? 1 : sec->kind == N_DATA ? 2 : 3;
    if (seen[kind]) {
      static const char *nm[] = {"model", "optimizer", "data", "train"};
      error_at(sec->loc, "a second '%s' section; a file describes one model", nm[kind]);
      continue;
    }
    seen[kind] = true;
    switch (sec->kind) {
    case N_MODEL:
      model = sec;
      lower_model(&L, model);
      break;
    case N_OPTIMIZER: lower_optimizer(&L, sec); break;
    case N_DATA: lower_data(&L, sec); break;
    case N_TRAIN: lower_train(&L, sec); break;
    default: break;
    }
  }
  check_data(&L);
  if (!model) {
    Loc where = prog->nargs ? prog->args[0]->loc : prog->loc;
    error_at(where, "no 'model NAME { ... }' section");
    hint("a model file starts with 'model NAME {', then 'input', 'target', layers and 'loss'");
  }
  if (error_count() > errs) return NULL;
  return L.g;
}

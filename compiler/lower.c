// lower.c: AST -> IR. Checks names, arguments, types and shapes, reporting
// every problem with its location, and lowers layers to primitive ops:
//
//   dense(O)            y = matmul(x, W^T) + bcast(b)          W[O,I], b[O]
//   conv2d(O, kernel=K) y = conv2d(x, W) + bcast(b)            W[O,C,K,K], b[O]
//   flatten             y = reshape(x, [B, prod])
//   cross_entropy(z, y) L = xent(softmax(z), y) * (1/n)
//   mse(p, t)           L = sum(0.5 * (p - t)^2) * (1/n) / W
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
  L_MAXPOOL, L_CONCAT, L_XENT, L_MSE,
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
} Layer;

typedef struct {
  const char *name;
  Value *v;
  Loc loc;
  bool is_target;
} Binding;

typedef struct {
  Graph *g;
  Builder b;
  Vec bindings;  // Binding*
  Vec layers;    // Layer*
  int counter[L_MSE + 1];
  Value *y;      // the target leaf
  Node *target_node;
  int nerr0;
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
static int add_param(Lower *L, const char *name, Shape s, int64_t fan_in, InitKind init, Loc loc) {
  Graph *g = L->g;
  Param *np = arena_alloc(sizeof(Param) * (size_t)(g->nparams + 1));
  if (g->nparams) memcpy(np, g->params, sizeof(Param) * (size_t)g->nparams);
  g->params = np;
  Param *p = &g->params[g->nparams];
  p->name = name;
  p->shape = s;
  p->fan_in = fan_in;
  p->init = init;
  p->offset = g->param_floats;
  p->loc = loc;
  g->param_floats += (shape_numel(s) + 15) & ~(int64_t)15;
  int idx = g->nparams++;
  Loc keep = L->b.loc;
  L->b.loc = loc;
  p->value = ir_leaf(&L->b, OP_param, s, T_F32, 0, idx);
  p->value->name = name;
  L->b.loc = keep;
  return idx;
}

//
// Arguments
//
typedef struct {
  Node *node[6];  // by argument position; NULL if not given
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
      int j = 0;
      while (j < nargs && strcmp(spec->args[j], a->name)) j++;
      if (j == nargs) {
        error_at(a->loc, "unknown argument '%s' for %s", a->name, spec->name);
        const char *c = closest_word(a->name, spec->args);
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
  switch (spec->kind) {
  case L_DENSE: {
    int64_t out = layer->cfg[0];
    if (r != 1 || in->type != T_F32) {
      error_at(site->loc, "%s(%lld) expects a [N] input, got %s%s", spec->name, (long long)out, ss,
               r > 1 ? "; insert 'flatten'" : "");
      return NULL;
    }
    int64_t fan_in = s.d[s.rank - 1];
    if (layer->wparam < 0) {
      int64_t wd[2] = {out, fan_in};
      layer->wparam = add_param(L, arena_printf("%s.weight", layer->name), shape_make(2, wd), fan_in,
                                INIT_KAIMING_UNIFORM, layer->loc);
      if (layer->cfg[1])
        layer->bparam = add_param(L, arena_printf("%s.bias", layer->name), shape_make(1, &out), fan_in,
                                  INIT_BIAS_UNIFORM, layer->loc);
    } else if (L->g->params[layer->wparam].shape.d[1] != fan_in) {
      error_at(site->loc, "layer '%s' was built for [%lld] inputs, got %s", layer->name,
               (long long)L->g->params[layer->wparam].shape.d[1], ss);
      return NULL;
    }
    b->loc = site->loc;
    int64_t ia[8] = {0, 1};
    Value *mm_in[2] = {in, L->g->params[layer->wparam].value};
    Value *y = ir_new(b, OP_matmul, 2, mm_in, ia, 0);
    if (layer->bparam >= 0)
      y = ir_binary(b, OP_add, y, ir_bcast(b, L->g->params[layer->bparam].value, y ? y->shape : s, 1u << (s.rank - 1)));
    return y;
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
      layer->wparam = add_param(L, arena_printf("%s.weight", layer->name), shape_make(4, wd), c * k * k,
                                INIT_KAIMING_UNIFORM, layer->loc);
      if (layer->cfg[4])
        layer->bparam = add_param(L, arena_printf("%s.bias", layer->name), shape_make(1, &out), c * k * k,
                                  INIT_BIAS_UNIFORM, layer->loc);
    } else if (L->g->params[layer->wparam].shape.d[1] != c) {
      error_at(site->loc, "layer '%s' was built for %lld input channels, got %s", layer->name,
               (long long)L->g->params[layer->wparam].shape.d[1], ss);
      return NULL;
    }
    b->loc = site->loc;
    int64_t ia[8] = {st, pad};
    Value *cin[2] = {in, L->g->params[layer->wparam].value};
    Value *y = ir_new(b, OP_conv2d, 2, cin, ia, 0);
    if (y && layer->bparam >= 0)
      y = ir_binary(b, OP_add, y, ir_bcast(b, L->g->params[layer->bparam].value, y->shape, 1u << 1));
    return y;
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
    if (y->op != OP_label || y->type != T_I32) {
      error_at(site->loc, "cross_entropy needs class labels as its second operand (a 'target y: class(K)')");
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
    if (!L->g->logits) L->g->logits = in;
    Value *p = ir_unary(b, OP_softmax, in);
    Value *xin[2] = {p, y};
    Value *ce = ir_new(b, OP_xent, 2, xin, NULL, 0);
    return ir_binary(b, OP_mul, ce, ir_leaf(b, OP_hyper, shape_make(0, NULL), T_F32, HYP_INVN, 0));
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

// Looks up or creates the layer a call site refers to.
static Layer *make_layer(Lower *L, const LayerSpec *spec, Node *call, Args *cfg) {
  Layer *l = arena_alloc(sizeof(Layer));
  l->spec = spec;
  l->wparam = l->bparam = -1;
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
  if (!layer) return NULL;
  return apply_layer(L, layer, x, call);
}

static Value *lower_expr(Lower *L, Node *n) {
  Builder *b = &L->b;
  switch (n->kind) {
  case N_NUM: b->loc = n->loc; return ir_const(b, n->num);
  case N_IDENT: {
    Binding *bd = lookup(L, n->name);
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
      if (st->kind == N_INPUT) {
        if (cls) {
          error_at(st->lhs->loc, "an input needs a shape such as [1, 28, 28], not a class type");
          continue;
        }
        g->x = ir_leaf(b, OP_input, s, T_F32, 0, 0);
        g->x->name = st->name;
        g->info.input = s;
        bind(L, st->name, g->x, st->loc);
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
    default: error_at(st->loc, "unexpected statement in a model"); break;
    }
  }
  if (!input) error_at(m->loc, "model '%s' has no input; declare one, e.g. 'input x: [1, 28, 28]'", m->name);
  if (!target) error_at(m->loc, "model '%s' has no target; declare one, e.g. 'target y: class(10)'", m->name);
  if (!loss) error_at(m->loc, "model '%s' has no loss; add e.g. 'loss cross_entropy(logits, y)'", m->name);
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

static void lower_optimizer(Lower *L, Node *sec) {
  Optimizer *o = &L->g->info.opt;
  Node *c = sec->lhs;
  o->loc = c->loc;
  static const char *const opts[] = {"adam", "sgd", NULL};
  static const char *const adam_args[] = {"lr", "beta1", "beta2", "eps", "weight_decay", NULL};
  static const char *const sgd_args[] = {"lr", "momentum", "weight_decay", NULL};
  const char *const *names;
  if (!strcmp(c->name, "adam")) {
    o->kind = OPT_ADAM;
    names = adam_args;
  } else if (!strcmp(c->name, "sgd")) {
    o->kind = OPT_SGD;
    names = sgd_args;
  } else {
    error_at(c->loc, "unknown optimizer '%s'", c->name);
    const char *h = closest_word(c->name, opts);
    hint(h ? "did you mean '%s'?" : "the optimizers are %s", h ? h : "adam and sgd");
    return;
  }
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
    if (!strcmp(a->name, "eps")) num_kwarg(a, &o->eps, 0, 1, true, c->name);
    if (!strcmp(a->name, "momentum")) num_kwarg(a, &o->momentum, 0, 1, false, c->name);
    if (!strcmp(a->name, "weight_decay")) num_kwarg(a, &o->weight_decay, 0, 1, false, c->name);
  }
  if ((o->beta1 >= 1 || o->beta2 >= 1) && o->kind == OPT_ADAM)
    error_at(c->loc, "adam's beta1 and beta2 must be below 1");
  if (o->momentum >= 1) error_at(c->loc, "sgd's momentum must be below 1");
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
static void data_options(Lower *L, Node *c, int nfiles, DataSource *ds, bool is_train) {
  static const char *const csv_opts[] = {"label", "target", "validation", NULL};
  static const char *const idx_opts[] = {"validation", NULL};
  bool csv = !strcmp(c->name, "csv");
  const char *const *names = csv ? csv_opts : idx_opts;
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
      else hint("%s takes %s", c->name, csv ? "label=, target= and validation=" : "validation=");
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
  static const char *const srcs[] = {"idx", "csv", NULL};
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
    if (!strcmp(c->name, "idx")) {
      if (nfiles != 2) {
        error_at(c->loc, "idx needs two files: images and labels");
        continue;
      }
      ds->kind = "idx";
      ds->files[0] = str_arg(c->args[0], "the image file");
      ds->files[1] = str_arg(c->args[1], "the label file");
    } else if (!strcmp(c->name, "csv")) {
      if (nfiles != 1) {
        error_at(c->loc, "csv needs one file");
        continue;
      }
      ds->kind = "csv";
      ds->files[0] = str_arg(c->args[0], "the csv file");
      ds->files[1] = "";
    } else {
      error_at(c->loc, "unknown data source '%s'", c->name);
      const char *h = closest_word(c->name, srcs);
      hint(h ? "did you mean '%s'?" : "the data sources are %s", h ? h : "idx and csv");
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
  if (info->standardize) {
    bool idx = (info->has_train && !strcmp(ds[0]->kind, "idx")) || (info->has_test && !strcmp(ds[1]->kind, "idx"));
    if (idx) {
      error_at(info->standardize_loc, "standardize() works on CSV features, and this model reads IDX images");
      hint("IDX images take 'normalize(mean=..., std=...)'");
    }
    if (info->normalize_loc.src) error_at(info->normalize_loc, "use either normalize(...) or standardize(), not both");
  }
}

static void lower_train(Lower *L, Node *sec) {
  ModelInfo *info = &L->g->info;
  static const char *const keys[] = {"batch", "epochs", "shuffle", "seed", NULL};
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
        hint("the settings are batch, epochs, shuffle and seed");
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
  }
}

Graph *lower_program(Node *prog) {
  Lower L = {0};
  L.g = graph_new();
  L.b.g = L.g;
  L.b.phase = PH_FWD;
  for (int i = 0; i < L_MSE + 1; i++) L.counter[i] = 0;
  ModelInfo *info = &L.g->info;
  info->opt = (Optimizer){OPT_ADAM, 0.001, 0, 0.9, 0.999, 1e-8, 0, {0}};
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

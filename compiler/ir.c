// ir.c: building, hashing and printing IR values.
//
// Values are created in topological order and hash-consed: asking for an op
// with the same inputs and attributes twice gives the same value, so common
// subexpressions are shared by construction.
#include "fnnc.h"

#include <string.h>

#define OP(name, nin, flags, attrdoc) {#name, nin, flags, attrdoc},
const OpInfo op_info[OP_COUNT] = {
#include "ops.h"
};
#undef OP

Graph *graph_new(void) {
  Graph *g = arena_alloc(sizeof(Graph));
  g->htcap = 1024;
  g->ht = arena_alloc(sizeof(Value *) * (size_t)g->htcap);
  return g;
}

//
// Shapes
//
Shape shape_make(int rank, const int64_t *d) {
  Shape s = {rank, {0}};
  for (int i = 0; i < rank; i++) s.d[i] = d[i];
  return s;
}

bool shape_eq(Shape a, Shape b) {
  if (a.rank != b.rank) return false;
  for (int i = 0; i < a.rank; i++)
    if (a.d[i] != b.d[i]) return false;
  return true;
}

bool shape_batched(Shape s) { return s.rank > 0 && s.d[0] == DIM_BATCH; }

int64_t pad16(int64_t floats) { return (floats + 15) & ~(int64_t)15; }

int64_t shape_numel(Shape s) {
  int64_t n = 1;
  for (int i = 0; i < s.rank; i++)
    if (s.d[i] != DIM_BATCH) n *= s.d[i];
  return n;
}

static char *shape_fmt(Shape s, int from) {
  char buf[256];
  int o = 0;
  o += snprintf(buf + o, sizeof buf - (size_t)o, "[");
  for (int i = from; i < s.rank; i++) {
    if (s.d[i] == DIM_BATCH)
      o += snprintf(buf + o, sizeof buf - (size_t)o, "%sB", i > from ? ", " : "");
    else
      o += snprintf(buf + o, sizeof buf - (size_t)o, "%s%lld", i > from ? ", " : "",
                    (long long)s.d[i]);
  }
  snprintf(buf + o, sizeof buf - (size_t)o, "]");
  return arena_strdup(buf);
}

char *shape_str(Shape s) { return shape_fmt(s, 0); }
char *shape_str_sample(Shape s) { return shape_fmt(s, shape_batched(s) ? 1 : 0); }

//
// Hash-consing
//
static uint64_t value_hash(Value *v) {
  uint64_t h = 1469598103934665603ull;
#define MIX(x) (h = (h ^ (uint64_t)(x)) * 1099511628211ull)
  MIX(v->op);
  MIX(v->nin);
  for (int i = 0; i < v->nin; i++) MIX(v->in[i]->id);
  for (int i = 0; i < 8; i++) MIX(v->ia[i]);
  uint64_t fb;
  memcpy(&fb, &v->fa, sizeof fb);
  MIX(fb);
  MIX(v->param + 1);
  for (int i = 0; i < v->shape.rank; i++) MIX(v->shape.d[i]);
#undef MIX
  return h;
}

static bool value_same(Value *a, Value *b) {
  if (a->op != b->op || a->nin != b->nin || a->param != b->param)
    return false;
  for (int i = 0; i < a->nin; i++)
    if (a->in[i] != b->in[i]) return false;
  if (memcmp(a->ia, b->ia, sizeof a->ia) != 0) return false;
  if (memcmp(&a->fa, &b->fa, sizeof a->fa) != 0) return false;
  return shape_eq(a->shape, b->shape) && a->type == b->type;
}

static void ht_grow(Graph *g) {
  int cap = g->htcap * 2;
  Value **t = arena_alloc(sizeof(Value *) * (size_t)cap);
  for (int i = 0; i < g->htcap; i++) {
    Value *v = g->ht[i];
    if (!v) continue;
    uint64_t h = value_hash(v);
    int j = (int)(h & (uint64_t)(cap - 1));
    while (t[j]) j = (j + 1) & (cap - 1);
    t[j] = v;
  }
  g->ht = t;
  g->htcap = cap;
}

// Stores are never merged (each is a distinct side effect).
static Value *intern(Graph *g, Value *v) {
  if (v->op == OP_store) goto fresh;
  if (g->htlen * 2 >= g->htcap) ht_grow(g);
  uint64_t h = value_hash(v);
  int j = (int)(h & (uint64_t)(g->htcap - 1));
  for (; g->ht[j]; j = (j + 1) & (g->htcap - 1))
    if (value_same(g->ht[j], v)) return g->ht[j];
  g->ht[j] = v;
  g->htlen++;
fresh:
  v->id = g->values.len;
  vec_push(&g->values, v);
  if (v->op == OP_store) vec_push(&g->stores, v);
  return v;
}

Value *ir_new(Builder *b, Op op, int nin, Value **in, const int64_t *ia, double fa) {
  Value *v = arena_alloc(sizeof(Value));
  v->op = op;
  v->nin = nin;
  v->param = -1;
  v->loc = b->loc;
  v->phase = b->phase;
  v->group = -1;
  for (int i = 0; i < nin; i++) {
    if (!in[i]) return NULL;  // an input already failed: error reported
    v->in[i] = in[i];
  }
  if (ia) memcpy(v->ia, ia, sizeof v->ia);
  v->fa = fa;
  if (!shape_rule[op](v)) return NULL;
  return intern(b->g, v);
}

Value *ir_const(Builder *b, double c) { return ir_new(b, OP_const, 0, NULL, NULL, c); }

// A new leaf of shape s, not interned yet.
static Value *leaf_new(Builder *b, Op op, Shape s, DType t) {
  Value *v = arena_alloc(sizeof(Value));
  v->op = op;
  v->param = -1;
  v->loc = b->loc;
  v->phase = b->phase;
  v->group = -1;
  v->shape = s;
  v->type = t;
  return v;
}

// Leaves: ia[0] = a (Hyper index, state slot), .param = index for param/state.
Value *ir_leaf(Builder *b, Op op, Shape s, DType t, int64_t a, int64_t index) {
  Value *v = leaf_new(b, op, s, t);
  v->ia[0] = a;
  if (op == OP_param || op == OP_state) v->param = (int)index;
  return intern(b->g, v);
}

Value *ir_slab(Builder *b, BufKind kind, int64_t slot, int64_t offset, int64_t n) {
  Value *v = leaf_new(b, OP_slab, shape_make(1, &n), T_F32);
  v->ia[0] = kind;
  v->ia[1] = slot;
  v->ia[2] = offset;
  return intern(b->g, v);
}

Value *ir_unary(Builder *b, Op op, Value *x) { return ir_new(b, op, 1, &x, NULL, 0); }

Value *ir_binary(Builder *b, Op op, Value *x, Value *y) {
  Value *in[2] = {x, y};
  return ir_new(b, op, 2, in, NULL, 0);
}

Value *ir_bcast(Builder *b, Value *x, Shape to, uint32_t axes) {
  if (!x) return NULL;
  if (shape_eq(x->shape, to)) return x;
  int64_t ia[8] = {axes, to.rank};
  for (int i = 0; i < to.rank && i < 6; i++) ia[2 + i] = to.d[i];
  return ir_new(b, OP_bcast, 1, &x, ia, 0);
}

Value *ir_sum(Builder *b, Value *x, Shape to, uint32_t axes) {
  if (!x) return NULL;
  if (shape_eq(x->shape, to)) return x;
  int64_t ia[8] = {axes};
  return ir_new(b, OP_sum, 1, &x, ia, 0);
}

void reshape_attrs(Shape to, int64_t ia[8]) {
  memset(ia, 0, sizeof(int64_t) * 8);
  ia[0] = to.rank;
  for (int i = 0; i < to.rank && i < 6; i++) ia[1 + i] = to.d[i];
}

Value *ir_reshape(Builder *b, Value *x, Shape to) {
  if (!x) return NULL;
  if (shape_eq(x->shape, to)) return x;
  int64_t ia[8];
  reshape_attrs(to, ia);
  return ir_new(b, OP_reshape, 1, &x, ia, 0);
}

void ir_store(Builder *b, Value *v, BufKind where, int param, int64_t slot) {
  if (!v) return;
  int64_t ia[8] = {where, slot};
  Value *s = ir_new(b, OP_store, 1, &v, ia, 0);
  if (s) s->param = param;
}

void ir_store_slab(Builder *b, Value *v, BufKind kind, int64_t slot, int64_t offset) {
  if (!v) return;
  int64_t ia[8] = {kind, slot, offset};
  Value *s = ir_new(b, OP_store, 1, &v, ia, 0);
  if (s) s->param = -1;
}

void ir_count_uses(Graph *g) {
  for (int i = 0; i < g->values.len; i++) ((Value *)g->values.data[i])->nuses = 0;
  for (int i = 0; i < g->values.len; i++) {
    Value *v = g->values.data[i];
    if (v->dead) continue;
    for (int j = 0; j < v->nin; j++) v->in[j]->nuses++;
  }
}

//
// Printing (--emit=ir, --emit=grad)
//
static const char *bufkind_name[] = {"none", "param", "grad", "state", "x", "y", "hyper", "out", "work", "loop"};
static const char *hyper_name[] = {"lr", "bc1", "bc2", "invn"};

const char *slab_name(Value *v) {
  int64_t n = shape_numel(v->op == OP_store ? v->in[0]->shape : v->shape), off = v->ia[2];
  const char *base = v->ia[0] == BUF_PARAM ? "params" : v->ia[0] == BUF_GRAD ? "grads" : v->ia[1] ? "state.v" : "state.m";
  return arena_printf("%s[%lld:%lld]", base, (long long)off, (long long)(off + n));
}

static void dump_attrs(FILE *out, Graph *g, Value *v) {
  if (v->op == OP_slab || (v->op == OP_store && v->param < 0 && v->ia[0] != BUF_OUT && v->ia[0] != BUF_LOOP)) {
    fprintf(out, v->op == OP_store ? " -> %s" : " %s", slab_name(v));
    return;
  }
  switch (v->op) {
  case OP_input: fprintf(out, " x"); break;
  case OP_label: fprintf(out, " y"); break;
  case OP_param: fprintf(out, " %s", g->params[v->param].name); break;
  case OP_state: fprintf(out, " %s.%s", g->params[v->param].name, v->ia[0] ? "v" : "m"); break;
  case OP_hyper: fprintf(out, " %s", hyper_name[v->ia[0]]); break;
  case OP_const: fprintf(out, " %.9g", v->fa); break;
  case OP_store:
    if (v->ia[0] == BUF_PARAM || v->ia[0] == BUF_GRAD)
      fprintf(out, " -> %s %s", bufkind_name[v->ia[0]], g->params[v->param].name);
    else if (v->ia[0] == BUF_STATE)
      fprintf(out, " -> state %s.%s", g->params[v->param].name, v->ia[1] ? "v" : "m");
    else
      fprintf(out, " -> %s[%lld]", bufkind_name[v->ia[0]], (long long)v->ia[1]);
    break;
  case OP_bcast:
  case OP_sum: {
    fprintf(out, " axes=");
    int r = v->op == OP_bcast ? v->shape.rank : v->in[0]->shape.rank;
    for (int i = 0; i < r; i++) fputc((v->ia[0] >> i) & 1 ? '1' : '0', out);
    break;
  }
  case OP_matmul:
    if (v->ia[0]) fprintf(out, " transA");
    if (v->ia[1]) fprintf(out, " transB");
    break;
  case OP_conv2d:
  case OP_conv2d_dx:
  case OP_conv2d_dw: fprintf(out, " stride=%lld pad=%lld", (long long)v->ia[0], (long long)v->ia[1]); break;
  case OP_maxpool:
  case OP_maxpool_arg:
  case OP_maxpool_dx: fprintf(out, " k=%lld stride=%lld", (long long)v->ia[0], (long long)v->ia[1]); break;
  case OP_concat: fprintf(out, " axis=%lld", (long long)v->ia[0]); break;
  case OP_slice: fprintf(out, " axis=%lld start=%lld", (long long)v->ia[0], (long long)v->ia[1]); break;
  case OP_onehot: fprintf(out, " k=%lld", (long long)v->ia[0]); break;
  case OP_formal: fprintf(out, " #%lld %s", (long long)v->ia[0], v->name ? v->name : ""); break;
  case OP_loop: fprintf(out, " L%lld", (long long)v->ia[0]); break;
  case OP_loopout: fprintf(out, " out=%lld", (long long)v->ia[0]); break;
  default: break;
  }
}

// The values of g up to phase `upto`, one per line; loop bodies nested below
// their loop, indented.
void ir_dump_values(FILE *out, Graph *g, Phase upto, const char *indent) {
  static const char *phase_name[] = {"forward", "backward", "update"};
  int id = 0;
  int *num = arena_alloc(sizeof(int) * (size_t)(g->values.len + 1));
  Phase cur = (Phase)-1;
  for (int i = 0; i < g->values.len; i++) {
    Value *v = g->values.data[i];
    if (v->dead || v->phase > upto) continue;
    if (v->phase != cur && !*indent) {
      cur = v->phase;
      fprintf(out, "\n# %s\n", phase_name[cur]);
    }
    num[v->id] = id;
    char lhs[32] = "";
    if (v->op != OP_store) snprintf(lhs, sizeof lhs, "%%%d = ", id++);
    fprintf(out, "%s%s%s", indent, lhs, op_info[v->op].name);
    for (int j = 0; j < v->nin; j++) fprintf(out, "%s %%%d", j ? "," : "", num[v->in[j]->id]);
    dump_attrs(out, g, v);
    if (v->op != OP_store)
      fprintf(out, " : %s%s", v->type == T_I32 ? "i32" : "f32", shape_str(v->shape));
    if (v->loc.src) fprintf(out, "  ; %d:%d", v->loc.line, v->loc.col);
    if (v->name && v->op != OP_param && v->op != OP_formal) fprintf(out, " %s", v->name);
    fputc('\n', out);
    if (v->op == OP_loop) loop_dump(out, g, v, arena_printf("%s    ", indent));
  }
}

void ir_dump(FILE *out, Graph *g, Phase upto) {
  fprintf(out, "# model %s\n", g->info.name ? g->info.name : "?");
  for (int i = 0; i < g->nparams; i++)
    fprintf(out, "# param %s %s%s%s\n", g->params[i].name, shape_str(g->params[i].shape),
            g->params[i].frozen ? " frozen" : "",
            g->params[i].lr_mult != 1 ? arena_printf(" lr_mult=%g", g->params[i].lr_mult) : "");
  ir_dump_values(out, g, upto, "");
}

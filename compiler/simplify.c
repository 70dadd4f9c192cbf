// simplify.c: rebuilds the graph through rewriting constructors, then removes
// what no store reads.
//
//   CSE        by construction: the rebuilt values are hash-consed (ir.c)
//   folding    elementwise ops on constants; x+0, x*1, x*0, x/1, --x
//   algebra    products cancel common factors: a*(b/a) -> b
//              sum over the class axis of s*onehot(y) -> s      (rows of onehot sum to 1)
//              bcast of a scalar inside elementwise ops -> the scalar
//              x*(a-b) -> x*a - x*b when a product cancels
//              s*a - s*b -> s*(a-b);  (-s)*(a-b) -> s*(b-a)
//              maxpool_dx(arg(r), g) * step(r) -> maxpool_dx(arg(r), g * step(maxpool(r)))
//              sum of maxpool_dx(a, g) over the pooled axes -> sum of g
//   DCE        values no store depends on are marked dead
//
// Together these turn the gradient of xent(softmax(z), y)/n, which divides by
// the probabilities, into (softmax(z) - onehot(y)) / n.
#include "fnnc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static Value *build(Builder *b, Op op, int nin, Value **in, const int64_t *ia, double fa);

static Value *mk2(Builder *b, Op op, Value *x, Value *y) {
  Value *in[2] = {x, y};
  return build(b, op, 2, in, NULL, 0);
}
static Value *mk1(Builder *b, Op op, Value *x) { return build(b, op, 1, &x, NULL, 0); }
static Value *mk_reshape(Builder *b, Value *x, Shape s) {
  int64_t ia[8];
  reshape_attrs(s, ia);
  return build(b, OP_reshape, 1, &x, ia, 0);
}

static bool is_const(Value *v, double c) { return v->op == OP_const && v->fa == c; }
static bool is_scalar(Value *v) { return v->shape.rank == 0; }

// Folds an elementwise op on constants.
static bool fold(Op op, Value **in, double *out) {
  double a = in[0]->fa, c = op_info[op].nin > 1 ? in[1]->fa : 0;
  switch (op) {
  case OP_add: *out = a + c; return true;
  case OP_sub: *out = a - c; return true;
  case OP_mul: *out = a * c; return true;
  case OP_div: if (c == 0) return false; *out = a / c; return true;
  case OP_neg: *out = -a; return true;
  case OP_exp: *out = exp(a); return true;
  case OP_log: if (a <= 0) return false; *out = log(a); return true;
  case OP_sqrt: if (a < 0) return false; *out = sqrt(a); return true;
  case OP_relu: *out = a > 0 ? a : 0; return true;
  case OP_step: *out = a > 0 ? 1 : 0; return true;
  case OP_tanh: *out = tanh(a); return true;
  case OP_sigmoid: *out = 1 / (1 + exp(-a)); return true;
  default: return false;
  }
}

//
// Products: a mul/div tree as numerator and denominator factor lists.
//
#define MAXF 8
typedef struct {
  Value *num[MAXF], *den[MAXF];
  int nn, nd;
  double c;  // constant factor
} Prod;

static bool flatten(Value *v, Prod *p, bool den, int depth) {
  if (v->op == OP_const) {
    if (den) {
      if (v->fa == 0) return false;
      p->c /= v->fa;
    } else
      p->c *= v->fa;
    return true;
  }
  if (depth < 4 && v->op == OP_mul) return flatten(v->in[0], p, den, depth + 1) && flatten(v->in[1], p, den, depth + 1);
  if (depth < 4 && v->op == OP_div) return flatten(v->in[0], p, den, depth + 1) && flatten(v->in[1], p, !den, depth + 1);
  if (den) {
    if (p->nd == MAXF) return false;
    p->den[p->nd++] = v;
  } else {
    if (p->nn == MAXF) return false;
    p->num[p->nn++] = v;
  }
  return true;
}

// Removes factors that appear above and below; returns how many pairs went.
static int cancel(Prod *p) {
  int gone = 0;
  for (int i = 0; i < p->nn; i++)
    for (int j = 0; j < p->nd; j++)
      if (p->num[i] == p->den[j]) {
        p->num[i] = p->num[--p->nn];
        p->den[j] = p->den[--p->nd];
        gone++;
        i--;
        break;
      }
  return gone;
}

static int by_rank_then_id(const void *a, const void *b) {
  Value *x = *(Value *const *)a, *y = *(Value *const *)b;
  if (x->shape.rank != y->shape.rank) return x->shape.rank - y->shape.rank;
  return x->id - y->id;
}

static Value *rebuild_prod(Builder *b, Prod *p) {
  qsort(p->num, (size_t)p->nn, sizeof(Value *), by_rank_then_id);
  qsort(p->den, (size_t)p->nd, sizeof(Value *), by_rank_then_id);
  Value *r = p->c != 1 || p->nn == 0 ? ir_const(b, p->c) : NULL;
  for (int i = 0; i < p->nn; i++) r = r ? mk2(b, OP_mul, r, p->num[i]) : p->num[i];
  Value *d = NULL;
  for (int i = 0; i < p->nd; i++) d = d ? mk2(b, OP_mul, d, p->den[i]) : p->den[i];
  return d ? mk2(b, OP_div, r, d) : r;
}

// Does x*y contain a factor that cancels?
static bool product_cancels(Value *x, Value *y) {
  Prod p = {.c = 1};
  return flatten(x, &p, false, 0) && flatten(y, &p, false, 0) && cancel(&p) > 0;
}

static int onehot_axis(Value *v) { return v->op == OP_onehot ? v->shape.rank - 1 : -1; }

// The rewriting rules; NULL means "build as is". `probe` is the value the op
// would produce, so every replacement keeps its shape and type.
static Value *rewrite(Builder *b, Value *probe) {
  Op op = probe->op;
  Value **in = probe->in;
  unsigned fl = op_info[op].flags;
  // Constant folding.
  if ((fl & F_EW) && !(fl & F_GATHER) && probe->nin > 0) {
    bool all = true;
    for (int i = 0; i < probe->nin; i++) all &= in[i]->op == OP_const;
    double r;
    if (all && fold(op, in, &r)) return ir_const(b, r);
  }
  // A scalar broadcast inside an elementwise op is the scalar itself.
  if ((fl & F_EW) && !(fl & F_GATHER) && probe->nin == 2) {
    for (int i = 0; i < 2; i++)
      if (in[i]->op == OP_bcast && is_scalar(in[i]->in[0]) && !is_scalar(in[1 - i])) {
        Value *x[2] = {in[0], in[1]};
        x[i] = in[i]->in[0];
        return build(b, op, 2, x, NULL, 0);
      }
  }
  switch (op) {
  case OP_add:
    if (is_const(in[1], 0) && !is_scalar(in[0])) return in[0];
    if (is_const(in[0], 0) && !is_scalar(in[1])) return in[1];
    if (is_const(in[1], 0) || is_const(in[0], 0)) return is_const(in[1], 0) ? in[0] : in[1];
    break;
  case OP_sub:
    if (is_const(in[1], 0)) return in[0];
    if (is_const(in[0], 0) && shape_eq(in[1]->shape, probe->shape)) return mk1(b, OP_neg, in[1]);
    // s*a - s*b -> s*(a - b) for a common scalar factor s
    if (in[0]->op == OP_mul && in[1]->op == OP_mul)
      for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
          if (in[0]->in[i] == in[1]->in[j] && is_scalar(in[0]->in[i])) {
            Value *d = mk2(b, OP_sub, in[0]->in[1 - i], in[1]->in[1 - j]);
            if (d && shape_eq(d->shape, probe->shape)) return mk2(b, OP_mul, in[0]->in[i], d);
          }
    break;
  case OP_mul:
    for (int i = 0; i < 2; i++) {
      Value *x = in[i], *y = in[1 - i];
      // maxpool_dx(a, g) * step(r), a = maxpool_arg(r) -> maxpool_dx(a, g * step(maxpool(r))):
      // a window's g lands where r is the window's maximum, so the mask there
      // is the mask of the pooled value, which is smaller and already computed.
      // (A g that is a reshape, as after flatten -> dense, is masked in its own
      // shape, so that the product can join the kernel that computes it.)
      if (x->op == OP_maxpool_dx && y->op == OP_step && x->in[0]->op == OP_maxpool_arg &&
          x->in[0]->in[0] == y->in[0]) {
        Value *r = y->in[0], *g = x->in[1];
        Value *pooled = build(b, OP_maxpool, 1, &r, (int64_t[8]){x->ia[0], x->ia[1]}, 0);
        Value *masked;
        if (g->op == OP_reshape) {
          Value *u = g->in[0];
          masked = mk_reshape(b, mk2(b, OP_mul, u, mk1(b, OP_step, mk_reshape(b, pooled, u->shape))), g->shape);
        } else {
          masked = mk2(b, OP_mul, g, mk1(b, OP_step, pooled));
        }
        Value *dx[2] = {x->in[0], masked};
        return build(b, OP_maxpool_dx, 2, dx, x->ia, 0);
      }
      if (is_const(x, 1) && shape_eq(y->shape, probe->shape)) return y;
      if (is_const(x, -1) && shape_eq(y->shape, probe->shape)) return mk1(b, OP_neg, y);
      if (is_const(x, 0) && is_scalar(y)) return x;
      // (-s) * (a - c) -> s * (c - a)
      if (x->op == OP_neg && y->op == OP_sub) return mk2(b, OP_mul, x->in[0], mk2(b, OP_sub, y->in[1], y->in[0]));
      // x * (a - c) -> x*a - x*c when one of the products cancels
      if (y->op == OP_sub && (product_cancels(x, y->in[0]) || product_cancels(x, y->in[1])))
        return mk2(b, OP_sub, mk2(b, OP_mul, x, y->in[0]), mk2(b, OP_mul, x, y->in[1]));
    }
    if (in[0]->op == OP_neg && in[1]->op == OP_neg) return mk2(b, OP_mul, in[0]->in[0], in[1]->in[0]);
    /* fallthrough */
  case OP_div: {
    if (op == OP_div && is_const(in[1], 1)) return in[0];
    Prod p = {.c = 1};
    if (flatten(probe->in[0], &p, false, 0) && flatten(probe->in[1], &p, op == OP_div, 0) && cancel(&p) > 0) {
      Value *r = rebuild_prod(b, &p);
      if (r && shape_eq(r->shape, probe->shape)) return r;
      if (r && is_scalar(r)) return ir_bcast(b, r, probe->shape, 0);
    }
    // Canonical order: scalar first, then by id (so equal products are shared).
    if (op == OP_mul && (in[1]->shape.rank < in[0]->shape.rank ||
                         (in[1]->shape.rank == in[0]->shape.rank && in[1]->id < in[0]->id)))
      return build(b, OP_mul, 2, (Value *[]){in[1], in[0]}, NULL, 0);
    break;
  }
  case OP_neg:
    if (in[0]->op == OP_neg) return in[0]->in[0];
    break;
  case OP_sum: {
    // A pool gradient summed over both pooled axes is the sum of g (each
    // window's g is added in exactly one place):
    // sum(maxpool_dx(a, g)) -> sum(g), the same axes kept. (Not when g is a
    // view, the gradient of a flatten: no kernel computes it in that shape,
    // so the sum would need a pass of its own, where it is free in the pool
    // gradient's.)
    Value *x = in[0];
    int r = x->shape.rank;
    if (x->op == OP_maxpool_dx && r >= 2 && !((probe->ia[0] >> (r - 2)) & 3) && !(op_info[x->in[1]->op].flags & F_VIEW))
      return build(b, OP_sum, 1, &x->in[1], probe->ia, 0);
    // Rows of a one-hot sum to 1: sum over the class axis of s*onehot -> s.
    Value *s = NULL, *oh = NULL;
    if (x->op == OP_onehot) {
      oh = x;
      s = ir_const(b, 1);
    } else if (x->op == OP_mul && is_scalar(x->in[0]) && x->in[1]->op == OP_onehot) {
      s = x->in[0];
      oh = x->in[1];
    }
    if (oh) {
      uint32_t kept_all_but_class = ((1u << oh->shape.rank) - 1) & ~(1u << onehot_axis(oh));
      if ((uint32_t)probe->ia[0] == kept_all_but_class) return ir_bcast(b, s, probe->shape, 0);
    }
    break;
  }
  case OP_bcast: {
    Value *x = in[0];
    if (x->op == OP_bcast) {
      // bcast(bcast(u, m1), m2): u's axes land where m2 puts m1's positions.
      uint32_t m1 = (uint32_t)x->ia[0], m2 = (uint32_t)probe->ia[0], m = 0;
      int pos2[MAXRANK], n2 = 0;
      for (int i = 0; i < probe->shape.rank; i++)
        if ((m2 >> i) & 1) pos2[n2++] = i;
      for (int q = 0; q < x->shape.rank; q++)
        if ((m1 >> q) & 1) m |= 1u << pos2[q];
      return ir_bcast(b, x->in[0], probe->shape, m);
    }
    break;
  }
  default: break;
  }
  return NULL;
}

static Value *build(Builder *b, Op op, int nin, Value **in, const int64_t *ia, double fa) {
  for (int i = 0; i < nin; i++)
    if (!in[i]) return NULL;
  if (op_info[op].flags & F_LEAF) die("build: leaf");
  // A probe: the value as it would be built, to learn its shape.
  Value probe = {0};
  probe.op = op;
  probe.nin = nin;
  probe.param = -1;
  for (int i = 0; i < nin; i++) probe.in[i] = in[i];
  if (ia) memcpy(probe.ia, ia, sizeof probe.ia);
  probe.fa = fa;
  if (op != OP_store) {
    if (!shape_rule[op](&probe)) die("simplify: shape rule failed for %s", op_info[op].name);
    Value *r = rewrite(b, &probe);
    if (r) return r;
  }
  return ir_new(b, op, nin, in, ia, fa);
}

static void mark_live(Value *v) {
  if (!v->dead) return;
  v->dead = false;
  for (int i = 0; i < v->nin; i++) mark_live(v->in[i]);
}

static void simplify_once(Graph *g) {
  Vec old = g->values;
  Value **map = arena_alloc(sizeof(Value *) * (size_t)old.len);
  g->values = (Vec){0};
  g->stores = (Vec){0};
  g->htcap = 1024;
  g->htlen = 0;
  g->ht = arena_alloc(sizeof(Value *) * (size_t)g->htcap);
  for (int i = 0; i < old.len; i++) {
    Value *v = old.data[i];
    if (v->dead) continue;
    Builder b = {g, v->loc, v->phase};
    Value *nv;
    if (op_info[v->op].flags & F_LEAF) {
      if (v->op == OP_const)
        nv = ir_const(&b, v->fa);
      else if (v->op == OP_slab)
        nv = ir_slab(&b, (BufKind)v->ia[0], v->ia[1], v->ia[2], v->shape.d[0]);
      else {
        nv = ir_leaf(&b, v->op, v->shape, v->type, v->ia[0], v->param);
        nv->name = v->name;
      }
    } else {
      Value *in[MAXIN];
      for (int j = 0; j < v->nin; j++) in[j] = map[v->in[j]->id];
      if (v->op == OP_store) {
        if (v->param < 0)
          ir_store_slab(&b, in[0], (BufKind)v->ia[0], v->ia[1], v->ia[2]);
        else
          ir_store(&b, in[0], (BufKind)v->ia[0], v->param, v->ia[1]);
        nv = g->values.data[g->values.len - 1];
      } else {
        nv = build(&b, v->op, v->nin, in, v->ia, v->fa);
      }
    }
    if (!nv->name) nv->name = v->name;
    map[v->id] = nv;
  }
#define REMAP(x) ((x) = (x) && !(x)->dead ? map[(x)->id] : NULL)
  for (int i = 0; i < g->nparams; i++) {
    Param *p = &g->params[i];
    REMAP(p->value);
    REMAP(p->grad);
  }
  REMAP(g->x);
  REMAP(g->y);
  REMAP(g->loss);
  REMAP(g->logits);
#undef REMAP
  // DCE: keep what the stores read.
  for (int i = 0; i < g->values.len; i++) ((Value *)g->values.data[i])->dead = true;
  for (int i = 0; i < g->stores.len; i++) mark_live(g->stores.data[i]);
}

void simplify(Graph *g) {
  simplify_once(g);
  simplify_once(g);
  loop_simplify(g);
}

// optim.c: optimizer updates as IR (phase PH_UPDATE), so the fusion pass can
// turn each parameter's update into one streaming kernel.
//
// All follow PyTorch's definitions (sgd and adam add the weight decay to the
// gradient; adamw decays the weight itself, decoupled from the gradient):
//   sgd:   g' = g + wd*w;  buf' = mu*buf + g';  w' = w - lr*buf'   (no buf if mu = 0)
//   adam:  g' = g + wd*w;  m' = b1*m + (1-b1)*g';  v' = b2*v + (1-b2)*g'^2
//          w' = w - (lr/bc1) * m' / (sqrt(v')/sqrt(bc2) + eps),  bc_i = 1 - b_i^t
//   adamw: as adam with g' = g, from the decayed weight w * (1 - lr*wd)
// lr is the runtime's HYP_LR: the schedule's value for this step.
//
// With clip=c, the gradients are first scaled to a global norm of at most c,
// as PyTorch's clip_grad_norm_ does before the step:
//   n = sqrt(sum over the parameters of sum(g^2));  g <- g * c / max(n + 1e-6, c)
// where max(d, c) = d + relu(c - d).
//
// Frozen parameters have no gradient and no state: the gradient slab and each
// state slot hold the trainable parameters only, back to back (Param.toff).
// A parameter with lr_mult=F steps by F*lr.
#include "fnnc.h"

static Value *K(Builder *b, double c) { return ir_const(b, c); }
static Value *H(Builder *b, Hyper h) { return ir_leaf(b, OP_hyper, shape_make(0, NULL), T_F32, h, 0); }
static Value *add(Builder *b, Value *x, Value *y) { return ir_binary(b, OP_add, x, y); }
static Value *sub(Builder *b, Value *x, Value *y) { return ir_binary(b, OP_sub, x, y); }
static Value *mul(Builder *b, Value *x, Value *y) { return ir_binary(b, OP_mul, x, y); }
static Value *dvd(Builder *b, Value *x, Value *y) { return ir_binary(b, OP_div, x, y); }

int optimizer_slots(const Optimizer *o) {
  if (o->kind == OPT_ADAM || o->kind == OPT_ADAMW) return 2;
  return o->momentum > 0 ? 1 : 0;
}

void optimizer_layout(Graph *g) {
  g->train_floats = 0;
  for (int i = 0; i < g->nparams; i++) {
    Param *p = &g->params[i];
    p->toff = p->frozen ? -1 : g->train_floats;
    if (!p->frozen) g->train_floats += pad16(shape_numel(p->shape));
  }
  g->state_floats = optimizer_slots(&g->info.opt) * g->train_floats;
}

// The factor that scales every gradient to a global norm of at most o->clip.
static Value *clip_scale(Graph *g, const Optimizer *o) {
  Builder b = {g, o->loc, PH_UPDATE};
  Value *sq = NULL;
  for (int i = 0; i < g->nparams; i++) {
    Value *gr = g->params[i].grad;
    if (!gr) continue;
    Value *s = ir_sum(&b, mul(&b, gr, gr), shape_make(0, NULL), 0);
    sq = sq ? add(&b, sq, s) : s;
  }
  if (!sq) return NULL;
  Value *d = add(&b, ir_unary(&b, OP_sqrt, sq), K(&b, 1e-6));
  Value *mx = add(&b, d, ir_unary(&b, OP_relu, sub(&b, K(&b, o->clip), d)));
  return dvd(&b, K(&b, o->clip), mx);
}

// The learning rate of parameter p: lr, times its layer's lr_mult.
static Value *lr_of(Builder *b, const Param *p) {
  Value *lr = H(b, HYP_LR);
  return p->lr_mult != 1 ? mul(b, lr, K(b, p->lr_mult)) : lr;
}

// The update of floats [off, off + n) of the parameter slab, whose gradients
// and state are floats [toff, toff + n) of theirs: consecutive trainable
// parameters with the same lr multiplier, updated by one streaming loop.
// `scale` (or NULL) multiplies the gradients first (clipping).
static void update_run(Graph *g, const Optimizer *o, const Param *p0, int64_t n, Value *scale) {
  Builder b = {g, p0->loc, PH_UPDATE};
  int64_t off = p0->offset, toff = p0->toff;
  Value *w = ir_slab(&b, BUF_PARAM, 0, off, n), *gr = ir_slab(&b, BUF_GRAD, 0, toff, n);
  if (scale) gr = mul(&b, gr, scale);
  if (o->weight_decay > 0 && o->kind == OPT_ADAMW)
    w = mul(&b, w, sub(&b, K(&b, 1), mul(&b, lr_of(&b, p0), K(&b, o->weight_decay))));
  else if (o->weight_decay > 0)
    gr = add(&b, gr, mul(&b, K(&b, o->weight_decay), w));
  Value *nw;
  if (o->kind == OPT_ADAM || o->kind == OPT_ADAMW) {
    Value *m = ir_slab(&b, BUF_STATE, 0, toff, n), *v = ir_slab(&b, BUF_STATE, 1, toff, n);
    Value *m2 = add(&b, mul(&b, K(&b, o->beta1), m), mul(&b, K(&b, 1 - o->beta1), gr));
    Value *v2 = add(&b, mul(&b, K(&b, o->beta2), v), mul(&b, K(&b, 1 - o->beta2), mul(&b, gr, gr)));
    Value *step = dvd(&b, lr_of(&b, p0), H(&b, HYP_BC1));
    Value *denom = add(&b, dvd(&b, ir_unary(&b, OP_sqrt, v2), ir_unary(&b, OP_sqrt, H(&b, HYP_BC2))),
                       K(&b, o->eps));
    nw = sub(&b, w, mul(&b, step, dvd(&b, m2, denom)));
    ir_store_slab(&b, m2, BUF_STATE, 0, toff);
    ir_store_slab(&b, v2, BUF_STATE, 1, toff);
  } else if (o->momentum > 0) {
    Value *buf = ir_slab(&b, BUF_STATE, 0, toff, n);
    Value *buf2 = add(&b, mul(&b, K(&b, o->momentum), buf), gr);
    nw = sub(&b, w, mul(&b, lr_of(&b, p0), buf2));
    ir_store_slab(&b, buf2, BUF_STATE, 0, toff);
  } else {
    nw = sub(&b, w, mul(&b, lr_of(&b, p0), gr));
  }
  ir_store_slab(&b, nw, BUF_PARAM, 0, off);
}

// Parameters are laid out back to back in the slabs (each padded to 16
// floats, the padding zero in every slab), so every run of trainable
// parameters with one lr multiplier is one contiguous range in each slab:
// usually all of them, one loop.
void optimizer_lower(Graph *g) {
  const Optimizer *o = &g->info.opt;
  Value *scale = o->clip > 0 ? clip_scale(g, o) : NULL;
  for (int i = 0; i < g->nparams;) {
    Param *p = &g->params[i];
    if (!p->grad) {
      i++;
      continue;
    }
    int j = i + 1;
    while (j < g->nparams && g->params[j].grad && g->params[j].lr_mult == p->lr_mult) j++;
    int64_t end = j < g->nparams ? g->params[j].offset : g->param_floats;
    update_run(g, o, p, end - p->offset, scale);
    i = j;
  }
}

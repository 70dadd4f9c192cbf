// loop.c: loops in the IR. A recurrent block (or a built-in recurrent layer)
// becomes one OP_loop value whose body is a graph of its own:
//
//   formals   OP_formal leaves: step t of a sequence (LF_SLICE), a carried
//             state (LF_STATE) or a loop-invariant value (LF_INVAR)
//   outputs   stores to BUF_LOOP slots: stacked over t (LO_STACK), the last
//             step's value (LO_LAST, also the update of a state) or summed
//             over t (LO_SUM)
//
// Three transformations live here:
//   hoisting  the work of a body that does not depend on a state (the input
//             projection x[t] . W^T + b) is rebuilt outside as one operation
//             on the whole sequence, and the body reads its step t instead;
//   BPTT      the gradient of a loop is a reverse loop whose body comes from
//             the same reverse-mode AD (autodiff_sweep) run over the body. The
//             forward loop saves, stacked over t, the body values that the
//             gradient rules read and that depend on a state; what depends
//             only on invariants and step inputs is recomputed. Gradients of
//             invariants add up over the steps (LO_SUM);
//   printing  --emit=ir and --emit=grad show bodies below their loops.
#include "fnnc.h"

#include <string.h>

#define MAXOUT 128

LoopInfo *loop_of(Graph *g, Value *v) { return g->loops.data[v->ia[0]]; }

LoopInfo *loop_new(Graph *outer, int64_t T, Loc loc) {
  LoopInfo *l = arena_alloc(sizeof *l);
  l->id = outer->loops.len;
  vec_push(&outer->loops, l);
  l->body = graph_new();
  l->body->info.name = "loop";
  l->T = T;
  l->steps = T;
  l->loc = loc;
  l->formals = arena_alloc(sizeof(Formal) * MAXIN);
  l->outs = arena_alloc(sizeof(LoopOut) * MAXOUT);
  return l;
}

static Builder body_builder(LoopInfo *l, Loc loc) { return (Builder){l->body, loc, PH_FWD}; }

// [B, T, d1...] -> [B, d1...]
static Shape step_shape(Shape s) {
  Shape r = s;
  r.rank = s.rank - 1;
  for (int i = 1; i < r.rank; i++) r.d[i] = s.d[i + 1];
  return r;
}

// [B, d1...] -> [B, T, d1...]
static Shape seq_shape(Shape s, int64_t T) {
  Shape r = s;
  r.rank = s.rank + 1;
  r.d[1] = T;
  for (int i = 2; i < r.rank; i++) r.d[i] = s.d[i - 1];
  return r;
}

static Value *formal_leaf(LoopInfo *l, int i, Loc loc) {
  Builder b = body_builder(l, loc);
  Value *v = ir_leaf(&b, OP_formal, l->formals[i].shape, T_F32, i, 0);
  v->name = l->formals[i].name;
  return v;
}

Value *loop_formal(LoopInfo *l, FormalKind kind, Value *outer_v, Shape s, const char *name) {
  for (int i = 0; i < l->nformals; i++)
    if (l->formals[i].kind == kind && l->formals[i].outer == outer_v && kind != LF_STATE)
      return formal_leaf(l, i, outer_v->loc);
  if (l->nformals == MAXIN) {
    error_at(l->loc, "a loop may read at most %d tensors", MAXIN);
    return NULL;
  }
  Formal *f = &l->formals[l->nformals];
  f->kind = kind;
  f->outer = outer_v;
  f->next = -1;
  f->name = name ? name : outer_v->name;
  f->shape = kind == LF_SLICE ? step_shape(outer_v->shape) : kind == LF_STATE ? s : outer_v->shape;
  return formal_leaf(l, l->nformals++, outer_v->loc);
}

int loop_output(LoopInfo *l, OutKind kind, Value *v) {
  if (!v) return -1;
  if (l->nouts == MAXOUT) die("too many loop outputs");
  Builder b = body_builder(l, v->loc);
  ir_store(&b, v, BUF_LOOP, -1, l->nouts);
  l->outs[l->nouts].kind = kind;
  l->outs[l->nouts].store = l->body->stores.data[l->body->stores.len - 1];
  return l->nouts++;
}

// The store of output j in the body (after simplification too).
static Value *out_store(LoopInfo *l, int j) {
  for (int i = 0; i < l->body->stores.len; i++) {
    Value *s = l->body->stores.data[i];
    if (!s->dead && s->ia[0] == BUF_LOOP && s->ia[1] == j) return s;
  }
  return NULL;
}

static Shape out_shape(LoopInfo *l, int j) {
  if (l->outs[j].kind == LO_NONE) die("loop output %d was moved out", j);
  Shape s = l->outs[j].store->in[0]->shape;
  return l->outs[j].kind == LO_STACK ? seq_shape(s, l->T) : s;
}

static Value *make_loopout(Builder *b, Value *loopv, LoopInfo *l, int j) {
  Shape s = out_shape(l, j);
  int64_t ia[8] = {j, s.rank};
  for (int i = 0; i < s.rank; i++) ia[2 + i] = s.d[i];
  Phase keep = b->phase;
  b->phase = loopv->phase;
  Value *o = ir_new(b, OP_loopout, 1, &loopv, ia, 0);
  b->phase = keep;
  return o;
}

//
// Rebuilding a body: copies the live part of the body into a fresh graph,
// replacing the values marked in `as_formal` (by old id, -1 for none) with the
// leaf of that formal, and dropping formals nothing reads any more.
//
static void body_rebuild(LoopInfo *l, const int *as_formal) {
  Graph *old = l->body;
  int n = old->values.len;
  bool *live = arena_alloc((size_t)n);
  for (int i = n - 1; i >= 0; i--) {
    Value *v = old->values.data[i];
    if (v->dead) continue;
    if (v->op == OP_store) live[i] = true;
    if (!live[i] || (as_formal && as_formal[i] >= 0)) continue;
    for (int j = 0; j < v->nin; j++) live[v->in[j]->id] = true;
  }
  bool used[MAXIN] = {0};
  for (int i = 0; i < n; i++) {
    Value *v = old->values.data[i];
    if (!live[i]) continue;
    if (as_formal && as_formal[i] >= 0) used[as_formal[i]] = true;
    else if (v->op == OP_formal) used[v->ia[0]] = true;
  }
  for (int i = 0; i < l->nformals; i++)
    if (l->formals[i].kind == LF_STATE) used[i] = true;  // states are carried whether read or not
  int renum[MAXIN], nf = 0;
  Formal *nfm = arena_alloc(sizeof(Formal) * MAXIN);
  for (int i = 0; i < l->nformals; i++) {
    renum[i] = used[i] ? nf : -1;
    if (used[i]) nfm[nf++] = l->formals[i];
  }
  l->formals = nfm;
  l->nformals = nf;
  Graph *g = graph_new();
  g->info.name = old->info.name;
  l->body = g;
  Value **map = arena_alloc(sizeof(Value *) * (size_t)n);
  for (int i = 0; i < n; i++) {
    Value *v = old->values.data[i];
    if (!live[i]) continue;
    Builder b = {g, v->loc, v->phase};
    if (as_formal && as_formal[i] >= 0) {
      map[i] = formal_leaf(l, renum[as_formal[i]], v->loc);
    } else if (v->op == OP_formal) {
      map[i] = formal_leaf(l, renum[v->ia[0]], v->loc);
    } else if (v->op == OP_const) {
      map[i] = ir_const(&b, v->fa);
    } else if (op_info[v->op].flags & F_LEAF) {
      die("a loop body reads an outer leaf (%s)", op_info[v->op].name);
    } else {
      Value *in[MAXIN];
      for (int j = 0; j < v->nin; j++) in[j] = map[v->in[j]->id];
      if (v->op == OP_store) {
        ir_store(&b, in[0], BUF_LOOP, -1, v->ia[1]);
        map[i] = g->stores.data[g->stores.len - 1];
        l->outs[v->ia[1]].store = map[i];
      } else {
        map[i] = ir_new(&b, v->op, v->nin, in, v->ia, v->fa);
      }
    }
    if (map[i] && !map[i]->name) map[i]->name = v->name;
  }
}

//
// Hoisting
//
// A body value can be computed for all steps at once when it depends on no
// state and is built from step inputs, invariants, constants, elementwise ops,
// broadcasts and matrix products with a step operand on the left.
static bool hoistable_op(Value *v) {
  unsigned fl = op_info[v->op].flags;
  if (v->op == OP_bcast) return true;
  if ((fl & F_EW) && !(fl & F_GATHER)) return true;
  return v->op == OP_matmul && !v->ia[0] && shape_batched(v->in[0]->shape) && !shape_batched(v->in[1]->shape);
}

// The outer value of body value v computed over the whole sequence.
static Value *seq_value(Builder *ob, LoopInfo *l, Value *v, Value **memo, const bool *perstep) {
  if (memo[v->id]) return memo[v->id];
  Value *r;
  if (v->op == OP_formal) {
    r = l->formals[v->ia[0]].outer;
  } else if (v->op == OP_const) {
    r = ir_const(ob, v->fa);
  } else if (v->op == OP_bcast && perstep[v->id]) {
    // A per-step broadcast fills [B, T, ...]: its axes move one place up
    // after the batch.
    uint32_t m = (uint32_t)v->ia[0], nm = (m & 1) | ((m & ~1u) << 1);
    r = ir_bcast(ob, seq_value(ob, l, v->in[0], memo, perstep), seq_shape(v->shape, l->T), nm);
  } else {
    Value *in[MAXIN];
    for (int j = 0; j < v->nin; j++) in[j] = seq_value(ob, l, v->in[j], memo, perstep);
    ob->loc = v->loc;
    r = ir_new(ob, v->op, v->nin, in, v->ia, v->fa);
  }
  memo[v->id] = r;
  return r;
}

static void hoist(Builder *ob, LoopInfo *l) {
  Graph *g = l->body;
  int n = g->values.len;
  bool *dep_state = arena_alloc((size_t)n), *ok = arena_alloc((size_t)n), *perstep = arena_alloc((size_t)n);
  for (int i = 0; i < n; i++) {
    Value *v = g->values.data[i];
    if (v->op == OP_formal) {
      FormalKind k = l->formals[v->ia[0]].kind;
      dep_state[i] = k == LF_STATE;
      ok[i] = k == LF_SLICE || (k == LF_INVAR && !shape_batched(v->shape));
      perstep[i] = k == LF_SLICE;
      continue;
    }
    ok[i] = v->op == OP_const || (op_info[v->op].flags & F_LEAF) == 0;
    ok[i] = ok[i] && v->op != OP_store && (v->op == OP_const || hoistable_op(v));
    for (int j = 0; j < v->nin; j++) {
      dep_state[i] |= dep_state[v->in[j]->id];
      ok[i] = ok[i] && ok[v->in[j]->id];
      perstep[i] |= perstep[v->in[j]->id];
    }
    // Batched values built from invariants only ([B, ...] broadcasts of a
    // bias) are per step too once they meet a step value.
    if (v->op == OP_bcast && shape_batched(v->shape)) perstep[i] = true;
    ok[i] = ok[i] && !dep_state[i];
  }
  // The frontier: per-step values that can be hoisted, built from a step input,
  // and read by something that cannot.
  bool *reads_seq = arena_alloc((size_t)n);
  for (int i = 0; i < n; i++) {
    Value *v = g->values.data[i];
    if (v->op == OP_formal) reads_seq[i] = l->formals[v->ia[0]].kind == LF_SLICE;
    for (int j = 0; j < v->nin; j++) reads_seq[i] |= reads_seq[v->in[j]->id];
  }
  int *as_formal = arena_alloc(sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) as_formal[i] = -1;
  Value **memo = arena_alloc(sizeof(Value *) * (size_t)n);
  bool any = false;
  for (int i = 0; i < n; i++) {
    Value *v = g->values.data[i];
    for (int j = 0; j < v->nin; j++) {
      Value *u = v->in[j];
      int k = u->id;
      if (ok[i] || !ok[k] || !reads_seq[k] || u->op == OP_formal || as_formal[k] >= 0 || !shape_batched(u->shape))
        continue;
      if (l->nformals == MAXIN) continue;
      Value *sv = seq_value(ob, l, u, memo, perstep);
      if (!sv) continue;
      Formal *f = &l->formals[l->nformals];
      f->kind = LF_SLICE;
      f->outer = sv;
      f->next = -1;
      f->name = u->name ? u->name : "hoisted";
      f->shape = u->shape;
      if (!sv->name) sv->name = f->name;
      as_formal[k] = l->nformals++;
      any = true;
    }
  }
  if (any) body_rebuild(l, as_formal);
}

// Sums over the steps that are products or sums over the batch (a weight
// gradient dz^T . h, a bias gradient sum(dz)) are computed after the loop from
// the stacked steps: one product over the B*T rows, or one sum. `sum_of[j]`
// gets the body value of such an output j, whose store is dropped; the
// operands are stacked as new outputs (`stack_of` by body id), unless they
// are step inputs already.
static bool sum_after(Value *v) {
  if (v->op == OP_matmul)
    return v->ia[0] && !v->ia[1] && shape_batched(v->in[0]->shape) && shape_batched(v->in[1]->shape);
  return v->op == OP_sum && shape_batched(v->in[0]->shape) && !(v->ia[0] & 1);
}

static void plan_sums_after(LoopInfo *l, Value **sum_of) {
  for (int j = 0; j < l->nouts; j++) {
    sum_of[j] = NULL;
    if (l->outs[j].kind != LO_SUM || !sum_after(l->outs[j].store->in[0])) continue;
    Value *v = l->outs[j].store->in[0];
    sum_of[j] = v;
    l->outs[j].store->dead = true;
    l->outs[j].kind = LO_NONE;
  }
}

Value *loop_finish(Builder *b, LoopInfo *l, Value **outs) {
  hoist(b, l);
  Value *sum_of[MAXOUT];
  plan_sums_after(l, sum_of);
  int nout0 = l->nouts;
  // The operands of each moved sum, as whole sequences: a sliced input's
  // outer value, or a new stacked output (src_stack).
  Value *src_outer[MAXOUT][2] = {{0}};
  int src_stack[MAXOUT][2];
  int *stack_of = arena_alloc(sizeof(int) * (size_t)l->body->values.len);
  for (int i = 0; i < l->body->values.len; i++) stack_of[i] = -1;
  for (int j = 0; j < nout0; j++)
    for (int k = 0; sum_of[j] && k < (sum_of[j]->op == OP_matmul ? 2 : 1); k++) {
      Value *u = sum_of[j]->in[k];
      src_stack[j][k] = -1;
      if (u->op == OP_formal && l->formals[u->ia[0]].kind == LF_SLICE) {
        src_outer[j][k] = l->formals[u->ia[0]].outer;
        continue;
      }
      for (int o = 0; o < l->nouts && stack_of[u->id] < 0; o++)
        if (l->outs[o].kind == LO_STACK && l->outs[o].store->in[0] == u) stack_of[u->id] = o;
      if (stack_of[u->id] < 0) stack_of[u->id] = loop_output(l, LO_STACK, u);
      src_stack[j][k] = stack_of[u->id];
    }
  body_rebuild(l, NULL);
  Value *in[MAXIN];
  for (int i = 0; i < l->nformals; i++) in[i] = l->formals[i].outer;
  int64_t ia[8] = {l->id};
  b->loc = l->loc;
  Value *v = ir_new(b, OP_loop, l->nformals, in, ia, 0);
  if (!v) return NULL;
  v->name = l->name;
  for (int j = 0; j < nout0 && outs; j++)
    if (l->outs[j].kind != LO_NONE) outs[j] = make_loopout(b, v, l, j);
  for (int j = 0; j < nout0 && outs; j++) {
    Value *s = sum_of[j], *x[2] = {0};
    if (!s) continue;
    for (int k = 0; k < (s->op == OP_matmul ? 2 : 1); k++)
      x[k] = src_outer[j][k] ? src_outer[j][k] : make_loopout(b, v, l, src_stack[j][k]);
    b->loc = s->loc;
    if (s->op == OP_matmul)
      outs[j] = ir_new(b, OP_matmul, 2, x, s->ia, 0);
    else  // the kept axes move one place up, past the time axis
      outs[j] = ir_sum(b, x[0], s->shape, (uint32_t)s->ia[0] << 1);
  }
  return v;
}

//
// Backpropagation through time
//
// The formal of the reverse loop R for forward value u that a gradient rule
// reads: step inputs and invariants are read again from the forward loop's
// inputs, values built from those alone are recomputed, the rest (everything
// that depends on a state) is saved by the forward loop as a new stacked
// output.
typedef struct {
  Builder *ob;        // the outer graph
  Value *loopv;       // the forward loop
  LoopInfo *F, *R;
  Value **rmap;       // forward body id -> R value
  bool *dep_state;    // forward body id -> depends on a state
  int n0;
} Bptt;

static Value *fwd_ref(Bptt *c, Value *u) {
  if (c->rmap[u->id]) return c->rmap[u->id];
  Value *r;
  Builder rb = body_builder(c->R, u->loc);
  if (u->op == OP_const) {
    r = ir_const(&rb, u->fa);
  } else if (u->op == OP_formal && c->F->formals[u->ia[0]].kind != LF_STATE) {
    Formal *f = &c->F->formals[u->ia[0]];
    Value *outer = c->loopv->in[u->ia[0]];
    r = loop_formal(c->R, f->kind, outer, f->shape, f->name);
  } else if (!c->dep_state[u->id]) {
    Value *in[MAXIN];
    for (int j = 0; j < u->nin; j++) in[j] = fwd_ref(c, u->in[j]);
    r = ir_new(&rb, u->op, u->nin, in, u->ia, u->fa);
  } else {
    if (!shape_batched(u->shape)) die("a saved loop value is not batched");
    int j = loop_output(c->F, LO_STACK, u);
    Value *saved = make_loopout(c->ob, c->loopv, c->F, j);
    r = loop_formal(c->R, LF_SLICE, saved, u->shape, u->name ? u->name : "saved");
  }
  c->rmap[u->id] = r;
  return r;
}

static Value *zeros(Builder *b, Shape s) { return ir_bcast(b, ir_const(b, 0), s, 0); }

void loop_grad(Builder *ob, Value *loopv, Value **adj, Value **dx) {
  Graph *g = ob->g;
  LoopInfo *F = loop_of(g, loopv);
  Graph *body = F->body;
  // The adjoints of the loop's outputs.
  Value *oadj[MAXOUT] = {0};
  for (int i = loopv->id + 1; i < g->values.len; i++) {
    Value *u = g->values.data[i];
    if (u->op == OP_loopout && u->in[0] == loopv && !u->dead && adj[u->id]) oadj[u->ia[0]] = adj[u->id];
  }
  for (int j = 0; j < F->nouts; j++)
    if (F->outs[j].kind == LO_SUM && oadj[j]) die("gradient through a summed loop output");
  int n0 = body->values.len;
  bool *dep_state = arena_alloc((size_t)n0);
  // A state needs a gradient if its initial value or its update does: iterate
  // to the fixed point (a state's update may read another state).
  bool sg[MAXIN] = {0};
  for (int i = 0; i < F->nformals; i++) sg[i] = loopv->in[i]->needs_grad;
  for (bool changed = true; changed;) {
    changed = false;
    for (int i = 0; i < n0; i++) {
      Value *v = body->values.data[i];
      if (v->op == OP_formal) {
        v->needs_grad = sg[v->ia[0]];
        dep_state[i] = F->formals[v->ia[0]].kind == LF_STATE;
        continue;
      }
      v->needs_grad = false;
      for (int j = 0; j < v->nin; j++) {
        v->needs_grad |= v->in[j]->needs_grad;
        dep_state[i] |= dep_state[v->in[j]->id];
      }
    }
    for (int i = 0; i < F->nformals; i++)
      if (F->formals[i].kind == LF_STATE && !sg[i] && F->outs[F->formals[i].next].store->in[0]->needs_grad)
        sg[i] = changed = true;
  }
  LoopInfo *R = loop_new(g, F->T, F->loc);
  R->reverse = !F->reverse;
  // Truncated BPTT: the reverse loop covers the forward loop's last steps.
  if (g->info.bptt > 0 && g->info.bptt < F->T) R->steps = g->info.bptt;
  R->name = arena_printf("%s'", F->name ? F->name : "loop");
  // Seeds, built in the forward body (phase backward) and moved to R below:
  // the adjoint of a stacked output's step t, and the carried adjoints of the
  // states, which start from the adjoints of their last values.
  Value **adjb = arena_alloc(sizeof(Value *) * (size_t)n0);
  Builder bb = {body, F->loc, PH_BWD};
  int nseedf = 0;
  Value *seedf[MAXIN];      // body leaves standing for R formals
  int seed_rformal[MAXIN];  // their R formal index
  int state_rformal[MAXIN];
  for (int i = 0; i < F->nformals; i++) state_rformal[i] = -1;
  // Build R's formals first so their indices are known; the body-side leaves
  // use indices past the forward formals to stay distinct.
  for (int i = 0; i < F->nformals; i++) {
    Formal *f = &F->formals[i];
    if (f->kind != LF_STATE || !sg[i]) continue;
    Value *init = oadj[f->next] ? oadj[f->next] : ir_const(ob, 0);
    loop_formal(R, LF_STATE, init, f->shape, arena_printf("d%s", f->name ? f->name : "state"));
    state_rformal[i] = R->nformals - 1;
    Value *leaf = ir_leaf(&bb, OP_formal, f->shape, T_F32, 1000 + nseedf, 0);
    seed_rformal[nseedf] = R->nformals - 1;
    seedf[nseedf++] = leaf;
    Value *u = F->outs[f->next].store->in[0];
    adjb[u->id] = adjb[u->id] ? ir_binary(&bb, OP_add, adjb[u->id], leaf) : leaf;
  }
  for (int j = 0; j < F->nouts; j++) {
    if (F->outs[j].kind != LO_STACK || !oadj[j]) continue;
    Value *u = F->outs[j].store->in[0];
    if (!u->needs_grad) continue;
    loop_formal(R, LF_SLICE, oadj[j], u->shape, arena_printf("d%s", u->name ? u->name : "out"));
    Value *leaf = ir_leaf(&bb, OP_formal, u->shape, T_F32, 1000 + nseedf, 0);
    seed_rformal[nseedf] = R->nformals - 1;
    seedf[nseedf++] = leaf;
    adjb[u->id] = adjb[u->id] ? ir_binary(&bb, OP_add, adjb[u->id], leaf) : leaf;
  }
  autodiff_sweep(&bb, n0, adjb);
  // Move the backward values into R.
  Bptt c = {ob, loopv, F, R, NULL, dep_state, n0};
  int n1 = body->values.len;
  c.rmap = arena_alloc(sizeof(Value *) * (size_t)n1);
  for (int k = 0; k < nseedf; k++) {
    Builder rb = body_builder(R, F->loc);
    Value *leaf = ir_leaf(&rb, OP_formal, R->formals[seed_rformal[k]].shape, T_F32, seed_rformal[k], 0);
    leaf->name = R->formals[seed_rformal[k]].name;
    c.rmap[seedf[k]->id] = leaf;
  }
  for (int i = n0; i < n1; i++) {
    Value *v = body->values.data[i];
    if (c.rmap[i]) continue;
    Value *in[MAXIN];
    for (int j = 0; j < v->nin; j++) in[j] = v->in[j]->id < n0 ? fwd_ref(&c, v->in[j]) : c.rmap[v->in[j]->id];
    Builder rb = body_builder(R, v->loc);
    c.rmap[i] = ir_new(&rb, v->op, v->nin, in, v->ia, v->fa);
  }
  // The gradient values leave the body: the forward loop keeps only its own.
  for (int i = n0; i < n1; i++) ((Value *)body->values.data[i])->dead = true;
  // R's outputs and the gradients of the forward loop's inputs.
  int rout[MAXIN];
  for (int i = 0; i < F->nformals; i++) {
    rout[i] = -1;
    Formal *f = &F->formals[i];
    if (!sg[i]) continue;
    Value *leaf = NULL;
    for (int k = 0; k < n0 && !leaf; k++) {
      Value *v = body->values.data[k];
      if (v->op == OP_formal && v->ia[0] == i && !v->dead) leaf = v;
    }
    Value *a = leaf && adjb[leaf->id] ? adjb[leaf->id] : NULL;
    Builder rb = body_builder(R, F->loc);
    Value *ra = a ? (a->id < n0 ? fwd_ref(&c, a) : c.rmap[a->id]) : NULL;
    if (f->kind == LF_STATE) {
      if (!ra) ra = zeros(&rb, f->shape);
      rout[i] = loop_output(R, LO_LAST, ra);
      R->formals[state_rformal[i]].next = rout[i];
    } else if (ra) {
      rout[i] = loop_output(R, f->kind == LF_SLICE ? LO_STACK : LO_SUM, ra);
    }
  }
  Value *routs[MAXOUT];
  Phase keep = ob->phase;
  ob->phase = PH_BWD;
  loop_finish(ob, R, routs);
  ob->phase = keep;
  for (int i = 0; i < F->nformals; i++)
    if (rout[i] >= 0 && loopv->in[i]->needs_grad) {
      Value *d = routs[rout[i]];
      // A scalar initial state gets the sum of its adjoint.
      if (d && loopv->in[i]->shape.rank == 0) d = ir_sum(ob, d, loopv->in[i]->shape, 0);
      dx[i] = d;
    }
}

//
// Simplification and printing
//
// Also drops the outputs nothing reads (no live loopout, no state carried
// through them), so the body does not compute them.
void loop_simplify(Graph *g) {
  for (int i = 0; i < g->values.len; i++) {
    Value *v = g->values.data[i];
    if (v->dead || v->op != OP_loop) continue;
    LoopInfo *l = loop_of(g, v);
    bool *read = arena_alloc((size_t)l->nouts + 1);
    for (int k = i + 1; k < g->values.len; k++) {
      Value *u = g->values.data[k];
      if (!u->dead && u->op == OP_loopout && u->in[0] == v) read[u->ia[0]] = true;
    }
    for (int f = 0; f < l->nformals; f++)
      if (l->formals[f].kind == LF_STATE) read[l->formals[f].next] = true;
    for (int j = 0; j < l->nouts; j++)
      if (!read[j] && l->outs[j].kind != LO_NONE) {
        l->outs[j].store->dead = true;
        l->outs[j].kind = LO_NONE;
      }
    simplify(l->body);
    for (int j = 0; j < l->nouts; j++) {
      Value *s = out_store(l, j);
      if (s) l->outs[j].store = s;
    }
  }
}

void loop_dump(FILE *out, Graph *g, Value *loopv, const char *indent) {
  static const char *fk[] = {"slice", "state", "invariant"};
  static const char *ok[] = {"stack", "last", "sum", "dropped"};
  LoopInfo *l = loop_of(g, loopv);
  fprintf(out, "%s# L%d: %lld steps%s", indent, l->id, (long long)l->T, l->reverse ? ", reversed" : "");
  if (l->steps < l->T) fprintf(out, ", truncated to the first %lld it runs", (long long)l->steps);
  fputc('\n', out);
  for (int i = 0; i < l->nformals; i++) {
    Formal *f = &l->formals[i];
    fprintf(out, "%s# #%d %s %s %s", indent, i, fk[f->kind], f->name ? f->name : "", shape_str(f->shape));
    if (f->kind == LF_STATE) fprintf(out, " <- out %d", f->next);
    fputc('\n', out);
  }
  for (int j = 0; j < l->nouts; j++)
    fprintf(out, "%s# out %d: %s\n", indent, j, ok[l->outs[j].kind]);
  ir_dump_values(out, l->body, PH_UPDATE, indent);
}

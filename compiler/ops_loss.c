// ops_loss.c: softmax, cross-entropy and the accuracy count.
//
// The classifier loss is lowered as  loss = xent(softmax(z), y) * (1/n).  Taken
// naively, its gradient divides by the probabilities; simplify.c cancels that
// to  (softmax(z) - onehot(y)) / n, and fuse.c puts softmax, the loss and that
// gradient into one row-wise kernel (emit_softmax).
#include "fnnc.h"

static LLVMBuilderRef B(Emit *e) { return e->cg->b; }
static LLVMValueRef I(Emit *e, int64_t c) { return cg_i64(e, c); }

static bool is_labels(Value *y, Value *p, Value *v) {
  if (y->type != T_I32 || y->shape.rank != p->shape.rank - 1) {
    error_at(v->loc, "expected class labels for a %s, got %s", shape_str_sample(p->shape), shape_str_sample(y->shape));
    return false;
  }
  return true;
}

// This call's rows [lo, hi) of a [..., K] tensor, flattened over every axis
// but the last: its rows of the first axis (cg_rows: the batch rows of a
// parallel task) times the rows each of them holds ([B, T, K]: T).
static void call_rows(Emit *e, Shape s, LLVMValueRef *lo, LLVMValueRef *hi) {
  if (s.rank < 2) {
    *lo = I(e, 0), *hi = I(e, 1);
    return;
  }
  cg_rows(e, s, lo, hi);
  int64_t inner = 1;
  for (int i = 1; i < s.rank - 1; i++) inner *= s.d[i];
  if (inner > 1) *lo = LLVMBuildMul(B(e), *lo, I(e, inner), ""), *hi = LLVMBuildMul(B(e), *hi, I(e, inner), "");
}

// The outer indices idx[0 .. rank-2] of flat row `row` of a [..., K] tensor.
static void row_indices(Emit *e, Shape s, LLVMValueRef row, LLVMValueRef *idx) {
  for (int i = s.rank - 2; i >= 0; i--) {
    LLVMValueRef d = cg_dim(e, s, i);
    idx[i] = i == 0 ? row : LLVMBuildURem(B(e), row, d, "");
    if (i) row = LLVMBuildUDiv(B(e), row, d, "");
  }
}

//
// softmax: p[r, k] = exp(z[r,k] - max_j z[r,j]) / sum_j exp(z[r,j] - max_j z[r,j])
//
// dz = p * (g - sum_k(g * p))       (the sum is over the last axis, broadcast back)
bool shape_softmax(Value *v) {
  v->shape = v->in[0]->shape;
  v->type = T_F32;
  return true;
}
void grad_softmax(Builder *b, Value *v, Value *g, Value **dx) {
  Shape s = v->shape;
  uint32_t keep = (1u << (s.rank - 1)) - 1;  // all axes but the last
  Value *dot = ir_sum(b, ir_binary(b, OP_mul, g, v), shape_make(s.rank - 1, s.d), keep);
  dx[0] = ir_binary(b, OP_mul, v, ir_binary(b, OP_sub, g, ir_bcast(b, dot, s, keep)));
}
// One row per tile. When the kernel also holds xent(p, y), the loss of the row
// is -(z[y] - max - log(sum)), which never takes the log of a rounded p.
LLVMValueRef emit_softmax(Emit *e, Value *v, LLVMValueRef *in) {
  Value *Z = v->in[0];
  int r = v->shape.rank;
  int64_t K = v->shape.d[r - 1];
  Value *xent = NULL;
  for (int i = 0; i < e->k->members.len; i++) {
    Value *m = e->k->members.data[i];
    if (m->op == OP_xent && m->in[0] == v) xent = m;
  }
  LLVMValueRef tile = cg_alloca(e, e->f32, K);
  LLVMValueRef lossacc = cg_alloca(e, e->f32, 1);
  LLVMBuildStore(B(e), cg_f32(e, 0), lossacc);
  // This call's rows are enumerated with a flat index; outer indices are
  // recovered for the epilogue.
  LLVMValueRef rlo, rhi;
  call_rows(e, v->shape, &rlo, &rhi);
  Loop lr = cg_loop_begin(e, rlo, rhi, "row");
  LLVMValueRef idx[MAXRANK];
  row_indices(e, v->shape, lr.i, idx);
  // max
  LLVMValueRef mx = cg_alloca(e, e->f32, 1);
  LLVMBuildStore(B(e), cg_f32(e, -3.4028234663852886e38), mx);
  Loop lk = cg_loop_begin(e, I(e, 0), I(e, K), "k");
  idx[r - 1] = lk.i;
  LLVMValueRef z = cg_load_at(e, Z, idx);
  LLVMBuildStore(B(e), cg_max(e, LLVMBuildLoad2(B(e), e->f32, mx, ""), z), mx);
  cg_loop_end(e, &lk);
  LLVMValueRef m = LLVMBuildLoad2(B(e), e->f32, mx, "max");
  // exp, in a loop of its own so that it vectorizes; then the sum, in order
  Loop lk2 = cg_loop_begin(e, I(e, 0), I(e, K), "k");
  idx[r - 1] = lk2.i;
  LLVMValueRef d = cg_fast(LLVMBuildFSub(B(e), cg_load_at(e, Z, idx), m, ""));
  LLVMBuildStore(B(e), vm_exp(e->cg->mod, B(e), d), cg_gep(e, e->f32, tile, lk2.i));
  cg_loop_end(e, &lk2);
  LLVMValueRef sum = cg_alloca(e, e->f32, 1);
  LLVMBuildStore(B(e), cg_f32(e, 0), sum);
  Loop lks = cg_loop_begin(e, I(e, 0), I(e, K), "k");
  LLVMValueRef ex = LLVMBuildLoad2(B(e), e->f32, cg_gep(e, e->f32, tile, lks.i), "");
  LLVMBuildStore(B(e), cg_fast(LLVMBuildFAdd(B(e), LLVMBuildLoad2(B(e), e->f32, sum, ""), ex, "")), sum);
  cg_loop_end(e, &lks);
  LLVMValueRef s = LLVMBuildLoad2(B(e), e->f32, sum, "sum");
  LLVMValueRef inv = LLVMBuildFDiv(B(e), cg_f32(e, 1), s, "");
  Loop lk3 = cg_loop_begin(e, I(e, 0), I(e, K), "k");
  LLVMValueRef pp = cg_gep(e, e->f32, tile, lk3.i);
  LLVMBuildStore(B(e), LLVMBuildFMul(B(e), LLVMBuildLoad2(B(e), e->f32, pp, ""), inv, ""), pp);
  cg_loop_end(e, &lk3);
  if (xent) {
    LLVMValueRef lab = cg_load_at(e, xent->in[1], idx);
    idx[r - 1] = LLVMBuildSExt(B(e), lab, e->i64, "");
    LLVMValueRef zy = cg_load_at(e, Z, idx);
    LLVMValueRef ls = vm_log(e->cg->mod, B(e), s);
    LLVMValueRef nll = LLVMBuildFSub(B(e), LLVMBuildFAdd(B(e), m, ls, ""), zy, "");
    LLVMBuildStore(B(e), LLVMBuildFAdd(B(e), LLVMBuildLoad2(B(e), e->f32, lossacc, ""), nll, ""), lossacc);
  }
  cg_epilogue(e, idx, 1, tile);
  cg_loop_end(e, &lr);
  if (xent) {
    LLVMValueRef none[1] = {NULL};
    cg_store_at(e, xent, none, LLVMBuildLoad2(B(e), e->f32, lossacc, ""));
  }
  return NULL;
}

//
// xent: L = -sum_b log p[b, y_b]      (p: probabilities, y: class ids)
//
// dp = -g * onehot(y) / p
bool shape_xent(Value *v) {
  if (!is_labels(v->in[1], v->in[0], v)) return false;
  v->shape.rank = 0;
  v->type = T_F32;
  return true;
}
void grad_xent(Builder *b, Value *v, Value *g, Value **dx) {
  Value *p = v->in[0];
  int64_t ia[8] = {p->shape.d[p->shape.rank - 1]};
  Value *oh = ir_new(b, OP_onehot, 1, &v->in[1], ia, 0);
  dx[0] = ir_binary(b, OP_mul, ir_unary(b, OP_neg, g), ir_binary(b, OP_div, oh, p));
}
// Alone (when its softmax is in another kernel): a loop over the rows.
LLVMValueRef emit_xent(Emit *e, Value *v, LLVMValueRef *in) {
  Value *P = v->in[0];
  int r = P->shape.rank;
  LLVMValueRef acc = cg_alloca(e, e->f32, 1);
  LLVMBuildStore(B(e), cg_f32(e, 0), acc);
  LLVMValueRef blo, bhi;
  call_rows(e, P->shape, &blo, &bhi);
  Loop lb = cg_loop_begin(e, blo, bhi, "b");
  LLVMValueRef idx[MAXRANK];
  row_indices(e, P->shape, lb.i, idx);
  LLVMValueRef lab = cg_load_at(e, v->in[1], idx);
  idx[r - 1] = LLVMBuildSExt(B(e), lab, e->i64, "");
  LLVMValueRef p = cg_load_at(e, P, idx);
  LLVMValueRef lp = vm_log(e->cg->mod, B(e), p);
  LLVMBuildStore(B(e), LLVMBuildFSub(B(e), LLVMBuildLoad2(B(e), e->f32, acc, ""), lp, ""), acc);
  cg_loop_end(e, &lb);
  LLVMValueRef none[1] = {NULL};
  cg_store_at(e, v, none, LLVMBuildLoad2(B(e), e->f32, acc, ""));
  return NULL;
}

//
// correct: c = #{ b : argmax_k z[b, k] == y_b }   (first maximum wins; with
//          per-step labels, the rows are the (b, t) pairs)
//
// not differentiable (a metric)
bool shape_correct(Value *v) {
  if (!is_labels(v->in[1], v->in[0], v)) return false;
  v->shape.rank = 0;
  v->type = T_F32;
  return true;
}
void grad_correct(Builder *b, Value *v, Value *g, Value **dx) {}
// Rows are every index but the last axis (the steps of a sequence too, for
// per-step labels); this call's rows.
LLVMValueRef emit_correct(Emit *e, Value *v, LLVMValueRef *in) {
  Value *Z = v->in[0];
  int r = Z->shape.rank;
  int64_t K = Z->shape.d[r - 1];
  LLVMValueRef acc = cg_alloca(e, e->f32, 1), best = cg_alloca(e, e->f32, 1), arg = cg_alloca(e, e->i64, 1);
  LLVMBuildStore(B(e), cg_f32(e, 0), acc);
  LLVMValueRef blo, bhi;
  call_rows(e, Z->shape, &blo, &bhi);
  Loop lb = cg_loop_begin(e, blo, bhi, "b");
  LLVMValueRef idx[MAXRANK];
  row_indices(e, Z->shape, lb.i, idx);
  idx[r - 1] = I(e, 0);
  LLVMBuildStore(B(e), cg_load_at(e, Z, idx), best);
  LLVMBuildStore(B(e), I(e, 0), arg);
  Loop lk = cg_loop_begin(e, I(e, 1), I(e, K), "k");
  idx[r - 1] = lk.i;
  LLVMValueRef z = cg_load_at(e, Z, idx), bv = LLVMBuildLoad2(B(e), e->f32, best, "");
  LLVMValueRef gt = LLVMBuildFCmp(B(e), LLVMRealOGT, z, bv, "");
  LLVMBuildStore(B(e), LLVMBuildSelect(B(e), gt, z, bv, ""), best);
  LLVMBuildStore(B(e), LLVMBuildSelect(B(e), gt, lk.i, LLVMBuildLoad2(B(e), e->i64, arg, ""), ""), arg);
  cg_loop_end(e, &lk);
  LLVMValueRef lab = LLVMBuildSExt(B(e), cg_load_at(e, v->in[1], idx), e->i64, "");
  LLVMValueRef hit = LLVMBuildICmp(B(e), LLVMIntEQ, lab, LLVMBuildLoad2(B(e), e->i64, arg, ""), "");
  LLVMValueRef add = LLVMBuildSelect(B(e), hit, cg_f32(e, 1), cg_f32(e, 0), "");
  LLVMBuildStore(B(e), LLVMBuildFAdd(B(e), LLVMBuildLoad2(B(e), e->f32, acc, ""), add, ""), acc);
  cg_loop_end(e, &lb);
  LLVMValueRef none[1] = {NULL};
  cg_store_at(e, v, none, LLVMBuildLoad2(B(e), e->f32, acc, ""));
  return NULL;
}

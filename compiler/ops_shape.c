// ops_shape.c: broadcasting, reductions, views, concatenation, one-hot.
#include "fnnc.h"

static LLVMBuilderRef B(Emit *e) { return e->cg->b; }

static int popcount(uint32_t m) { return __builtin_popcount(m); }

// bcast: y[i0..ir] = x[the indices of the axes in mask ia[0]]
// dx = sum(g) over the axes x does not fill
bool shape_bcast(Value *v) {
  v->shape.rank = (int)v->ia[1];
  for (int i = 0; i < v->shape.rank; i++) v->shape.d[i] = v->ia[2 + i];
  Value *x = v->in[0];
  if (popcount((uint32_t)v->ia[0]) != x->shape.rank) die("bcast: mask does not match the input rank");
  for (int i = 0, j = 0; i < v->shape.rank; i++)
    if ((v->ia[0] >> i) & 1)
      if (x->shape.d[j++] != v->shape.d[i]) die("bcast: dims do not match");
  v->type = x->type;
  return true;
}
void grad_bcast(Builder *b, Value *v, Value *g, Value **dx) {
  dx[0] = ir_sum(b, g, v->in[0]->shape, (uint32_t)v->ia[0]);
}
LLVMValueRef emit_bcast(Emit *e, Value *v, LLVMValueRef *in) {
  LLVMValueRef sub[MAXRANK];
  int j = 0;
  for (int i = 0; i < v->shape.rank; i++)
    if ((v->ia[0] >> i) & 1) sub[j++] = e->idx[i];
  return cg_load_at(e, v->in[0], sub);
}

// sum: y[kept axes] = sum over the other axes of x; ia[0] = mask of kept axes
// dx = bcast(g) back to the shape of x
bool shape_sum(Value *v) {
  Value *x = v->in[0];
  v->shape.rank = 0;
  for (int i = 0; i < x->shape.rank; i++)
    if ((v->ia[0] >> i) & 1) v->shape.d[v->shape.rank++] = x->shape.d[i];
  v->type = T_F32;
  return true;
}
void grad_sum(Builder *b, Value *v, Value *g, Value **dx) {
  dx[0] = ir_bcast(b, g, v->in[0]->shape, (uint32_t)v->ia[0]);
}
// Inside an elementwise kernel over the shape of x: y[kept idx] += x[idx]. The
// kernel zeroes y before its loops.
LLVMValueRef emit_sum(Emit *e, Value *v, LLVMValueRef *in) {
  if (e->sumacc && e->sumacc[v->id]) {  // a tile-local accumulator (cg_epilogue)
    LLVMValueRef acc = e->sumacc[v->id];
    LLVMBuildStore(B(e), cg_reassoc(LLVMBuildFAdd(B(e), LLVMBuildLoad2(B(e), e->f32, acc, ""), in[0], "")), acc);
    return NULL;
  }
  LLVMValueRef sub[MAXRANK];
  int j = 0;
  for (int i = 0; i < v->in[0]->shape.rank; i++)
    if ((v->ia[0] >> i) & 1) sub[j++] = e->idx[i];
  LLVMValueRef off = cg_offset(e, v->shape, sub);
  LLVMValueRef p = cg_gep(e, e->f32, e->ptr[v->id], off);
  LLVMValueRef old = LLVMBuildLoad2(B(e), e->f32, p, "");
  LLVMBuildStore(B(e), cg_fast(LLVMBuildFAdd(B(e), old, in[0], "")), p);
  return NULL;
}

// reshape: the same elements in row-major order with a new shape (a view)
// dx = reshape(g) to the shape of x
bool shape_reshape(Value *v) {
  v->shape.rank = (int)v->ia[0];
  for (int i = 0; i < v->shape.rank; i++) v->shape.d[i] = v->ia[1 + i];
  Value *x = v->in[0];
  if (shape_numel(v->shape) != shape_numel(x->shape) || shape_batched(v->shape) != shape_batched(x->shape)) {
    error_at(v->loc, "cannot reshape %s into %s: the element counts differ", shape_str_sample(x->shape),
             shape_str_sample(v->shape));
    return false;
  }
  v->type = x->type;
  return true;
}
void grad_reshape(Builder *b, Value *v, Value *g, Value **dx) { dx[0] = ir_reshape(b, g, v->in[0]->shape); }
LLVMValueRef emit_reshape(Emit *e, Value *v, LLVMValueRef *in) { return cg_load_at(e, v, e->idx); }

// concat: y = a ++ b along axis ia[0]
// da = slice(g, 0, len a), db = slice(g, len a, len b)
bool shape_concat(Value *v) {
  Value *a = v->in[0], *b = v->in[1];
  int ax = (int)v->ia[0];
  bool ok = a->shape.rank == b->shape.rank && ax < a->shape.rank;
  for (int i = 0; ok && i < a->shape.rank; i++)
    if (i != ax && a->shape.d[i] != b->shape.d[i]) ok = false;
  if (!ok) {
    error_at(v->loc, "concat needs shapes that differ only along axis %d, got %s and %s",
             ax - (shape_batched(a->shape) ? 1 : 0), shape_str_sample(a->shape), shape_str_sample(b->shape));
    return false;
  }
  v->shape = a->shape;
  v->shape.d[ax] = a->shape.d[ax] + b->shape.d[ax];
  v->type = T_F32;
  return true;
}
void grad_concat(Builder *b, Value *v, Value *g, Value **dx) {
  int64_t ax = v->ia[0], na = v->in[0]->shape.d[ax];
  int64_t ia0[8] = {ax, 0, na}, ia1[8] = {ax, na, v->in[1]->shape.d[ax]};
  if (v->in[0]->needs_grad) dx[0] = ir_new(b, OP_slice, 1, &g, ia0, 0);
  if (v->in[1]->needs_grad) dx[1] = ir_new(b, OP_slice, 1, &g, ia1, 0);
}
LLVMValueRef emit_concat(Emit *e, Value *v, LLVMValueRef *in) {
  int ax = (int)v->ia[0];
  int64_t na = v->in[0]->shape.d[ax];
  LLVMValueRef ia[MAXRANK], ib[MAXRANK];
  for (int i = 0; i < v->shape.rank; i++) ia[i] = ib[i] = e->idx[i];
  LLVMValueRef first = LLVMBuildICmp(B(e), LLVMIntSLT, e->idx[ax], cg_i64(e, na), "");
  ia[ax] = cg_min_i64(e, e->idx[ax], cg_i64(e, na - 1));
  ib[ax] = cg_max_i64(e, LLVMBuildSub(B(e), e->idx[ax], cg_i64(e, na), ""), cg_i64(e, 0));
  LLVMValueRef va = cg_load_at(e, v->in[0], ia), vb = cg_load_at(e, v->in[1], ib);
  return LLVMBuildSelect(B(e), first, va, vb, "");
}

// slice: y = x[start : start+len] along axis ia[0] (ia[1] start, ia[2] len)
// dx = g placed at [start, start+len), zero elsewhere
bool shape_slice(Value *v) {
  v->shape = v->in[0]->shape;
  v->shape.d[v->ia[0]] = v->ia[2];
  v->type = v->in[0]->type;
  return true;
}
// r with n zeros added along axis ax of x's shape, before or after it.
static Value *pad_zeros(Builder *b, Value *r, Value *x, int64_t ax, int64_t n, bool before) {
  if (n <= 0) return r;
  Shape z = r->shape;
  z.d[ax] = n;
  Value *zero = ir_bcast(b, ir_const(b, 0), z, 0);
  int64_t ia[8] = {ax};
  Value *in[2] = {before ? zero : r, before ? r : zero};
  return ir_new(b, OP_concat, 2, in, ia, 0);
}

void grad_slice(Builder *b, Value *v, Value *g, Value **dx) {
  Value *x = v->in[0];
  int64_t ax = v->ia[0], start = v->ia[1], len = v->ia[2], total = x->shape.d[ax];
  dx[0] = pad_zeros(b, pad_zeros(b, g, x, ax, start, true), x, ax, total - start - len, false);
}
LLVMValueRef emit_slice(Emit *e, Value *v, LLVMValueRef *in) {
  LLVMValueRef sub[MAXRANK];
  for (int i = 0; i < v->shape.rank; i++) sub[i] = e->idx[i];
  sub[v->ia[0]] = LLVMBuildAdd(B(e), sub[v->ia[0]], cg_i64(e, v->ia[1]), "");
  return cg_load_at(e, v->in[0], sub);
}

// onehot: y[b, k] = (k == labels[b]) ? 1 : 0
// not differentiable (its input is data)
bool shape_onehot(Value *v) {
  v->shape = v->in[0]->shape;
  v->shape.d[v->shape.rank++] = v->ia[0];
  v->type = T_F32;
  return true;
}
void grad_onehot(Builder *b, Value *v, Value *g, Value **dx) {}
LLVMValueRef emit_onehot(Emit *e, Value *v, LLVMValueRef *in) {
  LLVMValueRef lab = cg_load_at(e, v->in[0], e->idx);
  LLVMValueRef k = LLVMBuildTrunc(B(e), e->idx[v->shape.rank - 1], e->i32, "");
  LLVMValueRef eq = LLVMBuildICmp(B(e), LLVMIntEQ, lab, k, "");
  return LLVMBuildSelect(B(e), eq, cg_f32(e, 1), cg_f32(e, 0), "");
}

// ops_embed.c: token ids and the embedding table.
//
// Token ids travel as int32 (an i32 input leaf reading the input buffer, an
// i32 label leaf for per-step targets). The data loaders reject ids outside
// the vocabulary; the kernels also clamp them to the table, as a last guard
// against reading outside it.
#include "fnnc.h"

static LLVMBuilderRef B(Emit *e) { return e->cg->b; }
static LLVMValueRef I(Emit *e, int64_t c) { return cg_i64(e, c); }

// An i32 id as an i64 row of a table of V rows (out-of-range ids read row V-1).
static LLVMValueRef table_row(Emit *e, LLVMValueRef id32, int64_t V) {
  LLVMValueRef id = LLVMBuildSExt(B(e), id32, e->i64, "");
  LLVMValueRef ok = LLVMBuildICmp(B(e), LLVMIntULT, id, I(e, V), "");
  return LLVMBuildSelect(B(e), ok, id, I(e, V - 1), "row");
}

//
// embed: y[b, t, d] = W[ids[b, t], d]          ids: i32[B, T], W: [V, D]
//
// dW = embed_dw(ids, g):  dW[v, d] = sum over (b, t) with ids[b, t] == v of g[b, t, d]
// (ids are data: no gradient)
bool shape_embed(Value *v) {
  Value *ids = v->in[0], *w = v->in[1];
  if (ids->type != T_I32 || !shape_batched(ids->shape) || ids->shape.rank + 1 > MAXRANK) {
    error_at(v->loc, "embedding needs token ids, got a float tensor %s", shape_str_sample(ids->shape));
    return false;
  }
  if (w->shape.rank != 2 || w->type != T_F32) die("embed: the table must be [V, D]");
  v->shape = ids->shape;
  v->shape.d[v->shape.rank++] = w->shape.d[1];
  v->type = T_F32;
  return true;
}
void grad_embed(Builder *b, Value *v, Value *g, Value **dx) {
  if (!v->in[1]->needs_grad) return;
  Value *in[2] = {v->in[0], g};
  int64_t ia[8] = {v->in[1]->shape.d[0]};
  dx[1] = ir_new(b, OP_embed_dw, 2, in, ia, 0);
}
// A gather: the element at e->idx reads its id, then one element of the table.
LLVMValueRef emit_embed(Emit *e, Value *v, LLVMValueRef *in) {
  Value *ids = v->in[0], *w = v->in[1];
  int r = v->shape.rank;
  LLVMValueRef sub[2];
  sub[0] = table_row(e, cg_load_at(e, ids, e->idx), w->shape.d[0]);
  sub[1] = e->idx[r - 1];
  return cg_load_at(e, w, sub);
}

//
// embed_dw: dW[v, d] = sum over (b, t) with ids[b, t] == v of g[b, t, d]     -> [V, D]
//
// (second derivatives are not needed)
bool shape_embed_dw(Value *v) {
  Value *ids = v->in[0], *g = v->in[1];
  if (ids->type != T_I32 || g->shape.rank != ids->shape.rank + 1) die("embed_dw: ids and gradient do not match");
  int64_t d[2] = {v->ia[0], g->shape.d[g->shape.rank - 1]};
  v->shape = shape_make(2, d);
  v->type = T_F32;
  return true;
}
void grad_embed_dw(Builder *b, Value *v, Value *g, Value **dx) {}
// One thread, the ids in order: every row of dW adds its g rows in the same
// order whatever the number of threads (the sum is deterministic).
LLVMValueRef emit_embed_dw(Emit *e, Value *v, LLVMValueRef *in) {
  Value *ids = v->in[0], *G = v->in[1];
  int64_t V = v->shape.d[0], D = v->shape.d[1];
  LLVMValueRef out = e->ptr[v->id];
  if (!out) die("embed_dw has no output buffer");
  cg_zero(e, out, I(e, V * D));
  int r = ids->shape.rank;
  Loop l[MAXRANK];
  LLVMValueRef idx[MAXRANK];
  for (int t = 0; t < r; t++) {
    l[t] = cg_loop_begin(e, I(e, 0), cg_dim(e, ids->shape, t), "i");
    idx[t] = l[t].i;
  }
  LLVMValueRef row = LLVMBuildMul(B(e), table_row(e, cg_load_at(e, ids, idx), V), I(e, D), "");
  Loop ld = cg_loop_begin(e, I(e, 0), I(e, D), "d");
  idx[r] = ld.i;
  LLVMValueRef g = cg_load_at(e, G, idx);
  LLVMValueRef p = cg_gep(e, e->f32, out, LLVMBuildAdd(B(e), row, ld.i, ""));
  LLVMBuildStore(B(e), LLVMBuildFAdd(B(e), LLVMBuildLoad2(B(e), e->f32, p, ""), g, ""), p);
  cg_loop_end(e, &ld);
  for (int t = r - 1; t >= 0; t--) cg_loop_end(e, &l[t]);
  return NULL;
}

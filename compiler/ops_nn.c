// ops_nn.c: contractions (matmul, convolution and its two gradients) and pooling.
//
// Anchors emit their own loop nests. Each computes its output one tile at a
// time in a local accumulator and hands the tile to cg_epilogue, which applies
// the fused elementwise members (bias, activation, ...) while the tile is hot.
#include "fnnc.h"

static LLVMBuilderRef B(Emit *e) { return e->cg->b; }
static LLVMValueRef I(Emit *e, int64_t c) { return cg_i64(e, c); }
static LLVMValueRef ADD(Emit *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B(e), a, b, ""); }
static LLVMValueRef MUL(Emit *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(B(e), a, b, ""); }

static LLVMValueRef load_f(Emit *e, LLVMValueRef base, LLVMValueRef off) {
  return LLVMBuildLoad2(B(e), e->f32, cg_gep(e, e->f32, base, off), "");
}
static void store_f(Emit *e, LLVMValueRef base, LLVMValueRef off, LLVMValueRef x) {
  LLVMBuildStore(B(e), x, cg_gep(e, e->f32, base, off));
}
// tile[off] += x
static void acc_f(Emit *e, LLVMValueRef tile, LLVMValueRef off, LLVMValueRef x) {
  LLVMValueRef p = cg_gep(e, e->f32, tile, off);
  LLVMValueRef old = LLVMBuildLoad2(B(e), e->f32, p, "");
  LLVMBuildStore(B(e), cg_fast(LLVMBuildFAdd(B(e), old, x, "")), p);
}
static LLVMValueRef fma_f(Emit *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  return cg_fast(LLVMBuildFAdd(B(e), c, cg_fast(LLVMBuildFMul(B(e), a, b, "")), ""));
}

// The output range [lo, hi) of a convolution axis for kernel offset k, such
// that the input index o*stride + k - pad lies in [0, in).
static void conv_range(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, int64_t *lo, int64_t *hi) {
  int64_t l = 0;
  while (l < out && l * s + k - p < 0) l++;
  int64_t h = out;
  while (h > l && (h - 1) * s + k - p >= in) h--;
  *lo = l;
  *hi = h;
}

static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

//
// matmul: C[M,N] = op(A)[M,K] . op(B)[K,N], op = transpose where ia[0]/ia[1]
//
// dA = g . op(B)^T  (transposed back if A was),  dB = op(A)^T . g  (likewise)
bool shape_matmul(Value *v) {
  Shape a = v->in[0]->shape, b = v->in[1]->shape;
  if (a.rank != 2 || b.rank != 2) die("matmul of rank %d and %d", a.rank, b.rank);
  int64_t m = v->ia[0] ? a.d[1] : a.d[0], ka = v->ia[0] ? a.d[0] : a.d[1];
  int64_t kb = v->ia[1] ? b.d[1] : b.d[0], n = v->ia[1] ? b.d[0] : b.d[1];
  if (ka != kb) {
    error_at(v->loc, "matrix product of %s and %s: inner sizes differ", shape_str(a), shape_str(b));
    return false;
  }
  v->shape.rank = 2;
  v->shape.d[0] = m;
  v->shape.d[1] = n;
  v->type = T_F32;
  return true;
}
void grad_matmul(Builder *b, Value *v, Value *g, Value **dx) {
  Value *A = v->in[0], *Bm = v->in[1];
  int64_t ta = v->ia[0], tb = v->ia[1];
  if (A->needs_grad) {
    // A not transposed: dA = g . op(B)^T;  transposed: dA = op(B) . g^T
    int64_t ia[8] = {ta ? tb : 0, ta ? 1 : !tb};
    Value *in[2] = {ta ? Bm : g, ta ? g : Bm};
    dx[0] = ir_new(b, OP_matmul, 2, in, ia, 0);
  }
  if (Bm->needs_grad) {
    // B not transposed: dB = op(A)^T . g;  transposed: dB = g^T . op(A)
    int64_t ia[8] = {tb ? 1 : !ta, tb ? ta : 0};
    Value *in[2] = {tb ? g : A, tb ? A : g};
    dx[1] = ir_new(b, OP_matmul, 2, in, ia, 0);
  }
}
// One output row per tile: for !transB, tile += A(i,k) * B[k,:] (contiguous
// axpy); for transB, tile[j] = dot(A(i,:), Bm[j,:]).
LLVMValueRef emit_matmul(Emit *e, Value *v, LLVMValueRef *in) {
  Value *A = v->in[0], *Bv = v->in[1];
  int64_t ta = v->ia[0], tb = v->ia[1];
  LLVMValueRef M = cg_dim(e, v->shape, 0), K = cg_dim(e, A->shape, ta ? 0 : 1);
  int64_t N = v->shape.d[1];
  LLVMValueRef tile = cg_alloca(e, e->f32, N);
  Loop li = cg_loop_begin(e, I(e, 0), M, "i");
  if (!tb) {
    cg_zero(e, tile, I(e, N));
    Loop lk = cg_loop_begin(e, I(e, 0), K, "k");
    LLVMValueRef aidx[2] = {ta ? lk.i : li.i, ta ? li.i : lk.i};
    LLVMValueRef a = cg_load_at(e, A, aidx);
    Loop lj = cg_loop_begin(e, I(e, 0), I(e, N), "j");
    LLVMValueRef bidx[2] = {lk.i, lj.i};
    LLVMValueRef bv = cg_load_at(e, Bv, bidx);
    acc_f(e, tile, lj.i, cg_fast(LLVMBuildFMul(B(e), a, bv, "")));
    cg_loop_end(e, &lj);
    cg_loop_end(e, &lk);
  } else {
    Loop lj = cg_loop_begin(e, I(e, 0), I(e, N), "j");
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(B(e));
    (void)pre;
    LLVMValueRef acc = cg_alloca(e, e->f32, 1);
    LLVMBuildStore(B(e), cg_f32(e, 0), acc);
    Loop lk = cg_loop_begin(e, I(e, 0), K, "k");
    LLVMValueRef aidx[2] = {ta ? lk.i : li.i, ta ? li.i : lk.i};
    LLVMValueRef bidx[2] = {lj.i, lk.i};
    LLVMValueRef prod = cg_reassoc(LLVMBuildFMul(B(e), cg_load_at(e, A, aidx), cg_load_at(e, Bv, bidx), ""));
    LLVMValueRef old = LLVMBuildLoad2(B(e), e->f32, acc, "");
    LLVMBuildStore(B(e), cg_reassoc(LLVMBuildFAdd(B(e), old, prod, "")), acc);
    cg_loop_end(e, &lk);
    store_f(e, tile, lj.i, LLVMBuildLoad2(B(e), e->f32, acc, ""));
    cg_loop_end(e, &lj);
  }
  LLVMValueRef outer[1] = {li.i};
  cg_epilogue(e, outer, 1, tile);
  cg_loop_end(e, &li);
  return NULL;
}

//
// conv2d: y[b,o,oh,ow] = sum_{c,kh,kw} x[b,c,oh*s+kh-p, ow*s+kw-p] * w[o,c,kh,kw]
//
// dx = conv2d_dx(g, w),  dw = conv2d_dw(x, g)
bool shape_conv2d(Value *v) {
  Shape x = v->in[0]->shape, w = v->in[1]->shape;
  int64_t s = v->ia[0], p = v->ia[1];
  if (x.rank != 4 || w.rank != 4 || x.d[1] != w.d[1]) die("conv2d shapes %s %s", shape_str(x), shape_str(w));
  int64_t oh = conv_out(x.d[2], w.d[2], s, p), ow = conv_out(x.d[3], w.d[3], s, p);
  if (oh < 1 || ow < 1) {
    error_at(v->loc, "a %lldx%lld kernel does not fit a %lldx%lld input", (long long)w.d[2], (long long)w.d[3],
             (long long)x.d[2], (long long)x.d[3]);
    return false;
  }
  int64_t d[4] = {x.d[0], w.d[0], oh, ow};
  v->shape = shape_make(4, d);
  v->type = T_F32;
  return true;
}
void grad_conv2d(Builder *b, Value *v, Value *g, Value **dx) {
  Value *x = v->in[0], *w = v->in[1];
  if (x->needs_grad) {
    int64_t ia[8] = {v->ia[0], v->ia[1], x->shape.d[2], x->shape.d[3]};
    Value *in[2] = {g, w};
    dx[0] = ir_new(b, OP_conv2d_dx, 2, in, ia, 0);
  }
  if (w->needs_grad) {
    int64_t ia[8] = {v->ia[0], v->ia[1], w->shape.d[2], w->shape.d[3]};
    Value *in[2] = {x, g};
    dx[1] = ir_new(b, OP_conv2d_dw, 2, in, ia, 0);
  }
}
// Tile: one output plane [oh, ow] per (b, o). The kernel offsets are unrolled,
// so every inner loop has constant bounds and a unit (or constant) stride.
LLVMValueRef emit_conv2d(Emit *e, Value *v, LLVMValueRef *in) {
  Value *X = v->in[0], *W = v->in[1];
  int64_t s = v->ia[0], p = v->ia[1];
  int64_t C = X->shape.d[1], H = X->shape.d[2], Wd = X->shape.d[3];
  int64_t O = W->shape.d[0], KH = W->shape.d[2], KW = W->shape.d[3];
  int64_t OH = v->shape.d[2], OW = v->shape.d[3];
  LLVMValueRef tile = cg_alloca(e, e->f32, OH * OW);
  Loop lb = cg_loop_begin(e, I(e, 0), cg_dim(e, v->shape, 0), "b");
  Loop lo = cg_loop_begin(e, I(e, 0), I(e, O), "o");
  cg_zero(e, tile, I(e, OH * OW));
  Loop lc = cg_loop_begin(e, I(e, 0), I(e, C), "c");
  for (int64_t kh = 0; kh < KH; kh++)
    for (int64_t kw = 0; kw < KW; kw++) {
      int64_t h0, h1, w0, w1;
      conv_range(H, OH, kh, s, p, &h0, &h1);
      conv_range(Wd, OW, kw, s, p, &w0, &w1);
      if (h0 >= h1 || w0 >= w1) continue;
      LLVMValueRef widx[4] = {lo.i, lc.i, I(e, kh), I(e, kw)};
      LLVMValueRef wv = cg_load_at(e, W, widx);
      Loop loh = cg_loop_begin(e, I(e, h0), I(e, h1), "oh");
      LLVMValueRef ih = ADD(e, MUL(e, loh.i, I(e, s)), I(e, kh - p));
      Loop low = cg_loop_begin(e, I(e, w0), I(e, w1), "ow");
      LLVMValueRef iw = ADD(e, MUL(e, low.i, I(e, s)), I(e, kw - p));
      LLVMValueRef xidx[4] = {lb.i, lc.i, ih, iw};
      LLVMValueRef xv = cg_load_at(e, X, xidx);
      acc_f(e, tile, ADD(e, MUL(e, loh.i, I(e, OW)), low.i), cg_fast(LLVMBuildFMul(B(e), wv, xv, "")));
      cg_loop_end(e, &low);
      cg_loop_end(e, &loh);
    }
  cg_loop_end(e, &lc);
  LLVMValueRef outer[2] = {lb.i, lo.i};
  cg_epilogue(e, outer, 2, tile);
  cg_loop_end(e, &lo);
  cg_loop_end(e, &lb);
  return NULL;
}

//
// conv2d_dx: dx[b,c,ih,iw] = sum over (o,kh,kw,oh,ow) with ih = oh*s+kh-p,
//            iw = ow*s+kw-p of g[b,o,oh,ow] * w[o,c,kh,kw]
//
// (second derivatives are not needed)
bool shape_conv2d_dx(Value *v) {
  Shape g = v->in[0]->shape, w = v->in[1]->shape;
  int64_t d[4] = {g.d[0], w.d[1], v->ia[2], v->ia[3]};
  v->shape = shape_make(4, d);
  v->type = T_F32;
  return true;
}
void grad_conv2d_dx(Builder *b, Value *v, Value *g, Value **dx) {}
// Tile: one input plane [h, w] per (b, c), scattered into from every output
// position that reads it.
LLVMValueRef emit_conv2d_dx(Emit *e, Value *v, LLVMValueRef *in) {
  Value *G = v->in[0], *W = v->in[1];
  int64_t s = v->ia[0], p = v->ia[1];
  int64_t H = v->shape.d[2], Wd = v->shape.d[3], C = v->shape.d[1];
  int64_t O = W->shape.d[0], KH = W->shape.d[2], KW = W->shape.d[3];
  int64_t OH = G->shape.d[2], OW = G->shape.d[3];
  LLVMValueRef tile = cg_alloca(e, e->f32, H * Wd);
  Loop lb = cg_loop_begin(e, I(e, 0), cg_dim(e, v->shape, 0), "b");
  Loop lc = cg_loop_begin(e, I(e, 0), I(e, C), "c");
  cg_zero(e, tile, I(e, H * Wd));
  Loop lo = cg_loop_begin(e, I(e, 0), I(e, O), "o");
  for (int64_t kh = 0; kh < KH; kh++)
    for (int64_t kw = 0; kw < KW; kw++) {
      int64_t h0, h1, w0, w1;
      conv_range(H, OH, kh, s, p, &h0, &h1);
      conv_range(Wd, OW, kw, s, p, &w0, &w1);
      if (h0 >= h1 || w0 >= w1) continue;
      LLVMValueRef widx[4] = {lo.i, lc.i, I(e, kh), I(e, kw)};
      LLVMValueRef wv = cg_load_at(e, W, widx);
      Loop loh = cg_loop_begin(e, I(e, h0), I(e, h1), "oh");
      LLVMValueRef ih = ADD(e, MUL(e, loh.i, I(e, s)), I(e, kh - p));
      Loop low = cg_loop_begin(e, I(e, w0), I(e, w1), "ow");
      LLVMValueRef iw = ADD(e, MUL(e, low.i, I(e, s)), I(e, kw - p));
      LLVMValueRef gidx[4] = {lb.i, lo.i, loh.i, low.i};
      LLVMValueRef gv = cg_load_at(e, G, gidx);
      acc_f(e, tile, ADD(e, MUL(e, ih, I(e, Wd)), iw), cg_fast(LLVMBuildFMul(B(e), wv, gv, "")));
      cg_loop_end(e, &low);
      cg_loop_end(e, &loh);
    }
  cg_loop_end(e, &lo);
  LLVMValueRef outer[2] = {lb.i, lc.i};
  cg_epilogue(e, outer, 2, tile);
  cg_loop_end(e, &lc);
  cg_loop_end(e, &lb);
  return NULL;
}

//
// conv2d_dw: dw[o,c,kh,kw] = sum_{b,oh,ow} g[b,o,oh,ow] * x[b,c,oh*s+kh-p, ow*s+kw-p]
//
// (second derivatives are not needed)
bool shape_conv2d_dw(Value *v) {
  Shape x = v->in[0]->shape, g = v->in[1]->shape;
  int64_t d[4] = {g.d[1], x.d[1], v->ia[2], v->ia[3]};
  v->shape = shape_make(4, d);
  v->type = T_F32;
  return true;
}
void grad_conv2d_dw(Builder *b, Value *v, Value *g, Value **dx) {}
// Tile: the [kh, kw] filter of one (o, c) pair; each element is a dot product
// over the batch and the output plane, accumulated in a fixed order.
LLVMValueRef emit_conv2d_dw(Emit *e, Value *v, LLVMValueRef *in) {
  Value *X = v->in[0], *G = v->in[1];
  int64_t s = v->ia[0], p = v->ia[1];
  int64_t O = v->shape.d[0], C = v->shape.d[1], KH = v->shape.d[2], KW = v->shape.d[3];
  int64_t H = X->shape.d[2], Wd = X->shape.d[3], OH = G->shape.d[2], OW = G->shape.d[3];
  LLVMValueRef tile = cg_alloca(e, e->f32, KH * KW);
  LLVMValueRef acc = cg_alloca(e, e->f32, 1);
  Loop lo = cg_loop_begin(e, I(e, 0), I(e, O), "o");
  Loop lc = cg_loop_begin(e, I(e, 0), I(e, C), "c");
  cg_zero(e, tile, I(e, KH * KW));
  Loop lb = cg_loop_begin(e, I(e, 0), cg_dim(e, X->shape, 0), "b");
  for (int64_t kh = 0; kh < KH; kh++)
    for (int64_t kw = 0; kw < KW; kw++) {
      int64_t h0, h1, w0, w1;
      conv_range(H, OH, kh, s, p, &h0, &h1);
      conv_range(Wd, OW, kw, s, p, &w0, &w1);
      if (h0 >= h1 || w0 >= w1) continue;
      LLVMBuildStore(B(e), cg_f32(e, 0), acc);
      Loop loh = cg_loop_begin(e, I(e, h0), I(e, h1), "oh");
      LLVMValueRef ih = ADD(e, MUL(e, loh.i, I(e, s)), I(e, kh - p));
      Loop low = cg_loop_begin(e, I(e, w0), I(e, w1), "ow");
      LLVMValueRef iw = ADD(e, MUL(e, low.i, I(e, s)), I(e, kw - p));
      LLVMValueRef gidx[4] = {lb.i, lo.i, loh.i, low.i}, xidx[4] = {lb.i, lc.i, ih, iw};
      LLVMValueRef prod = cg_reassoc(LLVMBuildFMul(B(e), cg_load_at(e, G, gidx), cg_load_at(e, X, xidx), ""));
      LLVMValueRef old = LLVMBuildLoad2(B(e), e->f32, acc, "");
      LLVMBuildStore(B(e), cg_reassoc(LLVMBuildFAdd(B(e), old, prod, "")), acc);
      cg_loop_end(e, &low);
      cg_loop_end(e, &loh);
      acc_f(e, tile, I(e, kh * KW + kw), LLVMBuildLoad2(B(e), e->f32, acc, ""));
    }
  cg_loop_end(e, &lb);
  LLVMValueRef outer[2] = {lo.i, lc.i};
  cg_epilogue(e, outer, 2, tile);
  cg_loop_end(e, &lc);
  cg_loop_end(e, &lo);
  (void)load_f;
  (void)fma_f;
  return NULL;
}

//
// maxpool: y[..., i, j] = max_{di,dj < k} x[..., i*s+di, j*s+dj]   (no padding)
//
// dx = maxpool_dx(x, g): each window's g goes to its first maximum
bool shape_maxpool(Value *v) {
  Shape x = v->in[0]->shape;
  int64_t k = v->ia[0], s = v->ia[1];
  int r = x.rank;
  if (r < 2 || x.d[r - 2] < k || x.d[r - 1] < k) {
    error_at(v->loc, "maxpool(%lld) needs an input of at least %lldx%lld, got %s", (long long)k, (long long)k,
             (long long)k, shape_str_sample(x));
    return false;
  }
  v->shape = x;
  v->shape.d[r - 2] = (x.d[r - 2] - k) / s + 1;
  v->shape.d[r - 1] = (x.d[r - 1] - k) / s + 1;
  v->type = T_F32;
  return true;
}
void grad_maxpool(Builder *b, Value *v, Value *g, Value **dx) {
  Value *in[2] = {v->in[0], g};
  dx[0] = ir_new(b, OP_maxpool_dx, 2, in, v->ia, 0);
}
LLVMValueRef emit_maxpool(Emit *e, Value *v, LLVMValueRef *in) {
  int r = v->shape.rank;
  int64_t k = v->ia[0], s = v->ia[1];
  LLVMValueRef sub[MAXRANK];
  for (int i = 0; i < r; i++) sub[i] = e->idx[i];
  LLVMValueRef m = NULL;
  for (int64_t di = 0; di < k; di++)
    for (int64_t dj = 0; dj < k; dj++) {
      sub[r - 2] = ADD(e, MUL(e, e->idx[r - 2], I(e, s)), I(e, di));
      sub[r - 1] = ADD(e, MUL(e, e->idx[r - 1], I(e, s)), I(e, dj));
      LLVMValueRef x = cg_load_at(e, v->in[0], sub);
      m = m ? cg_max(e, m, x) : x;
    }
  return m;
}

//
// maxpool_dx: dx[..., h, w] = sum of g[..., i, j] over the windows (i, j) whose
//             first maximum is at (h, w)
//
// (second derivatives are not needed)
bool shape_maxpool_dx(Value *v) {
  v->shape = v->in[0]->shape;
  v->type = T_F32;
  return true;
}
void grad_maxpool_dx(Builder *b, Value *v, Value *g, Value **dx) {}
// A gather: each input position visits the (at most ceil(k/s)^2) windows that
// contain it and finds their first maximum again.
LLVMValueRef emit_maxpool_dx(Emit *e, Value *v, LLVMValueRef *in) {
  Value *X = v->in[0], *G = v->in[1];
  int r = v->shape.rank;
  int64_t k = v->ia[0], s = v->ia[1];
  int64_t OH = G->shape.d[r - 2], OW = G->shape.d[r - 1];
  int64_t nwin = (k + s - 1) / s;
  LLVMValueRef h = e->idx[r - 2], w = e->idx[r - 1];
  LLVMValueRef hq = LLVMBuildSDiv(B(e), h, I(e, s), ""), wq = LLVMBuildSDiv(B(e), w, I(e, s), "");
  LLVMValueRef total = cg_f32(e, 0);
  for (int64_t a = 0; a < nwin; a++)
    for (int64_t c = 0; c < nwin; c++) {
      LLVMValueRef i = LLVMBuildSub(B(e), hq, I(e, a), ""), j = LLVMBuildSub(B(e), wq, I(e, c), "");
      // valid: 0 <= i < OH, 0 <= j < OW, h - i*s < k, w - j*s < k
      LLVMValueRef ok = LLVMBuildAnd(B(e), LLVMBuildICmp(B(e), LLVMIntSGE, i, I(e, 0), ""),
                                     LLVMBuildICmp(B(e), LLVMIntSLT, i, I(e, OH), ""), "");
      ok = LLVMBuildAnd(B(e), ok, LLVMBuildICmp(B(e), LLVMIntSGE, j, I(e, 0), ""), "");
      ok = LLVMBuildAnd(B(e), ok, LLVMBuildICmp(B(e), LLVMIntSLT, j, I(e, OW), ""), "");
      LLVMValueRef dh = LLVMBuildSub(B(e), h, MUL(e, i, I(e, s)), "");
      LLVMValueRef dw = LLVMBuildSub(B(e), w, MUL(e, j, I(e, s)), "");
      ok = LLVMBuildAnd(B(e), ok, LLVMBuildICmp(B(e), LLVMIntSLT, dh, I(e, k), ""), "");
      ok = LLVMBuildAnd(B(e), ok, LLVMBuildICmp(B(e), LLVMIntSLT, dw, I(e, k), ""), "");
      LLVMValueRef ic = cg_max_i64(e, cg_min_i64(e, i, I(e, OH - 1)), I(e, 0));
      LLVMValueRef jc = cg_max_i64(e, cg_min_i64(e, j, I(e, OW - 1)), I(e, 0));
      // First maximum of window (ic, jc), as a flat offset di*k + dj.
      LLVMValueRef sub[MAXRANK];
      for (int t = 0; t < r; t++) sub[t] = e->idx[t];
      LLVMValueRef best = NULL, bpos = NULL;
      for (int64_t di = 0; di < k; di++)
        for (int64_t dj = 0; dj < k; dj++) {
          sub[r - 2] = ADD(e, MUL(e, ic, I(e, s)), I(e, di));
          sub[r - 1] = ADD(e, MUL(e, jc, I(e, s)), I(e, dj));
          LLVMValueRef x = cg_load_at(e, X, sub);
          if (!best) {
            best = x;
            bpos = I(e, 0);
          } else {
            LLVMValueRef gt = LLVMBuildFCmp(B(e), LLVMRealOGT, x, best, "");
            best = LLVMBuildSelect(B(e), gt, x, best, "");
            bpos = LLVMBuildSelect(B(e), gt, I(e, di * k + dj), bpos, "");
          }
        }
      LLVMValueRef mine = ADD(e, MUL(e, dh, I(e, k)), dw);
      ok = LLVMBuildAnd(B(e), ok, LLVMBuildICmp(B(e), LLVMIntEQ, bpos, mine, ""), "");
      sub[r - 2] = ic;
      sub[r - 1] = jc;
      LLVMValueRef gv = cg_load_at(e, G, sub);
      total = cg_fast(LLVMBuildFAdd(B(e), total, LLVMBuildSelect(B(e), ok, gv, cg_f32(e, 0), ""), ""));
    }
  return total;
}

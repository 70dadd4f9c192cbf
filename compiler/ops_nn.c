// ops_nn.c: contractions (matmul, convolution and its two gradients) and pooling.
//
// Anchors emit their own loop nests. Each computes its output one tile at a
// time in a local accumulator and hands the tile to cg_epilogue, which applies
// the fused elementwise members (bias, activation, ...) while the tile is hot.
#include "fnnc.h"

static LLVMBuilderRef B(Emit *e) { return e->cg->b; }
static LLVMValueRef I(Emit *e, int64_t c) { return cg_i64(e, c); }
static LLVMValueRef ADD(Emit *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(B(e), a, b, ""); }
static LLVMValueRef MUL(Emit *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWMul(B(e), a, b, ""); }

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

static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

//
// matmul: C[M,N] = op(A)[M,K] . op(B)[K,N], op = transpose where ia[0]/ia[1]
//
// A sequence [B, T, K] counts as B*T rows: on the left when not transposed
// (C[B,T,N] = A . op(B), the input projection of a loop over all steps), or as
// both operands when A is transposed (C[M,N] = A^T . B summed over every row
// and step: a weight gradient).
//
// dA = g . op(B)^T  (transposed back if A was),  dB = op(A)^T . g  (likewise)
static Shape lead(Shape s) {
  s.rank--;
  return s;
}
static Shape one(int64_t d) { return shape_make(1, &d); }

bool shape_matmul(Value *v) {
  Shape a = v->in[0]->shape, b = v->in[1]->shape;
  int64_t ta = v->ia[0], tb = v->ia[1];
  bool ok = (a.rank == 2 && b.rank == 2) || (a.rank == 3 && !ta && b.rank == 2) ||
            (a.rank == 3 && ta && b.rank == 3 && !tb);
  if (!ok) die("matmul of rank %d and %d", a.rank, b.rank);
  int la = a.rank - 1, lb = b.rank - 1;
  Shape m = ta ? one(a.d[la]) : lead(a), ka = ta ? lead(a) : one(a.d[la]);
  Shape kb = tb ? one(b.d[lb]) : lead(b);
  int64_t n = tb ? b.d[0] : b.d[lb];
  if (!shape_eq(ka, kb)) {
    error_at(v->loc, "matrix product of %s and %s: inner sizes differ", shape_str(a), shape_str(b));
    return false;
  }
  v->shape = m;
  v->shape.d[v->shape.rank++] = n;
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
// The epilogue over a block's `left` rows from row i0, in the scratch `rows`
// (ldr apart).
static void matmul_epilogue(Emit *e, LLVMValueRef rows, LLVMValueRef i0, LLVMValueRef left, int64_t steps,
                            int64_t ldr, int64_t N) {
  Loop lr = cg_loop_begin(e, I(e, 0), left, "r");
  LLVMValueRef row = ADD(e, i0, lr.i), outer[2] = {row};
  if (steps > 1) {
    outer[0] = LLVMBuildSDiv(B(e), row, I(e, steps), "");
    outer[1] = LLVMBuildSRem(B(e), row, I(e, steps), "");
  }
  cg_epilogue(e, outer, 1, cg_gep(e, e->f32, rows, MUL(e, lr.i, I(e, ldr))));
  // Rows narrower than a vector (the logits' 10): the loop vectorizer would
  // run 16 rows at once through gathers and scatters, and LLVM spent about
  // 50 ms compiling that for the CNN's last layer; one row at a time, the
  // row's own vectors (8 + 2 lanes) are as fast and compile in a few.
  if (N < 16)
    cg_loop_end_scalar(e, &lr);
  else
    cg_loop_end(e, &lr);
}

// The store that is a kernel's only member besides its anchor v (which is
// not written itself), writing v whole to a buffer of its shape; else NULL.
static Value *stored_as_is(Emit *e, Value *v) {
  if (e->k->members.len != 2 || e->k->members.data[0] != v || v->materialized || e->k->post || e->k->post_arg)
    return NULL;
  Value *st = e->k->members.data[1];
  if (st->op != OP_store || st->in[0] != v || !e->ptr[st->id] || st->image_local || st->type != T_F32) return NULL;
  return shape_eq(st->shape, v->shape) ? st : NULL;
}

// Blocks of rows through the GEMM micro-kernel (B packed transposed into the
// scratch first when it is read transposed); each block's rows go through the
// epilogue while they are in cache.
LLVMValueRef emit_matmul(Emit *e, Value *v, LLVMValueRef *in) {
  Value *A = v->in[0], *Bv = v->in[1];
  int64_t ta = v->ia[0], tb = v->ia[1];
  int last = v->shape.rank - 1, alast = A->shape.rank - 1;
  int64_t N = v->shape.d[last], ldr = N;
  // Rows of a sequence output [B, T, N] run over B*T; steps = T (else 1).
  int64_t steps = v->shape.rank == 3 ? v->shape.d[1] : 1;
  LLVMValueRef M = cg_dim(e, v->shape, 0), K = cg_dim(e, A->shape, ta ? 0 : alast);
  if (ta && A->shape.rank == 3) K = MUL(e, K, I(e, A->shape.d[1]));
  LLVMValueRef bptr = e->ptr[Bv->id], rows = e->scratch;
  bool nt = tb && !ta;  // x . W^T: both operands contiguous along k
  if (nt) {
    ldr = (N + 3) & ~(int64_t)3;
  } else if (tb) {
    // Bt[k, j] = Bm[j, k]; K is static here (only the batch axis is dynamic,
    // and a transposed B never has it).
    int64_t Ks = Bv->shape.d[1];
    if (Bv->shape.d[0] == DIM_BATCH || Ks == DIM_BATCH) die("matmul: transposed batch operand");
    bptr = e->scratch;
    rows = cg_gep(e, e->f32, e->scratch, I(e, Ks * N));
    Loop lj = cg_loop_begin(e, I(e, 0), I(e, N), "j");
    Loop lk = cg_loop_begin(e, I(e, 0), I(e, Ks), "k");
    LLVMValueRef bidx[2] = {lj.i, lk.i};
    store_f(e, bptr, ADD(e, MUL(e, lk.i, I(e, N)), lj.i), cg_load_at(e, Bv, bidx));
    cg_loop_end(e, &lk);
    cg_loop_end_scalar(e, &lj);
  }
  int mr, nv;
  gemm_tile(v->shape.d[0] == DIM_BATCH ? 64 : v->shape.d[0], N, &mr, &nv);
  int bm = nt ? gemm_nt_block_rows(N) : mr;  // rows per block (and per epilogue pass)
  LLVMValueRef ars = ta ? I(e, 1) : K, acs = ta ? M : I(e, 1);
  LLVMValueRef abase = e->ptr[A->id];
  // Row blocks of mr rows, over this call's rows (of the batch, or of the
  // output when tasks split a weight gradient by rows).
  LLVMValueRef r0, r1;
  cg_rows(e, v->shape, &r0, &r1);
  if (e->k->split == SPLIT_OUT) r0 = e->lo, r1 = e->hi;
  if (steps > 1) r0 = MUL(e, r0, I(e, steps)), r1 = MUL(e, r1, I(e, steps));
  LLVMValueRef nblk = LLVMBuildSDiv(B(e), ADD(e, LLVMBuildSub(B(e), r1, r0, ""), I(e, bm - 1)), I(e, bm), "");
  Loop lb = cg_loop_begin(e, I(e, 0), nblk, "blk");
  LLVMValueRef i0 = ADD(e, r0, MUL(e, lb.i, I(e, bm)));
  LLVMValueRef left = cg_min_i64(e, LLVMBuildSub(B(e), r1, i0, ""), I(e, bm));  // rows in this block
  LLVMBasicBlockRef done = NULL;  // after a block written straight to its store's buffer (below)
  if (nt) {
    int64_t Ks = A->shape.d[alast];
    GemmNT g = {.M = bm, .N = N, .lda = Ks, .ldb = Ks, .ldc = ldr, .K = I(e, Ks),
                .a = cg_gep(e, e->f32, abase, MUL(e, i0, I(e, Ks))), .b = bptr, .c = rows, .m_valid = left};
    if (e->k->split == SPLIT_COLS) {  // this call's columns [lo, hi) of the block, at their own places
      g.b = cg_gep(e, e->f32, bptr, MUL(e, e->lo, I(e, Ks)));
      g.c = cg_gep(e, e->f32, rows, e->lo);
      g.n_valid = LLVMBuildSub(B(e), e->hi, e->lo, "");
    }
    cg_gemm_nt(e, &g);
  } else {
    Gemm g = {.M = mr, .N = N, .K = K, .a = cg_gep(e, e->f32, abase, MUL(e, i0, ars)), .ars = ars,
              .acs = acs, .b = bptr, .ldb = N, .c = rows, .ldc = N, .m_valid = left, .mr = mr, .nv = nv};
    if (e->k->split == SPLIT_COLS) {  // this call's columns [lo, hi): whole tiles (fuse.c, split_columns)
      if (N % (16 * nv) || e->k->align % (16 * nv)) die("%s: column blocks of %lld are not whole tiles", e->k->name, (long long)e->k->align);
      g.b = cg_gep(e, e->f32, bptr, e->lo);
      g.c = cg_gep(e, e->f32, rows, e->lo);
      g.n_valid = LLVMBuildSub(B(e), e->hi, e->lo, "");
    }
    Value *st = stored_as_is(e, v);
    if (st && steps == 1 && e->k->split != SPLIT_COLS) {
      // A product the kernel only stores (a weight gradient): a whole block
      // of rows goes straight to the store's buffer, with no epilogue; a last,
      // shorter block through the scratch as below (the micro-kernel writes
      // whole tiles, and the rows after this call's are another task's).
      LLVMBasicBlockRef whole = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, "whole");
      LLVMBasicBlockRef part = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, "part");
      done = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, "block_done");
      LLVMBuildCondBr(B(e), LLVMBuildICmp(B(e), LLVMIntEQ, left, I(e, bm), ""), whole, part);
      LLVMPositionBuilderAtEnd(B(e), whole);
      Gemm gd = g;
      gd.c = cg_gep(e, e->f32, e->ptr[st->id], MUL(e, i0, I(e, N)));
      cg_gemm(e, &gd);
      LLVMBuildBr(B(e), done);
      LLVMPositionBuilderAtEnd(B(e), part);
    }
    cg_gemm(e, &g);
  }
  matmul_epilogue(e, rows, i0, left, steps, ldr, N);
  if (done) {
    LLVMBuildBr(B(e), done);
    LLVMPositionBuilderAtEnd(B(e), done);
  }
  cg_loop_end(e, &lb);
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
// The output range [lo, hi) along one axis for a runtime kernel offset k: the
// outputs o whose input o*s + k - p lies in [0, in).
static void conv_range_rt(Emit *e, int64_t in, int64_t out, LLVMValueRef k, int64_t s, int64_t p, LLVMValueRef *lo,
                          LLVMValueRef *hi) {
  LLVMValueRef num = LLVMBuildSub(B(e), I(e, p), k, "");  // first valid: o >= ceil((p-k)/s)
  LLVMValueRef up = LLVMBuildSDiv(B(e), ADD(e, num, I(e, s - 1)), I(e, s), "");
  *lo = cg_max_i64(e, I(e, 0), LLVMBuildSelect(B(e), LLVMBuildICmp(B(e), LLVMIntSGT, num, I(e, 0), ""), up, I(e, 0), ""));
  LLVMValueRef last = LLVMBuildSub(B(e), I(e, in - 1 + p), k, "");  // last valid: o <= (in-1+p-k)/s
  LLVMValueRef h = ADD(e, LLVMBuildSDiv(B(e), last, I(e, s), ""), I(e, 1));
  h = LLVMBuildSelect(B(e), LLVMBuildICmp(B(e), LLVMIntSLT, last, I(e, 0), ""), I(e, 0), h, "");
  *hi = cg_min_i64(e, I(e, out), h);
}

// The loops over every (c, kh, kw, oh, ow) whose input position (ih, iw) =
// (oh*s + kh - p, ow*s + kw - p) lies inside the image: row = (c*KH + kh)*KW + kw
// indexes im2col's rows and pos = oh*OW + ow its columns. The innermost loop is
// left to the vectorizer when it is contiguous (stride 1). With `rows_only`
// the walk stops at the rows: ow runs over [w0, w1) (pos is the run's start).
typedef struct {
  Loop lc, lkh, lkw, loh, low;
  LLVMValueRef c, row, pos, ih, iw, w0, w1;
  bool contiguous, rows_only;
} ConvWalk;

static ConvWalk conv_walk_begin(Emit *e, int64_t C, int64_t H, int64_t Wd, int64_t KH, int64_t KW, int64_t s,
                                int64_t p, int64_t OH, int64_t OW, bool rows_only) {
  ConvWalk w = {.contiguous = s == 1, .rows_only = rows_only};
  w.lc = cg_loop_begin(e, I(e, 0), I(e, C), "c");
  w.lkh = cg_loop_begin(e, I(e, 0), I(e, KH), "kh");
  w.lkw = cg_loop_begin(e, I(e, 0), I(e, KW), "kw");
  LLVMValueRef h0, h1, w0, w1;
  conv_range_rt(e, H, OH, w.lkh.i, s, p, &h0, &h1);
  conv_range_rt(e, Wd, OW, w.lkw.i, s, p, &w0, &w1);
  w.c = w.lc.i;
  w.row = ADD(e, MUL(e, ADD(e, MUL(e, w.lc.i, I(e, KH)), w.lkh.i), I(e, KW)), w.lkw.i);
  w.w0 = w0, w.w1 = w1;
  w.loh = cg_loop_begin(e, h0, h1, "oh");
  w.ih = LLVMBuildSub(B(e), ADD(e, MUL(e, w.loh.i, I(e, s)), w.lkh.i), I(e, p), "");
  if (rows_only) {
    w.iw = LLVMBuildSub(B(e), ADD(e, MUL(e, w0, I(e, s)), w.lkw.i), I(e, p), "");
    w.pos = ADD(e, MUL(e, w.loh.i, I(e, OW)), w0);
    return w;
  }
  w.low = cg_loop_begin(e, w0, w1, "ow");
  w.iw = LLVMBuildSub(B(e), ADD(e, MUL(e, w.low.i, I(e, s)), w.lkw.i), I(e, p), "");
  w.pos = ADD(e, MUL(e, w.loh.i, I(e, OW)), w.low.i);
  return w;
}

static void conv_walk_end(Emit *e, ConvWalk *w) {
  if (w->rows_only) {
    // (no ow loop)
  } else if (w->contiguous) {
    cg_loop_end(e, &w->low);
  } else {
    cg_loop_end_scalar(e, &w->low);
  }
  cg_loop_end_scalar(e, &w->loh);
  cg_loop_end_scalar(e, &w->lkw);
  cg_loop_end_scalar(e, &w->lkh);
  cg_loop_end_scalar(e, &w->lc);
}

// im2col: col[(c,kh,kw), (oh,ow)] = x[b, c, oh*s+kh-p, ow*s+kw-p], 0 outside.
static void im2col(Emit *e, Value *X, LLVMValueRef b, int64_t KH, int64_t KW, int64_t s, int64_t p, int64_t OH,
                   int64_t OW, LLVMValueRef col) {
  int64_t C = X->shape.d[1], H = X->shape.d[2], Wd = X->shape.d[3], P = OH * OW;
  cg_zero(e, col, I(e, C * KH * KW * P));
  if (s == 1 && e->ptr[X->id] && !X->image_local && X->type == T_F32) {
    // Stride 1 from a buffer: each output row's run of valid columns is one
    // contiguous copy, 16 floats at a time.
    ConvWalk w = conv_walk_begin(e, C, H, Wd, KH, KW, s, p, OH, OW, true);
    LLVMValueRef xidx[4] = {b, w.c, w.ih, w.iw};
    LLVMValueRef src = cg_gep(e, e->f32, e->ptr[X->id], cg_offset(e, X->shape, xidx));
    LLVMValueRef dst = cg_gep(e, e->f32, col, ADD(e, MUL(e, w.row, I(e, P)), w.pos));
    cg_vcopy(e, dst, src, cg_max_i64(e, I(e, 0), LLVMBuildSub(B(e), w.w1, w.w0, "")));
    conv_walk_end(e, &w);
    return;
  }
  ConvWalk w = conv_walk_begin(e, C, H, Wd, KH, KW, s, p, OH, OW, false);
  LLVMValueRef xidx[4] = {b, w.c, w.ih, w.iw};
  store_f(e, col, ADD(e, MUL(e, w.row, I(e, P)), w.pos), cg_load_at(e, X, xidx));
  conv_walk_end(e, &w);
}

// Direct convolution (fuse.c's conv_direct): the taps of a KH x KW kernel over
// a plane padded to width Wp: tap (kh, kw) reads the padded input at the
// constant offset kh*Wp + kw from the output position, and A's column
// aoff(kh, kw) (weight order, or flipped for the input gradient).
static void conv_taps(int64_t KH, int64_t KW, int64_t Wp, bool flip, int64_t **aoff, int64_t **boff) {
  *aoff = arena_alloc(sizeof(int64_t) * (size_t)(KH * KW));
  *boff = arena_alloc(sizeof(int64_t) * (size_t)(KH * KW));
  for (int64_t kh = 0; kh < KH; kh++)
    for (int64_t kw = 0; kw < KW; kw++) {
      int64_t t = kh * KW + kw;
      (*aoff)[t] = flip ? (KH - 1 - kh) * KW + (KW - 1 - kw) : t;
      (*boff)[t] = kh * Wp + kw;
    }
}

// dst[(c*Hp + h + ph)*Wp + pw + w] = X[b, c, h, w] for channels [c0, c1) of
// image b; the padding around is left as it is (zero).
static void pad_plane(Emit *e, Value *X, LLVMValueRef b, LLVMValueRef c0, LLVMValueRef c1, int64_t ph, int64_t pw,
                      int64_t Hp, int64_t Wp, LLVMValueRef dst) {
  int64_t H = X->shape.d[2], Wd = X->shape.d[3];
  Loop lc = cg_loop_begin(e, c0, c1, "c");
  Loop lh = cg_loop_begin(e, I(e, 0), I(e, H), "h");
  LLVMValueRef row = ADD(e, MUL(e, ADD(e, MUL(e, lc.i, I(e, Hp)), ADD(e, lh.i, I(e, ph))), I(e, Wp)), I(e, pw));
  Loop lw = cg_loop_begin(e, I(e, 0), I(e, Wd), "w");
  LLVMValueRef idx[4] = {b, lc.i, lh.i, lw.i};
  store_f(e, dst, ADD(e, row, lw.i), cg_load_at(e, X, idx));
  cg_loop_end(e, &lw);
  cg_loop_end_scalar(e, &lh);
  cg_loop_end_scalar(e, &lc);
}

// The loop over this call's images shared by the direct forward and input
// gradient: src[b] (nch channels) copied into the zero-padded plane pad
// [nch, Hp, Wp] at (ph, pw), then the tap GEMM g (reading pad, writing its C,
// rows ld apart), then the epilogue over the valid columns.
static void direct_images(Emit *e, Value *src, int64_t nch, int64_t ph, int64_t pw, int64_t Hp, int64_t Wp,
                          LLVMValueRef pad, const Gemm *g) {
  cg_zero(e, pad, I(e, nch * Hp * Wp + Wp));
  Loop lb = cg_loop_begin(e, e->lo, e->hi, "b");
  pad_plane(e, src, lb.i, I(e, 0), I(e, nch), ph, pw, Hp, Wp, pad);
  cg_gemm(e, g);
  e->tile_ld = Wp;
  cg_image_epilogue(e, lb.i, g->c);
  e->tile_ld = 0;
  cg_loop_end(e, &lb);
}

// Winograd (wino.c): the filters transformed once per call, then per image
// the source padded into the plane, its transforms and GEMMs, and the
// epilogue over the output plane.
static void wino_images(Emit *e, Value *src, const WinoPlan *p, LLVMValueRef w) {
  cg_wino_filter(e, p, w);
  LLVMValueRef pad = cg_gep(e, e->f32, e->scratch, I(e, p->at_pad));
  cg_zero(e, pad, I(e, p->K * p->Hp * p->Wp + 16));
  Loop lb = cg_loop_begin(e, e->lo, e->hi, "b");
  pad_plane(e, src, lb.i, I(e, 0), I(e, p->K), p->pad, p->pad, p->Hp, p->Wp, pad);
  cg_wino_image(e, p);
  cg_image_epilogue(e, lb.i, cg_gep(e, e->f32, e->scratch, I(e, p->at_plane)));
  cg_loop_end(e, &lb);
}

// Direct: the input padded by p into xpad [C, Hp, Wp] (+ a slack row for the
// taps of the last columns), then per image one tap GEMM
//   plane[o, oh*Wp + ow] = sum_{c, kh, kw} w[o, c, kh, kw] * xpad[c, (oh + kh)*Wp + ow + kw]
static void emit_conv2d_direct(Emit *e, Value *v) {
  Value *X = v->in[0], *W = v->in[1];
  int64_t p = v->ia[1], C = X->shape.d[1], Hp = X->shape.d[2] + 2 * p, Wp = X->shape.d[3] + 2 * p;
  int64_t O = W->shape.d[0], KH = W->shape.d[2], KW = W->shape.d[3], OH = v->shape.d[2], kk = KH * KW;
  LLVMValueRef xpad = e->scratch, plane = cg_gep(e, e->f32, e->scratch, I(e, C * Hp * Wp + Wp));
  int64_t *aoff, *boff;
  conv_taps(KH, KW, Wp, false, &aoff, &boff);
  int mr, nv;
  gemm_tile_static(O, OH * Wp, &mr, &nv);
  Gemm g = {.M = O, .N = OH * Wp, .K = I(e, C), .a = e->ptr[W->id], .ars = I(e, C * kk), .acs = I(e, kk),
            .b = xpad, .ldb = Hp * Wp, .c = plane, .ldc = OH * Wp, .mr = mr, .nv = nv, .ntaps = (int)kk,
            .aoff = aoff, .boff = boff};
  direct_images(e, X, C, p, p, Hp, Wp, xpad, &g);
}

// Per image: pack the input (im2col), one GEMM W[O, CKK] . col[CKK, P] into the
// output tile [O, OH*OW], then the epilogue over the tile.
LLVMValueRef emit_conv2d(Emit *e, Value *v, LLVMValueRef *in) {
  WinoPlan wp;
  if (wino_plan(v, &wp)) {
    wino_images(e, v->in[0], &wp, e->ptr[v->in[1]->id]);
    return NULL;
  }
  if (conv_direct(v)) {
    emit_conv2d_direct(e, v);
    return NULL;
  }
  Value *X = v->in[0], *W = v->in[1];
  int64_t s = v->ia[0], p = v->ia[1];
  int64_t O = W->shape.d[0], KH = W->shape.d[2], KW = W->shape.d[3];
  int64_t OH = v->shape.d[2], OW = v->shape.d[3], P = OH * OW, ckk = W->shape.d[1] * KH * KW;
  LLVMValueRef col = e->scratch, plane = cg_gep(e, e->f32, e->scratch, I(e, ckk * P));
  int mr, nv;
  gemm_tile(O, P, &mr, &nv);
  Loop lb = cg_loop_begin(e, e->lo, e->hi, "b");
  im2col(e, X, lb.i, KH, KW, s, p, OH, OW, col);
  Gemm g = {.M = O, .N = P, .K = I(e, ckk), .a = e->ptr[W->id], .ars = I(e, ckk), .acs = I(e, 1), .b = col,
            .ldb = P, .c = plane, .ldc = P, .mr = mr, .nv = nv};
  cg_gemm(e, &g);
  cg_image_epilogue(e, lb.i, plane);
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
// Direct: dx is the convolution of the output gradient, padded by KH-1-p and
// KW-1-p into gpad [O, Hq, Wq], with the flipped kernel:
//   plane[c, ih*Wq + iw] = sum_{o, kh, kw} w[o, c, KH-1-kh, KW-1-kw] * gpad[o, (ih + kh)*Wq + iw + kw]
static void emit_conv2d_dx_direct(Emit *e, Value *v) {
  Value *G = v->in[0], *W = v->in[1];
  int64_t p = v->ia[1], C = v->shape.d[1], H = v->shape.d[2];
  int64_t O = W->shape.d[0], KH = W->shape.d[2], KW = W->shape.d[3], kk = KH * KW;
  int64_t Hq = H + KH - 1, Wq = v->shape.d[3] + KW - 1;
  LLVMValueRef gpad = e->scratch, plane = cg_gep(e, e->f32, e->scratch, I(e, O * Hq * Wq + Wq));
  int64_t *aoff, *boff;
  conv_taps(KH, KW, Wq, true, &aoff, &boff);
  int mr, nv;
  gemm_tile_static(C, H * Wq, &mr, &nv);
  Gemm g = {.M = C, .N = H * Wq, .K = I(e, O), .a = e->ptr[W->id], .ars = I(e, kk), .acs = I(e, C * kk),
            .b = gpad, .ldb = Hq * Wq, .c = plane, .ldc = H * Wq, .mr = mr, .nv = nv, .ntaps = (int)kk,
            .aoff = aoff, .boff = boff};
  direct_images(e, G, O, KH - 1 - p, KW - 1 - p, Hq, Wq, gpad, &g);
}

// Per image: one GEMM W^T[CKK, O] . g[O, P] gives the column gradients, which
// col2im adds back into the input plane tile [C, H, W]; then the epilogue.
LLVMValueRef emit_conv2d_dx(Emit *e, Value *v, LLVMValueRef *in) {
  WinoPlan wp;
  if (wino_plan(v, &wp)) {
    wino_images(e, v->in[0], &wp, e->ptr[v->in[1]->id]);
    return NULL;
  }
  if (conv_direct(v)) {
    emit_conv2d_dx_direct(e, v);
    return NULL;
  }
  Value *G = v->in[0], *W = v->in[1];
  int64_t s = v->ia[0], p = v->ia[1];
  int64_t H = v->shape.d[2], Wd = v->shape.d[3], C = v->shape.d[1];
  int64_t O = W->shape.d[0], KH = W->shape.d[2], KW = W->shape.d[3];
  int64_t OH = G->shape.d[2], OW = G->shape.d[3], P = OH * OW, ckk = C * KH * KW;
  LLVMValueRef dcol = e->scratch, plane = cg_gep(e, e->f32, e->scratch, I(e, ckk * P));
  int mr, nv;
  gemm_tile(ckk, P, &mr, &nv);
  Loop lb = cg_loop_begin(e, e->lo, e->hi, "b");
  Gemm g = {.M = ckk, .N = P, .K = I(e, O), .a = e->ptr[W->id], .ars = I(e, 1), .acs = I(e, ckk),
            .b = cg_gep(e, e->f32, e->ptr[G->id], MUL(e, lb.i, I(e, O * P))), .ldb = P, .c = dcol, .ldc = P,
            .mr = mr, .nv = nv};
  cg_gemm(e, &g);
  // col2im: every column gradient goes back to the input position it came from.
  cg_zero(e, plane, I(e, C * H * Wd));
  ConvWalk w = conv_walk_begin(e, C, H, Wd, KH, KW, s, p, OH, OW, false);
  LLVMValueRef dst = ADD(e, MUL(e, ADD(e, MUL(e, w.c, I(e, H)), w.ih), I(e, Wd)), w.iw);
  acc_f(e, plane, dst, load_f(e, dcol, ADD(e, MUL(e, w.row, I(e, P)), w.pos)));
  conv_walk_end(e, &w);
  LLVMValueRef outer[1] = {lb.i};
  cg_epilogue(e, outer, 3, plane);
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
// The output channels [o0, o1) and images [b0, b1) of a call: a task of a
// split by output channels takes its block of channels over the whole batch;
// otherwise (fuse.c, dw_by_images) its block of images for every channel.
static void dw_ranges(Emit *e, int64_t O, LLVMValueRef *o0, LLVMValueRef *o1, LLVMValueRef *b0, LLVMValueRef *b1) {
  bool by_out = e->k->split == SPLIT_OUT;
  *o0 = by_out ? e->lo : I(e, 0);
  *o1 = by_out ? e->hi : I(e, O);
  *b0 = by_out ? I(e, 0) : e->lo;
  *b1 = by_out ? e->n : e->hi;
}

// Direct: per image the input goes transposed and padded into xT
// [Hp*Wp (+ slack), C] and this task's rows of g into gw [O, OH*Wp] (columns
// ow >= OW stay zero); then for each tap one GEMM over the valid positions
// q = oh*Wp + ow, ow < OW (rows of k: the zero columns are not summed)
//   acc[o, kh*KW + kw, c] += sum_q gw[o, q] * xT[q + kh*Wp + kw, c]
// Afterwards acc is reordered to dw's [o, c, kh, kw] for the epilogue.
static void emit_conv2d_dw_direct(Emit *e, Value *v) {
  Value *X = v->in[0], *G = v->in[1];
  int64_t p = v->ia[1], O = v->shape.d[0], C = v->shape.d[1], KH = v->shape.d[2], KW = v->shape.d[3];
  int64_t H = X->shape.d[2], Wd = X->shape.d[3], Hp = H + 2 * p, Wp = Wd + 2 * p, OH = G->shape.d[2];
  int64_t P = OH * Wp, kk = KH * KW;
  LLVMValueRef xT = e->scratch;
  LLVMValueRef gw = cg_gep(e, e->f32, xT, I(e, (Hp * Wp + Wp) * C));
  LLVMValueRef acc = cg_gep(e, e->f32, gw, I(e, O * P));
  LLVMValueRef out = cg_gep(e, e->f32, acc, I(e, (O + 8) * kk * C));
  LLVMValueRef o0, o1, b0, b1;
  dw_ranges(e, O, &o0, &o1, &b0, &b1);
  LLVMValueRef rows = LLVMBuildSub(B(e), o1, o0, "");
  cg_zero(e, xT, I(e, (Hp * Wp + Wp) * C));
  cg_zero(e, cg_gep(e, e->f32, gw, MUL(e, o0, I(e, P))), MUL(e, rows, I(e, P)));
  cg_zero(e, cg_gep(e, e->f32, acc, MUL(e, o0, I(e, kk * C))), MUL(e, ADD(e, rows, I(e, 8)), I(e, kk * C)));
  int mr, nv;
  gemm_tile(O, C, &mr, &nv);
  Loop lb = cg_loop_begin(e, b0, b1, "b");
  {
    Loop lh = cg_loop_begin(e, I(e, 0), I(e, H), "h");
    Loop lw = cg_loop_begin(e, I(e, 0), I(e, Wd), "w");
    LLVMValueRef q = ADD(e, MUL(e, ADD(e, lh.i, I(e, p)), I(e, Wp)), ADD(e, lw.i, I(e, p)));
    Loop lc = cg_loop_begin(e, I(e, 0), I(e, C), "c");
    LLVMValueRef idx[4] = {lb.i, lc.i, lh.i, lw.i};
    store_f(e, xT, ADD(e, MUL(e, q, I(e, C)), lc.i), cg_load_at(e, X, idx));
    // Not unrolled: LLVM unrolled the C channels fully, and its induction-
    // variable pass then spent about 25 ms of conv2's weight gradient on the
    // copies' addresses; the loop runs as fast as a loop (a strided copy).
    cg_loop_end_scalar(e, &lc);
    cg_loop_end_scalar(e, &lw);
    cg_loop_end_scalar(e, &lh);
  }
  pad_plane(e, G, lb.i, o0, o1, 0, 0, OH, Wp, gw);
  // The taps as a loop, not unrolled: one copy of the tile loops instead of
  // KH*KW (a ninth of the code to compile for 3x3; the GEMMs dominate anyway).
  {
    Loop lkh = cg_loop_begin(e, I(e, 0), I(e, KH), "kh");
    Loop lkw = cg_loop_begin(e, I(e, 0), I(e, KW), "kw");
    LLVMValueRef t = ADD(e, MUL(e, lkh.i, I(e, KW)), lkw.i), boff = ADD(e, MUL(e, lkh.i, I(e, Wp)), lkw.i);
    // Over the OH rows of OW valid positions each: gw's padding columns
    // (Wp - OW of every Wp) are zeros, and are not summed.
    Gemm g = {.M = O, .N = C, .K = I(e, OH), .a = cg_gep(e, e->f32, gw, MUL(e, o0, I(e, P))), .ars = I(e, P),
              .acs = I(e, 1), .b = cg_gep(e, e->f32, xT, MUL(e, boff, I(e, C))), .ldb = C,
              .c = cg_gep(e, e->f32, acc, ADD(e, MUL(e, o0, I(e, kk * C)), MUL(e, t, I(e, C)))), .ldc = kk * C,
              .accumulate = true, .m_valid = rows, .mr = mr, .nv = nv, .krow = G->shape.d[3], .kstride = Wp};
    cg_gemm(e, &g);
    cg_loop_end_scalar(e, &lkw);
    cg_loop_end_scalar(e, &lkh);
  }
  cg_loop_end_scalar(e, &lb);
  Loop lo = cg_loop_begin(e, o0, o1, "o");
  {
    Loop lc = cg_loop_begin(e, I(e, 0), I(e, C), "c");
    Loop lt = cg_loop_begin(e, I(e, 0), I(e, kk), "t");
    LLVMValueRef src = ADD(e, MUL(e, ADD(e, MUL(e, lo.i, I(e, kk)), lt.i), I(e, C)), lc.i);
    LLVMValueRef dst = ADD(e, MUL(e, ADD(e, MUL(e, lo.i, I(e, C)), lc.i), I(e, kk)), lt.i);
    store_f(e, out, dst, load_f(e, acc, src));
    cg_loop_end(e, &lt);
    cg_loop_end_scalar(e, &lc);
  }
  LLVMValueRef outer[1] = {lo.i};
  cg_epilogue(e, outer, 3, cg_gep(e, e->f32, out, MUL(e, lo.i, I(e, C * kk))));
  cg_loop_end(e, &lo);
}

// Winograd (wino.c): per image of the task, the input padded into the plane
// and both transforms summed into dU; then the filter bank, through the
// epilogue one output channel at a time.
static void emit_conv2d_dw_wino(Emit *e, Value *v, const WinoPlan *p) {
  Value *X = v->in[0], *G = v->in[1];
  LLVMValueRef o0, o1, b0, b1;
  dw_ranges(e, p->N, &o0, &o1, &b0, &b1);  // (by images: every channel)
  LLVMValueRef pad = cg_gep(e, e->f32, e->scratch, I(e, p->at_pad));
  LLVMValueRef out = cg_gep(e, e->f32, e->scratch, I(e, p->at_plane));
  cg_zero(e, pad, I(e, p->K * p->Hp * p->Wp + 16));
  cg_zero(e, cg_gep(e, e->f32, e->scratch, I(e, p->at_u)), I(e, 16 * p->K * p->N));
  Loop lb = cg_loop_begin(e, b0, b1, "b");
  pad_plane(e, X, lb.i, I(e, 0), I(e, p->K), p->pad, p->pad, p->Hp, p->Wp, pad);
  cg_wino_dw_image(e, p, cg_gep(e, e->f32, e->ptr[G->id], MUL(e, lb.i, I(e, p->N * p->OH * p->OW))));
  cg_loop_end_scalar(e, &lb);
  cg_wino_dw_filter(e, p, out);
  Loop lo = cg_loop_begin(e, I(e, 0), I(e, p->N), "o");
  LLVMValueRef outer[1] = {lo.i};
  cg_epilogue(e, outer, 3, cg_gep(e, e->f32, out, MUL(e, lo.i, I(e, p->K * 9))));
  cg_loop_end(e, &lo);
}

static void maxpool2_dx_plane(Emit *e, Value *A, Value *G, LLVMValueRef off, LLVMValueRef tile, int64_t Wd,
                              int64_t OH, int64_t OW);

// Over the images in order: im2col, then the NT micro-kernel accumulates
// g[o, P] . col[ckk, P] into the filter tile [O, CKK] (both contiguous along P).
// A task takes a block of output rows [lo, hi) and the whole batch, so every
// element is summed in the same order whatever the split.
LLVMValueRef emit_conv2d_dw(Emit *e, Value *v, LLVMValueRef *in) {
  WinoPlan wp;
  if (wino_plan(v, &wp)) {
    emit_conv2d_dw_wino(e, v, &wp);
    return NULL;
  }
  if (conv_direct(v)) {
    emit_conv2d_dw_direct(e, v);
    return NULL;
  }
  Value *X = v->in[0], *G = v->in[1];
  int64_t s = v->ia[0], p = v->ia[1];
  int64_t O = v->shape.d[0], C = v->shape.d[1], KH = v->shape.d[2], KW = v->shape.d[3];
  int64_t OH = G->shape.d[2], OW = G->shape.d[3], P = OH * OW, ckk = C * KH * KW, ldc = (ckk + 3) & ~(int64_t)3;
  LLVMValueRef col = e->scratch, acc = cg_gep(e, e->f32, e->scratch, I(e, P * ckk));
  LLVMValueRef o0, o1, b0, b1;
  dw_ranges(e, O, &o0, &o1, &b0, &b1);
  LLVMValueRef acc0 = cg_gep(e, e->f32, acc, MUL(e, o0, I(e, ldc)));
  cg_zero(e, acc0, MUL(e, ADD(e, LLVMBuildSub(B(e), o1, o0, ""), I(e, 4)), I(e, ldc)));
  // g = maxpool_dx(a, g2) computed here (fuse.c, unpool_in_dw): image b's
  // planes [o0, o1) in the scratch (rows and columns no window covers stay 0)
  bool unpool = G->group == GROUP_INLINE;
  LLVMValueRef planes = unpool ? cg_gep(e, e->f32, e->scratch, I(e, dw_planes_at(v))) : NULL;
  if (unpool && (G->in[0]->shape.d[2] * 2 < OH || G->in[0]->shape.d[3] * 2 < OW))
    cg_zero(e, cg_gep(e, e->f32, planes, MUL(e, o0, I(e, P))), MUL(e, LLVMBuildSub(B(e), o1, o0, ""), I(e, P)));
  Loop lb = cg_loop_begin(e, b0, b1, "b");
  im2col(e, X, lb.i, KH, KW, s, p, OH, OW, col);
  LLVMValueRef gb;
  if (unpool) {
    Value *A = G->in[0], *G2 = G->in[1];
    int64_t ph = A->shape.d[2], pw = A->shape.d[3];
    Loop lo = cg_loop_begin(e, o0, o1, "o");
    LLVMValueRef plane = ADD(e, MUL(e, lb.i, I(e, O)), lo.i);
    maxpool2_dx_plane(e, A, G2, MUL(e, plane, I(e, ph * pw)), cg_gep(e, e->f32, planes, MUL(e, lo.i, I(e, P))), OW,
                      ph, pw);
    cg_loop_end_scalar(e, &lo);
    gb = cg_gep(e, e->f32, planes, MUL(e, o0, I(e, P)));
  } else {
    gb = cg_gep(e, e->f32, e->ptr[G->id], ADD(e, MUL(e, lb.i, I(e, O * P)), MUL(e, o0, I(e, P))));
  }
  GemmNT g = {.M = O, .N = ckk, .lda = P, .ldb = P, .ldc = ldc, .K = I(e, P), .a = gb, .b = col, .c = acc0,
              .m_valid = LLVMBuildSub(B(e), o1, o0, ""), .accumulate = true};
  cg_gemm_nt(e, &g);
  cg_loop_end(e, &lb);
  Loop lo = cg_loop_begin(e, o0, o1, "o");
  LLVMValueRef outer[1] = {lo.i};
  cg_epilogue(e, outer, 3, cg_gep(e, e->f32, acc, MUL(e, lo.i, I(e, ldc))));
  cg_loop_end(e, &lo);
  return NULL;
}

// The shuffle of a and b (concatenated) taking lane m(i) for i < n.
static LLVMValueRef shuffle(Emit *e, LLVMValueRef a, LLVMValueRef b, int n, int (*m)(int i, int arg), int arg) {
  LLVMValueRef lane[64];
  for (int i = 0; i < n; i++) lane[i] = LLVMConstInt(e->i32, (unsigned long long)m(i, arg), 0);
  return LLVMBuildShuffleVector(B(e), a, b, LLVMConstVector(lane, (unsigned)n), "");
}
static int every_other(int i, int first) { return first + 2 * i; }       // deinterleave
static int interleave(int i, int unused) { return i / 2 + (i % 2) * 16; }  // a0 b0 a1 b1 ...
static LLVMValueRef splat16(LLVMValueRef c) {
  LLVMValueRef lane[16];
  for (int i = 0; i < 16; i++) lane[i] = c;
  return LLVMConstVector(lane, 16);
}
static LLVMValueRef splat_i32(Emit *e, int64_t c) { return splat16(LLVMConstInt(e->i32, (unsigned long long)c, 0)); }

// The offset of input row 2i + di, column 2*j0, in a plane with rows of Wd.
static LLVMValueRef row2(Emit *e, LLVMValueRef i, int di, int64_t j0, int64_t Wd) {
  return ADD(e, MUL(e, ADD(e, MUL(e, i, I(e, 2)), I(e, di)), I(e, Wd)), I(e, 2 * j0));
}
// The 2x2 windows of output row i, columns [j0, j0 + valid) (valid <= 16),
// of a plane at xp with rows of Wd: w[di*2 + dj] holds each window's element
// (di, dj) and row[di] the offset of input row 2i + di, column 2*j0.
static void windows2(Emit *e, LLVMValueRef xp, LLVMValueRef i, int64_t j0, int valid, int64_t Wd, LLVMValueRef w[4],
                     LLVMValueRef row[2]) {
  for (int di = 0; di < 2; di++) {
    row[di] = row2(e, i, di, j0, Wd);
    LLVMValueRef x = cg_vload(e, cg_gep(e, e->f32, xp, row[di]), 32, 2 * valid);
    for (int dj = 0; dj < 2; dj++) w[di * 2 + dj] = shuffle(e, x, x, 16, every_other, dj);
  }
}

// The 2x2, stride-2 case of maxpool_dx on explicit vectors, 16 windows at a
// time: each window's g goes to the position its index in A names, the other
// three get 0; the halves are interleaved back into the two input rows and
// stored. A and G must be buffers; off is the plane's offset in both, tile is
// [H, Wd].
static void maxpool2_dx_plane(Emit *e, Value *A, Value *G, LLVMValueRef off, LLVMValueRef tile, int64_t Wd,
                              int64_t OH, int64_t OW) {
  LLVMValueRef ap = cg_gep(e, e->f32, e->ptr[A->id], off), gp = cg_gep(e, e->f32, e->ptr[G->id], off);
  LLVMTypeRef iv = LLVMVectorType(e->i32, 16);
  Loop li = cg_loop_begin(e, I(e, 0), I(e, OH), "i");
  for (int64_t j0 = 0; j0 < OW; j0 += 16) {
    int valid = (int)(OW - j0 < 16 ? OW - j0 : 16);
    LLVMValueRef at = ADD(e, MUL(e, li.i, I(e, OW)), I(e, j0));
    LLVMValueRef code = LLVMBuildFPToSI(B(e), cg_vload(e, cg_gep(e, e->f32, ap, at), 16, valid), iv, "");
    LLVMValueRef g = cg_vload(e, cg_gep(e, e->f32, gp, at), 16, valid);
    LLVMValueRef zero = LLVMConstNull(LLVMVectorType(e->f32, 16));
    for (int di = 0; di < 2; di++) {
      LLVMValueRef o[2];
      for (int dj = 0; dj < 2; dj++)
        o[dj] = LLVMBuildSelect(B(e), LLVMBuildICmp(B(e), LLVMIntEQ, code, splat_i32(e, di * 2 + dj), ""), g, zero, "");
      cg_vstore(e, shuffle(e, o[0], o[1], 32, interleave, 0), cg_gep(e, e->f32, tile, row2(e, li.i, di, j0, Wd)), 32,
                2 * valid);
    }
  }
  cg_loop_end_scalar(e, &li);
}

//
// maxpool: y[..., i, j] = max_{di,dj < k} x[..., i*s+di, j*s+dj]   (no padding)
//
// dx = maxpool_dx(maxpool_arg(x), g): each window's g goes to its first maximum
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
// dx = maxpool_dx(maxpool_arg(x), g): the backward pass reads where each
// window's maximum was (a float per window), not x again.
void grad_maxpool(Builder *b, Value *v, Value *g, Value **dx) {
  Value *x = v->in[0];
  int r = x->shape.rank;
  Value *in[2] = {ir_new(b, OP_maxpool_arg, 1, &x, v->ia, 0), g};
  int64_t ia[8] = {v->ia[0], v->ia[1], x->shape.d[r - 2], x->shape.d[r - 1]};
  dx[0] = ir_new(b, OP_maxpool_dx, 2, in, ia, 0);
}
// The window at e->idx in row-major order, a strictly greater element
// replacing the maximum (cg_max): the maximum, and in *code (if wanted) where
// it is, di*k + dj as a float. maxpool and maxpool_arg share it, so the index
// always names the element the pool returned.
static LLVMValueRef window_max(Emit *e, Value *v, LLVMValueRef *code) {
  int r = v->shape.rank;
  int64_t k = v->ia[0], s = v->ia[1];
  LLVMValueRef sub[MAXRANK];
  for (int i = 0; i < r; i++) sub[i] = e->idx[i];
  LLVMValueRef m = NULL;
  if (code) *code = cg_f32(e, 0);
  for (int64_t di = 0; di < k; di++)
    for (int64_t dj = 0; dj < k; dj++) {
      sub[r - 2] = ADD(e, MUL(e, e->idx[r - 2], I(e, s)), I(e, di));
      sub[r - 1] = ADD(e, MUL(e, e->idx[r - 1], I(e, s)), I(e, dj));
      LLVMValueRef x = cg_load_at(e, v->in[0], sub);
      if (!m) {
        m = x;
        continue;
      }
      LLVMValueRef gt = LLVMBuildFCmp(B(e), LLVMRealOGT, x, m, "");
      m = LLVMBuildSelect(B(e), gt, x, m, "");
      if (code) *code = LLVMBuildSelect(B(e), gt, cg_f32(e, (double)(di * k + dj)), *code, "");
    }
  return m;
}
LLVMValueRef emit_maxpool(Emit *e, Value *v, LLVMValueRef *in) { return window_max(e, v, NULL); }

//
// maxpool_arg: a[..., i, j] = di*k + dj of the first maximum, in row-major
//              window order, of x[..., i*s+di, j*s+dj]  (as maxpool's max)
//
// An index: nothing flows back through it.
bool shape_maxpool_arg(Value *v) { return shape_maxpool(v); }
void grad_maxpool_arg(Builder *b, Value *v, Value *g, Value **dx) {}
LLVMValueRef emit_maxpool_arg(Emit *e, Value *v, LLVMValueRef *in) {
  LLVMValueRef code;
  window_max(e, v, &code);
  return code;
}

// The pool of image b of a convolution's output, run by the convolution's
// kernel right after the image's epilogue (Kernel.post): the pooled values
// (pool), where each window's maximum was (arg, maxpool_arg), or both, in one
// pass over the planes. The 2x2, stride-2 case runs on explicit vectors, 16
// windows per step, taking the maximum in the same order as emit_maxpool.
void emit_maxpool_image(Emit *e, Value *pool, Value *arg, LLVMValueRef b) {
  Value *v = pool ? pool : arg, *X = v->in[0];
  int r = v->shape.rank;
  int64_t k = v->ia[0], s = v->ia[1], C = v->shape.d[1];
  int64_t H = X->shape.d[r - 2], Wd = X->shape.d[r - 1], OH = v->shape.d[r - 2], OW = v->shape.d[r - 1];
  if (k != 2 || s != 2) {  // (a convolution's output: rank 4)
    Loop loops[MAXRANK];
    LLVMValueRef idx[MAXRANK];
    e->idx[0] = idx[0] = b;
    for (int i = 1; i < r; i++) {
      loops[i] = cg_loop_begin(e, I(e, 0), I(e, v->shape.d[i]), "p");
      e->idx[i] = idx[i] = loops[i].i;
    }
    if (pool) cg_store_at(e, pool, idx, emit_maxpool(e, pool, NULL));
    if (arg) cg_store_at(e, arg, idx, emit_maxpool_arg(e, arg, NULL));
    for (int i = r - 1; i >= 1; i--)
      if (i == r - 1)
        cg_loop_end(e, &loops[i]);
      else
        cg_loop_end_scalar(e, &loops[i]);
    return;
  }
  Loop lc = cg_loop_begin(e, I(e, 0), I(e, C), "c");
  LLVMValueRef plane = ADD(e, MUL(e, b, I(e, C)), lc.i);
  LLVMValueRef xp = cg_gep(e, e->f32, e->ptr[X->id], MUL(e, X->image_local ? lc.i : plane, I(e, H * Wd)));
  LLVMValueRef yp = pool ? cg_gep(e, e->f32, e->ptr[pool->id], MUL(e, plane, I(e, OH * OW))) : NULL;
  LLVMValueRef ap = arg ? cg_gep(e, e->f32, e->ptr[arg->id], MUL(e, plane, I(e, OH * OW))) : NULL;
  LLVMTypeRef fv = LLVMVectorType(e->f32, 16);
  Loop li = cg_loop_begin(e, I(e, 0), I(e, OH), "i");
  for (int64_t j0 = 0; j0 < OW; j0 += 16) {
    int valid = (int)(OW - j0 < 16 ? OW - j0 : 16);
    LLVMValueRef w[4], row[2];
    windows2(e, xp, li.i, j0, valid, Wd, w, row);
    LLVMValueRef m = w[0], code = LLVMConstNull(fv);
    for (int t = 1; t < 4; t++) {
      LLVMValueRef gt = LLVMBuildFCmp(B(e), LLVMRealOGT, w[t], m, "");
      m = LLVMBuildSelect(B(e), gt, w[t], m, "");  // cg_max(m, w[t])
      if (arg) code = LLVMBuildSelect(B(e), gt, splat16(cg_f32(e, t)), code, "");
    }
    LLVMValueRef at = ADD(e, MUL(e, li.i, I(e, OW)), I(e, j0));
    if (pool) cg_vstore(e, m, cg_gep(e, e->f32, yp, at), 16, valid);
    if (arg) cg_vstore(e, code, cg_gep(e, e->f32, ap, at), 16, valid);
  }
  cg_loop_end_scalar(e, &li);
  cg_loop_end_scalar(e, &lc);
}

//
// maxpool_dx: dx[..., h, w] = sum of g[..., i, j] over the windows (i, j) whose
//             first maximum a[..., i, j] is at (h, w); ia[2], ia[3] = H, W
//
// (second derivatives are not needed)
bool shape_maxpool_dx(Value *v) {
  Shape g = v->in[1]->shape;
  if (!shape_eq(v->in[0]->shape, g) || g.rank < 2) {
    error_at(v->loc, "maxpool_dx: window indices %s and gradient %s differ", shape_str_sample(v->in[0]->shape),
             shape_str_sample(g));
    return false;
  }
  v->shape = g;
  v->shape.d[g.rank - 2] = v->ia[2];
  v->shape.d[g.rank - 1] = v->ia[3];
  v->type = T_F32;
  return true;
}
void grad_maxpool_dx(Builder *b, Value *v, Value *g, Value **dx) {}
// Tile: one input plane [H, W] per outer index. Each window adds its g at the
// position its index names; the epilogue (the ReLU mask, the bias gradient's
// sum) then runs over the plane. When dx itself is an output, the tile is its
// plane in the output (a separate tile would only be copied there).
LLVMValueRef emit_maxpool_dx(Emit *e, Value *v, LLVMValueRef *in) {
  Value *A = v->in[0], *G = v->in[1];
  int r = v->shape.rank;
  int64_t k = v->ia[0], s = v->ia[1];
  int64_t H = v->shape.d[r - 2], Wd = v->shape.d[r - 1], OH = G->shape.d[r - 2], OW = G->shape.d[r - 1];
  bool in_place = v->materialized && !v->partial && e->ptr[v->id];
  LLVMValueRef tile = in_place ? NULL : cg_alloca(e, e->f32, H * Wd);
  Loop outer[MAXRANK];
  LLVMValueRef idx[MAXRANK];
  for (int t = 0; t < r - 2; t++) {
    LLVMValueRef lo = I(e, 0), hi = cg_dim(e, v->shape, t);
    if (t == 0) cg_rows(e, v->shape, &lo, &hi);
    outer[t] = cg_loop_begin(e, lo, hi, "o");
    idx[t] = outer[t].i;
  }
  LLVMValueRef base = I(e, 0);  // the plane's number
  for (int t = 0; t < r - 2; t++) base = ADD(e, MUL(e, base, cg_dim(e, v->shape, t)), idx[t]);
  if (in_place) tile = cg_gep(e, e->f32, e->ptr[v->id], MUL(e, base, I(e, H * Wd)));
  if (k == 2 && s == 2 && e->ptr[A->id] && e->ptr[G->id]) {
    if (OH * s < H || OW * s < Wd) cg_zero(e, tile, I(e, H * Wd));  // rows, columns no window covers
    maxpool2_dx_plane(e, A, G, MUL(e, base, I(e, OH * OW)), tile, Wd, OH, OW);
    idx[r - 2] = idx[r - 1] = I(e, 0);
    if (!in_place || e->k->members.len > 1) cg_epilogue(e, idx, 2, tile);  // (in place: nothing left to do)
    for (int t = r - 3; t >= 0; t--) cg_loop_end(e, &outer[t]);
    return NULL;
  }
  cg_zero(e, tile, I(e, H * Wd));
  Loop li = cg_loop_begin(e, I(e, 0), I(e, OH), "i");
  Loop lj = cg_loop_begin(e, I(e, 0), I(e, OW), "j");
  idx[r - 2] = li.i;
  idx[r - 1] = lj.i;
  LLVMValueRef code = LLVMBuildFPToSI(B(e), cg_load_at(e, A, idx), e->i64, "");
  LLVMValueRef di = LLVMBuildSDiv(B(e), code, I(e, k), ""), dj = LLVMBuildSRem(B(e), code, I(e, k), "");
  LLVMValueRef h = ADD(e, MUL(e, li.i, I(e, s)), di), w = ADD(e, MUL(e, lj.i, I(e, s)), dj);
  acc_f(e, tile, ADD(e, MUL(e, h, I(e, Wd)), w), cg_load_at(e, G, idx));
  cg_loop_end(e, &lj);
  cg_loop_end(e, &li);
  if (!in_place || e->k->members.len > 1) cg_epilogue(e, idx, 2, tile);
  for (int t = r - 3; t >= 0; t--) cg_loop_end(e, &outer[t]);
  return NULL;
}

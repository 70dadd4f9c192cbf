// gemm.c: the register-blocked matrix-multiply micro-kernel every contraction
// (dense, convolution and their gradients) is built on.
//
//   C[i, j] = (accumulate ? C[i, j] : 0) + sum_{k < K} A(i, k) * B[k*ldb + j]
//   A(i, k) = a[i*ars + k*acs]                 (any strides: read as scalars)
//   B       row-major, contiguous along j      (read as <16 x float> vectors)
//   C       row-major with row stride ldc
//
// The output is cut into MR x (16*NV) tiles. A tile's accumulators are SSA
// vectors carried through the k loop; each step loads NV vectors of B, and
// for each of the MR rows broadcasts one A element and issues NV llvm.fma calls.
// Columns past N are masked (llvm.masked.load/store); rows past `m_valid`
// re-read the last valid row of A and their results are discarded by the
// caller (they land in scratch rows). Two forms of the k loop are compiled in:
// taps (each k step is several, at constant offsets: direct convolutions) and
// rows of k (krow steps, then a jump to the next row kstride on: a padded
// plane's valid positions only).
#include "fnnc.h"

#include <string.h>

static LLVMBuilderRef B(Emit *e) { return e->cg->b; }

static LLVMTypeRef vec_t(Emit *e) { return LLVMVectorType(e->f32, 16); }

// <n x float> lane masks, loads and stores; lanes >= valid are masked off
// (read as 0, not written).
static LLVMValueRef mask_const(Emit *e, int n, int valid) {
  LLVMValueRef bits[64];
  LLVMTypeRef i1 = LLVMInt1TypeInContext(e->cg->ctx);
  for (int i = 0; i < n; i++) bits[i] = LLVMConstInt(i1, i < valid, 0);
  return LLVMConstVector(bits, (unsigned)n);
}

// llvm.masked.load / store of n floats at p under mask (masked lanes read as 0).
static LLVMValueRef masked(Emit *e, bool store, int n, LLVMValueRef p, LLVMValueRef mask, LLVMValueRef v) {
  LLVMTypeRef vt = LLVMVectorType(e->f32, (unsigned)n), types[2] = {vt, e->ptrty};
  const char *name = store ? "llvm.masked.store" : "llvm.masked.load";
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(e->cg->mod, id, types, 2);
  LLVMTypeRef fty = LLVMIntrinsicGetType(e->cg->ctx, id, types, 2);
  LLVMValueRef align = LLVMConstInt(e->i32, 4, 0);
  if (store) return LLVMBuildCall2(B(e), fty, fn, (LLVMValueRef[]){v, p, align, mask}, 4, "");
  return LLVMBuildCall2(B(e), fty, fn, (LLVMValueRef[]){p, align, mask, LLVMConstNull(vt)}, 4, "");
}

LLVMValueRef cg_vload(Emit *e, LLVMValueRef p, int n, int valid) {
  if (valid < n) return masked(e, false, n, p, mask_const(e, n, valid), NULL);
  LLVMValueRef l = LLVMBuildLoad2(B(e), LLVMVectorType(e->f32, (unsigned)n), p, "");
  LLVMSetAlignment(l, 4);
  return l;
}

void cg_vstore(Emit *e, LLVMValueRef v, LLVMValueRef p, int n, int valid) {
  if (valid < n) {
    masked(e, true, n, p, mask_const(e, n, valid), v);
    return;
  }
  LLVMValueRef s = LLVMBuildStore(B(e), v, p);
  LLVMSetAlignment(s, 4);
}

LLVMValueRef cg_vload_mask(Emit *e, LLVMValueRef p, LLVMValueRef mask) { return masked(e, false, 16, p, mask, NULL); }
void cg_vstore_mask(Emit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask) { masked(e, true, 16, p, mask, v); }

static LLVMValueRef vload(Emit *e, LLVMValueRef p, int lanes) { return cg_vload(e, p, 16, lanes); }
static void vstore(Emit *e, LLVMValueRef v, LLVMValueRef p, int lanes) { cg_vstore(e, v, p, 16, lanes); }

static LLVMValueRef vfma(Emit *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMTypeRef vt = vec_t(e);
  unsigned id = LLVMLookupIntrinsicID("llvm.fma", 8);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(e->cg->mod, id, &vt, 1);
  LLVMTypeRef fty = LLVMIntrinsicGetType(e->cg->ctx, id, &vt, 1);
  LLVMValueRef args[3] = {a, b, c};
  return LLVMBuildCall2(B(e), fty, fn, args, 3, "");
}

static LLVMValueRef splat(Emit *e, LLVMValueRef x) {
  LLVMTypeRef vt = vec_t(e);
  LLVMValueRef v = LLVMBuildInsertElement(B(e), LLVMGetUndef(vt), x, LLVMConstInt(e->i32, 0, 0), "");
  return LLVMBuildShuffleVector(B(e), v, LLVMGetUndef(vt), LLVMConstNull(LLVMVectorType(e->i32, 16)), "");
}

static LLVMValueRef gep(Emit *e, LLVMValueRef base, LLVMValueRef off) { return cg_gep(e, e->f32, base, off); }
static LLVMValueRef add(Emit *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B(e), a, b, ""); }
static LLVMValueRef mul(Emit *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(B(e), a, b, ""); }

LLVMValueRef cg_lanes_below(Emit *e, LLVMValueRef n) {
  LLVMValueRef idx[16];
  for (int l = 0; l < 16; l++) idx[l] = cg_i64(e, l);
  LLVMTypeRef v64 = LLVMVectorType(e->i64, 16);
  LLVMValueRef nv = LLVMBuildInsertElement(B(e), LLVMGetUndef(v64), n, LLVMConstInt(e->i32, 0, 0), "");
  nv = LLVMBuildShuffleVector(B(e), nv, LLVMGetUndef(v64), LLVMConstNull(LLVMVectorType(e->i32, 16)), "");
  return LLVMBuildICmp(B(e), LLVMIntSLT, LLVMConstVector(idx, 16), nv, "");
}

void cg_vcopy(Emit *e, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef n) {
  LLVMValueRef chunks = LLVMBuildSDiv(B(e), add(e, n, cg_i64(e, 15)), cg_i64(e, 16), "");
  Loop l = cg_loop_begin(e, cg_i64(e, 0), chunks, "copy");
  LLVMValueRef j = mul(e, l.i, cg_i64(e, 16)), mask = cg_lanes_below(e, LLVMBuildSub(B(e), n, j, ""));
  cg_vstore_mask(e, cg_vload_mask(e, gep(e, src, j), mask), gep(e, dst, j), mask);
  cg_loop_end_scalar(e, &l);
}

// The micro-kernel for one tile shape, as a shared non-inlined function
//   void fnn_gemm_MRxNV_LANES[_acc](float *a, i64 ars, i64 acs, float *b, i64 ldb,
//                                   float *c, i64 ldc, i64 K, i64 rows)
// computing the mr x (16*nv) tile whose top-left is at a (A row 0), b (B column
// 0) and c; the last vector has `lanes` valid lanes, and rows >= `rows` re-read
// A's last valid row (with rows of k, K counts the rows; the name then ends in
// _k<krow>of<kstride>, after the taps' _t<n>_<hash>). One function per shape
// keeps compile time small (see tile_fn).

// The k loop of a micro-kernel, with `n` vector accumulators carried as phis:
// kloop_begin opens it (k from 0 while k < limit, accumulators from init) and
// leaves the builder in the body; kloop_end steps k and closes it, leaving the
// builder after the loop with l->acc holding the final sums.
typedef struct {
  LLVMBasicBlockRef head, done;
  LLVMValueRef k, acc[32];
  int n;
} KLoop;

static void kloop_begin(Emit *e, KLoop *l, LLVMValueRef limit, const LLVMValueRef *init, int n) {
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(B(e));
  l->head = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, "k");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, "body");
  l->done = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, "done");
  l->n = n;
  LLVMBuildBr(B(e), l->head);
  LLVMPositionBuilderAtEnd(B(e), l->head);
  l->k = LLVMBuildPhi(B(e), e->i64, "k");
  LLVMValueRef zero = cg_i64(e, 0);
  LLVMAddIncoming(l->k, &zero, &pre, 1);
  for (int t = 0; t < n; t++) {
    l->acc[t] = LLVMBuildPhi(B(e), vec_t(e), "acc");
    LLVMAddIncoming(l->acc[t], (LLVMValueRef *)&init[t], &pre, 1);
  }
  LLVMBuildCondBr(B(e), LLVMBuildICmp(B(e), LLVMIntSLT, l->k, limit, ""), body, l->done);
  LLVMPositionBuilderAtEnd(B(e), body);
}

static void kloop_end(Emit *e, KLoop *l, int64_t step, LLVMValueRef *next) {
  LLVMValueRef k1 = add(e, l->k, cg_i64(e, step));
  LLVMBasicBlockRef from = LLVMGetInsertBlock(B(e));
  LLVMBuildBr(B(e), l->head);
  LLVMAddIncoming(l->k, &k1, &from, 1);
  for (int t = 0; t < l->n; t++) LLVMAddIncoming(l->acc[t], &next[t], &from, 1);
  LLVMPositionBuilderAtEnd(B(e), l->done);
}

// A name for a set of taps: their count and a hash of the offsets.
static void taps_suffix(const Gemm *g, char *buf, size_t size) {
  if (g->ntaps <= 1) {
    buf[0] = 0;
    return;
  }
  uint64_t h = 1469598103934665603ull;
  for (int t = 0; t < g->ntaps; t++) {
    h = (h ^ (uint64_t)g->aoff[t]) * 1099511628211ull;
    h = (h ^ (uint64_t)g->boff[t]) * 1099511628211ull;
  }
  snprintf(buf, size, "_t%d_%08llx", g->ntaps, (unsigned long long)(h & 0xffffffffu));
}

static LLVMValueRef tile_fn(Emit *outer, const Gemm *g, int mr, int nv, int lanes) {
  Codegen *cg = outer->cg;
  bool accumulate = g->accumulate;
  int ntaps = g->ntaps > 1 ? g->ntaps : 1;
  char name[96], taps[32];
  taps_suffix(g, taps, sizeof taps);
  char krows[48] = "";
  if (g->krow > 0) snprintf(krows, sizeof krows, "_k%lldof%lld", (long long)g->krow, (long long)g->kstride);
  snprintf(name, sizeof name, "fnn_gemm_%dx%d_%d%s%s%s", mr, nv, lanes, accumulate ? "_acc" : "", taps, krows);
  LLVMValueRef fn;
  LLVMBasicBlockRef saved;
  Emit ee, *e = &ee;
  if (!cg_shared_fn(outer, e, name, 9, 0x29, &fn, &saved)) return fn;  // a, b, c are pointers
  LLVMValueRef a = LLVMGetParam(fn, 0), ars = LLVMGetParam(fn, 1), acs = LLVMGetParam(fn, 2);
  LLVMValueRef bp = LLVMGetParam(fn, 3), ldb = LLVMGetParam(fn, 4), c = LLVMGetParam(fn, 5);
  LLVMValueRef ldc = LLVMGetParam(fn, 6), K = LLVMGetParam(fn, 7), rows = LLVMGetParam(fn, 8);

  enum { MAXACC = 32 };
  LLVMValueRef init[MAXACC], next[MAXACC];
  LLVMTypeRef vt = vec_t(e);
  LLVMValueRef rowp[8];
  for (int r = 0; r < mr; r++) {
    LLVMValueRef arow = cg_min_i64(e, cg_i64(e, r), LLVMBuildSub(B(e), rows, cg_i64(e, 1), ""));
    rowp[r] = gep(e, a, mul(e, arow, ars));
    for (int v = 0; v < nv; v++) {
      LLVMValueRef cp = gep(e, c, add(e, mul(e, cg_i64(e, r), ldc), cg_i64(e, 16 * v)));
      init[r * nv + v] = accumulate ? vload(e, cp, v == nv - 1 ? lanes : 16) : LLVMConstNull(vt);
    }
  }
  KLoop l, lq;
  kloop_begin(e, &l, K, init, mr * nv);
  LLVMValueRef k = l.k, *cur = l.acc;
  if (g->krow > 0) {  // the row's krow steps, from k = r*kstride
    kloop_begin(e, &lq, cg_i64(e, g->krow), l.acc, mr * nv);
    k = add(e, mul(e, l.k, cg_i64(e, g->kstride)), lq.k);
    cur = lq.acc;
  }
  LLVMValueRef bv[4];
  LLVMValueRef brow0 = gep(e, bp, mul(e, k, ldb));
  LLVMValueRef kcs = mul(e, k, acs);
  for (int t = 0; t < ntaps; t++) {
    LLVMValueRef brow = ntaps > 1 ? gep(e, brow0, cg_i64(e, g->boff[t])) : brow0;
    LLVMValueRef kat = ntaps > 1 ? add(e, kcs, cg_i64(e, g->aoff[t])) : kcs;
    for (int v = 0; v < nv; v++) bv[v] = vload(e, gep(e, brow, cg_i64(e, 16 * v)), v == nv - 1 ? lanes : 16);
    for (int r = 0; r < mr; r++) {
      LLVMValueRef av = splat(e, LLVMBuildLoad2(B(e), e->f32, gep(e, rowp[r], kat), ""));
      for (int v = 0; v < nv; v++) next[r * nv + v] = vfma(e, av, bv[v], cur[r * nv + v]);
    }
    cur = next;
  }
  if (g->krow > 0) {
    kloop_end(e, &lq, 1, next);
    kloop_end(e, &l, 1, lq.acc);
  } else {
    kloop_end(e, &l, 1, next);
  }
  LLVMValueRef *acc = l.acc;
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) {
      LLVMValueRef cp = gep(e, c, add(e, mul(e, cg_i64(e, r), ldc), cg_i64(e, 16 * v)));
      vstore(e, acc[r * nv + v], cp, v == nv - 1 ? lanes : 16);
    }
  LLVMBuildRetVoid(B(e));
  LLVMPositionBuilderAtEnd(cg->b, saved);
  return fn;
}

static void tile(Emit *e, const Gemm *g, LLVMValueRef i0, LLVMValueRef j0, int mr, int nv, int last_lanes) {
  LLVMValueRef fn = tile_fn(e, g, mr, nv, last_lanes);
  LLVMValueRef rows = g->m_valid ? LLVMBuildSub(B(e), g->m_valid, i0, "") : cg_i64(e, mr);
  LLVMValueRef args[9] = {gep(e, g->a, mul(e, i0, g->ars)), g->ars, g->acs, gep(e, g->b, j0), cg_i64(e, g->ldb),
                          gep(e, g->c, add(e, mul(e, i0, cg_i64(e, g->ldc)), j0)), cg_i64(e, g->ldc), g->K, rows};
  LLVMBuildCall2(B(e), LLVMGlobalGetValueType(fn), fn, args, 9, "");
}

// All column tiles of the rows i0 .. i0+mr.
static void row_block(Emit *e, const Gemm *g, LLVMValueRef i0, int mr) {
  int nv = g->nv, nr = 16 * nv;
  if (g->n_valid) {  // whole tiles only
    Loop lj = cg_loop_begin(e, cg_i64(e, 0), LLVMBuildSDiv(B(e), g->n_valid, cg_i64(e, nr), ""), "jt");
    tile(e, g, i0, mul(e, lj.i, cg_i64(e, nr)), mr, nv, 16);
    cg_loop_end(e, &lj);
    return;
  }
  int64_t full = g->N / nr, rest = g->N % nr;
  if (full > 0) {
    Loop lj = cg_loop_begin(e, cg_i64(e, 0), cg_i64(e, full), "jt");
    tile(e, g, i0, mul(e, lj.i, cg_i64(e, nr)), mr, nv, 16);
    cg_loop_end(e, &lj);
  }
  if (rest > 0) {
    int tv = (int)((rest + 15) / 16);
    int last = (int)(rest - 16 * (tv - 1));
    tile(e, g, i0, cg_i64(e, full * nr), mr, tv, last);
  }
}

void cg_gemm(Emit *e, const Gemm *g) {
  int mr = g->mr;
  if (g->m_valid) {
    // A runtime number of rows: whole tiles, the last one clamped.
    LLVMValueRef nb = LLVMBuildSDiv(B(e), add(e, g->m_valid, cg_i64(e, mr - 1)), cg_i64(e, mr), "");
    Loop li = cg_loop_begin(e, cg_i64(e, 0), nb, "it");
    row_block(e, g, mul(e, li.i, cg_i64(e, mr)), mr);
    cg_loop_end(e, &li);
    return;
  }
  int64_t full = g->M / mr, rest = g->M % mr;
  if (full > 0) {
    Loop li = cg_loop_begin(e, cg_i64(e, 0), cg_i64(e, full), "it");
    row_block(e, g, mul(e, li.i, cg_i64(e, mr)), mr);
    cg_loop_end(e, &li);
  }
  if (rest > 0) row_block(e, g, cg_i64(e, full * mr), (int)rest);
}

//
// The NT form: C[i, j] = sum_k A[i*lda + k] * B[j*ldb + k], both operands
// contiguous along k (a dense layer's x . W^T with W in PyTorch's [out, in]
// layout). Each of the mr x nr outputs of a tile keeps a <16 x float> partial
// sum over k; each step loads mr + nr vectors and issues mr*nr FMAs; a last
// k step, masked, takes what is left of K past whole vectors; the partial
// sums are reduced together at the end, in a tree over all 16.
//

// void fnn_gemm_nt_MRxNR(float *a, i64 lda, float *b, i64 ldb, float *c, i64 ldc, i64 K, i64 rows, i64 cols)
static LLVMValueRef tile_nt_fn(Emit *outer, int mr, int nr, bool accumulate) {
  Codegen *cg = outer->cg;
  char name[64];
  snprintf(name, sizeof name, "fnn_gemm_nt_%dx%d%s", mr, nr, accumulate ? "_acc" : "");
  LLVMValueRef fn;
  LLVMBasicBlockRef saved;
  Emit ee, *e = &ee;
  if (!cg_shared_fn(outer, e, name, 9, 0x15, &fn, &saved)) return fn;  // a, b, c are pointers
  LLVMValueRef a = LLVMGetParam(fn, 0), lda = LLVMGetParam(fn, 1), bp = LLVMGetParam(fn, 2);
  LLVMValueRef ldb = LLVMGetParam(fn, 3), c = LLVMGetParam(fn, 4), ldc = LLVMGetParam(fn, 5);
  LLVMValueRef K = LLVMGetParam(fn, 6), rows = LLVMGetParam(fn, 7), cols = LLVMGetParam(fn, 8);
  if (mr * nr != 16 || nr != 4) die("NT tile %dx%d: the sums' tree needs 4 x 4", mr, nr);
  LLVMTypeRef vt = vec_t(e);
  LLVMValueRef ap[4], bq[4];
  for (int r = 0; r < mr; r++)
    ap[r] = gep(e, a, mul(e, cg_min_i64(e, cg_i64(e, r), LLVMBuildSub(B(e), rows, cg_i64(e, 1), "")), lda));
  for (int q = 0; q < nr; q++)
    bq[q] = gep(e, bp, mul(e, cg_min_i64(e, cg_i64(e, q), LLVMBuildSub(B(e), cols, cg_i64(e, 1), "")), ldb));
  // k in whole vectors, then one masked step for the rest.
  LLVMValueRef kfull = LLVMBuildAnd(B(e), K, cg_i64(e, ~(int64_t)15), "");
  LLVMValueRef vz = LLVMConstNull(vt), init[16], next[16];
  for (int t = 0; t < mr * nr; t++) init[t] = vz;
  KLoop l;
  kloop_begin(e, &l, kfull, init, mr * nr);
  LLVMValueRef av[4], bv[4];
  for (int r = 0; r < mr; r++) av[r] = vload(e, gep(e, ap[r], l.k), 16);
  for (int q = 0; q < nr; q++) bv[q] = vload(e, gep(e, bq[q], l.k), 16);
  for (int r = 0; r < mr; r++)
    for (int q = 0; q < nr; q++) next[r * nr + q] = vfma(e, av[r], bv[q], l.acc[r * nr + q]);
  kloop_end(e, &l, 16, next);
  LLVMValueRef *acc = l.acc;
  // The tail, when K is not whole vectors: lanes k + l < K, from loads that
  // stay in bounds because they are masked.
  LLVMValueRef rem = LLVMBuildSub(B(e), K, kfull, "");
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(B(e));
  LLVMBasicBlockRef tail = LLVMAppendBasicBlockInContext(cg->ctx, e->fn, "tail");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, e->fn, "sums");
  LLVMBuildCondBr(B(e), LLVMBuildICmp(B(e), LLVMIntSGT, rem, cg_i64(e, 0), ""), tail, join);
  LLVMPositionBuilderAtEnd(B(e), tail);
  LLVMValueRef mask = cg_lanes_below(e, rem);
  for (int r = 0; r < mr; r++) av[r] = cg_vload_mask(e, gep(e, ap[r], kfull), mask);
  for (int q = 0; q < nr; q++) bv[q] = cg_vload_mask(e, gep(e, bq[q], kfull), mask);
  for (int r = 0; r < mr; r++)
    for (int q = 0; q < nr; q++) next[r * nr + q] = vfma(e, av[r], bv[q], acc[r * nr + q]);
  LLVMBuildBr(B(e), join);
  LLVMPositionBuilderAtEnd(B(e), join);
  LLVMValueRef v[16];
  for (int t = 0; t < 16; t++) {
    v[t] = LLVMBuildPhi(B(e), vt, "sum");
    LLVMAddIncoming(v[t], &acc[t], &pre, 1);
    LLVMAddIncoming(v[t], &next[t], &tail, 1);
  }
  // The 16 sums in a tree: at each level, pairs of vectors whose lanes come
  // in blocks of 2h, one accumulator's partial sums per block, become one
  // vector of blocks of h (a's block j's two halves added in its lower half,
  // b's in its upper half): 15 additions for all 16 sums, instead of four
  // shuffles and four additions for each. owner[l] follows which
  // accumulator's sum lane l holds.
  int owner[16][16], n = 16;
  for (int t = 0; t < 16; t++)
    for (int l = 0; l < 16; l++) owner[t][l] = t;
  for (int h = 8; h >= 1; h /= 2, n /= 2) {
    LLVMValueRef mlo[16], mhi[16];
    for (int l = 0; l < 16; l++) {
      int j = l / (2 * h), off = l % (2 * h), from_b = off >= h, src = 2 * h * j + off % h;
      mlo[l] = LLVMConstInt(e->i32, (unsigned)(src + 16 * from_b), 0);
      mhi[l] = LLVMConstInt(e->i32, (unsigned)(src + h + 16 * from_b), 0);
    }
    LLVMValueRef lo = LLVMConstVector(mlo, 16), hi = LLVMConstVector(mhi, 16);
    for (int m = 0; m < n / 2; m++) {
      LLVMValueRef x = LLVMBuildShuffleVector(B(e), v[2 * m], v[2 * m + 1], lo, "");
      LLVMValueRef y = LLVMBuildShuffleVector(B(e), v[2 * m], v[2 * m + 1], hi, "");
      int o[16];
      for (int l = 0; l < 16; l++) {
        int j = l / (2 * h), off = l % (2 * h);
        o[l] = owner[2 * m + (off >= h)][2 * h * j];
      }
      v[m] = cg_reassoc(LLVMBuildFAdd(B(e), x, y, ""));
      memcpy(owner[m], o, sizeof o);
    }
  }
  // Row r's four sums to C's row r.
  LLVMTypeRef v4 = LLVMVectorType(e->f32, 4);
  for (int r = 0; r < mr; r++) {
    LLVMValueRef pick[4];
    for (int q = 0; q < 4; q++) {
      int l = 0;
      while (owner[0][l] != r * nr + q) l++;
      pick[q] = LLVMConstInt(e->i32, (unsigned)l, 0);
    }
    LLVMValueRef row = LLVMBuildShuffleVector(B(e), v[0], LLVMGetUndef(vt), LLVMConstVector(pick, 4), "");
    LLVMValueRef cp = gep(e, c, mul(e, cg_i64(e, r), ldc));
    if (accumulate) {
      LLVMValueRef old = LLVMBuildLoad2(B(e), v4, cp, "");
      LLVMSetAlignment(old, 4);
      row = LLVMBuildFAdd(B(e), old, row, "");
    }
    LLVMValueRef st = LLVMBuildStore(B(e), row, cp);
    LLVMSetAlignment(st, 4);
  }
  LLVMBuildRetVoid(B(e));
  LLVMPositionBuilderAtEnd(cg->b, saved);
  return fn;
}

// Column tiles outer, row tiles inner: the NR rows of b a column tile reads
// stay in L1 while every row tile of a (in L2) passes them, so b (a weight
// matrix, often larger than L2) is read from memory once per call rather than
// once per row tile.
void cg_gemm_nt(Emit *e, const GemmNT *g) {
  enum { MR = 4, NR = 4 };
  LLVMValueRef n = g->n_valid ? g->n_valid : cg_i64(e, g->N);
  LLVMValueRef nrb = LLVMBuildSDiv(B(e), add(e, n, cg_i64(e, NR - 1)), cg_i64(e, NR), "");
  // Row tiles of MR (the last one clamped: C needs MR-aligned rows).
  LLVMValueRef m = g->m_valid ? g->m_valid : cg_i64(e, g->M);
  LLVMValueRef nb = LLVMBuildSDiv(B(e), add(e, m, cg_i64(e, MR - 1)), cg_i64(e, MR), "");
  LLVMValueRef fn = tile_nt_fn(e, MR, NR, g->accumulate);
  Loop lj = cg_loop_begin(e, cg_i64(e, 0), nrb, "jt");
  LLVMValueRef j0 = mul(e, lj.i, cg_i64(e, NR));
  // Columns past N compute clamped duplicates into padding columns of C.
  LLVMValueRef cols = LLVMBuildSub(B(e), n, j0, "");
  Loop li = cg_loop_begin(e, cg_i64(e, 0), nb, "it");
  LLVMValueRef i0 = mul(e, li.i, cg_i64(e, MR));
  LLVMValueRef rows = LLVMBuildSub(B(e), m, i0, "");
  LLVMValueRef args[9] = {gep(e, g->a, mul(e, i0, cg_i64(e, g->lda))), cg_i64(e, g->lda),
                          gep(e, g->b, mul(e, j0, cg_i64(e, g->ldb))), cg_i64(e, g->ldb),
                          gep(e, g->c, add(e, mul(e, i0, cg_i64(e, g->ldc)), j0)), cg_i64(e, g->ldc), g->K, rows, cols};
  LLVMBuildCall2(B(e), LLVMGlobalGetValueType(fn), fn, args, 9, "");
  cg_loop_end(e, &li);
  cg_loop_end(e, &lj);
}

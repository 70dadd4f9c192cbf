// wino.c: Winograd F(2x2, 3x3) convolution, for the forward, input gradient
// and weight gradient of stride-1 3x3 layers (fuse.c's wino_plan decides
// which).
//
// A 2x2 tile of outputs Y comes from the 4x4 tile d of the padded input under
// it and the 3x3 filter g as
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A          (.) elementwise
// with
//   B^T = | 1  0 -1  0 |   G = | 1    0    0   |   A^T = | 1  1  1  0 |
//         | 0  1  1  0 |       | 1/2  1/2  1/2 |         | 0  1 -1 -1 |
//         | 0 -1  1  0 |       | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |       | 0    0    1   |
// Summed over input channels k, the elementwise products become 16 GEMMs, one
// per position xi of the 4x4 transformed tile:
//   M[xi][t][j] = sum_k V[xi][k][t] * U[xi][k][j]
//   V[xi][k][t] = (B^T d_{k,t} B)[xi]    U[xi][k][j] = (G g_{j,k} G^T)[xi]
// for tiles t and output channels j: 16 multiply-adds per 2x2 outputs and
// channel pair instead of 36. The micro-kernel (gemm.c) vectorizes along j,
// so every lane does useful work whatever the width of the plane; the output
// transform turns each tile's channel vectors back into rows of planes with a
// 16x16 transposition (in registers, in a function of its own). The
// transforms only add and subtract
// (and halve, for G), so they are exact but for rounding.
//
// The weight gradient is the same product's: with dm = A dY A^T (4x4 from
// each 2x2 tile of the output gradient),
//   dU[xi][k][j] = sum_{images, t} V[xi][k][t] * dm[xi][t][j]
//   dg[j][k] = G^T dU[.][k][j] G
// so the forward's input transform, a transform of the output gradient (its
// rows transposed into channel vectors) and 16 GEMMs that sum over the tiles
// of every image of a task, then one filter-sized transform per task.
#include "fnnc.h"

#include <string.h>

static LLVMBuilderRef B(Emit *e) { return e->cg->b; }
static LLVMValueRef I(Emit *e, int64_t c) { return cg_i64(e, c); }
static LLVMValueRef ADD(Emit *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(B(e), a, b, ""); }
static LLVMValueRef MUL(Emit *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWMul(B(e), a, b, ""); }
static LLVMValueRef fadd(Emit *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(B(e), a, b, ""); }
static LLVMValueRef fsub(Emit *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(B(e), a, b, ""); }
static LLVMValueRef half(Emit *e, LLVMValueRef a) { return LLVMBuildFMul(B(e), a, cg_f32(e, 0.5), ""); }
// base + off floats, off a constant plus an i64 value (or NULL).
static LLVMValueRef at(Emit *e, LLVMValueRef base, int64_t off, LLVMValueRef var) {
  LLVMValueRef o = var ? ADD(e, var, I(e, off)) : I(e, off);
  return cg_gep(e, e->f32, base, o);
}
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Tiles per chunk of a row: the 4 columns of 7 tiles, 2 apart, span 16.
enum { CHUNK = 7 };

// The lanes idx[0..n) of the 16-lane vector v (idx < 0: lane 0, unused).
static LLVMValueRef lanes(Emit *e, LLVMValueRef v, int n, const int *idx) {
  LLVMValueRef m[16];
  for (int i = 0; i < n; i++) m[i] = LLVMConstInt(e->i32, idx[i] < 0 ? 0 : (unsigned)idx[i], 0);
  return LLVMBuildShuffleVector(B(e), v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(m, (unsigned)n), "");
}

// U[xi][k][j] = (G g G^T)[xi] for every channel pair, g the 3x3 taps of the
// filter from input channel k to output channel j:
//   t = G g   (rows:    t0 = g0, t1 = (g0 + g1 + g2)/2, t2 = (g0 - g1 + g2)/2, t3 = g2)
//   U = t G^T (columns: the same combinations of t's three columns)
static void filter_transform(Emit *e, const WinoPlan *p, LLVMValueRef w, LLVMValueRef U) {
  // 16 output channels at a time: lane l reads its taps at l*wsn further on
  // (a gather: the taps of one channel pair are what is contiguous).
  LLVMTypeRef vt = LLVMVectorType(e->f32, 16), pv = LLVMVectorType(e->ptrty, 16), types[2] = {vt, pv};
  unsigned gid = LLVMLookupIntrinsicID("llvm.masked.gather", 18);
  LLVMValueRef gather = LLVMGetIntrinsicDeclaration(e->cg->mod, gid, types, 2);
  LLVMTypeRef gty = LLVMIntrinsicGetType(e->cg->ctx, gid, types, 2);
  LLVMValueRef lane_off[16], ones[16];
  for (int l = 0; l < 16; l++) {
    lane_off[l] = I(e, l * p->wsn);
    ones[l] = LLVMConstInt(LLVMInt1TypeInContext(e->cg->ctx), 1, 0);
  }
  LLVMValueRef offs = LLVMConstVector(lane_off, 16), all = LLVMConstVector(ones, 16);
  Loop lk = cg_loop_begin(e, I(e, 0), I(e, p->K), "k");
  Loop lj = cg_loop_begin(e, I(e, 0), I(e, p->N / 16), "jb");
  LLVMValueRef j0 = MUL(e, lj.i, I(e, 16));
  LLVMValueRef base = cg_gep(e, e->f32, w, ADD(e, MUL(e, lk.i, I(e, p->wsk)), MUL(e, j0, I(e, p->wsn))));
  LLVMValueRef ptrs = LLVMBuildGEP2(B(e), e->f32, base, &offs, 1, "");
  LLVMValueRef g[3][3], t[4][3];
  for (int r = 0; r < 3; r++)
    for (int c = 0; c < 3; c++) {
      int tap = p->flip ? (2 - r) * 3 + (2 - c) : r * 3 + c;
      LLVMValueRef tp = LLVMBuildGEP2(B(e), e->f32, ptrs, (LLVMValueRef[]){I(e, tap)}, 1, "");
      LLVMValueRef args[4] = {tp, LLVMConstInt(e->i32, 4, 0), all, LLVMGetUndef(vt)};
      g[r][c] = LLVMBuildCall2(B(e), gty, gather, args, 4, "");
    }
  LLVMValueRef halves[16];
  for (int l = 0; l < 16; l++) halves[l] = cg_f32(e, 0.5);
  LLVMValueRef h = LLVMConstVector(halves, 16);
  for (int c = 0; c < 3; c++) {
    LLVMValueRef s02 = fadd(e, g[0][c], g[2][c]);
    t[0][c] = g[0][c];
    t[1][c] = LLVMBuildFMul(B(e), fadd(e, s02, g[1][c]), h, "");
    t[2][c] = LLVMBuildFMul(B(e), fsub(e, s02, g[1][c]), h, "");
    t[3][c] = g[2][c];
  }
  LLVMValueRef kj = ADD(e, MUL(e, lk.i, I(e, p->N)), j0);
  for (int r = 0; r < 4; r++) {
    LLVMValueRef s02 = fadd(e, t[r][0], t[r][2]);
    LLVMValueRef u[4] = {t[r][0], LLVMBuildFMul(B(e), fadd(e, s02, t[r][1]), h, ""),
                         LLVMBuildFMul(B(e), fsub(e, s02, t[r][1]), h, ""), t[r][2]};
    for (int c = 0; c < 4; c++) cg_vstore(e, u[c], at(e, U, (r * 4 + c) * p->K * p->N, kj), 16, 16);
  }
  cg_loop_end_scalar(e, &lj);
  cg_loop_end_scalar(e, &lk);
}

// V[xi][k][t] = (B^T d B)[xi] for every input channel and tile: per channel
// and row of tiles, the four input rows under it (16 columns at a time, one
// vector each) combine into the rows of B^T d, and lane shuffles pick each
// tile's four columns of those for the columns of (B^T d) B, 7 tiles a vector.
static void input_transform(Emit *e, const WinoPlan *p, LLVMValueRef pad, LLVMValueRef V) {
  static const int ev[8] = {0, 2, 4, 6, 8, 10, 12, -1}, ev1[8] = {2, 4, 6, 8, 10, 12, 14, -1};
  static const int od[8] = {1, 3, 5, 7, 9, 11, 13, -1}, od1[8] = {3, 5, 7, 9, 11, 13, 15, -1};
  Loop lk = cg_loop_begin(e, I(e, 0), I(e, p->K), "k");
  Loop lt = cg_loop_begin(e, I(e, 0), I(e, p->TH), "ty");
  LLVMValueRef row0 = MUL(e, ADD(e, MUL(e, lk.i, I(e, p->Hp)), MUL(e, lt.i, I(e, 2))), I(e, p->Wp));
  LLVMValueRef vrow = ADD(e, MUL(e, lk.i, I(e, p->T)), MUL(e, lt.i, I(e, p->TW)));
  for (int64_t ch = 0; ch * CHUNK < p->TW; ch++) {
    int n = (int)min64(CHUNK, p->TW - ch * CHUNK), valid = (int)min64(16, p->Wp - 2 * CHUNK * ch);
    LLVMValueRef d[4], r[4];
    for (int i = 0; i < 4; i++) d[i] = cg_vload(e, at(e, pad, i * p->Wp + 2 * CHUNK * ch, row0), 16, valid);
    r[0] = fsub(e, d[0], d[2]);
    r[1] = fadd(e, d[1], d[2]);
    r[2] = fsub(e, d[2], d[1]);
    r[3] = fsub(e, d[1], d[3]);
    for (int i = 0; i < 4; i++) {
      LLVMValueRef c0 = lanes(e, r[i], 8, ev), c2 = lanes(e, r[i], 8, ev1);
      LLVMValueRef c1 = lanes(e, r[i], 8, od), c3 = lanes(e, r[i], 8, od1);
      LLVMValueRef v[4] = {fsub(e, c0, c2), fadd(e, c1, c2), fsub(e, c2, c1), fsub(e, c1, c3)};
      for (int j = 0; j < 4; j++)
        cg_vstore(e, v[j], at(e, V, (i * 4 + j) * p->K * p->T + ch * CHUNK, vrow), 8, n);
    }
  }
  cg_loop_end_scalar(e, &lt);
  cg_loop_end_scalar(e, &lk);
}

// The 16 GEMMs M[xi] = V[xi]^T . U[xi]: [T, K] . [K, N], rows of tiles,
// columns of output channels.
static void gemms(Emit *e, const WinoPlan *p) {
  Loop lx = cg_loop_begin(e, I(e, 0), I(e, 16), "xi");
  Gemm g = {.M = p->T, .N = p->N, .K = I(e, p->K), .ars = I(e, 1), .acs = I(e, p->T), .ldb = p->N, .ldc = p->N,
            .mr = p->mr, .nv = p->nv};
  g.a = at(e, e->scratch, p->at_v, MUL(e, lx.i, I(e, p->K * p->T)));
  g.b = at(e, e->scratch, p->at_u, MUL(e, lx.i, I(e, p->K * p->N)));
  g.c = at(e, e->scratch, p->at_m, MUL(e, lx.i, I(e, p->T * p->N)));
  cg_gemm(e, &g);
  cg_loop_end_scalar(e, &lx);
}

// v[0..16) := its transpose, lane l of v[r] to lane r of v[l]: at each of four
// levels, swapping bit b of the row with bit b of the lane.
static void transpose16(Emit *e, LLVMValueRef *v) {
  for (int b = 8; b >= 1; b /= 2) {
    LLVMValueRef mlo[16], mhi[16];
    for (int l = 0; l < 16; l++) {
      mlo[l] = LLVMConstInt(e->i32, (unsigned)((l & b) ? 16 + l - b : l), 0);
      mhi[l] = LLVMConstInt(e->i32, (unsigned)((l & b) ? 16 + l : l + b), 0);
    }
    LLVMValueRef lo = LLVMConstVector(mlo, 16), hi = LLVMConstVector(mhi, 16);
    for (int r = 0; r < 16; r++) {
      if (r & b) continue;
      LLVMValueRef x = LLVMBuildShuffleVector(B(e), v[r], v[r + b], lo, "");
      LLVMValueRef y = LLVMBuildShuffleVector(B(e), v[r], v[r + b], hi, "");
      v[r] = x, v[r + b] = y;
    }
  }
}

// n floats on the stack, 64-byte aligned; called at the start of a shared
// function's body, in its entry block.
static LLVMValueRef stack_block(Emit *e, int64_t n) {
  LLVMValueRef a = LLVMBuildAlloca(B(e), LLVMArrayType(e->f32, (unsigned)n), "tb");
  LLVMSetAlignment(a, 64);
  return a;
}

// The two transpositions, each a shared function (its 64 shuffles cost LLVM's
// instruction selection about 10 ms, so they are compiled once):
//   void fnn_transpose16_rows(float *v, float *dst, i64 ld, i64 valid)
//     row r of the transpose of v (16 vectors of 16) to dst + r*ld, its first
//     `valid` lanes;
//   void fnn_transpose16_cols(float *src, i64 ld, i64 valid, float *v)
//     the rows src + r*ld (`valid` lanes, zeros after) transposed into v.
static void call_transpose(Emit *e, bool rows, LLVMValueRef v, LLVMValueRef mem, LLVMValueRef ld, LLVMValueRef valid) {
  const char *name = rows ? "fnn_transpose16_rows" : "fnn_transpose16_cols";
  LLVMValueRef fn;
  LLVMBasicBlockRef saved;
  Emit inner, *f = &inner;
  if (cg_shared_fn(e, f, name, 4, rows ? 0x3 : 0x9, &fn, &saved)) {
    LLVMValueRef vp = LLVMGetParam(fn, rows ? 0 : 3), mp = LLVMGetParam(fn, rows ? 1 : 0);
    LLVMValueRef fld = LLVMGetParam(fn, rows ? 2 : 1), fvalid = LLVMGetParam(fn, rows ? 3 : 2);
    LLVMValueRef mask = cg_lanes_below(f, fvalid), x[16];
    for (int r = 0; r < 16; r++) {
      LLVMValueRef p = cg_gep(f, f->f32, mp, MUL(f, I(f, r), fld));
      x[r] = rows ? cg_vload(f, cg_gep(f, f->f32, vp, I(f, 16 * r)), 16, 16) : cg_vload_mask(f, p, mask);
    }
    transpose16(f, x);
    for (int r = 0; r < 16; r++) {
      if (rows)
        cg_vstore_mask(f, x[r], cg_gep(f, f->f32, mp, MUL(f, I(f, r), fld)), mask);
      else
        cg_vstore(f, x[r], cg_gep(f, f->f32, vp, I(f, 16 * r)), 16, 16);
    }
    LLVMBuildRetVoid(B(f));
    LLVMPositionBuilderAtEnd(e->cg->b, saved);
  }
  LLVMValueRef args[4] = {v, mem, ld, valid};
  if (!rows) args[0] = mem, args[1] = ld, args[2] = valid, args[3] = v;
  LLVMBuildCall2(B(e), LLVMGlobalGetValueType(fn), fn, args, 4, "");
}

// plane[j, 2ty + i, 2tx + c] = (A^T m A)[i][c], m the tile's 4x4 of M, per row
// of tiles and 16 output channels (one vector): for each tile of a chunk,
//   r0 = m0 + m1 + m2, r1 = m1 - m2 - m3   (rows of m),   then the same of
//   r's columns, into tb[i][2tx + c]; tb[i]'s 14 column vectors, transposed,
//   are output row i of 16 channels.
static void output_transform(Emit *e, const WinoPlan *p, LLVMValueRef M, LLVMValueRef plane) {
  LLVMValueRef tb = stack_block(e, 512);
  cg_zero(e, tb, I(e, 512));  // (its vectors past a chunk's are read, not stored)
  Loop lt = cg_loop_begin(e, I(e, 0), I(e, p->TH), "ty");
  Loop lo = cg_loop_begin(e, I(e, 0), I(e, p->N / 16), "jb");
  LLVMValueRef j0 = MUL(e, lo.i, I(e, 16)), t0 = MUL(e, lt.i, I(e, p->TW));
  for (int64_t ch = 0; ch * CHUNK < p->TW; ch++) {
    int n = (int)min64(CHUNK, p->TW - ch * CHUNK);
    Loop lx = cg_loop_begin(e, I(e, 0), I(e, n), "tx");
    LLVMValueRef m[16], r[2][4];
    LLVMValueRef tj = ADD(e, MUL(e, ADD(e, t0, ADD(e, lx.i, I(e, ch * CHUNK))), I(e, p->N)), j0);
    for (int x = 0; x < 16; x++) m[x] = cg_vload(e, at(e, M, x * p->T * p->N, tj), 16, 16);
    for (int c = 0; c < 4; c++) {
      LLVMValueRef s12 = fadd(e, m[4 + c], m[8 + c]), d12 = fsub(e, m[4 + c], m[8 + c]);
      r[0][c] = fadd(e, m[c], s12);
      r[1][c] = fsub(e, d12, m[12 + c]);
    }
    LLVMValueRef col = MUL(e, lx.i, I(e, 32));  // tb[i][2tx]
    for (int i = 0; i < 2; i++) {
      LLVMValueRef s12 = fadd(e, r[i][1], r[i][2]), d12 = fsub(e, r[i][1], r[i][2]);
      cg_vstore(e, fadd(e, r[i][0], s12), at(e, tb, 256 * i, col), 16, 16);
      cg_vstore(e, fsub(e, d12, r[i][3]), at(e, tb, 256 * i + 16, col), 16, 16);
    }
    cg_loop_end_scalar(e, &lx);
    // (tb's vectors past the chunk's 2n hold zeros or older values: they
    // become the columns past 2n, which are not stored)
    int valid = (int)min64(2 * n, p->OW - 2 * CHUNK * ch);
    for (int i = 0; i < 2; i++) {
      LLVMValueRef oh = ADD(e, MUL(e, lt.i, I(e, 2)), I(e, i));
      LLVMBasicBlockRef done = NULL;
      if (i == 1 && p->OH % 2) {  // the last row of tiles has one row of outputs
        LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, "row1");
        done = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, "row1_done");
        LLVMBuildCondBr(B(e), LLVMBuildICmp(B(e), LLVMIntSLT, oh, I(e, p->OH), ""), yes, done);
        LLVMPositionBuilderAtEnd(B(e), yes);
      }
      LLVMValueRef row = ADD(e, MUL(e, j0, I(e, p->OH)), oh);
      call_transpose(e, true, at(e, tb, 256 * i, NULL), at(e, plane, 2 * CHUNK * ch, MUL(e, row, I(e, p->OW))),
                     I(e, p->OH * p->OW), I(e, valid));
      if (done) {
        LLVMBuildBr(B(e), done);
        LLVMPositionBuilderAtEnd(B(e), done);
      }
    }
  }
  cg_loop_end_scalar(e, &lo);
  cg_loop_end_scalar(e, &lt);
}

// dm[xi][t][j] = (A dY A^T)[xi] for this image's output gradient g
// ([N, OH, OW]) per row of tiles and 16 channels: the two rows of outputs
// under the tiles (16 channels), transposed into tb[i] (one vector of
// channels per column; zeros past the plane), then for each tile
//   rows: a = (y0, y0 + y1, y0 - y1, -y1),   then the same of a's columns.
static void grad_transform(Emit *e, const WinoPlan *p, LLVMValueRef g, LLVMValueRef Z) {
  LLVMValueRef tb = stack_block(e, 512), zeros = stack_block(e, 16);
  cg_zero(e, zeros, I(e, 16));
  Loop lt = cg_loop_begin(e, I(e, 0), I(e, p->TH), "ty");
  Loop lo = cg_loop_begin(e, I(e, 0), I(e, p->N / 16), "jb");
  LLVMValueRef j0 = MUL(e, lo.i, I(e, 16)), t0 = MUL(e, lt.i, I(e, p->TW));
  for (int64_t ch = 0; ch * CHUNK < p->TW; ch++) {
    int n = (int)min64(CHUNK, p->TW - ch * CHUNK), valid = (int)min64(16, p->OW - 2 * CHUNK * ch);
    for (int i = 0; i < 2; i++) {
      LLVMValueRef oh = ADD(e, MUL(e, lt.i, I(e, 2)), I(e, i));
      LLVMValueRef row = ADD(e, MUL(e, j0, I(e, p->OH)), oh), ld = I(e, p->OH * p->OW);
      LLVMValueRef src = at(e, g, 2 * CHUNK * ch, MUL(e, row, I(e, p->OW)));
      if (i == 1 && p->OH % 2) {  // past the plane's last row: 16 rows of zeros
        LLVMValueRef inside = LLVMBuildICmp(B(e), LLVMIntSLT, oh, I(e, p->OH), "");
        src = LLVMBuildSelect(B(e), inside, src, zeros, "");
        ld = LLVMBuildSelect(B(e), inside, ld, I(e, 0), "");
      }
      call_transpose(e, false, at(e, tb, 256 * i, NULL), src, ld, I(e, valid));
    }
    Loop lx = cg_loop_begin(e, I(e, 0), I(e, n), "tx");
    LLVMValueRef col = MUL(e, lx.i, I(e, 32)), a[4][2];
    for (int c = 0; c < 2; c++) {
      LLVMValueRef y0 = cg_vload(e, at(e, tb, 16 * c, col), 16, 16);
      LLVMValueRef y1 = cg_vload(e, at(e, tb, 256 + 16 * c, col), 16, 16);
      a[0][c] = y0;
      a[1][c] = fadd(e, y0, y1);
      a[2][c] = fsub(e, y0, y1);
      a[3][c] = LLVMBuildFNeg(B(e), y1, "");
    }
    LLVMValueRef tj = ADD(e, MUL(e, ADD(e, t0, ADD(e, lx.i, I(e, ch * CHUNK))), I(e, p->N)), j0);
    for (int r = 0; r < 4; r++) {
      LLVMValueRef z[4] = {a[r][0], fadd(e, a[r][0], a[r][1]), fsub(e, a[r][0], a[r][1]),
                           LLVMBuildFNeg(B(e), a[r][1], "")};
      for (int c = 0; c < 4; c++) cg_vstore(e, z[c], at(e, Z, (r * 4 + c) * p->T * p->N, tj), 16, 16);
    }
    cg_loop_end_scalar(e, &lx);
  }
  cg_loop_end_scalar(e, &lo);
  cg_loop_end_scalar(e, &lt);
}

// out[j][k][3x3] = G^T dU[.][k][j] G, G^T's rows combining 4 into 3:
//   s0 = x0 + (x1 + x2)/2,  s1 = (x1 - x2)/2,  s2 = (x1 + x2)/2 + x3
static void dw_filter_transform(Emit *e, const WinoPlan *p, LLVMValueRef dU, LLVMValueRef out) {
  Loop lk = cg_loop_begin(e, I(e, 0), I(e, p->K), "k");
  Loop lj = cg_loop_begin(e, I(e, 0), I(e, p->N), "j");
  LLVMValueRef kj = ADD(e, MUL(e, lk.i, I(e, p->N)), lj.i), x[4][4], s[3][4];
  for (int xi = 0; xi < 16; xi++)
    x[xi / 4][xi % 4] = LLVMBuildLoad2(B(e), e->f32, at(e, dU, xi * p->K * p->N, kj), "");
  for (int c = 0; c < 4; c++) {
    LLVMValueRef h = half(e, fadd(e, x[1][c], x[2][c]));
    s[0][c] = fadd(e, x[0][c], h);
    s[1][c] = half(e, fsub(e, x[1][c], x[2][c]));
    s[2][c] = fadd(e, h, x[3][c]);
  }
  LLVMValueRef base = MUL(e, ADD(e, MUL(e, lj.i, I(e, p->K)), lk.i), I(e, 9));
  for (int r = 0; r < 3; r++) {
    LLVMValueRef h = half(e, fadd(e, s[r][1], s[r][2]));
    LLVMValueRef d[3] = {fadd(e, s[r][0], h), half(e, fsub(e, s[r][1], s[r][2])), fadd(e, h, s[r][3])};
    for (int c = 0; c < 3; c++)
      LLVMBuildStore(B(e), d[c], cg_gep(e, e->f32, out, ADD(e, base, I(e, r * 3 + c))));
  }
  cg_loop_end_scalar(e, &lj);
  cg_loop_end_scalar(e, &lk);
}

// Each transform is a shared function per shape, explicit vector code that
// skips O3 (backend_mark_vector), from one buffer to another, named by the
// numbers its code depends on (nf of them, f):
//   void fnn_wino_WHAT_F0_F1_...(float *src, float *dst)
typedef void Body(Emit *e, const WinoPlan *p, LLVMValueRef src, LLVMValueRef dst);
static void call_shared(Emit *e, const char *what, const int64_t *f, int nf, const WinoPlan *p, Body *body,
                        LLVMValueRef src, LLVMValueRef dst) {
  char name[160];
  int len = snprintf(name, sizeof name, "fnn_wino_%s", what);
  for (int i = 0; i < nf && len < (int)sizeof name; i++)
    len += snprintf(name + len, sizeof name - (size_t)len, "_%lld", (long long)f[i]);
  LLVMValueRef fn;
  LLVMBasicBlockRef saved;
  Emit inner;
  if (cg_shared_fn(e, &inner, name, 2, 0x3, &fn, &saved)) {
    inner.scratch = NULL;
    body(&inner, p, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1));
    LLVMBuildRetVoid(B(&inner));
    LLVMPositionBuilderAtEnd(e->cg->b, saved);
  }
  LLVMValueRef args[2] = {src, dst};
  LLVMBuildCall2(B(e), LLVMGlobalGetValueType(fn), fn, args, 2, "");
}

static LLVMValueRef scratch_at(Emit *e, int64_t off) { return at(e, e->scratch, off, NULL); }

void cg_wino_filter(Emit *e, const WinoPlan *p, LLVMValueRef w) {
  const int64_t f[] = {p->K, p->N, p->wsk, p->wsn, p->flip};
  call_shared(e, "filter", f, 5, p, filter_transform, w, scratch_at(e, p->at_u));
}

static void call_input_transform(Emit *e, const WinoPlan *p) {
  const int64_t f[] = {p->K, p->TH, p->TW, p->Hp, p->Wp};
  call_shared(e, "in", f, 5, p, input_transform, scratch_at(e, p->at_pad), scratch_at(e, p->at_v));
}

void cg_wino_image(Emit *e, const WinoPlan *p) {
  call_input_transform(e, p);
  gemms(e, p);
  const int64_t f[] = {p->N, p->OH, p->OW};
  call_shared(e, "out", f, 3, p, output_transform, scratch_at(e, p->at_m), scratch_at(e, p->at_plane));
}

void cg_wino_dw_image(Emit *e, const WinoPlan *p, LLVMValueRef g) {
  call_input_transform(e, p);
  const int64_t f[] = {p->N, p->OH, p->OW};
  call_shared(e, "grad", f, 3, p, grad_transform, g, scratch_at(e, p->at_m));
  // dU[xi] += V[xi] . dm[xi]: [K, T] . [T, N]
  int mr, nv;
  gemm_tile_static(p->K, p->N, &mr, &nv);
  Loop lx = cg_loop_begin(e, I(e, 0), I(e, 16), "xi");
  Gemm gm = {.M = p->K, .N = p->N, .K = I(e, p->T), .ars = I(e, p->T), .acs = I(e, 1), .ldb = p->N, .ldc = p->N,
             .accumulate = true, .mr = mr, .nv = nv};
  gm.a = at(e, e->scratch, p->at_v, MUL(e, lx.i, I(e, p->K * p->T)));
  gm.b = at(e, e->scratch, p->at_m, MUL(e, lx.i, I(e, p->T * p->N)));
  gm.c = at(e, e->scratch, p->at_u, MUL(e, lx.i, I(e, p->K * p->N)));
  cg_gemm(e, &gm);
  cg_loop_end_scalar(e, &lx);
}

void cg_wino_dw_filter(Emit *e, const WinoPlan *p, LLVMValueRef out) {
  const int64_t f[] = {p->K, p->N};
  call_shared(e, "dw_filter", f, 2, p, dw_filter_transform, scratch_at(e, p->at_u), out);
}

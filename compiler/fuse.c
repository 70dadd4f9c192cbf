// fuse.c: the fusion pass. It decides which IR values share a kernel, which
// values are written to memory, and where they live in the workspace. The op
// table only declares properties (elementwise, gather, anchor); every decision
// is made here.
//
// Rules, applied to values in topological order:
//   - leaves are buffers; views alias their input's buffer;
//   - scalar arithmetic on leaves is inlined wherever it is read;
//   - a unary op read only by maxpools (and their window indices), on a
//     buffer no kernel of this program computes, is inlined into the pool's
//     window loads (maxpool(relu(x)) reads relu(x) on the fly); after a kernel
//     it joins that kernel (a convolution's epilogue);
//   - an anchor (matmul, convolutions, softmax, ...) starts a kernel; xent joins
//     the softmax that feeds it;
//   - an elementwise value joins the kernel of a producer with its iteration
//     shape (an elementwise loop, or an anchor's epilogue); siblings of the same
//     shape join the latest kernel; two such kernels are merged when the
//     dependences allow it;
//   - a sum joins the elementwise loop that produces its input;
//   - forward and backward values stay apart, except that the loss kernel
//     (softmax) takes the gradient of the loss, so softmax, cross-entropy and
//     (softmax - onehot)/n are one kernel;
//   - optimizer updates get one kernel per parameter;
//   - a loop is a kernel of its own (its loopouts are its outputs); its body is
//     fused as a program of its own, run once per step, whose workspace and
//     step buffers follow the outer values in the workspace.
#include "fnnc.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  Graph *g;
  Program *p;
  Vec *consumers;  // by value id: Value* readers (live)
} Fuser;

static Kernel *kernel_of(Fuser *f, Value *v) {
  return v->group >= 0 ? f->p->kernels.data[v->group] : NULL;
}

static Kernel *new_kernel(Fuser *f, KernelKind kind, Shape s, Value *anchor) {
  Kernel *k = arena_alloc(sizeof(Kernel));
  k->id = f->p->kernels.len;
  k->kind = kind;
  k->shape = s;
  k->anchor = anchor;
  vec_push(&f->p->kernels, k);
  return k;
}

static void add_member(Kernel *k, Value *v) {
  v->group = k->id;
  vec_push(&k->members, v);
}

static bool is_buffer(Value *v) { return (op_info[v->op].flags & (F_LEAF | F_VIEW)) || v->group == GROUP_INLINE; }

// A convolution's weight gradient over a batch splits the images between the
// threads, each summing a whole filter bank over its images (DW_ROWS per task,
// added in task order): split by output channels instead, every thread would
// read every image's activations and gradients, which the other thread wrote,
// through the caches of both cores. The bank is small; the images are not.
static bool dw_by_images(Value *a) { return a->op == OP_conv2d_dw && shape_batched(a->in[0]->shape); }

static bool takes_epilogue(Value *a) {
  switch (a->op) {
  case OP_matmul:
  case OP_conv2d:
  case OP_conv2d_dx:
  case OP_conv2d_dw:
  case OP_maxpool_dx:
  case OP_softmax: return true;
  default: return false;
  }
}

static Phase kernel_phase(Kernel *k) {
  return k->anchor ? k->anchor->phase : ((Value *)k->members.data[0])->phase;
}

// May v run inside k, reading its in-kernel inputs at the same index?
static bool shape_fits(Kernel *k, Value *v) {
  Shape s = v->op == OP_sum || v->op == OP_store ? v->in[0]->shape : v->shape;
  if (v->op == OP_store && v->shape.rank == 0 && k->shape.rank != 0) return false;
  return shape_eq(s, k->shape);
}

static bool phase_fits(Kernel *k, Value *v) {
  Phase kp = kernel_phase(k);
  if (kp == v->phase) return true;
  if (v->op == OP_store) return true;
  return k->anchor && k->anchor->op == OP_softmax && v->phase == PH_BWD;
}

// Is v, read by a member of k at the same index, computed in the same iteration?
static bool readable_in(Kernel *k, Value *u) {
  if (u->group != k->id || u == k->post || u == k->post_arg) return false;
  if (u->op == OP_sum || u->op == OP_xent || u->op == OP_store) return false;
  return true;
}

static bool can_join(Fuser *f, Kernel *k, Value *v) {
  if (k->kind == K_LOOP) return false;
  if (k->kind == K_ANCHOR && !takes_epilogue(k->anchor)) return false;
  if (k->kind == K_ANCHOR && dw_by_images(k->anchor)) return false;  // complete only after its tasks
  if (!shape_fits(k, v) || !phase_fits(k, v)) return false;
  if (k->kind == K_ANCHOR && v->op == OP_sum && k->anchor->op != OP_softmax && k->anchor->op != OP_conv2d_dx &&
      k->anchor->op != OP_maxpool_dx)
    return false;
  for (int i = 0; i < v->nin; i++) {
    Value *u = v->in[i];
    if (is_buffer(u)) continue;
    if (u->group == k->id) {
      // Gathers read other positions: only finished buffers.
      if ((op_info[v->op].flags & F_GATHER) || !readable_in(k, u)) return false;
      if (u->shape.rank != 0 && !shape_eq(u->shape, k->shape)) return false;
    } else if (u->group > k->id) {
      return false;
    }
  }
  return true;
}

// Moves every member of `from` into `to` (from is left empty).
static void move_members(Kernel *from, Kernel *to) {
  Vec merged = {0};
  // Keep topological order: interleave by value id.
  int i = 0, j = 0;
  while (i < to->members.len || j < from->members.len) {
    Value *a = i < to->members.len ? to->members.data[i] : NULL;
    Value *b = j < from->members.len ? from->members.data[j] : NULL;
    if (b && (!a || b->id < a->id)) {
      vec_push(&merged, b);
      j++;
    } else {
      vec_push(&merged, a);
      i++;
    }
  }
  for (int t = 0; t < from->members.len; t++) ((Value *)from->members.data[t])->group = to->id;
  to->members = merged;
  from->members.len = 0;
}

// Can the elementwise kernel `a` (earlier) run as part of `b` (later)? Nothing
// outside a and b may read a's values, a's sums may not feed b, and a's members
// must fit b's iteration.
static bool can_merge_into_later(Fuser *f, Kernel *a, Kernel *b) {
  if (a->kind != K_EW || a == b || !a->members.len || b->kind == K_LOOP) return false;
  if (!shape_eq(a->shape, b->shape) || kernel_phase(a) != kernel_phase(b)) return false;
  if (b->kind == K_ANCHOR && !takes_epilogue(b->anchor)) return false;
  for (int i = 0; i < a->members.len; i++) {
    Value *m = a->members.data[i];
    if (m->op == OP_sum && b->kind == K_ANCHOR) return false;
    Vec *c = &f->consumers[m->id];
    for (int j = 0; j < c->len; j++) {
      Value *u = c->data[j];
      if (u->group == a->id) continue;
      // (An anchor reads whole buffers: its operands must be finished first.)
      if (u->group == b->id && m->op != OP_sum && !(op_info[u->op].flags & (F_GATHER | F_ANCHOR))) continue;
      if (u->group < 0 && u->group != GROUP_INLINE) continue;  // not placed yet: will be later
      return false;
    }
  }
  // b's members may not be read by a (a runs inside b's loop, in order).
  return true;
}

// Can the elementwise kernel `b` (later) run inside `a` (earlier)? Every input
// of b's members must be ready before a.
static bool can_merge_into_earlier(Fuser *f, Kernel *b, Kernel *a) {
  if (b->kind != K_EW || a == b || !b->members.len || a->kind == K_LOOP) return false;
  if (!shape_eq(a->shape, b->shape)) return false;
  if (a->kind == K_ANCHOR && !takes_epilogue(a->anchor)) return false;
  for (int i = 0; i < b->members.len; i++) {
    Value *m = b->members.data[i];
    if (!phase_fits(a, m)) return false;
    if (m->op == OP_sum && a->kind == K_ANCHOR && a->anchor->op != OP_softmax && a->anchor->op != OP_maxpool_dx &&
        a->anchor->op != OP_conv2d_dx)
      return false;
    for (int j = 0; j < m->nin; j++) {
      Value *u = m->in[j];
      if (is_buffer(u) || u->group == b->id) continue;
      if (u->group == a->id && readable_in(a, u) && !(op_info[m->op].flags & F_GATHER)) continue;
      if (u->group < a->id) continue;
      return false;
    }
  }
  // Nothing between a and b may read b's values (they would not exist yet):
  // true, since b is the latest kernel with values only read by later ones.
  return b->id == f->p->kernels.len - 1;
}

static void place_elementwise(Fuser *f, Value *v) {
  // Producer kernels this value could join.
  Kernel *target = NULL;
  Kernel *cands[4];
  int nc = 0;
  for (int i = 0; i < v->nin; i++) {
    Kernel *k = kernel_of(f, v->in[i]);
    if (!k || (op_info[v->op].flags & F_GATHER)) continue;
    bool dup = false;
    for (int j = 0; j < nc; j++) dup |= cands[j] == k;
    if (!dup) cands[nc++] = k;
  }
  // Try the latest candidate first; pull in the others where allowed.
  for (int pass = 0; pass < 2 && !target; pass++) {
    Kernel *best = NULL;
    for (int i = 0; i < nc; i++)
      if (!best || cands[i]->id > best->id) best = cands[i];
    if (!best) break;
    for (int i = 0; i < nc; i++) {
      Kernel *k = cands[i];
      if (k == best) continue;
      if (k->id < best->id && can_merge_into_later(f, k, best))
        move_members(k, best);
      else if (k->id < best->id && can_merge_into_earlier(f, best, k)) {
        move_members(best, k);
        best = k;
      }
    }
    if (can_join(f, best, v)) target = best;
  }
  // Siblings: the latest kernel, if v fits its iteration.
  if (!target && f->p->kernels.len) {
    Kernel *last = f->p->kernels.data[f->p->kernels.len - 1];
    if (last->members.len && can_join(f, last, v)) target = last;
  }
  if (!target) {
    Shape s = v->op == OP_sum || v->op == OP_store ? v->in[0]->shape : v->shape;
    target = new_kernel(f, K_EW, s, NULL);
  }
  add_member(target, v);
}

// Scalar arithmetic on leaves (a learning-rate factor, -1/n) is recomputed
// wherever it is read instead of getting a kernel of its own.
static bool inlinable_scalar(Value *v) {
  if (!(op_info[v->op].flags & F_EW) || (op_info[v->op].flags & F_GATHER) || v->shape.rank != 0) return false;
  for (int i = 0; i < v->nin; i++)
    if (!(op_info[v->in[i]->op].flags & F_LEAF) && v->in[i]->group != GROUP_INLINE) return false;
  return true;
}

static bool pool_prologue(Fuser *f, Value *v) {
  if (!(op_info[v->op].flags & F_EW) || (op_info[v->op].flags & F_GATHER) || v->nin != 1) return false;
  // Computed by a kernel it can join (a convolution's epilogue), it is cheaper
  // there: the pool's window loop then reads plain values.
  Kernel *k = kernel_of(f, v->in[0]);
  if (k && can_join(f, k, v)) return false;
  Vec *c = &f->consumers[v->id];
  for (int i = 0; i < c->len; i++) {
    Op op = ((Value *)c->data[i])->op;
    if (op != OP_maxpool && op != OP_maxpool_arg) return false;
  }
  return c->len > 0;
}

// Do a and b (maxpool, maxpool_arg) pool the same windows of the same input?
static bool same_pool(const Value *a, const Value *b) {
  return a->in[0] == b->in[0] && a->ia[0] == b->ia[0] && a->ia[1] == b->ia[1];
}

// A max-pool of a convolution's output (after its epilogue: bias, ReLU) runs
// in the convolution's kernel, over each image as soon as its output planes
// are written, while they are still in cache; as a kernel of its own it would
// read the whole batch's output back from memory.
// The pool's window indices (maxpool_arg, built by the backward pass) join the
// same pass: the backward pass then reads a float per window instead of the
// convolution's whole output.
static bool pool_after_conv(Fuser *f, Value *v) {
  Value *u = v->in[0];
  Kernel *k = kernel_of(f, u);
  if (!k || k->kind != K_ANCHOR || k->anchor->op != OP_conv2d) return false;
  if (!shape_batched(k->shape) || !shape_eq(u->shape, k->shape)) return false;
  Value *other = v->op == OP_maxpool ? k->post_arg : v->op == OP_maxpool_arg ? k->post : NULL;
  if (other && !same_pool(other, v)) return false;
  if (v->op == OP_maxpool) return !k->post && k->anchor->phase == v->phase;
  return v->op == OP_maxpool_arg && !k->post_arg;
}

// A 2x2 pool's gradient read only by an im2col weight gradient that takes
// its images one at a time (conv1's, whose input is the data) is computed by
// that kernel, image by image, into its scratch: the whole batch's gradient
// (6.4 MB for the seed CNN) is then never written and read back.
static bool unpool_in_dw(Fuser *f, Value *v) {
  if (v->op != OP_maxpool_dx || v->ia[0] != 2 || v->ia[1] != 2 || v->shape.rank != 4) return false;
  Vec *c = &f->consumers[v->id];
  if (c->len != 1) return false;
  Value *u = c->data[0];
  return u->op == OP_conv2d_dw && u->in[1] == v && u->in[0] != v && dw_by_images(u) && !conv_direct(u) &&
         u->phase == v->phase;
}

// The window indices of a pool that runs as a kernel of its own (its input
// is not a convolution's output) join that kernel, in the same pass over the
// windows of the forward pass, while the input is in cache; on its own the
// backward pass would read the pool's whole input once more.
static Kernel *pool_kernel_of_arg(Fuser *f, Value *v) {
  if (v->op != OP_maxpool_arg) return NULL;
  Vec *c = &f->consumers[v->in[0]->id];
  for (int i = 0; i < c->len; i++) {
    Value *m = c->data[i];
    Kernel *k = m->op == OP_maxpool && same_pool(m, v) ? kernel_of(f, m) : NULL;
    if (k && k->kind == K_EW) return k;  // (its loops run over m's shape, v's)
  }
  return NULL;
}

static void place(Fuser *f, Value *v) {
  unsigned fl = op_info[v->op].flags;
  if (fl & (F_LEAF | F_VIEW)) return;
  if (v->op == OP_loop) {
    add_member(new_kernel(f, K_LOOP, v->shape, v), v);
    return;
  }
  if (v->op == OP_loopout) {
    add_member(kernel_of(f, v->in[0]), v);
    v->materialized = true;
    return;
  }
  if (pool_after_conv(f, v)) {
    Kernel *k = kernel_of(f, v->in[0]);
    add_member(k, v);
    if (v->op == OP_maxpool)
      k->post = v;
    else
      k->post_arg = v;
    return;
  }
  Kernel *pk = pool_kernel_of_arg(f, v);
  if (pk) {
    add_member(pk, v);
    return;
  }
  if (inlinable_scalar(v) || pool_prologue(f, v) || unpool_in_dw(f, v)) {
    v->group = GROUP_INLINE;
    return;
  }
  if (fl & F_ANCHOR) {
    if (v->op == OP_xent && v->in[0]->op == OP_softmax && v->in[0]->group == f->p->kernels.len - 1) {
      add_member(kernel_of(f, v->in[0]), v);
      return;
    }
    add_member(new_kernel(f, K_ANCHOR, v->shape, v), v);
    return;
  }
  place_elementwise(f, v);
}

static void kernel_name(Kernel *k) {
  char buf[128];
  int o = snprintf(buf, sizeof buf, "k%d", k->id);
  const char *seen[4];
  int ns = 0;
  for (int i = 0; i < k->members.len && ns < 4; i++) {
    Value *m = k->members.data[i];
    if (m->op == OP_store || m->op == OP_bcast) continue;
    const char *n = op_info[m->op].name;
    bool dup = false;
    for (int j = 0; j < ns; j++) dup |= seen[j] == n;
    if (dup) continue;
    seen[ns++] = n;
    o += snprintf(buf + o, sizeof buf - (size_t)o, "_%s", n);
  }
  if (!ns) snprintf(buf + o, sizeof buf - (size_t)o, "_store");
  k->name = arena_strdup(buf);
}

static void push_unique(Vec *v, Value *x) {
  for (int i = 0; i < v->len; i++)
    if (v->data[i] == x) return;
  vec_push(v, x);
}

// Buffers read by kernel k on behalf of u (looking through inlined values).
static void collect_input(Kernel *k, Value *u) {
  if (u->op == OP_const) return;
  if (u->group == GROUP_INLINE) {
    for (int i = 0; i < u->nin; i++) collect_input(k, u->in[i]);
    return;
  }
  if (u->group == k->id) return;
  push_unique(&k->inputs, u);
}

// Register tiles: up to 24 of AVX-512's 32 vector registers hold accumulators,
// the rest hold B vectors and the broadcast A element.
void gemm_tile(int64_t M, int64_t N, int *mr, int *nv) {
  int64_t vecs = (N + 15) / 16;
  *nv = vecs >= 4 ? 4 : (int)vecs;
  if (*nv == 4)
    *mr = 6;
  else if (*nv == 3)
    *mr = 8;
  else if (*nv == 2)
    *mr = 8;
  else
    *mr = 8;
  if (M < *mr) *mr = (int)(M > 0 ? M : 1);
}

// Rows per block of the NT form (x . W^T): a block's output, N columns wide,
// sits in the scratch until the epilogue, and every column tile of W is read
// once per block, so blocks are as tall as 64 rows and 64 KB of output allow.
int gemm_nt_block_rows(int64_t N) {
  int64_t ldr = (N + 3) & ~(int64_t)3, rows = (16384 / ldr) & ~(int64_t)3;
  return rows > 64 ? 64 : rows < 4 ? 4 : (int)rows;
}

// The register tile for a GEMM whose M rows are all static: each shape of tile
// (full, and the leftover rows or columns) is one more micro-kernel to
// compile, so between 6 x 64 and 8 x 48 (both 24 accumulators) take the one
// that needs fewer shapes.
void gemm_tile_static(int64_t M, int64_t N, int *mr, int *nv) {
  gemm_tile(M, N, mr, nv);
  if (*mr != 6 || *nv != 4) return;
  int shapes64 = (1 + (M % 6 != 0)) * (1 + (N % 64 != 0));
  int shapes48 = (1 + (M % 8 != 0)) * (1 + (N % 48 != 0));
  if (shapes48 < shapes64) *mr = 8, *nv = 3;
}

// Stride-1 convolutions run directly: the image (or the output gradient) is
// copied into a zero-padded plane, and the tap micro-kernel reads each kernel
// tap's input rows straight from it at a constant offset, computing outputs
// over the padded width (the extra columns are discarded). That skips im2col,
// which writes KH*KW copies of the input per image. The weight gradient goes
// direct when the input has channels enough to fill a vector; the input
// gradient when its padding KH-1-p is not negative. FNNC_CONV=im2col (an
// environment variable for testing) turns the direct path off.
bool conv_direct(Value *a) {
  const char *force = getenv("FNNC_CONV");
  if (force && !strcmp(force, "im2col")) return false;
  Shape w = a->op == OP_conv2d ? a->in[1]->shape : a->op == OP_conv2d_dx ? a->in[1]->shape : a->shape;
  int64_t s = a->ia[0], p = a->ia[1], KH = w.d[2], KW = w.d[3];
  if (s != 1) return false;
  switch (a->op) {
  case OP_conv2d: return true;
  case OP_conv2d_dx: return p <= KH - 1 && p <= KW - 1;
  case OP_conv2d_dw: return w.d[1] >= 8;
  default: return false;
  }
}

// Winograd F(2x2, 3x3) (wino.c) for the forward, input gradient and weight
// gradient of a stride-1 3x3 convolution: per 2x2 outputs, 16 multiply-adds
// of transformed 4x4 tiles stand in for 36, so the GEMMs do 2.25 times less
// work, and the transforms, which only add, cost a few per cent. It needs
// channels enough for the GEMMs' vectors (k at least 16, the output channels
// whole vectors), one image's transformed tiles within about a megabyte and
// the transformed filters within 4 MB (larger layers run direct).
// FNNC_CONV=direct (or im2col) turns it off.
bool wino_plan(Value *a, WinoPlan *out) {
  const char *force = getenv("FNNC_CONV");
  if (force && (!strcmp(force, "direct") || !strcmp(force, "im2col"))) return false;
  if (a->op != OP_conv2d && a->op != OP_conv2d_dx && a->op != OP_conv2d_dw) return false;
  Shape w = a->op == OP_conv2d_dw ? a->shape : a->in[1]->shape;
  if (a->ia[0] != 1 || w.d[2] != 3 || w.d[3] != 3) return false;
  int64_t O = w.d[0], C = w.d[1], pd = a->ia[1];
  WinoPlan p = {0};
  if (a->op == OP_conv2d)
    p.K = C, p.N = O, p.pad = pd, p.wsk = 9, p.wsn = C * 9;
  else if (a->op == OP_conv2d_dx)  // the output gradient padded by 2 - pd, convolved with the rotated filters
    p.K = O, p.N = C, p.pad = 2 - pd, p.wsk = C * 9, p.wsn = 9, p.flip = true;
  else if (dw_by_images(a) && conv_direct(a))  // a task sums its images' tiles
    p.K = C, p.N = O, p.pad = pd;
  else
    return false;
  Shape os = a->op == OP_conv2d_dw ? a->in[1]->shape : a->shape;
  p.OH = os.d[2], p.OW = os.d[3];
  p.TH = (p.OH + 1) / 2, p.TW = (p.OW + 1) / 2, p.T = p.TH * p.TW;
  p.Hp = 2 * p.TH + 2, p.Wp = 2 * p.TW + 2;
  if (p.pad < 0 || p.K < 16 || p.N % 16) return false;
  if (16 * (p.K + p.N) * p.T > 262144 || 16 * p.K * p.N > 1048576) return false;
  // The per-image GEMMs have T rows: a register tile as tall as the default
  // or less, that divides T, saves the leftover rows' kernel (49 tiles of a
  // 14x14 plane: 7 rows of 2 vectors, not 6 x 8 and 1).
  gemm_tile_static(p.T, p.N, &p.mr, &p.nv);
  for (int mr = p.mr; mr >= 4 && p.T % p.mr; mr--)
    if (p.T % mr == 0) p.mr = mr;
  p.at_u = 0;
  p.at_pad = pad16(16 * p.K * p.N);
  p.at_v = p.at_pad + pad16(p.K * p.Hp * p.Wp + 16);
  p.at_m = p.at_v + pad16(16 * p.K * p.T);
  p.at_plane = p.at_m + pad16(16 * p.T * p.N);
  p.total = p.at_plane + (a->op == OP_conv2d_dw ? p.N * p.K * 9 : p.N * p.OH * p.OW);
  if (out) *out = p;
  return true;
}

// An im2col weight gradient's scratch: col [P, CKK] and the tile [O + 8, CKK
// rounded to 4]; after them (64-byte aligned), the planes of g that
// unpool_in_dw computes.
int64_t dw_planes_at(Value *a) {
  Shape g = a->in[1]->shape;
  int64_t ckk = a->shape.d[1] * a->shape.d[2] * a->shape.d[3], p = g.d[2] * g.d[3];
  return pad16(p * ckk + (a->shape.d[0] + 8) * ((ckk + 3) & ~(int64_t)3));
}

// A kernel's fused pool (Kernel.post, else post_arg), if any.
static Value *kernel_pool(Kernel *k) { return k->post ? k->post : k->post_arg; }

// Where a kernel's image_local output sits in its scratch: after the anchor's own.
int64_t image_local_at(Kernel *k) { return pad16(anchor_scratch(k->anchor)); }

// Convolutions run direct (above) or as one GEMM per image over im2col-packed
// input; matmuls by blocks of rows. The scratch holds the padded or packed
// operand and the output tile that the epilogue reads.
int64_t anchor_scratch(Value *a) {
  WinoPlan wp;
  if (wino_plan(a, &wp)) return wp.total;
  if ((a->op == OP_conv2d || a->op == OP_conv2d_dx || a->op == OP_conv2d_dw) && conv_direct(a)) {
    int64_t p = a->ia[1];
    if (a->op == OP_conv2d) {  // padded input + slack row, the output over padded rows
      Shape x = a->in[0]->shape;
      int64_t Hp = x.d[2] + 2 * p, Wp = x.d[3] + 2 * p;
      return x.d[1] * Hp * Wp + Wp + a->shape.d[1] * a->shape.d[2] * Wp;
    }
    if (a->op == OP_conv2d_dx) {  // padded output gradient + slack row, dx over padded rows
      Shape g = a->in[0]->shape, w = a->in[1]->shape;
      int64_t Hq = a->shape.d[2] + w.d[2] - 1, Wq = a->shape.d[3] + w.d[3] - 1;
      return g.d[1] * Hq * Wq + Wq + a->shape.d[1] * a->shape.d[2] * Wq;
    }
    // dw: the input transposed to [Hp*Wp + slack, C], g over padded rows,
    // the sums [O + 8, KH*KW, C] and the same in [O, C, KH, KW] order.
    Shape x = a->in[0]->shape, g = a->in[1]->shape;
    int64_t Hp = x.d[2] + 2 * p, Wp = x.d[3] + 2 * p, C = x.d[1], O = a->shape.d[0];
    int64_t kk = a->shape.d[2] * a->shape.d[3];
    return (Hp * Wp + Wp) * C + O * g.d[2] * Wp + (O + 8) * kk * C + O * kk * C;
  }
  switch (a->op) {
  case OP_conv2d: {
    Shape x = a->in[0]->shape, w = a->in[1]->shape;
    int64_t ckk = w.d[1] * w.d[2] * w.d[3], p = a->shape.d[2] * a->shape.d[3];
    return ckk * p + a->shape.d[1] * p + x.d[1] * 0;
  }
  case OP_conv2d_dx: {
    Shape g = a->in[0]->shape, w = a->in[1]->shape;
    int64_t ckk = w.d[1] * w.d[2] * w.d[3], p = g.d[2] * g.d[3];
    return ckk * p + shape_numel(a->shape);
  }
  case OP_conv2d_dw: {
    Shape g = a->in[1]->shape;  // col, the tile (padded), and with unpool_in_dw one image's g
    return dw_planes_at(a) + (a->in[1]->group == GROUP_INLINE ? a->shape.d[0] * g.d[2] * g.d[3] : 0);
  }
  case OP_matmul: {
    int mr, nv;
    int64_t N = a->shape.d[a->shape.rank - 1];
    gemm_tile(a->shape.d[0] == DIM_BATCH ? 64 : a->shape.d[0], N, &mr, &nv);
    Shape bs = a->in[1]->shape;
    if (a->ia[1] && !a->ia[0]) return gemm_nt_block_rows(N) * ((N + 3) & ~(int64_t)3);  // NT: no packing
    int64_t pack = a->ia[1] ? shape_numel(bs) : 0;
    return pack + (int64_t)mr * N;
  }
  default: return 0;
  }
}

int kernel_partials(Kernel *k) {
  for (int i = 0; i < k->members.len; i++)
    if (((Value *)k->members.data[i])->partial) return ((Value *)k->members.data[i])->partial;
  return 0;
}

// Does a member reduce over the batch axis (its result has no batch axis)?
static bool reduces_batch(Value *m) {
  if (m->op == OP_xent || m->op == OP_correct) return true;
  return m->op == OP_sum && shape_batched(m->in[0]->shape) && !(m->ia[0] & 1);
}

int64_t split_align(int64_t rows) { return rows >= 64 ? 16 : 4; }

// The work of a kernel at a batch of 64, in multiply-adds for a contraction,
// else the elements it computes times its members plus the elements it reads:
// a rough measure, to tell the kernels too small to share from the rest.
static int64_t numel64(Shape s) {
  int64_t n = 1;
  for (int i = 0; i < s.rank; i++) n *= s.d[i] == DIM_BATCH ? 64 : s.d[i];
  return n;
}

static int64_t kernel_work(Kernel *k) {
  Value *a = k->anchor;
  if (a && a->op == OP_matmul) {
    Shape x = a->in[0]->shape;
    int64_t K = a->ia[0] ? x.d[0] : x.d[x.rank - 1];
    return numel64(a->shape) * (K == DIM_BATCH ? 64 : K);
  }
  if (a && a->op != OP_softmax) return INT64_MAX;  // convolutions and pooling
  int64_t w = numel64(k->shape) * k->members.len;
  for (int i = 0; i < k->inputs.len; i++) w += numel64(((Value *)k->inputs.data[i])->shape);
  return w;
}

bool is_model_input(Value *v) {
  while (v->op == OP_reshape) v = v->in[0];
  return v->op == OP_input;
}

bool kernel_reads_input(const Kernel *k) {
  for (int j = 0; j < k->inputs.len; j++)
    if (is_model_input(k->inputs.data[j])) return true;
  return false;
}

// Below this much work a kernel runs on the calling thread alone: handing it
// to the pool and waiting for the other threads costs more than it saves.
enum { SERIAL_WORK = 1 << 18 };

// A dense layer's x . W^T over a batch, with enough outputs to share, splits
// its outputs (W's rows) between the threads rather than the batch: each
// thread then reads half of W instead of all of it, and the same half that its
// block of the weight gradient (SPLIT_OUT, split the same way) computes. Only
// elementwise epilogues on the output's own elements go along (no sums over
// the batch, which would need the other rows).
//
// The input gradient of such a layer's input, g . W, splits its columns too
// when the layer before was split by its outputs (its activation's mask, read
// in the epilogue, comes from a kernel split by columns): each thread then
// computes the gradient of the outputs it computed, which its block of that
// layer's weight gradient reads; split by rows, half of it would cross to the
// other core. Its blocks are whole register tiles (64 columns) where the
// layer's are multiples of 16, so the blocks match where the cut falls on a
// multiple of 64 (two threads at equal shares) and differ by a few columns
// otherwise: only where the data lives is at stake.
static bool split_columns(Fuser *f, Kernel *k) {
  Value *a = k->anchor;
  if (!a || a->op != OP_matmul || a->ia[0] || a->shape.rank != 2 || shape_batched(a->in[1]->shape)) return false;
  if (a->shape.d[1] < 64) return false;
  int64_t align = split_align(a->shape.d[1]);
  bool cols_before = false;
  for (int i = 0; i < k->members.len; i++) {
    Value *m = k->members.data[i];
    if (m == a) continue;
    if (!(op_info[m->op].flags & F_EW) || !shape_eq(m->shape, a->shape)) return false;
    for (int j = 0; j < m->nin; j++) {
      Kernel *pk = kernel_of(f, m->in[j]);
      cols_before |= pk && pk != k && pk->split == SPLIT_COLS && shape_eq(m->in[j]->shape, a->shape);
    }
  }
  if (!a->ia[1]) {
    int mr, nv;
    gemm_tile(64, a->shape.d[1], &mr, &nv);
    align = 16 * nv;
    if (!cols_before || a->shape.d[1] % align) return false;
  }
  k->split = SPLIT_COLS;
  k->align = align;
  return true;
}

// Kernels whose work is a loop over the rows of the batch run as tasks of
// PAR_ROWS rows. Their reductions over the batch become partials (one slot per
// task, summed in task order afterwards). Contractions that reduce over the
// batch inside the GEMM (weight gradients) stay whole.
static Split parallel_rows(Fuser *f, Kernel *k) {
  if (k->kind != K_LOOP && kernel_work(k) < SERIAL_WORK) return SPLIT_NONE;
  // Weight gradients (a contraction over the batch): tasks take blocks of
  // output rows and contract the whole batch, in the same order as one thread.
  Value *a = k->anchor;
  if (a && dw_by_images(a)) {
    a->partial = DW_ROWS;
    return SPLIT_ROWS;
  }
  if (a && shape_batched(a->in[0]->shape) && a->op == OP_matmul && a->ia[0] && !a->ia[1]) {
    k->align = split_align(a->shape.d[0]);
    return SPLIT_OUT;
  }
  // A big elementwise loop without a batch axis (the optimizer's update over
  // the parameter slab): tasks take blocks of its first axis, or of each
  // parameter's rows when it runs over the slab.
  if (k->kind == K_EW && !shape_batched(k->shape) && k->shape.rank > 0 && shape_numel(k->shape) >= 1 << 15) {
    bool ew = true;
    for (int i = 0; i < k->members.len; i++) {
      Value *m = k->members.data[i];
      ew &= m->op == OP_store || ((op_info[m->op].flags & F_EW) && !(op_info[m->op].flags & F_GATHER));
    }
    if (ew) {
      k->align = 4;
      // Per-parameter blocks need one run of the parameter slab: two runs
      // of the same length fused together (a frozen layer or another lr_mult
      // between them) keep the plain split, as their padding may differ.
      int64_t run = -1;
      bool one_run = true;
      for (int i = 0; i < k->inputs.len; i++) {
        Value *u = k->inputs.data[i];
        if (u->op != OP_slab || u->ia[0] != BUF_PARAM || !shape_eq(u->shape, k->shape)) continue;
        one_run &= run < 0 || u->ia[2] == run;
        run = u->ia[2];
      }
      return run >= 0 && one_run ? SPLIT_PARAMS : SPLIT_OUT;
    }
  }
  if (!shape_batched(k->shape)) return SPLIT_NONE;
  if (split_columns(f, k)) return SPLIT_COLS;
  k->align = 8;
  if (k->anchor && k->anchor->op == OP_matmul) {  // whole register tiles of rows
    int mr, nv;
    gemm_tile(64, k->anchor->shape.d[1], &mr, &nv);
    k->align = mr;
  }
  if (k->anchor) {
    Value *a = k->anchor;
    switch (a->op) {
    case OP_conv2d:
    case OP_conv2d_dx:
    case OP_maxpool_dx: break;
    case OP_matmul:
      if (a->ia[0]) return SPLIT_NONE;
      break;
    case OP_softmax: break;  // (rows of any rank: ops_loss.c, call_rows)
    default: return SPLIT_NONE;
    }
  }
  for (int i = 0; i < k->members.len; i++) {
    Value *m = k->members.data[i];
    // A store of per-row values (eval's outputs, a loop's step results)
    // splits with the rows.
    if (m->op == OP_store && !shape_batched(m->in[0]->shape)) return SPLIT_NONE;
  }
  for (int i = 0; i < k->members.len; i++) {
    Value *m = k->members.data[i];
    if (reduces_batch(m)) m->partial = PAR_ROWS;
  }
  return SPLIT_ROWS;
}

// The last kernel that reads v: through views and inlined values, whose own
// readers read v's buffer (last[] of later values is already known).
static int last_reader(Fuser *f, Value *v, const int *last) {
  int l = v->group;
  Vec *c = &f->consumers[v->id];
  for (int j = 0; j < c->len; j++) {
    Value *u = c->data[j];
    int k = (op_info[u->op].flags & F_VIEW) || u->group < 0 ? last[u->id] : u->group;
    if (u->group >= 0 && k < u->group) k = u->group;
    if (k > l) l = k;
  }
  return l;
}

typedef struct {
  int64_t off, size;
  int first, last;  // kernels
} Block;

// The lowest offset where `size` floats fit beside every block live at the
// same time as kernels [first, last].
static int64_t first_fit(Block *b, int nb, int64_t size, int first, int last) {
  int64_t off = 0;
  for (bool moved = true; moved;) {
    moved = false;
    for (int i = 0; i < nb; i++)
      if (b[i].first <= last && first <= b[i].last && b[i].off < off + size && off < b[i].off + b[i].size) {
        off = b[i].off + b[i].size;
        moved = true;
      }
  }
  return off;
}

// Workspace: every materialized value gets floats [n*P + F, ...). Values whose
// lifetimes (producing kernel to last reading kernel) do not overlap share
// memory: values with a batch axis get P from a first-fit over floats per row
// (F = 0), the others F after the batched region (P = its total). So buffers
// that are live together never overlap, for any n up to the batch size.
static void plan_workspace(Fuser *f) {
  Program *p = f->p;
  Graph *g = f->g;
  int nv = g->values.len;
  int *last = arena_alloc(sizeof(int) * (size_t)nv);
  for (int i = nv - 1; i >= 0; i--) {
    Value *v = g->values.data[i];
    last[i] = v->dead ? -1 : last_reader(f, v, last);
  }
  p->work_per_n = arena_alloc(sizeof(int64_t) * (size_t)nv);
  p->work_fixed = arena_alloc(sizeof(int64_t) * (size_t)nv);
  Block *blk[2] = {arena_alloc(sizeof(Block) * (size_t)nv), arena_alloc(sizeof(Block) * (size_t)nv)};
  int nb[2] = {0, 0};
  int64_t total[2] = {0, 0};
  for (int i = 0; i < nv; i++) {
    Value *v = g->values.data[i];
    p->work_per_n[i] = p->work_fixed[i] = -1;
    if (v->dead || !v->materialized || v->image_local || v->group < 0) continue;
    int kind = shape_batched(v->shape) ? 0 : 1;
    int64_t n = pad16(shape_numel(v->shape));  // 64-byte aligned starts
    int64_t off = first_fit(blk[kind], nb[kind], n, v->group, last[i]);
    blk[kind][nb[kind]++] = (Block){off, n, v->group, last[i]};
    if (off + n > total[kind]) total[kind] = off + n;
    p->work_per_n[i] = kind == 0 ? off : 0;
    p->work_fixed[i] = kind == 0 ? 0 : off;
  }
  for (int i = 0; i < nv; i++)
    if (p->work_per_n[i] >= 0 && !shape_batched(((Value *)g->values.data[i])->shape)) p->work_per_n[i] = total[0];
  p->work_total_per_n = total[0];
  p->work_total_fixed = total[1];
}

// Reserves n floats (per row of the batch if `batched`) of workspace.
static void reserve(Program *p, int64_t n, bool batched, int64_t *per_n, int64_t *fixed) {
  *per_n = p->work_total_per_n;
  *fixed = p->work_total_fixed;
  n = pad16(n);
  if (batched)
    p->work_total_per_n += n;
  else
    p->work_total_fixed += n;
}

// A loop's body becomes a program of its own. Its workspace, and a step buffer
// for each formal (but invariants, read in place) and each output, follow the
// outer program's values.
static void plan_loop(Program *p, Kernel *k) {
  LoopInfo *l = loop_of(p->g, k->anchor);
  Program *bp = fuse(l->body, p->entry);
  l->prog = bp;
  for (int i = 0; i < bp->kernels.len; i++) {
    Kernel *bk = bp->kernels.data[i];
    bk->name = arena_printf("L%d_%s", l->id, bk->name);
  }
  l->region_per_n = p->work_total_per_n;
  l->region_fixed = p->work_total_fixed;
  p->work_total_per_n += bp->work_total_per_n;
  p->work_total_fixed += bp->work_total_fixed;
  l->fbuf_per_n = arena_alloc(sizeof(int64_t) * (size_t)(l->nformals + 1));
  l->fbuf_fixed = arena_alloc(sizeof(int64_t) * (size_t)(l->nformals + 1));
  l->obuf_per_n = arena_alloc(sizeof(int64_t) * (size_t)(l->nouts + 1));
  l->obuf_fixed = arena_alloc(sizeof(int64_t) * (size_t)(l->nouts + 1));
  for (int i = 0; i < l->nformals; i++) {
    Shape s = l->formals[i].shape;
    l->fbuf_per_n[i] = l->fbuf_fixed[i] = -1;
    if (l->formals[i].kind != LF_INVAR)
      reserve(p, shape_numel(s), shape_batched(s), &l->fbuf_per_n[i], &l->fbuf_fixed[i]);
  }
  for (int j = 0; j < l->nouts; j++) {
    if (l->outs[j].kind == LO_NONE) continue;
    Shape s = l->outs[j].store->in[0]->shape;
    reserve(p, shape_numel(s), shape_batched(s), &l->obuf_per_n[j], &l->obuf_fixed[j]);
  }
  if (bp->scratch > p->scratch) p->scratch = bp->scratch;
}

Program *fuse(Graph *g, Entry e) {
  Fuser f = {g, arena_alloc(sizeof(Program)), NULL};
  Program *p = f.p;
  p->g = g;
  p->entry = e;
  int nv = g->values.len;
  f.consumers = arena_alloc(sizeof(Vec) * (size_t)nv);
  for (int i = 0; i < nv; i++) {
    Value *v = g->values.data[i];
    v->group = -1;
    v->materialized = false;
    v->image_local = false;
    v->partial = 0;
    if (v->dead) continue;
    for (int j = 0; j < v->nin; j++) vec_push(&f.consumers[v->in[j]->id], v);
  }
  for (int i = 0; i < nv; i++) {
    Value *v = g->values.data[i];
    if (!v->dead) place(&f, v);
  }
  // Drop kernels emptied by merges, renumber.
  Vec ks = {0};
  for (int i = 0; i < p->kernels.len; i++) {
    Kernel *k = p->kernels.data[i];
    if (!k->members.len) continue;
    k->id = ks.len;
    for (int j = 0; j < k->members.len; j++) ((Value *)k->members.data[j])->group = k->id;
    vec_push(&ks, k);
  }
  p->kernels = ks;
  // Materialize what is read outside its kernel (or through a view or an
  // inlined reader), and the results of reductions and anchors' outputs that
  // have readers.
  for (int i = 0; i < nv; i++) {
    Value *v = g->values.data[i];
    if (v->dead || v->group < 0 || v->op == OP_store) continue;
    Vec *c = &f.consumers[v->id];
    for (int j = 0; j < c->len; j++) {
      Value *u = c->data[j];
      if (u->group != v->group || v->op == OP_sum || v->op == OP_xent || v->op == OP_correct ||
          (op_info[u->op].flags & F_GATHER))
        v->materialized = true;
    }
    if (v->op == OP_sum || v->op == OP_xent || v->op == OP_correct || v->op == OP_loopout) v->materialized = true;
    if (v->op == OP_loop) v->materialized = false;
  }
  // A convolution's output that only its fused pool reads never leaves the
  // kernel: it is written to the scratch one image at a time, and the pool
  // reads it from there (the training step's pool keeps its window indices).
  for (int i = 0; i < p->kernels.len; i++) {
    Kernel *k = p->kernels.data[i];
    Value *pool = kernel_pool(k);
    if (!pool) continue;
    Value *u = pool->in[0];
    Vec *c = &f.consumers[u->id];
    bool only_pool = true;
    for (int j = 0; j < c->len; j++) only_pool &= c->data[j] == k->post || c->data[j] == k->post_arg;
    u->image_local = only_pool;
  }
  // Inputs, outputs, names.
  for (int i = 0; i < p->kernels.len; i++) {
    Kernel *k = p->kernels.data[i];
    for (int j = 0; j < k->members.len; j++) {
      Value *m = k->members.data[j];
      for (int t = 0; t < m->nin; t++) collect_input(k, m->in[t]);
      if (m->materialized || m->op == OP_store) vec_push(&k->outputs, m);
    }
    kernel_name(k);
  }
  // Scratch: kernels run one after another, so they share one region per
  // thread (FnnArgs.scratch).
  for (int i = 0; i < p->kernels.len; i++) {
    Kernel *k = p->kernels.data[i];
    if (k->anchor) k->scratch = anchor_scratch(k->anchor);
    Value *pool = kernel_pool(k);
    if (pool && pool->in[0]->image_local) k->scratch = image_local_at(k) + shape_numel(pool->in[0]->shape);
    if (k->scratch > p->scratch) p->scratch = pad16(k->scratch);
    k->split = parallel_rows(&f, k);
    // A thread of x . W^T (by columns) or of its weight gradient (by rows)
    // reads the whole batch: in the training step each thread then gets a
    // copy of the batch that it gathered itself. Evaluation reads one copy.
    if (e == ENTRY_TRAIN && (k->split == SPLIT_COLS || k->split == SPLIT_OUT)) p->input_copies |= kernel_reads_input(k);
  }
  plan_workspace(&f);
  // Partial slots: one per task, ceil(n / rows) <= n / rows + 1 of them.
  p->part_per_n = arena_alloc(sizeof(int64_t) * (size_t)nv);
  p->part_fixed = arena_alloc(sizeof(int64_t) * (size_t)nv);
  for (int i = 0; i < nv; i++) {
    Value *v = g->values.data[i];
    p->part_per_n[i] = p->part_fixed[i] = -1;
    if (v->dead || !v->partial) continue;
    int64_t n = pad16(shape_numel(v->shape));
    p->part_per_n[i] = p->work_total_per_n;
    p->part_fixed[i] = p->work_total_fixed;
    p->work_total_per_n += (n + v->partial - 1) / v->partial;
    p->work_total_fixed += n;
  }
  for (int i = 0; i < p->kernels.len; i++) {
    Kernel *k = p->kernels.data[i];
    if (k->kind == K_LOOP) plan_loop(p, k);
  }
  return p;
}

//
// --emit=fused
//
static int *live_numbers(Graph *g) {
  int *num = arena_alloc(sizeof(int) * (size_t)(g->values.len + 1));
  int id = 0;
  for (int i = 0; i < g->values.len; i++) {
    Value *v = g->values.data[i];
    if (!v->dead && v->op != OP_store) num[v->id] = id++;
  }
  return num;
}

// How a value is named in the dump: leaves and stores by their buffer, inlined
// values as the expression they stand for, the rest by SSA number.
static const char *ref(Graph *g, int *num, Value *v) {
  static const char *hn[] = {"lr", "bc1", "bc2", "invn"};
  switch (v->op) {
  case OP_input: return "x";
  case OP_label: return "y";
  case OP_const: return arena_printf("%.9g", v->fa);
  case OP_hyper: return hn[v->ia[0]];
  case OP_param: return g->params[v->param].name;
  case OP_formal: return arena_printf("#%lld", (long long)v->ia[0]);
  case OP_state: return arena_printf("%s.%s", g->params[v->param].name, v->ia[0] ? "v" : "m");
  case OP_slab: return slab_name(v);
  case OP_store:
    if (v->ia[0] == BUF_OUT) return arena_printf("out[%lld]", (long long)v->ia[1]);
    if (v->ia[0] == BUF_LOOP) return arena_printf("loop[%lld]", (long long)v->ia[1]);
    if (v->param < 0) return slab_name(v);
    if (v->ia[0] == BUF_STATE) return arena_printf("%s.%s", g->params[v->param].name, v->ia[1] ? "v" : "m");
    return arena_printf("%s%s", v->ia[0] == BUF_GRAD ? "grad " : "", g->params[v->param].name);
  default: break;
  }
  if (v->group == GROUP_INLINE) {
    char *r = arena_printf("%s(", op_info[v->op].name);
    for (int i = 0; i < v->nin; i++) r = arena_printf("%s%s%s", r, i ? ", " : "", ref(g, num, v->in[i]));
    return arena_printf("%s)", r);
  }
  return arena_printf("%%%d", num[v->id]);
}

static void dump_ref(FILE *out, Graph *g, int *num, Value *v) {
  fprintf(out, "%s: %s%s", ref(g, num, v), v->type == T_I32 ? "i32" : "f32", shape_str(v->shape));
}

// A loop body's kernels, indented under the loop's kernel.
static void loop_fused_dump(FILE *out, LoopInfo *l) {
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  if (!m) die("open_memstream");
  fused_dump(m, l->prog);
  fclose(m);
  for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
    nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (*line) fprintf(out, "    %s\n", line);
  }
  free(buf);
}

void fused_dump(FILE *out, Program *p) {
  Graph *g = p->g;
  int *num = live_numbers(g);
  fprintf(out, "# %s: %d kernels, workspace %lld*B + %lld floats, scratch %lld floats per thread\n",
          entry_names[p->entry], p->kernels.len, (long long)p->work_total_per_n, (long long)p->work_total_fixed,
          (long long)p->scratch);
  for (int i = 0; i < p->kernels.len; i++) {
    Kernel *k = p->kernels.data[i];
    fprintf(out, "\nkernel %s(", k->name);
    for (int j = 0; j < k->inputs.len; j++) {
      if (j) fprintf(out, ", ");
      dump_ref(out, g, num, k->inputs.data[j]);
    }
    fprintf(out, ") -> (");
    for (int j = 0; j < k->outputs.len; j++) {
      if (j) fprintf(out, ", ");
      dump_ref(out, g, num, k->outputs.data[j]);
      if (((Value *)k->outputs.data[j])->image_local) fprintf(out, " (an image at a time, in the scratch)");
    }
    fprintf(out, ")\n");
    int partials = kernel_partials(k);
    const char *par = k->split == SPLIT_PARAMS            ? "; one block of each parameter's rows per thread"
                      : k->split == SPLIT_OUT             ? "; one block of output rows per thread"
                      : k->split == SPLIT_COLS            ? "; one block of output columns per thread"
                      : k->split == SPLIT_ROWS && partials ? arena_printf("; tasks of %d rows", partials)
                      : k->split == SPLIT_ROWS            ? arena_printf("; about %d blocks of rows per thread", TASKS_PER_THREAD)
                                           : "";
    if (k->kind == K_LOOP) {
      LoopInfo *l = loop_of(g, k->anchor);
      fprintf(out, "  # loop L%d: %lld steps%s, %d body kernels per step:\n", l->id, (long long)l->T,
              l->reverse ? " in reverse" : "", l->prog->kernels.len);
      loop_fused_dump(out, l);
      continue;
    }
    if (k->kind == K_ANCHOR) {
      Value *a = k->anchor;
      bool conv = a->op == OP_conv2d || a->op == OP_conv2d_dx || a->op == OP_conv2d_dw;
      fprintf(out, "  # %s%s loops over %s, epilogue per tile%s%s\n", op_info[a->op].name,
              conv ? (wino_plan(a, NULL)   ? " (Winograd F(2x2,3x3))"
                     : conv_direct(a) ? " (direct, padded planes)"
                                      : " (im2col)")
                   : "", shape_str(k->shape),
              k->post && k->post_arg   ? ", then the pool and its window indices per image"
              : k->post || k->post_arg ? ", then the pool per image"
                                       : "",
              par);
    }
    else
      fprintf(out, "  # loop over %s%s\n", shape_str(k->shape), par);
    for (int j = 0; j < k->members.len; j++) {
      Value *m = k->members.data[j];
      if (m->op == OP_store)
        fprintf(out, "  store");
      else
        fprintf(out, "  %%%d = %s", num[m->id], op_info[m->op].name);
      for (int t = 0; t < m->nin; t++) fprintf(out, "%s %s", t ? "," : "", ref(g, num, m->in[t]));
      if (m->op == OP_store) {
        fprintf(out, " -> ");
        dump_ref(out, g, num, m);
        fputc('\n', out);
        continue;
      }
      fprintf(out, "%s\n", m->partial        ? "  (written, summed over tasks)"
                           : m->image_local  ? "  (written, an image at a time, to the scratch)"
                           : m->materialized ? "  (written)"
                                             : "");
    }
  }
}

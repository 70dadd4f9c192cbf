// codegen.c: kernels -> LLVM IR.
//
// Each kernel of a Program becomes one internal function
//     void PREFIX_kN_NAME(float *buf0, ..., float *bufM, i64 n)
// whose buffers are the kernel's inputs then its outputs, and each Program gets
// one exported entry `void fnn_ENTRY(FnnArgs *)` that carves the buffers out of
// the slabs in FnnArgs and calls the kernels in order. The per-op work is done by
// the emitters of ops_*.c; this file supplies the loops and buffer access.
#include "fnnc.h"
#include "fnnrt.h"

#include <string.h>

#include <llvm-c/DebugInfo.h>

static LLVMBuilderRef B(Emit *e) { return e->cg->b; }

LLVMValueRef cg_i64(Emit *e, int64_t c) { return LLVMConstInt(e->i64, (unsigned long long)c, 1); }
LLVMValueRef cg_f32(Emit *e, double c) { return LLVMConstReal(e->f32, c); }

LLVMValueRef cg_dim(Emit *e, Shape s, int axis) {
  return s.d[axis] == DIM_BATCH ? e->n : cg_i64(e, s.d[axis]);
}

void cg_rows(Emit *e, Shape s, LLVMValueRef *lo, LLVMValueRef *hi) {
  if (e->k && e->k->split == SPLIT_COLS) {
    *lo = cg_i64(e, 0);
    *hi = cg_dim(e, s, 0);
  } else if (shape_batched(s) || (e->k && split_first_axis(e->k))) {
    *lo = e->lo;
    *hi = e->hi;
  } else {
    *lo = cg_i64(e, 0);
    *hi = cg_i64(e, s.d[0]);
  }
}

LLVMValueRef cg_fast(LLVMValueRef inst) {
  if (LLVMIsAInstruction(inst) && LLVMCanValueUseFastMathFlags(inst))
    LLVMSetFastMathFlags(inst, LLVMFastMathAllowContract);
  return inst;
}

LLVMValueRef cg_reassoc(LLVMValueRef inst) {
  if (LLVMIsAInstruction(inst) && LLVMCanValueUseFastMathFlags(inst))
    LLVMSetFastMathFlags(inst, LLVMFastMathAllowContract | LLVMFastMathAllowReassoc);
  return inst;
}

LLVMValueRef cg_gep(Emit *e, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef off) {
  return LLVMBuildInBoundsGEP2(B(e), t, base, &off, 1, "");
}

// Row-major offset; the extent of the batch axis (always axis 0) never enters it.
LLVMValueRef cg_offset(Emit *e, Shape s, LLVMValueRef *idx) {
  if (s.rank == 0) return cg_i64(e, 0);
  LLVMValueRef off = idx[0];
  for (int i = 1; i < s.rank; i++)
    off = LLVMBuildNSWAdd(B(e), LLVMBuildNSWMul(B(e), off, cg_i64(e, s.d[i]), ""), idx[i], "");
  return off;
}

LLVMValueRef cg_alloca(Emit *e, LLVMTypeRef t, int64_t count) {
  LLVMValueRef a = LLVMBuildArrayAlloca(e->alloca_b, t, cg_i64(e, count), "tile");
  LLVMSetAlignment(a, 64);
  return a;
}

LLVMValueRef cg_call_intrinsic(Emit *e, const char *name, LLVMTypeRef t, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id) die("no intrinsic %s", name);
  LLVMTypeRef types[1] = {t};
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(e->cg->mod, id, types, 1);
  LLVMTypeRef fty = LLVMIntrinsicGetType(e->cg->ctx, id, types, 1);
  return cg_fast(LLVMBuildCall2(B(e), fty, fn, args, (unsigned)n, ""));
}

void cg_zero(Emit *e, LLVMValueRef p, LLVMValueRef nfloats) {
  LLVMValueRef bytes = LLVMBuildMul(B(e), nfloats, cg_i64(e, 4), "");
  LLVMBuildMemSet(B(e), p, LLVMConstInt(LLVMInt8TypeInContext(e->cg->ctx), 0, 0), bytes, 4);
}

LLVMValueRef cg_max(Emit *e, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef gt = LLVMBuildFCmp(B(e), LLVMRealOGT, b, a, "");
  return LLVMBuildSelect(B(e), gt, b, a, "");
}
LLVMValueRef cg_min_i64(Emit *e, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(B(e), LLVMBuildICmp(B(e), LLVMIntSLT, a, b, ""), a, b, "");
}
LLVMValueRef cg_max_i64(Emit *e, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(B(e), LLVMBuildICmp(B(e), LLVMIntSGT, a, b, ""), a, b, "");
}

bool cg_shared_fn(Emit *outer, Emit *e, const char *name, int nparams, unsigned ptr_mask, LLVMValueRef *fn,
                  LLVMBasicBlockRef *saved) {
  Codegen *cg = outer->cg;
  if ((*fn = LLVMGetNamedFunction(cg->mod, name))) return false;
  *e = *outer;
  LLVMTypeRef params[16];
  for (int i = 0; i < nparams; i++) params[i] = (ptr_mask >> i) & 1 ? e->ptrty : e->i64;
  *fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(LLVMVoidTypeInContext(cg->ctx), params, (unsigned)nparams, 0));
  LLVMSetLinkage(*fn, LLVMInternalLinkage);
  unsigned noinl = LLVMGetEnumAttributeKindForName("noinline", 8);
  LLVMAddAttributeAtIndex(*fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, noinl, 0));
  backend_mark_vector(*fn);
  *saved = LLVMGetInsertBlock(cg->b);
  e->fn = *fn;
  LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, *fn, "entry"));
  return true;
}

Loop cg_loop_begin(Emit *e, LLVMValueRef lo, LLVMValueRef hi, const char *name) {
  Loop l;
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(B(e));
  l.head = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, name);
  l.body = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, "body");
  l.exit = LLVMAppendBasicBlockInContext(e->cg->ctx, e->fn, "exit");
  LLVMBuildBr(B(e), l.head);
  LLVMPositionBuilderAtEnd(B(e), l.head);
  l.i = LLVMBuildPhi(B(e), e->i64, name);
  LLVMAddIncoming(l.i, &lo, &pre, 1);
  LLVMValueRef c = LLVMBuildICmp(B(e), LLVMIntSLT, l.i, hi, "");
  LLVMBuildCondBr(B(e), c, l.body, l.exit);
  LLVMPositionBuilderAtEnd(B(e), l.body);
  return l;
}

void cg_loop_end(Emit *e, Loop *l) {
  LLVMValueRef next = LLVMBuildAdd(B(e), l->i, cg_i64(e, 1), "");
  LLVMBasicBlockRef from = LLVMGetInsertBlock(B(e));
  LLVMBuildBr(B(e), l->head);
  LLVMAddIncoming(l->i, &next, &from, 1);
  LLVMPositionBuilderAtEnd(B(e), l->exit);
}

// Like cg_loop_end, but asks LLVM not to vectorize or unroll the loop: for
// packing loops with strided stores, where gathers and scatters would cost
// more compile time than they save.
void cg_loop_end_scalar(Emit *e, Loop *l) {
  LLVMValueRef next = LLVMBuildAdd(B(e), l->i, cg_i64(e, 1), "");
  LLVMBasicBlockRef from = LLVMGetInsertBlock(B(e));
  LLVMValueRef br = LLVMBuildBr(B(e), l->head);
  LLVMAddIncoming(l->i, &next, &from, 1);
  LLVMContextRef c = e->cg->ctx;
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(c, NULL, 0);
  LLVMMetadataRef vkey[2] = {LLVMMDStringInContext2(c, "llvm.loop.vectorize.enable", 26),
                             LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(c), 0, 0))};
  LLVMMetadataRef ukey[1] = {LLVMMDStringInContext2(c, "llvm.loop.unroll.disable", 24)};
  LLVMMetadataRef ops[3] = {tmp, LLVMMDNodeInContext2(c, vkey, 2), LLVMMDNodeInContext2(c, ukey, 1)};
  LLVMMetadataRef loop = LLVMMDNodeInContext2(c, ops, 3);
  LLVMMetadataReplaceAllUsesWith(tmp, loop);
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(c, "llvm.loop", 9), LLVMMetadataAsValue(c, loop));
  LLVMPositionBuilderAtEnd(B(e), l->exit);
}

static LLVMTypeRef elem_type(Emit *e, Value *v) { return v->type == T_I32 ? e->i32 : e->f32; }

// Flat access is valid for values with the same shape as a flat kernel's
// iteration space.
static bool use_flat(Emit *e, Value *v) {
  return e->flat && v->shape.rank == e->rank && shape_eq(v->shape, e->k->shape);
}

// Where element idx of v is in its buffer. An image_local value's buffer
// holds one image: the batch index's part comes off (the same form as the
// batch's offset, which the flat epilogue loop and the vectorizer rely on).
static LLVMValueRef elem_offset(Emit *e, Value *v, LLVMValueRef *idx) {
  LLVMValueRef off = use_flat(e, v) && idx == e->idx ? e->flat : cg_offset(e, v->shape, idx);
  if (!v->image_local) return off;
  return LLVMBuildSub(B(e), off, LLVMBuildMul(B(e), idx[0], cg_i64(e, shape_numel(v->shape)), ""), "");
}

LLVMValueRef cg_load_at(Emit *e, Value *v, LLVMValueRef *idx) {
  if (v->op == OP_const) return cg_f32(e, v->fa);
  if (e->ptr[v->id]) {
    LLVMValueRef off = elem_offset(e, v, idx);
    return LLVMBuildLoad2(B(e), elem_type(e, v), cg_gep(e, elem_type(e, v), e->ptr[v->id], off), "");
  }
  if (v->group == GROUP_INLINE) {
    LLVMValueRef in[MAXIN];
    for (int i = 0; i < v->nin; i++) in[i] = cg_load_at(e, v->in[i], idx);
    return emit_rule[v->op](e, v, in);
  }
  die("value %%%d (%s) has no buffer in kernel %s", v->id, op_info[v->op].name, e->k->name);
}

void cg_store_at(Emit *e, Value *v, LLVMValueRef *idx, LLVMValueRef x) {
  if (!e->ptr[v->id]) die("no output buffer for %%%d in %s", v->id, e->k->name);
  LLVMValueRef off = elem_offset(e, v, idx);
  LLVMBuildStore(B(e), x, cg_gep(e, elem_type(e, v), e->ptr[v->id], off));
}

// A convolution's epilogue over image b's output tile, then Kernel.post and
// post_arg (a max-pool of that output, its window indices) over the planes the
// epilogue has just written (an image_local output: one image's planes in the
// scratch, image_buffer).
void cg_image_epilogue(Emit *e, LLVMValueRef b, LLVMValueRef tile) {
  LLVMValueRef outer[1] = {b};
  cg_epilogue(e, outer, 3, tile);
  if (e->k->post || e->k->post_arg) emit_maxpool_image(e, e->k->post, e->k->post_arg, b);
}

// The element of input u of a member at the current index: computed in this
// iteration if u is a member, else read.
static LLVMValueRef operand(Emit *e, Value *u) {
  return e->val[u->id] ? e->val[u->id] : cg_load_at(e, u, e->idx);
}

// Evaluates one member at e->idx and writes it if it is materialized.
static void eval_member(Emit *e, Value *m) {
  LLVMValueRef in[MAXIN] = {0};
  if (!(op_info[m->op].flags & F_GATHER))
    for (int i = 0; i < m->nin; i++) in[i] = operand(e, m->in[i]);
  LLVMValueRef r = emit_rule[m->op](e, m, (op_info[m->op].flags & F_GATHER) ? NULL : in);
  if (m->op == OP_sum || m->op == OP_store) return;
  e->val[m->id] = r;
  if (m->materialized) cg_store_at(e, m, e->idx, r);
}

void cg_epilogue(Emit *e, LLVMValueRef *outer_idx, int tdims, LLVMValueRef tile) {
  Value *a = e->k->anchor;
  Shape s = a->shape;
  int r = s.rank;
  Loop loops[MAXRANK];
  for (int i = 0; i < r - tdims; i++) e->idx[i] = outer_idx[i];
  // A sum that keeps only outer axes (a bias gradient: one channel per tile)
  // adds the tile up in a register and touches memory once per tile.
  uint32_t tile_axes = ((1u << r) - 1) & ~((1u << (r - tdims)) - 1);
  int nv = e->prog->g->values.len;
  if (!e->sumacc) e->sumacc = arena_alloc(sizeof(LLVMValueRef) * (size_t)nv);
  memset(e->sumacc, 0, sizeof(LLVMValueRef) * (size_t)nv);
  for (int i = 0; i < e->k->members.len; i++) {
    Value *m = e->k->members.data[i];
    if (m->op != OP_sum || ((uint32_t)m->ia[0] & tile_axes) || m->in[0]->shape.rank != r) continue;
    e->sumacc[m->id] = cg_alloca(e, e->f32, 1);
    LLVMBuildStore(B(e), cg_f32(e, 0), e->sumacc[m->id]);
  }
  // With such a sum the tile is one flat loop, so the vectorizer sees a plain
  // reduction; values of the anchor's shape are then addressed by the flat
  // index, others by indices recovered from it.
  bool flat = false;
  for (int i = 0; i < nv && !e->tile_ld && tdims > 1; i++) flat |= e->sumacc[i] != NULL;
  LLVMValueRef toff = cg_i64(e, 0), saved_flat = e->flat;
  int saved_rank = e->rank;
  if (flat) {
    int64_t tn = 1;
    for (int i = r - tdims; i < r; i++) tn *= s.d[i];
    loops[r - 1] = cg_loop_begin(e, cg_i64(e, 0), cg_i64(e, tn), "t");
    toff = loops[r - 1].i;
    int64_t stride = 1;
    for (int i = r - 1; i >= r - tdims; i--) {
      LLVMValueRef q = stride > 1 ? LLVMBuildUDiv(B(e), toff, cg_i64(e, stride), "") : toff;
      e->idx[i] = i > r - tdims ? LLVMBuildURem(B(e), q, cg_i64(e, s.d[i]), "") : q;
      stride *= s.d[i];
    }
    LLVMValueRef base = cg_i64(e, 0);
    for (int i = 0; i < r - tdims; i++)
      base = LLVMBuildAdd(B(e), LLVMBuildMul(B(e), base, cg_dim(e, s, i), ""), e->idx[i], "");
    e->flat = LLVMBuildAdd(B(e), LLVMBuildMul(B(e), base, cg_i64(e, tn), ""), toff, "");
    e->rank = r;
  } else {
    for (int i = r - tdims; i < r; i++) {
      bool cols = i == r - 1 && e->k->split == SPLIT_COLS;  // this call's columns only
      loops[i] = cg_loop_begin(e, cols ? e->lo : cg_i64(e, 0), cols ? e->hi : cg_i64(e, s.d[i]), "t");
      e->idx[i] = loops[i].i;
    }
    for (int i = r - tdims; i < r; i++) {
      int64_t ld = i == r - 1 && e->tile_ld ? e->tile_ld : s.d[i];
      toff = LLVMBuildAdd(B(e), LLVMBuildMul(B(e), toff, cg_i64(e, ld), ""), e->idx[i], "");
    }
  }
  memset(e->val, 0, sizeof(LLVMValueRef) * (size_t)e->prog->g->values.len);
  LLVMValueRef av = LLVMBuildLoad2(B(e), e->f32, cg_gep(e, e->f32, tile, toff), "");
  e->val[a->id] = av;
  if (a->materialized) cg_store_at(e, a, e->idx, av);
  for (int i = 0; i < e->k->members.len; i++) {
    Value *m = e->k->members.data[i];
    if (m == a || m->op == OP_xent || m == e->k->post || m == e->k->post_arg) continue;
    eval_member(e, m);
  }
  if (flat) {
    cg_loop_end(e, &loops[r - 1]);
    e->flat = saved_flat;
    e->rank = saved_rank;
  } else {
    for (int i = r - 1; i >= r - tdims; i--) cg_loop_end(e, &loops[i]);
  }
  for (int i = 0; i < e->k->members.len; i++) {
    Value *m = e->k->members.data[i];
    LLVMValueRef acc = e->sumacc[m->id];
    if (!acc) continue;
    e->sumacc[m->id] = NULL;
    LLVMValueRef sub[MAXRANK];
    int j = 0;
    for (int a = 0; a < r; a++)
      if ((m->ia[0] >> a) & 1) sub[j++] = e->idx[a];
    LLVMValueRef p = cg_gep(e, e->f32, e->ptr[m->id], cg_offset(e, m->shape, sub));
    LLVMValueRef old = LLVMBuildLoad2(B(e), e->f32, p, "");
    LLVMBuildStore(B(e), LLVMBuildFAdd(B(e), old, LLVMBuildLoad2(B(e), e->f32, acc, ""), ""), p);
  }
}

// A K_EW kernel: zero the sums, then one loop nest over the iteration shape (a
// single flat loop when every member is purely elementwise).
static void emit_ew_kernel(Emit *e) {
  Kernel *k = e->k;
  Shape s = k->shape;
  bool flat = s.rank > 1;
  for (int i = 0; i < k->members.len; i++) {
    Value *m = k->members.data[i];
    if ((op_info[m->op].flags & F_GATHER) || m->op == OP_sum) flat = false;
    for (int j = 0; j < m->nin; j++)
      if (m->in[j]->shape.rank != 0 && !shape_eq(m->in[j]->shape, s)) flat = false;
  }
  e->rank = s.rank;
  Loop loops[MAXRANK];
  memset(e->val, 0, sizeof(LLVMValueRef) * (size_t)e->prog->g->values.len);
  if (flat) {
    LLVMValueRef lo = cg_i64(e, 0), hi = cg_i64(e, shape_numel(s));
    if (shape_batched(s)) {
      lo = LLVMBuildMul(B(e), e->lo, hi, "");
      hi = LLVMBuildMul(B(e), e->hi, hi, "");
    }
    loops[0] = cg_loop_begin(e, lo, hi, "i");
    e->flat = loops[0].i;
    for (int i = 0; i < s.rank; i++) e->idx[i] = NULL;
  } else {
    for (int i = 0; i < s.rank; i++) {
      LLVMValueRef lo = cg_i64(e, 0), hi = cg_dim(e, s, i);
      if (i == 0) cg_rows(e, s, &lo, &hi);
      loops[i] = cg_loop_begin(e, lo, hi, "i");
      e->idx[i] = loops[i].i;
    }
  }
  for (int i = 0; i < k->members.len; i++) eval_member(e, k->members.data[i]);
  if (flat)
    cg_loop_end(e, &loops[0]);
  else
    for (int i = s.rank - 1; i >= 0; i--) cg_loop_end(e, &loops[i]);
  e->flat = NULL;
}

static void init_types(Emit *e, Codegen *cg) {
  e->cg = cg;
  e->f32 = LLVMFloatTypeInContext(cg->ctx);
  e->i32 = LLVMInt32TypeInContext(cg->ctx);
  e->i64 = LLVMInt64TypeInContext(cg->ctx);
  e->ptrty = LLVMPointerTypeInContext(cg->ctx, 0);
}

// The input leaf whose buffer a store writes (an in-place update of a
// parameter or of optimizer state), or NULL. The store then reuses the leaf's
// argument, so no two arguments of a kernel ever share written memory and all
// can be `noalias`.
static Value *store_alias(Kernel *k, Value *s) {
  if (s->op != OP_store) return NULL;
  for (int i = 0; i < k->inputs.len; i++) {
    Value *u = k->inputs.data[i];
    if (s->param < 0) {
      if (u->op == OP_slab && u->ia[0] == s->ia[0] && u->ia[1] == s->ia[1] && u->ia[2] == s->ia[2]) return u;
      continue;
    }
    if (s->ia[0] == BUF_PARAM && u->op == OP_param && u->param == s->param) return u;
    if (s->ia[0] == BUF_STATE && u->op == OP_state && u->param == s->param && u->ia[0] == s->ia[1]) return u;
  }
  return NULL;
}

// The buffers a kernel takes, in argument order: inputs, then outputs.
static int kernel_args(Kernel *k, Value **args) {
  int n = 0;
  for (int i = 0; i < k->inputs.len; i++) args[n++] = k->inputs.data[i];
  for (int i = 0; i < k->outputs.len; i++)
    if (!store_alias(k, k->outputs.data[i])) args[n++] = k->outputs.data[i];
  return n;
}

static LLVMValueRef emit_kernel(Codegen *cg, Program *p, Kernel *k, const char *prefix) {
  Emit e = {0};
  init_types(&e, cg);
  e.prog = p;
  e.k = k;
  int nv = p->g->values.len;
  e.ptr = arena_alloc(sizeof(LLVMValueRef) * (size_t)nv);
  e.val = arena_alloc(sizeof(LLVMValueRef) * (size_t)nv);
  Value **args = arena_alloc(sizeof(Value *) * (size_t)(k->inputs.len + k->outputs.len));
  int na = kernel_args(k, args);
  int extra = k->scratch ? 1 : 0;
  LLVMTypeRef *pt = arena_alloc(sizeof(LLVMTypeRef) * (size_t)(na + 4));
  for (int i = 0; i < na + extra; i++) pt[i] = e.ptrty;
  for (int i = 0; i < 3; i++) pt[na + extra + i] = e.i64;
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(cg->ctx), pt, (unsigned)(na + extra + 3), 0);
  char *name = arena_printf("%s_%s", prefix, k->name);
  e.fn = LLVMAddFunction(cg->mod, name, fty);
  LLVMSetLinkage(e.fn, LLVMInternalLinkage);
  unsigned noinl = LLVMGetEnumAttributeKindForName("noinline", 8);
  LLVMAddAttributeAtIndex(e.fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, noinl, 0));
  unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
  for (int i = 0; i < na + extra; i++)
    LLVMAddAttributeAtIndex(e.fn, (unsigned)i + 1, LLVMCreateEnumAttribute(cg->ctx, noalias, 0));
  for (int i = 0; i < na; i++) {
    LLVMValueRef prm = LLVMGetParam(e.fn, (unsigned)i);
    LLVMSetValueName2(prm, args[i]->name ? args[i]->name : op_info[args[i]->op].name,
                      strlen(args[i]->name ? args[i]->name : op_info[args[i]->op].name));
    e.ptr[args[i]->id] = prm;
  }
  if (extra) {
    e.scratch = LLVMGetParam(e.fn, (unsigned)na);
    LLVMSetValueName2(e.scratch, "scratch", 7);
  }
  for (int i = 0; i < k->outputs.len; i++) {
    Value *s = k->outputs.data[i], *a = store_alias(k, s);
    if (a) e.ptr[s->id] = e.ptr[a->id];
  }
  e.n = LLVMGetParam(e.fn, (unsigned)(na + extra));
  e.lo = LLVMGetParam(e.fn, (unsigned)(na + extra + 1));
  e.hi = LLVMGetParam(e.fn, (unsigned)(na + extra + 2));
  LLVMSetValueName2(e.n, "n", 1);
  LLVMSetValueName2(e.lo, "lo", 2);
  LLVMSetValueName2(e.hi, "hi", 2);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(cg->ctx, e.fn, "entry");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cg->ctx, e.fn, "body");
  e.alloca_b = LLVMCreateBuilderInContext(cg->ctx);
  LLVMPositionBuilderAtEnd(e.alloca_b, entry);
  LLVMPositionBuilderAtEnd(cg->b, body);
  // Sums accumulate: zero them first (only this call's rows of a batched one).
  for (int i = 0; i < k->members.len; i++) {
    Value *m = k->members.data[i];
    if (m->op != OP_sum) continue;
    LLVMValueRef per = cg_i64(&e, shape_numel(m->shape));
    if (shape_batched(m->shape))
      cg_zero(&e, cg_gep(&e, e.f32, e.ptr[m->id], LLVMBuildMul(cg->b, e.lo, per, "")),
              LLVMBuildMul(cg->b, LLVMBuildSub(cg->b, e.hi, e.lo, ""), per, ""));
    else
      cg_zero(&e, e.ptr[m->id], per);
  }
  if (k->kind == K_EW)
    emit_ew_kernel(&e);
  else
    emit_rule[k->anchor->op](&e, k->anchor, NULL);
  LLVMBuildRetVoid(cg->b);
  LLVMBuildBr(e.alloca_b, body);
  LLVMDisposeBuilder(e.alloca_b);
  return e.fn;
}

// FnnArgs is read as this many 8-byte slots (runtime/fnnrt.h): 8, 11 and 12
// are integers, the rest pointers.
enum { NSLOTS = 13 };

// The step buffers of the loop whose body is being called (emit_loop): by
// formal, and by output.
static LLVMValueRef *loop_fptr, *loop_optr;
// A slab leaf's or slab store's floats: slab + [state slot * train_floats] + offset.
static LLVMValueRef slab_ptr(Emit *e, Graph *g, LLVMValueRef *slot, Value *v) {
  int which = v->ia[0] == BUF_PARAM ? 0 : v->ia[0] == BUF_GRAD ? 1 : 2;
  int64_t off = (v->ia[0] == BUF_STATE ? v->ia[1] * g->train_floats : 0) + v->ia[2];
  return cg_gep(e, e->f32, slot[which], cg_i64(e, off));
}

// The pointer to v's buffer inside the entry function.
static LLVMValueRef entry_ptr(Emit *e, Program *p, LLVMValueRef *slot, Value *v) {
  Graph *g = p->g;
  LLVMValueRef off;
  switch (v->op) {
  case OP_reshape: return entry_ptr(e, p, slot, v->in[0]);
  case OP_input: return slot[4];
  case OP_label: return slot[5];
  case OP_param: return cg_gep(e, e->f32, slot[0], cg_i64(e, g->params[v->param].offset));
  case OP_state:
    return cg_gep(e, e->f32, slot[2], cg_i64(e, v->ia[0] * g->train_floats + g->params[v->param].toff));
  case OP_hyper: return cg_gep(e, e->f32, slot[6], cg_i64(e, v->ia[0]));
  case OP_formal: return loop_fptr[v->ia[0]];
  case OP_slab: return slab_ptr(e, g, slot, v);
  case OP_store:
    if (v->param < 0 && v->ia[0] != BUF_OUT && v->ia[0] != BUF_LOOP) return slab_ptr(e, g, slot, v);
    switch ((BufKind)v->ia[0]) {
    case BUF_PARAM: return cg_gep(e, e->f32, slot[0], cg_i64(e, g->params[v->param].offset));
    case BUF_GRAD: return cg_gep(e, e->f32, slot[1], cg_i64(e, g->params[v->param].toff));
    case BUF_STATE:
      return cg_gep(e, e->f32, slot[2], cg_i64(e, v->ia[1] * g->train_floats + g->params[v->param].toff));
    case BUF_OUT: return cg_gep(e, e->f32, slot[7], cg_i64(e, v->ia[1]));
    case BUF_LOOP: return loop_optr[v->ia[1]];
    default: die("store to buffer kind %d", (int)v->ia[0]);
    }
  default:
    if (p->work_per_n[v->id] < 0) die("%%%d (%s) has no workspace", v->id, op_info[v->op].name);
    off = LLVMBuildAdd(B(e), LLVMBuildMul(B(e), e->n, cg_i64(e, p->work_per_n[v->id]), ""),
                       cg_i64(e, p->work_fixed[v->id]), "");
    return cg_gep(e, e->f32, slot[3], off);
  }
}

// The base of v's partial slots in the workspace.
static LLVMValueRef part_ptr(Emit *e, Program *p, LLVMValueRef *slot, Value *v) {
  LLVMValueRef off = LLVMBuildAdd(B(e), LLVMBuildMul(B(e), e->n, cg_i64(e, p->part_per_n[v->id]), ""),
                                  cg_i64(e, p->part_fixed[v->id]), "");
  return cg_gep(e, e->f32, slot[3], off);
}

static int64_t part_stride(Value *v) { return pad16(shape_numel(v->shape)); }

// The runtime function `name` (fnnrt.h) of type ty, declared on first use.
static LLVMValueRef runtime_fn(Emit *e, const char *name, LLVMTypeRef ty) {
  LLVMValueRef f = LLVMGetNamedFunction(e->cg->mod, name);
  return f ? f : LLVMAddFunction(e->cg->mod, name, ty);
}

// double fnn_prof_begin(void *prof) / void fnn_prof_end(void *prof, i64 kernel, double t0)
static LLVMValueRef prof_fn(Emit *e, bool begin, LLVMTypeRef *ty) {
  LLVMTypeRef d = LLVMDoubleTypeInContext(e->cg->ctx);
  LLVMTypeRef bp[1] = {e->ptrty}, ep[3] = {e->ptrty, e->i64, d};
  *ty = begin ? LLVMFunctionType(d, bp, 1, 0) : LLVMFunctionType(LLVMVoidTypeInContext(e->cg->ctx), ep, 3, 0);
  return runtime_fn(e, begin ? "fnn_prof_begin" : "fnn_prof_end", *ty);
}

static void call_kernel(Emit *e, Kernel *k, LLVMValueRef fn, LLVMValueRef *bufs, int na, LLVMValueRef scratch,
                        LLVMValueRef lo, LLVMValueRef hi) {
  LLVMValueRef cargs[68];
  LLVMTypeRef ptys[68];
  for (int j = 0; j < na; j++) {
    cargs[j] = bufs[j];
    ptys[j] = e->ptrty;
  }
  if (k->scratch) {
    cargs[na] = scratch;
    ptys[na++] = e->ptrty;
  }
  LLVMValueRef tail[3] = {e->n, lo, hi};
  for (int j = 0; j < 3; j++) {
    cargs[na] = tail[j];
    ptys[na++] = e->i64;
  }
  LLVMTypeRef kty = LLVMFunctionType(LLVMVoidTypeInContext(e->cg->ctx), ptys, (unsigned)na, 0);
  LLVMBuildCall2(B(e), kty, fn, cargs, (unsigned)na, "");
}

// Where a kernel's image_local output lives: in the calling thread's scratch,
// after the anchor's own. It is a kernel argument of its own (noalias), so
// that LLVM knows the epilogue's stores to it do not touch the output tile.
static LLVMValueRef image_buffer(Emit *e, Kernel *k, LLVMValueRef scratch) {
  return cg_gep(e, e->f32, scratch, cg_i64(e, image_local_at(k)));
}

static LLVMValueRef threads(Emit *e) {
  LLVMTypeRef ity = LLVMFunctionType(LLVMInt32TypeInContext(e->cg->ctx), NULL, 0, 0);
  LLVMValueRef fn = runtime_fn(e, "fnn_threads", ity);
  return LLVMBuildSExt(B(e), LLVMBuildCall2(B(e), ity, fn, NULL, 0, ""), e->i64, "");
}

static LLVMValueRef block_size(Emit *e, LLVMValueRef count, LLVMValueRef parts, int64_t align, LLVMValueRef *ntasks);

// Thread t's block [*lo, *hi) of `count` (in multiples of align), each unit
// `weight` elements: cut at the pool's balanced shares (fnn_split_at), which
// also learns how much work the block is (fnn_split_block, pool.c).
static void split_block(Emit *e, LLVMValueRef t, int64_t count, int64_t align, int64_t weight, LLVMValueRef *lo,
                        LLVMValueRef *hi) {
  LLVMTypeRef pp[4] = {e->i64, e->i64, e->i64, e->i64};
  LLVMTypeRef bty = LLVMFunctionType(e->i64, pp, 4, 0), aty = LLVMFunctionType(e->i64, pp, 3, 0);
  LLVMValueRef args[4] = {t, cg_i64(e, count), cg_i64(e, align), cg_i64(e, weight)};
  *lo = LLVMBuildCall2(B(e), bty, runtime_fn(e, "fnn_split_block", bty), args, 4, "");
  args[0] = LLVMBuildAdd(B(e), t, cg_i64(e, 1), "");
  *hi = LLVMBuildCall2(B(e), aty, runtime_fn(e, "fnn_split_at", aty), args, 3, "");
}

// Task t of the optimizer's update over a run of the parameter slab: block t
// of each parameter's rows (cut as split_align says, like the dense layer
// and the weight gradient that use them), one kernel call per parameter. The
// padding between parameters is zero in every slab and stays so untouched.
static void update_segments(Emit *e, Program *p, Kernel *k, LLVMValueRef kfn, LLVMValueRef *bufs, int na,
                            LLVMValueRef scratch, LLVMValueRef t) {
  int64_t off0 = -1, len = shape_numel(k->shape);
  for (int i = 0; i < k->inputs.len; i++) {
    Value *u = k->inputs.data[i];
    if (u->op == OP_slab && u->ia[0] == BUF_PARAM) off0 = u->ia[2];
  }
  if (off0 < 0) die("update kernel %s reads no parameter slab", k->name);
  Graph *g = p->g;
  for (int i = 0; i < g->nparams; i++) {
    Param *pa = &g->params[i];
    if (pa->offset < off0 || pa->offset >= off0 + len) continue;
    int64_t rows = pa->shape.rank ? pa->shape.d[0] : 1, width = shape_numel(pa->shape) / (rows ? rows : 1);
    LLVMValueRef r0, r1;
    split_block(e, t, rows, split_align(rows), width, &r0, &r1);
    LLVMValueRef base = cg_i64(e, pa->offset - off0), w = cg_i64(e, width);
    call_kernel(e, k, kfn, bufs, na, scratch, LLVMBuildAdd(B(e), base, LLVMBuildMul(B(e), r0, w, ""), ""),
                LLVMBuildAdd(B(e), base, LLVMBuildMul(B(e), r1, w, ""), ""));
  }
}

// Blocks of `align` rows: about count/parts rows each, rounded up to whole
// blocks; *ntasks (if wanted) of them cover count.
static LLVMValueRef block_size(Emit *e, LLVMValueRef count, LLVMValueRef parts, int64_t align, LLVMValueRef *ntasks) {
  LLVMValueRef per = LLVMBuildSDiv(B(e), LLVMBuildAdd(B(e), count, LLVMBuildSub(B(e), parts, cg_i64(e, 1), ""), ""), parts, "");
  per = LLVMBuildAdd(B(e), per, cg_i64(e, align - 1), "");
  LLVMValueRef rows = LLVMBuildMul(B(e), LLVMBuildSDiv(B(e), per, cg_i64(e, align), ""), cg_i64(e, align), "");
  if (ntasks) *ntasks = LLVMBuildSDiv(B(e), LLVMBuildAdd(B(e), count, LLVMBuildSub(B(e), rows, cg_i64(e, 1), ""), ""), rows, "");
  return rows;
}

// A parallel kernel: task t calls the kernel on its block t (of rows,
// columns or parameter rows: Kernel.split) with its own partial slots and
// scratch; the entry hands the tasks to fnn_parallel, then adds up the
// partial slots in task order. With input_copies, a task on thread tid reads
// copy tid of the batch if there is one (x + tid * x_stride), else copy 0.
static void call_parallel(Emit *e, Program *p, Kernel *k, LLVMValueRef kfn, Value **kargs, LLVMValueRef *bufs,
                          int na, LLVMValueRef *slot) {
  Codegen *cg = e->cg;
  // The task: void task(i64 *ctx, i64 t, i64 tid); ctx = bufs..., n, scratch,
  // rows (per task) [, x_copies, x_stride].
  LLVMTypeRef tp[3] = {e->ptrty, e->i64, e->i64};
  LLVMTypeRef tty = LLVMFunctionType(LLVMVoidTypeInContext(cg->ctx), tp, 3, 0);
  LLVMValueRef tfn = LLVMAddFunction(cg->mod, arena_printf("%s_%s_task", entry_names[p->entry], k->name), tty);
  LLVMSetLinkage(tfn, LLVMInternalLinkage);
  backend_mark_glue(tfn);
  LLVMBasicBlockRef saved = LLVMGetInsertBlock(B(e));
  Emit te = *e;
  te.fn = tfn;
  LLVMPositionBuilderAtEnd(B(e), LLVMAppendBasicBlockInContext(cg->ctx, tfn, "entry"));
  LLVMValueRef ctx = LLVMGetParam(tfn, 0), t = LLVMGetParam(tfn, 1), tid = LLVMGetParam(tfn, 2);
  bool copies = p->input_copies && kernel_reads_input(k);
  int nctx = na + (copies ? 5 : 3);  // bufs..., n, scratch, rows[, x_copies, x_stride]
  LLVMValueRef tb[70] = {0};
  for (int j = 0; j < nctx; j++) {
    LLVMValueRef ix = cg_i64(&te, j);
    LLVMValueRef sp = LLVMBuildInBoundsGEP2(B(e), e->i64, ctx, &ix, 1, "");
    tb[j] = LLVMBuildLoad2(B(e), j == na + 1 || j < na ? e->ptrty : e->i64, sp, "");
  }
  te.n = tb[na];
  if (copies) {
    LLVMValueRef own = LLVMBuildICmp(B(e), LLVMIntULT, tid, tb[na + 3], "");
    LLVMValueRef off = LLVMBuildSelect(B(e), own, LLVMBuildMul(B(e), tid, tb[na + 4], ""), cg_i64(&te, 0), "");
    for (int j = 0; j < k->inputs.len; j++)
      if (is_model_input(kargs[j])) tb[j] = cg_gep(&te, e->f32, tb[j], off);
  }
  for (int j = k->inputs.len; j < na; j++)
    if (kargs[j]->partial) tb[j] = cg_gep(&te, e->f32, tb[j], LLVMBuildMul(B(e), t, cg_i64(&te, part_stride(kargs[j])), ""));
  LLVMValueRef scratch = cg_gep(&te, e->f32, tb[na + 1], LLVMBuildMul(B(e), tid, cg_i64(&te, p->scratch), ""));
  for (int j = k->inputs.len; j < na; j++)
    if (kargs[j]->image_local) tb[j] = image_buffer(&te, k, scratch);
  if (k->split == SPLIT_PARAMS) {
    update_segments(&te, p, k, kfn, tb, na, scratch, t);
  } else if (k->split == SPLIT_OUT || k->split == SPLIT_COLS) {
    int64_t lim = k->shape.d[k->split == SPLIT_OUT ? 0 : k->shape.rank - 1];
    LLVMValueRef lo, hi;
    split_block(&te, t, lim, k->align, 1, &lo, &hi);
    call_kernel(&te, k, kfn, tb, na, scratch, lo, hi);
  } else {
    LLVMValueRef trows = tb[na + 2];
    LLVMValueRef lo = LLVMBuildMul(B(e), t, trows, "");
    call_kernel(&te, k, kfn, tb, na, scratch, lo, cg_min_i64(&te, LLVMBuildAdd(B(e), lo, trows, ""), te.n));
  }
  LLVMBuildRetVoid(B(e));
  LLVMPositionBuilderAtEnd(B(e), saved);

  // The call: fill the context, run the tasks. Batch rows of a kernel that
  // reduces over them go in fixed tasks of kernel_partials rows (the
  // reductions are partials, added in task order). Output columns of a
  // dense layer (or of its input gradient), output rows of a weight gradient
  // (every task packs its operand), rows of each parameter in the update: one
  // block per thread, whole multiples of `align`, cut at the shares the pool
  // balances (fnn_parallel_split). Batch rows that nothing adds up: about
  // TASKS_PER_THREAD blocks per thread, whole register tiles, so that a thread
  // another process holds up leaves its share to the others. Splitting what
  // nothing adds up changes no result.
  LLVMValueRef rows = cg_i64(e, 0), ntasks = NULL;
  int part = kernel_partials(k);
  switch (k->split) {
  case SPLIT_PARAMS:
  case SPLIT_COLS:
  case SPLIT_OUT: break;  // one block per thread, cut at the pool's shares (split_block)
  case SPLIT_ROWS:
    if (part) {
      rows = cg_i64(e, part);
      ntasks = LLVMBuildSDiv(B(e), LLVMBuildAdd(B(e), e->n, cg_i64(e, part - 1), ""), cg_i64(e, part), "");
    } else {
      LLVMValueRef nt = LLVMBuildMul(B(e), threads(e), cg_i64(e, TASKS_PER_THREAD), "");
      rows = block_size(e, e->n, nt, k->align > 0 ? k->align : 8, &ntasks);
    }
    break;
  default: die("kernel %s is not split", k->name);
  }
  LLVMValueRef ctxa = cg_alloca(e, e->i64, nctx);
  LLVMValueRef tail[5] = {e->n, slot[9], rows, slot[11], slot[12]};
  for (int j = 0; j < nctx; j++) {
    LLVMValueRef ix = cg_i64(e, j);
    LLVMValueRef sp = LLVMBuildInBoundsGEP2(B(e), e->i64, ctxa, &ix, 1, "");
    LLVMBuildStore(B(e), j < na ? bufs[j] : tail[j - na], sp);
  }
  LLVMTypeRef pp[3] = {e->ptrty, e->ptrty, e->i64};
  LLVMTypeRef pty = LLVMFunctionType(LLVMVoidTypeInContext(cg->ctx), pp, ntasks ? 3 : 2, 0);
  LLVMValueRef pargs[3] = {tfn, ctxa, ntasks};
  LLVMBuildCall2(B(e), pty, runtime_fn(e, ntasks ? "fnn_parallel" : "fnn_parallel_split", pty), pargs, ntasks ? 3 : 2, "");
  if (!ntasks) return;  // (nothing to add up: no partials)
  // out[i] = sum over tasks t (in order) of part[t][i]: fnn_sum_slots, in the
  // runtime (the entry's own code is compiled for size, not for loops).
  LLVMTypeRef sp[5] = {e->ptrty, e->ptrty, e->i64, e->i64, e->i64};
  LLVMTypeRef sty = LLVMFunctionType(LLVMVoidTypeInContext(cg->ctx), sp, 5, 0);
  LLVMValueRef sfn = runtime_fn(e, "fnn_sum_slots", sty);
  for (int j = k->inputs.len; j < na; j++) {
    Value *v = kargs[j];
    if (!v->partial) continue;
    LLVMValueRef sargs[5] = {entry_ptr(e, p, slot, v), bufs[j], cg_i64(e, part_stride(v)),
                             cg_i64(e, shape_numel(v->shape)), ntasks};
    LLVMBuildCall2(B(e), sty, sfn, sargs, 5, "");
  }
}

// Calls kernel k of p (on the pool if it is parallel) with its buffers.
static void run_kernel(Emit *e, Program *p, Kernel *k, LLVMValueRef fn, LLVMValueRef *slot) {
  Value *kargs[64];
  if (k->inputs.len + k->outputs.len >= 60) die("kernel %s has too many buffers", k->name);
  int na = kernel_args(k, kargs);
  LLVMValueRef cargs[64];
  // A partial value's producer writes its task slots; its readers read the sum.
  for (int j = 0; j < na; j++)
    cargs[j] = j < k->inputs.len      ? entry_ptr(e, p, slot, kargs[j])
               : kargs[j]->partial    ? part_ptr(e, p, slot, kargs[j])
               : kargs[j]->image_local ? image_buffer(e, k, slot[9])  // (a parallel task uses its own)
                                       : entry_ptr(e, p, slot, kargs[j]);
  if (k->split != SPLIT_NONE)
    call_parallel(e, p, k, fn, kargs, cargs, na, slot);
  else
    call_kernel(e, k, fn, cargs, na, slot[9], cg_i64(e, 0), e->n);
}

//
// Loops: the step buffers live in the workspace (fuse.c, plan_loop). Before
// the steps, states get their initial values and sums are zeroed; at step t,
// step t of each sliced sequence is copied in, the body's kernels run, the
// outputs are copied (stacks) or added (sums) out, and the states take their
// updates; after the last step, the last values are copied out.
//
static LLVMValueRef ws_ptr(Emit *e, LLVMValueRef *slot, int64_t per_n, int64_t fixed) {
  return cg_gep(e, e->f32, slot[3], LLVMBuildAdd(B(e), LLVMBuildMul(B(e), e->n, cg_i64(e, per_n), ""), cg_i64(e, fixed), ""));
}

static LLVMValueRef nelems(Emit *e, Shape s) {
  LLVMValueRef n = cg_i64(e, shape_numel(s));
  return shape_batched(s) ? LLVMBuildMul(B(e), n, e->n, "") : n;
}

static void copy_floats(Emit *e, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef count) {
  LLVMBuildMemCpy(B(e), dst, 4, src, 4, LLVMBuildMul(B(e), count, cg_i64(e, 4), ""));
}

// Rows b of a [B, ...] step buffer and rows (b, t) of a [B, T, ...] sequence:
// to_seq copies the step into the sequence, else the other way.
static void copy_step(Emit *e, LLVMValueRef step, LLVMValueRef seq, LLVMValueRef t, int64_t T, int64_t width, bool to_seq) {
  Loop lb = cg_loop_begin(e, cg_i64(e, 0), e->n, "b");
  LLVMValueRef so = LLVMBuildMul(B(e), LLVMBuildAdd(B(e), LLVMBuildMul(B(e), lb.i, cg_i64(e, T), ""), t, ""), cg_i64(e, width), "");
  LLVMValueRef po = LLVMBuildMul(B(e), lb.i, cg_i64(e, width), "");
  LLVMValueRef sp = cg_gep(e, e->f32, seq, so), pp = cg_gep(e, e->f32, step, po);
  copy_floats(e, to_seq ? sp : pp, to_seq ? pp : sp, cg_i64(e, width));
  cg_loop_end_scalar(e, &lb);
}

// dst[i] (+)= x for i < count: a fill with a constant, or an accumulation.
static void fill_or_add(Emit *e, LLVMValueRef dst, LLVMValueRef src, double c, LLVMValueRef count) {
  Loop li = cg_loop_begin(e, cg_i64(e, 0), count, "i");
  LLVMValueRef p = cg_gep(e, e->f32, dst, li.i);
  LLVMValueRef x = cg_f32(e, c);
  if (src) {
    LLVMValueRef a = LLVMBuildLoad2(B(e), e->f32, p, "");
    LLVMValueRef b = LLVMBuildLoad2(B(e), e->f32, cg_gep(e, e->f32, src, li.i), "");
    x = LLVMBuildFAdd(B(e), a, b, "");
  }
  LLVMBuildStore(B(e), x, p);
  cg_loop_end(e, &li);
}

static void emit_loop(Emit *e, Program *p, Kernel *k, LLVMValueRef *bfns, LLVMValueRef *slot) {
  Value *lv = k->anchor;
  LoopInfo *l = loop_of(p->g, lv);
  Program *bp = l->prog;
  LLVMValueRef *fptr = arena_alloc(sizeof(LLVMValueRef) * (size_t)(l->nformals + 1));
  LLVMValueRef *optr = arena_alloc(sizeof(LLVMValueRef) * (size_t)(l->nouts + 1));
  LLVMValueRef *outp = arena_alloc(sizeof(LLVMValueRef) * (size_t)(l->nouts + 1));
  LLVMValueRef *inp = arena_alloc(sizeof(LLVMValueRef) * (size_t)(l->nformals + 1));
  for (int i = 0; i < l->nformals; i++) {
    Value *in = lv->in[i];
    inp[i] = in->op == OP_const ? NULL : entry_ptr(e, p, slot, in);
    fptr[i] = l->formals[i].kind == LF_INVAR ? inp[i] : ws_ptr(e, slot, l->fbuf_per_n[i], l->fbuf_fixed[i]);
  }
  for (int j = 0; j < l->nouts; j++)
    if (l->outs[j].kind != LO_NONE) optr[j] = ws_ptr(e, slot, l->obuf_per_n[j], l->obuf_fixed[j]);
  for (int i = 0; i < k->members.len; i++) {
    Value *m = k->members.data[i];
    if (m->op == OP_loopout) outp[m->ia[0]] = entry_ptr(e, p, slot, m);
  }
  LLVMValueRef bslot[NSLOTS];
  memcpy(bslot, slot, sizeof bslot);
  bslot[3] = ws_ptr(e, slot, l->region_per_n, l->region_fixed);
  for (int i = 0; i < l->nformals; i++) {
    Formal *f = &l->formals[i];
    if (f->kind != LF_STATE) continue;
    if (inp[i])
      copy_floats(e, fptr[i], inp[i], nelems(e, f->shape));
    else
      fill_or_add(e, fptr[i], NULL, lv->in[i]->fa, nelems(e, f->shape));
  }
  // Sums start at zero; so do the stacks and last values of a truncated loop
  // (the steps it skips contribute nothing).
  for (int j = 0; j < l->nouts; j++) {
    if (!outp[j]) continue;
    Shape s = l->outs[j].store->in[0]->shape;
    LLVMValueRef count = nelems(e, s);
    if (l->outs[j].kind == LO_STACK) count = LLVMBuildMul(B(e), count, cg_i64(e, l->T), "");
    if (outp[j] && (l->outs[j].kind == LO_SUM || l->steps < l->T)) cg_zero(e, outp[j], count);
  }
  Loop ls = cg_loop_begin(e, cg_i64(e, 0), cg_i64(e, l->steps), "step");
  LLVMValueRef t = l->reverse ? LLVMBuildSub(B(e), cg_i64(e, l->T - 1), ls.i, "") : ls.i;
  for (int i = 0; i < l->nformals; i++)
    if (l->formals[i].kind == LF_SLICE)
      copy_step(e, fptr[i], inp[i], t, l->T, shape_numel(l->formals[i].shape), false);
  loop_fptr = fptr;
  loop_optr = optr;
  for (int j = 0; j < bp->kernels.len; j++) run_kernel(e, bp, bp->kernels.data[j], bfns[j], bslot);
  loop_fptr = loop_optr = NULL;
  for (int j = 0; j < l->nouts; j++) {
    if (!outp[j]) continue;
    Shape s = l->outs[j].store->in[0]->shape;
    if (outp[j] && l->outs[j].kind == LO_STACK) copy_step(e, optr[j], outp[j], t, l->T, shape_numel(s), true);
    if (outp[j] && l->outs[j].kind == LO_SUM) fill_or_add(e, outp[j], optr[j], 0, nelems(e, s));
  }
  for (int i = 0; i < l->nformals; i++)
    if (l->formals[i].kind == LF_STATE) copy_floats(e, fptr[i], optr[l->formals[i].next], nelems(e, l->formals[i].shape));
  cg_loop_end_scalar(e, &ls);
  for (int j = 0; j < l->nouts && l->steps == l->T; j++)
    if (outp[j] && l->outs[j].kind == LO_LAST) copy_floats(e, outp[j], optr[j], nelems(e, l->outs[j].store->in[0]->shape));
}

void codegen_program(Codegen *cg, Program *p) {
  const char *prefix = entry_names[p->entry];
  LLVMValueRef *fns = arena_alloc(sizeof(LLVMValueRef) * (size_t)p->kernels.len);
  LLVMValueRef **bfns = arena_alloc(sizeof(LLVMValueRef *) * (size_t)p->kernels.len);
  for (int i = 0; i < p->kernels.len; i++) {
    Kernel *k = p->kernels.data[i];
    if (k->kind != K_LOOP) {
      fns[i] = emit_kernel(cg, p, k, prefix);
      continue;
    }
    Program *bp = loop_of(p->g, k->anchor)->prog;
    bfns[i] = arena_alloc(sizeof(LLVMValueRef) * (size_t)(bp->kernels.len + 1));
    for (int j = 0; j < bp->kernels.len; j++) bfns[i][j] = emit_kernel(cg, bp, bp->kernels.data[j], prefix);
  }

  Emit e = {0};
  init_types(&e, cg);
  e.prog = p;
  LLVMTypeRef pt = e.ptrty;
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(cg->ctx), &pt, 1, 0);
  char *name = arena_printf("fnn_%s", prefix);
  LLVMValueRef fn = LLVMAddFunction(cg->mod, name, fty);
  backend_mark_glue(fn);
  e.fn = fn;
  LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
  LLVMValueRef args = LLVMGetParam(fn, 0);
  LLVMValueRef slot[NSLOTS];
  for (int i = 0; i < NSLOTS; i++) {
    LLVMValueRef ix = cg_i64(&e, i);
    LLVMValueRef sp = LLVMBuildInBoundsGEP2(cg->b, e.i64, args, &ix, 1, "");
    slot[i] = LLVMBuildLoad2(cg->b, i == 8 || i >= 11 ? e.i64 : e.ptrty, sp, "");
  }
  e.alloca_b = LLVMCreateBuilderInContext(cg->ctx);
  LLVMPositionBuilderBefore(e.alloca_b, LLVMGetFirstInstruction(LLVMGetInsertBlock(cg->b)));
  e.n = slot[8];
  for (int i = 0; i < p->kernels.len; i++) {
    Kernel *k = p->kernels.data[i];
    LLVMTypeRef bty, ety;
    LLVMValueRef bfn = prof_fn(&e, true, &bty), efn = prof_fn(&e, false, &ety);
    LLVMValueRef t0 = LLVMBuildCall2(cg->b, bty, bfn, &slot[10], 1, "");
    if (k->kind == K_LOOP)
      emit_loop(&e, p, k, bfns[i], slot);
    else
      run_kernel(&e, p, k, fns[i], slot);
    LLVMValueRef pargs[3] = {slot[10], cg_i64(&e, cg->kernels_done + i), t0};
    LLVMBuildCall2(cg->b, ety, efn, pargs, 3, "");
  }
  LLVMBuildRetVoid(cg->b);
  LLVMDisposeBuilder(e.alloca_b);
  cg->kernels_done += p->kernels.len;
}

void codegen_descriptor(Codegen *cg, const char *d) {
  LLVMValueRef str = LLVMConstStringInContext(cg->ctx, d, (unsigned)strlen(d), 0);
  LLVMValueRef gv = LLVMAddGlobal(cg->mod, LLVMTypeOf(str), "fnn_desc");
  LLVMSetInitializer(gv, str);
  LLVMSetGlobalConstant(gv, 1);
}

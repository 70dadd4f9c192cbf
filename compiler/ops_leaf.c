// ops_leaf.c: leaves (buffers and constants) and stores.
//
// A leaf's shape is given when it is created (ir_leaf); it has no gradient rule
// of its own: autodiff stops at leaves and records the adjoints of parameters.
// Leaves are never computed by a kernel: codegen loads them from their buffers
// (cg_load_at), and constants become immediate operands.
#include "fnnc.h"

#define LEAF_RULES(name)                                                         \
  bool shape_##name(Value *v) { return true; }                                   \
  void grad_##name(Builder *b, Value *v, Value *g, Value **dx) {}                \
  LLVMValueRef emit_##name(Emit *e, Value *v, LLVMValueRef *in) { return cg_load_at(e, v, e->idx); }

// input: x, the normalised input batch [B, ...]
LEAF_RULES(input)
// label: y, i32[B] class ids or f32[B, W] regression targets
LEAF_RULES(label)
// param: one parameter tensor, read from the parameter slab
LEAF_RULES(param)
// state: optimizer state (Adam's m and v, SGD's velocity), from the state slab
LEAF_RULES(state)
// hyper: a runtime scalar (learning rate, bias corrections, 1/n)
LEAF_RULES(hyper)
// slab: a run of consecutive parameters' floats in the parameter, gradient or
// state slab as one flat tensor (the optimizer updates all of them in one loop)
LEAF_RULES(slab)

// const: a scalar constant
bool shape_const(Value *v) {
  v->shape.rank = 0;
  v->type = T_F32;
  return true;
}
void grad_const(Builder *b, Value *v, Value *g, Value **dx) {}
LLVMValueRef emit_const(Emit *e, Value *v, LLVMValueRef *in) { return cg_f32(e, v->fa); }

// store: buffer[ia[0]] <- in[0], elementwise. The kernel that computes in[0]
// writes it (codegen treats a store as an output of that kernel).
bool shape_store(Value *v) {
  v->shape = v->in[0]->shape;
  v->type = v->in[0]->type;
  return true;
}
void grad_store(Builder *b, Value *v, Value *g, Value **dx) {}
LLVMValueRef emit_store(Emit *e, Value *v, LLVMValueRef *in) {
  cg_store_at(e, v, e->idx, in[0]);
  return in[0];
}

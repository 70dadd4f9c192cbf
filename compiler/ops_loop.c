// ops_loop.c: the rules of the loop ops. The loop machinery (lowering,
// differentiation, hoisting) is in loop.c; fusion gives each loop a kernel of
// its own and codegen runs its body once per step.
#include "fnnc.h"

// formal: a loop body's view of one loop input, [B, ...] per step for a slice
// or a state, the whole value for an invariant. Its shape is given at creation.
bool shape_formal(Value *v) { return true; }
void grad_formal(Builder *b, Value *v, Value *g, Value **dx) {}
LLVMValueRef emit_formal(Emit *e, Value *v, LLVMValueRef *in) { return cg_load_at(e, v, e->idx); }

// loop: runs a body graph T times. It has no tensor value of its own (its
// results are loopouts), hence the empty shape.
//   the gradient is the reverse loop: autodiff calls loop_grad (loop.c)
bool shape_loop(Value *v) {
  v->shape.rank = 0;
  v->type = T_F32;
  return true;
}
void grad_loop(Builder *b, Value *v, Value *g, Value **dx) { die("loop gradients go through loop_grad"); }
LLVMValueRef emit_loop(Emit *e, Value *v, LLVMValueRef *in) { die("loops are run by their kernel"); }

// loopout: output ia[0] of a loop, with the shape in ia[1..]: [B, T, ...] for a
// stack, [B, ...] for the last step, the step's shape for a sum.
//   its adjoint is handed to loop_grad with the others of its loop
bool shape_loopout(Value *v) {
  v->shape.rank = (int)v->ia[1];
  for (int i = 0; i < v->shape.rank; i++) v->shape.d[i] = v->ia[2 + i];
  v->type = T_F32;
  return true;
}
void grad_loopout(Builder *b, Value *v, Value *g, Value **dx) {}
LLVMValueRef emit_loopout(Emit *e, Value *v, LLVMValueRef *in) { die("loopouts are written by their loop"); }

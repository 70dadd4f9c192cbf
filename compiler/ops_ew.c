// ops_ew.c: elementwise arithmetic and activations.
//
// Binary ops take two equal shapes, or a scalar on either side. A gradient that
// flows back to a scalar operand is summed over the whole tensor (unbroadcast).
// exp, log, tanh and sigmoid are built as inline arithmetic by vmath.c.
#include "fnnc.h"

static const char *op_symbol(Op op) {
  switch (op) {
  case OP_add: return "+";
  case OP_sub: return "-";
  case OP_mul: return "*";
  case OP_div: return "/";
  default: return op_info[op].name;
  }
}

static bool shape_binary(Value *v) {
  Shape a = v->in[0]->shape, b = v->in[1]->shape;
  if (v->in[0]->type != T_F32 || v->in[1]->type != T_F32) {
    error_at(v->loc, "'%s' needs float tensors; class labels can only be used by a loss, token ids by an embedding",
             op_symbol(v->op));
    return false;
  }
  if (a.rank == 0)
    v->shape = b;
  else if (b.rank == 0 || shape_eq(a, b))
    v->shape = a;
  else {
    error_at(v->loc, "'%s' needs operands of the same shape, got %s and %s", op_symbol(v->op),
             shape_str_sample(a), shape_str_sample(b));
    return false;
  }
  v->type = T_F32;
  return true;
}

static bool shape_unary(Value *v) {
  if (v->in[0]->type != T_F32) {
    error_at(v->loc, "'%s' needs a float tensor", op_info[v->op].name);
    return false;
  }
  v->shape = v->in[0]->shape;
  v->type = T_F32;
  return true;
}

// The adjoint of an operand that was broadcast from a scalar is the sum of g.
static Value *unbroadcast(Builder *b, Value *g, Value *x) {
  if (x->shape.rank == 0 && g->shape.rank != 0) return ir_sum(b, g, x->shape, 0);
  return g;
}

static LLVMBuilderRef B(Emit *e) { return e->cg->b; }

// add: y = a + b
// da = g, db = g
bool shape_add(Value *v) { return shape_binary(v); }
void grad_add(Builder *b, Value *v, Value *g, Value **dx) {
  dx[0] = unbroadcast(b, g, v->in[0]);
  dx[1] = unbroadcast(b, g, v->in[1]);
}
LLVMValueRef emit_add(Emit *e, Value *v, LLVMValueRef *in) {
  return cg_fast(LLVMBuildFAdd(B(e), in[0], in[1], ""));
}

// sub: y = a - b
// da = g, db = -g
bool shape_sub(Value *v) { return shape_binary(v); }
void grad_sub(Builder *b, Value *v, Value *g, Value **dx) {
  dx[0] = unbroadcast(b, g, v->in[0]);
  if (v->in[1]->needs_grad) dx[1] = unbroadcast(b, ir_unary(b, OP_neg, g), v->in[1]);
}
LLVMValueRef emit_sub(Emit *e, Value *v, LLVMValueRef *in) {
  return cg_fast(LLVMBuildFSub(B(e), in[0], in[1], ""));
}

// mul: y = a * b
// da = g * b, db = g * a
bool shape_mul(Value *v) { return shape_binary(v); }
void grad_mul(Builder *b, Value *v, Value *g, Value **dx) {
  if (v->in[0]->needs_grad) dx[0] = unbroadcast(b, ir_binary(b, OP_mul, g, v->in[1]), v->in[0]);
  if (v->in[1]->needs_grad) dx[1] = unbroadcast(b, ir_binary(b, OP_mul, g, v->in[0]), v->in[1]);
}
LLVMValueRef emit_mul(Emit *e, Value *v, LLVMValueRef *in) {
  return cg_fast(LLVMBuildFMul(B(e), in[0], in[1], ""));
}

// div: y = a / b
// da = g / b, db = -g * y / b
bool shape_div(Value *v) { return shape_binary(v); }
void grad_div(Builder *b, Value *v, Value *g, Value **dx) {
  if (v->in[0]->needs_grad) dx[0] = unbroadcast(b, ir_binary(b, OP_div, g, v->in[1]), v->in[0]);
  if (v->in[1]->needs_grad) {
    Value *t = ir_binary(b, OP_div, ir_binary(b, OP_mul, g, v), v->in[1]);
    dx[1] = unbroadcast(b, ir_unary(b, OP_neg, t), v->in[1]);
  }
}
LLVMValueRef emit_div(Emit *e, Value *v, LLVMValueRef *in) {
  return cg_fast(LLVMBuildFDiv(B(e), in[0], in[1], ""));
}

// neg: y = -x
// dx = -g
bool shape_neg(Value *v) { return shape_unary(v); }
void grad_neg(Builder *b, Value *v, Value *g, Value **dx) { dx[0] = ir_unary(b, OP_neg, g); }
LLVMValueRef emit_neg(Emit *e, Value *v, LLVMValueRef *in) { return LLVMBuildFNeg(B(e), in[0], ""); }

// exp: y = e^x
// dx = g * y
bool shape_exp(Value *v) { return shape_unary(v); }
void grad_exp(Builder *b, Value *v, Value *g, Value **dx) { dx[0] = ir_binary(b, OP_mul, g, v); }
LLVMValueRef emit_exp(Emit *e, Value *v, LLVMValueRef *in) { return vm_exp(e->cg->mod, B(e), in[0]); }

// log: y = ln x
// dx = g / x
bool shape_log(Value *v) { return shape_unary(v); }
void grad_log(Builder *b, Value *v, Value *g, Value **dx) { dx[0] = ir_binary(b, OP_div, g, v->in[0]); }
LLVMValueRef emit_log(Emit *e, Value *v, LLVMValueRef *in) { return vm_log(e->cg->mod, B(e), in[0]); }

// sqrt: y = sqrt(x)
// dx = g * 0.5 / y
bool shape_sqrt(Value *v) { return shape_unary(v); }
void grad_sqrt(Builder *b, Value *v, Value *g, Value **dx) {
  dx[0] = ir_binary(b, OP_mul, g, ir_binary(b, OP_div, ir_const(b, 0.5), v));
}
LLVMValueRef emit_sqrt(Emit *e, Value *v, LLVMValueRef *in) {
  return cg_call_intrinsic(e, "llvm.sqrt.f32", e->f32, in, 1);
}

// relu: y = max(x, 0)
// dx = g * step(y)    (uses the output, so the input need not be kept)
bool shape_relu(Value *v) { return shape_unary(v); }
void grad_relu(Builder *b, Value *v, Value *g, Value **dx) {
  dx[0] = ir_binary(b, OP_mul, g, ir_unary(b, OP_step, v));
}
LLVMValueRef emit_relu(Emit *e, Value *v, LLVMValueRef *in) {
  LLVMValueRef gt = LLVMBuildFCmp(B(e), LLVMRealOGT, in[0], cg_f32(e, 0), "");
  return LLVMBuildSelect(B(e), gt, in[0], cg_f32(e, 0), "");
}

// step: y = x > 0 ? 1 : 0
// dx = 0 (not differentiable; only produced by gradient rules)
bool shape_step(Value *v) { return shape_unary(v); }
void grad_step(Builder *b, Value *v, Value *g, Value **dx) {}
LLVMValueRef emit_step(Emit *e, Value *v, LLVMValueRef *in) {
  LLVMValueRef gt = LLVMBuildFCmp(B(e), LLVMRealOGT, in[0], cg_f32(e, 0), "");
  return LLVMBuildSelect(B(e), gt, cg_f32(e, 1), cg_f32(e, 0), "");
}

// tanh: y = tanh(x)
// dx = g * (1 - y*y)
bool shape_tanh(Value *v) { return shape_unary(v); }
void grad_tanh(Builder *b, Value *v, Value *g, Value **dx) {
  Value *one_minus = ir_binary(b, OP_sub, ir_const(b, 1), ir_binary(b, OP_mul, v, v));
  dx[0] = ir_binary(b, OP_mul, g, one_minus);
}
LLVMValueRef emit_tanh(Emit *e, Value *v, LLVMValueRef *in) { return vm_tanh(e->cg->mod, B(e), in[0]); }

// sigmoid: y = 1 / (1 + e^-x)
// dx = g * y * (1 - y)
bool shape_sigmoid(Value *v) { return shape_unary(v); }
void grad_sigmoid(Builder *b, Value *v, Value *g, Value **dx) {
  Value *d = ir_binary(b, OP_mul, v, ir_binary(b, OP_sub, ir_const(b, 1), v));
  dx[0] = ir_binary(b, OP_mul, g, d);
}
LLVMValueRef emit_sigmoid(Emit *e, Value *v, LLVMValueRef *in) { return vm_sigmoid(e->cg->mod, B(e), in[0]); }

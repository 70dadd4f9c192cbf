// ops.c: the rule tables, generated from the rows of ops.h.
#include "fnnc.h"

#define OP(name, nin, flags, attrdoc)                                   \
  bool shape_##name(Value *v);                                          \
  void grad_##name(Builder *b, Value *v, Value *g, Value **dx);         \
  LLVMValueRef emit_##name(Emit *e, Value *v, LLVMValueRef *in);
#include "ops.h"
#undef OP

#define OP(name, nin, flags, attrdoc) shape_##name,
const ShapeRule shape_rule[OP_COUNT] = {
#include "ops.h"
};
#undef OP

#define OP(name, nin, flags, attrdoc) grad_##name,
const GradRule grad_rule[OP_COUNT] = {
#include "ops.h"
};
#undef OP

#define OP(name, nin, flags, attrdoc) emit_##name,
const EmitRule emit_rule[OP_COUNT] = {
#include "ops.h"
};
#undef OP

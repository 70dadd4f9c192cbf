// autodiff.c: reverse-mode automatic differentiation over the IR.
//
// The adjoint of the loss is 1. Walking the values backwards (creation order is
// topological), each value's gradient rule (ops_*.c) turns its adjoint into
// contributions for its inputs, built as new IR in phase PH_BWD. Contributions
// to a value read more than once are added up. Only values that depend on a
// trainable parameter get adjoints, so nothing is computed for the data. A
// loop is differentiated as a whole (loop_grad in loop.c), which runs this
// same sweep over its body.
#include "fnnc.h"

#include <stdlib.h>
#include <string.h>

void autodiff_sweep(Builder *b, int n0, Value **adj) {
  Graph *g = b->g;
  // For testing the gradient checker: FNNC_BREAK_GRAD=OP scales OP's gradient
  // rule by 1.1, which `fnnc check` must catch.
  const char *broken = getenv("FNNC_BREAK_GRAD");
  for (int i = n0 - 1; i >= 0; i--) {
    Value *v = g->values.data[i];
    if (v->dead || !v->needs_grad || (op_info[v->op].flags & F_LEAF)) continue;
    // A loop's outputs are differentiated together, when the sweep reaches
    // the loop (before every output in creation order).
    if (v->op == OP_loopout) {
      if (adj[v->id] && !adj[v->in[0]->id]) adj[v->in[0]->id] = adj[v->id];
      continue;
    }
    if (!adj[v->id]) continue;
    Value *dx[MAXIN] = {0};
    b->loc = v->loc;
    if (v->op == OP_loop)
      loop_grad(b, v, adj, dx);
    else
      grad_rule[v->op](b, v, adj[v->id], dx);
    if (broken && !strcmp(broken, op_info[v->op].name))
      for (int j = 0; j < v->nin; j++)
        if (dx[j]) dx[j] = ir_binary(b, OP_mul, dx[j], ir_const(b, 1.1));
    for (int j = 0; j < v->nin; j++) {
      Value *u = v->in[j];
      if (!dx[j] || !u->needs_grad) continue;
      // Fan-out: sum the contributions of every reader.
      adj[u->id] = adj[u->id] ? ir_binary(b, OP_add, adj[u->id], dx[j]) : dx[j];
    }
  }
}

void autodiff(Graph *g) {
  int n0 = g->values.len;
  for (int i = 0; i < n0; i++) {
    Value *v = g->values.data[i];
    v->needs_grad = v->op == OP_param && !g->params[v->param].frozen;
    for (int j = 0; j < v->nin; j++) v->needs_grad |= v->in[j]->needs_grad;
  }
  Value **adj = arena_alloc(sizeof(Value *) * (size_t)n0);
  Builder b = {g, g->loss->loc, PH_BWD};
  adj[g->loss->id] = ir_const(&b, 1);
  autodiff_sweep(&b, n0, adj);
  for (int i = 0; i < g->nparams; i++) {
    Param *p = &g->params[i];
    p->grad = p->value->needs_grad ? adj[p->value->id] : NULL;
    if (p->value->needs_grad && !p->grad) {
      // The loss does not depend on this parameter: its gradient is zero.
      b.loc = p->loc;
      p->grad = ir_bcast(&b, ir_const(&b, 0), p->shape, 0);
    }
  }
}

// ops.h - the op table. One row per primitive op:
//
//   OP(name, number of inputs, flags, attributes)
//
// The row generates the Op enum (OP_name), the name table and the rule tables
// (ops.c). Each op's shape rule (shape_name), gradient rule (grad_name),
// semantics comment and emitter (emit_name) sit together in one ops_*.c file per
// family. Composite layers (dense, conv2d with bias, cross_entropy, mse, adam)
// are lowered to these primitives in lower.c and optim.c. Shapes: B is the batch.
// Elementwise binary ops take equal shapes, or a scalar ([]) on either side.
//
// No row is numbered by hand anywhere else.

// ---- leaves (ops_leaf.c) ----
OP(input,   0, F_LEAF, "the input batch x: [B, ...]")
OP(label,   0, F_LEAF, "the target batch y: i32[B] class ids or f32[B,W] values")
OP(param,   0, F_LEAF, "a parameter; .param is its index")
OP(state,   0, F_LEAF, "optimizer state; .param its parameter, ia[0] the slot (0: m/velocity, 1: v)")
OP(hyper,   0, F_LEAF, "a runtime scalar; ia[0] is the Hyper index")
OP(const,   0, F_LEAF, "a scalar constant fa")
OP(slab,    0, F_LEAF, "floats [ia[2], ia[2]+n) of a slab as one flat [n] tensor: ia[0] BufKind, ia[1] state slot")
// A side effect: writes in[0] to buffer ia[0] (BufKind) at slot ia[1] / parameter .param
// (.param -1: at float ia[2] of the slab, as for a slab leaf).
OP(store,   1, F_SINK, "ia[0] BufKind, ia[1] slot")

// ---- elementwise (ops_ew.c) ----
OP(add,     2, F_EW | F_COMMUT, "")
OP(sub,     2, F_EW, "")
OP(mul,     2, F_EW | F_COMMUT, "")
OP(div,     2, F_EW, "")
OP(neg,     1, F_EW, "")
OP(exp,     1, F_EW, "")
OP(log,     1, F_EW, "")
OP(sqrt,    1, F_EW, "")
OP(relu,    1, F_EW, "")
OP(step,    1, F_EW, "1 where x > 0, else 0 (the derivative of relu)")
OP(tanh,    1, F_EW, "")
OP(sigmoid, 1, F_EW, "")

// ---- data movement (ops_shape.c) ----
OP(bcast,   1, F_EW | F_GATHER, "ia[0]: bitmask of output axes the input fills, in order")
OP(sum,     1, 0,               "ia[0]: bitmask of input axes kept; all others are summed")
OP(reshape, 1, F_VIEW,          "same elements, new shape")
OP(concat,  2, F_EW | F_GATHER, "ia[0]: axis")
OP(slice,   1, F_EW | F_GATHER, "ia[0]: axis, ia[1]: start")
OP(onehot,  1, F_EW | F_GATHER, "i32[B] -> f32[B,K], ia[0] = K")

// ---- neural-network ops (ops_nn.c) ----
OP(matmul,    2, F_ANCHOR, "ia[0]: transpose A, ia[1]: transpose B")
OP(conv2d,    2, F_ANCHOR, "x[B,C,H,W] * w[O,C,KH,KW]; ia[0] stride, ia[1] pad")
OP(conv2d_dx, 2, F_ANCHOR, "g[B,O,OH,OW], w -> dx[B,C,H,W]; ia: stride, pad, H, W")
OP(conv2d_dw, 2, F_ANCHOR, "x[B,C,H,W], g[B,O,OH,OW] -> dw[O,C,KH,KW]; ia: stride, pad, KH, KW")
OP(maxpool,   1, F_EW | F_GATHER, "ia[0] kernel, ia[1] stride, over the last two axes")
OP(maxpool_arg,1, F_EW | F_GATHER, "ia as maxpool: where each window's first maximum is, di*kernel + dj, as a float")
OP(maxpool_dx,2, F_ANCHOR, "(a, g) -> dx: each window's g added where a (maxpool_arg) says; ia: kernel, stride, H, W")

// ---- losses and metrics (ops_loss.c) ----
OP(softmax,   1, F_ANCHOR, "over the last axis")
OP(xent,      2, F_ANCHOR, "(p[B,K], y) -> -sum_b log p[b, y_b]")
OP(correct,   2, F_ANCHOR, "(logits[B,K], y) -> number of rows whose argmax is y_b")

// ---- tokens (ops_embed.c) ----
OP(embed,     2, F_EW | F_GATHER, "(ids i32[B,T], table[V,D]) -> [B,T,D]: row ids[b,t] of the table")
OP(embed_dw,  2, F_ANCHOR, "(ids i32[B,T], g[B,T,D]) -> [V,D]: each g row added into row ids[b,t]; ia[0] = V")

// ---- loops (ops_loop.c; the machinery is in loop.c) ----
OP(formal,  0, F_LEAF, "a loop body's view of loop input ia[0] (a step slice, a state or an invariant)")
OP(loop,    MAXIN, 0, "runs graph loops[ia[0]] over time; inputs: the captured outer values")
OP(loopout, 1, 0, "output ia[0] of a loop; ia[1] rank, ia[2..] the shape")

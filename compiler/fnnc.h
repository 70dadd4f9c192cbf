// fnnc.h - the table of contents of the fnnc compiler.
//
// Data flows one way, one section per stage:
//
//   grammar/lexer.l, grammar/parser.y   text   -> AST        (parse_file)
//   lower.c                             AST    -> IR graph   (lower_program)
//   loop.c                              loops: bodies, hoisting, BPTT
//   autodiff.c                          IR     -> IR + backward (autodiff)
//   optim.c                             IR     -> IR + optimizer updates
//   simplify.c                          IR     -> IR (CSE, DCE, folding, algebra)
//   fuse.c                              IR     -> kernels (groups of IR values)
//   codegen.c                           kernels-> LLVM module (one function per kernel)
//   backend.c                           LLVM   -> JIT (ORC LLJIT) or object + link
//   cache.c                             object code of earlier compilations, on disk
//   main.c                              the command line
//
// Every op lives in one row of ops.h; its shape rule, gradient rule, semantics and
// emitter live together in one ops_*.c file per op family.
#ifndef FNNC_H
#define FNNC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#define FNNC_VERSION "0.1.0"

//
// util.c: arenas, strings, internal errors
//
// The compiler is a short-lived program: everything comes from one arena and is
// never freed one by one.
void *arena_alloc(size_t size);  // zeroed, 16-byte aligned
char *arena_strdup(const char *s);
char *arena_strndup(const char *s, size_t n);
char *arena_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void arena_free_all(void);

// Growable array of pointers, arena-backed.
typedef struct {
  void **data;
  int len, cap;
} Vec;
void vec_push(Vec *v, void *x);

// Internal compiler bugs, never user errors: prints __FILE__:__LINE__ and aborts.
_Noreturn void die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define die(...) die_at(__FILE__, __LINE__, __VA_ARGS__)
#define unreachable() die("unreachable")

//
// diag.c: user-facing diagnostics
//
// A source file, kept whole so diagnostics can quote the offending line.
typedef struct {
  const char *path;  // as given by the user (diagnostics print it unchanged)
  const char *text;  // NUL-terminated contents
  size_t len;
} Source;

// A source location: 1-based line and column; len is the number of columns to
// underline (at least 1). Every token, AST node and IR value carries one.
typedef struct {
  const Source *src;  // NULL for compiler-made values with no user origin
  int line, col, len;
} Loc;

// Prints "file:line:col: error: message", the source line, and a caret with
// tildes under loc. Counts errors; never exits.
void error_at(Loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void warn_at(Loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// "hint: ..." printed right after the last error.
void hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// An error with no location (missing file, bad flag): "fnnc: error: ...".
void error_plain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int error_count(void);
// The closest of `cands` (NULL-terminated) to `word` by edit distance, or NULL if
// nothing is close enough to be a plausible typo.
const char *closest_word(const char *word, const char *const *cands);
Source *source_read(const char *path);  // NULL (and an error) if unreadable

//
// grammar/: the AST
//
typedef enum {
  N_PROGRAM,    // args: sections (N_MODEL, N_OPTIMIZER, N_DATA, N_TRAIN)
  N_MODEL,      // name; args: statements
  N_INPUT,      // name; lhs: type (N_TSHAPE)
  N_TARGET,     // name; lhs: type (N_TSHAPE or N_TCLASS)
  N_ASSIGN,     // name = lhs
  N_LOSS,       // lhs: expression
  N_OPTIMIZER,  // lhs: N_CALL (adam(lr=...), sgd(...))
  N_DATA,       // args: statements (N_ASSIGN of train/test, N_CALL normalize(...))
  N_TRAIN,      // args: N_KWARG
  N_CALL,       // name(args...); args may be N_KWARG; alias: "as NAME" or NULL
  N_IDENT,      // name
  N_NUM,        // num (is_int says it was written without '.' or exponent)
  N_STR,        // name holds the unescaped string
  N_BOOL,       // num is 0 or 1
  N_LIST,       // [args...]
  N_KWARG,      // name=lhs
  N_PIPE,       // lhs -> rhs (rhs is N_IDENT or N_CALL, applied to lhs)
  N_BINOP,      // lhs op rhs, op in "+-*/"
  N_NEG,        // -lhs
  N_TSHAPE,     // [d0, d1, ...] as args of N_NUM; name: "tokens" for tokens[T], else NULL
  N_TCLASS,     // class(K): num = K
  N_RECUR,      // recurrent over NAME in lhs { args }: name is the step variable, lhs an N_IDENT
  N_STATE,      // state NAME: lhs (N_TSHAPE) = rhs
  N_EMIT,       // emit lhs
  N_INDEX,      // lhs[rhs]: a time step of a sequence (lhs an N_IDENT)
  N_FREEZE,     // freeze args: N_IDENT (a layer; rhs: N_IDENT "weight"/"bias" for one tensor) or N_RANGE
  N_RANGE,      // lhs..rhs (N_IDENTs); lhs NULL for "up to rhs"
} NodeKind;

typedef struct Node Node;
struct Node {
  NodeKind kind;
  Loc loc;            // the whole construct; for calls, the callee name
  const char *name;   // identifier, callee, key, string value
  const char *alias;  // N_CALL: user-given layer name ("as conv1"), else NULL
  Loc alias_loc;
  double num;
  bool is_int;
  char op;            // N_BINOP
  Node *lhs, *rhs;
  Node **args;
  int nargs;
};

// Parses a whole file. Reports every syntax error it can recover from and
// returns NULL if there was any.
Node *parse_file(Source *src);
void ast_dump(FILE *out, const Node *n);  // --emit=ast

//
// ops.h + ir.c: the IR, a typed SSA tensor graph with static shapes
//
// Shapes are static except the batch: a dimension equal to DIM_BATCH stands for
// the runtime batch size B and may only be dimension 0.
#define MAXRANK 6
#define DIM_BATCH (-1)
typedef struct {
  int rank;
  int64_t d[MAXRANK];
} Shape;

typedef enum { T_F32, T_I32 } DType;

// Op flags (see ops.h).
enum {
  F_LEAF = 1 << 0,    // no inputs; reads a buffer or is a constant
  F_EW = 1 << 1,      // elementwise over its output shape: fusable into loops
  F_GATHER = 1 << 2,  // elementwise, but reads whole input buffers at computed indices
  F_ANCHOR = 1 << 3,  // has its own loop structure (contraction, row op, reduction)
  F_VIEW = 1 << 4,    // no computation: aliases its input's buffer
  F_SINK = 1 << 5,    // side effect (store); no value
  F_COMMUT = 1 << 6,  // commutative binary op (canonical operand order in CSE)
};

#define OP(name, nin, flags, attrdoc) OP_##name,
typedef enum {
#include "ops.h"
  OP_COUNT
} Op;
#undef OP

// Which external buffer a leaf or store refers to.
typedef enum {
  BUF_NONE,
  BUF_PARAM,  // parameter slab
  BUF_GRAD,   // gradient slab (written by the gradient entry point)
  BUF_STATE,  // optimizer state slab
  BUF_X,      // the input batch (float, normalised)
  BUF_Y,      // the target batch (int32 classes or float values)
  BUF_HYPER,  // runtime scalars, indexed by Hyper
  BUF_OUT,    // metrics out: [0] loss, [1] correct count
  BUF_WORK,   // activation workspace
  BUF_LOOP,   // a loop body's output slot (loop.c): the step's result, handed to the loop
} BufKind;

// Runtime scalars passed to every entry point (FnnArgs.hyper).
typedef enum {
  HYP_LR,     // learning rate
  HYP_BC1,    // Adam: 1 - beta1^t
  HYP_BC2,    // Adam: 1 - beta2^t
  HYP_INVN,   // 1 / (rows in this batch)
  HYP_COUNT
} Hyper;

// Phases let the fusion pass keep forward, backward and update apart.
typedef enum { PH_FWD, PH_BWD, PH_UPDATE } Phase;

// Inputs per value: elementwise ops take one or two, a loop takes one per
// captured outer value.
#define MAXIN 64

typedef struct Value Value;
struct Value {
  int id;  // SSA number, dense in creation order (creation order is a topological order)
  Op op;
  DType type;
  Shape shape;
  Value *in[MAXIN];
  int nin;
  Loc loc;
  Phase phase;
  // Attributes (meaning per op, documented in ops.h).
  int64_t ia[8];
  double fa;        // OP_const value
  int param;        // OP_param / OP_state / stores: parameter index, else -1
  const char *name; // printing aid: a user tensor name or parameter name
  // Filled by analyses.
  int nuses;
  bool needs_grad;  // depends on a trainable parameter
  bool dead;
  int group;        // fuse.c: kernel index, -1 for leaves and views
  bool materialized;// fuse.c: written to a buffer
  bool image_local; // fuse.c: ... to its kernel's scratch, one image at a time: read only
                    // by the kernel's pool (Kernel.post, post_arg), never by another kernel
  int partial;      // fuse.c: a reduction over the batch in a parallel kernel; each
                    // task of this many rows accumulates its own slot, summed in a
                    // fixed order after (0: not partial)
};
#define GROUP_INLINE (-2)  // fuse.c: recomputed wherever it is read (scalar math, pool prologue)

// A trainable parameter (or frozen one) of the model.
typedef enum { INIT_KAIMING_UNIFORM, INIT_BIAS_UNIFORM, INIT_ZERO, INIT_ONE, INIT_NORMAL } InitKind;
typedef struct {
  const char *name;  // "conv1.weight", PyTorch state_dict naming
  const char *layer; // the layer it belongs to ("conv1"): freezing, lr_mult
  bool bias;         // a bias of that layer ("bias", "bias_ih_l0", ...), not a weight
  Shape shape;
  int64_t fan_in;
  InitKind init;
  int64_t offset;    // in floats, inside the parameter slab
  int64_t toff;      // in floats, inside the gradient slab and each optimizer state slot;
                     // -1 if frozen (no gradient, no state): optim.c, optimizer_layout
  bool frozen;       // `freeze`, trainable=false|bias (lower.c)
  double lr_mult;    // lr_mult=: this parameter's learning rate is lr times it
  Value *value;      // the OP_param leaf
  Value *grad;       // autodiff result, or NULL
  Loc loc;
} Param;

// A LoRA adapter (lower.c): W' = W + scale * B A next to the frozen base
// weight W, with A [r, in...] and B [out, r...] parameters of their own.
typedef struct {
  int base, bias, a, b;  // parameter indices (bias -1 if the layer has none)
  int64_t rank;
  double scale;          // alpha / rank
} Lora;

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW } OptKind;
// The learning rate over the run (computed by the runtime, step by step):
// `warmup` steps rising linearly to lr, then constant, step or cosine decay.
typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE } SchedKind;
typedef struct {
  SchedKind kind;
  bool given;        // schedule=... was written
  int64_t warmup;    // steps of linear warmup, 0 for none
  int64_t step_size; // step: multiply by gamma every step_size steps
  double gamma;
  double min_lr;     // cosine: the lr at the end of the run
} Schedule;
typedef struct {
  OptKind kind;
  double lr, momentum, beta1, beta2, eps, weight_decay;
  double clip;  // > 0: clip the gradients to this global norm first
  Schedule sched;
  Loc loc;
} Optimizer;

typedef struct {
  const char *kind;   // "idx", "csv" or "text"
  const char *files[2];  // idx: images, labels; csv: the file, ""; text: the file, its vocabulary
                         // ("bytes": the ids are the bytes; "file": the file's distinct bytes, in order)
  Loc loc;
  const char *column; // csv: the class (label=) or target (target=) column by name, or NULL
  bool column_is_label;
  Loc column_loc;
} DataSource;

// Everything the program says besides the graph: the runtime reads this.
typedef struct {
  const char *name;
  Shape input;         // per sample (no batch dimension)
  bool classify;       // target is class(K)
  int64_t nclasses;    // or the target width for regression
  bool tokens;         // the input is tokens[T]: i32 ids in [0, vocab)
  int64_t vocab;       // the smallest vocabulary of the embeddings that read the input
  int64_t steps;       // a tokens[T] target: T class ids per sample (else 0)
  bool sees_ahead;     // a step's output reads later steps (a bidirectional layer)
  Optimizer opt;
  DataSource train, test;
  bool has_train, has_test;
  double norm_mean, norm_std;
  Loc normalize_loc;   // of normalize(...), if given
  bool standardize;    // standardize(): each CSV feature by the training rows' mean and std
  Loc standardize_loc;
  double validation;   // train = ...(validation=F): the fraction held out, or 0
  int64_t batch, epochs, seed;
  bool shuffle;
  int64_t bptt;        // truncated backpropagation through time: steps, 0 for all
} ModelInfo;

typedef struct {
  Vec values;        // Value*, all values in creation order
  Param *params;
  int nparams;
  int64_t param_floats, state_floats;
  int64_t train_floats;  // floats of the gradient slab and of each state slot (optimizer_layout)
  Value *x, *y;      // data leaves
  Value *loss;       // scalar loss
  Value *logits;     // classifier output (for accuracy), or prediction
  ModelInfo info;
  Value **ht;        // ir.c: hash-consing table (CSE by construction)
  int htcap, htlen;
  Vec stores;        // Value*: OP_store values, the roots for DCE
  Vec loops;         // LoopInfo*: OP_loop value v runs loops.data[v->ia[0]]
  Vec loras;         // Lora*: the LoRA adapters, in the order of their layers
} Graph;

Graph *graph_new(void);

// ir.c: building values. The builder runs each op's shape rule, reports shape
// errors at `loc` (returning NULL), and does CSE through hash-consing.
typedef struct Builder Builder;
struct Builder {
  Graph *g;
  Loc loc;      // location given to new values
  Phase phase;  // phase given to new values
};

Value *ir_new(Builder *b, Op op, int nin, Value **in, const int64_t *ia, double fa);
Value *ir_const(Builder *b, double v);  // scalar constant
Value *ir_leaf(Builder *b, Op op, Shape s, DType t, int64_t a, int64_t index);
Value *ir_unary(Builder *b, Op op, Value *x);
Value *ir_binary(Builder *b, Op op, Value *x, Value *y);
Value *ir_bcast(Builder *b, Value *x, Shape to, uint32_t axes);  // axes: bitmask of `to` axes x fills
Value *ir_sum(Builder *b, Value *x, Shape to, uint32_t axes);    // axes: bitmask of x axes kept
Value *ir_reshape(Builder *b, Value *x, Shape to);
void reshape_attrs(Shape to, int64_t ia[8]);  // a reshape's ia: rank, then the dims
void ir_store(Builder *b, Value *v, BufKind where, int param, int64_t slot);
const char *slab_name(Value *v);  // a slab leaf or slab store, as "params[0:4096]"
// Floats [offset, offset+n) of a slab (kind PARAM, GRAD or STATE with its slot).
Value *ir_slab(Builder *b, BufKind kind, int64_t slot, int64_t offset, int64_t n);
// Stores v into floats [offset, offset+numel) of a slab.
void ir_store_slab(Builder *b, Value *v, BufKind kind, int64_t slot, int64_t offset);
void ir_dump(FILE *out, Graph *g, Phase upto);  // --emit=ir (upto PH_FWD), --emit=grad (all)
void ir_dump_values(FILE *out, Graph *g, Phase upto, const char *indent);
void ir_count_uses(Graph *g);
int64_t shape_numel(Shape s);  // per sample when batched (DIM_BATCH counts as 1)
int64_t pad16(int64_t floats);  // rounded up to whole 64-byte lines: where slabs and buffers place things
bool shape_eq(Shape a, Shape b);
bool shape_batched(Shape s);
char *shape_str(Shape s);      // "[B,32,28,28]"
char *shape_str_sample(Shape s);  // without the batch dim: "[32,28,28]"
Shape shape_make(int rank, const int64_t *d);

// The op table, generated from ops.h.
typedef struct {
  const char *name;
  int nin;
  unsigned flags;
  const char *attrdoc;
} OpInfo;
extern const OpInfo op_info[OP_COUNT];

// ops.c: the rule tables, generated from ops.h. For each op NAME, its ops_*.c
// file defines shape_NAME, grad_NAME and emit_NAME.
typedef struct Emit Emit;
// Sets v->shape and v->type from the inputs and attributes. On a user error it
// reports at v->loc and returns false.
typedef bool (*ShapeRule)(Value *v);
// Reverse mode: given the adjoint g of v, sets dx[i] (the adjoint contribution
// of input i) for each input with needs_grad; leaves the others NULL.
typedef void (*GradRule)(Builder *b, Value *v, Value *g, Value **dx);
// Elementwise ops: the value of one element from the inputs' elements `in`.
// Gather ops: reads their inputs through the Emit context at e->idx.
// Anchors: emit their whole loop nest (and call emit_epilogue on each tile).
typedef LLVMValueRef (*EmitRule)(Emit *e, Value *v, LLVMValueRef *in);
extern const ShapeRule shape_rule[OP_COUNT];
extern const GradRule grad_rule[OP_COUNT];
extern const EmitRule emit_rule[OP_COUNT];

//
// loop.c: loops in the IR (recurrent blocks and the built-in recurrent layers).
//
// A loop is one OP_loop value in its graph. Its inputs are the outer values it
// captures; its body is a graph of its own, run once per time step, whose
// leaves are OP_formal values standing for the step's view of each input, and
// whose results are stores to BUF_LOOP slots. OP_loopout values give the outer
// graph the loop's results. Sequences are [B, T, ...] (batch first, like every
// batched value); the loop copies step t of a sliced input into a contiguous
// [B, ...] step buffer before the body runs, and step results out after it.
typedef enum {
  LF_SLICE,  // step t of a sequence input [B, T, ...]: a [B, ...] step
  LF_STATE,  // a carried state: the input is its initial value, output `next` its update
  LF_INVAR,  // a loop-invariant input (parameters): the whole outer value
} FormalKind;

typedef enum {
  LO_STACK,  // the step results stacked over time: [B, T, ...]
  LO_LAST,   // the result of the last step run
  LO_SUM,    // the step results added up (gradients of invariants)
  LO_NONE,   // dropped: computed after the loop, or read by nothing (slot unused)
} OutKind;

typedef struct {
  FormalKind kind;
  int next;     // LF_STATE: the output that updates it (an LO_LAST output)
  Value *outer; // the outer value (input ia[0] of the loop; valid while the loop is built)
  Shape shape;  // the body's view: a step [B, ...], a state, or the invariant's shape
  const char *name;
} Formal;

typedef struct {
  OutKind kind;
  Value *store;  // the body's OP_store to BUF_LOOP slot (its index)
} LoopOut;

typedef struct Program Program;
typedef struct LoopInfo {
  int id;          // index in the outer graph's loops
  Graph *body;
  int64_t T;       // static number of steps
  int64_t steps;   // steps run: T, or fewer for a truncated reverse loop (the
                   // last ones of the forward loop); skipped steps' stacked
                   // outputs are zero, and so are its last values
  bool reverse;    // steps run T-1 .. 0 (the backward loop)
  Formal *formals;
  int nformals;
  LoopOut *outs;
  int nouts;
  Loc loc;
  const char *name;
  // fuse.c: the body's kernels and where the loop's buffers live in the outer
  // workspace (per_n * n + fixed floats from the workspace base).
  Program *prog;
  int64_t region_per_n, region_fixed;   // the body's own workspace
  int64_t *fbuf_per_n, *fbuf_fixed;     // step buffers by formal (-1 if none)
  int64_t *obuf_per_n, *obuf_fixed;     // step buffers by output
} LoopInfo;

LoopInfo *loop_new(Graph *outer, int64_t T, Loc loc);
// The body's leaf for outer value `outer_v` seen as `kind` (created once per
// value and kind). For a state, `s` is its shape and outer_v its initial value
// (a scalar constant fills it).
Value *loop_formal(LoopInfo *l, FormalKind kind, Value *outer_v, Shape s, const char *name);
// Declares a body value as an output; returns its index.
int loop_output(LoopInfo *l, OutKind kind, Value *body_v);
// Builds the OP_loop value in the outer graph, and a loopout per output.
// outs[j] receives the outer value of output j.
Value *loop_finish(Builder *outer_b, LoopInfo *l, Value **outs);
// Moves the work that does not depend on the states (the input projection)
// out of the loop, as whole-sequence values, before the loop runs.
void loop_hoist(Builder *outer_b, Value *loopv);
// Reverse mode through a loop: given the adjoints of its loopouts (adj by id),
// builds the reverse loop and sets dx[i] for the inputs that need gradients.
void loop_grad(Builder *b, Value *loopv, Value **adj, Value **dx);
void loop_dump(FILE *out, Graph *g, Value *loopv, const char *indent);
LoopInfo *loop_of(Graph *g, Value *loopv);
void loop_simplify(Graph *g);  // simplify every loop body

//
// lower.c: AST -> IR, with layers lowered to primitive ops and all type and
// shape errors reported with locations.
//
Graph *lower_program(Node *prog);  // NULL after reporting errors

//
// autodiff.c: reverse-mode AD over the IR. Appends the backward graph (phase
// PH_BWD) and fills Param.grad for every trainable parameter.
//
void autodiff(Graph *g);
// The reverse sweep over values [0, n0) of g from the adjoints already in adj
// (by value id); needs_grad must be set. Loops are differentiated by loop_grad.
void autodiff_sweep(Builder *b, int n0, Value **adj);

//
// optim.c: appends the optimizer update (phase PH_UPDATE) as IR: one chain of
// elementwise values and stores per parameter.
//
void optimizer_lower(Graph *g);
// Places the trainable parameters in the gradient and state slabs (Param.toff,
// Graph.train_floats, Graph.state_floats); frozen ones get neither.
void optimizer_layout(Graph *g);
int optimizer_slots(const Optimizer *o);  // state tensors per parameter

//
// simplify.c: CSE, DCE, constant folding and algebraic rewrites.
//
void simplify(Graph *g);

//
// Entry points. Each is its own graph built from the program:
//   train: forward, loss, backward, update     -> stores to params and state
//   eval:  forward, loss, correct count        -> stores to out
//   grad:  forward, loss, backward             -> stores to grads (fnnc check)
//
typedef enum { ENTRY_TRAIN, ENTRY_EVAL, ENTRY_GRAD, ENTRY_COUNT } Entry;
extern const char *const entry_names[ENTRY_COUNT];  // "train_step", ...
Graph *build_entry(Node *prog, Entry e);  // lower + AD + optimizer + simplify

//
// fuse.c: groups values into kernels. This is where fusion and tiling decisions
// live; ops only declare properties.
//
typedef enum {
  K_EW,       // loop nest over `shape`; elementwise members, sums as accumulating outputs
  K_ANCHOR,   // anchor op with its own loops; elementwise members are its epilogue
  K_LOOP,     // an OP_loop: runs the body's kernels once per time step (loop.c)
} KernelKind;

// How a kernel's work is shared between the pool's threads (fuse.c,
// parallel_rows; codegen.c, call_parallel). Only splits that change no result
// are used: the tasks of a kernel that reduces over the batch are fixed
// blocks of rows whatever the thread count, and their partial sums are added
// in task order.
typedef enum {
  SPLIT_NONE,    // the calling thread runs it alone
  SPLIT_ROWS,    // blocks of the batch's rows: fixed tasks of kernel_partials(k) rows if it
                 // reduces over them, else about TASKS_PER_THREAD blocks per thread, whole
                 // multiples of `align` rows
  SPLIT_COLS,    // one block of the output's columns (last axis) per thread, over the whole
                 // batch, a multiple of `align` wide: x . W^T reads only its thread's rows of
                 // W, the ones its weight gradient computes; g . W computes the gradient of
                 // the outputs its thread computed in the layer before (fuse.c, split_columns)
  SPLIT_OUT,     // one block of the output's first axis per thread, a multiple of `align`:
                 // weight gradients contract the whole batch for their rows; the update loop
                 // over the parameter slab; nothing needs combining
  SPLIT_PARAMS,  // the optimizer's update over a run of the parameter slab: task t updates
                 // block t of each parameter's rows (split_align), the rows its thread
                 // computed the gradient of and reads in x . W^T
} Split;
// COLS, OUT and PARAMS blocks are cut at the shares the pool balances between
// the threads (fnn_split_block, runtime/pool.c), the same fractions for every
// such kernel.

typedef struct {
  int id;
  KernelKind kind;
  Value *anchor;   // K_ANCHOR: the anchor value
  Shape shape;     // iteration space (K_EW) or anchor output shape
  Vec members;     // Value*, in topological order (includes anchor)
  Vec inputs;      // Value*: materialized values from other kernels or leaves read here
  Vec outputs;     // Value*: members written to buffers (materialized) and stores
  const char *name;// "k3_conv2d_relu"
  int64_t scratch; // floats of scratch the anchor needs (packed operands, tiles), per thread
  Split split;     // how the threads share it
  int64_t align;   // SPLIT_ROWS without partials, SPLIT_COLS, SPLIT_OUT: blocks are multiples of this
  Value *post;     // a max-pool over the anchor's output (a convolution), run per image
                   // once its tile is finished: it reads the plane while it is in cache
  Value *post_arg; // the same pool's window indices (maxpool_arg), in the same pass
} Kernel;

// A split by the first axis of the kernel's shape (not the batch's rows).
static inline bool split_first_axis(const Kernel *k) { return k->split == SPLIT_OUT || k->split == SPLIT_PARAMS; }

// Rows per parallel task. Fixed, so reductions over the batch add the same
// partial sums in the same order whatever the number of threads.
#define PAR_ROWS 4
// Blocks per thread of a split by rows that adds nothing up: more than one,
// so that the others take over the blocks of a thread that falls behind.
#define TASKS_PER_THREAD 4
// Rows per task of a convolution's weight gradient, which sums a whole filter
// bank per task: few tasks, so few banks to add up.
#define DW_ROWS 32

struct Program {
  Graph *g;
  Entry entry;
  Vec kernels;     // Kernel*, in execution order
  // Workspace plan: offset of each materialized value = per_n * n + fixed (floats).
  int64_t *work_per_n, *work_fixed;  // indexed by Value.id, -1 if not in workspace
  int64_t work_total_per_n, work_total_fixed;
  int64_t *part_per_n, *part_fixed;  // by Value.id: the partial slots of a partial value
  int64_t scratch;                   // floats of scratch per thread
  bool input_copies;  // train: every thread reads the whole batch (a dense layer on x split by
                      // outputs): each gets its own copy (FnnArgs.x_copies), not lines another
                      // core wrote
};

Program *fuse(Graph *g, Entry e);
bool is_model_input(Value *v);          // the input leaf, or a reshape of it
bool kernel_reads_input(const Kernel *k);  // one of k's input buffers is the model's input
// Tiling decisions for contractions (fuse.c): the register tile of a GEMM with
// an M x N output, and the scratch an anchor needs for packing and tiles.
void gemm_tile(int64_t M, int64_t N, int *mr, int *nv);
void gemm_tile_static(int64_t M, int64_t N, int *mr, int *nv);  // no leftover-row kernels if it can
int gemm_nt_block_rows(int64_t N);  // rows per block of an x . W^T product
// How the threads share a dense layer's outputs, a weight gradient's rows and
// a parameter's rows in the update: blocks of a multiple of this many rows.
int64_t split_align(int64_t rows);
int64_t anchor_scratch(Value *a);
int64_t dw_planes_at(Value *a);     // where unpool_in_dw's planes of g start in a dw kernel's scratch
int64_t image_local_at(Kernel *k);  // where a kernel's image_local output sits in its scratch
bool conv_direct(Value *a);
// Winograd F(2x2, 3x3) (wino.c): a stride-1 3x3 convolution, input gradient
// or weight gradient with channels enough, as 16 GEMMs over 4x4 input tiles
// per image. Shapes and the anchor's scratch layout (floats from the
// scratch's start; the weight gradient keeps its sums dU at at_u, the
// transformed output gradient at at_m and the filter bank [N, K, 3, 3] at
// at_plane):
typedef struct {
  int64_t K, N;        // channels in (the GEMMs' k) and out (their columns)
  int64_t OH, OW;      // output plane
  int64_t pad;         // zeros above and left of the source in the padded plane
  int64_t Hp, Wp;      // padded plane: 2*TH + 2 rows of 2*TW + 2
  int64_t TH, TW, T;   // 2x2 output tiles down, across and in all
  int64_t wsk, wsn;    // weight strides between the GEMMs' k and j channels (taps contiguous)
  bool flip;           // taps rotated by 180 degrees (the input gradient)
  int mr, nv;           // the register tile of the per-image GEMMs (T rows, N columns)
  int64_t at_u, at_pad, at_v, at_m, at_plane, total;
} WinoPlan;
bool wino_plan(Value *a, WinoPlan *p);  // false: a does not run as Winograd
// Does a parallel kernel reduce over its rows into partial slots? Then its
// tasks must be the fixed blocks of this many rows (else 0).
int kernel_partials(Kernel *k);  // a convolution anchor runs on padded planes, not im2col
void fused_dump(FILE *out, Program *p);  // --emit=fused

//
// codegen.c: one LLVM function per kernel and one entry function per Program.
//
// Every entry has the C signature `void NAME(FnnArgs *args)` (see runtime/fnnrt.h).
typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTargetMachineRef tm;  // from backend_target_machine()
  int kernels_done;         // kernels of earlier entries: numbers them for --profile
} Codegen;

// The state of one kernel function being emitted; shared with the emitters.
struct Emit {
  Codegen *cg;
  Program *prog;
  Kernel *k;
  LLVMValueRef fn;
  LLVMValueRef n;             // i64: rows in the batch
  LLVMValueRef lo, hi;        // i64: the rows of the batch this call computes (columns with SPLIT_COLS)
  LLVMValueRef *ptr;          // by Value.id: buffer base pointer in this kernel, or NULL
  LLVMValueRef *val;          // by Value.id: the element computed at idx in this iteration
  LLVMValueRef idx[MAXRANK];  // i64 loop indices over the iteration shape
  LLVMValueRef flat;          // flat element index when the kernel is one flat loop, else NULL
  int rank;
  LLVMBuilderRef alloca_b;    // positioned in the entry block, for cg_alloca
  LLVMValueRef scratch;       // the kernel's scratch buffer (Kernel.scratch floats), or NULL
  LLVMValueRef *sumacc;       // by Value.id: a local accumulator for a sum inside one tile, or NULL
  int64_t tile_ld;            // cg_epilogue: row stride of the tile's last axis if padded, else 0
  LLVMTypeRef f32, i32, i64, ptrty;
};

// codegen.c helpers for the emitters.
LLVMValueRef cg_i64(Emit *e, int64_t c);
LLVMValueRef cg_f32(Emit *e, double c);
LLVMValueRef cg_dim(Emit *e, Shape s, int axis);  // extent of an axis (n for the batch)
// The range of axis 0 this call computes: [lo, hi) of the batch, else all of it.
void cg_rows(Emit *e, Shape s, LLVMValueRef *lo, LLVMValueRef *hi);
// The element of v at index idx[0..v->shape.rank): loads a buffer, or computes
// an inlined producer (a unary op whose input is in a buffer).
LLVMValueRef cg_load_at(Emit *e, Value *v, LLVMValueRef *idx);
void cg_store_at(Emit *e, Value *v, LLVMValueRef *idx, LLVMValueRef x);
LLVMValueRef cg_gep(Emit *e, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef off);
LLVMValueRef cg_offset(Emit *e, Shape s, LLVMValueRef *idx);  // row-major linear offset
// Counted loop: for (i = lo; i < hi; i++) { body(i) } - the body is emitted
// between cg_loop_begin and cg_loop_end.
typedef struct {
  LLVMValueRef i, next;
  LLVMBasicBlockRef head, body, exit, latch_from;
} Loop;
Loop cg_loop_begin(Emit *e, LLVMValueRef lo, LLVMValueRef hi, const char *name);
void cg_loop_end(Emit *e, Loop *l);
void cg_loop_end_scalar(Emit *e, Loop *l);  // and keep LLVM from vectorizing or unrolling it
// Starts the shared function `name` (void, internal, not inlined, explicit
// vector code: fnnc's micro-kernels and transforms) with nparams parameters,
// pointers where ptr_mask has a bit, else i64, positioned in its entry block
// in *e, a copy of *outer; false if it exists already (then *fn is it). The
// caller ends it with a return and repositions the builder at *saved.
bool cg_shared_fn(Emit *outer, Emit *e, const char *name, int nparams, unsigned ptr_mask, LLVMValueRef *fn,
                  LLVMBasicBlockRef *saved);
LLVMValueRef cg_call_intrinsic(Emit *e, const char *name, LLVMTypeRef t, LLVMValueRef *args, int n);
LLVMValueRef cg_fast(LLVMValueRef inst);  // marks an FP instruction contractable
LLVMValueRef cg_reassoc(LLVMValueRef inst);  // contractable and reassociable (reductions)
LLVMValueRef cg_alloca(Emit *e, LLVMTypeRef t, int64_t count);  // in the entry block
void cg_zero(Emit *e, LLVMValueRef p, LLVMValueRef nfloats);
LLVMValueRef cg_max(Emit *e, LLVMValueRef a, LLVMValueRef b);   // a > b ? a : b
LLVMValueRef cg_min_i64(Emit *e, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_max_i64(Emit *e, LLVMValueRef a, LLVMValueRef b);
// Runs the kernel's elementwise members over a tile of the anchor's output: the
// anchor's elements are in `tile` (f32, row-major over the last `tdims` axes of
// its output; rows of the last axis tile_ld apart if that is set) and
// idx[0..rank-tdims) fix the outer axes.
void cg_epilogue(Emit *e, LLVMValueRef *outer_idx, int tdims, LLVMValueRef tile);
void cg_image_epilogue(Emit *e, LLVMValueRef b, LLVMValueRef tile);  // a convolution's, then Kernel.post
void emit_maxpool_image(Emit *e, Value *pool, Value *arg, LLVMValueRef b);  // ops_nn.c
// wino.c: the filter transform U = G g G^T of every channel pair (once per
// call), and one image's input transform, 16 GEMMs and output transform from
// the padded plane (at p->at_pad in the scratch) to the output plane (at
// p->at_plane, [N, OH, OW]).
void cg_wino_filter(Emit *e, const WinoPlan *p, LLVMValueRef w);
void cg_wino_image(Emit *e, const WinoPlan *p);
// The weight gradient: one image's transforms (the input from the padded
// plane, the output gradient g [N, OH, OW]) summed into dU (at p->at_u), and
// at the end of a call dU's filter-sized transform into out [N, K, 3, 3].
void cg_wino_dw_image(Emit *e, const WinoPlan *p, LLVMValueRef g);
void cg_wino_dw_filter(Emit *e, const WinoPlan *p, LLVMValueRef out);

// vmath.c: exp, log, tanh and sigmoid as straight-line float IR (no calls), so
// the loops that use them vectorize. x is a float or a vector of floats; the
// result has its type. Accurate to a few ulp, special values as libm.
LLVMValueRef vm_exp(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef vm_log(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef vm_tanh(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef vm_sigmoid(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);

// gemm.c: the register-blocked micro-kernel behind every contraction.
//   C[i,j] = (accumulate ? C[i,j] : 0) + sum_{k<K} a[i*ars + k*acs] * b[k*ldb + j]
// (and its direct-convolution form with taps, below).
typedef struct {
  int64_t M, N;               // static extents of C
  LLVMValueRef K;             // i64, may be the batch
  LLVMValueRef a, ars, acs;   // A: base and i64 strides (read as scalars)
  LLVMValueRef b;             // B: row-major, contiguous along j
  int64_t ldb;
  LLVMValueRef c;             // C: row-major
  int64_t ldc;
  bool accumulate;
  LLVMValueRef m_valid;       // rows of A that exist (later rows re-read the last), or NULL
  LLVMValueRef n_valid;       // a runtime column count instead of N (whole tiles of 16*nv), or NULL
  int mr, nv;                 // register tile: mr rows x 16*nv columns (gemm_tile)
  // Taps (direct convolution): with ntaps > 1 every k step is ntaps steps,
  //   C[i,j] += sum_{k<K} sum_{t<ntaps} a[i*ars + k*acs + aoff[t]] * b[k*ldb + boff[t] + j]
  // (the constant offsets are compiled into the micro-kernel).
  int ntaps;
  const int64_t *aoff, *boff;
  // Rows of k (krow > 0): K counts rows of krow steps, k advancing by kstride
  // from one row to the next,
  //   C[i,j] += sum_{r<K} sum_{q<krow} a[i*ars + (r*kstride + q)*acs] * b[(r*kstride + q)*ldb + j]
  // (a plane's padding columns, which hold zeros, are not summed).
  int64_t krow, kstride;
} Gemm;
void cg_gemm(Emit *e, const Gemm *g);
// <n x float> at p (n <= 64); lanes >= valid are masked off (read as 0, not written).
LLVMValueRef cg_vload(Emit *e, LLVMValueRef p, int n, int valid);
void cg_vstore(Emit *e, LLVMValueRef v, LLVMValueRef p, int n, int valid);
// A runtime count of lanes: the <16 x i1> mask of lanes below the i64 n, and
// 16 floats loaded (masked lanes as 0) or stored under such a mask.
LLVMValueRef cg_lanes_below(Emit *e, LLVMValueRef n);
LLVMValueRef cg_vload_mask(Emit *e, LLVMValueRef p, LLVMValueRef mask);
void cg_vstore_mask(Emit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask);
void cg_vcopy(Emit *e, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef n);  // n floats, 16 at a time
// The NT form: C[i,j] = (accumulate ? C[i,j] : 0) + sum_{k<K} a[i*lda + k] * b[j*ldb + k]
// (both contiguous along k). C needs rows and columns rounded up to 4 (the
// extra ones are junk).
typedef struct {
  int64_t M, N, lda, ldb, ldc;
  LLVMValueRef K, a, b, c, m_valid;  // m_valid: a runtime row count instead of M
  LLVMValueRef n_valid;              // a runtime column count instead of N, or NULL
  bool accumulate;
} GemmNT;
void cg_gemm_nt(Emit *e, const GemmNT *g);

void codegen_program(Codegen *cg, Program *p);
// A NUL-terminated model descriptor (the runtime's view of the model) emitted as
// the global `fnn_desc`.
void codegen_descriptor(Codegen *cg, const char *desc);
// entry.c: the descriptor; its `kernel` lines name the kernels of `progs` (NULL
// entries skipped) in the order codegen numbers them.
char *model_descriptor(Graph *g, int64_t work_per_n, int64_t work_fixed, int64_t scratch, Program **progs);

//
// backend.c: LLVM target, optimisation, JIT and object emission
//
// The module codegen made goes unoptimised to the JIT or to aot_build, which
// optimise and compile it part by part; backend_optimize is for printing it.
LLVMTargetMachineRef backend_target_machine(void);  // host CPU, PIC, O3
void backend_mark_glue(LLVMValueRef fn);  // calls kernels, no hot loops: a cheap pipeline
void backend_mark_vector(LLVMValueRef fn);  // explicit vector code (micro-kernels): no O3
void backend_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm);  // default<O3>, in place
// Prints the module as text IR or assembly.
void backend_print_llvm(FILE *out, LLVMModuleRef m);
int backend_print_asm(FILE *out, LLVMModuleRef m, LLVMTargetMachineRef tm);
// JIT (ORC LLJIT). Build the module in jit_context(j), then hand it over.
typedef struct Jit Jit;
Jit *jit_new(void);
LLVMContextRef jit_context(Jit *j);
int jit_add_module(Jit *j, LLVMModuleRef m);  // takes ownership of m; 0 on success
void *jit_lookup(Jit *j, const char *name);   // compiles what name needs; NULL (+error) if missing
// Compiles what name needs on background threads (now if FNNC_COMPILE_THREADS
// is 1); jit_lookup and jit_destroy wait for it. 0 on success so far.
int jit_prefetch(Jit *j, const char *name);
int jit_destroy(Jit *j);  // waits for jit_prefetch; 1 if something failed
// AOT: compiles m (left as it is) and links it with the runtime library into `out`.
int aot_build(LLVMModuleRef m, LLVMTargetMachineRef tm, const char *out);

//
// cache.c: the compile cache
//
// Object files of earlier compilations, one per part, found by the key of
// everything they depend on (backend.c's plan_key). Any failure is a miss;
// NULL (the cache is off or unusable) makes every call a miss or a no-op.
// The calls for one Cache may come from several threads.
typedef struct Cache Cache;
Cache *cache_open(void *key, size_t keylen);  // takes the malloc'ed key
void *cache_get(Cache *c, int part, size_t *len);    // malloc'ed object, or NULL
void cache_put(Cache *c, int part, const void *obj, size_t len);
void cache_close(Cache *c);  // drops the least recently used files past FNNC_CACHE_MB


#endif

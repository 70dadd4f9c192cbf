// fnnrt.h - the fnn runtime: the small C library that drives a compiled model.
//
// It is shared by `fnnc run` (the JIT hands it function pointers) and by every
// ahead-of-time trainer (aot_main.c links against the generated object). It
// never depends on LLVM.
//
//   data.c    IDX (raw or .gz) and CSV loading, uint8 storage, batching
//   train.c   the trainer: flags, init, shuffle, epochs, eval, logging, progress
//   check.c   finite-difference gradient check of a compiled model
#ifndef FNNRT_H
#define FNNRT_H

#include <stdint.h>

// The argument block of every compiled entry point: `void entry(FnnArgs *)`.
// Generated code reads it as an array of 8-byte slots, so the field order and
// sizes below are an ABI: change both sides together (compiler/codegen.c).
typedef struct FnnArgs {
  float *params;       // slot 0: parameter slab
  float *grads;        // slot 1: gradient slab (written by grad_step)
  float *state;        // slot 2: optimizer state slab
  float *work;         // slot 3: activation workspace, work_per_n*n + work_fixed floats
  const float *x;      // slot 4: [n, input...] normalised inputs
  const void *y;       // slot 5: int32 [n] class ids, or float [n, width] targets
  const float *hyper;  // slot 6: runtime scalars, indexed by FNN_HYP_*
  float *out;          // slot 7: metrics and outputs, indexed by FNN_OUT_* (eval_step)
  int64_t n;           // slot 8: rows in this batch (1..batch)
  float *scratch;      // slot 9: per-thread scratch, `scratch` floats (descriptor) per thread
  void *prof;          // slot 10: kernel timings (--profile), or NULL
  int64_t x_copies;    // slot 11: train_step with `input_copies`: x holds this many copies of
  int64_t x_stride;    // slot 12: the batch, x_stride floats apart, and a parallel task on
                       // thread tid < x_copies reads copy tid (0 or 1: one copy, for all)
} FnnArgs;

enum {
  FNN_HYP_LR,    // learning rate
  FNN_HYP_BC1,   // Adam bias correction 1 - beta1^t (t = 1-based step)
  FNN_HYP_BC2,   // Adam bias correction 1 - beta2^t
  FNN_HYP_INVN,  // 1.0f / n
  FNN_HYP_COUNT
};

// The `out` buffer. train_step and grad_step write the loss only; eval_step
// writes all three, so it needs FNN_OUT_ROWS + n * width floats (width: the
// classes, or the target values per sample).
enum {
  FNN_OUT_LOSS,     // the mean loss over the batch
  FNN_OUT_CORRECT,  // classifiers: the rows whose argmax is the label
  FNN_OUT_ROWS,     // from here: [n, width] model outputs, row-major: the class
                    // probabilities (softmax of the logits), or the predicted values
};

typedef void (*FnnEntry)(FnnArgs *);

// The thread pool compiled steps run on (pool.c). fnn_parallel calls
// task(ctx, i, tid) for every i in [0, ntasks), spread over the pool's threads
// (tid < fnn_threads()), and returns when all are done. Tasks write disjoint
// memory, so results do not depend on the number of threads.
typedef void (*FnnTask)(void *ctx, int64_t task, int64_t tid);
void fnn_parallel(FnnTask task, void *ctx, int64_t ntasks);
// fnn_parallel_split runs fnn_threads() tasks, task t on thread t, where task
// t computes block [fnn_split_at(t, count, align), fnn_split_at(t + 1, ...)) of
// its kernel's extent: shares of it that the pool balances between the threads
// from their measured speeds (the cuts are multiples of align; 0 and count at
// the ends). Every kernel cuts at the same fractions, so a thread keeps its rows.
void fnn_parallel_split(FnnTask task, void *ctx);
int64_t fnn_split_at(int64_t t, int64_t count, int64_t align);
// fnn_split_at(t, ...), with the block up to fnn_split_at(t + 1, ...) noted
// as task t's work (weight: elements per unit of count) for the balancing.
int64_t fnn_split_block(int64_t t, int64_t count, int64_t align, int64_t weight);
double fnn_split_share(int t);  // thread t's share now
int64_t fnn_split_moves(void);  // times the shares moved since the thread count was set
void fnn_set_threads(int n);  // 1..64; starts or resizes the pool
int fnn_threads(void);
// out[i] = ((0 + part[i]) + part[stride + i]) + ... over ntasks slots, in task
// order: the partial sums of a parallel reduction (pool.c).
void fnn_sum_slots(float *out, const float *part, int64_t stride, int64_t n, int64_t ntasks);

// Kernel timing (profile.c). Compiled steps call these around every kernel;
// with prof == NULL they do nothing. `kernel` numbers the descriptor's
// `kernel` lines.
double fnn_prof_begin(void *prof);
void fnn_prof_end(void *prof, int64_t kernel, double t0);

// A compiled model: its descriptor text (format in docs/architecture.md and
// parsed by train.c) and its three entry points.
typedef struct {
  const char *desc;
  FnnEntry train_step;  // forward, loss, backward, optimizer update
  FnnEntry eval_step;   // forward, loss, correct count
  FnnEntry grad_step;   // forward, loss, backward; gradients to args->grads
  void (*ready)(void);  // or NULL: called before training starts its clocks (fnnc run: waits
                        // for the training step's compilation, which is not training time)
} FnnModel;

// The trainer's main: parses the trainer flags, then trains / evaluates.
// argv[0] is the program name used in messages. Returns the exit status.
int fnn_main(const FnnModel *m, int argc, char **argv);

// `fnnc check`: compares grad_step against central finite differences of
// eval_step's loss on one small random batch. Prints the worst relative error per
// parameter; returns 0 if all are within tolerance, 1 otherwise.
int fnn_check(const FnnModel *m, int argc, char **argv);

#endif

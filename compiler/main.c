// main.c: the fnnc command line.
//
//   fnnc FILE.fnn -o OUT               build a standalone trainer
//   fnnc run FILE.fnn [trainer flags]  compile with the JIT and train now
//   fnnc check FILE.fnn [flags]        gradients against finite differences
//   fnnc FILE.fnn --emit=STAGE         print ast, ir, grad, fused, llvm or asm
#include "fnnc.h"
#include "fnnrt.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm/Config/llvm-config.h>

static void usage(FILE *out) {
  fprintf(out,
          "usage: fnnc FILE.fnn -o OUT              compile a standalone trainer\n"
          "       fnnc run FILE.fnn [flags]         compile in memory (JIT) and train\n"
          "       fnnc check FILE.fnn [flags]       check gradients against finite differences\n"
          "       fnnc FILE.fnn --emit=STAGE        print a stage: ast, ir, grad, fused, llvm, asm\n"
          "       fnnc --help | --version\n"
          "\n"
          "trainer flags (fnnc run, and every built trainer):\n"
          "  --epochs N     --batch N     --lr X       --seed N     --threads N\n"
          "  --data DIR     data files resolve against DIR (default ./data)\n"
          "  --log FILE     CSV metrics: epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s\n"
          "  --steps N      stop after N training steps; 0 compiles and exits without loading data\n"
          "  --log-every N  also a CSV row every N steps\n"
          "  --plot F.svg   the training curves as an SVG chart\n"
          "  --quiet        no progress bar, no per-epoch lines\n"
          "  --profile      time spent in each compiled kernel\n"
          "  --save FILE    safetensors checkpoint at the end (and on SIGINT/SIGTERM)\n"
          "  --save-every N also every N steps\n"
          "  --resume FILE  continue exactly where a checkpoint left off\n"
          "  --init FILE    load weights only (--init-partial: missing tensors keep their init)\n"
          "  --merge-lora   with --save: LoRA adapters folded into their base weights\n"
          "  --eval         with --init or --resume: evaluate only (confusion matrix, R^2)\n"
          "  --predict FILE one line per sample of an IDX or CSV input file (--out FILE.csv)\n"
          "  --sample N     with --init: generate N characters from a tokens model\n"
          "                 (--temperature X, --prime TEXT)\n"
          "  (a built trainer's --help, and docs/cli.md, say more)\n"
          "\n"
          "check flags: --seed N  --batch N  --tol X\n");
}

typedef enum { EMIT_NONE, EMIT_AST, EMIT_IR, EMIT_GRAD, EMIT_FUSED, EMIT_LLVM, EMIT_ASM } EmitStage;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// FNNC_TIME=1: how long a stage took, since *t (which moves on to now).
static void lap(const char *what, double *t) {
  double t1 = now();
  if (getenv("FNNC_TIME")) fprintf(stderr, "fnnc: %s in %.3f s\n", what, t1 - *t);
  *t = t1;
}

// Builds and fuses the entry points in `want` (progs[e] stays NULL for the
// others). Returns the descriptor, or NULL after errors.
static char *compile(Node *prog, const bool *want, Graph **train_out, Program **progs) {
  Graph *gs[ENTRY_COUNT] = {0};
  for (int e = 0; e < ENTRY_COUNT; e++) {
    progs[e] = NULL;
    if (!want[e] && e != ENTRY_TRAIN) continue;
    gs[e] = build_entry(prog, (Entry)e);
    if (!gs[e]) return NULL;
    if (want[e]) progs[e] = fuse(gs[e], (Entry)e);
  }
  *train_out = gs[ENTRY_TRAIN];
  int64_t per_n = 0, fixed = 0, scratch = 0;
  for (int e = 0; e < ENTRY_COUNT; e++) {
    if (!progs[e]) continue;
    if (progs[e]->work_total_per_n > per_n) per_n = progs[e]->work_total_per_n;
    if (progs[e]->work_total_fixed > fixed) fixed = progs[e]->work_total_fixed;
    if (progs[e]->scratch > scratch) scratch = progs[e]->scratch;
  }
  return model_descriptor(gs[ENTRY_TRAIN], per_n, fixed, scratch, progs);
}

static void codegen_all(Codegen *cg, Program **progs, const char *desc) {
  cg->b = LLVMCreateBuilderInContext(cg->ctx);
  for (int e = 0; e < ENTRY_COUNT; e++)
    if (progs[e]) codegen_program(cg, progs[e]);
  codegen_descriptor(cg, desc);
  LLVMDisposeBuilder(cg->b);
}

// fnnc run compiles the training step on background threads while the
// runtime sets up (allocates and initialises the slabs), and the evaluation
// step when the runtime first calls it, not before the first training step.
static Jit *lazy_jit;
static FnnEntry lazy_train, lazy_eval;
static double start_time;

// Waits until the training step is compiled (FnnModel.ready: the runtime
// calls it before it starts its clocks, so the wait is not training time).
static void train_step_ready(void) {
  if (lazy_train) return;
  if (!(lazy_train = (FnnEntry)jit_lookup(lazy_jit, "fnn_train_step"))) exit(1);
  if (getenv("FNNC_TIME")) fprintf(stderr, "fnnc: training step ready at %.3f s\n", now() - start_time);
}

static void train_step_on_demand(FnnArgs *args) {
  train_step_ready();
  lazy_train(args);
}

static void eval_step_on_demand(FnnArgs *args) {
  if (!lazy_eval && !(lazy_eval = (FnnEntry)jit_lookup(lazy_jit, "fnn_eval_step"))) exit(1);
  lazy_eval(args);
}

int main(int argc, char **argv) {
  const char *cmd = NULL, *file = NULL, *out = NULL;
  EmitStage emit = EMIT_NONE;
  int rest = argc;  // first trainer flag for run/check
  int i = 1;
  if (argc < 2) {
    usage(stderr);
    return 1;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("fnnc %s (LLVM %d)\n", FNNC_VERSION, LLVM_VERSION_MAJOR);
    return 0;
  }
  if (!strcmp(argv[1], "run") || !strcmp(argv[1], "check")) {
    cmd = argv[1];
    if (argc < 3 || argv[2][0] == '-') {
      error_plain("'fnnc %s' needs a model file", cmd);
      return 1;
    }
    file = argv[2];
    rest = 3;
  } else {
    for (; i < argc; i++) {
      const char *a = argv[i];
      if (!strcmp(a, "-o")) {
        if (i + 1 >= argc) {
          error_plain("'-o' needs an output file name");
          return 1;
        }
        out = argv[++i];
      } else if (!strncmp(a, "--emit=", 7)) {
        static const char *const stages[] = {"ast", "ir", "grad", "fused", "llvm", "asm", NULL};
        int s = 0;
        while (stages[s] && strcmp(stages[s], a + 7)) s++;
        if (!stages[s]) {
          error_plain("unknown stage '%s' for --emit", a + 7);
          const char *c = closest_word(a + 7, stages);
          if (c) hint("did you mean '--emit=%s'?", c);
          else hint("the stages are ast, ir, grad, fused, llvm and asm");
          return 1;
        }
        emit = (EmitStage)(s + 1);
      } else if (a[0] == '-' && a[1]) {
        error_plain("unknown option '%s'", a);
        static const char *const opts[] = {"-o", "--emit=", "--help", "--version", NULL};
        const char *c = closest_word(a, opts);
        if (c) hint("did you mean '%s'?", c);
        else hint("trainer flags go after 'fnnc run FILE', or to the built trainer");
        return 1;
      } else if (file) {
        error_plain("more than one model file ('%s' and '%s')", file, a);
        return 1;
      } else {
        file = a;
      }
    }
    if (!file) {
      error_plain("no model file");
      usage(stderr);
      return 1;
    }
    if (!out && emit == EMIT_NONE) {
      error_plain("nothing to do with '%s'", file);
      hint("use 'fnnc %s -o NAME' to build a trainer, or 'fnnc run %s' to train now", file, file);
      return 1;
    }
  }

  double t0 = start_time = now();
  Source *src = source_read(file);
  if (!src) return 1;
  Node *prog = parse_file(src);
  if (!prog) return 1;
  if (emit == EMIT_AST) {
    ast_dump(stdout, prog);
    return 0;
  }
  if (emit == EMIT_IR || emit == EMIT_GRAD) {
    Graph *g = build_entry(prog, ENTRY_TRAIN);
    if (!g) return 1;
    ir_dump(stdout, g, emit == EMIT_IR ? PH_FWD : PH_UPDATE);
    return 0;
  }
  Graph *train;
  Program *progs[ENTRY_COUNT];
  // fnnc check needs the gradient entry; training needs the step and evaluation.
  bool want[ENTRY_COUNT] = {true, true, false};
  if (cmd && !strcmp(cmd, "check")) want[ENTRY_TRAIN] = false, want[ENTRY_GRAD] = true;
  double t = t0;
  char *desc = compile(prog, want, &train, progs);
  if (!desc) return 1;
  lap("front end (parse, IR, autodiff, fusion)", &t);
  if (emit == EMIT_FUSED) {
    fused_dump(stdout, progs[ENTRY_TRAIN]);
    printf("\n");
    fused_dump(stdout, progs[ENTRY_EVAL]);
    return 0;
  }

  Codegen cg = {0};
  cg.tm = backend_target_machine();
  if (!cmd) {
    // Ahead of time, or a printed stage.
    cg.ctx = LLVMContextCreate();
    cg.mod = LLVMModuleCreateWithNameInContext(train->info.name, cg.ctx);
    codegen_all(&cg, progs, desc);
    int rc = 0;
    if (emit != EMIT_NONE) backend_optimize(cg.mod, cg.tm);
    if (emit == EMIT_LLVM)
      backend_print_llvm(stdout, cg.mod);
    else if (emit == EMIT_ASM)
      rc = backend_print_asm(stdout, cg.mod, cg.tm);
    else
      rc = aot_build(cg.mod, cg.tm, out);
    LLVMDisposeModule(cg.mod);
    LLVMContextDispose(cg.ctx);
    LLVMDisposeTargetMachine(cg.tm);
    arena_free_all();
    return rc ? 1 : 0;
  }

  // In memory: fnnc run / fnnc check.
  Jit *jit = jit_new();
  if (!jit) return 1;
  lap("JIT setup", &t);
  cg.ctx = jit_context(jit);
  cg.mod = LLVMModuleCreateWithNameInContext(train->info.name, cg.ctx);
  codegen_all(&cg, progs, desc);
  lap("LLVM IR emission", &t);
  if (jit_add_module(jit, cg.mod)) return 1;
  lap("LLVM IR checked and cut into parts", &t);
  FnnModel m = {.desc = desc};
  FnnEntry *slot[ENTRY_COUNT] = {&m.train_step, &m.eval_step, &m.grad_step};
  bool training = !strcmp(cmd, "run");
  if (training) {
    if (jit_prefetch(jit, "fnn_train_step")) return 1;
    lazy_jit = jit;
    m.train_step = train_step_on_demand;
    m.eval_step = eval_step_on_demand;
    m.ready = train_step_ready;
  }
  for (int e = 0; e < ENTRY_COUNT; e++)
    if (progs[e] && !training && !(*slot[e] = (FnnEntry)jit_lookup(jit, arena_printf("fnn_%s", entry_names[e]))))
      return 1;
  if (getenv("FNNC_TIME") && !training) fprintf(stderr, "fnnc: compiled in %.3f s\n", now() - t0);
  // Trainer flags: argv[0] names the program in messages.
  char **targv = malloc(sizeof(char *) * (size_t)(argc - rest + 2));
  targv[0] = (char *)file;
  int targc = 1;
  for (int j = rest; j < argc; j++) targv[targc++] = argv[j];
  targv[targc] = NULL;
  t = now();
  int rc = training ? fnn_main(&m, targc, targv) : fnn_check(&m, targc, targv);
  free(targv);
  lap(training ? "training (with set-up and evaluation)" : "gradient check", &t);
  if (jit_destroy(jit)) rc = 1;
  lap("JIT shut down", &t);
  LLVMDisposeTargetMachine(cg.tm);
  arena_free_all();
  if (getenv("FNNC_TIME")) fprintf(stderr, "fnnc: %.3f s since main started\n", now() - t0);
  return rc;
}

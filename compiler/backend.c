// backend.c: the LLVM end of the pipeline - the target machine, the O3 pipeline,
// textual IR and assembly, the ORC JIT, and ahead-of-time objects linked with
// the runtime library by the system C compiler. O3 and code generation of big
// modules run on several threads (see "Splitting a module" below).
//
// Everything here goes through LLVM's C API.
//
// Environment: FNNC_CPU=NAME targets a baseline CPU instead of the host;
// FNNC_COMPILE_THREADS=N caps the compile threads; FNNC_TIME=1 prints the time
// of each LLVM stage; FNNC_JIT_DEBUG=1 registers JIT'd code with gdb;
// FNNC_LIBDIR=DIR overrides where aot_build finds the runtime.
#include "fnnc.h"
#include "fnnrt.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/LLJITUtils.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

extern char **environ;

// The absolute build directory (runtime/aot_main.o, libfnnrt.a); the Makefile
// passes it. The environment variable of the same name overrides it.
#ifndef FNNC_LIBDIR
#define FNNC_LIBDIR "build"
#endif

// FNNC_TIME=1 in the environment prints how long each LLVM stage takes.
static double stage_start(void) {
  if (!getenv("FNNC_TIME")) return 0;
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void stage_end(const char *what, double t0) {
  if (!getenv("FNNC_TIME")) return;
  fprintf(stderr, "fnnc: %s in %.3f s\n", what, stage_start() - t0);
}

//
// Target machine
//

static void init_native_target(void) {
  static bool done;
  if (done) return;
  if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter() || LLVMInitializeNativeAsmParser())
    die("LLVM has no native target for this host");
  done = true;
}

// FNNC_CPU=generic|x86-64-v2|haswell|... builds for a baseline CPU (valgrind
// cannot run code built for the host's newest extensions); empty means the host.
static const char *cpu_override(void) {
  const char *c = getenv("FNNC_CPU");
  return c && *c ? c : NULL;
}

// What it takes to make another target machine like a given one, from any thread.
typedef struct {
  LLVMTargetRef target;
  char *triple, *cpu, *features;
} TmSpec;

static LLVMTargetMachineRef tm_create(const TmSpec *s) {
  // PIC: the default relocation model makes R_X86_64_32 relocations, which a
  // default (PIE) link of the AOT trainer rejects.
  return LLVMCreateTargetMachine(s->target, s->triple, s->cpu, s->features, LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                 LLVMCodeModelDefault);
}

static void tmspec_of(TmSpec *s, LLVMTargetMachineRef tm) {
  s->target = LLVMGetTargetMachineTarget(tm);
  s->triple = LLVMGetTargetMachineTriple(tm);
  s->cpu = LLVMGetTargetMachineCPU(tm);
  s->features = LLVMGetTargetMachineFeatureString(tm);
}

static void tmspec_free(TmSpec *s) {
  LLVMDisposeMessage(s->triple);
  LLVMDisposeMessage(s->cpu);
  LLVMDisposeMessage(s->features);
}

LLVMTargetMachineRef backend_target_machine(void) {
  init_native_target();
  TmSpec s;
  const char *over = cpu_override();
  s.triple = LLVMGetDefaultTargetTriple();
  s.cpu = over ? LLVMCreateMessage(over) : LLVMGetHostCPUName();
  s.features = over ? LLVMCreateMessage("") : LLVMGetHostCPUFeatures();
  char *err = NULL;
  if (LLVMGetTargetFromTriple(s.triple, &s.target, &err)) die("no LLVM target for '%s': %s", s.triple, err);
  LLVMTargetMachineRef tm = tm_create(&s);
  if (!tm) die("cannot create a target machine for '%s' (cpu '%s')", s.triple, s.cpu);
  tmspec_free(&s);
  return tm;
}

//
// Splitting a module for parallel compilation
//
// O3 and code generation run on several threads, each on a part of the module
// in its own LLVMContext. A part is a bitcode copy of the whole module with
// everything it does not own removed. For O3 the parts are the connected
// components of the reference graph (an entry point with its kernels), so no
// optimisation across a part boundary is lost, and they are linked back into
// the module in a fixed order: the result does not depend on the thread count.
// For code generation the optimised functions are spread over the threads by
// size, internal functions become external so the parts can call each other,
// and each part becomes one object file.

// FNNC_COMPILE_THREADS=N caps the threads (1: no threads; 0: no split either,
// O3 on the whole module); by default, the CPUs this process may run on.
static int compile_threads(bool *explicit_) {
  const char *s = getenv("FNNC_COMPILE_THREADS");
  *explicit_ = s && *s;
  int n;
  if (*explicit_) {
    n = atoi(s);
  } else {
#ifdef CPU_COUNT
    cpu_set_t set;
    n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
#else
    n = (int)sysconf(_SC_NPROCESSORS_ONLN);
#endif
  }
  if (*explicit_ && n == 0 && s[0] == '0') return 0;
  return n < 1 ? 1 : n > 32 ? 32 : n;
}

// The module's definitions: functions [0, nfn), then global variables [nfn, n),
// in module order (which a bitcode round trip keeps).
typedef struct {
  LLVMValueRef *v;
  int nfn, n;
  int64_t *size;     // instructions, per function
  int *owner;        // the part that keeps a definition; -1: every part using it (a copied constant)
  LLVMValueRef *ht;  // hash table: definition -> index
  int *hti;
  size_t htmask;
} Defs;

static size_t ptr_hash(LLVMValueRef v) { return (size_t)(((uintptr_t)v >> 4) * 0x9E3779B97F4A7C15ull); }

static int defs_find(const Defs *d, LLVMValueRef v) {
  for (size_t h = ptr_hash(v) & d->htmask;; h = (h + 1) & d->htmask) {
    if (!d->ht[h]) return -1;
    if (d->ht[h] == v) return d->hti[h];
  }
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) die("out of memory");
  return p;
}

// Lists the definitions of m in module order. Works on any copy of the module.
static int list_defs(LLVMModuleRef m, LLVMValueRef *v, int *nfn) {
  int n = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
    if (!LLVMIsDeclaration(f)) {
      if (v) v[n] = f;
      n++;
    }
  if (nfn) *nfn = n;
  for (LLVMValueRef g = LLVMGetFirstGlobal(m); g; g = LLVMGetNextGlobal(g))
    if (!LLVMIsDeclaration(g)) {
      if (v) v[n] = g;
      n++;
    }
  return n;
}

static Defs *defs_new(LLVMModuleRef m) {
  Defs *d = xcalloc(1, sizeof *d);
  d->n = list_defs(m, NULL, NULL);
  d->v = xcalloc((size_t)d->n, sizeof *d->v);
  list_defs(m, d->v, &d->nfn);
  d->size = xcalloc((size_t)d->n, sizeof *d->size);
  d->owner = xcalloc((size_t)d->n, sizeof *d->owner);
  size_t cap = 16;
  while (cap < 2 * (size_t)d->n) cap *= 2;
  d->ht = xcalloc(cap, sizeof *d->ht);
  d->hti = xcalloc(cap, sizeof *d->hti);
  d->htmask = cap - 1;
  for (int i = 0; i < d->n; i++) {
    size_t h = ptr_hash(d->v[i]) & d->htmask;
    while (d->ht[h]) h = (h + 1) & d->htmask;
    d->ht[h] = d->v[i];
    d->hti[h] = i;
    if (i < d->nfn)
      for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(d->v[i]); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in)) d->size[i]++;
  }
  return d;
}

static void defs_free(Defs *d) {
  free(d->v);
  free(d->size);
  free(d->owner);
  free(d->ht);
  free(d->hti);
  free(d);
}

// Calls f(d, self, user, call, arg) for every definition `user` whose body or
// initializer refers to v (through constant expressions); user is -1 for a
// reference from outside the definitions (which makes the module unsplittable).
// `call` says the reference is the callee of a direct call.
typedef void (*UserFn)(Defs *d, int self, int user, bool call, void *arg);

static void for_each_user(Defs *d, LLVMValueRef v, int self, UserFn f, void *arg) {
  for (LLVMUseRef u = LLVMGetFirstUse(v); u; u = LLVMGetNextUse(u)) {
    LLVMValueRef user = LLVMGetUser(u);
    if (LLVMIsAInstruction(user)) {
      // The callee is a call's last operand.
      bool call = LLVMIsACallInst(user) && LLVMGetOperandUse(user, (unsigned)LLVMGetNumOperands(user) - 1) == u;
      f(d, self, defs_find(d, LLVMGetBasicBlockParent(LLVMGetInstructionParent(user))), call, arg);
    } else if (LLVMIsAGlobalValue(user)) {
      f(d, self, defs_find(d, user), false, arg);
    } else if (LLVMIsAConstant(user)) {
      for_each_user(d, user, self, f, arg);
    } else {
      f(d, self, -1, false, arg);
    }
  }
}

// Union-find over definitions.
static int uf_find(int *parent, int i) {
  while (parent[i] != i) i = parent[i] = parent[parent[i]];
  return i;
}

static void uf_union(int *parent, int a, int b) {
  a = uf_find(parent, a);
  b = uf_find(parent, b);
  if (a != b) parent[a > b ? a : b] = a < b ? a : b;  // the root is the earliest definition
}

typedef struct {
  int *parent;
  bool ok;         // every reference comes from a function body
  bool join;       // put the referring functions in the definition's group
  bool join_addr;  // ... unless they only call it directly
} Refs;

static void note_ref(Defs *d, int self, int user, bool call, void *arg) {
  Refs *r = arg;
  if (user < 0 || user >= d->nfn) r->ok = false;  // from a global's initializer, or unknown
  else if (r->join || (r->join_addr && !call)) uf_union(r->parent, self, user);
}

// Private or internal constants, which each part may have its own copy of.
static bool copyable(LLVMValueRef g) {
  LLVMLinkage l = LLVMGetLinkage(g);
  return LLVMIsAGlobalVariable(g) && LLVMIsGlobalConstant(g) && (l == LLVMInternalLinkage || l == LLVMPrivateLinkage);
}

// Groups the definitions: for O3 (calls_too) the connected components of the
// reference graph. For code generation only direct calls may cross parts (the
// JIT links those through stubs, which reach any address): a function stays
// with the functions that take its address, and a global that cannot be copied
// with the functions using it. Sets parent[i] to the first definition of i's
// group. Returns false if something other than a function body refers to a
// definition (the split does not follow such references).
static bool group_defs(Defs *d, int *parent, bool calls_too) {
  Refs r = {parent, true, false, false};
  for (int i = 0; i < d->n; i++) parent[i] = i;
  for (int i = 0; i < d->n; i++) {
    r.join = calls_too || (i >= d->nfn && !copyable(d->v[i]));
    r.join_addr = i < d->nfn;
    for_each_user(d, d->v[i], i, note_ref, &r);
  }
  for (int i = 0; i < d->n; i++) parent[i] = uf_find(parent, i);
  return r.ok;
}

// Makes fn a declaration.
static void delete_body(LLVMValueRef fn) {
  for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb; bb = LLVMGetNextBasicBlock(bb))
    for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in))
      if (LLVMGetFirstUse(in)) LLVMReplaceAllUsesWith(in, LLVMGetPoison(LLVMTypeOf(in)));
  // No instruction has uses now; the blocks lose theirs with the terminators.
  for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb; bb = LLVMGetNextBasicBlock(bb)) {
    LLVMValueRef in;
    while ((in = LLVMGetFirstInstruction(bb))) LLVMInstructionEraseFromParent(in);
  }
  LLVMBasicBlockRef bb;
  while ((bb = LLVMGetFirstBasicBlock(fn))) LLVMDeleteBasicBlock(bb);
}

// Work shared by the threads of one split.
typedef struct {
  const char *bc;  // bitcode of the whole module
  size_t bclen;
  int nfn, n;
  const int *owner;  // per definition: the part keeping it, -1: every part using it
  bool codegen;      // parts become objects (else optimised bitcode)
  TmSpec tms;
  LLVMMemoryBufferRef *out;  // per part
  char **err;                // per part: a malloc'ed message on failure
} Split;

static char *xstrdup(const char *s) {
  char *p = strdup(s ? s : "unknown error");
  if (!p) die("out of memory");
  return p;
}

// Removes from the part's copy of the module what the part does not own.
static const char *strip_part(LLVMModuleRef m, const Split *sp, int part) {
  int nfn;
  if (list_defs(m, NULL, &nfn) != sp->n || nfn != sp->nfn) return "the module changed in a bitcode round trip";
  LLVMValueRef *v = xcalloc((size_t)sp->n, sizeof *v);
  list_defs(m, v, NULL);
  const char *err = NULL;
  for (int i = 0; i < sp->nfn; i++)
    if (sp->owner[i] != part) delete_body(v[i]);
  for (int i = 0; i < sp->nfn; i++)
    if (sp->owner[i] != part && !LLVMGetFirstUse(v[i])) LLVMDeleteFunction(v[i]);
    else if (sp->owner[i] != part && !sp->codegen) err = "a function is used outside its part";
  for (int i = sp->nfn; i < sp->n && !err; i++) {
    if (sp->owner[i] == part) continue;
    if (!LLVMGetFirstUse(v[i])) LLVMDeleteGlobal(v[i]);
    else if (sp->owner[i] >= 0) err = "a global is used outside its part";
  }
  free(v);
  return err;
}

static LLVMErrorRef run_o3(LLVMModuleRef m, LLVMTargetMachineRef tm) {
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
  LLVMPassBuilderOptionsSetLoopInterleaving(opts, 1);
  LLVMPassBuilderOptionsSetLoopUnrolling(opts, 1);
  // The loop vectorizer needs the real target machine (its cost model), else it
  // silently does nothing.
  LLVMErrorRef e = LLVMRunPasses(m, "default<O3>", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  return e;
}

// One part, on a worker thread: touches only its own context and target machine.
static void part_worker(void *arg, int part) {
  Split *sp = arg;
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMMemoryBufferRef in = LLVMCreateMemoryBufferWithMemoryRange(sp->bc, sp->bclen, "fnnc-part", 0);
  LLVMModuleRef m = NULL;
  bool bad = LLVMParseBitcodeInContext2(ctx, in, &m);
  LLVMDisposeMemoryBuffer(in);
  const char *err = bad ? "cannot read the module's bitcode back" : strip_part(m, sp, part);
  if (err) {
    sp->err[part] = xstrdup(err);
  } else {
    LLVMTargetMachineRef tm = tm_create(&sp->tms);
    if (!sp->codegen) {
      LLVMErrorRef e = run_o3(m, tm);
      if (e) {
        char *msg = LLVMGetErrorMessage(e);
        sp->err[part] = xstrdup(msg);
        LLVMDisposeErrorMessage(msg);
      } else {
        sp->out[part] = LLVMWriteBitcodeToMemoryBuffer(m);
      }
    } else {
      char *msg = NULL;
      if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &msg, &sp->out[part])) {
        sp->err[part] = xstrdup(msg);
        sp->out[part] = NULL;
      }
      LLVMDisposeMessage(msg);
    }
    LLVMDisposeTargetMachine(tm);
  }
  if (m) LLVMDisposeModule(m);
  LLVMContextDispose(ctx);
}

// Runs fn(arg, order[k]) for k in [0, n) on up to `threads` threads (the
// calling thread is one of them).
typedef struct {
  pthread_mutex_t mu;
  int next, n;
  const int *order;
  void (*fn)(void *, int);
  void *arg;
} Pool;

static void *pool_worker(void *p) {
  Pool *pool = p;
  for (;;) {
    pthread_mutex_lock(&pool->mu);
    int k = pool->next++;
    pthread_mutex_unlock(&pool->mu);
    if (k >= pool->n) return NULL;
    pool->fn(pool->arg, pool->order[k]);
  }
}

static void run_parallel(int n, const int *order, int threads, void (*fn)(void *, int), void *arg) {
  Pool pool = {PTHREAD_MUTEX_INITIALIZER, 0, n, order, fn, arg};
  if (threads > n) threads = n;
  pthread_t tid[32];
  int started = 0;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 16u << 20);  // LLVM recurses deeply on big functions
  for (int t = 1; t < threads && t < 32; t++)
    if (pthread_create(&tid[started], &attr, pool_worker, &pool) == 0) started++;
  pthread_attr_destroy(&attr);
  pool_worker(&pool);
  for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
}

// Task order for the pool: biggest first.
static int *order_by_size(const int64_t *size, int n) {
  int *order = xcalloc((size_t)n, sizeof *order);
  for (int i = 0; i < n; i++) {
    int k = i;
    while (k > 0 && size[order[k - 1]] < size[i]) {
      order[k] = order[k - 1];
      k--;
    }
    order[k] = i;
  }
  return order;
}

// Splits m into nparts by d->owner and runs them. On failure reports and returns
// false; the outputs that were made are in sp->out either way.
static bool run_split(Split *sp, LLVMModuleRef m, LLVMTargetMachineRef tm, Defs *d, int nparts, int threads,
                      const int64_t *part_size) {
  LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(m);
  sp->bc = LLVMGetBufferStart(bc);
  sp->bclen = LLVMGetBufferSize(bc);
  sp->nfn = d->nfn;
  sp->n = d->n;
  sp->owner = d->owner;
  tmspec_of(&sp->tms, tm);
  sp->out = xcalloc((size_t)nparts, sizeof *sp->out);
  sp->err = xcalloc((size_t)nparts, sizeof *sp->err);
  int *order = order_by_size(part_size, nparts);
  run_parallel(nparts, order, threads, part_worker, sp);
  free(order);
  tmspec_free(&sp->tms);
  LLVMDisposeMemoryBuffer(bc);
  bool ok = true;
  for (int p = 0; p < nparts; p++)
    if (sp->err[p]) {
      if (ok) error_plain("LLVM %s failed: %s", sp->codegen ? "code generation" : "optimisation", sp->err[p]);
      ok = false;
      free(sp->err[p]);
    }
  free(sp->err);
  return ok;
}

// Modules smaller than this (in instructions) are optimised whole, unless
// FNNC_COMPILE_THREADS is set; bigger ones in about O3_PARTS parts at most.
#define MIN_SPLIT_O3 2000
#define O3_PARTS 8

// O3 on m in parts (see above). Returns false if m is not split.
static bool optimize_split(LLVMModuleRef m, LLVMTargetMachineRef tm) {
  bool explicit_;
  int threads = compile_threads(&explicit_);
  if (threads == 0) return false;
  Defs *d = defs_new(m);
  int *parent = xcalloc((size_t)d->n, sizeof *parent);
  int64_t total = 0;
  for (int i = 0; i < d->nfn; i++) total += d->size[i] + 1;
  bool ok = d->nfn > 1 && (explicit_ || total >= MIN_SPLIT_O3) && group_defs(d, parent, true);
  // Components in module order of their first definition; consecutive small
  // ones share a part. Nothing here depends on the number of threads.
  int64_t *comp_size = xcalloc((size_t)d->n, sizeof *comp_size);
  for (int i = 0; ok && i < d->n; i++) comp_size[parent[i]] += d->size[i] + 1;
  int nparts = 0;
  int64_t filled = 0;
  int *part_of_root = xcalloc((size_t)d->n, sizeof *part_of_root);
  for (int i = 0; ok && i < d->n; i++) {
    if (parent[i] == i) {
      if (nparts == 0 || filled >= total / O3_PARTS) {
        nparts++;
        filled = 0;
      }
      part_of_root[i] = nparts - 1;
      filled += comp_size[i];
    }
    d->owner[i] = part_of_root[parent[i]];
  }
  free(comp_size);
  if (!ok || nparts < 2) {
    free(parent);
    free(part_of_root);
    defs_free(d);
    return false;
  }
  int64_t *part_size = xcalloc((size_t)nparts, sizeof *part_size);
  for (int i = 0; i < d->n; i++) part_size[d->owner[i]] += d->size[i] + 1;
  Split sp = {0};
  if (!run_split(&sp, m, tm, d, nparts, threads, part_size)) die("LLVM optimisation failed");

  // Empty m and link the optimised parts back in, in order.
  for (int i = 0; i < d->nfn; i++) delete_body(d->v[i]);
  for (int i = 0; i < d->n; i++) {
    if (i < d->nfn) LLVMDeleteFunction(d->v[i]);
    else LLVMDeleteGlobal(d->v[i]);
  }
  // The declarations too: the parts bring those they use, in their order.
  for (LLVMValueRef f = LLVMGetFirstFunction(m), next; f; f = next) {
    next = LLVMGetNextFunction(f);
    if (!LLVMGetFirstUse(f)) LLVMDeleteFunction(f);
  }
  for (LLVMValueRef g = LLVMGetFirstGlobal(m), next; g; g = next) {
    next = LLVMGetNextGlobal(g);
    if (!LLVMGetFirstUse(g)) LLVMDeleteGlobal(g);
  }
  LLVMContextRef ctx = LLVMGetModuleContext(m);
  for (int p = 0; p < nparts; p++) {
    LLVMModuleRef part;
    if (LLVMParseBitcodeInContext2(ctx, sp.out[p], &part)) die("cannot read an optimised part back");
    LLVMDisposeMemoryBuffer(sp.out[p]);
    if (LLVMLinkModules2(m, part)) die("cannot link the optimised parts");  // destroys part
  }
  free(sp.out);
  free(part_size);
  free(parent);
  free(part_of_root);
  defs_free(d);
  return true;
}

// Below this many instructions code generation on one thread is as fast (unless
// FNNC_COMPILE_THREADS is set).
#define MIN_SPLIT_CODEGEN 4000

// Code generation of m (not modified) into object files on several threads.
// Returns the number of objects (in *objs), 0 if m is not worth splitting, -1
// after reporting an error.
static int emit_objects(LLVMModuleRef m, LLVMTargetMachineRef tm, LLVMMemoryBufferRef **objs) {
  bool explicit_;
  int threads = compile_threads(&explicit_);
  if (threads < 2) return 0;
  LLVMModuleRef clone = LLVMCloneModule(m);
  Defs *d = defs_new(clone);
  int *parent = xcalloc((size_t)d->n, sizeof *parent);
  int64_t total = 0;
  for (int i = 0; i < d->nfn; i++) total += d->size[i];
  int ngroups = 0;
  bool ok = group_defs(d, parent, false) && (explicit_ || total >= MIN_SPLIT_CODEGEN);
  for (int i = 0; i < d->nfn; i++) ngroups += parent[i] == i;
  int nparts = threads < ngroups ? threads : ngroups;
  if (!ok || nparts < 2) {
    free(parent);
    defs_free(d);
    LLVMDisposeModule(clone);
    return 0;
  }
  // Biggest group first into the lightest part.
  int64_t *gsize = xcalloc((size_t)d->n, sizeof *gsize);
  for (int i = 0; i < d->nfn; i++) gsize[parent[i]] += d->size[i];
  int *order = order_by_size(gsize, d->n);
  int64_t *part_size = xcalloc((size_t)nparts, sizeof *part_size);
  int *part_of_root = xcalloc((size_t)d->n, sizeof *part_of_root);
  for (int k = 0; k < d->n; k++) {
    int g = order[k];
    if (parent[g] != g || g >= d->nfn) continue;
    int best = 0;
    for (int p = 1; p < nparts; p++)
      if (part_size[p] < part_size[best]) best = p;
    part_of_root[g] = best;
    part_size[best] += gsize[g];
  }
  for (int i = 0; i < d->n; i++) {
    if (i >= d->nfn && copyable(d->v[i])) d->owner[i] = -1;
    else if (parent[i] < d->nfn) d->owner[i] = part_of_root[parent[i]];
    else d->owner[i] = 0;  // a global no function uses
  }
  // Functions called across parts need external names. Calls keep their
  // calling convention; the names get a prefix no C symbol has.
  for (int i = 0; i < d->nfn; i++) {
    LLVMLinkage l = LLVMGetLinkage(d->v[i]);
    if (l != LLVMInternalLinkage && l != LLVMPrivateLinkage) continue;
    size_t len;
    const char *name = LLVMGetValueName2(d->v[i], &len);
    char *ext = len ? arena_printf("fnnc.%s", name) : arena_printf("fnnc.anon.%d", i);
    LLVMSetLinkage(d->v[i], LLVMExternalLinkage);
    LLVMSetVisibility(d->v[i], LLVMDefaultVisibility);
    LLVMSetValueName2(d->v[i], ext, strlen(ext));
  }
  Split sp = {.codegen = true};
  ok = run_split(&sp, clone, tm, d, nparts, threads, part_size);
  if (!ok) {
    for (int p = 0; p < nparts; p++)
      if (sp.out[p]) LLVMDisposeMemoryBuffer(sp.out[p]);
    free(sp.out);
    sp.out = NULL;
  }
  *objs = sp.out;
  free(order);
  free(gsize);
  free(part_size);
  free(part_of_root);
  free(parent);
  defs_free(d);
  LLVMDisposeModule(clone);
  return ok ? nparts : -1;
}

//
// Optimisation
//

static void add_string_attr(LLVMContextRef ctx, LLVMValueRef fn, const char *k, const char *v) {
  LLVMAttributeRef a = LLVMCreateStringAttribute(ctx, k, (unsigned)strlen(k), v, (unsigned)strlen(v));
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
}

void backend_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm) {
  LLVMContextRef ctx = LLVMGetModuleContext(m);
  char *triple = LLVMGetTargetMachineTriple(tm);
  LLVMSetTarget(m, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(m, dl);
  LLVMDisposeTargetData(dl);

  // Per-function target attributes: without them the vectorizer's cost model
  // and the code generator see a generic CPU. prefer-vector-width=512 because
  // Intel AVX-512 parts default to 256-bit vectors.
  char *cpu = LLVMGetTargetMachineCPU(tm);
  char *features = LLVMGetTargetMachineFeatureString(tm);
  unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
  for (LLVMValueRef fn = LLVMGetFirstFunction(m); fn; fn = LLVMGetNextFunction(fn)) {
    if (LLVMIsDeclaration(fn)) continue;
    add_string_attr(ctx, fn, "target-cpu", cpu);
    if (*features) add_string_attr(ctx, fn, "target-features", features);
    add_string_attr(ctx, fn, "prefer-vector-width", "512");
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(ctx, nounwind, 0));
  }
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(features);

  // Malformed IR is a compiler bug: show the verifier's complaint and the module.
  char *msg = NULL;
  if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
    fprintf(stderr, "fnnc: internal error: the generated LLVM IR is invalid:\n%s\n", msg);
    LLVMDisposeMessage(msg);
    char *text = LLVMPrintModuleToString(m);
    fputs(text, stderr);
    LLVMDisposeMessage(text);
    die("LLVM module verification failed");
  }
  LLVMDisposeMessage(msg);

  double t0 = stage_start();
  if (!optimize_split(m, tm)) {
    LLVMErrorRef e = run_o3(m, tm);
    if (e) {
      char *em = LLVMGetErrorMessage(e);
      fprintf(stderr, "fnnc: internal error: LLVM pass pipeline: %s\n", em);
      LLVMDisposeErrorMessage(em);
      die("LLVMRunPasses failed");
    }
  }
  stage_end("LLVM O3", t0);
}

//
// Printing
//

void backend_print_llvm(FILE *out, LLVMModuleRef m) {
  char *text = LLVMPrintModuleToString(m);
  fputs(text, out);
  LLVMDisposeMessage(text);
}

// Code generation mutates the module, so it always runs on a clone.
static LLVMMemoryBufferRef emit_to_memory(LLVMModuleRef m, LLVMTargetMachineRef tm, LLVMCodeGenFileType kind) {
  LLVMModuleRef clone = LLVMCloneModule(m);
  LLVMMemoryBufferRef buf = NULL;
  char *err = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(tm, clone, kind, &err, &buf)) {
    error_plain("LLVM code generation failed: %s", err ? err : "unknown error");
    LLVMDisposeMessage(err);
    buf = NULL;
  }
  LLVMDisposeModule(clone);
  return buf;
}

int backend_print_asm(FILE *out, LLVMModuleRef m, LLVMTargetMachineRef tm) {
  LLVMMemoryBufferRef buf = emit_to_memory(m, tm, LLVMAssemblyFile);
  if (!buf) return 1;
  fwrite(LLVMGetBufferStart(buf), 1, LLVMGetBufferSize(buf), out);
  LLVMDisposeMemoryBuffer(buf);
  return 0;
}

//
// JIT
//

struct Jit {
  LLVMOrcThreadSafeContextRef tsc;
  LLVMOrcLLJITRef lljit;
  LLVMTargetMachineRef tm;  // for parallel code generation, like the JIT's own
  bool looked_up;           // the first lookup compiles what is still IR
};

// Reports an LLVM error (and consumes it).
static void report_llvm_error(const char *what, LLVMErrorRef e) {
  char *msg = LLVMGetErrorMessage(e);
  error_plain("%s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
}

Jit *jit_new(void) {
  init_native_target();
  // The JIT's target machine is built exactly like backend_target_machine()'s
  // (same CPU, features and FNNC_CPU override), so the code it generates matches
  // what the module was optimised for and the data layouts agree.
  LLVMOrcJITTargetMachineBuilderRef jtmb = LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(backend_target_machine());
  LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, jtmb);  // takes jtmb
  LLVMOrcLLJITRef lljit;
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&lljit, jb);  // takes jb
  if (e) {
    report_llvm_error("cannot create the JIT", e);
    return NULL;
  }
  // libc and libm (expf, logf, ...) resolve from the process by themselves: LLJIT
  // adds a process-symbols generator to its main JITDylib by default.
  if (getenv("FNNC_JIT_DEBUG")) {
    e = LLVMOrcLLJITEnableDebugSupport(lljit);
    if (e) {
      char *msg = LLVMGetErrorMessage(e);
      fprintf(stderr, "fnnc: warning: no JIT debug support: %s\n", msg);
      LLVMDisposeErrorMessage(msg);
    }
  }
  // The runtime functions compiled code calls (the thread pool) live in this
  // executable: define them as absolute symbols, so no -rdynamic is needed.
  static const struct {
    const char *name;
    void *addr;
  } hostsyms[] = {{"fnn_parallel", (void *)&fnn_parallel},
                  {"fnn_prof_begin", (void *)&fnn_prof_begin},
                  {"fnn_prof_end", (void *)&fnn_prof_end},
                  {"fnn_threads", (void *)&fnn_threads}};
  LLVMOrcCSymbolMapPair host[4];
  for (int i = 0; i < 4; i++)
    host[i] = (LLVMOrcCSymbolMapPair){LLVMOrcLLJITMangleAndIntern(lljit, hostsyms[i].name),
                                      {(LLVMOrcExecutorAddress)(uintptr_t)hostsyms[i].addr,
                                       {LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable, 0}}};
  e = LLVMOrcJITDylibDefine(LLVMOrcLLJITGetMainJITDylib(lljit), LLVMOrcAbsoluteSymbols(host, 4));
  if (e) {
    report_llvm_error("cannot define the runtime's symbols in the JIT", e);
    return NULL;
  }
  Jit *j = calloc(1, sizeof *j);
  if (!j) die("out of memory");
  j->lljit = lljit;
  j->tsc = LLVMOrcCreateNewThreadSafeContext();
  j->tm = backend_target_machine();
  return j;
}

LLVMContextRef jit_context(Jit *j) { return LLVMOrcThreadSafeContextGetContext(j->tsc); }

int jit_add_module(Jit *j, LLVMModuleRef m) {
  LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->lljit);
  // A big module is compiled here, on several threads, into object files; a
  // small one is handed over as IR and compiled by the first lookup.
  double t0 = stage_start();
  LLVMMemoryBufferRef *objs = NULL;
  int nobj = emit_objects(m, j->tm, &objs);
  if (nobj != 0) {
    LLVMDisposeModule(m);
    if (nobj < 0) return 1;
    stage_end(arena_printf("JIT code generation (%d parts)", nobj), t0);
    int rc = 0;
    for (int i = 0; i < nobj; i++) {
      LLVMErrorRef e = rc ? NULL : LLVMOrcLLJITAddObjectFile(j->lljit, jd, objs[i]);  // takes objs[i]
      if (rc) LLVMDisposeMemoryBuffer(objs[i]);
      if (e) {
        report_llvm_error("cannot add an object file to the JIT", e);
        rc = 1;
      }
    }
    free(objs);
    return rc;
  }
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, j->tsc);  // takes m
  LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j->lljit, jd, tsm);  // takes tsm, even on failure
  if (e) {
    report_llvm_error("cannot add the module to the JIT", e);
    return 1;
  }
  return 0;
}

void *jit_lookup(Jit *j, const char *name) {
  LLVMOrcExecutorAddress addr = 0;
  double t0 = stage_start();
  LLVMErrorRef e = LLVMOrcLLJITLookup(j->lljit, &addr, name);
  if (!j->looked_up) stage_end("JIT first lookup", t0);
  j->looked_up = true;
  if (e) {
    report_llvm_error(arena_printf("JIT lookup of '%s' failed", name), e);
    return NULL;
  }
  return (void *)(uintptr_t)addr;
}

void jit_destroy(Jit *j) {
  if (!j) return;
  LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->lljit);
  if (e) report_llvm_error("disposing of the JIT", e);
  LLVMOrcDisposeThreadSafeContext(j->tsc);
  LLVMDisposeTargetMachine(j->tm);
  free(j);
}

//
// Ahead of time
//

// Runs argv[0] (searched in PATH) and waits. Returns 0 if it exited with status 0.
static int run_command(char *const *argv) {
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
  if (rc) {
    error_plain("cannot run '%s': %s", argv[0], strerror(rc));
    return 1;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      error_plain("waiting for '%s': %s", argv[0], strerror(errno));
      return 1;
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  if (WIFEXITED(status))
    error_plain("'%s' failed with exit status %d", argv[0], WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    error_plain("'%s' was killed by signal %d", argv[0], WTERMSIG(status));
  else
    error_plain("'%s' failed", argv[0]);
  return 1;
}

int aot_build(LLVMModuleRef m, LLVMTargetMachineRef tm, const char *out) {
  const char *libdir = getenv("FNNC_LIBDIR");
  if (!libdir || !*libdir) libdir = FNNC_LIBDIR;
  char *main_obj = arena_printf("%s/runtime/aot_main.o", libdir);
  char *rtlib = arena_printf("%s/libfnnrt.a", libdir);
  struct stat st;
  if (stat(main_obj, &st) || stat(rtlib, &st)) {
    error_plain("the fnnc runtime is missing ('%s', '%s'); run 'make' first", main_obj, rtlib);
    return 1;
  }

  const char *tmp = getenv("TMPDIR");
  if (!tmp || !*tmp) tmp = "/tmp";
  char *dir = arena_printf("%s/fnnc-XXXXXX", tmp);
  if (!mkdtemp(dir)) {
    error_plain("cannot create a temporary directory in '%s': %s", tmp, strerror(errno));
    return 1;
  }

  // The objects: one per part when code generation runs in parallel.
  double t0 = stage_start();
  LLVMMemoryBufferRef *objs = NULL;
  int nobj = emit_objects(m, tm, &objs);
  if (nobj < 0) {
    rmdir(dir);
    return 1;
  }
  char **paths = xcalloc(nobj ? (size_t)nobj : 1, sizeof *paths);
  int npaths = 0, rc = 0;
  if (nobj == 0) {
    paths[npaths++] = arena_printf("%s/model.o", dir);
    LLVMModuleRef clone = LLVMCloneModule(m);  // code generation changes the module
    char *err = NULL;
    if (LLVMTargetMachineEmitToFile(tm, clone, paths[0], LLVMObjectFile, &err)) {
      error_plain("LLVM could not write the object file: %s", err ? err : "unknown error");
      rc = 1;
    }
    LLVMDisposeMessage(err);
    LLVMDisposeModule(clone);
  } else {
    for (int i = 0; i < nobj; i++) {
      char *path = arena_printf("%s/model%d.o", dir, i);
      if (!rc) {
        FILE *f = fopen(path, "wb");
        if (f) paths[npaths++] = path;
        size_t len = LLVMGetBufferSize(objs[i]);
        if (!f || fwrite(LLVMGetBufferStart(objs[i]), 1, len, f) != len || fclose(f)) {
          error_plain("cannot write '%s': %s", path, strerror(errno));
          rc = 1;
        }
      }
      LLVMDisposeMemoryBuffer(objs[i]);
    }
    free(objs);
  }
  if (!rc) stage_end(arena_printf("code generation (%d object%s)", npaths, npaths == 1 ? "" : "s"), t0);

  if (!rc) {
    t0 = stage_start();
    char **argv = xcalloc((size_t)npaths + 16, sizeof *argv);
    int n = 0;
    argv[n++] = "cc";
    // A sanitized fnnc links against a sanitized runtime (make test-asan).
#if defined(__SANITIZE_ADDRESS__)
    argv[n++] = "-fsanitize=address,undefined";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    argv[n++] = "-fsanitize=address,undefined";
#endif
#endif
    argv[n++] = "-o";
    argv[n++] = (char *)out;
    for (int i = 0; i < npaths; i++) argv[n++] = paths[i];
    argv[n++] = main_obj;
    argv[n++] = rtlib;
    argv[n++] = "-lz";
    argv[n++] = "-lm";
    argv[n++] = "-lpthread";
    argv[n] = NULL;
    rc = run_command(argv);
    if (rc) error_plain("linking '%s' failed", out);
    free(argv);
    stage_end("linking", t0);
  }
  for (int i = 0; i < npaths; i++) unlink(paths[i]);
  free(paths);
  rmdir(dir);
  return rc;
}

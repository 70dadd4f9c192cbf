// backend.c: the LLVM end of the pipeline - the target machine, the pass pipelines,
// textual IR and assembly, the ORC JIT, and ahead-of-time objects linked with
// the runtime library by the system C compiler. O3 and code generation run
// part by part on several threads (see "Compiling in parts" below).
//
// Everything here goes through LLVM's C API.
//
// Environment: FNNC_CPU=NAME targets a baseline CPU instead of the host;
// FNNC_COMPILE_THREADS=N caps the compile threads; FNNC_TIME=1 prints the time
// of each LLVM stage (2: and of each part); FNNC_JIT_DEBUG=1 registers JIT'd code with gdb;
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
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <llvm/Config/llvm-config.h>

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
  // FNNC_LLVM_ARGS="-time-passes ...": LLVM's own options, for debugging (the copy
  // stays: the options may keep pointers into it).
  const char *extra = getenv("FNNC_LLVM_ARGS");
  if (extra && *extra) {
    char *copy = strdup(extra), *argv[64] = {"fnnc"};
    int argc = 1;
    for (char *tok = strtok(copy, " "); tok && argc < 63; tok = strtok(NULL, " ")) argv[argc++] = tok;
    LLVMParseCommandLineOptions(argc, (const char *const *)argv, NULL);
  }
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

static LLVMTargetMachineRef tm_create_at(const TmSpec *s, LLVMCodeGenOptLevel level) {
  // PIC: the default relocation model makes R_X86_64_32 relocations, which a
  // default (PIE) link of the AOT trainer rejects.
  return LLVMCreateTargetMachine(s->target, s->triple, s->cpu, s->features, level, LLVMRelocPIC, LLVMCodeModelDefault);
}

static LLVMTargetMachineRef tm_create(const TmSpec *s) { return tm_create_at(s, LLVMCodeGenLevelAggressive); }

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
// Compiling in parts
//
// The module is compiled in parts, each in its own LLVMContext with its own
// target machine, on a small pool of threads. A part is a lazily read bitcode
// copy of the whole module with every definition it does not own removed
// before its body is ever parsed (read_part); one thread takes
// it through its pipeline and code generation straight to an object file, so the parts
// never meet again as IR (the JIT and the linker join the objects). The cut:
//   - Only direct calls cross parts (the JIT resolves them by name, wherever
//     the callee's part was loaded): a function stays with the functions that take its
//     address, a mutable global with the functions using it, and a private
//     constant is copied into every part using it. An internal function called
//     from another part gets an external name.
//   - Kernels are `noinline`, so optimising a kernel apart from the entry that
//     calls it loses nothing; only the inliner and the interprocedural passes
//     could have seen across, and they find nothing to do there.
//   - Each exported definition (an entry point) gets its own parts, holding what
//     it reaches that no earlier one does. The JIT compiles an entry's parts
//     when the entry is first looked up, so `fnnc run` compiles the evaluation
//     step only once it is needed.
//   - Each kind of code has its own parts and its own pipeline (kind_of).
//   - Within an entry and kind, groups are spread over parts of about
//     PART_COST, biggest first into the lightest, so the threads stay busy to
//     the end; each part pays for reading the module's headers once.
// The cut depends on the module only, never on the number of threads, so
// neither does the code.

// FNNC_COMPILE_THREADS=N caps the threads (1: no threads; 0: no split either,
// the whole module in one part); by default, the CPUs this process may run on.
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

static char *xstrdup(const char *s) {
  char *p = strdup(s ? s : "unknown error");
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
    d->size[i] = 1;
    if (i < d->nfn)
      for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(d->v[i]); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in)) d->size[i]++;
  }
  return d;
}

static void defs_free(Defs *d) {
  free(d->v);
  free(d->size);
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

// Private or internal constants, which each part may have its own copy of.
static bool copyable(LLVMValueRef g) {
  LLVMLinkage l = LLVMGetLinkage(g);
  return LLVMIsAGlobalVariable(g) && LLVMIsGlobalConstant(g) && (l == LLVMInternalLinkage || l == LLVMPrivateLinkage);
}

static bool local_linkage(LLVMValueRef v) {
  LLVMLinkage l = LLVMGetLinkage(v);
  return l == LLVMInternalLinkage || l == LLVMPrivateLinkage;
}

// What the reference walk collects: the groups (union-find) and the edges
// user -> definition.
typedef struct {
  int *parent;
  bool ok;  // every reference comes from a function body
  bool join;
  int *from, *to, nedges, cap;
} Refs;

static void note_ref(Defs *d, int self, int user, bool call, void *arg) {
  Refs *r = arg;
  if (user < 0 || user >= d->nfn) {  // from a global's initializer, or unknown
    r->ok = false;
    return;
  }
  // A function stays with the functions that take its address; a global that
  // cannot be copied with the functions that use it.
  if (self < d->nfn ? !call : r->join) uf_union(r->parent, self, user);
  if (r->nedges == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 256;
    r->from = realloc(r->from, sizeof(int) * (size_t)r->cap);
    r->to = realloc(r->to, sizeof(int) * (size_t)r->cap);
    if (!r->from || !r->to) die("out of memory");
  }
  r->from[r->nedges] = user;
  r->to[r->nedges++] = self;
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

// Kinds of code, each with its own pipeline: entry points and the task
// functions they pass to the thread pool (calls and a few small loops); code
// that is explicit vector code already (the GEMM micro-kernels); loops for
// the vectorizer (everything else).
typedef enum { KIND_GLUE, KIND_VECTOR, KIND_LOOPS, NKIND } Kind;

// The cost of compiling a function: its instructions (before optimisation)
// times its kind's weight, measured on the models here (a loop kernel costs
// about 0.2 ms per instruction, vector code 0.05, glue 0.02).
static const int kind_weight[NKIND] = {[KIND_GLUE] = 1, [KIND_VECTOR] = 3, [KIND_LOOPS] = 10};

// Parts of about this cost (600 instructions of loops). Smaller parts balance
// the threads better but each reads the module's headers (types, globals,
// declarations) and creates a target machine: about 1 ms.
#define PART_COST 6000

// A module cut into parts, kept as bitcode until the parts are compiled.
typedef struct {
  LLVMMemoryBufferRef bc;  // the whole module, internal functions called across parts renamed
  int nfn, n, nparts;
  int *owner;               // per definition: its part; -1: copied into every part using it
  char **name;              // per definition
  int *ref_start, *ref;     // definition i refers to ref[ref_start[i] .. ref_start[i + 1])
  int64_t *part_size;       // cost (see kind_weight)
  Kind *kind;               // per part
  bool *done;               // per part: compiled and handed over (JIT)
  TmSpec tms;
  Cache *cache;             // objects of earlier compilations (cache.c); opened on first use
  bool cache_opened;
} Plan;

// Per group (by its first definition): the entry it belongs to, by a walk over
// the references from the entry. Marks every group reached that has none yet.
static void claim(Plan *p, const int *parent, int *home, int def, int h) {
  int g = parent[def];
  if (home[g] >= 0) return;
  home[g] = h;
  for (int i = g; i < p->n; i++)
    if (parent[i] == g)
      for (int k = p->ref_start[i]; k < p->ref_start[i + 1]; k++) claim(p, parent, home, p->ref[k], h);
}

// Spreads the groups of class c (an entry and a kind of code) over parts
// numbered from p->nparts on.
static void cut_class(Plan *p, const int *parent, const int *cls, const int64_t *gsize, int c, const int *order) {
  int64_t total = 0;
  int ngroups = 0;
  for (int g = 0; g < p->n; g++)
    if (parent[g] == g && cls[g] == c && p->owner[g] != -1) total += gsize[g], ngroups++;
  if (!ngroups) return;
  int k = (int)((total + PART_COST - 1) / PART_COST);
  if (k > ngroups) k = ngroups;
  if (k < 1) k = 1;
  int base = p->nparts;
  p->nparts += k;
  p->part_size = realloc(p->part_size, sizeof *p->part_size * (size_t)p->nparts);
  p->kind = realloc(p->kind, sizeof *p->kind * (size_t)p->nparts);
  if (!p->part_size || !p->kind) die("out of memory");
  for (int q = base; q < p->nparts; q++) p->part_size[q] = 0, p->kind[q] = (Kind)(c % NKIND);
  for (int j = 0; j < p->n; j++) {  // biggest first, into the lightest part
    int g = order[j];
    if (parent[g] != g || cls[g] != c || p->owner[g] == -1) continue;
    int best = base;
    for (int q = base + 1; q < p->nparts; q++)
      if (p->part_size[q] < p->part_size[best]) best = q;
    p->owner[g] = best;
    p->part_size[best] += gsize[g];
  }
}

static void add_string_attr(LLVMContextRef ctx, LLVMValueRef fn, const char *k, const char *v) {
  LLVMAttributeRef a = LLVMCreateStringAttribute(ctx, k, (unsigned)strlen(k), v, (unsigned)strlen(v));
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
}

// Codegen marks the entry points and their task functions: they call kernels
// and add up partial sums, nothing more.
void backend_mark_glue(LLVMValueRef fn) {
  add_string_attr(LLVMGetTypeContext(LLVMTypeOf(fn)), fn, "fnnc-glue", "");
}

static bool is_glue(LLVMValueRef fn) {
  return LLVMGetStringAttributeAtIndex(fn, LLVMAttributeFunctionIndex, "fnnc-glue", 9) != NULL;
}

// The GEMM micro-kernels are written in vectors already; one with a scalar
// add or two (the accumulating NT tile adds each sum to C) would otherwise
// count as loops and go through O3 for nothing (about 14 ms of compile CPU
// for the CNN's fnn_gemm_nt_4x4_acc).
void backend_mark_vector(LLVMValueRef fn) {
  add_string_attr(LLVMGetTypeContext(LLVMTypeOf(fn)), fn, "fnnc-vector", "");
}

static bool is_marked_vector(LLVMValueRef fn) {
  return LLVMGetStringAttributeAtIndex(fn, LLVMAttributeFunctionIndex, "fnnc-vector", 11) != NULL;
}

// What a function is, for the choice of its pipeline: code already written in
// vectors has vector values and no scalar floating-point arithmetic left for
// the vectorizers.
static Kind kind_of(LLVMValueRef fn) {
  if (is_glue(fn)) return KIND_GLUE;
  if (is_marked_vector(fn)) return KIND_VECTOR;
  bool vector = false;
  for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb; bb = LLVMGetNextBasicBlock(bb))
    for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in)) {
      LLVMTypeKind t = LLVMGetTypeKind(LLVMTypeOf(in));
      if (t == LLVMVectorTypeKind) vector = true;
      if (t == LLVMFloatTypeKind && (LLVMIsABinaryOperator(in) || LLVMIsAUnaryOperator(in))) return KIND_LOOPS;
    }
  return vector ? KIND_VECTOR : KIND_LOOPS;
}

// Task order: biggest first (stable).
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

// Cuts m into parts (see above); renames m's internal functions that are called
// across parts. With split false, or if the references cannot be followed,
// the whole module is one part.
static Plan *plan_new(LLVMModuleRef m, LLVMTargetMachineRef tm, bool split) {
  Defs *d = defs_new(m);
  Plan *p = xcalloc(1, sizeof *p);
  p->nfn = d->nfn;
  p->n = d->n;
  p->owner = xcalloc((size_t)d->n, sizeof *p->owner);
  p->name = xcalloc((size_t)d->n, sizeof *p->name);
  int *parent = xcalloc((size_t)d->n, sizeof *parent);
  Refs r = {parent, true, false, NULL, NULL, 0, 0};
  for (int i = 0; i < d->n; i++) parent[i] = i;
  for (int i = 0; i < d->n; i++) {
    r.join = i >= d->nfn && !copyable(d->v[i]);
    for_each_user(d, d->v[i], i, note_ref, &r);
  }
  for (int i = 0; i < d->n; i++) parent[i] = uf_find(parent, i);
  // The references as lists per user.
  p->ref_start = xcalloc((size_t)d->n + 1, sizeof *p->ref_start);
  p->ref = xcalloc((size_t)r.nedges, sizeof *p->ref);
  for (int e = 0; e < r.nedges; e++) p->ref_start[r.from[e] + 1]++;
  for (int i = 0; i < d->n; i++) p->ref_start[i + 1] += p->ref_start[i];
  int *fill = xcalloc((size_t)d->n, sizeof *fill);
  for (int e = 0; e < r.nedges; e++) p->ref[p->ref_start[r.from[e]] + fill[r.from[e]]++] = r.to[e];
  free(fill);
  free(r.from);
  free(r.to);

  if (split && r.ok) {
    int64_t *gsize = xcalloc((size_t)d->n, sizeof *gsize);
    int *home = xcalloc((size_t)d->n, sizeof *home);
    for (int i = 0; i < d->n; i++) {
      home[i] = -1;
      if (i >= d->nfn && copyable(d->v[i])) p->owner[i] = -1;
    }
    // The entries in module order, then whatever none of them reaches.
    int nh = 0;
    for (int pass = 0; pass < 2; pass++)
      for (int i = 0; i < d->n; i++)
        if (home[parent[i]] < 0 && (pass || !local_linkage(d->v[i]))) claim(p, parent, home, i, nh++);
    // Classes: the entry, then the kind (glue if any function of the group is).
    int *cls = xcalloc((size_t)d->n, sizeof *cls);
    for (int i = 0; i < d->n; i++) cls[i] = KIND_VECTOR;
    for (int i = 0; i < d->nfn; i++) {
      Kind k = kind_of(d->v[i]);
      int *c = &cls[parent[i]];
      if (k == KIND_GLUE || (k == KIND_LOOPS && *c == KIND_VECTOR)) *c = (int)k;
    }
    for (int i = 0; i < d->n; i++) gsize[parent[i]] += d->size[i] * kind_weight[cls[parent[i]]];
    for (int i = 0; i < d->n; i++)
      if (parent[i] == i) cls[i] += home[i] * NKIND;
    int *order = order_by_size(gsize, d->n);
    for (int c = 0; c < nh * NKIND; c++) cut_class(p, parent, cls, gsize, c, order);
    free(order);
    free(cls);
    for (int i = 0; i < d->n; i++)
      if (p->owner[i] != -1) p->owner[i] = p->owner[parent[i]];
    free(home);
    free(gsize);
  }
  if (p->nparts == 0) {  // one part: everything
    p->nparts = 1;
    p->part_size = xcalloc(1, sizeof *p->part_size);
    p->kind = xcalloc(1, sizeof *p->kind);
    p->kind[0] = KIND_LOOPS;
    for (int i = 0; i < d->n; i++) p->owner[i] = 0, p->part_size[0] += d->size[i];
  }

  // Internal functions called from another part need external names. Calls
  // keep their calling convention; the names get a prefix no C symbol has.
  for (int i = 0; i < d->nfn; i++) {
    bool across = false;
    for (int u = 0; u < d->nfn; u++)
      for (int k = p->ref_start[u]; k < p->ref_start[u + 1]; k++) across |= p->ref[k] == i && p->owner[u] != p->owner[i];
    if (!across || !local_linkage(d->v[i])) continue;
    size_t len;
    const char *name = LLVMGetValueName2(d->v[i], &len);
    char *ext = len ? arena_printf("fnnc.%s", name) : arena_printf("fnnc.anon.%d", i);
    LLVMSetLinkage(d->v[i], LLVMExternalLinkage);
    LLVMSetVisibility(d->v[i], LLVMDefaultVisibility);
    LLVMSetValueName2(d->v[i], ext, strlen(ext));
  }
  for (int i = 0; i < d->n; i++) {
    size_t len;
    const char *name = LLVMGetValueName2(d->v[i], &len);
    p->name[i] = xstrdup(name);
  }
  p->bc = LLVMWriteBitcodeToMemoryBuffer(m);
  p->done = xcalloc((size_t)p->nparts, sizeof *p->done);
  tmspec_of(&p->tms, tm);
  free(parent);
  defs_free(d);
  return p;
}

static void plan_free(Plan *p) {
  if (!p) return;
  cache_close(p->cache);
  LLVMDisposeMemoryBuffer(p->bc);
  for (int i = 0; i < p->n; i++) free(p->name[i]);
  free(p->name);
  free(p->owner);
  free(p->ref_start);
  free(p->ref);
  free(p->part_size);
  free(p->kind);
  free(p->done);
  tmspec_free(&p->tms);
  free(p);
}

// A declaration like fn (name, type, attributes) in fn's place; fn goes.
static void replace_by_declaration(LLVMModuleRef m, LLVMValueRef fn) {
  size_t len;
  char *name = xstrdup(LLVMGetValueName2(fn, &len));
  LLVMSetValueName2(fn, "", 0);
  LLVMValueRef decl = LLVMAddFunction(m, name, LLVMGlobalGetValueType(fn));
  free(name);
  // The function's attributes, the return value's, then each parameter's.
  for (long k = -1; k <= (long)LLVMCountParams(fn); k++) {
    LLVMAttributeIndex idx = k < 0 ? (LLVMAttributeIndex)LLVMAttributeFunctionIndex : (LLVMAttributeIndex)k;
    unsigned n = LLVMGetAttributeCountAtIndex(fn, idx);
    LLVMAttributeRef *attrs = xcalloc(n + 1, sizeof *attrs);
    LLVMGetAttributesAtIndex(fn, idx, attrs);
    for (unsigned j = 0; j < n; j++) LLVMAddAttributeAtIndex(decl, idx, attrs[j]);
    free(attrs);
  }
  LLVMReplaceAllUsesWith(fn, decl);
  LLVMDeleteFunction(fn);
}

// Reads the part's copy of the module: lazily, so that only the bodies of the
// part's own functions are parsed. The functions of other parts go before any
// body is read (those this part calls become declarations); reading the rest
// then materialises just this part; globals it does not use go last.
static const char *read_part(LLVMContextRef ctx, const Plan *p, int part, LLVMModuleRef *out) {
  LLVMMemoryBufferRef in = LLVMCreateMemoryBufferWithMemoryRange(LLVMGetBufferStart(p->bc), LLVMGetBufferSize(p->bc),
                                                                 "fnnc-part", 0);
  LLVMModuleRef m = NULL;
  // The lazy module keeps the (non-owning) buffer; on failure the reader frees it.
  if (LLVMGetBitcodeModuleInContext2(ctx, in, &m)) return "cannot read the module's bitcode back";
  *out = m;
  int nfn;
  if (list_defs(m, NULL, &nfn) != p->n || nfn != p->nfn) return "the module changed in a bitcode round trip";
  LLVMValueRef *v = xcalloc((size_t)p->n, sizeof *v);
  list_defs(m, v, NULL);
  bool *need = xcalloc((size_t)p->n, sizeof *need);
  for (int i = 0; i < p->n; i++)
    if (p->owner[i] == part)
      for (int k = p->ref_start[i]; k < p->ref_start[i + 1]; k++) need[p->ref[k]] = true;
  const char *err = NULL;
  for (int i = 0; i < p->nfn && !err; i++) {
    if (p->owner[i] == part) continue;
    if (!need[i] && !LLVMGetFirstUse(v[i])) LLVMDeleteFunction(v[i]);
    else if (local_linkage(v[i])) err = "an internal function is used outside its part";
    else replace_by_declaration(m, v[i]);
  }
  free(need);
  // Running an empty (legacy) function pass manager on a function reads its body.
  if (!err) {
    LLVMPassManagerRef fpm = LLVMCreateFunctionPassManagerForModule(m);
    for (int i = 0; i < p->nfn; i++)
      if (p->owner[i] == part) LLVMRunFunctionPassManager(fpm, v[i]);
    LLVMDisposePassManager(fpm);
  }
  for (int i = p->nfn; i < p->n && !err; i++) {
    if (p->owner[i] == part) continue;
    if (!LLVMGetFirstUse(v[i])) LLVMDeleteGlobal(v[i]);
    else if (p->owner[i] >= 0) err = "a global is used outside its part";
  }
  free(v);
  return err;
}

static LLVMErrorRef run_pipeline(LLVMModuleRef m, LLVMTargetMachineRef tm, const char *pipeline) {
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
  LLVMPassBuilderOptionsSetLoopInterleaving(opts, 1);
  LLVMPassBuilderOptionsSetLoopUnrolling(opts, 1);
  // The loop vectorizer needs the real target machine (its cost model), else it
  // silently does nothing.
  LLVMErrorRef e = LLVMRunPasses(m, pipeline, tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  return e;
}

// The pipeline per kind of code. Glue and explicit vector code need no loop
// or interprocedural optimisation, only their instructions cleaned up: code
// generation does the rest (strength reduction, hoisting, scheduling). Loops
// get the full O3 (a smaller pipeline changes how reductions are vectorized,
// so the results). `no-verify-fixpoint`: instcombine otherwise aborts the
// process when one iteration does not finish its work.
static const char *const pipelines[NKIND] = {
    [KIND_GLUE] = "function(sroa,early-cse,instcombine<no-verify-fixpoint>,simplifycfg)",
    [KIND_VECTOR] = "function(sroa,early-cse,instcombine<no-verify-fixpoint>,simplifycfg)",
    [KIND_LOOPS] = "default<O3>",
};

// Code generation per kind: the glue runs once per step and only calls
// kernels, so the fast instruction selector and register allocator do.
static const LLVMCodeGenOptLevel codegen_level[NKIND] = {
    [KIND_GLUE] = LLVMCodeGenLevelNone,
    [KIND_VECTOR] = LLVMCodeGenLevelAggressive,
    [KIND_LOOPS] = LLVMCodeGenLevelAggressive,
};

static double thread_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// What a plan's objects depend on, for the compile cache: this fnnc (its
// version and the identity of its executable, which changes with every
// build), LLVM's version and options, the target machine, the pipelines and
// code generation levels, the cut into parts, and the module's bitcode.
// *len gets the length (the key holds NUL bytes).
static char *plan_key(const Plan *p, size_t *len) {
  struct stat exe;
  if (stat("/proc/self/exe", &exe)) return NULL;  // no way to tell one fnnc build from another
  // malloc'ed, not the arena: this may run on jit_prefetch's thread.
  char *key = NULL;
  FILE *f = open_memstream(&key, len);
  if (!f) die("out of memory");
  const char *llvm_args = getenv("FNNC_LLVM_ARGS");
  fprintf(f, "fnnc compile cache 1\nfnnc %s, LLVM %s\nexe %llu %llu %lld %lld.%09ld\ntarget %s %s %s\n",
          FNNC_VERSION, LLVM_VERSION_STRING, (unsigned long long)exe.st_dev, (unsigned long long)exe.st_ino,
          (long long)exe.st_size, (long long)exe.st_mtim.tv_sec, exe.st_mtim.tv_nsec, p->tms.triple, p->tms.cpu,
          p->tms.features);
  fprintf(f, "llvm args %s\nparts %d, cost %d\n", llvm_args ? llvm_args : "", p->nparts, PART_COST);
  for (int k = 0; k < NKIND; k++) fprintf(f, "kind %d: level %d, %s\n", k, (int)codegen_level[k], pipelines[k]);
  fwrite(p->owner, sizeof *p->owner, (size_t)p->n, f);
  fwrite(p->kind, sizeof *p->kind, (size_t)p->nparts, f);
  fwrite(LLVMGetBufferStart(p->bc), 1, LLVMGetBufferSize(p->bc), f);
  if (fclose(f)) die("out of memory");
  return key;
}

// One compilation of some parts of a plan.
typedef struct {
  const Plan *p;
  Cache *cache;              // NULL: no compile cache
  bool codegen;              // parts become objects (else optimised bitcode)
  LLVMMemoryBufferRef *out;  // per part
  char **err;                // per part: a malloc'ed message on failure
  double *t_opt, *t_cg;      // per part: CPU seconds reading and optimising, and in code generation
  pthread_t *thread;         // per part: the thread that compiled it
  bool *hit;                 // per part: read from the compile cache
} Job;

static char *llvm_error_string(LLVMErrorRef e) {
  char *msg = LLVMGetErrorMessage(e);
  char *s = xstrdup(msg);
  LLVMDisposeErrorMessage(msg);
  return s;
}

// One part, on a worker thread: touches only its own context and target machine.
static void part_worker(void *arg, int part) {
  Job *job = arg;
  const Plan *p = job->p;
  job->thread[part] = pthread_self();
  double t0 = thread_seconds();
  size_t len;
  void *cached = job->codegen ? cache_get(job->cache, part, &len) : NULL;
  if (cached) {
    job->out[part] = LLVMCreateMemoryBufferWithMemoryRangeCopy(cached, len, "fnnc-cache");
    job->hit[part] = true;
    free(cached);
    job->t_opt[part] = thread_seconds() - t0;
    return;
  }
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef m = NULL;
  const char *err = read_part(ctx, p, part, &m);
  if (err) {
    job->err[part] = xstrdup(err);
  } else {
    LLVMTargetMachineRef tm = tm_create_at(&p->tms, codegen_level[p->kind[part]]);
    LLVMErrorRef e = run_pipeline(m, tm, pipelines[p->kind[part]]);
    double t1 = thread_seconds();
    job->t_opt[part] = t1 - t0;
    if (e) {
      job->err[part] = llvm_error_string(e);
    } else if (!job->codegen) {
      job->out[part] = LLVMWriteBitcodeToMemoryBuffer(m);
    } else {
      char *msg = NULL;
      if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &msg, &job->out[part])) {
        job->err[part] = xstrdup(msg);
        job->out[part] = NULL;
      } else {
        cache_put(job->cache, part, LLVMGetBufferStart(job->out[part]), LLVMGetBufferSize(job->out[part]));
      }
      LLVMDisposeMessage(msg);
      job->t_cg[part] = thread_seconds() - t1;
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

// Compiles the parts with want[part] (all if want is NULL), biggest first, into
// out[part]: objects, or optimised bitcode if !codegen. On failure reports,
// frees what was made and returns false.
static bool plan_compile(Plan *p, const bool *want, bool codegen, LLVMMemoryBufferRef *out, const char *what) {
  double t0 = stage_start();
  bool explicit_;
  int threads = compile_threads(&explicit_);
  if (codegen && !p->cache_opened) {
    size_t len = 0;
    char *key = plan_key(p, &len);
    p->cache_opened = true;
    if (key) p->cache = cache_open(key, len);
  }
  Job job = {p, codegen ? p->cache : NULL, codegen, out, NULL, NULL, NULL, NULL, NULL};
  job.hit = xcalloc((size_t)p->nparts, sizeof *job.hit);
  job.err = xcalloc((size_t)p->nparts, sizeof *job.err);
  job.thread = xcalloc((size_t)p->nparts, sizeof *job.thread);
  job.t_opt = xcalloc((size_t)p->nparts, sizeof *job.t_opt);
  job.t_cg = xcalloc((size_t)p->nparts, sizeof *job.t_cg);
  int *all = order_by_size(p->part_size, p->nparts), n = 0;
  for (int k = 0; k < p->nparts; k++)
    if (!want || want[all[k]]) all[n++] = all[k];
  run_parallel(n, all, threads < 1 ? 1 : threads, part_worker, &job);
  bool ok = true;
  double opt = 0, cg = 0;
  for (int q = 0; q < p->nparts; q++) {
    opt += job.t_opt[q];
    cg += job.t_cg[q];
    if (job.err[q]) {
      if (ok) error_plain("LLVM %s failed: %s", codegen ? "compilation" : "optimisation", job.err[q]);
      ok = false;
      free(job.err[q]);
    }
  }
  if (!ok)
    for (int q = 0; q < p->nparts; q++)
      if (out[q]) LLVMDisposeMemoryBuffer(out[q]), out[q] = NULL;
  const char *verbose = getenv("FNNC_TIME");
  for (int k = 0; ok && verbose && atoi(verbose) > 1 && k < n; k++) {
    int q = all[k];
    static const char *const kind_name[NKIND] = {"glue", "vector", "loops"};
    if (job.hit[q])
      fprintf(stderr, "fnnc:   part %d (%s): cost %lld, read from the compile cache in %.1f ms:", q,
              kind_name[p->kind[q]], (long long)p->part_size[q], 1e3 * job.t_opt[q]);
    else
      fprintf(stderr, "fnnc:   part %d (%s): cost %lld, optimisation %.1f ms, code generation %.1f ms:", q,
              kind_name[p->kind[q]], (long long)p->part_size[q], 1e3 * job.t_opt[q], 1e3 * job.t_cg[q]);
    for (int i = 0; i < p->nfn; i++)
      if (p->owner[i] == q) fprintf(stderr, " %s", p->name[i]);
    fprintf(stderr, "\n");
  }
  if (ok && getenv("FNNC_TIME")) {  // no arena here: this may run on a background thread
    int used = threads < n ? threads : n;
    double busiest = 0;  // the CPU time of the busiest thread: the wall time on an idle machine
    for (int k = 0; k < n; k++) {
      double sum = 0;
      for (int l = 0; l < n; l++)
        if (pthread_equal(job.thread[all[k]], job.thread[all[l]])) sum += job.t_opt[all[l]] + job.t_cg[all[l]];
      if (sum > busiest) busiest = sum;
    }
    char msg[320];
    int hits = 0;
    for (int k = 0; k < n; k++) hits += job.hit[all[k]];
    char cached[64] = "";
    if (p->cache) snprintf(cached, sizeof cached, ", %d from the compile cache", hits);
    if (codegen)
      snprintf(msg, sizeof msg,
               "LLVM optimisation + code generation of %s (%d part%s on %d thread%s%s; CPU: reading and optimisation "
               "%.3f s, code generation %.3f s, busiest thread %.3f s)",
               what, n, n == 1 ? "" : "s", used, used == 1 ? "" : "s", cached, opt, cg, busiest);
    else
      snprintf(msg, sizeof msg, "LLVM optimisation of %s (%d part%s)", what, n, n == 1 ? "" : "s");
    stage_end(msg, t0);
  }
  free(all);
  free(job.hit);
  free(job.thread);
  free(job.err);
  free(job.t_opt);
  free(job.t_cg);
  return ok;
}

// The parts definition `def` needs that are not compiled yet: its own and those
// of everything it refers to, transitively.
static void parts_needed(const Plan *p, int def, bool *want, bool *seen) {
  if (seen[def]) return;
  seen[def] = true;
  if (p->owner[def] >= 0 && !p->done[p->owner[def]]) want[p->owner[def]] = true;
  for (int k = p->ref_start[def]; k < p->ref_start[def + 1]; k++) parts_needed(p, p->ref[k], want, seen);
}

// Whether to cut modules into parts.
static bool split_wanted(void) {
  bool explicit_;
  return compile_threads(&explicit_) != 0;
}

//
// Optimisation
//

// The target, the per-function target attributes, and the verifier.
static void prepare_module(LLVMModuleRef m, LLVMTargetMachineRef tm) {
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
}

// Optimises m in place the way it is compiled: part by part, the optimised
// parts linked back in order.
void backend_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm) {
  prepare_module(m, tm);
  Plan *p = plan_new(m, tm, split_wanted());
  LLVMMemoryBufferRef *out = xcalloc((size_t)p->nparts, sizeof *out);
  if (!plan_compile(p, NULL, false, out, "the module")) die("LLVM optimisation failed");

  // Empty m and link the optimised parts back in, in order.
  Defs *d = defs_new(m);
  for (int i = 0; i < d->nfn; i++) delete_body(d->v[i]);
  for (int i = 0; i < d->n; i++) {
    if (i < d->nfn) LLVMDeleteFunction(d->v[i]);
    else LLVMDeleteGlobal(d->v[i]);
  }
  defs_free(d);
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
  for (int q = 0; q < p->nparts; q++) {
    LLVMModuleRef part;
    if (LLVMParseBitcodeInContext2(ctx, out[q], &part)) die("cannot read an optimised part back");
    LLVMDisposeMemoryBuffer(out[q]);
    if (LLVMLinkModules2(m, part)) die("cannot link the optimised parts");  // destroys part
  }
  free(out);
  plan_free(p);
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
  Plan **plans;             // the modules added, compiled part by part on demand
  int nplans;
  // jit_prefetch's background compilation, which every other call waits for.
  pthread_t bg;
  bool bg_running;
  int bg_rc;
  const char *bg_name;
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
                  {"fnn_parallel_split", (void *)&fnn_parallel_split},
                  {"fnn_split_at", (void *)&fnn_split_at},
                  {"fnn_split_block", (void *)&fnn_split_block},
                  {"fnn_prof_begin", (void *)&fnn_prof_begin},
                  {"fnn_prof_end", (void *)&fnn_prof_end},
                  {"fnn_threads", (void *)&fnn_threads},
                  {"fnn_sum_slots", (void *)&fnn_sum_slots}};
  enum { NHOST = sizeof hostsyms / sizeof hostsyms[0] };
  LLVMOrcCSymbolMapPair host[NHOST];
  for (int i = 0; i < NHOST; i++)
    host[i] = (LLVMOrcCSymbolMapPair){LLVMOrcLLJITMangleAndIntern(lljit, hostsyms[i].name),
                                      {(LLVMOrcExecutorAddress)(uintptr_t)hostsyms[i].addr,
                                       {LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable, 0}}};
  e = LLVMOrcJITDylibDefine(LLVMOrcLLJITGetMainJITDylib(lljit), LLVMOrcAbsoluteSymbols(host, NHOST));
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
  // Nothing is compiled here: the parts an entry needs are compiled (on
  // several threads, into objects) when it is first looked up.
  prepare_module(m, j->tm);
  Plan *p = plan_new(m, j->tm, split_wanted());
  LLVMDisposeModule(m);
  Plan **plans = realloc(j->plans, sizeof *plans * (size_t)(j->nplans + 1));
  if (!plans) die("out of memory");
  j->plans = plans;
  j->plans[j->nplans++] = p;
  return 0;
}

// Compiles what the definition called `name` needs and hands the objects to
// the JIT. Returns 0 on success (also if no module defines `name`).
static int jit_compile_for(Jit *j, const char *name) {
  for (int k = 0; k < j->nplans; k++) {
    Plan *p = j->plans[k];
    int def = 0;
    while (def < p->n && strcmp(p->name[def], name)) def++;
    if (def == p->n) continue;
    bool *want = xcalloc((size_t)p->nparts, sizeof *want), *seen = xcalloc((size_t)p->n, sizeof *seen);
    parts_needed(p, def, want, seen);
    free(seen);
    int nwant = 0;
    for (int q = 0; q < p->nparts; q++) nwant += want[q];
    LLVMMemoryBufferRef *objs = xcalloc((size_t)p->nparts, sizeof *objs);
    int rc = nwant && !plan_compile(p, want, true, objs, name);
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->lljit);
    for (int q = 0; q < p->nparts; q++) {  // in part order
      if (!objs[q]) continue;
      p->done[q] = true;
      LLVMErrorRef e = rc ? NULL : LLVMOrcLLJITAddObjectFile(j->lljit, jd, objs[q]);  // takes objs[q]
      if (rc) LLVMDisposeMemoryBuffer(objs[q]);
      if (e) {
        report_llvm_error("cannot add an object file to the JIT", e);
        rc = 1;
      }
    }
    free(objs);
    free(want);
    return rc;
  }
  return 0;
}

static void *prefetch_main(void *arg) {
  Jit *j = arg;
  j->bg_rc = jit_compile_for(j, j->bg_name);
  return NULL;
}

int jit_prefetch(Jit *j, const char *name) {
  bool explicit_;
  j->bg_name = name;
  if (compile_threads(&explicit_) < 2) return jit_compile_for(j, name);  // no threads: now
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 16u << 20);  // it runs parts too
  j->bg_running = pthread_create(&j->bg, &attr, prefetch_main, j) == 0;
  pthread_attr_destroy(&attr);
  return j->bg_running ? 0 : jit_compile_for(j, name);
}

// Waits for jit_prefetch's compilation; returns its status.
static int jit_wait(Jit *j) {
  if (!j->bg_running) return 0;
  pthread_join(j->bg, NULL);
  j->bg_running = false;
  return j->bg_rc;
}

void *jit_lookup(Jit *j, const char *name) {
  jit_wait(j);  // a failure was reported; what failed is compiled again if needed
  if (jit_compile_for(j, name)) return NULL;
  LLVMOrcExecutorAddress addr = 0;
  double t0 = stage_start();
  LLVMErrorRef e = LLVMOrcLLJITLookup(j->lljit, &addr, name);
  stage_end(arena_printf("JIT lookup of %s", name), t0);
  if (e) {
    report_llvm_error(arena_printf("JIT lookup of '%s' failed", name), e);
    return NULL;
  }
  return (void *)(uintptr_t)addr;
}

int jit_destroy(Jit *j) {
  if (!j) return 0;
  int rc = jit_wait(j);
  LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->lljit);
  if (e) {
    report_llvm_error("disposing of the JIT", e);
    rc = 1;
  }
  LLVMOrcDisposeThreadSafeContext(j->tsc);
  LLVMDisposeTargetMachine(j->tm);
  for (int k = 0; k < j->nplans; k++) plan_free(j->plans[k]);
  free(j->plans);
  free(j);
  return rc;
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

  // The objects: one per part, compiled on several threads. m stays as it is.
  LLVMModuleRef clone = LLVMCloneModule(m);
  prepare_module(clone, tm);
  Plan *p = plan_new(clone, tm, split_wanted());
  LLVMDisposeModule(clone);
  LLVMMemoryBufferRef *objs = xcalloc((size_t)p->nparts, sizeof *objs);
  int nobj = p->nparts;
  if (!plan_compile(p, NULL, true, objs, "the module")) {
    free(objs);
    plan_free(p);
    rmdir(dir);
    return 1;
  }
  plan_free(p);
  char **paths = xcalloc((size_t)nobj, sizeof *paths);
  int npaths = 0, rc = 0;
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
  if (!rc) {
    double t0 = stage_start();
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

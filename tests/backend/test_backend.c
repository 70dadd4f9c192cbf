// test_backend.c: compiler/backend.c on a hand-built module.
//
//   saxpy(x, y, n):  y[i] = 2.5 * x[i] + y[i]         (must vectorize)
//   expy(x, y, n):   y[i] = llvm.exp.f32(x[i]) + y[i] (lowers to a libm call)
//   logy(x, y, n):   y[i] = logf(x[i])                (an explicit libm call)
//   use1, use2:      internal helper, constant table, internal counter (the
//                    module split for parallel compilation must keep these right)
//
// Optimises a copy of the module, checks the loop vectorizer fired and prints
// it as IR and assembly; builds an executable from the module with aot_build
// against a stand-in runtime (FNNC_LIBDIR); JIT-runs the functions and
// compares with the C library. The JIT compiles what a lookup needs only: a
// function calling a symbol nobody defines breaks its own lookup, not others.
//
// usage: test_backend [AOT_OUT]   (FNNC_LIBDIR must point at the stand-in runtime
// when AOT_OUT is given)
#include "harness.h"

#include <llvm-c/IRReader.h>
#include <llvm-c/Linker.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// diag.c is not linked: a stand-in that counts and prints.

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef m;
  LLVMBuilderRef b;
  LLVMTypeRef f32, i64, ptr;
} Ctx;

typedef LLVMValueRef (*Body)(Ctx *c, LLVMValueRef xi, LLVMValueRef yi);

// void NAME(float *x, float *y, i64 n) { for (i = 0; i < n; i++) y[i] = body(x[i], y[i]); }
static void build_loop(Ctx *c, const char *name, Body body) {
  LLVMTypeRef params[3] = {c->ptr, c->ptr, c->i64};
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), params, 3, 0);
  LLVMValueRef fn = LLVMAddFunction(c->m, name, fty);
  unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
  LLVMAddAttributeAtIndex(fn, 1, LLVMCreateEnumAttribute(c->ctx, noalias, 0));
  LLVMAddAttributeAtIndex(fn, 2, LLVMCreateEnumAttribute(c->ctx, noalias, 0));
  LLVMValueRef x = LLVMGetParam(fn, 0), y = LLVMGetParam(fn, 1), n = LLVMGetParam(fn, 2);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->ctx, fn, "entry");
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(c->ctx, fn, "head");
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(c->ctx, fn, "body");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, fn, "done");
  LLVMBuilderRef b = c->b;
  LLVMPositionBuilderAtEnd(b, entry);
  LLVMBuildBr(b, head);
  LLVMPositionBuilderAtEnd(b, head);
  LLVMValueRef i = LLVMBuildPhi(b, c->i64, "i");
  LLVMValueRef more = LLVMBuildICmp(b, LLVMIntSLT, i, n, "more");
  LLVMBuildCondBr(b, more, loop, done);
  LLVMPositionBuilderAtEnd(b, loop);
  LLVMValueRef px = LLVMBuildGEP2(b, c->f32, x, &i, 1, "px");
  LLVMValueRef py = LLVMBuildGEP2(b, c->f32, y, &i, 1, "py");
  LLVMValueRef xi = LLVMBuildLoad2(b, c->f32, px, "xi");
  LLVMValueRef yi = LLVMBuildLoad2(b, c->f32, py, "yi");
  LLVMBuildStore(b, body(c, xi, yi), py);
  LLVMValueRef next = LLVMBuildNSWAdd(b, i, LLVMConstInt(c->i64, 1, 0), "next");
  LLVMBuildBr(b, head);
  LLVMValueRef zero = LLVMConstInt(c->i64, 0, 0);
  LLVMBasicBlockRef from[2] = {entry, loop};
  LLVMValueRef vals[2] = {zero, next};
  LLVMAddIncoming(i, vals, from, 2);
  LLVMPositionBuilderAtEnd(b, done);
  LLVMBuildRetVoid(b);
}

static LLVMValueRef fast(LLVMValueRef v) {
  LLVMSetFastMathFlags(v, LLVMFastMathAllowContract);
  return v;
}

static LLVMValueRef saxpy_body(Ctx *c, LLVMValueRef xi, LLVMValueRef yi) {
  LLVMValueRef ax = fast(LLVMBuildFMul(c->b, LLVMConstReal(c->f32, 2.5), xi, "ax"));
  return fast(LLVMBuildFAdd(c->b, ax, yi, "r"));
}

static LLVMValueRef call1(Ctx *c, const char *name, LLVMValueRef x) {
  LLVMTypeRef fty = LLVMFunctionType(c->f32, &c->f32, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(c->m, name);
  if (!f) f = LLVMAddFunction(c->m, name, fty);
  return LLVMBuildCall2(c->b, fty, f, &x, 1, "");
}

static LLVMValueRef expy_body(Ctx *c, LLVMValueRef xi, LLVMValueRef yi) {
  return LLVMBuildFAdd(c->b, call1(c, "llvm.exp.f32", xi), yi, "r");
}

static LLVMValueRef logy_body(Ctx *c, LLVMValueRef xi, LLVMValueRef yi) { return call1(c, "logf", xi); }

// Parts the split must handle: an internal function called from another
// function, a private constant table used by two functions (copied into each
// part) and an internal mutable global shared by two (kept together).
static const char extra_ir[] =
    "@table = private unnamed_addr constant [4 x float] [float 1.0, float 2.0, float 3.0, float 4.0]\n"
    "@counter = internal global i64 0\n"
    "define internal float @helper(float %x, i64 %k) noinline {\n"
    "  %p = getelementptr [4 x float], ptr @table, i64 0, i64 %k\n"
    "  %t = load float, ptr %p\n"
    "  %r = fmul float %x, %t\n"
    "  ret float %r\n"
    "}\n"
    "define void @use1(ptr %y) {\n"
    "  %c = load i64, ptr @counter\n"
    "  %c1 = add i64 %c, 1\n"
    "  store i64 %c1, ptr @counter\n"
    "  %y0 = load float, ptr %y\n"
    "  %r0 = call float @helper(float %y0, i64 1)\n"
    "  store float %r0, ptr %y\n"
    "  %p1 = getelementptr float, ptr %y, i64 1\n"
    "  %y1 = load float, ptr %p1\n"
    "  %r1 = call float @helper(float %y1, i64 2)\n"
    "  store float %r1, ptr %p1\n"
    "  ret void\n"
    "}\n"
    "define i64 @use2(i64 %k) {\n"
    "  %c = load i64, ptr @counter\n"
    "  %p = getelementptr [4 x float], ptr @table, i64 0, i64 %k\n"
    "  %t = load float, ptr %p\n"
    "  %ti = fptosi float %t to i64\n"
    "  %r = add i64 %c, %ti\n"
    "  ret i64 %r\n"
    "}\n"
    // out[i] = i * table[i] for i < 4, through the thread pool: task3's address
    // is taken, so it must stay in use3's part.
    "declare void @fnn_parallel(ptr, ptr, i64)\n"
    "define internal void @task3(ptr %out, i64 %i, i64 %tid) noinline {\n"
    "  %x = sitofp i64 %i to float\n"
    "  %r = call float @helper(float %x, i64 %i)\n"
    "  %p = getelementptr float, ptr %out, i64 %i\n"
    "  store float %r, ptr %p\n"
    "  ret void\n"
    "}\n"
    "define void @use3(ptr %out) {\n"
    "  call void @fnn_parallel(ptr @task3, ptr %out, i64 4)\n"
    "  ret void\n"
    "}\n";

// Calls a function nobody defines.
static const char broken_ir[] =
    "declare void @fnnc_test_undefined_symbol()\n"
    "define void @broken() {\n"
    "  call void @fnnc_test_undefined_symbol()\n"
    "  ret void\n"
    "}\n";

static void add_ir(Ctx *c, const char *text, size_t len) {
  LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(text, len, "extra");
  LLVMModuleRef extra;
  char *msg = NULL;
  if (LLVMParseIRInContext(c->ctx, buf, &extra, &msg)) {  // takes buf
    fprintf(stderr, "test IR: %s\n", msg);
    exit(1);
  }
  if (LLVMLinkModules2(c->m, extra)) exit(1);
}

static void build_module(Ctx *c, LLVMContextRef ctx) {
  c->ctx = ctx;
  c->m = LLVMModuleCreateWithNameInContext("test_backend", ctx);
  c->b = LLVMCreateBuilderInContext(ctx);
  c->f32 = LLVMFloatTypeInContext(ctx);
  c->i64 = LLVMInt64TypeInContext(ctx);
  c->ptr = LLVMPointerTypeInContext(ctx, 0);
  build_loop(c, "saxpy", saxpy_body);
  build_loop(c, "expy", expy_body);
  build_loop(c, "logy", logy_body);
  LLVMDisposeBuilder(c->b);
  add_ir(c, extra_ir, sizeof extra_ir - 1);
}

typedef void (*Fn)(float *, float *, int64_t);

static float rel_err(float got, float want) { return fabsf(got - want) / (fabsf(want) > 1 ? fabsf(want) : 1); }

int main(int argc, char **argv) {
  const char *aot_out = argc > 1 ? argv[1] : NULL;
  double t0 = now();
  LLVMTargetMachineRef tm = backend_target_machine();
  char *cpu = LLVMGetTargetMachineCPU(tm);
  printf("target cpu: %s\n", cpu);
  LLVMDisposeMessage(cpu);

  // JIT path.
  Jit *j = jit_new();
  CHECK(j, "jit_new failed");
  if (!j) return 1;
  Ctx c;
  build_module(&c, jit_context(j));
  LLVMModuleRef opt = LLVMCloneModule(c.m);  // the JIT and aot_build take c.m unoptimised
  double t1 = now();
  backend_optimize(opt, tm);
  double t2 = now();

  // The vectorizer fired on saxpy (native width unless FNNC_CPU picks a baseline).
  char *ir = LLVMPrintModuleToString(opt);
  bool wide = strstr(ir, "<16 x float>") || strstr(ir, "<8 x float>");
  bool any = wide || strstr(ir, "<4 x float>");
  const char *over = getenv("FNNC_CPU");
  if (over && *over)
    CHECK(any, "no vector code in the optimised IR");
  else
    CHECK(wide, "no <16 x float> or <8 x float> in the optimised IR");
  printf("vectorized: %s\n", strstr(ir, "<16 x float>") ? "<16 x float>" : strstr(ir, "<8 x float>") ? "<8 x float>" : any ? "<4 x float>" : "no");
  CHECK(strstr(ir, "\"target-cpu\""), "no target-cpu attribute");
  CHECK(strstr(ir, "\"prefer-vector-width\"=\"512\""), "no prefer-vector-width attribute");
  CHECK(strstr(ir, "target triple"), "no target triple");
  CHECK(strstr(ir, "target datalayout"), "no data layout");
  // TEST_DUMP_IR=FILE: the optimised IR, to check it does not depend on the
  // number of compile threads.
  const char *dump = getenv("TEST_DUMP_IR");
  if (dump) {
    FILE *f = fopen(dump, "w");
    if (f) {
      fputs(ir, f);
      fclose(f);
    }
  }
  LLVMDisposeMessage(ir);

  // Printing: text IR and assembly, on a clone (the module stays usable).
  FILE *tmp = tmpfile();
  backend_print_llvm(tmp, opt);
  CHECK(ftell(tmp) > 100, "backend_print_llvm printed nothing");
  rewind(tmp);
  double ta = now();
  CHECK(backend_print_asm(tmp, opt, tm) == 0, "backend_print_asm failed");
  double tb = now();
  long asm_len = ftell(tmp);
  CHECK(asm_len > 100, "backend_print_asm printed nothing");
  fclose(tmp);
  LLVMDisposeModule(opt);

  // AOT on the same module, with a stand-in runtime: FNNC_LIBDIR/runtime/aot_main.o
  // (a main that calls saxpy, expy and logy) and FNNC_LIBDIR/libfnnrt.a.
  double tc = now(), td = tc;
  if (aot_out) {
    CHECK(aot_build(c.m, tm, aot_out) == 0, "aot_build failed");
    td = now();
    // A missing runtime is a reported error, not a crash.
    int before = nerrors;
    setenv("FNNC_LIBDIR", "/nonexistent/fnnc", 1);
    CHECK(aot_build(c.m, tm, "/nonexistent/out") == 1, "aot_build with no runtime should fail");
    CHECK(nerrors == before + 1, "aot_build failure reported %d errors", nerrors - before);
  }

  // Run it, with one more function that cannot be linked, in a part of its own
  // (FNNC_COMPILE_THREADS=0 makes one part of everything: then not).
  const char *threads = getenv("FNNC_COMPILE_THREADS");
  bool split = !threads || strcmp(threads, "0");
  if (split) add_ir(&c, broken_ir, sizeof broken_ir - 1);
  double t3 = now();
  CHECK(jit_add_module(j, c.m) == 0, "jit_add_module failed");
  // use3 compiles in the background while saxpy's lookup waits, then compiles saxpy.
  CHECK(jit_prefetch(j, "use3") == 0, "jit_prefetch failed");
  Fn saxpy = (Fn)jit_lookup(j, "saxpy");
  double t4 = now();
  Fn expy = (Fn)jit_lookup(j, "expy");
  Fn logy = (Fn)jit_lookup(j, "logy");
  void (*use1)(float *) = (void (*)(float *))jit_lookup(j, "use1");
  int64_t (*use2)(int64_t) = (int64_t(*)(int64_t))jit_lookup(j, "use2");
  CHECK(saxpy && expy && logy && use1 && use2, "lookup failed");
  if (use1 && use2) {
    float y2[2] = {10, 20};
    use1(y2);
    CHECK(y2[0] == 20 && y2[1] == 60, "use1: %g %g", y2[0], y2[1]);
    use1(y2);
    CHECK(use2(3) == 6, "use2: %ld", (long)use2(3));
  }
  void (*use3)(float *) = (void (*)(float *))jit_lookup(j, "use3");
  CHECK(use3, "lookup of use3 failed");
  if (use3) {
    float o[4] = {0};
    use3(o);
    CHECK(o[0] == 0 && o[1] == 2 && o[2] == 6 && o[3] == 12, "use3: %g %g %g %g", o[0], o[1], o[2], o[3]);
  }
  int before = nerrors;
  CHECK(!jit_lookup(j, "no_such_function"), "lookup of a missing symbol succeeded");
  CHECK(nerrors == before + 1, "a missing symbol was not reported");
  // Only the lookup of the function with the missing symbol fails.
  before = nerrors;
  CHECK(!split || !jit_lookup(j, "broken"), "lookup of a function calling a missing symbol succeeded");
  CHECK(!split || nerrors > before, "the missing symbol was not reported");
  if (saxpy && expy && logy) {
    enum { N = 1003 };  // not a multiple of the vector width: the remainder loop runs too
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = (float)i / 100.0f - 5.0f, y[i] = (float)(i % 7);
    saxpy(x, y, N);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += rel_err(y[i], 2.5f * x[i] + (float)(i % 7)) > 1e-6f;
    CHECK(bad == 0, "saxpy: %d wrong elements", bad);
    for (int i = 0; i < N; i++) y[i] = 1.0f;
    expy(x, y, N);
    bad = 0;
    for (int i = 0; i < N; i++) bad += rel_err(y[i], expf(x[i]) + 1.0f) > 1e-5f;
    CHECK(bad == 0, "expy: %d wrong elements", bad);
    for (int i = 0; i < N; i++) x[i] = 0.01f + (float)i;
    logy(x, y, N);
    bad = 0;
    for (int i = 0; i < N; i++) bad += rel_err(y[i], logf(x[i])) > 1e-5f;
    CHECK(bad == 0, "logy: %d wrong elements", bad);
    saxpy(x, y, 0);  // empty loop
    free(x);
    free(y);
  }
  CHECK(jit_destroy(j) == 0, "jit_destroy failed");
  LLVMDisposeTargetMachine(tm);
  arena_free_all();
  double t5 = now();

  printf("timings (ms): setup %.1f  optimize %.1f  asm %.1f  aot(obj+link) %.1f  jit add+first lookup %.1f  total %.1f\n",
         1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (tb - ta), 1e3 * (td - tc), 1e3 * (t4 - t3), 1e3 * (t5 - t0));
  if (failures) {
    printf("%d check(s) failed\n", failures);
    return 1;
  }
  printf("ok\n");
  return 0;
}

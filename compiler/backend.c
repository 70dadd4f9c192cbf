// backend.c: the LLVM end of the pipeline - the target machine, the O3 pipeline,
// textual IR and assembly, the ORC JIT, and ahead-of-time objects linked with
// the runtime library by the system C compiler.
//
// Everything here goes through LLVM's C API.
#include "fnnc.h"

#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/LLJITUtils.h>
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

LLVMTargetMachineRef backend_target_machine(void) {
  init_native_target();
  char *triple = LLVMGetDefaultTargetTriple();
  const char *over = cpu_override();
  char *cpu = over ? NULL : LLVMGetHostCPUName();
  char *features = over ? NULL : LLVMGetHostCPUFeatures();
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &err)) die("no LLVM target for '%s': %s", triple, err);
  // PIC: the default relocation model makes R_X86_64_32 relocations, which a
  // default (PIE) link of the AOT trainer rejects.
  LLVMTargetMachineRef tm =
      LLVMCreateTargetMachine(target, triple, over ? over : cpu, over ? "" : features, LLVMCodeGenLevelAggressive,
                              LLVMRelocPIC, LLVMCodeModelDefault);
  if (!tm) die("cannot create a target machine for '%s' (cpu '%s')", triple, over ? over : cpu);
  LLVMDisposeMessage(triple);
  if (cpu) LLVMDisposeMessage(cpu);
  if (features) LLVMDisposeMessage(features);
  return tm;
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
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
  LLVMPassBuilderOptionsSetLoopInterleaving(opts, 1);
  LLVMPassBuilderOptionsSetLoopUnrolling(opts, 1);
  // The loop vectorizer needs the real target machine (its cost model), else it
  // silently does nothing.
  LLVMErrorRef e = LLVMRunPasses(m, "default<O3>", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (e) {
    char *em = LLVMGetErrorMessage(e);
    fprintf(stderr, "fnnc: internal error: LLVM pass pipeline: %s\n", em);
    LLVMDisposeErrorMessage(em);
    die("LLVMRunPasses failed");
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
  bool looked_up;  // the first lookup compiles the whole module
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
  Jit *j = calloc(1, sizeof *j);
  if (!j) die("out of memory");
  j->lljit = lljit;
  j->tsc = LLVMOrcCreateNewThreadSafeContext();
  return j;
}

LLVMContextRef jit_context(Jit *j) { return LLVMOrcThreadSafeContextGetContext(j->tsc); }

int jit_add_module(Jit *j, LLVMModuleRef m) {
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, j->tsc);  // takes m
  LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->lljit);
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
  if (!j->looked_up) stage_end("JIT code generation", t0);
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
  char *obj = arena_printf("%s/model.o", dir);

  int rc = 1;
  LLVMModuleRef clone = LLVMCloneModule(m);
  char *err = NULL;
  if (LLVMTargetMachineEmitToFile(tm, clone, obj, LLVMObjectFile, &err)) {
    error_plain("LLVM could not write the object file: %s", err ? err : "unknown error");
    LLVMDisposeMessage(err);
  } else {
    char *argv[16];
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
    argv[n++] = obj;
    argv[n++] = main_obj;
    argv[n++] = rtlib;
    argv[n++] = "-lz";
    argv[n++] = "-lm";
    argv[n++] = "-lpthread";
    argv[n] = NULL;
    rc = run_command(argv);
    if (rc) error_plain("linking '%s' failed", out);
  }
  LLVMDisposeModule(clone);
  unlink(obj);
  rmdir(dir);
  return rc;
}

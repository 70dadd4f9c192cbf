// test_vmath.c: the vectorisable exp, log, tanh and sigmoid of compiler/vmath.c
// against the C library, through the real back end.
//
// It builds one module holding, for each function F,
//   F_loop(x, y, n):  for (i = 0; i < n; i++) y[i] = F(x[i])   (scalar IR, as the
//                     elementwise kernels emit it, left to the loop vectorizer)
//   F_v8(x, y):       y[0..8) = F(x[0..8)) on an explicit <8 x float>
// optimises it with backend_optimize (O3, host target), checks in the
// assembly that the loops call nothing and use packed FMA, JIT-compiles it,
// and measures the error against the double-precision C library:
//   - a sweep over all floats (every 509th bit pattern, both signs),
//   - a dense uniform sweep over [-110, 110] and one over [-12, 12],
//   - contiguous runs of floats around every boundary the code has,
//   - the special values (exact results required).
// Errors are in ulps of the float result nearest the exact value (denormal
// results: in units of the smallest denormal), and relative where that is a
// normal float. Prints the largest errors of each function and where the ulp
// error occurred; fails above the limits below.
//
// usage: test_vmath   (FNNC_CPU=NAME: a baseline CPU; then the packing
// check only asks for some vector code)
#include "harness.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// diag.c is not linked: a stand-in that counts and prints.

typedef LLVMValueRef (*VmFn)(LLVMModuleRef, LLVMBuilderRef, LLVMValueRef);
typedef void (*LoopFn)(const float *x, float *y, int64_t n);
typedef void (*V8Fn)(const float *x, float *y);

// One function under test: its emitter, its reference and its error limit.
typedef struct {
  const char *name;
  VmFn emit;
  double (*ref)(double);
  double max_ulp;
  double max_rel;  // relative error where the exact result is a normal float
  LoopFn loop;
  V8Fn v8;
} Case;

static double sigmoid_ref(double x) { return 1 / (1 + exp(-x)); }

// Limits. exp and log are within a couple of ulps; tanh and sigmoid add one
// division and one rounding of an exp result on top. The relative limits are
// about two float epsilons (2^-23 = 1.19e-7).
static Case cases[] = {
    {"exp", vm_exp, exp, 2.0, 2.4e-7, NULL, NULL},
    {"log", vm_log, log, 2.0, 2.4e-7, NULL, NULL},
    {"tanh", vm_tanh, tanh, 3.0, 2.4e-7, NULL, NULL},
    {"sigmoid", vm_sigmoid, sigmoid_ref, 3.0, 2.4e-7, NULL, NULL},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

static LLVMValueRef add_fn(LLVMModuleRef m, const char *name, int nparams) {
  LLVMContextRef ctx = LLVMGetModuleContext(m);
  LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0);
  LLVMTypeRef params[3] = {ptr, ptr, LLVMInt64TypeInContext(ctx)};
  LLVMValueRef fn = LLVMAddFunction(m, name, LLVMFunctionType(LLVMVoidTypeInContext(ctx), params, nparams, 0));
  unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
  LLVMAddAttributeAtIndex(fn, 1, LLVMCreateEnumAttribute(ctx, noalias, 0));
  LLVMAddAttributeAtIndex(fn, 2, LLVMCreateEnumAttribute(ctx, noalias, 0));
  return fn;
}

// NAME_loop(x, y, n): for (i = 0; i < n; i++) y[i] = F(x[i])
static void build_loop(LLVMModuleRef m, LLVMBuilderRef b, const Case *c) {
  LLVMContextRef ctx = LLVMGetModuleContext(m);
  LLVMTypeRef f32 = LLVMFloatTypeInContext(ctx), i64 = LLVMInt64TypeInContext(ctx);
  LLVMValueRef fn = add_fn(m, arena_printf("%s_loop", c->name), 3);
  LLVMValueRef x = LLVMGetParam(fn, 0), y = LLVMGetParam(fn, 1), n = LLVMGetParam(fn, 2);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(ctx, fn, "entry");
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(ctx, fn, "head");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(ctx, fn, "body");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(ctx, fn, "done");
  LLVMPositionBuilderAtEnd(b, entry);
  LLVMBuildBr(b, head);
  LLVMPositionBuilderAtEnd(b, head);
  LLVMValueRef i = LLVMBuildPhi(b, i64, "i");
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, i, n, ""), body, done);
  LLVMPositionBuilderAtEnd(b, body);
  LLVMValueRef xi = LLVMBuildLoad2(b, f32, LLVMBuildInBoundsGEP2(b, f32, x, &i, 1, ""), "");
  LLVMValueRef yi = c->emit(m, b, xi);
  LLVMBuildStore(b, yi, LLVMBuildInBoundsGEP2(b, f32, y, &i, 1, ""));
  LLVMValueRef next = LLVMBuildNSWAdd(b, i, LLVMConstInt(i64, 1, 0), "");
  LLVMBuildBr(b, head);
  LLVMValueRef in[2] = {LLVMConstInt(i64, 0, 0), next};
  LLVMBasicBlockRef from[2] = {entry, body};
  LLVMAddIncoming(i, in, from, 2);
  LLVMPositionBuilderAtEnd(b, done);
  LLVMBuildRetVoid(b);
}

// NAME_v8(x, y): y[0..8) = F(x[0..8)) as one <8 x float>
static void build_v8(LLVMModuleRef m, LLVMBuilderRef b, const Case *c) {
  LLVMContextRef ctx = LLVMGetModuleContext(m);
  LLVMTypeRef v8 = LLVMVectorType(LLVMFloatTypeInContext(ctx), 8);
  LLVMValueRef fn = add_fn(m, arena_printf("%s_v8", c->name), 2);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
  LLVMValueRef x = LLVMBuildLoad2(b, v8, LLVMGetParam(fn, 0), "");
  LLVMSetAlignment(x, 4);
  LLVMValueRef st = LLVMBuildStore(b, c->emit(m, b, x), LLVMGetParam(fn, 1));
  LLVMSetAlignment(st, 4);
  LLVMBuildRetVoid(b);
}

//
// The assembly: no calls in the loops, and packed FMA.
//
// The text of function NAME in an assembly listing (up to its .Lfunc_end label).
static char *asm_of(const char *text, const char *name) {
  char *label = arena_printf("\n%s:", name);
  const char *s = strstr(text, label);
  if (!s) return NULL;
  const char *e = strstr(s, ".Lfunc_end");
  return arena_strndup(s, e ? (size_t)(e - s) : strlen(s));
}

static void check_asm(const char *text) {
  const char *over = getenv("FNNC_CPU");
  bool native = !(over && *over);
  for (int i = 0; i < NCASES; i++) {
    const char *name = arena_printf("%s_loop", cases[i].name);
    char *fn = asm_of(text, name);
    CHECK(fn, "%s not found in the assembly", name);
    if (!fn) continue;
    const char *call = strstr(fn, "call");
    CHECK(!call, "%s calls a function: %.*s", name, call ? (int)strcspn(call, "\n") : 0, call ? call : "");
    bool zmm = strstr(fn, "%zmm") != NULL;
    bool packed_fma = false;
    for (const char *p = fn; (p = strstr(p, "vfmadd")); p++) {
      const char *eol = strchr(p, '\n');
      size_t len = eol ? (size_t)(eol - p) : strlen(p);
      char *line = arena_strndup(p, len);
      if (strstr(line, "ps\t") && (strstr(line, "%zmm") || strstr(line, "%ymm"))) packed_fma = true;
    }
    bool any_vec = strstr(fn, "ps\t") != NULL;
    printf("%-8s loop: %s%s\n", cases[i].name, packed_fma ? "packed FMA" : any_vec ? "packed" : "scalar",
           zmm ? " (zmm)" : "");
    if (native)
      CHECK(packed_fma, "%s: no packed ymm/zmm FMA in the loop", name);
    else
      CHECK(any_vec, "%s: no packed instructions in the loop", name);
  }
}

//
// Errors
//
// The error of got in ulps of the float nearest to want (a double). Infinities
// count as 2^128, one ulp past FLT_MAX.
static double ulp_err(float got, double want) {
  if (isnan(want) || isnan(got)) return isnan(want) && isnan(got) ? 0 : INFINITY;
  double g = isinf(got) ? copysign(0x1p128, got) : got;
  double w = fabs(want) > 0x1p128 ? copysign(0x1p128, want) : want;
  int ex;
  frexp(w, &ex);  // w = f 2^ex, f in [0.5, 1)
  double ulp = ldexp(1, ex - 24 < -149 ? -149 : ex - 24);
  return fabs(g - w) / ulp;
}

typedef struct {
  double ulp, rel, abs;
  float at_ulp;
  int64_t n;
} Stats;

static void measure(const Case *c, const float *x, const float *y, int64_t n, Stats *s) {
  for (int64_t i = 0; i < n; i++) {
    double want = c->ref(x[i]);
    double u = ulp_err(y[i], want);
    if (u > s->ulp || isnan(u)) s->ulp = u, s->at_ulp = x[i];
    double a = fabs((double)y[i] - want);
    if (isfinite(a) && a > s->abs) s->abs = a;
    if (fabs(want) >= FLT_MIN && fabs(want) <= FLT_MAX && a / fabs(want) > s->rel) s->rel = a / fabs(want);
  }
  s->n += n;
}

// Inputs: every 509th bit pattern (all exponents, both signs), uniform grids
// over the useful ranges, and 2^15 consecutive floats on each side of each
// boundary of the implementations.
static float *make_inputs(int64_t *count) {
  static const float edges[] = {
      0.0f,        1.0f,          -1.0f,         0.625f,      -0.625f,     88.72283935546875f,
      88.8f,       -87.33654f,    -103.27893f,   -103.97208f, -104.0f,     FLT_MIN,
      0.70710677f, 1.4142135f,    9.0109f,       -9.0109f,    17.328680f,  -17.328680f,
      0.34657359f, -0.34657359f,  2.0f,          0.5f,        1e-20f,      -1e-20f,
  };
  enum { RUN = 1 << 15, GRID = 1 << 21 };
  int64_t nedge = sizeof edges / sizeof edges[0];
  int64_t nsweep = (int64_t)(0x100000000ULL / 509) + 1;
  int64_t cap = nsweep + 2 * GRID + nedge * 2 * RUN;
  float *x = malloc((size_t)cap * sizeof *x);
  int64_t n = 0;
  for (uint64_t b = 0; b < 0x100000000ULL; b += 509) {
    uint32_t u = (uint32_t)b;
    memcpy(&x[n++], &u, 4);
  }
  for (int64_t i = 0; i < GRID; i++) x[n++] = (float)(-110.0 + 220.0 * (double)i / GRID);
  for (int64_t i = 0; i < GRID; i++) x[n++] = (float)(-12.0 + 24.0 * (double)i / GRID);
  for (int64_t k = 0; k < nedge; k++) {
    float up = edges[k], down = edges[k];
    for (int64_t i = 0; i < RUN; i++) {
      x[n++] = up;
      x[n++] = down;
      up = nextafterf(up, INFINITY);
      down = nextafterf(down, -INFINITY);
    }
  }
  *count = n;
  return x;
}

//
// Special values: exact results required.
//
typedef struct {
  float x, want;
} Exact;

static bool same(float a, float b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  return a == b && signbit(a) == signbit(b);
}

static void check_exact(const Case *c, const Exact *t, int n) {
  float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
  for (int i = 0; i < n; i++) x[i] = t[i].x;
  c->loop(x, y, n);
  for (int i = 0; i < n; i++) CHECK(same(y[i], t[i].want), "%s(%a) = %a, want %a", c->name, x[i], y[i], t[i].want);
  free(x);
  free(y);
}

static void check_specials(void) {
  const float inf = INFINITY, nan = NAN, den = 0x1p-149f, tiny = 1e-30f;
  Exact e[] = {{0, 1},        {-0.0f, 1},   {inf, inf},    {-inf, 0},       {nan, nan},   {89, inf},
               {88.8f, inf},  {1000, inf},  {FLT_MAX, inf}, {-104, 0},      {-110, 0},    {-FLT_MAX, 0},
               {den, 1},      {-den, 1}};
  check_exact(&cases[0], e, sizeof e / sizeof e[0]);
  Exact l[] = {{0, -inf},     {-0.0f, -inf}, {-1, nan},     {-inf, nan},     {-den, nan},  {inf, inf},
               {nan, nan},    {1, 0}};
  check_exact(&cases[1], l, sizeof l / sizeof l[0]);
  Exact t[] = {{0, 0},        {-0.0f, -0.0f}, {inf, 1},     {-inf, -1},      {nan, nan},   {10, 1},
               {-10, -1},     {9.1f, 1},     {FLT_MAX, 1},  {-FLT_MAX, -1},  {tiny, tiny}, {-tiny, -tiny},
               {den, den},    {-den, -den},  {1e-5f, 1e-5f}};
  check_exact(&cases[2], t, sizeof t / sizeof t[0]);
  Exact s[] = {{0, 0.5f},     {-0.0f, 0.5f}, {inf, 1},      {-inf, 0},       {nan, nan},   {17.5f, 1},
               {100, 1},      {FLT_MAX, 1},  {-104, 0},     {-200, 0},       {-FLT_MAX, 0}, {tiny, 0.5f},
               {den, 0.5f}};
  check_exact(&cases[3], s, sizeof s / sizeof s[0]);
  // Denormal results: sigmoid(-90) = e^-90 ~ 8.2e-40 and exp(-100) ~ 3.7e-44.
  float x[2] = {-90, -100}, y[2];
  cases[3].loop(x, y, 1);
  CHECK(y[0] > 0 && y[0] < FLT_MIN && ulp_err(y[0], sigmoid_ref(-90)) <= 1, "sigmoid(-90) = %a", y[0]);
  cases[0].loop(x + 1, y + 1, 1);
  CHECK(y[1] > 0 && y[1] < FLT_MIN && ulp_err(y[1], exp(-100)) <= 1, "exp(-100) = %a", y[1]);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void) {
  LLVMTargetMachineRef tm = backend_target_machine();
  char *cpu = LLVMGetTargetMachineCPU(tm);
  printf("target cpu: %s\n", cpu);
  LLVMDisposeMessage(cpu);
  Jit *j = jit_new();
  if (!j) return 1;
  LLVMContextRef ctx = jit_context(j);
  LLVMModuleRef m = LLVMModuleCreateWithNameInContext("test_vmath", ctx);
  LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
  for (int i = 0; i < NCASES; i++) {
    build_loop(m, b, &cases[i]);
    build_v8(m, b, &cases[i]);
  }
  LLVMDisposeBuilder(b);
  backend_optimize(m, tm);

  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  CHECK(backend_print_asm(f, m, tm) == 0, "backend_print_asm failed");
  fclose(f);
  check_asm(text);
  free(text);

  CHECK(jit_add_module(j, m) == 0, "jit_add_module failed");
  for (int i = 0; i < NCASES; i++) {
    cases[i].loop = (LoopFn)jit_lookup(j, arena_printf("%s_loop", cases[i].name));
    cases[i].v8 = (V8Fn)jit_lookup(j, arena_printf("%s_v8", cases[i].name));
    CHECK(cases[i].loop && cases[i].v8, "lookup of %s failed", cases[i].name);
    if (!cases[i].loop || !cases[i].v8) return 1;
  }

  check_specials();
  int64_t n;
  float *x = make_inputs(&n);
  float *y = malloc((size_t)n * sizeof *y), *y8 = malloc(64 * sizeof *y8);
  printf("%" PRId64 " inputs per function\n", n);
  for (int i = 0; i < NCASES; i++) {
    Case *c = &cases[i];
    c->loop(x, y, n);
    double t0 = now();  // timed the second time, when y is paged in (for information only)
    c->loop(x, y, n);
    double t1 = now();
    Stats s = {0};
    measure(c, x, y, n, &s);
    printf("%-8s max error %.3f ulp at %a (%.9g), max rel %.3g (normal results), max abs %.3g; %.2f Gelem/s\n", c->name, s.ulp,
           s.at_ulp, s.at_ulp, s.rel, s.abs, (double)n / (t1 - t0) / 1e9);
    CHECK(s.ulp <= c->max_ulp, "%s: %.3f ulp at %a, more than %.1f", c->name, s.ulp, s.at_ulp, c->max_ulp);
    CHECK(s.rel <= c->max_rel, "%s: relative error %.3g, more than %.3g", c->name, s.rel, c->max_rel);
    // The explicit vector form computes the same bits as the loop.
    int differ = 0;
    for (int64_t k = 0; k + 8 <= n && k < (int64_t)1 << 20; k += 8 * 97) {
      c->v8(x + k, y8);
      for (int l = 0; l < 8; l++) differ += !same(y8[l], y[k + l]);
    }
    CHECK(differ == 0, "%s: the <8 x float> form differs from the loop in %d elements", c->name, differ);
  }
  free(x);
  free(y);
  free(y8);
  jit_destroy(j);
  LLVMDisposeTargetMachine(tm);
  arena_free_all();
  if (failures || nerrors) {
    printf("%d check(s) failed\n", failures + nerrors);
    return 1;
  }
  printf("ok\n");
  return 0;
}

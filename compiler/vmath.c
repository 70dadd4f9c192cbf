// vmath.c: exp, log, tanh and sigmoid of float as straight-line LLVM IR.
//
// LLVM lowers llvm.exp.f32 and llvm.log.f32 to a libm call per element, and a
// call in a loop body keeps the loop vectorizer from widening it. These
// emitters build the functions from arithmetic, bitcasts and selects only:
// range reduction, a polynomial evaluated with llvm.fma.f32, and the exponent
// put in or taken out through the bits of an i32. A loop that uses them
// vectorizes like any other elementwise loop (packed FMA on the host's widest
// vectors).
//
// Every function takes a float or a vector of floats; constants are splatted
// to the operand's type. The polynomials are the classic Cephes single
// precision ones; each function is within a few ulp of the correctly rounded
// result over all floats (tests/vmath measures it), and gets the special
// values right:
//   exp:     overflow -> +inf, underflow -> 0 (denormal results kept), exp(-inf) = 0
//   log:     log(+-0) = -inf, log(x < 0) = NaN, log(+inf) = +inf, denormals scaled
//   tanh:    odd; exactly +-1 for |x| >= 9.01; tanh(x) = x for tiny x
//   sigmoid: exactly 1 for large x, 0 for x <= -104, denormal in between
// and NaN in gives NaN out.
//
// FNNC_LIBM=1 in the environment makes them call llvm.exp / llvm.log instead
// (the libm path they replace), so bench/run.sh can compare the two.
#include "fnnc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// What an emitter needs: where to put instructions, and the float and i32
// types of the operand's shape (scalar, or vectors of the same lane count).
typedef struct {
  LLVMModuleRef m;
  LLVMBuilderRef b;
  LLVMTypeRef ft, it;
  unsigned lanes;  // 0 for a scalar
} Vm;

static Vm vm_of(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
  Vm v = {m, b, LLVMTypeOf(x), NULL, 0};
  LLVMContextRef ctx = LLVMGetModuleContext(m);
  LLVMTypeRef i32 = LLVMInt32TypeInContext(ctx);
  if (LLVMGetTypeKind(v.ft) == LLVMVectorTypeKind) {
    v.lanes = LLVMGetVectorSize(v.ft);
    v.it = LLVMVectorType(i32, v.lanes);
  } else {
    v.it = i32;
  }
  return v;
}

static LLVMValueRef splat(Vm *v, LLVMValueRef c) {
  if (!v->lanes) return c;
  LLVMValueRef *el = arena_alloc(v->lanes * sizeof *el);
  for (unsigned i = 0; i < v->lanes; i++) el[i] = c;
  return LLVMConstVector(el, v->lanes);
}

// A float constant, exactly as the float nearest to c.
static LLVMValueRef F(Vm *v, double c) {
  LLVMContextRef ctx = LLVMGetModuleContext(v->m);
  return splat(v, LLVMConstReal(LLVMFloatTypeInContext(ctx), (double)(float)c));
}

static LLVMValueRef I(Vm *v, int32_t c) {
  LLVMContextRef ctx = LLVMGetModuleContext(v->m);
  return splat(v, LLVMConstInt(LLVMInt32TypeInContext(ctx), (uint64_t)(uint32_t)c, 1));
}

// A call to an overloaded intrinsic on the operand's type ("llvm.fma").
static LLVMValueRef intrinsic(Vm *v, const char *name, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id) die("no intrinsic %s", name);
  LLVMContextRef ctx = LLVMGetModuleContext(v->m);
  LLVMTypeRef fty = LLVMIntrinsicGetType(ctx, id, &v->ft, 1);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(v->m, id, &v->ft, 1);
  return LLVMBuildCall2(v->b, fty, fn, args, (unsigned)n, "");
}

static LLVMValueRef fma3(Vm *v, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMValueRef args[3] = {a, b, c};
  return intrinsic(v, "llvm.fma", args, 3);
}

// p(x) = c[0] x^(n-1) + ... + c[n-1], by Horner's rule with one fma per step.
static LLVMValueRef horner(Vm *v, LLVMValueRef x, const double *c, int n) {
  LLVMValueRef p = F(v, c[0]);
  for (int i = 1; i < n; i++) p = fma3(v, p, x, F(v, c[i]));
  return p;
}

static LLVMValueRef vadd(Vm *v, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(v->b, a, b, ""); }
static LLVMValueRef vsub(Vm *v, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(v->b, a, b, ""); }
static LLVMValueRef vmul(Vm *v, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(v->b, a, b, ""); }
static LLVMValueRef vdiv(Vm *v, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(v->b, a, b, ""); }
static LLVMValueRef cmp(Vm *v, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFCmp(v->b, p, a, b, "");
}
static LLVMValueRef sel(Vm *v, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(v->b, c, a, b, "");
}
static LLVMValueRef as_int(Vm *v, LLVMValueRef x) { return LLVMBuildBitCast(v->b, x, v->it, ""); }
static LLVMValueRef as_float(Vm *v, LLVMValueRef x) { return LLVMBuildBitCast(v->b, x, v->ft, ""); }

// 2^n for an i32 n in [-126, 127], built in the exponent field.
static LLVMValueRef pow2i(Vm *v, LLVMValueRef n) {
  LLVMValueRef biased = LLVMBuildAdd(v->b, n, I(v, 127), "");
  return as_float(v, LLVMBuildShl(v->b, biased, I(v, 23), ""));
}

static bool use_libm(void) {
  const char *s = getenv("FNNC_LIBM");
  return s && *s && strcmp(s, "0") != 0;
}

// exp(x) = 2^n e^r  with  n = round(x / ln 2),  r = x - n ln 2,  |r| <= ln(2)/2.
//
// x is clamped to [-104, 88.8] first, which keeps n in [-150, 128]: below, the
// result rounds to 0; above, it overflows to +inf; in between, denormal
// results come out right because 2^n is applied as two normal factors
// 2^(n/2) 2^(n - n/2) (the first product is exact, the second rounds once).
// The compares are ordered, so NaN passes the clamps and the arithmetic keeps it.
//   n: by adding 1.5 * 2^23, which rounds x/ln2 to an integer in the low bits;
//   r: Cody-Waite, ln 2 = C1 + C2 with C1 = 0.693359375 (9 bits, so n*C1 is exact);
//   e^r = 1 + r + r^2 P(r), P of degree 5.
LLVMValueRef vm_exp(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
  Vm v = vm_of(m, b, x);
  if (use_libm()) return intrinsic(&v, "llvm.exp", &x, 1);
  static const double P[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                             4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  x = sel(&v, cmp(&v, LLVMRealOGT, x, F(&v, 88.8)), F(&v, 88.8), x);
  x = sel(&v, cmp(&v, LLVMRealOLT, x, F(&v, -104)), F(&v, -104), x);
  LLVMValueRef magic = F(&v, 12582912.0);  // 1.5 * 2^23
  LLVMValueRef t = fma3(&v, x, F(&v, 1.44269504088896341), magic);
  LLVMValueRef k = vsub(&v, t, magic);
  LLVMValueRef n = LLVMBuildSub(b, as_int(&v, t), as_int(&v, magic), "");
  LLVMValueRef r = fma3(&v, k, F(&v, -0.693359375), x);
  r = fma3(&v, k, F(&v, 2.12194440e-4), r);
  LLVMValueRef p = horner(&v, r, P, 6);
  p = fma3(&v, p, vmul(&v, r, r), r);
  p = vadd(&v, p, F(&v, 1));
  LLVMValueRef n1 = LLVMBuildAShr(b, n, I(&v, 1), "");
  LLVMValueRef n2 = LLVMBuildSub(b, n, n1, "");
  return vmul(&v, vmul(&v, p, pow2i(&v, n1)), pow2i(&v, n2));
}

// log(x) = e ln 2 + log(1 + f)  with  x = 2^e (1 + f),  1 + f in [sqrt(1/2), sqrt(2)).
//
// Denormal x is first scaled by 2^23 (and e lowered by 23). Subtracting the
// bits of sqrt(1/2) before taking the exponent field splits x at sqrt(2)
// instead of 2, so |f| <= 0.415 and f = m - 1 is exact.
//   log(1 + f) = f - f^2/2 + f^3 P(f), P of degree 8; ln 2 = C1 + C2 as in vm_exp.
// Then the special values, by selects: x < 0 -> NaN, +-0 -> -inf, +inf -> +inf, NaN -> x.
LLVMValueRef vm_log(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
  Vm v = vm_of(m, b, x);
  if (use_libm()) return intrinsic(&v, "llvm.log", &x, 1);
  static const double P[] = {7.0376836292E-2,  -1.1514610310E-1, 1.1676998740E-1,
                             -1.2420140846E-1, 1.4249322787E-1,  -1.6668057665E-1,
                             2.0000714765E-1,  -2.4999993993E-1, 3.3333331174E-1};
  LLVMValueRef tiny = cmp(&v, LLVMRealOLT, x, F(&v, 1.17549435e-38));  // below FLT_MIN
  LLVMValueRef xs = sel(&v, tiny, vmul(&v, x, F(&v, 8388608.0)), x);
  LLVMValueRef ix = LLVMBuildSub(b, as_int(&v, xs), I(&v, 0x3f3504f3), "");
  LLVMValueRef e = LLVMBuildAShr(b, ix, I(&v, 23), "");
  LLVMValueRef mbits = LLVMBuildAdd(b, LLVMBuildAnd(b, ix, I(&v, 0x007fffff), ""), I(&v, 0x3f3504f3), "");
  LLVMValueRef f = vsub(&v, as_float(&v, mbits), F(&v, 1));
  LLVMValueRef ef = LLVMBuildSIToFP(b, e, v.ft, "");
  ef = vsub(&v, ef, sel(&v, tiny, F(&v, 23), F(&v, 0)));
  LLVMValueRef z = vmul(&v, f, f);
  LLVMValueRef y = vmul(&v, vmul(&v, horner(&v, f, P, 9), f), z);
  y = fma3(&v, ef, F(&v, -2.12194440e-4), y);
  y = fma3(&v, z, F(&v, -0.5), y);
  LLVMValueRef r = fma3(&v, ef, F(&v, 0.693359375), vadd(&v, f, y));
  LLVMValueRef inf = F(&v, INFINITY);
  r = sel(&v, cmp(&v, LLVMRealOEQ, x, inf), inf, r);
  r = sel(&v, cmp(&v, LLVMRealOEQ, x, F(&v, 0)), F(&v, -INFINITY), r);
  r = sel(&v, cmp(&v, LLVMRealOLT, x, F(&v, 0)), F(&v, NAN), r);
  return sel(&v, cmp(&v, LLVMRealUNO, x, x), x, r);
}

// tanh(x) = sign(x) tanh(|x|), and for a = |x|:
//   tanh(a) = a + a^3 P(a^2)             for a < 0.625 (P of degree 4)
//           = 1 - 2 / (e^(2a) + 1)       otherwise.
// The polynomial keeps full relative accuracy near 0 (no 1 - something); the
// other form rounds to exactly 1 from a ~ 9.01 up to +inf. The sign goes on
// last, so tanh(-0) = -0.
LLVMValueRef vm_tanh(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
  Vm v = vm_of(m, b, x);
  static const double P[] = {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2,
                             1.33314422036E-1, -3.33332819422E-1};
  LLVMValueRef a = intrinsic(&v, "llvm.fabs", &x, 1);
  LLVMValueRef z = vmul(&v, a, a);
  LLVMValueRef small = fma3(&v, vmul(&v, horner(&v, z, P, 5), z), a, a);
  LLVMValueRef ex = vm_exp(m, b, vadd(&v, a, a));
  LLVMValueRef big = vsub(&v, F(&v, 1), vdiv(&v, F(&v, 2), vadd(&v, ex, F(&v, 1))));
  LLVMValueRef sgn[2] = {sel(&v, cmp(&v, LLVMRealOLT, a, F(&v, 0.625)), small, big), x};
  return intrinsic(&v, "llvm.copysign", sgn, 2);
}

// sigmoid(x) = 1 / (1 + t)  for x >= 0,   t / (1 + t)  for x < 0,   t = e^-|x|.
// One exp and one division; for x < 0 the numerator is small rather than the
// difference 1 - something, so tiny results keep their relative accuracy.
LLVMValueRef vm_sigmoid(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
  Vm v = vm_of(m, b, x);
  LLVMValueRef ax = intrinsic(&v, "llvm.fabs", &x, 1);
  LLVMValueRef t = vm_exp(m, b, LLVMBuildFNeg(b, ax, ""));
  LLVMValueRef num = sel(&v, cmp(&v, LLVMRealOLT, x, F(&v, 0)), t, F(&v, 1));
  return vdiv(&v, num, vadd(&v, t, F(&v, 1)));
}

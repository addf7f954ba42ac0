// exp2 / tanh written once over whichever Vec the including TU selected (via `using`).
// Include after a vec_<isa>.h, inside that ISA's namespace.
// 2^x for x already clamped to [-126, 127]: x = n + f with |f| <= 1/2, 2^f by a degree-6 Taylor
// polynomial (relative error ~1e-7), scaled by 2^n (scalef on AVX-512, exponent bits elsewhere).
static inline Vec vexp2_clamped(Vec x) {
  const Vec n = vround(x);
  const Vec f = vsub(x, n);
  Vec p = vset1(1.5403530393381606e-4f);
  p = vfma(p, f, vset1(1.3333558146428443e-3f));
  p = vfma(p, f, vset1(9.6181291076284772e-3f));
  p = vfma(p, f, vset1(5.5504108664821580e-2f));
  p = vfma(p, f, vset1(2.4022650695910071e-1f));
  p = vfma(p, f, vset1(6.9314718055994531e-1f));
  p = vfma(p, f, vset1(1.0f));
  return vscale2(p, n);
}

// 2^x for any x (clamped to [-126, 127]).
static inline Vec vexp2(Vec x) { return vexp2_clamped(vmax(vmin(x, vset1(127.0f)), vset1(-126.0f))); }

static constexpr float kLog2e = 1.4426950408889634f;

// 2^x for x <= 0 (softmax arguments s - max). No upper clamp; the lower clamp is -125, so an
// argument of -inf (a masked score) gives 2^-125 ~ 2.4e-38: a normal float (no denormal slow
// paths), negligible next to the row's largest term, 1. Callers recognise "no visible key" by
// the running max staying -inf, not by a zero sum.
static inline Vec vexp2_nonpositive(Vec x) { return vexp2_clamped(vmax(x, vset1(-125.0f))); }

// tanh(x) = sign(x) (e - 1) / (e + 1), e = exp(2|x|): absolute error ~1e-7.
static inline Vec vtanh(Vec x) {
  const Vec e = vexp2(vmul(vabs(x), vset1(2.0f * kLog2e)));
  const Vec t = vdiv(vsub(e, vset1(1.0f)), vadd(e, vset1(1.0f)));
  return vcopysign(t, x);
}

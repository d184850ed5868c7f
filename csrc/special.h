// Regularised incomplete beta function I_x(a, b), its inverse in x, and the SK Mixup
// coefficient of one pair, as scalar functions for host and CUDA device code: the general
// ones in float64, the symmetric ones the coefficient uses in float or double.
//
// kmixup/special.py is the same algorithm as the general functions in torch ops (the
// pure-PyTorch fallback; the symmetric coefficient path is compiled-only, see there), with
// the same regimes, constants and formulas; its docstring explains them. The differences
// are only those of scalar code: real branches and loops that stop once converged, which the
// Python follows on CPU tensors only (elsewhere it computes every branch and selects, and
// runs every loop to its cap). tests/ compare both paths to scipy and mpmath and to each
// other, which keeps them in step: change one, change the other.

#pragma once

#include <float.h>
#include <math.h>

#ifdef __CUDACC__
#define KMIXUP_HD __host__ __device__ inline
#else
#define KMIXUP_HD inline
#endif

namespace kmixup {
namespace detail {

constexpr double kLarge = 25.0;  // min(a, b) from which quadrature replaces the continued fraction
constexpr double kHuge = 1e6;    // max(a, b) from which, when min < kLarge, Beta is Gamma-like
// A shape below which I (or P) is 1 - O(shape) on the side where its series converges, so its
// complement is summed as such: 1 - I would keep only ~ eps / shape of it.
constexpr double kSmall = 0.01;
constexpr int kCfTerms = 100;
constexpr int kGammaTerms = 60;  // also bounds the series of the small-shape complements
constexpr double kWindowSd = 16.0;  // beyond +-16 sd the density is below exp(-45) of its peak
constexpr double kDecay = 40.0;     // e-folds of the density that a tail integral spans at most
constexpr int kGuessSteps = 4;
// The inverse's starting guess trusts a tail's continued fraction cut after its first term
// where the next term is below this fraction of it, else prefers the normal approximation.
constexpr double kGuessTol = 1e-3;
constexpr int kNewtonSteps = 10;
// Newton stops when a step moves u = log x by this relative amount, or when the tail misses
// its target by kResidualTol relative: the step it takes then leaves a miss quadratically
// smaller, below what the tail itself resolves.
constexpr double kNewtonTol = 1e-14;
constexpr double kResidualTol = 1e-10;
constexpr double kEps = DBL_EPSILON;  // the continued fractions and series stop below this
constexpr double kTiny = 1e-300;
constexpr double kLogTiny = -708.39641853226408;  // log(DBL_MIN): the inverse's lower bracket
constexpr double kLog2 = 0.69314718055994531;
constexpr double kLog2Pi = 1.8378770664093453;
constexpr double kPi = 3.14159265358979323846;

// I_x and 1 - I_x: the smaller to full relative precision where it is computed directly,
// the larger (1 minus it) to full absolute precision.
struct Tails {
  double lower, upper;
};

// Written so that NaN passes through, as torch.clamp lets it.
KMIXUP_HD double clamp_unit(double v) { return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v); }

KMIXUP_HD Tails clamp_unit(Tails t) { return {clamp_unit(t.lower), clamp_unit(t.upper)}; }

// Lentz's method divides by these; a value that vanishes is nudged off zero.
KMIXUP_HD double guard(double v) { return ::fabs(v) < kTiny ? kTiny : v; }

// lgamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2); accurate to 1e-16 for z >= 10.
KMIXUP_HD double stirling_correction(double z) {
  const double r = 1.0 / (z * z);
  return (1.0 / 12 - r * (1.0 / 360 - r * (1.0 / 1260 - r * (1.0 / 1680 - r / 1188)))) / z;
}

// log(1 + z) - z from z and 1 + z, which the caller forms without rounding z near -1. Near 0,
// where log(1 + z) - z cancels, 2 atanh(w) with w = z / (2 + z) is used instead:
// log(1 + z) - z = -z w + 2 w^3 (1/3 + w^2/5 + w^4/7 + ...), for |w| <= 1/3 (-1/2 <= z <= 1),
// where 16 terms reach double precision.
KMIXUP_HD double log1pmx(double z, double one_plus_z) {
  const double w = z / (2.0 + z);
  if (::fabs(w) > 1.0 / 3) return ::log(one_plus_z) - z;
  const double w2 = w * w;
  double acc = 1.0 / 33;
  for (int k = 31; k >= 3; k -= 2) acc = 1.0 / k + w2 * acc;
  return 2.0 * w * w2 * acc - z * w;
}

// log B(a, b), without the cancellation of lgamma(big) - lgamma(big + small).
KMIXUP_HD double log_beta(double a, double b) {
  const double small = ::fmin(a, b), big = ::fmax(a, b);
  if (big < 10.0) return ::lgamma(a) + ::lgamma(b) - ::lgamma(a + b);
  const double s = big + small;
  return ::lgamma(small) - (big - 0.5) * ::log1p(small / big) - small * ::log(s) + small +
         stirling_correction(big) - stirling_correction(s);
}

// log Gamma(1 + a) for |a| <= kSmall: -gamma a + sum_k (-1)^k zeta(k) a^k / k, since 1 + a
// would round a away.
KMIXUP_HD double lgamma1p_small(double a) {
  static constexpr double kCoeff[8] = {
      0.82246703342411321824, -0.40068563438653142847, 0.27058080842778454788,
      -0.20738555102867398527, 0.16955717699740818995, -0.14404989676884611812,
      0.12550966952474304242, -0.11133426586956469049,
  };
  constexpr double kEulerGamma = 0.57721566490153286061;
  double acc = kCoeff[7];
  for (int k = 6; k >= 0; --k) acc = kCoeff[k] + a * acc;
  return a * (a * acc - kEulerGamma);
}

// lgamma(b + a) - lgamma(b) for 0 < a <= kSmall, to a small relative error: shifted up to
// b >= 10 (lgamma(b + a) - lgamma(b) = lgamma(b + 1 + a) - lgamma(b + 1) - log(1 + a / b)),
// then Stirling's series differenced term by term, c_k / z^(2k - 1) at b + a less at b as
// c_k / b^(2k - 1) expm1(-(2k - 1) log(1 + a / b)); 7 terms leave < 1e-16 of it at b = 10.
KMIXUP_HD double lgamma_shift(double b, double a) {
  double sum = 0.0;
  for (int k = 0; k < 10 && b < 10.0; ++k, b += 1.0) sum -= ::log1p(a / b);
  static constexpr double kStirling[7] = {
      1.0 / 12, -1.0 / 360, 1.0 / 1260, -1.0 / 1680, 1.0 / 1188, -691.0 / 360360, 1.0 / 156,
  };
  const double l = ::log1p(a / b);
  double corr = 0.0, power = 1.0 / b;
  for (int k = 0; k < 7; ++k, power /= b * b) {
    corr += kStirling[k] * power * ::expm1(-(2 * k + 1) * l);
  }
  return sum + (b - 0.5) * l + a * ::log(b + a) - a + corr;
}

// 1 - I_x(a, b) for 0 < a < kSmall and x left of (a + 1) / (a + b + 2): the power series
// I = x^a / (a B(a, b)) (1 + a S), S = sum_{n >= 1} (1 - b)_n x^n / (n! (a + n)), gives
// 1 - I = -expm1(a log x - log(a B(a, b)) + log1p(a S)), every term O(a).
KMIXUP_HD double betainc_small_complement(double a, double b, double x, double log_x) {
  double power = 1.0, sum = 0.0;
  for (int n = 1; n <= kGammaTerms; ++n) {
    power *= (n - b) * x / n;
    const double term = power / (a + n);
    sum += term;
    if (::fabs(term) <= kEps * ::fabs(sum)) break;
  }
  const double log_a_beta = lgamma1p_small(a) - lgamma_shift(b, a);
  return -::expm1(a * log_x - log_a_beta + ::log1p(a * sum));
}

// Numerical Recipes' betacf (modified Lentz), for min(a, b) < kLarge, on the side of
// (a + 1) / (a + b + 2) where it converges fast. log_x and log_y are log x and log(1 - x).
KMIXUP_HD Tails betainc_cf(double a, double b, double x, double log_x, double log_y) {
  const bool swap = x > (a + 1.0) / (a + b + 2.0);
  if (swap) {
    const double t = a;
    a = b;
    b = t;
    x = 1.0 - x;
    const double lt = log_x;
    log_x = log_y;
    log_y = lt;
  }
  const double qab = a + b, qap = a + 1.0, qam = a - 1.0;
  double c = 1.0;
  double d = 1.0 / guard(1.0 - qab * x / qap);
  double h = d;
  for (int m = 1; m <= kCfTerms; ++m) {
    const double m2 = 2.0 * m;
    double num = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1.0 / guard(1.0 + num * d);
    c = guard(1.0 + num / c);
    const double even = d * c;
    h *= even;
    num = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1.0 / guard(1.0 + num * d);
    c = guard(1.0 + num / c);
    const double odd = d * c;
    h *= odd;
    if (::fabs(even - 1.0) <= kEps && ::fabs(odd - 1.0) <= kEps) break;
  }
  const double value = ::exp(a * log_x + b * log_y - log_beta(a, b) - ::log(a)) * h;
  const double rest = a < kSmall ? betainc_small_complement(a, b, x, log_x) : 1.0 - value;
  return swap ? Tails{rest, value} : Tails{value, rest};
}

// Regularised incomplete gamma (P(a, z), Q(a, z)) for 0 < a < kLarge, given
// front = z^a e^-z / Gamma(a): the series below z = a + 1, else Legendre's continued fraction,
// each converging within kGammaTerms.
KMIXUP_HD Tails gamma_p_q(double a, double z, double front) {
  if (z < a + 1.0) {
    double term = 1.0 / a, total = term;
    for (int n = 1; n <= kGammaTerms; ++n) {
      term = term * z / (a + n);
      total += term;
      if (::fabs(term) <= kEps * ::fabs(total)) break;
    }
    const double p = front * total;
    if (a >= kSmall) return {p, 1.0 - p};
    // P = z^a / Gamma(1 + a) (1 + a T), T = sum_{n >= 1} (-z)^n / (n! (a + n)), so that
    // Q = -expm1(a log z - log Gamma(1 + a) + log1p(a T)), every term O(a).
    double power = 1.0, sum = 0.0;
    for (int n = 1; n <= kGammaTerms; ++n) {
      power *= -z / n;
      sum += power / (a + n);
      if (::fabs(power) <= kEps * ::fabs(sum)) break;
    }
    return {p, -::expm1(a * ::log(z) - lgamma1p_small(a) + ::log1p(a * sum))};
  }
  double bb = z + 1.0 - a;
  double c = 1.0 / kTiny;
  double d = 1.0 / guard(bb);
  double h = d;
  for (int n = 1; n <= kGammaTerms; ++n) {
    const double an = -n * (n - a);
    bb += 2.0;
    d = 1.0 / guard(an * d + bb);
    c = guard(bb + an / c);
    const double delta = d * c;
    h *= delta;
    if (::fabs(delta - 1.0) <= kEps) break;
  }
  const double q = front * h;
  return {1.0 - q, q};
}

// The Beta(a, b) density for min(a, b) >= kLarge, a narrow and nearly Gaussian bump: its log
// is written relative to the mean p and the normalising constant with Stirling corrections,
// so that nothing cancels even at a = 1e30.
struct Bump {
  double a, b, s, p, q, log_norm;

  KMIXUP_HD Bump(double a_, double b_) : a(a_), b(b_), s(a_ + b_), p(a_ / s), q(b_ / s) {
    log_norm = 0.5 * (::log(s * p * q) - kLog2Pi) -
               (stirling_correction(a) + stirling_correction(b) - stirling_correction(s));
  }

  // x - p, measured from the nearer end, where 1 - x is exact: keeps the error ~ min(p, q) ulp.
  KMIXUP_HD double delta_at(double x) const { return x <= 0.5 ? x - p : q - (1.0 - x); }

  // log of the density at t = p + delta, given also t and 1 - t, each formed without
  // cancellation (near 0 and 1, p + delta and q - delta have lost their relative precision).
  KMIXUP_HD double log_density(double delta, double t, double t1) const {
    t = t < kTiny ? kTiny : t;
    t1 = t1 < kTiny ? kTiny : t1;
    return log_norm + a * log1pmx(delta / p, t / p) + b * log1pmx(-delta / q, t1 / q) -
           ::log(t) - ::log(t1);
  }

  // d log_density / d delta, written without the cancellation of a / t - b / (1 - t).
  KMIXUP_HD double dlog_density(double delta) const {
    return ((p - q) - (s - 2.0) * delta) / ((p + delta) * (q - delta));
  }
};

// The 16 positive nodes of numpy.polynomial.legendre.leggauss(32) and their weights; the
// rule is symmetric about 0. Over at most kWindowSd sd or kDecay e-folds of a log-concave
// density it matches the 64-node rule to double precision. On a GPU the tables live in
// __constant__ memory, whose cache broadcasts the entry every thread of a warp reads at
// once (a function-local table would sit in global memory).
#define KMIXUP_GAUSS_NODES                                                                  \
  0.048307665687738324, 0.1444719615827965, 0.23928736225213706, 0.33186860228212767,      \
      0.42135127613063533, 0.5068999089322294, 0.5877157572407623, 0.6630442669302152,     \
      0.7321821187402897, 0.7944837959679424, 0.84936761373257, 0.8963211557660521,        \
      0.9349060759377397, 0.9647622555875064, 0.9856115115452684, 0.9972638618494816
#define KMIXUP_GAUSS_WEIGHTS                                                                \
  0.09654008851472766, 0.09563872007927471, 0.09384439908080451, 0.09117387869576378,       \
      0.08765209300440378, 0.08331192422694671, 0.07819389578707023, 0.07234579410884834,   \
      0.06582222277636168, 0.058684093478535565, 0.05099805926237609, 0.042835898022226836, \
      0.034273862913021765, 0.025392065309262024, 0.016274394730905743, 0.007018610009470506
#if defined(__CUDACC__)
static __constant__ double kGaussNodeDevice[16] = {KMIXUP_GAUSS_NODES};
static __constant__ double kGaussWeightDevice[16] = {KMIXUP_GAUSS_WEIGHTS};
#endif

// Gauss-Legendre over a window of the bump, for min(a, b) >= kLarge (the continued fraction
// would need O(sqrt(a + b)) terms).
KMIXUP_HD Tails betainc_quad(double a, double b, double x) {
#if defined(__CUDA_ARCH__)
  const double* kNode = kGaussNodeDevice;
  const double* kWeight = kGaussWeightDevice;
#else
  static constexpr double kNode[16] = {KMIXUP_GAUSS_NODES};
  static constexpr double kWeight[16] = {KMIXUP_GAUSS_WEIGHTS};
#endif
  const Bump bump(a, b);
  const double sd = ::sqrt(bump.p * bump.q / bump.s);
  const double d_x = bump.delta_at(x), x1 = 1.0 - x;
  // Integrate the tail beyond x, outwards from x. The density is log-concave, so beyond
  // kDecay / |slope of its log at x| it has fallen by exp(-kDecay) at least: the rest of the
  // tail is negligible relative to its start, however far out x lies. Near the mean that
  // length is long and kWindowSd sd bounds it instead; the end of the support bounds both.
  const bool left = d_x <= 0.0;
  const double slope = ::fabs(bump.dlog_density(d_x));
  double len = ::fmin(left ? x : x1, kWindowSd * sd);
  if (slope * len > kDecay) len = kDecay / slope;
  // The nodes lie at distances e from x into the tail.
  const double sign = left ? -1.0 : 1.0, half = 0.5 * len;
  double mass = 0.0;
  for (int i = 0; i < 16; ++i) {
    const double near = sign * (half - half * kNode[i]), far = sign * (half + half * kNode[i]);
    mass += kWeight[i] * (::exp(bump.log_density(d_x + near, x + near, x1 - near)) +
                          ::exp(bump.log_density(d_x + far, x + far, x1 - far)));
  }
  mass *= half;
  return left ? Tails{mass, 1.0 - mass} : Tails{1.0 - mass, mass};
}

// (I_x(a, b), 1 - I_x(a, b)) for a < kLarge <= kHuge <= b, from the Gamma limit. In
// z = -t log(1 - x), t = b + (a - 1) / 2, the Beta(a, b) density is the Gamma(a) one times
// sinhc(z / 2t)^(a - 1) ~ 1 + k z^2, k = (a - 1) / (24 t^2), over its normaliser 1 + k a (a + 1)
// (DiDonato & Morris' BGRAT leading term is the Gamma density alone, off by ~ k z^2 relative
// far out in the upper tail). As z^2 g_a(z) = a (a + 1) g_{a + 2}(z) and
// P(a + 2, z) = P(a, z) - front (a + 1 + z) / (a (a + 1)), the correction is a multiple of
// front, and what is left is O(k^2 z^4).
KMIXUP_HD Tails betainc_gamma(double a, double b, double log_y) {
  const double t = b + 0.5 * (a - 1.0), z = -t * log_y;
  const double front = ::exp(a * ::log(z) - z - ::lgamma(a));
  const Tails pq = gamma_p_q(a, z, front);
  const double k = (a - 1.0) / (24.0 * t * t);
  const double shift = k * front * (a + 1.0 + z) / (1.0 + k * a * (a + 1.0));
  return {pq.lower - shift, pq.upper + shift};
}

// (I_x(a, b), 1 - I_x(a, b)) for 0 < a, b < inf and 0 < x < 1.
KMIXUP_HD Tails betainc_interior(double a, double b, double x) {
  if (::fmin(a, b) >= kLarge) return clamp_unit(betainc_quad(a, b, x));
  const double log_x = ::log(x), log_y = ::log1p(-x);
  if (::fmax(a, b) < kHuge) return clamp_unit(betainc_cf(a, b, x, log_x, log_y));
  if (b >= a) return clamp_unit(betainc_gamma(a, b, log_y));
  const Tails mirrored = betainc_gamma(b, a, log_x);
  return clamp_unit({mirrored.upper, mirrored.lower});
}

// log of the Beta(a, b) density at x, for 0 < a, b < inf and 0 < x < 1.
KMIXUP_HD double log_pdf(double a, double b, double x) {
  if (::fmin(a, b) >= kLarge) {
    const Bump bump(a, b);
    return bump.log_density(bump.delta_at(x), x, 1.0 - x);
  }
  return (a - 1.0) * ::log(x) + (b - 1.0) * ::log1p(-x) - log_beta(a, b);
}

template <typename T>
KMIXUP_HD T polevl(T x, const double* coeffs, int degree) {
  T result = T(coeffs[0]);
  for (int i = 1; i <= degree; ++i) result = result * x + T(coeffs[i]);
  return result;
}

// The standard normal quantile for 0 < y < 1, as Cephes' ndtri (which torch.special.ndtri
// also is), so that both paths start Newton from the same point; in T (float or double).
template <typename T>
KMIXUP_HD T ndtri(T y) {
  static constexpr double kP0[5] = {
      -5.99633501014107895267E1, 9.80010754185999661536E1,  -5.66762857469070293439E1,
      1.39312609387279679503E1,  -1.23916583867381258016E0,
  };
  static constexpr double kQ0[9] = {
      1.00000000000000000000E0,  1.95448858338141759834E0,  4.67627912898881538453E0,
      8.63602421390890590575E1,  -2.25462687854119370527E2, 2.00260212380060660359E2,
      -8.20372256168333339912E1, 1.59056225126211695515E1,  -1.18331621121330003142E0,
  };
  // For sqrt(-2 log y) in [2, 8), i.e. y down to exp(-32).
  static constexpr double kP1[9] = {
      4.05544892305962419923E0,   3.15251094599893866154E1,  5.71628192246421288162E1,
      4.40805073893200834700E1,   1.46849561928858024014E1,  2.18663306850790267539E0,
      -1.40256079171354495875E-1, -3.50424626827848203418E-2, -8.57456785154685413611E-4,
  };
  static constexpr double kQ1[9] = {
      1.00000000000000000000E0,   1.57799883256466749731E1,  4.53907635128879210584E1,
      4.13172038254672030440E1,   1.50425385692907503408E1,  2.50464946208309415979E0,
      -1.42182922854787788574E-1, -3.80806407691578277194E-2, -9.33259480895457427372E-4,
  };
  // For sqrt(-2 log y) in [8, 64).
  static constexpr double kP2[9] = {
      3.23774891776946035970E0,  6.91522889068984211695E0,  3.93881025292474443415E0,
      1.33303460815807542389E0,  2.01485389549179081538E-1, 1.23716634817820021358E-2,
      3.01581553508235416007E-4, 2.65806974686737550832E-6, 6.23974539184983293730E-9,
  };
  static constexpr double kQ2[9] = {
      1.00000000000000000000E0,  6.02427039364742014255E0,  3.67983563856160859403E0,
      1.37702099489081330271E0,  2.16236993594496635890E-1, 1.34204006088543189037E-2,
      3.28014464682127739104E-4, 2.89247864745380683936E-6, 6.79019408009981274425E-9,
  };
  constexpr double kExpMinus2 = 0.13533528323661269189;
  constexpr double kSqrt2Pi = 2.50662827463100050242;
  const bool upper = y > T(1.0 - kExpMinus2);
  if (upper) y = T(1) - y;
  if (y > T(kExpMinus2)) {
    y -= T(0.5);
    const T y2 = y * y;
    return T(kSqrt2Pi) * (y + y * (y2 * polevl(y2, kP0, 4) / polevl(y2, kQ0, 8)));
  }
  const T t = ::sqrt(T(-2) * ::log(y));
  const T z = T(1) / t;
  const T tail = t < T(8) ? z * polevl(z, kP1, 8) / polevl(z, kQ1, 8)
                          : z * polevl(z, kP2, 8) / polevl(z, kQ2, 8);
  const T x = t - ::log(t) / t - tail;
  return upper ? x : -x;
}

// The continued fraction of I_x(a, b) as 1 / (1 - d1 / (1 + d2 / ...)): its second term
// relative to its first, d1 d2 / (1 - d1)^2, small where the first alone approximates I well;
// inf beyond the side where the fraction converges.
KMIXUP_HD double cf_next_term(double a, double b, double x) {
  const double d1 = (a + b) * x / (a + 1.0);
  const double d2 = ::fabs(b - 1.0) * x / ((a + 1.0) * (a + 2.0));
  return d1 < 1.0 ? d1 * d2 / ((1.0 - d1) * (1.0 - d1)) : INFINITY;
}

// x in (0, 1/2] with (I_x(a, b), 1 - I_x(a, b)) = target, for 0 < a, b < inf and
// 0 < target.lower <= I_{1/2}(a, b). Of the pair the smaller is exact and the other is 1
// minus it: Newton works on the smaller, which a tail of y ~ 1e-300 needs.
KMIXUP_HD double betaincinv_lower(double a, double b, Tails target) {
  const bool upper_tail = target.upper < target.lower;
  const double log_target = ::log(upper_tail ? target.upper : target.lower);
  // The starting guess. Far out in a tail, the continued fraction on its converging side
  // (left of c = (a + 1) / (a + b + 2) for I, right of it for 1 - I) is close to its first term:
  //   I ~ x^a (1 - x)^b (a + 1) / (a B(a, b) (a + 1 - (a + b) x)),
  //   1 - I ~ x^a (1 - x)^b (b + 1) / (b B(a, b) (1 - a + (a + b) x)).
  // Both are solved for x, against target.lower and target.upper (the larger of which is
  // rounded, which a guess can afford), by iterating on the dominant factor x^a or (1 - x)^b
  // from c: the rest varies slowly far out in the tail. Of the two, the one whose iteration
  // has settled (its last step changed the tail by less than a factor e) and whose fraction's
  // next term is the smaller relative to the first is taken.
  const double log_beta_ab = log_beta(a, b);
  const double c = (a + 1.0) / (a + b + 2.0), x_max = c < 0.5 ? c : 0.5;
  const double log_lower = ::log(target.lower), log_upper = ::log(target.upper);
  double x_lower = x_max, x_upper = x_max, moved_lower = INFINITY, moved_upper = INFINITY;
  for (int i = 0; i < kGuessSteps; ++i) {
    double u = (log_lower - ::log1p(a) + ::log(a) + log_beta_ab - b * ::log1p(-x_lower) +
                ::log(a + 1.0 - (a + b) * x_lower)) / a;
    u = ::fmax(::fmin(u, ::log(x_max)), kLogTiny);
    moved_lower = a * ::fabs(u - ::log(x_lower));
    x_lower = ::exp(u);
    double v = (log_upper - ::log1p(b) + ::log(b) + log_beta_ab - a * ::log(x_upper) +
                ::log(1.0 - a + (a + b) * x_upper)) / b;
    v = ::fmax(::fmin(v, ::log1p(-c)), -kLog2);  // log(1 - x) for x in [c, 1/2]
    moved_upper = b * ::fabs(v - ::log1p(-x_upper));
    x_upper = -::expm1(v);
  }
  const double err_lower = moved_lower <= 1.0 ? cf_next_term(a, b, x_lower) : INFINITY;
  const double err_upper = moved_upper <= 1.0 ? cf_next_term(b, a, 1.0 - x_upper) : INFINITY;
  double u = ::log(err_upper < err_lower ? x_upper : x_lower);  // the guess for log x
  if (a > 1.0 && b > 1.0 && !(::fmin(err_lower, err_upper) <= kGuessTol)) {
    // Nearer the bulk, Abramowitz & Stegun 26.5.22, good when both shapes exceed 1.
    const double z = upper_tail ? ndtri(target.upper) : -ndtri(target.lower);
    const double lam = (z * z - 3.0) / 6.0;
    const double ia = 1.0 / (2.0 * a - 1.0), ib = 1.0 / (2.0 * b - 1.0);
    const double h = 2.0 / (ia + ib);
    const double root = h + lam;
    double w = z * ::sqrt(root < 0.0 ? 0.0 : root) / h;
    w -= (ib - ia) * (lam + 5.0 / 6.0 - 2.0 / (3.0 * h));
    u = ::log(a) - ::log(a + b * ::exp(2.0 * w));
  }
  // Newton on the log of the target tail against log x, safeguarded by bisection of the
  // bracket it keeps, in log(-log x): the bracket starts out spanning orders of magnitude.
  double lo = kLogTiny, hi = -kLog2;
  u = ::isnan(u) ? hi : (u < lo ? lo : (u > hi ? hi : u));
  for (int step = 0; step < kNewtonSteps; ++step) {
    const double x = ::exp(u);
    const Tails tails = betainc_interior(a, b, x);
    const double mass = upper_tail ? tails.upper : tails.lower;
    const double log_mass = ::log(mass);  // -inf where it underflows: then bisect
    const double miss = upper_tail ? log_target - log_mass : log_mass - log_target;  // rises with u
    // A root beyond the bracket (x below DBL_MIN, or y within rounding of I_{1/2}) is its end.
    if ((miss > 0.0 && u <= kLogTiny) || (miss < 0.0 && u >= -kLog2)) break;
    if (miss > 0.0) {
      hi = u;
    } else {
      lo = u;
    }
    const double slope = ::exp(u + log_pdf(a, b, x) - log_mass);  // |d log(tail) / d log x|
    const double next = u - miss / slope;
    if (!(next >= lo && next <= hi)) {
      u = -::sqrt(lo * hi);
      continue;
    }
    const bool done =
        ::fabs(next - u) <= kNewtonTol * ::fabs(next) || ::fabs(miss) <= kResidualTol;
    u = next;
    if (done) break;
  }
  return ::exp(u);
}

// The entries outside the interior 0 < a, b < inf, 0 < t < 1: t at 0 or 1, and the limiting
// point masses of shape 0 or inf (at 0 when a == 0 or b == inf, at 1 when b == 0 or
// a == inf, half at each end when a == b == 0, at 1/2 when a == b == inf); NaN where
// undefined. t is x for the CDF, y for the quantile (inverse). False for the interior.
KMIXUP_HD bool outside_interior(double a, double b, double t, bool inverse, double& value) {
  if (a < 0.0 || b < 0.0 || !(t >= 0.0 && t <= 1.0) || ::isnan(a) || ::isnan(b)) {
    value = ::nan("");
  } else if (t == 0.0 || t == 1.0) {
    value = t;
  } else if (a > 0.0 && b > 0.0 && !::isinf(a) && !::isinf(b)) {
    return false;
  } else {
    const double step = t < 0.5 ? 0.0 : (t > 0.5 ? 1.0 : 0.5);
    if (a == 0.0 && b == 0.0) {
      value = inverse ? step : 0.5;
    } else if (::isinf(a) && ::isinf(b)) {
      value = inverse ? 0.5 : step;
    } else if (a == 0.0 || ::isinf(b)) {
      value = inverse ? 0.0 : 1.0;
    } else {
      value = inverse ? 1.0 : 0.0;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// The symmetric case a = b = s, all that SK Mixup's coefficient needs, in the evaluation type
// T: float for float32/float16/bfloat16 data (the coefficient is used in float32 at best),
// double for float64 data. Absolute accuracy is what a coefficient needs: the CDF and the
// quantile are accurate to ~1e-13 (double) and ~2e-7 (float) absolute (tested: 1e-11 and
// 2e-6), not relatively in far tails as betainc/betaincinv above are. Two regimes, for
// 0 < x <= 1/2 (the other half by symmetry, 1 - x being exact there):
//
// * s >= Sym<T>::kGammaFrom: by the duplication formula, with u = 4x(1 - x) and
//   t = (1 - 2x)^2 = 1 - u, I_x(s, s) = (1 - I_t(1/2, s)) / 2. In z = -(s - 1/4) log u the
//   Beta(1/2, s) density is exactly the Gamma(1/2) one times sinhc(z / (2s - 1/2))^(-1/2)
//   (see betainc_gamma); expanding that factor in even powers, d_j z^(2j), and integrating
//   term by term gives Q(1/2 + 2j, z) = erfc(sqrt z) + a polynomial in z times
//   sqrt(z / pi) e^-z. Sym<T>::kTerms corrections leave < 1e-13 (double, s >= 8) and < 1e-7
//   (float, s >= 3) absolute: one log, one erfc and one exp, whatever s (1e30 included).
// * s below it: the power series with positive terms,
//   I_x(a, b) = x^a (1 - x)^b / (a B(a, b)) sum_n (a + b)_n / (a + 1)_n x^n,
//   in x for x <= 1/4, and for I_t(1/2, s) in t for x > 1/4, so that the ratio of terms
//   stays near 1/4; both share the front x^s (1 - x)^s / (s B(s, s)). log(s B(s, s))
//   (sym_log_sb) has no cancellation, down to s = 1e-30 in float.
//
// The quantile runs Newton on log I against log x from a close start (the power-law tail
// x^s / (s B(s, s)) = y deep in the tail; else the erfc term of the Gamma expansion for
// large s, A&S 26.5.22 for s >= 1), with log B computed once per pair; it converges in 2-4
// steps. Its CDF is the x series below x = 1/4 whatever s, since a quantile needs the tail
// to relative accuracy (the Gamma expansion converges only for z < 2 pi (s - 1/4)).
//
// lam arrives in double (SymPoint): its distance to the nearer end and to 1/2 reach T with
// their relative precision. tau is formed in double; shapes beyond T's range take their
// limits (float: s > 3.4e38 is inf, s < 1.4e-45 is 0), which differ from the function there
// only for a float64 lam within ~1 / sqrt(s) of 1/2.
//
// csrc/special.h only: kmixup/special.py (the pure path) evaluates the coefficient in
// float64 with the general betainc/betaincinv, which agree with these to the accuracy
// above; tests/test_coefficients.py checks both against scipy and mpmath.

template <typename T>
struct Sym;

template <>
struct Sym<double> {
  static constexpr double kGammaFrom = 8.0;
  static constexpr int kTerms = 4;
  static constexpr double kEps = DBL_EPSILON;
  // Newton stops after a step this small (relative): what remains is its square.
  static constexpr double kStepTol = 1e-8;
  static constexpr double kAbsTol = 1e-13;
  // The CDF's series stop once their rest is below this (absolute): a coefficient needs no
  // more (the quantile's, which needs its tail relatively, stop at kEps relative).
  static constexpr double kCdfTol = 1e-15;
  // log(s B(s, s)) from 1/32 to kGammaFrom: shifted up to the asymptotic series. Float keeps
  // lgamma there: the shift leaves ~ulp(2) absolute, which the quantile of a small s
  // magnifies by 1 / s.
  static constexpr bool kLogSbByShift = true;
  static constexpr double kMaxZ = 750.0;  // e^-z underflows beyond
  static constexpr double kLogMin = kLogTiny;
  static constexpr double kMinNormal = DBL_MIN;
  static constexpr double kMinTarget = 0.0;
};

template <>
struct Sym<float> {
  static constexpr float kGammaFrom = 3.0f;
  static constexpr int kTerms = 3;
  static constexpr float kEps = FLT_EPSILON;
  static constexpr float kStepTol = 3e-4f;
  static constexpr float kAbsTol = 1e-7f;
  static constexpr float kCdfTol = 1e-8f;
  static constexpr bool kLogSbByShift = false;
  static constexpr float kMaxZ = 110.0f;
  static constexpr float kLogMin = -103.0f;  // near log of float's smallest subnormal
  static constexpr float kMinNormal = FLT_MIN;
  static constexpr float kMinTarget = 1e-30f;
};

constexpr int kSymSeriesTerms = 80;
constexpr int kSymNewtonSteps = 12;

constexpr double kInvSqrtPi = 0.56418958354775628695;

// I_x(s, s) for 0 < x <= 1/2, with what Newton needs: the derivative with respect to its
// variable (r = sqrt z in the Gamma regime, log x in the series regime).
template <typename T>
struct SymCdf {
  T value, slope;
};

// The Gamma regime at r = sqrt z, big = s - 1/4.
template <typename T>
KMIXUP_HD SymCdf<T> sym_cdf_gamma(T r, T big) {
  // (1/2)_n and 1 / (1/2)_n, n = 0..8; the even Taylor coefficients of sinhc(w)^(-1/2).
  static constexpr double kHalfPoch[9] = {
      1.0, 0.5, 0.75, 1.875, 6.5625, 29.53125, 162.421875, 1055.7421875, 7918.06640625};
  static constexpr double kInvHalfPoch[9] = {
      1.0, 2.0, 1.3333333333333333333, 0.53333333333333333333, 0.15238095238095238095,
      0.033862433862433862434, 0.0061568061568061568062, 0.00094720094720094720095,
      0.00012629345962679296013};
  static constexpr double kSinhcPow[5] = {1.0, -0.083333333333333333333, 0.00625,
                                          -0.00050429894179894179894,
                                          0.000043437224426807760141};
  const T z = r * r;
  if (z > Sym<T>::kMaxZ) return {T(0), T(0)};
  const T e = ::exp(-z) * T(kInvSqrtPi);
  const T w2 = T(1) / (T(4) * big * big);  // w^2 = w2 z^2 for w = z / (2 big)
  T power = 1, partial = 0, num = 0, norm = 1, density = 1, scale = 1;
  for (int j = 1; j <= Sym<T>::kTerms; ++j) {
    partial += power * T(kInvHalfPoch[2 * j - 1]);
    power *= z;
    partial += power * T(kInvHalfPoch[2 * j]);
    power *= z;
    scale *= w2;
    const T d = T(kSinhcPow[j]) * scale;
    const T c = d * T(kHalfPoch[2 * j]);
    norm += c;
    num += c * partial;
    density += d * power;
  }
  // Far out for small s in float the truncated corrections may overshoot erfc's ~1e-30.
  const T value = T(0.5) * (::erfc(r) + r * e * num / norm);
  return {value < T(0) ? T(0) : value, -e * density / norm};
}

// A point x in (0, 1/2]: the distance of lam (or y) to its nearer end, with d = 1 - 2x and
// log x. Formed in double from a float64 lam before rounding to T, so that T keeps the
// relative precision of x near 0 or 1 and of d near 1/2, where the coefficient of a small or
// large shape depends on it; log x in double too where x is below T's normal range.
template <typename T>
struct SymPoint {
  T x, d, log_x;
};

template <typename T>
KMIXUP_HD SymPoint<T> sym_point(double near) {
  const T x = T(near);
  return {x, T(1.0 - 2.0 * near), x >= Sym<T>::kMinNormal ? T(::log(x)) : T(::log(near))};
}

// The series regime at x in (0, 1/2] with d = 1 - 2x, given log(x (1 - x)) and
// log_sb = log(s B(s, s)). Both series have the front F = x^s (1 - x)^s / (s B(s, s)):
// I = F sum_n (2s)_n / (s + 1)_n x^n, and by the duplication formula
// I = 1/2 - 2 s d F sum_n (s + 1/2)_n / (3/2)_n t^n with t = d^2 (B(1/2, s) / 2 =
// s B(s, s) 4^(1 - s) / s). kQuantile: the sums run to relative precision, which the
// quantile's tail needs; the CDF's stop once the rest is below Sym<T>::kCdfTol absolute.
// The slope is d I / d log x = x pdf(x) = s F / (1 - x).
template <typename T, bool kQuantile>
KMIXUP_HD SymCdf<T> sym_cdf_series(T s, T x, T d, T log_xy, T log_sb) {
  const bool near_end = x <= T(0.25);
  // Term n + 1 is term n times (a + n) / (b + n) w.
  const T a = near_end ? T(2) * s - T(1) : s - T(0.5), b = near_end ? s : T(0.5);
  const T w = near_end ? x : d * d;
  const T front = ::exp(s * log_xy - log_sb);
  const T scale = near_end ? front : T(2) * s * d * front;
  // The terms stop below eps (the sum is 1 + its terms), and for the CDF where the rest
  // times scale is below kCdfTol (the rest is then below the last term: the ratio of terms
  // falls towards w <= 1/4, below 1/2 long before).
  const T tol = kQuantile ? T(0) : Sym<T>::kCdfTol;
  // Two terms per step, with one division.
  T term = 1, sum = 1;
  for (T n = 1; term > Sym<T>::kEps && term * scale > tol && n < T(kSymSeriesTerms);
       n += T(2)) {
    const T next = term * (w * (a + n) / ((b + n) * (b + n + T(1))));  // term n + 1 / (b + n + 1)
    sum += next * ((b + n + T(1)) + w * (a + n + T(1)));
    term = next * (w * (a + n + T(1)));
  }
  return {near_end ? scale * sum : T(0.5) - scale * sum, s * front / (T(1) - x)};
}

// log(s B(s, s)) for s >= 8 (or >= 3 in float): B(s, s) = 2^(1 - 2s) sqrt(pi) Gamma(s) /
// Gamma(s + 1/2) and the asymptotic series of log(Gamma(s + 1/2) / (sqrt(s) Gamma(s))),
// c_k = -B_2k (2 - 2^(1 - 2k)) / (2k (2k - 1)) over s^(2k - 1): < 2e-15 at s = 8 (float: the
// first five terms leave < 2e-8 at s = 3). scaled is pi s, or pi s times the square of a
// factor that the shift below folds into the same log.
template <typename T>
KMIXUP_HD T sym_log_sb_asymptotic(T s, T scaled) {
  const T r = T(1) / s, r2 = r * r;
  const T c =
      r * (T(-1.0 / 8) +
           r2 * (T(1.0 / 192) +
                 r2 * (T(-1.0 / 640) +
                       r2 * (T(17.0 / 14336) +
                             r2 * (T(-31.0 / 18432) +
                                   r2 * (T(691.0 / 180224) + r2 * T(-5461.0 / 425984)))))));
  return T(0.5) * ::log(scaled) + (T(1) - T(2) * s) * T(kLog2) - c;
}

// log(s B(s, s)), without cancellation down to s = 1e-30 in float: at and above
// Sym<T>::kGammaFrom the asymptotic series; below 1/32 the Taylor series; in between, in
// double, m = s + n >= kGammaFrom reached by (m + 1) B(m + 1, m + 1) = m B(m, m) (m + 1) /
// (2 (2m + 1)), one log for all n steps (~1e-14 absolute; relative to x^s, ~5e-13 at
// s = 1/32), in float from lgamma (Sym<float>::kLogSbByShift).
template <typename T>
KMIXUP_HD T sym_log_sb(T s) {
  if (s >= Sym<T>::kGammaFrom) return sym_log_sb_asymptotic(s, T(kPi) * s);
  if (s < T(1.0 / 32)) {
    // log(s B(s, s)) - log 2 = 2 lgamma(1 + s) - lgamma(1 + 2s) = sum_{k >= 2} c_k s^k,
    // c_k = (-1)^k zeta(k) (2 - 2^k) / k (c_1 = 0): below 1/32, 13 terms reach double
    // precision relative to its size ~ -zeta(2) s^2, as the quantile of a small s needs
    // (x^s carries an error of log(s B) to x as its relative error over s).
    static constexpr double kTaylor[13] = {
        -1.64493406684822643647, 2.40411380631918857080,  -3.78813131798898367031,
        6.22156653086021955799,  -10.5125449738393077771, 18.1502869928746108831,
        -31.8794560592847327753, 56.7804755934779921503,  -102.301645578063008321,
        186.091919080366220408,  -341.250623195770262478, 630.077309408974448162,
        -1170.21452621060940732,
    };
    // The even and the odd powers as two shorter chains, in s^2.
    const T s2 = s * s;
    T even = T(kTaylor[12]), odd = T(kTaylor[11]);
    for (int k = 10; k >= 0; k -= 2) even = T(kTaylor[k]) + s2 * even;
    for (int k = 9; k >= 1; k -= 2) odd = T(kTaylor[k]) + s2 * odd;
    return T(kLog2) + s2 * (even + s * odd);
  }
  if (!Sym<T>::kLogSbByShift) {
    return T(kLog2) + T(2) * ::lgamma(T(1) + s) - ::lgamma(T(1) + T(2) * s);
  }
  // A fixed number of steps, kGammaFrom, so that the loop unrolls without branches; as
  // two interleaved products each of num and den, for a shorter chain.
  constexpr int kSteps = int(Sym<T>::kGammaFrom);
  T num[2] = {1, 1}, den[2] = {1, 1};
  for (int k = 0; k < kSteps; ++k) {
    num[k % 2] *= s + T(k + 1);
    den[k % 2] *= T(2) * s + T(2 * k + 1);
  }
  const T m = s + T(kSteps), ratio = (den[0] * den[1]) / (num[0] * num[1]);
  return sym_log_sb_asymptotic(m, T(kPi) * m * ratio * ratio) + T(kSteps) * T(kLog2);
}

// I_x(s, s) for 0 < s < inf and x = near in (0, 1/2] (see SymPoint): log u = log(4x(1 - x))
// in the Gamma regime, in the form that does not cancel; log(x (1 - x)) for the series, from
// near in double where x is below T's normal range (1 - x is 1 there).
template <typename T>
KMIXUP_HD T sym_cdf_lower(T s, double near) {
  const T x = T(near), d = T(1.0 - 2.0 * near);
  if (s >= Sym<T>::kGammaFrom) {
    const T big = s - T(0.25);
    // z >= big d^2 (-log(1 - t) >= t): past kMaxZ, I is 0 without a log.
    if (big * (d * d) > Sym<T>::kMaxZ) return T(0);
    const T log_u = x < T(0.25) ? ::log(T(4) * x * (T(1) - x)) : ::log1p(-d * d);
    return sym_cdf_gamma(::sqrt(-big * log_u), big).value;
  }
  const T log_xy = x >= Sym<T>::kMinNormal ? ::log(x * (T(1) - x)) : T(::log(near));
  return sym_cdf_series<T, false>(s, x, d, log_xy, sym_log_sb(s)).value;
}

// I_x(s, s) and d I / d log x for 0 < x <= 1/2, relatively accurate in the lower tail, as
// the quantile needs (its error there is the CDF's relative error over the slope): the
// x series below 1/4 whatever s (the Gamma expansion converges only for z < 2 pi (s - 1/4)),
// above it as sym_cdf_lower.
template <typename T>
KMIXUP_HD SymCdf<T> sym_cdf_log_x(T s, const SymPoint<T>& p, T log_sb) {
  if (p.x <= T(0.25) || s < Sym<T>::kGammaFrom) {
    return sym_cdf_series<T, true>(s, p.x, p.d, p.log_x + ::log1p(-p.x), log_sb);
  }
  const T x = p.x, big = s - T(0.25), d = p.d, t = d * d;
  const T ell = t > T(0) ? -::log1p(-t) / t : T(1);  // z = big t ell
  const SymCdf<T> f = sym_cdf_gamma(d * ::sqrt(big * ell), big);
  // dr / dx = -2 big (1 - 2x) / (u r) = -2 sqrt(big / ell) / u, finite at x = 1/2.
  const T u = T(4) * x * (T(1) - x);
  return {f.value, T(-2) * x * f.slope * ::sqrt(big / ell) / u};
}

// The x in (0, 1/2) with I_x(s, s) = y, for 0 < s < inf and 0 < y < 1/2 (as target.x and
// target.log_x): Newton on log I against log x, safeguarded by bisection of the bracket it
// keeps.
template <typename T>
KMIXUP_HD T sym_quantile_lower(T s, const SymPoint<T>& target) {
  const T y = target.x, log_y = target.log_x, log_sb = sym_log_sb(s);
  // The start: the power-law tail x^s / (s B(s, s)) = y where it is deep in the tail (it
  // leaves out (1 - x)^s and the series, 1 + O(s x)); else for large s the erfc term of the
  // Gamma expansion (sqrt z = -ndtri(y) / sqrt 2, x = (1 - sqrt(1 - u)) / 2 with
  // u = exp(-z / (s - 1/4))), for s >= 1 A&S 26.5.22 (the normal approximation in logit
  // space), below that the power law all the same.
  T v = (log_y + log_sb) / s;
  if (s * ::exp(v) > T(0.1) && y >= Sym<T>::kMinNormal) {
    if (s >= Sym<T>::kGammaFrom) {
      const T r = ndtri(y) * T(0.70710678118654752440), w = r * r / (s - T(0.25));
      v = -w - T(kLog2) - ::log1p(::sqrt(-::expm1(-w)));
    } else if (s >= T(1)) {
      const T zn = -ndtri(y), h = T(2) * s - T(1), lam = (zn * zn - T(3)) / T(6);
      const T w = zn * ::sqrt(::fmax(h + lam, T(0))) / h;
      v = -::log1p(::exp(T(2) * w));
    }
  }
  T lo = Sym<T>::kLogMin, hi = -T(kLog2);
  v = ::isnan(v) ? hi : ::fmin(::fmax(v, lo), hi);
  for (int step = 0; step < kSymNewtonSteps; ++step) {
    const T x = ::exp(v);
    const SymCdf<T> f = sym_cdf_log_x(s, SymPoint<T>{x, T(1) - T(2) * x, v}, log_sb);
    const T miss = ::log(f.value) - log_y;  // rises with v; -inf where I underflows
    if ((miss > 0 && v <= lo) || (miss < 0 && v >= hi)) break;
    if (miss > 0) hi = v; else lo = v;
    T next = v - miss * f.value / f.slope;
    if (!(next >= lo && next <= hi)) next = T(0.5) * (lo + hi);
    const T moved = ::fabs(next - v);
    v = next;
    if (moved <= Sym<T>::kStepTol || moved * x <= Sym<T>::kAbsTol) break;
  }
  return ::exp(v);
}

// I_x(s, s) in T at x = lam, with betainc's limits (lam in double: see SymPoint).
template <typename T>
KMIXUP_HD T sym_betainc(T s, double lam) {
  double value;
  if (outside_interior(s, s, lam, false, value)) return T(value);
  if (lam == 0.5) return T(0.5);
  const bool lower = lam < 0.5;
  const T v = sym_cdf_lower(s, lower ? lam : 1.0 - lam);
  return lower ? v : T(1) - v;
}

// I^-1(y; s, s) in T, with betaincinv's limits (y in double: see SymPoint).
template <typename T>
KMIXUP_HD T sym_betaincinv(T s, double y) {
  double value;
  if (outside_interior(s, s, y, true, value)) return T(value);
  if (y == 0.5) return T(0.5);
  const bool lower = y < 0.5;
  const double near = lower ? y : 1.0 - y;
  // A float64 lam for float data may lie below what I_x in T can represent, though its
  // quantile is not small (x^s: s = 100, y = 1e-300 gives x ~ 0.1): then in double.
  const T x = near < Sym<T>::kMinTarget
                  ? T(sym_quantile_lower(double(s), sym_point<double>(near)))
                  : sym_quantile_lower(s, sym_point<T>(near));
  return lower ? x : T(1) - x;
}

}  // namespace detail

// I_x(a, b), the Beta(a, b) CDF at x, in scipy's argument order. About 1e-12 absolute for
// a, b in [1e-30, 1e30]; the limiting point masses at shape 0 or inf (a = b = 0: 0.5 inside
// (0, 1); a = b = inf: a step at 0.5); NaN for NaN, negative shapes, x outside [0, 1].
KMIXUP_HD double betainc(double a, double b, double x) {
  double value;
  if (detail::outside_interior(a, b, x, false, value)) return value;
  if (a == b && x == 0.5) return 0.5;  // by symmetry, exactly (the quadrature is not exact)
  return detail::betainc_interior(a, b, x).lower;
}

// The x with I_x(a, b) = y: the Beta(a, b) quantile, with betainc's limits (a = b = 0: 0
// below 1/2, 1/2 at 1/2, 1 above; a = b = inf: 1/2 inside (0, 1)).
KMIXUP_HD double betaincinv(double a, double b, double y) {
  double value;
  if (detail::outside_interior(a, b, y, true, value)) return value;
  // The median of a symmetric Beta, exactly: Newton cannot resolve it when the density is flat.
  if (a == b && y == 0.5) return 0.5;
  // Solve for whichever of x and 1 - x is below 1/2, so that it is resolved to full precision,
  // with I_{1-x}(b, a) = 1 - y and 1 - I = y exactly. I_{1/2} is 1/2 by symmetry for a == b.
  const double half = a == b ? 0.5 : detail::betainc_interior(a, b, 0.5).lower;
  if (y > half) {
    return 1.0 - detail::betaincinv_lower(b, a, {1.0 - y, y});
  }
  return detail::betaincinv_lower(a, b, {y, 1.0 - y});
}

enum Warping : int { kBetaCdf = 0, kInverseBetaCdf = 1, kNone = 2 };

// SK Mixup steps 2-3 for a finite squared distance: log tau for
// tau = tau_max * exp(-(dn - 1) / (2 tau_std^2)), as log(tau_max) - ... so that an extreme
// tau_max and an extreme exponent may cancel instead of overflowing first. dn == 1 gives
// tau_max exactly: the limit of a vanishing width (tau_std^2 underflowing to 0 would
// otherwise make it 0 / 0), which for every other dn is a step: tau = 0 above the mean,
// inf below it.
KMIXUP_HD double similarity_log_tau(double sq_dist, double mean_sq_dist, double tau_max,
                                    double tau_std) {
  const double dn = mean_sq_dist > 0.0 ? sq_dist / mean_sq_dist : 0.0;
  const double excess = dn - 1.0;
  // An infinitely far pair (d / mean overflowing) is tau = 0 whatever the width.
  const double exponent = excess == 0.0 || ::isinf(excess)
                              ? excess
                              : excess / (2.0 * (tau_std * tau_std));
  return ::log(tau_max) - exponent;
}

// SK Mixup steps 2-4 (docs/design.md) for one pair, as tau64, warp64 and kernel_mix's non-finite
// rule in kmixup/_torch_kernels.py: mean_sq_dist is the batch mean of the finite squared
// distances (0 if none is finite). A pair with a non-finite distance has no meaningful
// similarity and is left unmixed (1). tau may underflow to 0 or overflow to inf; both warps
// have those limits. tau is formed in double; the warp is evaluated in T (float for
// float32/float16/bfloat16 data, double for float64) by the symmetric special functions.
template <typename T = double>
KMIXUP_HD T pair_coefficient(double sq_dist, double mean_sq_dist, double lam, double tau_max,
                             double tau_std, int warping) {
  if (warping == kNone) return T(lam);
  if (!::isfinite(sq_dist)) return T(1);
  const double log_tau = similarity_log_tau(sq_dist, mean_sq_dist, tau_max, tau_std);
  // beta_cdf's shape 1 / tau as exp(-log tau): no division (it differs from 1 / tau by an
  // ulp, which moves I by an ulp at most).
  if (warping == kBetaCdf) return detail::sym_betainc(T(::exp(-log_tau)), lam);
  if (warping == kInverseBetaCdf) return detail::sym_betaincinv(T(::exp(log_tau)), lam);
  return T(NAN);  // an unknown warping: make the caller's mistake visible
}

}  // namespace kmixup

// Regularised incomplete beta function I_x(a, b), its inverse in x, and the SK Mixup
// coefficient of one pair, as scalar float64 functions for host and CUDA device code.
//
// kmixup/special.py is the same algorithm in torch ops (the pure-PyTorch fallback), with
// the same regimes, constants and formulas; its docstring explains them. The differences
// are only those of scalar code: real branches instead of computing every regime and
// selecting, and loops that stop once converged instead of running a fixed count (the
// Python counts are the caps). tests/ compare both paths to scipy and to each other, which
// keeps them in step: change one, change the other.

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
constexpr int kCfTerms = 100;
constexpr int kGammaTerms = 60;
constexpr double kWindowSd = 16.0;  // beyond +-16 sd the density is below exp(-45) of its peak
constexpr int kNewtonSteps = 10;
// A Newton step this small relative to u = log x moves x by a negligible relative amount,
// and the step after it would be quadratically smaller still.
constexpr double kNewtonTol = 1e-14;
constexpr double kEps = DBL_EPSILON;  // the continued fractions and series stop below this
constexpr double kTiny = 1e-300;
constexpr double kLogTiny = -708.39641853226408;  // log(DBL_MIN): the inverse's lower bracket
constexpr double kLog2 = 0.69314718055994531;
constexpr double kLog2Pi = 1.8378770664093453;

// I_x and 1 - I_x, each to full absolute precision.
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

// log(1 + z) - z, which the direct formula loses to cancellation for small |z|.
KMIXUP_HD double log1pmx(double z) {
  if (::fabs(z) >= 0.1) return ::log1p(z) - z;
  // z^2 * sum_{k >= 2} (-1)^(k + 1) z^(k - 2) / k; 18 terms reach double precision here.
  static constexpr double kCoeff[18] = {
      -1.0 / 2,  1.0 / 3,  -1.0 / 4,  1.0 / 5,  -1.0 / 6,  1.0 / 7,  -1.0 / 8,  1.0 / 9,
      -1.0 / 10, 1.0 / 11, -1.0 / 12, 1.0 / 13, -1.0 / 14, 1.0 / 15, -1.0 / 16, 1.0 / 17,
      -1.0 / 18, 1.0 / 19,
  };
  double acc = kCoeff[17];
  for (int k = 16; k >= 0; --k) acc = kCoeff[k] + z * acc;
  return z * z * acc;
}

// log B(a, b), without the cancellation of lgamma(big) - lgamma(big + small).
KMIXUP_HD double log_beta(double a, double b) {
  const double small = ::fmin(a, b), big = ::fmax(a, b);
  if (big < 10.0) return ::lgamma(a) + ::lgamma(b) - ::lgamma(a + b);
  const double s = big + small;
  return ::lgamma(small) - (big - 0.5) * ::log1p(small / big) - small * ::log(s) + small +
         stirling_correction(big) - stirling_correction(s);
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
  return swap ? Tails{1.0 - value, value} : Tails{value, 1.0 - value};
}

// Regularised incomplete gamma (P(a, z), Q(a, z)) for 0 < a < kLarge: the series below
// z = a + 1, else Legendre's continued fraction, each converging within kGammaTerms.
KMIXUP_HD Tails gamma_p_q(double a, double z) {
  const double front = ::exp(a * ::log(z) - z - ::lgamma(a));
  if (z < a + 1.0) {
    double term = 1.0 / a, total = term;
    for (int n = 1; n <= kGammaTerms; ++n) {
      term = term * z / (a + n);
      total += term;
      if (::fabs(term) <= kEps * ::fabs(total)) break;
    }
    const double p = front * total;
    return {p, 1.0 - p};
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

  // log of the density at p + delta.
  KMIXUP_HD double log_density(double delta) const {
    const double t_1mt = (p + delta) * (q - delta);
    return log_norm + a * log1pmx(delta / p) + b * log1pmx(-delta / q) -
           ::log(t_1mt < kTiny ? kTiny : t_1mt);
  }
};

// Gauss-Legendre over a window of the bump, for min(a, b) >= kLarge (the continued fraction
// would need O(sqrt(a + b)) terms).
KMIXUP_HD Tails betainc_quad(double a, double b, double x) {
  // The 32 positive nodes of numpy.polynomial.legendre.leggauss(64) and their weights; the
  // rule is symmetric about 0.
  static constexpr double kNode[32] = {
      0.024350292663424429, 0.072993121787799042, 0.12146281929612054, 0.16964442042399283,
      0.21742364374000708,  0.26468716220876742,  0.31132287199021097, 0.35722015833766813,
      0.40227015796399163,  0.44636601725346409,  0.48940314570705296, 0.53127946401989457,
      0.57189564620263400,  0.61115535517239328,  0.64896547125465731, 0.68523631305423327,
      0.71988185017161088,  0.75281990726053194,  0.78397235894334139, 0.81326531512279754,
      0.84062929625258032,  0.86599939815409277,  0.88931544599511414, 0.91052213707850282,
      0.92956917213193957,  0.94641137485840277,  0.96100879965205377, 0.97332682778991098,
      0.98333625388462598,  0.99101337147674429,  0.99634011677195522, 0.99930504173577217,
  };
  static constexpr double kWeight[32] = {
      0.048690957009139814,  0.048575467441503511,  0.048344762234802996,  0.047999388596458421,
      0.047540165714830419,  0.046968182816210076,  0.046284796581314472,  0.045491627927418184,
      0.044590558163756566,  0.043583724529323548,  0.042473515123653612,  0.041262563242623576,
      0.039953741132720544,  0.038550153178615640,  0.037055128540240088,  0.035472213256882303,
      0.033805161837141794,  0.032057928354851495,  0.030234657072402554,  0.028339672614259535,
      0.026377469715054912,  0.024352702568711200,  0.022270173808382969,  0.020134823153530088,
      0.017951715775697284,  0.015726030476025030,  0.013463047896717860,  0.011168139460131028,
      0.0088467598263633970, 0.0065044579689785024, 0.0041470332605644993, 0.0017832807216941399,
  };
  const Bump bump(a, b);
  const double sd = ::sqrt(bump.p * bump.q / bump.s);
  // x - p measured from the nearer end, where 1 - x is exact: keeps the error ~ min(p, q) ulp.
  const double d_x = x <= 0.5 ? x - bump.p : bump.q - (1.0 - x);
  // Integrate over the tail beyond x, clipped to the window (empty when x lies outside it).
  const bool left = d_x <= 0.0;
  const double lo = left ? ::fmax(-bump.p, -kWindowSd * sd) : d_x;
  const double hi = left ? d_x : ::fmin(bump.q, kWindowSd * sd);
  double mass = 0.0;
  if (hi > lo) {
    const double half = 0.5 * (hi - lo), mid = 0.5 * (hi + lo);
    for (int i = 0; i < 32; ++i) {
      const double offset = half * kNode[i];
      mass += kWeight[i] * (::exp(bump.log_density(mid - offset)) +
                            ::exp(bump.log_density(mid + offset)));
    }
    mass *= half;
  }
  return left ? Tails{mass, 1.0 - mass} : Tails{1.0 - mass, mass};
}

// (I_x(a, b), 1 - I_x(a, b)) for 0 < a, b < inf and 0 < x < 1.
KMIXUP_HD Tails betainc_interior(double a, double b, double x) {
  if (::fmin(a, b) >= kLarge) return clamp_unit(betainc_quad(a, b, x));
  const double log_x = ::log(x), log_y = ::log1p(-x);
  if (::fmax(a, b) < kHuge) return clamp_unit(betainc_cf(a, b, x, log_x, log_y));
  // With b huge, -log(1 - X) is Gamma(a) / (b + (a - 1) / 2) up to O(a / b^2) (DiDonato &
  // Morris' BGRAT leading term): I = P(a, z). Mirrored for a huge: I = Q(b, z).
  if (b >= a) return clamp_unit(gamma_p_q(a, -(b + 0.5 * (a - 1.0)) * log_y));
  const Tails pq = gamma_p_q(b, -(a + 0.5 * (b - 1.0)) * log_x);
  return clamp_unit({pq.upper, pq.lower});
}

// log of the Beta(a, b) density at x, for 0 < a, b < inf and 0 < x < 1.
KMIXUP_HD double log_pdf(double a, double b, double x) {
  if (::fmin(a, b) >= kLarge) {
    const Bump bump(a, b);
    return bump.log_density(x - bump.p);
  }
  return (a - 1.0) * ::log(x) + (b - 1.0) * ::log1p(-x) - log_beta(a, b);
}

KMIXUP_HD double polevl(double x, const double* coeffs, int degree) {
  double result = coeffs[0];
  for (int i = 1; i <= degree; ++i) result = result * x + coeffs[i];
  return result;
}

// The standard normal quantile for 0 < y < 1, as Cephes' ndtri (which torch.special.ndtri
// also is), so that both paths start Newton from the same point.
KMIXUP_HD double ndtri(double y) {
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
  const bool upper = y > 1.0 - kExpMinus2;
  if (upper) y = 1.0 - y;
  if (y > kExpMinus2) {
    y -= 0.5;
    const double y2 = y * y;
    return kSqrt2Pi * (y + y * (y2 * polevl(y2, kP0, 4) / polevl(y2, kQ0, 8)));
  }
  const double t = ::sqrt(-2.0 * ::log(y));
  const double z = 1.0 / t;
  const double tail = t < 8.0 ? z * polevl(z, kP1, 8) / polevl(z, kQ1, 8)
                              : z * polevl(z, kP2, 8) / polevl(z, kQ2, 8);
  const double x = t - ::log(t) / t - tail;
  return upper ? x : -x;
}

// x in (0, 1/2] with I_x(a, b) = y, for 0 < a, b < inf and 0 < y <= I_{1/2}(a, b).
KMIXUP_HD double betaincinv_lower(double a, double b, double y) {
  const double log_y = ::log(y);
  double u;  // the guess for log x
  if (a > 1.0 && b > 1.0) {
    // Abramowitz & Stegun 26.5.22, good when both shapes exceed 1.
    const double z = -ndtri(y);
    const double lam = (z * z - 3.0) / 6.0;
    const double ia = 1.0 / (2.0 * a - 1.0), ib = 1.0 / (2.0 * b - 1.0);
    const double h = 2.0 / (ia + ib);
    const double root = h + lam;
    double w = z * ::sqrt(root < 0.0 ? 0.0 : root) / h;
    w -= (ib - ia) * (lam + 5.0 / 6.0 - 2.0 / (3.0 * h));
    u = ::log(a) - ::log(a + b * ::exp(2.0 * w));
  } else {
    // Lower tail x^a / (a B(a, b)), good when a shape is below 1.
    u = (log_y + ::log(a) + log_beta(a, b)) / a;
  }
  // Newton on the log of the nearer tail (I, or 1 - I for y > 1/2, which stays well
  // conditioned as y -> 1) against log x, safeguarded by bisection of the bracket it keeps.
  const bool upper_tail = y > 0.5;
  const double log_target = upper_tail ? ::log1p(-y) : log_y;
  double lo = kLogTiny, hi = -kLog2;
  u = ::isnan(u) ? hi : (u < lo ? lo : (u > hi ? hi : u));
  for (int step = 0; step < kNewtonSteps; ++step) {
    const double x = ::exp(u);
    const Tails tails = betainc_interior(a, b, x);
    const double mass = upper_tail ? tails.upper : tails.lower;
    const double log_mass = ::log(mass < kTiny ? kTiny : mass);
    const double miss = upper_tail ? log_target - log_mass : log_mass - log_target;  // rises with u
    if (miss > 0.0) {
      hi = u;
    } else {
      lo = u;
    }
    const double slope = ::exp(u + log_pdf(a, b, x) - log_mass);  // |d log(tail) / d log x|
    const double next = u - miss / slope;
    if (!(next >= lo && next <= hi)) {
      u = 0.5 * (lo + hi);
      continue;
    }
    const bool done = ::fabs(next - u) <= kNewtonTol * ::fabs(next);
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
  // Solve for whichever of x and 1 - x is below 1/2, so that it is resolved to full precision.
  if (y > detail::betainc_interior(a, b, 0.5).lower) {
    return 1.0 - detail::betaincinv_lower(b, a, 1.0 - y);
  }
  return detail::betaincinv_lower(a, b, y);
}

enum Warping : int { kBetaCdf = 0, kInverseBetaCdf = 1, kNone = 2 };

// SK Mixup steps 2-3 for a finite squared distance: tau_max * exp(-(dn - 1) / (2 tau_std^2)),
// evaluated as exp(log(tau_max) - ...) so that an extreme tau_max and an extreme exponent
// may cancel instead of overflowing first. dn == 1 gives tau_max exactly: the limit of a
// vanishing width (tau_std^2 underflowing to 0 would otherwise make it 0 / 0), which for
// every other dn is a step: tau = 0 above the mean, inf below it.
KMIXUP_HD double similarity_tau(double sq_dist, double mean_sq_dist, double tau_max,
                                double tau_std) {
  const double dn = mean_sq_dist > 0.0 ? sq_dist / mean_sq_dist : 0.0;
  const double excess = dn - 1.0;
  // An infinitely far pair (d / mean overflowing) is tau = 0 whatever the width.
  const double exponent = excess == 0.0 || ::isinf(excess)
                              ? excess
                              : excess / (2.0 * (tau_std * tau_std));
  return ::exp(::log(tau_max) - exponent);
}

// SK Mixup steps 2-4 (docs/design.md) for one pair, as tau64, warp64 and kernel_mix's non-finite
// rule in kmixup/_torch_kernels.py: mean_sq_dist is the batch mean of the finite squared
// distances (0 if none is finite). A pair with a non-finite distance has no meaningful
// similarity and is left unmixed (1). tau may underflow to 0 or overflow to inf; both warps
// have those limits.
KMIXUP_HD double pair_coefficient(double sq_dist, double mean_sq_dist, double lam,
                                  double tau_max, double tau_std, int warping) {
  if (warping == kNone) return lam;
  if (!::isfinite(sq_dist)) return 1.0;
  const double tau = similarity_tau(sq_dist, mean_sq_dist, tau_max, tau_std);
  if (warping == kBetaCdf) return betainc(1.0 / tau, 1.0 / tau, lam);
  if (warping == kInverseBetaCdf) return betaincinv(tau, tau, lam);
  return ::nan("");  // an unknown warping: make the caller's mistake visible
}

}  // namespace kmixup

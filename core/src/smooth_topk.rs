//! The smooth top-k SVM losses of Berrada, Zisserman & Kumar ("Smooth Loss Functions for Deep
//! Top-k Classification", ICLR 2018), the baseline of the paper, as the PyTorch reference
//! `difftopk.SmoothTopKLoss` / `difftopk.SmoothHardTopKLoss` (code from oval-group/smooth-topk)
//! computes them (spec section 5.4), with an exact hand-written backward pass.
//!
//! For one row of n scores `s`, label y, k and temperature τ, margin α (= 1):
//!
//! * `x1` = the n − 1 wrong-class scores (in class order), `x2 = s_y`; `u = x1 / (k·τ)`,
//!   `v = x2 / (k·τ)`; `E_j = log e_j(exp u)`, with e_j the elementary symmetric polynomial of
//!   degree j (`E_0 = 0`);
//! * **smooth**: `loss = τ · [ logaddexp(E_k + α/τ, E_{k−1} + v) − (E_{k−1} + v) ]`
//!   `= τ · softplus(E_k + α/τ − E_{k−1} − v)`;
//! * **hard**: `loss = max(0, mean(top_k(x1 + α)) − (sum(top_{k−1}(x1)) + x2) / k)`;
//! * [`SmoothTopkVariant::SmoothHard`] uses the hard formula for a row when
//!   (k-th largest − (k+1)-th largest of the full row of n scores, true class included)
//!   ≥ k·τ·ln(1000), the smooth one otherwise; [`SmoothTopkVariant::Smooth`] always uses the
//!   smooth formula (as `SmoothTopKLoss` does);
//! * the batch loss is the sum of the row losses divided by the batch size B.
//!
//! The log-polynomials are computed in log space by the O(n·k) recursion
//! `log e_j(u_i … u_{m−1}) = logaddexp(log e_j(u_{i+1} …), log e_{j−1}(u_{i+1} …) + u_i)`.
//! The gradient is exact: `∂E_j/∂u_i = exp(u_i + log e_{j−1}(u without u_i) − E_j)`, with
//! `log e_{j−1}(u without u_i)` combined in log space from a prefix and a suffix recursion
//! (`e_t(without i) = Σ_{a+b=t} e_a(u_0 … u_{i−1}) · e_b(u_{i+1} … u_{m−1})`), O(n·k) in all. The
//! reference's own backward switches to a truncated series (p = ⌊1 + 0.2k⌋ terms) where its
//! alternating recursion is unstable; this module never approximates.
//!
//! The hard formula's gradient is the subgradient torch gives: 1/k on the k-th largest
//! wrong-class score (the top k−1 cancel exactly), −1/k on the true score, when the clamped value
//! is ≥ 0 (torch's `clamp(min = 0)` passes the gradient at equality), 0 elsewhere. Ties among the
//! wrong-class scores at the k-th place: the k-th element is taken in class order (lower class
//! index ranks first), as `torch.topk` does in practice.
//!
//! Nothing here allocates: the caller provides [`smooth_topk_scratch_len`] reals of scratch.

use crate::{Error, Real};

/// ln(1000) as `math.log(1e3)` gives it: the reference's switching threshold is k·τ·ln(1000).
const LN_1000: f64 = 6.907_755_278_982_137;

/// Which of the two reference losses to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmoothTopkVariant {
    /// `SmoothTopKLoss`: every row uses the smooth formula
    /// `τ · softplus(E_k + α/τ − E_{k−1} − s_y/(kτ))` (see the module documentation).
    Smooth,
    /// `SmoothHardTopKLoss`: rows whose gap between the k-th and (k+1)-th largest of all n scores
    /// is ≥ k·τ·ln(1000) use the hard formula
    /// `max(0, mean(top_k(x1 + α)) − (sum(top_{k−1}(x1)) + s_y)/k)`, the others the smooth one.
    SmoothHard,
}

/// A validated configuration of the smooth top-k SVM loss: variant, number of classes n,
/// k (1 ≤ k < n), temperature τ (finite, > 0) and margin α (fixed to 1, as in the reference).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothTopkConfig {
    variant: SmoothTopkVariant,
    classes: usize,
    k: usize,
    tau: f64,
    alpha: f64,
}

impl SmoothTopkConfig {
    /// A configuration for `classes` classes (n ≥ 2), `k` (1 ≤ k < n) and `tau` (finite, > 0);
    /// α = 1.
    ///
    /// Errors: [`Error::TooFewClasses`] when n < 2, [`Error::TopkLargerThanInputs`] (with
    /// `inputs` = n − 1, the number of wrong-class scores) when k = 0 or k ≥ n, [`Error::InvalidTemperature`] when τ is not finite or outside the range of
    /// [`crate::relaxation::check_inverse_temperature`] (a normal `f32`).
    pub fn new(
        variant: SmoothTopkVariant,
        classes: usize,
        k: usize,
        tau: f64,
    ) -> Result<Self, Error> {
        if classes < 2 {
            return Err(Error::TooFewClasses { classes });
        }
        if k == 0 || k >= classes {
            return Err(Error::TopkLargerThanInputs {
                k,
                inputs: classes - 1,
            });
        }
        crate::relaxation::check_inverse_temperature(tau)
            .map_err(|_| Error::InvalidTemperature { value: tau })?;
        Ok(SmoothTopkConfig {
            variant,
            classes,
            k,
            tau,
            alpha: 1.0,
        })
    }

    /// The variant.
    pub fn variant(&self) -> SmoothTopkVariant {
        self.variant
    }

    /// The number of classes n (scores per row).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// k.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The temperature τ.
    pub fn tau(&self) -> f64 {
        self.tau
    }

    /// The margin α (always 1).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The gap k·τ·ln(1000) between the k-th and (k+1)-th largest scores of a row from which
    /// [`SmoothTopkVariant::SmoothHard`] uses the hard formula (computed as the reference does,
    /// `(k·τ)·ln(1000)` in `f64`, then rounded to the working float).
    pub fn hard_threshold(&self) -> f64 {
        self.k as f64 * self.tau * LN_1000
    }
}

/// Reals of scratch one row needs (the batch function reuses the same scratch for every row):
/// (n − 1) scaled scores, an n × (k + 1) suffix table, k prefix values and k + 1 top-k slots,
/// i.e. `n·(k + 2) + 2k`.
pub fn smooth_topk_scratch_len(config: &SmoothTopkConfig) -> usize {
    let n = config.classes;
    let k = config.k;
    n.saturating_mul(k.saturating_add(2))
        .saturating_add(k.saturating_mul(2))
}

/// The loss of one row, and optionally `gradient_scale · ∂loss_row/∂scores` written to
/// `gradient` (all n entries are written; entries the loss does not depend on are 0).
///
/// `scores` holds the n scores of the row, `label` the true class; `row` only labels errors.
/// `scratch` must hold at least [`smooth_topk_scratch_len`] reals (its contents on entry are
/// ignored, on exit unspecified). The loss is the one of the module documentation, not divided
/// by any batch size. O(n·k), no allocation.
///
/// Errors, checked in this order: [`Error::LengthMismatch`] (`"scores"`, then `"gradient"`),
/// [`Error::LabelOutOfRange`], [`Error::NonFiniteInput`], [`Error::ScratchTooSmall`]
/// (`"reals"`). On error `gradient` is left untouched.
pub fn smooth_topk_sample<F: Real>(
    config: &SmoothTopkConfig,
    row: usize,
    scores: &[F],
    label: usize,
    gradient: Option<&mut [F]>,
    gradient_scale: F,
    scratch: &mut [F],
) -> Result<F, Error> {
    row_loss(
        config,
        row,
        scores,
        label,
        gradient,
        gradient_scale,
        scratch,
    )
    .map(|(loss, _)| loss)
}

/// The batch loss `(1/B) · Σ_rows loss_row` over `logits` (row-major, B × n with
/// B = `labels.len()`), and optionally its gradient ∂loss/∂logits written to `gradient`
/// (B × n, every entry written).
///
/// As in the reference the smooth rows and the hard rows are summed separately:
/// `loss = Σ_smooth/B + Σ_hard/B`. `scratch` must hold at least
/// [`smooth_topk_scratch_len`] reals; it is reused for every row. No allocation.
///
/// Errors: [`Error::Empty`] for a batch without rows (its mean is undefined, as for the top-k
/// loss), [`Error::LengthMismatch`] (`"logits"` when its length is not B·n, `"gradient"`
/// likewise), [`Error::ScratchTooSmall`], and the per-row errors of [`smooth_topk_sample`]
/// ([`Error::LabelOutOfRange`], [`Error::NonFiniteInput`]) with the row index. On error the
/// contents of `gradient` are unspecified.
pub fn smooth_topk_loss<F: Real>(
    config: &SmoothTopkConfig,
    logits: &[F],
    labels: &[usize],
    mut gradient: Option<&mut [F]>,
    scratch: &mut [F],
) -> Result<F, Error> {
    let n = config.classes;
    let batch = labels.len();
    let expected = batch.saturating_mul(n);
    Error::check_length("logits", expected, logits.len())?;
    if let Some(g) = gradient.as_deref() {
        Error::check_length("gradient", expected, g.len())?;
    }
    Error::check_scratch("reals", smooth_topk_scratch_len(config), scratch.len())?;
    if batch == 0 {
        return Err(Error::Empty {
            what: "batch rows (labels)",
        });
    }
    let b = F::of(batch as f64);
    // d(sum/B)/d(row loss) = 1/B, as torch's `div` backward computes it.
    let scale = F::one() / b;
    let mut smooth_sum = F::zero();
    let mut hard_sum = F::zero();
    let mut any_hard = false;
    for (r, (scores, &label)) in logits.chunks_exact(n).zip(labels).enumerate() {
        let g = match gradient.as_deref_mut() {
            Some(g) => g.get_mut(r * n..(r + 1) * n),
            None => None,
        };
        let (loss, hard) = row_loss(config, r, scores, label, g, scale, scratch)?;
        if hard {
            hard_sum += loss;
            any_hard = true;
        } else {
            smooth_sum += loss;
        }
    }
    let mut total = smooth_sum / b;
    if any_hard {
        total += hard_sum / b;
    }
    Ok(total)
}

/// One row: validates, picks the formula and returns (loss, whether the hard formula was used).
fn row_loss<F: Real>(
    config: &SmoothTopkConfig,
    row: usize,
    scores: &[F],
    label: usize,
    gradient: Option<&mut [F]>,
    gradient_scale: F,
    scratch: &mut [F],
) -> Result<(F, bool), Error> {
    let n = config.classes;
    Error::check_length("scores", n, scores.len())?;
    if let Some(g) = gradient.as_deref() {
        Error::check_length("gradient", n, g.len())?;
    }
    if label >= n {
        return Err(Error::LabelOutOfRange {
            row,
            label,
            classes: n,
        });
    }
    if let Some(column) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::NonFiniteInput { row, column });
    }
    let needed = smooth_topk_scratch_len(config);
    Error::check_scratch("reals", needed, scratch.len())?;
    let k = config.k;
    let (work, top) = scratch[..needed].split_at_mut(needed - (k + 1));
    let hard = config.variant == SmoothTopkVariant::SmoothHard && is_hard_row(config, scores, top);
    let loss = if hard {
        hard_row(
            config,
            scores,
            label,
            gradient,
            gradient_scale,
            &mut top[..k],
        )
    } else {
        smooth_row(config, scores, label, gradient, gradient_scale, work)
    };
    Ok((loss, hard))
}

/// `detect_large` of the reference: (k-th largest − (k+1)-th largest of all n scores) ≥
/// k·τ·ln(1000), compared in the working float. `top` holds k + 1 slots.
fn is_hard_row<F: Real>(config: &SmoothTopkConfig, scores: &[F], top: &mut [F]) -> bool {
    let k = config.k;
    let filled = largest_values(scores.iter().copied(), top);
    if filled < k + 1 {
        return false;
    }
    top[k - 1] - top[k] >= F::of(config.hard_threshold())
}

/// Keeps the `top.len()` largest values of `values` in `top`, descending; returns how many
/// slots were filled.
fn largest_values<F: Real>(values: impl Iterator<Item = F>, top: &mut [F]) -> usize {
    let cap = top.len();
    let mut filled = 0;
    for v in values {
        if filled == cap {
            if cap == 0 || v <= top[cap - 1] {
                continue;
            }
            filled -= 1;
        }
        // first slot holding a strictly smaller value (equal values keep their order)
        let mut p = filled;
        while p > 0 && top[p - 1] < v {
            top[p] = top[p - 1];
            p -= 1;
        }
        top[p] = v;
        filled += 1;
    }
    filled
}

/// The hard formula and its torch subgradient. `top` holds k slots.
fn hard_row<F: Real>(
    config: &SmoothTopkConfig,
    scores: &[F],
    label: usize,
    gradient: Option<&mut [F]>,
    gradient_scale: F,
    top: &mut [F],
) -> F {
    let k = config.k;
    let kf = F::of(k as f64);
    let alpha = F::of(config.alpha);
    let wrong = scores
        .iter()
        .enumerate()
        .filter(|&(c, _)| c != label)
        .map(|(_, &s)| s);
    largest_values(wrong, top);
    let x2 = scores[label];
    // max_1 = mean(top_k(x1 + α))
    let mut sum1 = F::zero();
    for &v in top.iter() {
        sum1 += v + alpha;
    }
    let max1 = sum1 / kf;
    // max_2 = (sum(top_{k−1}(x1)) + x2) / k
    let mut sum2 = F::zero();
    for &v in &top[..k - 1] {
        sum2 += v;
    }
    let max2 = (sum2 + x2) / kf;
    let diff = max1 - max2;
    let loss = if diff > F::zero() { diff } else { F::zero() };
    if let Some(g) = gradient {
        g.iter_mut().for_each(|x| *x = F::zero());
        if diff >= F::zero() {
            let kth = top[k - 1];
            // the k-th largest wrong-class score, ties in class order
            let above = scores
                .iter()
                .enumerate()
                .filter(|&(c, &s)| c != label && s > kth)
                .count();
            let rank_among_equal = k - above; // ≥ 1
            let column = scores
                .iter()
                .enumerate()
                .filter(|&(c, &s)| c != label && s == kth)
                .nth(rank_among_equal - 1)
                .map(|(c, _)| c);
            let step = gradient_scale / kf;
            if let Some(c) = column {
                g[c] = step;
            }
            g[label] = -step;
        }
    }
    loss
}

/// −∞ in the working float.
#[inline(always)]
fn neg_inf<F: Real>() -> F {
    F::of(f64::NEG_INFINITY)
}

/// log(1 + u) for u ∈ [0, 1], accurate also for tiny u (Goldberg's trick).
#[inline]
fn log1p<F: Real>(u: F) -> F {
    let w = F::one() + u;
    if w == F::one() {
        u
    } else {
        w.ln() * u / (w - F::one())
    }
}

/// log(eᵃ + eᵇ), with −∞ as the log of 0.
#[inline]
fn log_add_exp<F: Real>(a: F, b: F) -> F {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == neg_inf() {
        return hi;
    }
    hi + log1p((lo - hi).exp())
}

/// log Σ_{a=0..=t} exp(prefix[a] + suffix[t − a]) (−∞ when every term is −∞).
#[inline]
fn log_convolve<F: Real>(prefix: &[F], suffix: &[F], t: usize) -> F {
    let mut hi = neg_inf::<F>();
    for a in 0..=t {
        let term = prefix[a] + suffix[t - a];
        if term > hi {
            hi = term;
        }
    }
    if hi == neg_inf() {
        return hi;
    }
    let mut sum = F::zero();
    for a in 0..=t {
        sum += (prefix[a] + suffix[t - a] - hi).exp();
    }
    hi + sum.ln()
}

/// The smooth formula and its exact gradient. `work` holds at least
/// (n − 1) + n·(k + 1) + k reals.
fn smooth_row<F: Real>(
    config: &SmoothTopkConfig,
    scores: &[F],
    label: usize,
    gradient: Option<&mut [F]>,
    gradient_scale: F,
    work: &mut [F],
) -> F {
    let n = scores.len();
    let m = n - 1;
    let k = config.k;
    let w = k + 1;
    let kt = F::of(k as f64 * config.tau);
    let (u, rest) = work.split_at_mut(m);
    let (suffix, rest) = rest.split_at_mut((m + 1) * w);
    let prefix = &mut rest[..k];

    // u = x1 / (kτ), v = x2 / (kτ)
    for (slot, (_, &s)) in u
        .iter_mut()
        .zip(scores.iter().enumerate().filter(|&(c, _)| c != label))
    {
        *slot = s / kt;
    }
    let v = scores[label] / kt;

    // suffix[i·w + b] = log e_b(u_i … u_{m−1}), i = 0..=m, b = 0..=k
    suffix[m * w] = F::zero();
    for x in &mut suffix[m * w + 1..] {
        *x = neg_inf();
    }
    for i in (0..m).rev() {
        let (current, next) = suffix[i * w..(i + 2) * w].split_at_mut(w);
        current[0] = F::zero();
        for b in 1..=k {
            current[b] = log_add_exp(next[b], next[b - 1] + u[i]);
        }
    }
    let log_ek = suffix[k];
    let log_ekm1 = suffix[k - 1];

    // loss = τ · softplus(d), d = E_k + α/τ − (E_{k−1} + v)
    let tau = F::of(config.tau);
    let d = (log_ek + F::of(config.alpha / config.tau)) - (log_ekm1 + v);
    let softplus = d.max(F::zero()) + log1p((-d.abs()).exp());
    let loss = tau * softplus;

    if let Some(g) = gradient {
        let sigmoid = if d >= F::zero() {
            F::one() / (F::one() + (-d).exp())
        } else {
            let e = d.exp();
            e / (F::one() + e)
        };
        // ∂loss/∂d · ∂d/∂(raw score) = τ·σ(d)/(kτ)
        let c = gradient_scale * (tau * sigmoid / kt);
        prefix[0] = F::zero();
        for x in &mut prefix[1..] {
            *x = neg_inf();
        }
        let mut j = 0;
        for (column, slot) in g.iter_mut().enumerate() {
            if column == label {
                *slot = -c;
                continue;
            }
            let uj = u[j];
            let next = &suffix[(j + 1) * w..(j + 2) * w];
            // ∂E_k/∂u_j and ∂E_{k−1}/∂u_j
            let dk = (uj + log_convolve(prefix, next, k - 1) - log_ek).exp();
            let dkm1 = if k >= 2 {
                (uj + log_convolve(prefix, next, k - 2) - log_ekm1).exp()
            } else {
                F::zero()
            };
            *slot = c * (dk - dkm1);
            for a in (1..k).rev() {
                prefix[a] = log_add_exp(prefix[a], prefix[a - 1] + uj);
            }
            j += 1;
        }
    }
    loss
}

//! Parity of the smooth top-k SVM losses (`difftopk_core::smooth_topk`) with the PyTorch
//! reference `difftopk.SmoothTopKLoss` / `difftopk.SmoothHardTopKLoss`: every
//! `smooth_topk_cases` record of the golden file (24: inputs n10, n100, n10_large × both classes ×
//! τ ∈ {1, 0.1} × float32/float64, k = 5, α = 1), plus a finite-difference check of the exact
//! gradient in float64.
//!
//! Tolerances: float64 1e-9 relative (or 1e-12 absolute), float32 1e-4 relative (or 1e-7
//! absolute), on the loss and on the gradient (max |Δ| / max |reference|). Every loss meets them
//! (worst: 7.8e-16 in float64, 4.3e-7 in float32). Ten gradients cannot: they are listed in
//! [`LOOSENED`] with the deviation measured, the bound kept and the reason, and for each of them
//! the test also checks the reason (see there).
//!
//! `SmoothTopKLoss` never switches to the hard formula (the reference's `forward` calls only
//! `fn_smooth`); the golden values cannot tell, since the only row that `SmoothHardTopKLoss`
//! switches (n10_large row 0 at τ = 0.1, gap 17 ≥ 3.45) has smooth and hard values equal to
//! ~1e-15 (`smooth_and_smooth_hard_agree_where_rows_switch`).

mod common;
use common::*;
use difftopk_core::smooth_topk::{
    smooth_topk_loss, smooth_topk_sample, smooth_topk_scratch_len, SmoothTopkConfig,
    SmoothTopkVariant,
};
use difftopk_core::{Error, Real};
use serde_json::Value;

/// One golden record whose gradient cannot meet the default bound.
struct Loosened {
    cls: &'static str,
    input: &'static str,
    tau: f64,
    dtype: &'static str,
    /// Deviation measured when this list was written (max |Δ| / max |reference|).
    measured: f64,
    /// The bound kept on it.
    bound: f64,
}

/// Why the float64 records below deviate: the reference's backward (`d_logS_d_expX`) is not
/// exact. (1) Where its alternating recursion for ∂e_j/∂eˣ is unstable (relative log-space
/// difference < 1e-5) it uses a p = ⌊1 + 0.2k⌋ = 2-term truncated series instead;
/// (2) in the stable branch its `log1mexp(U)` = log(1 − eᵁ) is replaced by log(−U) when
/// |U| < 1e-3, a first-order approximation with relative error up to ~|U|/2 = 5e-4 in the
/// gradient entry. Both contribute at τ = 0.1 (n10, n100); (1) alone at n10_large τ = 1. Our
/// backward is exact (checked against finite differences below). The test proves the cause:
/// `reference_gradient`, an emulation of that backward, reproduces the float64 golden gradients
/// of every record to ≤ 1e-9 (measured ≤ 4.2e-12).
///
/// Why the float32 records deviate: on top of (1) and (2), the reference's float32 backward
/// loses digits in the cancellation P − N of its recursion: its own float32 gradient differs
/// from its float64 gradient by 2.7e-3 (n10, τ = 0.1) and 3.8e-3 (n100, τ = 0.1), more than we
/// differ from it. The test checks that ours stays within 1e-4 of the exact (our float64)
/// gradient there (measured ≤ 1.2e-5). The n10_large float32 records pass the default 1e-4 but
/// with a thin margin (9.8e-5 at τ = 1): the reference's float32 gradient is itself 9.7e-5 away
/// from the exact one there.
const LOOSENED: &[Loosened] = &[
    Loosened {
        cls: "SmoothHardTopKLoss",
        input: "n10",
        tau: 0.1,
        dtype: "float64",
        measured: 2.10e-4,
        bound: 5e-4,
    },
    Loosened {
        cls: "SmoothTopKLoss",
        input: "n10",
        tau: 0.1,
        dtype: "float64",
        measured: 2.10e-4,
        bound: 5e-4,
    },
    Loosened {
        cls: "SmoothHardTopKLoss",
        input: "n100",
        tau: 0.1,
        dtype: "float64",
        measured: 6.19e-4,
        bound: 1.5e-3,
    },
    Loosened {
        cls: "SmoothTopKLoss",
        input: "n100",
        tau: 0.1,
        dtype: "float64",
        measured: 6.19e-4,
        bound: 1.5e-3,
    },
    Loosened {
        cls: "SmoothHardTopKLoss",
        input: "n10_large",
        tau: 1.0,
        dtype: "float64",
        measured: 2.01e-7,
        bound: 5e-7,
    },
    Loosened {
        cls: "SmoothTopKLoss",
        input: "n10_large",
        tau: 1.0,
        dtype: "float64",
        measured: 2.01e-7,
        bound: 5e-7,
    },
    Loosened {
        cls: "SmoothHardTopKLoss",
        input: "n10",
        tau: 0.1,
        dtype: "float32",
        measured: 2.53e-3,
        bound: 5e-3,
    },
    Loosened {
        cls: "SmoothTopKLoss",
        input: "n10",
        tau: 0.1,
        dtype: "float32",
        measured: 2.53e-3,
        bound: 5e-3,
    },
    Loosened {
        cls: "SmoothHardTopKLoss",
        input: "n100",
        tau: 0.1,
        dtype: "float32",
        measured: 4.45e-3,
        bound: 1e-2,
    },
    Loosened {
        cls: "SmoothTopKLoss",
        input: "n100",
        tau: 0.1,
        dtype: "float32",
        measured: 4.45e-3,
        bound: 1e-2,
    },
];

fn variant_of(cls: &str) -> SmoothTopkVariant {
    match cls {
        "SmoothTopKLoss" => SmoothTopkVariant::Smooth,
        "SmoothHardTopKLoss" => SmoothTopkVariant::SmoothHard,
        other => panic!("unknown smooth top-k class {other}"),
    }
}

/// Loss and gradient of `config` on the batch, in f32 or f64.
fn evaluate(
    config: &SmoothTopkConfig,
    logits: &[f64],
    labels: &[usize],
    float32: bool,
) -> (f64, Vec<f64>) {
    let mut scratch32 = vec![0f32; smooth_topk_scratch_len(config)];
    let mut scratch64 = vec![0f64; smooth_topk_scratch_len(config)];
    if float32 {
        let x: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
        let mut g = vec![0f32; x.len()];
        let loss = smooth_topk_loss(config, &x, labels, Some(&mut g), &mut scratch32).unwrap();
        (loss as f64, g.iter().map(|&v| v as f64).collect())
    } else {
        let mut g = vec![0f64; logits.len()];
        let loss = smooth_topk_loss(config, logits, labels, Some(&mut g), &mut scratch64).unwrap();
        (loss, g)
    }
}

fn config_of(case: &Value, classes: usize) -> SmoothTopkConfig {
    let config = SmoothTopkConfig::new(
        variant_of(case["cls"].as_str().unwrap()),
        classes,
        case["k"].as_u64().unwrap() as usize,
        case["tau"].as_f64().unwrap(),
    )
    .unwrap();
    assert_eq!(
        case["alpha"].as_f64().unwrap(),
        config.alpha(),
        "only α = 1 is supported"
    );
    config
}

#[test]
fn every_smooth_topk_record_matches_the_reference() {
    let cases = golden()["smooth_topk_cases"].as_array().unwrap();
    let mut compared = 0;
    let mut loosened_seen = 0;
    let mut failures = Vec::new();
    // "cls/input/dtype" -> (records, worst loss error, worst gradient error)
    let mut worst = std::collections::BTreeMap::new();
    for case in cases {
        let cls = case["cls"].as_str().unwrap();
        let input = case["input"].as_str().unwrap();
        let tau = case["tau"].as_f64().unwrap();
        let dtype = case["dtype"].as_str().unwrap();
        let label = format!("{cls} {input} tau={tau} {dtype}");
        if let Some(error) = case.get("error") {
            // The reference raised: nothing to compare. None does in this file; fail loudly so
            // that a regenerated golden file gets a decision.
            failures.push(format!("{label}: the reference raised {error}"));
            continue;
        }
        let (logits, labels, classes) = inputs(input);
        let config = config_of(case, classes);
        let float32 = dtype == "float32";
        let (loss, gradient) = evaluate(&config, &logits, &labels, float32);
        let expected_loss = case["loss"].as_f64().unwrap();
        let expected_gradient = flat(&case["grad"]);
        let loss_error = relative_error(&[loss], &[expected_loss]);
        let gradient_error = relative_error(&gradient, &expected_gradient);
        let entry = worst
            .entry(format!("{cls}/{input}/{dtype}"))
            .or_insert((0usize, 0.0f64, 0.0f64));
        entry.0 += 1;
        entry.1 = entry.1.max(loss_error);
        entry.2 = entry.2.max(gradient_error);

        let (rel, abs) = if float32 { (1e-4, 1e-7) } else { (1e-9, 1e-12) };
        let loosened = LOOSENED
            .iter()
            .find(|l| l.cls == cls && l.input == input && l.tau == tau && l.dtype == dtype);
        let gradient_rel = loosened.map_or(rel, |l| l.bound);
        let mut note = String::new();
        if let Some(l) = loosened {
            loosened_seen += 1;
            note = format!(
                " [loosened to {:.1e}, measured {:.2e} when listed]",
                l.bound, l.measured
            );
        }
        // The cause of the float64 deviations: the reference's approximate backward, emulated.
        if !float32 {
            let emulated = reference_gradient(&config, &logits, &labels);
            let emulated_error = relative_error(&emulated, &expected_gradient);
            note += &format!("; emulated reference backward vs golden {emulated_error:.2e}");
            if !close(&emulated, &expected_gradient, rel, abs) {
                failures.push(format!(
                    "{label}: the emulated reference backward differs from the golden gradient \
                     by {emulated_error:.2e}"
                ));
            }
        } else if loosened.is_some() {
            // The cause of the float32 deviations: the reference's float32 noise; ours is
            // accurate.
            let (_, exact) = evaluate(&config, &logits, &labels, false);
            let ours = relative_error(&gradient, &exact);
            note += &format!("; ours vs exact (float64) {ours:.2e}");
            if ours > 1e-4 {
                failures.push(format!(
                    "{label}: float32 gradient differs from the float64 one by {ours:.2e}"
                ));
            }
        }
        println!(
            "{label}: loss {loss:.17e} vs {expected_loss:.17e} (rel {loss_error:.2e}), \
             gradient rel {gradient_error:.2e}{note}"
        );
        let loss_ok = close(&[loss], &[expected_loss], rel, abs);
        let gradient_ok = close(&gradient, &expected_gradient, gradient_rel, abs);
        if !(loss_ok && gradient_ok) {
            failures.push(format!(
                "{label}: loss {loss} vs {expected_loss} (rel {loss_error:.2e}), gradient rel \
                 {gradient_error:.2e} (bound {gradient_rel:.1e})"
            ));
        }
        compared += 1;
    }
    println!(
        "compared {compared} smooth top-k records ({loosened_seen} with a loosened gradient bound)"
    );
    for (group, (n, l, g)) in &worst {
        println!("  {group}: {n} records, worst loss rel {l:.2e}, worst gradient rel {g:.2e}");
    }
    assert!(compared > 0, "no smooth top-k record compared");
    assert_eq!(
        loosened_seen,
        LOOSENED.len(),
        "a LOOSENED entry matches no record"
    );
    assert!(
        failures.is_empty(),
        "{} of {} records differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// `log1p` for the emulator (the crate's `Real` does not offer it).
trait Ln1p: Real {
    fn ln_1p_(self) -> Self;
}

impl Ln1p for f64 {
    fn ln_1p_(self) -> Self {
        self.ln_1p()
    }
}

/// `log1mexp` of the reference: log(1 − eᵁ), replaced by log(−U) when |U| < 1e-3.
fn log1mexp<F: Ln1p>(u: F) -> F {
    if u.abs() < F::of(1e-3) {
        (-u).ln()
    } else {
        (-(u.exp())).ln_1p_()
    }
}

/// `_add_outofplace` of the reference: M + log(exp(a − M) + exp(b − M)).
fn add_log<F: Real>(a: F, b: F) -> F {
    let m = if a > b { a } else { b };
    if m == F::of(f64::NEG_INFINITY) {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// `d_logS_d_expX` of the reference for one element: ∂ log e_j / ∂u_i from the log-polynomials
/// `s` (degrees 0..=k+p−1) and `x` = u_i, with its alternating recursion, its instability test
/// (threshold 1e-5, eps 1e-5) and its p-term approximation.
fn reference_d_log_e<F: Ln1p>(s: &[F], x: F, j: usize, p: usize) -> F {
    let eps = F::of(1e-5);
    let neg_big = F::of(-1.0 / 1e-5);
    // recursion: P = Σ S[i]·X^(j−1−i), i = j−1, j−3, …; N likewise from j−2
    let part = |start: Option<usize>| -> F {
        let mut acc = F::of(f64::NEG_INFINITY);
        let mut any = false;
        if let Some(mut i) = start {
            loop {
                acc = add_log(acc, s[i] + x * F::of((j - 1 - i) as f64));
                any = true;
                if i < 2 {
                    break;
                }
                i -= 2;
            }
        }
        if any {
            acc
        } else {
            neg_big
        }
    };
    let pos = part(j.checked_sub(1));
    let neg = part(j.checked_sub(2));
    let diff = (pos - neg) / (neg.abs() + eps);
    // NaN counts as stable, as in the reference's `diff < thresh` mask.
    if diff.partial_cmp(&F::of(1e-5)) != Some(std::cmp::Ordering::Less) {
        // stable: (P − N) · X / S[j]
        pos + log1mexp(neg - pos) + x - s[j]
    } else {
        // approximation: Σ_{i even < p} S[j+i]/X^(i+1) − Σ_{i odd < p} S[j+i]/X^(i+1)
        let mut pos = F::of(f64::NEG_INFINITY);
        let mut neg = F::of(f64::NEG_INFINITY);
        for i in 0..p {
            let term = s[j + i] - x * F::of((i + 1) as f64);
            if i % 2 == 0 {
                pos = add_log(pos, term);
            } else {
                neg = add_log(neg, term);
            }
        }
        let neg = if p > 1 { neg } else { neg_big };
        pos + log1mexp(neg - pos) + x - s[j]
    }
    .exp()
}

/// The reference's gradient of the batch loss (smooth rows through its backward,
/// [`reference_d_log_e`]; hard rows are exact in the reference too and come from the crate).
fn reference_gradient<F: Ln1p>(
    config: &SmoothTopkConfig,
    logits: &[F],
    labels: &[usize],
) -> Vec<F> {
    let n = config.classes();
    let k = config.k();
    let tau = config.tau();
    let p = (1.0 + 0.2 * k as f64) as usize;
    let kp = k + p - 1;
    let batch = labels.len();
    let scale = F::one() / F::of(batch as f64);
    let mut out = vec![F::zero(); logits.len()];
    let mut scratch = vec![F::zero(); smooth_topk_scratch_len(config)];
    for (r, (row, &label)) in logits.chunks(n).zip(labels).enumerate() {
        let g = &mut out[r * n..(r + 1) * n];
        let mut sorted: Vec<F> = row.to_vec();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let hard = config.variant() == SmoothTopkVariant::SmoothHard
            && sorted[k - 1] - sorted[k] >= F::of(config.hard_threshold());
        if hard {
            smooth_topk_sample(config, r, row, label, Some(g), scale, &mut scratch).unwrap();
            continue;
        }
        let kt = F::of(k as f64 * tau);
        let u: Vec<F> = (0..n)
            .filter(|&c| c != label)
            .map(|c| row[c] / kt)
            .collect();
        let v = row[label] / kt;
        // log e_j(exp u), j = 0..=kp
        let mut s = vec![F::of(f64::NEG_INFINITY); kp + 1];
        s[0] = F::zero();
        for &x in &u {
            for j in (1..=kp).rev() {
                s[j] = add_log(s[j], s[j - 1] + x);
            }
        }
        let a = s[k] + F::of(1.0 / tau);
        let b = s[k - 1] + v;
        let m = if a > b { a } else { b };
        let (ea, eb) = ((a - m).exp(), (b - m).exp());
        let (sa, sb) = (ea / (ea + eb), eb / (ea + eb));
        let t = F::of(tau);
        let g_k = t * sa; // ∂loss/∂E_k
        let g_km1 = t * (sb - F::one()); // ∂loss/∂E_{k−1} and ∂loss/∂v
        let mut i = 0;
        for (c, slot) in g.iter_mut().enumerate() {
            if c == label {
                *slot = scale * (g_km1 / kt);
                continue;
            }
            let dkm1 = reference_d_log_e(&s, u[i], k - 1, p);
            let dk = reference_d_log_e(&s, u[i], k, p);
            *slot = scale * ((g_km1 * dkm1 + g_k * dk) / kt);
            i += 1;
        }
    }
    out
}

/// A small deterministic generator (SplitMix64) for the finite-difference rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [−1, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn sample_loss(config: &SmoothTopkConfig, x: &[f64], label: usize, scratch: &mut [f64]) -> f64 {
    smooth_topk_sample(config, 0, x, label, None, 1.0, scratch).unwrap()
}

/// Gap between the k-th and (k+1)-th largest, and the smallest gap between any two scores.
fn gaps(x: &[f64], k: usize) -> (f64, f64) {
    let mut sorted = x.to_vec();
    sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let min_gap = sorted
        .windows(2)
        .map(|w| w[0] - w[1])
        .fold(f64::INFINITY, f64::min);
    (sorted[k - 1] - sorted[k], min_gap)
}

#[test]
fn gradient_matches_finite_differences() {
    let mut rng = Rng(0x5EED_70B4);
    let mut checked = [0usize; 2];
    // (classes, k, tau, spread): smooth rows and, with a large spread, rows that switch to the
    // hard formula
    let settings = [
        (6, 1, 1.0, 3.0),
        (6, 2, 1.0, 3.0),
        (10, 5, 1.0, 3.0),
        (10, 5, 0.1, 3.0),
        (12, 3, 0.5, 2.0),
        (20, 5, 2.0, 5.0),
        (10, 5, 0.1, 60.0),
        (8, 3, 0.2, 40.0),
        (9, 8, 1.0, 3.0),
    ];
    for &(classes, k, tau, spread) in &settings {
        for variant in [SmoothTopkVariant::Smooth, SmoothTopkVariant::SmoothHard] {
            let config = SmoothTopkConfig::new(variant, classes, k, tau).unwrap();
            let mut scratch = vec![0.0; smooth_topk_scratch_len(&config)];
            let threshold = config.hard_threshold();
            // up to 4 rows of each kind (smooth formula, hard formula) per setting and variant
            let mut rows = [0usize; 2];
            let mut attempts = 0;
            while (rows[0] < 4 || rows[1] < 4) && attempts < 2000 {
                attempts += 1;
                let x: Vec<f64> = (0..classes).map(|_| spread * rng.uniform()).collect();
                let label = (rng.next() % classes as u64) as usize;
                let (gap, min_gap) = gaps(&x, k);
                // away from the hard/smooth switch and from ties
                let h = 1e-5 * spread.max(1.0);
                if (gap - threshold).abs() < 0.1 * threshold || min_gap < 1e3 * h {
                    continue;
                }
                let hard = variant == SmoothTopkVariant::SmoothHard && gap >= threshold;
                if rows[hard as usize] >= 4 {
                    continue;
                }
                let loss = sample_loss(&config, &x, label, &mut scratch);
                if hard && loss.abs() < 1e-3 {
                    continue; // the hinge's kink
                }
                let mut g = vec![f64::NAN; classes];
                let scale = 0.75;
                let with_gradient =
                    smooth_topk_sample(&config, 0, &x, label, Some(&mut g), scale, &mut scratch)
                        .unwrap();
                assert_eq!(with_gradient.to_bits(), loss.to_bits());
                let mut numeric = vec![0.0; classes];
                for i in 0..classes {
                    let mut xp = x.clone();
                    let mut xm = x.clone();
                    xp[i] += h;
                    xm[i] -= h;
                    let fp = sample_loss(&config, &xp, label, &mut scratch);
                    let fm = sample_loss(&config, &xm, label, &mut scratch);
                    numeric[i] = scale * (fp - fm) / (2.0 * h);
                }
                let error = relative_error(&g, &numeric);
                assert!(
                    error < 1e-6,
                    "{variant:?} n={classes} k={k} tau={tau} hard={hard}: analytic {g:?} vs \
                     numeric {numeric:?} (rel {error:.2e})"
                );
                // the gradient of log e_k is homogeneous: entries of a smooth row sum to 0
                if !hard {
                    let sum: f64 = g.iter().sum();
                    assert!(sum.abs() < 1e-12 * scale, "smooth gradient sums to {sum}");
                }
                checked[hard as usize] += 1;
                rows[hard as usize] += 1;
            }
            assert!(
                rows[0] + rows[1] > 0,
                "no suitable row for n={classes} k={k} tau={tau}"
            );
        }
    }
    println!(
        "finite differences: {} smooth rows and {} hard rows checked",
        checked[0], checked[1]
    );
    assert!(checked[0] >= 40 && checked[1] >= 8, "{checked:?}");
}

#[test]
fn the_batch_is_the_mean_of_the_rows() {
    let config = SmoothTopkConfig::new(SmoothTopkVariant::SmoothHard, 10, 5, 0.1).unwrap();
    let (logits, labels, classes) = inputs("n10_large");
    let mut scratch = vec![0.0; smooth_topk_scratch_len(&config)];
    let mut g = vec![0.0; logits.len()];
    let loss = smooth_topk_loss(&config, &logits, &labels, Some(&mut g), &mut scratch).unwrap();
    let batch = labels.len() as f64;
    let mut sum = 0.0;
    for (r, &label) in labels.iter().enumerate() {
        let mut row_g = vec![0.0; classes];
        let row = &logits[r * classes..(r + 1) * classes];
        sum += smooth_topk_sample(
            &config,
            r,
            row,
            label,
            Some(&mut row_g),
            1.0 / batch,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(&g[r * classes..(r + 1) * classes], &row_g[..]);
    }
    assert!((loss - sum / batch).abs() <= 1e-14 * loss.abs());
}

/// Whether `SmoothTopKLoss` (always smooth here) and `SmoothHardTopKLoss` can be told apart by
/// the golden values: on every input where the hard variant switches rows, both reference
/// classes give the same numbers, and so do both of our variants (the smooth formula equals the
/// hard one up to τ·exp(−gap/(kτ)) there).
#[test]
fn smooth_and_smooth_hard_agree_where_rows_switch() {
    for input in ["n10", "n100", "n10_large"] {
        let (logits, labels, classes) = inputs(input);
        for tau in [1.0, 0.1] {
            let smooth = SmoothTopkConfig::new(SmoothTopkVariant::Smooth, classes, 5, tau).unwrap();
            let hard =
                SmoothTopkConfig::new(SmoothTopkVariant::SmoothHard, classes, 5, tau).unwrap();
            let switched = logits
                .chunks(classes)
                .filter(|row| gaps(row, 5).0 >= hard.hard_threshold())
                .count();
            let (ls, gs) = evaluate(&smooth, &logits, &labels, false);
            let (lh, gh) = evaluate(&hard, &logits, &labels, false);
            let loss_difference = (ls - lh).abs();
            let gradient_difference = relative_error(&gs, &gh);
            println!(
                "{input} tau={tau}: {switched} of {} rows use the hard formula in SmoothHard; \
                 |loss difference| {loss_difference:.2e}, gradient difference {gradient_difference:.2e}",
                labels.len()
            );
            assert!(loss_difference <= 1e-12 * ls.abs().max(1.0));
            assert!(gradient_difference <= 1e-12);
        }
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    use SmoothTopkVariant::*;
    assert_eq!(
        SmoothTopkConfig::new(Smooth, 1, 1, 1.0),
        Err(Error::TooFewClasses { classes: 1 })
    );
    assert_eq!(
        SmoothTopkConfig::new(Smooth, 5, 0, 1.0),
        Err(Error::TopkLargerThanInputs { k: 0, inputs: 4 })
    );
    assert_eq!(
        SmoothTopkConfig::new(Smooth, 5, 5, 1.0),
        Err(Error::TopkLargerThanInputs { k: 5, inputs: 4 })
    );
    for tau in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            SmoothTopkConfig::new(SmoothHard, 5, 2, tau),
            Err(Error::InvalidTemperature { .. })
        ));
    }
    let message = SmoothTopkConfig::new(SmoothHard, 5, 2, 0.0)
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("temperature (tau) is 0,"), "{message}");
    let config = SmoothTopkConfig::new(SmoothHard, 4, 2, 1.0).unwrap();
    let need = smooth_topk_scratch_len(&config);
    let mut scratch = vec![0.0f64; need];
    let x = [0.5, -1.0, 2.0, 0.25];
    let mut g = [0.0; 4];
    assert_eq!(
        smooth_topk_sample(&config, 3, &x[..3], 0, None, 1.0, &mut scratch),
        Err(Error::LengthMismatch {
            what: "scores",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        smooth_topk_sample(&config, 3, &x, 0, Some(&mut g[..2]), 1.0, &mut scratch),
        Err(Error::LengthMismatch {
            what: "gradient",
            expected: 4,
            actual: 2
        })
    );
    assert_eq!(
        smooth_topk_sample(&config, 3, &x, 4, None, 1.0, &mut scratch),
        Err(Error::LabelOutOfRange {
            row: 3,
            label: 4,
            classes: 4
        })
    );
    assert_eq!(
        smooth_topk_sample(
            &config,
            3,
            &[0.5, f64::NAN, 2.0, 0.25],
            0,
            None,
            1.0,
            &mut scratch
        ),
        Err(Error::NonFiniteInput { row: 3, column: 1 })
    );
    assert_eq!(
        smooth_topk_sample(&config, 3, &x, 0, None, 1.0, &mut scratch[..need - 1]),
        Err(Error::ScratchTooSmall {
            what: "reals",
            needed: need,
            actual: need - 1
        })
    );
    let logits = [x, x].concat();
    assert_eq!(
        smooth_topk_loss(&config, &logits[..7], &[0, 1], None, &mut scratch),
        Err(Error::LengthMismatch {
            what: "logits",
            expected: 8,
            actual: 7
        })
    );
    assert_eq!(
        smooth_topk_loss(&config, &logits, &[0, 1], Some(&mut g), &mut scratch),
        Err(Error::LengthMismatch {
            what: "gradient",
            expected: 8,
            actual: 4
        })
    );
    assert_eq!(
        smooth_topk_loss(&config, &logits, &[0, 9], None, &mut scratch),
        Err(Error::LabelOutOfRange {
            row: 1,
            label: 9,
            classes: 4
        })
    );
    assert_eq!(
        smooth_topk_loss::<f64>(&config, &[], &[], None, &mut scratch),
        Err(Error::Empty {
            what: "batch rows (labels)"
        })
    );
    // scores whose exponentials overflow (even in f64) stay finite: everything is in log space
    let big = [1e4f32, -1e4, 0.0, 3.0];
    let mut scratch32 = vec![0.0f32; need];
    for variant in [Smooth, SmoothHard] {
        let config = SmoothTopkConfig::new(variant, 4, 2, 1.0).unwrap();
        let mut g = [f32::NAN; 4];
        let loss =
            smooth_topk_sample(&config, 0, &big, 1, Some(&mut g), 1.0, &mut scratch32).unwrap();
        assert!(
            loss.is_finite() && g.iter().all(|v| v.is_finite()),
            "{loss} {g:?}"
        );
    }
}

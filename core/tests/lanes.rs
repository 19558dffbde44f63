//! The batch API runs rows side by side in SIMD lanes (`LANES` rows at once, with an AVX2 build
//! chosen at run time): every network method, SoftSort, and NeuralSort up to 256 sorted inputs. It
//! must give, row for row, exactly the bits of the one-row kernel `loss::sample_loss`, for every
//! method, relaxation, top-1 mode, m and batch size (including batches that do not fill the last
//! group of lanes).

use difftopk_core::loss::{sample_loss, Scratch};
use difftopk_core::{Method, Real, Relaxation, Top1Mode, TopkLoss, TopkLossConfig};
use proptest::prelude::*;

mod common;

fn check<F: Real>(loss: &TopkLoss, logits: &[F], labels: &[usize]) {
    let classes = loss.config().classes();
    let batch = labels.len();
    let scale = F::one() / F::of(batch as f64);
    // NaN before the call: every entry must be written (the classes the preselection leaves
    // out get zeros).
    let mut gradient = vec![F::of(f64::NAN); logits.len()];
    loss.forward_backward(logits, labels, Some(&mut gradient))
        .unwrap();
    let mut losses = vec![F::zero(); batch];
    loss.per_row_losses(logits, labels, &mut losses).unwrap();
    let size = loss.scratch_size();
    let (mut reals, mut indices) = (vec![F::zero(); size.reals], vec![0u32; size.indices]);
    let network = loss.network().map(|n| n.as_ref());
    for row in 0..batch {
        let mut expected = vec![F::zero(); classes];
        let value = sample_loss(
            loss.config(),
            network.as_ref(),
            row,
            &logits[row * classes..(row + 1) * classes],
            labels[row],
            Some(&mut expected),
            scale,
            Scratch {
                reals: &mut reals,
                indices: &mut indices,
            },
        )
        .unwrap();
        assert_eq!(
            value.as_f64().to_bits(),
            losses[row].as_f64().to_bits(),
            "row {row} loss"
        );
        for (column, (a, e)) in gradient[row * classes..(row + 1) * classes]
            .iter()
            .zip(&expected)
            .enumerate()
        {
            assert_eq!(
                a.as_f64().to_bits(),
                e.as_f64().to_bits(),
                "row {row} column {column}"
            );
        }
    }
}

/// `count` uniform logits in [−4, 4) from `seed`, every `tie_every`-th (offset 3) set to 0.5 so
/// that rows hold exact ties.
fn random_logits(count: usize, seed: u64, tie_every: usize) -> Vec<f64> {
    let mut next = common::uniform_stream(seed);
    (0..count)
        .map(|i| if i % tie_every == 3 { 0.5 } else { next() })
        .collect()
}

/// [`check`] on the f64 logits and on them rounded to f32.
fn check_f64_and_f32(loss: &TopkLoss, values: &[f64], labels: &[usize]) {
    check::<f64>(loss, values, labels);
    let values32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    check::<f32>(loss, &values32, labels);
}

fn relaxation(index: usize) -> Relaxation {
    [
        Relaxation::Logistic,
        Relaxation::LogisticPhi { lambda: 0.5 },
        Relaxation::LogisticPhi { lambda: 0.25 },
        Relaxation::LogisticPhi { lambda: 0.3 },
        Relaxation::Gaussian,
        Relaxation::Reciprocal,
        Relaxation::Cauchy,
        Relaxation::Optimal,
    ][index]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn lanes_equal_the_one_row_kernel(
        method in 0usize..6,
        relaxation_index in 0usize..8,
        mode in 0usize..3,
        classes in 6usize..40,
        batch in 1usize..20,
        preselect in any::<bool>(),
        beta in 0.3f64..4.0,
        seed in any::<u64>(),
        ties in any::<bool>(),
    ) {
        let method = [Method::OddEven, Method::Bitonic, Method::BitonicAnySize, Method::SplitterSelection, Method::NeuralSort, Method::SoftSort][method];
        let mode = [Top1Mode::Softmax, Top1Mode::SoftmaxCrossEntropy, Top1Mode::Sort][mode];
        let m = (preselect && classes > 6).then_some(5 + classes / 3).filter(|&m| m < classes);
        let config = TopkLossConfig::new(method, classes, &[0.4, 0.1, 0.5]).unwrap()
            .with_relaxation(relaxation(relaxation_index)).unwrap()
            .with_inverse_temperature(beta).unwrap()
            .with_preselection(m).unwrap()
            .with_top1_mode(mode);
        let loss = TopkLoss::new(config).unwrap();
        // Rows with exact ties, or (almost surely) none: NeuralSort's lanes take a shorter path
        // where no lane has a tie.
        let values = random_logits(batch * classes, seed, if ties { 7 } else { usize::MAX });
        let labels: Vec<usize> = (0..batch).map(|b| (b * 5 + seed as usize % 3) % classes).collect();
        check_f64_and_f32(&loss, &values, &labels);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Long rows for the relaxed permutations: NeuralSort's order counted over all pairs (up to
    /// 256 sorted inputs in lanes, the sort beyond) and its rows in sorted order with whole
    /// blocks of flushed exponentials, SoftSort's K rows.
    #[test]
    fn lanes_equal_the_one_row_kernel_on_long_rows(
        neuralsort in any::<bool>(),
        classes in 60usize..300,
        batch in 1usize..12,
        preselect in any::<bool>(),
        beta in 0.3f64..4.0,
        seed in any::<u64>(),
        ties in any::<bool>(),
    ) {
        let method = if neuralsort { Method::NeuralSort } else { Method::SoftSort };
        let m = preselect.then_some(classes / 2);
        let config = TopkLossConfig::new(method, classes, &[0.5, 0.0, 0.0, 0.0, 0.5]).unwrap()
            .with_inverse_temperature(beta).unwrap()
            .with_preselection(m).unwrap();
        let loss = TopkLoss::new(config).unwrap();
        let values = random_logits(batch * classes, seed, if ties { 11 } else { usize::MAX });
        let labels: Vec<usize> = (0..batch).map(|b| (b * 37 + seed as usize % 5) % classes).collect();
        check_f64_and_f32(&loss, &values, &labels);
    }
}

/// K = 16, the largest K of the lanes' small per-rank arrays, and K = 17, which takes their
/// `MAX_K`-sized build: both equal the one-row kernel, for every family and with and without m.
#[test]
fn the_largest_k_in_lanes_and_beyond_equal_the_one_row_kernel() {
    for k in [16usize, 17] {
        let distribution: Vec<f64> = (0..k).map(|_| 1.0 / k as f64).collect();
        for method in [
            Method::SplitterSelection,
            Method::NeuralSort,
            Method::SoftSort,
        ] {
            for m in [None, Some(k + 3)] {
                let classes = k + 9;
                let config = TopkLossConfig::new(method, classes, &distribution)
                    .unwrap()
                    .with_preselection(m)
                    .unwrap();
                let loss = TopkLoss::new(config).unwrap();
                let batch = 11;
                let values = random_logits(batch * classes, 7 + k as u64, 5);
                let labels: Vec<usize> = (0..batch).map(|b| (b * 3) % classes).collect();
                check_f64_and_f32(&loss, &values, &labels);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// NeuralSort's chained rows (rows K−2, …, 0 made from the row below where a row's spread
    /// allows): groups whose rows have spreads within and far beyond the chain's reach (direct
    /// lanes beside chained ones, in f32 and in f64), rows with one far larger logit (entries
    /// that come back from a flush), odd and even lengths, with and without m, equal the
    /// one-row kernel.
    #[test]
    fn neuralsort_chained_and_direct_rows_equal_the_one_row_kernel(
        classes in 3usize..40,
        k in 1usize..6,
        batch in 1usize..20,
        preselect in any::<bool>(),
        beta in 0.05f64..8.0,
        seed in any::<u64>(),
        outlier in 0.0f64..40.0,
    ) {
        let k = k.min(classes - 1);
        let distribution: Vec<f64> = (0..k).map(|_| 1.0 / k as f64).collect();
        let m = (preselect && classes > k + 2).then_some((k + 1 + classes) / 2).filter(|&m| m < classes);
        let config = TopkLossConfig::new(Method::NeuralSort, classes, &distribution).unwrap()
            .with_inverse_temperature(beta).unwrap()
            .with_preselection(m).unwrap();
        let loss = TopkLoss::new(config).unwrap();
        let mut values = random_logits(batch * classes, seed, usize::MAX);
        for (row, logits) in values.chunks_exact_mut(classes).enumerate() {
            let scale = [1.0, 0.01, 30.0, 300.0][(row + seed as usize) % 4];
            logits.iter_mut().for_each(|v| *v *= scale);
            logits[(row * 3 + 1) % classes] += outlier;
        }
        let labels: Vec<usize> = (0..batch).map(|b| (b * 7 + seed as usize % 5) % classes).collect();
        check_f64_and_f32(&loss, &values, &labels);
    }
}

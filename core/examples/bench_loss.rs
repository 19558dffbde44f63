//! Prints one JSON line per configuration: median microseconds of one forward + backward of the
//! top-k loss over a batch, and of plain softmax cross-entropy on the same batch, measured in
//! this process, plus the ratio to the PyTorch reference where `reference-timings.md` has a
//! figure (batch 128, one thread).
//!
//! `cargo run --release -p difftopk-core --features rayon --example bench_loss [SECONDS] [METHOD]`
//! (SECONDS per measurement, 0.3 by default; METHOD: only the methods whose name contains it).

use difftopk_core::{
    softmax_cross_entropy, Method, Relaxation, Top1Mode, TopkLoss, TopkLossConfig,
};
use std::time::Instant;

mod support;
use support::random_logits;

/// PyTorch reference, batch 128, one thread, milliseconds (spec/reference-timings.md).
fn reference_ms(method: Method, n: usize, m: Option<usize>) -> Option<f64> {
    let column = match method {
        Method::SplitterSelection => 0,
        Method::OddEven => 1,
        Method::Bitonic => 2,
        Method::SoftSort => 3,
        Method::NeuralSort => 4,
        Method::BitonicAnySize => return None,
    };
    let row: [f64; 5] = match (n, m) {
        (100, Some(16)) => [11.0, 25.0, 19.9, 3.0, 2.2],
        (1000, Some(16)) => [16.7, 31.6, 27.6, 6.6, 6.2],
        (100, None) => [62.6, 1288.1, 91.5, 10.8, 26.5],
        _ => return None,
    };
    Some(row[column])
}

fn median_us(mut run: impl FnMut(), budget_s: f64) -> f64 {
    run(); // warm-up
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed().as_secs_f64() < budget_s && samples.len() < 2000) {
        let t = Instant::now();
        run();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn main() {
    let budget = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.3);
    let only = std::env::args().nth(2);
    let all_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let methods = [
        Method::SplitterSelection,
        Method::OddEven,
        Method::Bitonic,
        Method::BitonicAnySize,
        Method::SoftSort,
        Method::NeuralSort,
    ];
    let pool_all = rayon::ThreadPoolBuilder::new()
        .num_threads(all_threads)
        .build()
        .unwrap();
    for &(n, m) in &[(100usize, Some(16usize)), (1000, Some(16)), (100, None)] {
        for &batch in &[128usize, 4096] {
            let logits = random_logits(batch * n, (n * 31 + batch) as u64);
            let labels: Vec<usize> = (0..batch).map(|b| (b * 7919) % n).collect();
            let mut gradient = vec![0f32; batch * n];
            for &threads in &[1usize, all_threads] {
                let ce_us = median_us(
                    || {
                        softmax_cross_entropy(&logits, &labels, n, Some(&mut gradient)).unwrap();
                    },
                    budget,
                );
                for &method in &methods {
                    if only
                        .as_deref()
                        .is_some_and(|only| !method.name().contains(only))
                    {
                        continue;
                    }
                    let config = TopkLossConfig::new(method, n, &[0.5, 0.0, 0.0, 0.0, 0.5])
                        .unwrap()
                        .with_relaxation(Relaxation::LogisticPhi { lambda: 0.5 })
                        .unwrap()
                        .with_inverse_temperature(1.0)
                        .unwrap()
                        .with_preselection(m)
                        .unwrap()
                        .with_top1_mode(Top1Mode::Softmax);
                    let loss = TopkLoss::new(config).unwrap();
                    let us = if threads == 1 {
                        median_us(
                            || {
                                loss.forward_backward(&logits, &labels, Some(&mut gradient))
                                    .unwrap();
                            },
                            budget,
                        )
                    } else {
                        pool_all.install(|| {
                            median_us(
                                || {
                                    loss.forward_backward_parallel(
                                        &logits,
                                        &labels,
                                        Some(&mut gradient),
                                    )
                                    .unwrap();
                                },
                                budget,
                            )
                        })
                    };
                    let reference = if batch == 128 && threads == 1 {
                        reference_ms(method, n, m)
                    } else {
                        None
                    };
                    emit(&format!(
                        "{{\"method\":\"{}\",\"n\":{n},\"m\":{},\"batch\":{batch},\"threads\":{threads},\"median_us\":{us:.1},\"softmax_ce_us\":{ce_us:.1},\"ratio_to_softmax_ce\":{:.2}{}}}",
                        method.name(),
                        m.map_or("null".to_string(), |m| m.to_string()),
                        us / ce_us,
                        reference.map_or(String::new(), |r| format!(
                            ",\"reference_ms\":{r},\"speedup_vs_reference\":{:.0}",
                            r * 1000.0 / us
                        ))
                    ));
                }
            }
        }
    }
}

/// Writes one line to standard output; a closed pipe (`| head`) ends the run quietly instead of
/// panicking as `println!` does.
fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

//! Times one configuration of the batch loss (forward + backward, f32, one thread) in chunks of
//! 100 calls and prints the best chunk's time per call: a figure for comparing two builds in
//! alternating runs on a noisy machine, and a steady loop to run under `perf record`.
//!
//! `cargo run --release -p difftopk-core --example profile_loss -- METHOD N M [CALLS]`
//!
//! METHOD is `splitter_selection`, `odd_even`, `bitonic`, `bitonic_any_size`, `softsort` or
//! `neuralsort`; M is a number (the preselection) or `all`; CALLS is 20 000 by default. The
//! environment variable `BATCH` sets the batch (128 by default: batch 4096 puts the logits
//! beyond L2, where a change can behave otherwise). The settings are those of `bench_loss`:
//! logistic_phi λ = ½, β = 1, P_K = [.5, 0, 0, 0, .5], `sm`, labels `(row · 7919) mod N`, and
//! its logits (seed `31·N + BATCH`).

use difftopk_core::{Method, Relaxation, Top1Mode, TopkLoss, TopkLossConfig};
use std::time::Instant;

mod support;
use support::random_logits;

fn usage() -> ! {
    eprintln!(
        "usage: profile_loss METHOD N M [CALLS]   (M a number or `all`; BATCH=... sets the batch)"
    );
    std::process::exit(2)
}

fn main() -> Result<(), difftopk_core::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        usage();
    }
    let method = Method::from_name(&args[0]).unwrap_or_else(|_| usage());
    let n: usize = args[1].parse().unwrap_or_else(|_| usage());
    let m: Option<usize> = match args[2].as_str() {
        "all" => None,
        value => Some(value.parse().unwrap_or_else(|_| usage())),
    };
    let calls: usize = match args.get(3) {
        Some(value) => value.parse().unwrap_or_else(|_| usage()),
        None => 20_000,
    };
    let batch: usize = match std::env::var("BATCH") {
        Ok(value) => value.parse().unwrap_or_else(|_| usage()),
        Err(_) => 128,
    };
    // (The logits of `bench_loss` for this n and batch.)
    let logits = random_logits(batch * n, (n * 31 + batch) as u64);
    let labels: Vec<usize> = (0..batch).map(|row| (row * 7919) % n).collect();
    let mut gradient = vec![0f32; batch * n];
    let config = TopkLossConfig::new(method, n, &[0.5, 0.0, 0.0, 0.0, 0.5])?
        .with_relaxation(Relaxation::LogisticPhi { lambda: 0.5 })?
        .with_inverse_temperature(1.0)?
        .with_preselection(m)?
        .with_top1_mode(Top1Mode::Softmax);
    let loss = TopkLoss::new(config)?;
    let mut total = 0.0f32;
    let mut best = f64::INFINITY;
    for _ in 0..calls.div_ceil(100) {
        let start = Instant::now();
        for _ in 0..100 {
            total += loss.forward_backward(&logits, &labels, Some(&mut gradient))?;
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / 100.0);
    }
    println!(
        "{} n={n} m={} batch={batch}: {best:.1} µs per call (best of {} chunks of 100; loss sum {total})",
        args[0],
        args[2],
        calls.div_ceil(100)
    );
    Ok(())
}

//! Times the preselection (the `count` largest logits of a row beside its label) on fresh rows
//! of roughly normal logits, through `largest_indices` (the AVX2 code for f32 where the CPU has
//! it) and through the portable code alone, in the same process; prints one JSON line per row
//! length with nanoseconds per row and their ratio.
//!
//! `cargo run --release -p difftopk-core --features std --example bench_select [SECONDS]`

use difftopk_core::select::{largest_indices, largest_indices_portable};
use std::time::Instant;

fn rows(count: usize, n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count * n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut s = 0.0f32;
            for shift in [0, 16, 32, 48] {
                s += ((state >> shift) & 0xFFFF) as f32 / 65535.0;
            }
            (s - 2.0) * 3.464
        })
        .collect()
}

/// Median nanoseconds per row of `select` over all rows, repeated for `budget` seconds.
/// A selection function (`largest_indices` or its portable form).
type Selection = fn(&[f32], Option<usize>, &mut [u32]) -> Result<(), difftopk_core::Error>;

fn median_ns(logits: &[f32], n: usize, budget: f64, select: Selection) -> f64 {
    let rows = logits.len() / n;
    let mut out = [0u32; 15];
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || start.elapsed().as_secs_f64() < budget {
        let t = Instant::now();
        for (row, values) in logits.chunks_exact(n).enumerate() {
            select(values, Some((row * 7919) % n), &mut out).expect("15 of n > 15");
            std::hint::black_box(&out);
        }
        samples.push(t.elapsed().as_secs_f64() * 1e9 / rows as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn main() {
    let budget = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.5);
    for n in [100usize, 1000] {
        // 2048 rows: more than the caches hold at n = 1000, as in a training batch.
        let logits = rows(2048, n, n as u64);
        let fast = median_ns(&logits, n, budget, largest_indices);
        let portable = median_ns(&logits, n, budget, largest_indices_portable);
        emit(&format!(
            "{{\"n\":{n},\"count\":15,\"largest_indices_ns\":{fast:.1},\"portable_ns\":{portable:.1},\"ratio\":{:.2}}}",
            portable / fast
        ));
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

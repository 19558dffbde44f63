//! Criterion benchmark: forward + backward of the top-k loss against plain softmax cross-entropy
//! on the same batch (batch 128, the paper's ImageNet-head setting).
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use difftopk_core::{softmax_cross_entropy, Method, Relaxation, TopkLoss, TopkLossConfig};

fn logits(count: usize) -> Vec<f32> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let batch = 128;
    for (n, m) in [(100usize, Some(16usize)), (1000, Some(16)), (100, None)] {
        let x = logits(batch * n);
        let labels: Vec<usize> = (0..batch).map(|b| (b * 7919) % n).collect();
        let mut gradient = vec![0f32; batch * n];
        let mut group = c.benchmark_group(format!("n{n}_m{}", m.map_or(0, |m| m)));
        group.bench_function("softmax_cross_entropy", |b| {
            b.iter(|| softmax_cross_entropy(black_box(&x), &labels, n, Some(&mut gradient)))
        });
        for method in [
            Method::SplitterSelection,
            Method::Bitonic,
            Method::OddEven,
            Method::NeuralSort,
            Method::SoftSort,
        ] {
            let config = TopkLossConfig::new(method, n, &[0.5, 0.0, 0.0, 0.0, 0.5])
                .unwrap()
                .with_relaxation(Relaxation::LogisticPhi { lambda: 0.5 })
                .unwrap()
                .with_preselection(m)
                .unwrap();
            let loss = TopkLoss::new(config).unwrap();
            group.bench_function(method.name(), |b| {
                b.iter(|| loss.forward_backward(black_box(&x), &labels, Some(&mut gradient)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

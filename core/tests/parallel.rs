//! `forward_backward_parallel` gives the single-threaded call's bits (loss and gradient), for
//! every method, both row paths, batch sizes that do and do not split evenly, on 1 to 4 threads.
#![cfg(feature = "rayon")]

use difftopk_core::{Method, Relaxation, TopkLoss, TopkLossConfig};

mod common;
use common::uniform_logits as logits;

#[test]
fn parallel_equals_single_threaded_bit_for_bit() {
    let mut configs = Vec::new();
    for method in [
        Method::SplitterSelection,
        Method::OddEven,
        Method::Bitonic,
        Method::BitonicAnySize,
        Method::NeuralSort,
        Method::SoftSort,
    ] {
        let config = TopkLossConfig::new(method, 30, &[0.4, 0.2, 0.4])
            .unwrap()
            .with_relaxation(Relaxation::Cauchy)
            .unwrap()
            .with_preselection(Some(9))
            .unwrap();
        configs.push(config);
    }
    // NeuralSort on 300 sorted inputs runs one row at a time.
    configs.push(TopkLossConfig::new(Method::NeuralSort, 300, &[0.5, 0.5]).unwrap());
    for config in configs {
        let loss = TopkLoss::new(config).unwrap();
        let classes = loss.config().classes();
        for batch in [1usize, 7, 64, 203] {
            let x = logits(batch * classes, (batch * 13 + classes) as u64);
            let labels: Vec<usize> = (0..batch).map(|b| (b * 11) % classes).collect();
            let mut expected_gradient = vec![0.0; x.len()];
            let expected = loss
                .forward_backward(&x, &labels, Some(&mut expected_gradient))
                .unwrap();
            for threads in 1..=4 {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut gradient = vec![f64::NAN; x.len()];
                let value = pool.install(|| {
                    loss.forward_backward_parallel(&x, &labels, Some(&mut gradient))
                        .unwrap()
                });
                let name = loss.config().method().name();
                assert_eq!(value.to_bits(), expected.to_bits(), "{name}, batch {batch}");
                for (a, b) in gradient.iter().zip(&expected_gradient) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{name}, batch {batch}");
                }
                let without = pool.install(|| loss.forward_backward_parallel(&x, &labels, None));
                assert_eq!(without.unwrap().to_bits(), expected.to_bits());
            }
        }
    }
}

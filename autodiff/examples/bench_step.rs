//! One dfdx training step of a linear head (forward, loss, backward, AdamW) with the top-k loss
//! against the same step with dfdx's `cross_entropy_with_logits_loss`, same process, same data
//! (random), medians over repeated steps. Prints a table; the ratio is what the issue bounds
//! (the top-k loss may add at most 50 %).
//!
//! `cargo run --release -p difftopk-autodiff --example bench_step [STEPS]`

use std::time::Instant;

use difftopk_autodiff::dfdx::prelude::*;
use difftopk_autodiff::{
    softmax_cross_entropy, topk_cross_entropy, AdamW, AdamWConfig, RuntimeLinear,
};
use difftopk_core::{Method, TopkLoss, TopkLossConfig};

#[derive(Clone, Copy, PartialEq)]
enum Loss {
    DfdxCrossEntropy,
    OurCrossEntropy,
    Topk,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = std::env::args().nth(1).map_or(Ok(20), |s| s.parse())?;
    let device = Cpu::default();
    println!(
        "threads: {}, steps per measurement: {steps} (median)",
        rayon::current_num_threads()
    );
    println!("| batch | D → C | dfdx CE step (ms) | our CE step (ms) | top-k step (ms) | top-k / dfdx CE |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (batch, dimension, classes) in [(500usize, 384usize, 77usize), (500, 2048, 1000)] {
        let x: Tensor<(usize, usize), f32, Cpu> = device.sample_normal_like(&(batch, dimension));
        let labels: Vec<usize> = (0..batch).map(|i| (i * 7919) % classes).collect();
        let mut one_hot = vec![0f32; batch * classes];
        for (row, &label) in labels.iter().enumerate() {
            one_hot[row * classes + label] = 1.0;
        }
        let targets = device.tensor_from_vec(one_hot, (batch, classes));
        let config = TopkLossConfig::new(
            Method::SplitterSelection,
            classes,
            &[0.5, 0.0, 0.0, 0.0, 0.5],
        )?
        .with_preselection(Some(16))?;
        let topk = TopkLoss::new(config)?;
        let mut medians = Vec::new();
        for loss_kind in [Loss::DfdxCrossEntropy, Loss::OurCrossEntropy, Loss::Topk] {
            let mut linear = RuntimeLinear::<f32>::new(&device, dimension, classes, 1)?;
            let mut optimiser = AdamW::new(AdamWConfig {
                learning_rate: 1e-3,
                ..Default::default()
            })?;
            let mut times = Vec::new();
            for step in 0..steps + 3 {
                let started = Instant::now();
                let logits = linear.forward(x.clone().traced(linear.alloc_grads()?))?;
                let loss = match loss_kind {
                    Loss::DfdxCrossEntropy => {
                        cross_entropy_with_logits_loss(logits, targets.clone())
                    }
                    Loss::OurCrossEntropy => softmax_cross_entropy(logits, &labels)?,
                    Loss::Topk => topk_cross_entropy(logits, &labels, &topk)?,
                };
                let mut gradients = loss.backward();
                optimiser.update_linear(&mut linear, &mut gradients)?;
                if step >= 3 {
                    times.push(started.elapsed().as_secs_f64() * 1e3);
                }
            }
            medians.push(median(times));
        }
        println!(
            "| {batch} | {dimension} → {classes} | {:.2} | {:.2} | {:.2} | {:.2}× |",
            medians[0],
            medians[1],
            medians[2],
            medians[2] / medians[0]
        );
    }
    Ok(())
}

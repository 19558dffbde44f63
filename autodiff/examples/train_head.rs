//! Trains two linear heads on the bundled Banking77 sentence embeddings (77 intents, 384-d) with
//! dfdx: one with the top-k cross-entropy loss (the paper's ImageNet head settings: splitter
//! selection, P_K = [.5, 0, 0, 0, .5], m = 16, logistic_phi λ = .5, β = 1), one with softmax
//! cross-entropy, same budget (AdamW, lr 0.05 with cosine decay, batch 128, 20 epochs), and prints
//! test top-1 and top-5 per epoch.
//!
//! `cargo run --release -p difftopk-autodiff --example train_head [DATA_DIR]`

use difftopk_autodiff::dfdx::prelude::*;
use difftopk_autodiff::{
    softmax_cross_entropy, topk_cross_entropy, AdamW, AdamWConfig, RuntimeLinear,
};
use difftopk_core::{Method, Relaxation, TopkLoss, TopkLossConfig};
use difftopk_io::{read_labels, Embeddings};

const EPOCHS: usize = 20;
const BATCH: usize = 128;
const LEARNING_RATE: f64 = 0.05;

struct Split {
    x: Vec<f32>,
    y: Vec<usize>,
    dimension: usize,
}

fn load(directory: &str, name: &str) -> Result<Split, Box<dyn std::error::Error>> {
    let embeddings = Embeddings::open(&format!("{directory}/X_{name}.npy"))?;
    Ok(Split {
        x: embeddings.load()?,
        y: read_labels(&format!("{directory}/y_{name}.npy"))?,
        dimension: embeddings.dimension(),
    })
}

/// Top-1 and top-5 accuracy (ties to the lower class index).
fn accuracy(
    linear: &RuntimeLinear<f32>,
    device: &Cpu,
    split: &Split,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let rows = split.y.len();
    let input = device.tensor_from_vec(split.x.clone(), (rows, split.dimension));
    let scores = linear.forward(input)?.as_vec();
    let classes = linear.outputs();
    let (mut top1, mut top5) = (0, 0);
    for (row, &label) in scores.chunks_exact(classes).zip(&split.y) {
        let rank = row
            .iter()
            .enumerate()
            .filter(|&(j, &s)| s > row[label] || (s == row[label] && j < label))
            .count();
        top1 += usize::from(rank < 1);
        top5 += usize::from(rank < 5);
    }
    Ok((top1 as f64 / rows as f64, top5 as f64 / rows as f64))
}

/// A seeded permutation (SplitMix64 + Fisher–Yates).
fn shuffled(count: usize, seed: u64) -> Vec<usize> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..count).collect();
    for i in (1..count).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../data/banking77").to_string());
    let (train, test) = (load(&directory, "train")?, load(&directory, "test")?);
    let classes = train.y.iter().chain(&test.y).max().map_or(0, |m| m + 1);
    let config = TopkLossConfig::new(
        Method::SplitterSelection,
        classes,
        &[0.5, 0.0, 0.0, 0.0, 0.5],
    )?
    .with_relaxation(Relaxation::LogisticPhi { lambda: 0.5 })?
    .with_inverse_temperature(1.0)?
    .with_preselection(Some(16))?;
    let topk = TopkLoss::new(config)?;
    let device = Cpu::default();
    let mut heads = Vec::new();
    for _ in 0..2 {
        heads.push((
            RuntimeLinear::<f32>::new(&device, train.dimension, classes, 0)?,
            AdamW::new(AdamWConfig {
                learning_rate: LEARNING_RATE,
                weight_decay: 0.0,
                ..Default::default()
            })?,
        ));
    }
    let steps_per_epoch = train.y.len().div_ceil(BATCH);
    let total_steps = (steps_per_epoch * EPOCHS) as f64;
    println!(
        "Banking77: {} train / {} test rows, {} classes, D = {}",
        train.y.len(),
        test.y.len(),
        classes,
        train.dimension
    );
    println!(
        "{:>5}  {:>14}  {:>14}  {:>14}  {:>14}",
        "epoch", "top-k: top-1", "top-k: top-5", "CE: top-1", "CE: top-5"
    );
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for epoch in 1..=EPOCHS {
        let order = shuffled(train.y.len(), epoch as u64);
        for (step, batch) in order.chunks(BATCH).enumerate() {
            let progress = ((epoch - 1) * steps_per_epoch + step) as f64 / total_steps;
            x.clear();
            y.clear();
            for &row in batch {
                x.extend_from_slice(&train.x[row * train.dimension..(row + 1) * train.dimension]);
                y.push(train.y[row]);
            }
            for (index, (linear, optimiser)) in heads.iter_mut().enumerate() {
                let input = device.tensor_from_vec(x.clone(), (batch.len(), train.dimension));
                let logits = linear.forward(input.traced(linear.alloc_grads()?))?;
                let loss = if index == 0 {
                    topk_cross_entropy(logits, &y, &topk)?
                } else {
                    softmax_cross_entropy(logits, &y)?
                };
                let mut gradients = loss.backward();
                optimiser.set_learning_rate(
                    0.5 * LEARNING_RATE * (1.0 + (std::f64::consts::PI * progress).cos()),
                )?;
                optimiser.update_linear(linear, &mut gradients)?;
            }
        }
        let (k1, k5) = accuracy(&heads[0].0, &device, &test)?;
        let (c1, c5) = accuracy(&heads[1].0, &device, &test)?;
        println!(
            "{epoch:>5}  {:>13.2}%  {:>13.2}%  {:>13.2}%  {:>13.2}%",
            100.0 * k1,
            100.0 * k5,
            100.0 * c1,
            100.0 * c5
        );
    }
    Ok(())
}

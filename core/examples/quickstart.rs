//! The top-k cross-entropy loss and its gradient for a small batch, in the paper's ImageNet-head
//! setting (splitter selection, logistic_phi λ = ½, β = 1, P_K = [.5, 0, 0, 0, .5], m = 16,
//! top-1 mode `sm`), beside plain softmax cross-entropy.
//!
//! `cargo run --release -p difftopk-core --example quickstart`

use difftopk_core::{
    softmax_cross_entropy, Method, Relaxation, Top1Mode, TopkLoss, TopkLossConfig,
};

fn main() -> Result<(), difftopk_core::Error> {
    let classes = 20;
    let config = TopkLossConfig::new(
        Method::SplitterSelection,
        classes,
        &[0.5, 0.0, 0.0, 0.0, 0.5],
    )?
    .with_relaxation(Relaxation::LogisticPhi { lambda: 0.5 })?
    .with_inverse_temperature(1.0)?
    .with_preselection(Some(16))?
    .with_top1_mode(Top1Mode::Softmax);
    let loss = TopkLoss::new(config)?;
    let network = loss.network().expect("a sorting network");
    println!(
        "splitter selection network for m = 16, K = 5: {} layers, {} comparators",
        network.num_layers(),
        network.num_comparators()
    );

    // Three samples: the true class ranks 1st, 4th and 12th.
    let mut logits = vec![0.0f32; 3 * classes];
    for (row, chunk) in logits.chunks_exact_mut(classes).enumerate() {
        for (class, value) in chunk.iter_mut().enumerate() {
            *value = ((class * 7 + row * 3) % classes) as f32 * 0.25 - 2.0;
        }
    }
    let rank_of = |row: &[f32], label: usize| row.iter().filter(|&&v| v > row[label]).count() + 1;
    let labels: Vec<usize> = (0..3)
        .map(|row| {
            let chunk = &logits[row * classes..(row + 1) * classes];
            (0..classes)
                .find(|&c| rank_of(chunk, c) == [1, 4, 12][row])
                .unwrap()
        })
        .collect();

    let mut gradient = vec![0.0f32; logits.len()];
    let value = loss.forward_backward(&logits, &labels, Some(&mut gradient))?;
    let mut ce_gradient = vec![0.0f32; logits.len()];
    let ce = softmax_cross_entropy(&logits, &labels, classes, Some(&mut ce_gradient))?;
    println!("top-k loss (mean over 3 rows): {value:.6}   softmax cross-entropy: {ce:.6}");
    for (row, &label) in labels.iter().enumerate() {
        let g = &gradient[row * classes..(row + 1) * classes];
        println!(
            "row {row}: label {label:2} (rank {:2})  d loss / d logit[label] = {:+.5}  (cross-entropy {:+.5})",
            rank_of(&logits[row * classes..(row + 1) * classes], label),
            g[label],
            ce_gradient[row * classes + label]
        );
        let shown: Vec<String> = g.iter().map(|v| format!("{v:+.4}")).collect();
        println!("       gradient row: [{}]", shown.join(", "));
    }
    Ok(())
}

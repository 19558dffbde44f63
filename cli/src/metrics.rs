//! Top-k accuracy of logits against labels.

/// The rank of the true class in a row of scores: how many classes score strictly higher, plus
/// how many of lower index score the same (ties go to the lower index, deterministically).
/// The prediction is correct at k when `rank < k`.
/// A non-finite score for the true class ranks last (never counted correct).
pub fn rank_of_label(scores: &[f32], label: usize) -> usize {
    let target = scores[label];
    if !target.is_finite() {
        return usize::MAX;
    }
    scores
        .iter()
        .enumerate()
        .filter(|&(j, &s)| s > target || (s == target && j < label))
        .count()
}

/// Counts of correct predictions at each k of `ks`, accumulated over batches.
#[derive(Clone, Debug)]
pub struct TopkCounter {
    ks: Vec<usize>,
    correct: Vec<u64>,
    total: u64,
}

impl TopkCounter {
    /// A counter for the given k (each ≥ 1).
    pub fn new(ks: &[usize]) -> Self {
        TopkCounter {
            ks: ks.to_vec(),
            correct: vec![0; ks.len()],
            total: 0,
        }
    }

    /// Adds a batch of row-major `(rows, classes)` logits.
    pub fn add(&mut self, logits: &[f32], labels: &[usize], classes: usize) {
        for (row, &label) in logits.chunks_exact(classes).zip(labels) {
            let rank = rank_of_label(row, label);
            for (count, &k) in self.correct.iter_mut().zip(&self.ks) {
                if rank < k {
                    *count += 1;
                }
            }
            self.total += 1;
        }
    }

    /// `(k, accuracy as a fraction)` pairs.
    pub fn accuracies(&self) -> Vec<(usize, f64)> {
        self.ks
            .iter()
            .zip(&self.correct)
            .map(|(&k, &c)| (k, c as f64 / self.total.max(1) as f64))
            .collect()
    }
}

/// The k reported: top-1 .. top-5 (up to the class count: beyond it there is nothing to rank)
/// plus any extra `--k`, sorted and deduplicated; an extra k outside 1..classes is an error.
pub fn report_ks(extra: &[usize], classes: usize) -> crate::error::CliResult<Vec<usize>> {
    if let Some(&k) = extra.iter().find(|&&k| k == 0 || k > classes) {
        return Err(crate::error::CliError(format!(
            "--k {k}: each k must be between 1 and the {classes} classes"
        )));
    }
    let mut ks: Vec<usize> = (1..=5.min(classes)).chain(extra.iter().copied()).collect();
    ks.sort_unstable();
    ks.dedup();
    Ok(ks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_ties_and_non_finite_scores() {
        assert_eq!(rank_of_label(&[0.1, 0.3, 0.2], 2), 1);
        assert_eq!(
            rank_of_label(&[0.2, 0.3, 0.2], 2),
            2,
            "a tie with a lower index ranks above"
        );
        assert_eq!(rank_of_label(&[0.2, f32::NAN, 0.1], 1), usize::MAX);
        let mut counter = TopkCounter::new(&[1, 5]);
        counter.add(&[f32::NAN, 0.0, 1.0, 0.5], &[0, 0], 2);
        assert_eq!(counter.accuracies(), vec![(1, 0.5), (5, 0.5)]);
    }
}

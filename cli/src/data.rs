//! Labelled embedding sets: loaded into memory when they fit the budget, streamed otherwise.

use std::sync::Arc;

use difftopk_io::{read_labels, Embeddings};

use crate::error::CliResult;
use crate::fail;
use crate::random::SplitMix;

/// Where the rows of a set live.
#[derive(Debug)]
pub enum Rows {
    /// Row-major f32 values in memory.
    Memory {
        /// `rows × dimension` values.
        values: Vec<f32>,
        /// D.
        dimension: usize,
    },
    /// Read from the file on demand (positional reads; memory does not grow with the rows).
    File(Embeddings),
}

impl Rows {
    /// D.
    pub fn dimension(&self) -> usize {
        match self {
            Rows::Memory { dimension, .. } => *dimension,
            Rows::File(embeddings) => embeddings.dimension(),
        }
    }

    /// Copies the given rows into `out` (`rows.len() × D`).
    pub fn gather(&self, rows: &[usize], out: &mut [f32]) -> CliResult<()> {
        match self {
            Rows::Memory { values, dimension } => {
                for (&row, target) in rows.iter().zip(out.chunks_exact_mut(*dimension)) {
                    target.copy_from_slice(&values[row * dimension..(row + 1) * dimension]);
                }
                Ok(())
            }
            Rows::File(embeddings) => Ok(embeddings.read_indexed(rows, out)?),
        }
    }

    /// [`ContentHash`] of every row of the file as f32 bits, in file order (the same whether
    /// the rows are in memory or streamed; a streamed file is read once more for it).
    pub fn content_hash(&self) -> CliResult<u64> {
        let mut hash = ContentHash::default();
        match self {
            Rows::Memory { values, .. } => hash.update(values.iter().map(|v| v.to_bits())),
            Rows::File(embeddings) => {
                let dimension = embeddings.dimension();
                let mut block = vec![0f32; embeddings.rows_per_read() * dimension];
                let mut first = 0;
                while first < embeddings.rows() {
                    let count = embeddings.rows_per_read().min(embeddings.rows() - first);
                    let block = &mut block[..count * dimension];
                    embeddings.read_rows(first, block)?;
                    hash.update(block.iter().map(|v| v.to_bits()));
                    first += count;
                }
            }
        }
        Ok(hash.finish())
    }

    /// Whether the rows are streamed from the file.
    pub fn is_streamed(&self) -> bool {
        matches!(self, Rows::File(_))
    }
}

/// A fast 64-bit hash of a stream of 32-bit words, to notice that data changed (not
/// cryptographic): four independent multiply-rotate lanes (word `i` feeds lane `i mod 4`), mixed
/// with the word count at the end. The result does not depend on how the stream is split.
#[derive(Clone, Debug)]
pub struct ContentHash {
    lanes: [u64; 4],
    words: u64,
}

impl Default for ContentHash {
    fn default() -> Self {
        ContentHash {
            lanes: [
                0x243F_6A88_85A3_08D3,
                0x1319_8A2E_0370_7344,
                0xA409_3822_299F_31D0,
                0x082E_FA98_EC4E_6C89,
            ],
            words: 0,
        }
    }
}

impl ContentHash {
    /// Feeds words.
    pub fn update(&mut self, words: impl IntoIterator<Item = u32>) {
        for word in words {
            let lane = &mut self.lanes[(self.words & 3) as usize];
            *lane = (*lane ^ u64::from(word))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(29);
            self.words += 1;
        }
    }

    /// The hash of everything fed so far.
    pub fn finish(&self) -> u64 {
        let mut z = self.words;
        for lane in self.lanes {
            z = (z ^ lane).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z ^= z >> 31;
        }
        z = (z ^ (z >> 30)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A labelled set: a selection of rows of an embedding file and their labels.
#[derive(Clone, Debug)]
pub struct LabelledSet {
    /// Embeddings (shared between a training set and the validation rows held out of it).
    pub rows: Arc<Rows>,
    /// Label of every row of the file.
    pub labels: Arc<Vec<usize>>,
    /// The rows of the file this set uses, in order.
    pub selection: Vec<usize>,
}

impl LabelledSet {
    /// Opens `x` and `y`, checks they have the same number of rows, and loads the embeddings when
    /// they fit `memory_budget` bytes (validating every value either way).
    pub fn open(x: &str, y: &str, memory_budget: u64) -> CliResult<Self> {
        let embeddings = Embeddings::open(x)?;
        let labels = read_labels(y)?;
        if labels.len() != embeddings.rows() {
            fail!(
                "{y}: {} labels, but {x} has {} rows (the row counts of X and y must agree)",
                labels.len(),
                embeddings.rows()
            );
        }
        let bytes = embeddings.rows() as u64 * embeddings.dimension() as u64 * 4;
        let rows = if bytes <= memory_budget {
            Rows::Memory {
                values: embeddings.load()?,
                dimension: embeddings.dimension(),
            }
        } else {
            embeddings.validate()?;
            Rows::File(embeddings)
        };
        Ok(LabelledSet {
            rows: Arc::new(rows),
            selection: (0..labels.len()).collect(),
            labels: Arc::new(labels),
        })
    }

    /// [`ContentHash`] of the labels of every row of the file (as 64-bit values).
    pub fn labels_hash(&self) -> u64 {
        let mut hash = ContentHash::default();
        hash.update(self.labels.iter().flat_map(|&label| {
            let label = label as u64;
            [label as u32, (label >> 32) as u32]
        }));
        hash.finish()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.selection.len()
    }

    /// D.
    pub fn dimension(&self) -> usize {
        self.rows.dimension()
    }

    /// The largest label of the set and the first file row that holds it (`None` when empty).
    pub fn largest_label(&self) -> Option<(usize, usize)> {
        self.selection
            .iter()
            .map(|&row| (self.labels[row], row))
            .reduce(|best, next| if next.0 > best.0 { next } else { best })
    }

    /// Errors when a label is not below `classes`, naming the file and row.
    pub fn check_labels(&self, y: &str, classes: usize) -> CliResult<()> {
        if let Some(row) = self.labels.iter().position(|&l| l >= classes) {
            fail!(
                "{y}: label {} at row {row} is not below the number of classes {classes}",
                self.labels[row]
            );
        }
        Ok(())
    }

    /// Splits off a random `fraction` of the rows (seeded) as a validation set.
    pub fn split_off_validation(&mut self, fraction: f64, seed: u64) -> CliResult<LabelledSet> {
        if !(fraction > 0.0 && fraction < 1.0) {
            fail!(
                "--val-fraction must be strictly between 0 and 1, got {}",
                crate::error::number(fraction)
            );
        }
        let count = ((self.len() as f64) * fraction).round() as usize;
        if count == 0 || count == self.len() {
            fail!(
                "--val-fraction {} of {} rows leaves an empty training or validation set",
                crate::error::number(fraction),
                self.len()
            );
        }
        let mut order = self.selection.clone();
        SplitMix::new(seed, 0x5EED_0FF0).shuffle(&mut order);
        let mut validation: Vec<usize> = order[..count].to_vec();
        let mut training: Vec<usize> = order[count..].to_vec();
        validation.sort_unstable();
        training.sort_unstable();
        self.selection = training;
        Ok(LabelledSet {
            rows: self.rows.clone(),
            labels: self.labels.clone(),
            selection: validation,
        })
    }

    /// Copies the rows at `positions` (indices into this set) into `x` and their labels into
    /// `labels`.
    pub fn gather(
        &self,
        positions: &[usize],
        x: &mut Vec<f32>,
        labels: &mut Vec<usize>,
    ) -> CliResult<()> {
        let rows: Vec<usize> = positions.iter().map(|&p| self.selection[p]).collect();
        x.resize(rows.len() * self.dimension(), 0.0);
        self.rows.gather(&rows, x)?;
        labels.clear();
        labels.extend(rows.iter().map(|&r| self.labels[r]));
        Ok(())
    }

    /// This epoch's order of positions: a full shuffle in memory; when streaming, blocks of
    /// consecutive rows in shuffled order, each shuffled inside, so that reads stay local.
    pub fn epoch_order(&self, seed: u64, epoch: usize) -> Vec<usize> {
        let mut generator = SplitMix::new(seed, epoch as u64 + 1);
        let mut order: Vec<usize> = (0..self.len()).collect();
        if self.rows.is_streamed() {
            const BLOCK: usize = 4096;
            let mut blocks: Vec<Vec<usize>> = order.chunks(BLOCK).map(<[usize]>::to_vec).collect();
            generator.shuffle(&mut blocks);
            for block in &mut blocks {
                generator.shuffle(block);
            }
            order = blocks.concat();
        } else {
            generator.shuffle(&mut order);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::ContentHash;

    fn hash(words: &[u32]) -> u64 {
        let mut hash = ContentHash::default();
        hash.update(words.iter().copied());
        hash.finish()
    }

    #[test]
    fn content_hash_sees_changes_and_not_the_split() {
        let words: Vec<u32> = (0..1000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let whole = hash(&words);
        let mut split = ContentHash::default();
        split.update(words[..333].iter().copied());
        split.update(words[333..].iter().copied());
        assert_eq!(split.finish(), whole);
        let mut changed = words.clone();
        changed[500] ^= 1;
        assert_ne!(hash(&changed), whole);
        let mut swapped = words.clone();
        swapped.swap(10, 11);
        assert_ne!(hash(&swapped), whole);
        assert_ne!(hash(&words[..999]), whole);
        assert_ne!(hash(&[0]), hash(&[0, 0]));
    }
}

//! # difftopk-io
//!
//! Reading embeddings and labels from the files people export them to, and writing results
//! safely:
//!
//! - [`ArrayFile`]: one array of a `.npy` (v1–v3; C or Fortran order; little or big endian),
//!   `.npz` (stored or deflated) or `.safetensors` file, recognised by content, named as `PATH`
//!   or `PATH:NAME`.
//! - [`Embeddings`] (2-D float16/bfloat16/float32/float64, read as f32 row by row with positional
//!   reads, so a file larger than memory streams) and [`read_labels`] (1-D integers).
//! - [`write_atomically`]: outputs go to a temporary file that is renamed into place;
//!   [`stage_bytes`] and [`commit_all`] do the same for a set of outputs that must be replaced
//!   together or not at all.
//!
//! Every error is a [`DataError`] naming the file and the problem (row and column for bad
//! values); no input makes a reader panic (fuzzed in `tests/`).

#![warn(missing_docs)]

mod array;
mod atomic;
mod dtype;
mod error;
mod matrix;
pub mod npy;
pub mod safetensors;

pub use array::{read_safetensors_header, split_spec, ArrayFile};
pub use atomic::{
    commit_all, replaced_file, stage_bytes, temporary_path, write_atomically,
    write_bytes_atomically, CommitError, StagedFile,
};
pub use dtype::Dtype;
pub use error::{DataError, Problem};
pub use matrix::{read_labels, Embeddings, ROWS_PER_READ};

/// Serialises a C-order little-endian float32 `.npy` file.
pub fn npy_f32_bytes(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let mut out = npy::write_header("<f4", shape);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Serialises a C-order little-endian int64 `.npy` file.
pub fn npy_i64_bytes(values: &[i64]) -> Vec<u8> {
    let mut out = npy::write_header("<i8", &[values.len()]);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

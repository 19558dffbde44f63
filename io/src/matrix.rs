//! Embedding matrices `[rows, dimension]` and label vectors `[rows]`, validated.

use crate::{ArrayFile, DataError, Problem};

/// A 2-D float array of embeddings, read row by row (positional reads for .npy and .safetensors
/// files, so memory does not grow with the number of rows unless the caller loads them all).
#[derive(Debug)]
pub struct Embeddings {
    array: ArrayFile,
    rows: usize,
    dimension: usize,
}

/// Rows per read when streaming a whole file (fewer for very wide rows).
pub const ROWS_PER_READ: usize = 4096;

/// Largest block read at once, in bytes of f32.
const MAX_READ_BYTES: usize = 16 << 20;

impl Embeddings {
    /// Opens and checks an embedding array: 2-D, at least one row and one column, float16,
    /// bfloat16, float32 or float64.
    pub fn open(spec: &str) -> Result<Self, DataError> {
        let array = ArrayFile::open(spec)?;
        Self::from_array(array)
    }

    /// Checks an opened array (see [`Embeddings::open`]).
    pub fn from_array(array: ArrayFile) -> Result<Self, DataError> {
        let source = array.source().to_string();
        if array.shape().len() != 2 {
            return Err(DataError::new(
                source,
                Problem::Dimensions {
                    expected: 2,
                    shape: array.shape().to_vec(),
                },
            ));
        }
        let (rows, dimension) = (array.shape()[0], array.shape()[1]);
        if rows == 0 || dimension == 0 {
            return Err(DataError::new(source, Problem::NoRows));
        }
        if !array.dtype().is_float() {
            return Err(DataError::new(
                source,
                Problem::UnsupportedDtype(format!(
                    "{:?} (embeddings must be float16, bfloat16, float32 or float64)",
                    array.dtype()
                )),
            ));
        }
        Ok(Embeddings {
            array,
            rows,
            dimension,
        })
    }

    /// The spec the file was opened from.
    pub fn source(&self) -> &str {
        self.array.source()
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Embedding dimension D.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Reads rows `first..first + out.len() / D` as f32 into `out` (row-major) and checks every
    /// value is finite, naming the first bad row and column.
    pub fn read_rows(&self, first: usize, out: &mut [f32]) -> Result<(), DataError> {
        let count = out.len() / self.dimension;
        let size = self.array.dtype().size();
        let row_bytes = self.dimension * size;
        let mut bytes = vec![0u8; count * row_bytes];
        self.array
            .read_bytes((first * row_bytes) as u64, &mut bytes)?;
        self.array
            .dtype()
            .decode_into_f32(&bytes, self.array.little_endian(), out);
        if let Some(index) = out.iter().position(|v| !v.is_finite()) {
            return Err(DataError::new(
                self.source(),
                Problem::NonFinite {
                    row: first + index / self.dimension,
                    column: index % self.dimension,
                },
            ));
        }
        Ok(())
    }

    /// Reads the listed rows (any order) into `out`, `indices.len() × D` values.
    pub fn read_indexed(&self, indices: &[usize], out: &mut [f32]) -> Result<(), DataError> {
        for (&row, chunk) in indices.iter().zip(out.chunks_exact_mut(self.dimension)) {
            self.read_rows(row, chunk)?;
        }
        Ok(())
    }

    /// Rows per block read: up to [`ROWS_PER_READ`], at most 16 MiB of f32, at least one row.
    pub fn rows_per_read(&self) -> usize {
        (MAX_READ_BYTES / (4 * self.dimension))
            .clamp(1, ROWS_PER_READ)
            .min(self.rows)
    }

    /// Loads the whole matrix as f32 (rows × D values), validated. An error, not an abort,
    /// when it does not fit in memory.
    pub fn load(&self) -> Result<Vec<f32>, DataError> {
        let total = self.rows.checked_mul(self.dimension).ok_or_else(|| {
            DataError::new(self.source(), Problem::BadHeader("shape too large".into()))
        })?;
        let mut out = Vec::new();
        out.try_reserve_exact(total).map_err(|_| {
            DataError::new(
                self.source(),
                Problem::Unreadable(format!("not enough memory for {total} values")),
            )
        })?;
        out.resize(total, 0f32);
        let block_rows = self.rows_per_read();
        for (block, chunk) in out.chunks_mut(block_rows * self.dimension).enumerate() {
            self.read_rows(block * block_rows, chunk)?;
        }
        Ok(out)
    }

    /// Reads every row once, in blocks, only to validate it (streaming; constant memory).
    pub fn validate(&self) -> Result<(), DataError> {
        let block_rows = self.rows_per_read();
        let mut buffer = vec![0f32; block_rows * self.dimension];
        let mut first = 0;
        while first < self.rows {
            let count = block_rows.min(self.rows - first);
            self.read_rows(first, &mut buffer[..count * self.dimension])?;
            first += count;
        }
        Ok(())
    }
}

/// Reads class labels: a 1-D (or `[rows, 1]`) integer array, each label ≥ 0. Whether a label is
/// below the number of classes is for the caller to check (it knows C).
pub fn read_labels(spec: &str) -> Result<Vec<usize>, DataError> {
    let array = ArrayFile::open(spec)?;
    let shape = array.shape();
    let rows = match shape {
        [rows] | [rows, 1] => *rows,
        _ => {
            return Err(DataError::new(
                spec,
                Problem::Dimensions {
                    expected: 1,
                    shape: shape.to_vec(),
                },
            ))
        }
    };
    if rows == 0 {
        return Err(DataError::new(spec, Problem::NoRows));
    }
    let dtype = array.dtype();
    if dtype.is_float() {
        return Err(DataError::new(
            spec,
            Problem::UnsupportedDtype(format!(
                "{dtype:?} (labels must be integers: int8..int64 or uint8..uint64)"
            )),
        ));
    }
    let size = dtype.size();
    let mut bytes = vec![0u8; rows * size];
    array.read_bytes(0, &mut bytes)?;
    bytes
        .chunks_exact(size)
        .enumerate()
        .map(|(row, chunk)| {
            let value = dtype
                .decode_integer(chunk, array.little_endian())
                .unwrap_or(-1);
            usize::try_from(value).map_err(|_| {
                DataError::new(
                    spec,
                    Problem::InvalidLabel {
                        row,
                        value: value.to_string(),
                    },
                )
            })
        })
        .collect()
}

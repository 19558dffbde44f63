//! Errors that name the file and the problem.

use std::fmt;

/// What is wrong with a data file.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// The file cannot be opened or read (the OS's message).
    Unreadable(String),
    /// The file is empty.
    Empty,
    /// Not a .npy, .npz or .safetensors file (by content).
    UnknownFormat,
    /// The header cannot be parsed (what was wrong).
    BadHeader(String),
    /// The data ends before the header's shape is filled.
    Truncated {
        /// Bytes the header promises.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// More data than the header's shape describes: header and data disagree (a wrong shape
    /// would otherwise read part of the data as if it were all of it).
    TrailingData {
        /// Bytes the header describes.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// An element type this reader does not take for this use.
    UnsupportedDtype(String),
    /// The array has the wrong number of dimensions.
    Dimensions {
        /// Dimensions wanted.
        expected: usize,
        /// The array's shape.
        shape: Vec<usize>,
    },
    /// The array has no rows or no columns.
    NoRows,
    /// `FILE:NAME` given for a `.npy` file, which holds one unnamed array.
    NamedNpyArray(String),
    /// An archive does not hold the named array (names it holds).
    MissingArray {
        /// Name asked for.
        name: String,
        /// Names present.
        available: Vec<String>,
    },
    /// An archive holds several arrays and none was named.
    AmbiguousArray(Vec<String>),
    /// A value is NaN or infinite.
    NonFinite {
        /// Row.
        row: usize,
        /// Column.
        column: usize,
    },
    /// A label is negative or not an integer.
    InvalidLabel {
        /// Row.
        row: usize,
        /// The value, as read.
        value: String,
    },
}

/// A data-file error: the file (and array, when named) and the problem.
#[derive(Clone, Debug, PartialEq)]
pub struct DataError {
    /// The file as the user named it (with `:array` when given).
    pub source: String,
    /// What is wrong.
    pub problem: Problem,
}

impl DataError {
    /// An error about `source`.
    pub fn new(source: impl Into<String>, problem: Problem) -> Self {
        DataError {
            source: source.into(),
            problem,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unreadable(message) => write!(f, "cannot read the file: {message}"),
            Problem::Empty => write!(f, "the file is empty"),
            Problem::UnknownFormat => {
                write!(f, "not a .npy, .npz or .safetensors file (unrecognised content)")
            }
            Problem::BadHeader(what) => write!(f, "malformed header: {what}"),
            Problem::Truncated { expected, actual } => write!(
                f,
                "truncated data: the header promises {expected} bytes of data, the file holds {actual}"
            ),
            Problem::TrailingData { expected, actual } => write!(
                f,
                "the header's shape describes {expected} bytes of data, the file holds {actual}: \
                 header and data disagree (was the file cut from a larger array or appended to?)"
            ),
            Problem::UnsupportedDtype(dtype) => write!(f, "unsupported dtype {dtype}"),
            Problem::Dimensions { expected, shape } => write!(
                f,
                "expected a {expected}-D array, found shape {shape:?}{}",
                if *expected == 2 && shape.len() == 1 {
                    " (embeddings must be [rows, dimension])"
                } else {
                    ""
                }
            ),
            Problem::NoRows => write!(f, "the array has no rows or no columns"),
            Problem::NamedNpyArray(name) => write!(
                f,
                "a .npy file holds one array, without a name: drop the \":{name}\""
            ),
            Problem::MissingArray { name, available } => {
                write!(f, "no array named {name:?}; the file holds {available:?}")
            }
            Problem::AmbiguousArray(names) => write!(
                f,
                "the file holds several arrays {names:?}: name one as FILE:NAME"
            ),
            Problem::NonFinite { row, column } => {
                write!(f, "non-finite value at row {row}, column {column}")
            }
            Problem::InvalidLabel { row, value } => {
                write!(f, "label {value} at row {row} is not a non-negative integer")
            }
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.problem)
    }
}

impl std::error::Error for DataError {}

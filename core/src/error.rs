//! The crate's error type: a small `Copy` enum that names the offending value.

use core::fmt;

/// Everything that can go wrong when configuring or running an operator.
///
/// Every variant carries the indices or values that identify the problem, so that a caller can
/// report e.g. "row 17, column 3 is not finite" without keeping the input around.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// P_K (the distribution over k) is empty.
    EmptyTopkDistribution,
    /// P_K has more entries than [`crate::MAX_K`].
    TooManyRanks {
        /// len(P_K).
        k: usize,
        /// The supported maximum.
        max: usize,
    },
    /// An entry of P_K is negative or not finite.
    InvalidTopkWeight {
        /// Position in P_K (0 = P_K(1)).
        index: usize,
        /// The offending weight.
        value: f64,
    },
    /// P_K does not sum to 1 within 1e-4 (the reference asserts `0.9999 < sum < 1.0001`).
    TopkDistributionSum {
        /// The actual sum.
        sum: f64,
    },
    /// β (inverse temperature, steepness) must be finite and between
    /// [`crate::relaxation::MIN_INVERSE_TEMPERATURE`] and
    /// [`crate::relaxation::MAX_INVERSE_TEMPERATURE`] (a normal `f32`, one configuration serving
    /// both float types).
    InvalidInverseTemperature {
        /// The offending β.
        value: f64,
    },
    /// λ (ART exponent of `logistic_phi`) must be finite, ≥ 0 and ≤
    /// [`crate::relaxation::MAX_ART_LAMBDA`].
    InvalidArtLambda {
        /// The offending λ.
        value: f64,
    },
    /// `logistic_phi`'s slope at tied logits, `β·¼·10^(10λ)`, exceeds
    /// [`crate::relaxation::MAX_TIE_SLOPE`]: its gradient would overflow `f32`.
    TieSlopeTooSteep {
        /// β.
        beta: f64,
        /// λ.
        lambda: f64,
    },
    /// A loss needs at least two classes.
    TooFewClasses {
        /// The number of classes given.
        classes: usize,
    },
    /// K = len(P_K) exceeds the number of sorted inputs (n, or m when preselecting); or an
    /// operator's k (a selection's count) is 0 or exceeds the values available.
    TopkLargerThanInputs {
        /// K.
        k: usize,
        /// Number of sorted inputs.
        inputs: usize,
    },
    /// The preselection size m must satisfy K < m < n (strictly, as in the reference).
    InvalidPreselection {
        /// m.
        m: usize,
        /// K = len(P_K).
        k: usize,
        /// n, the number of classes.
        classes: usize,
    },
    /// A label is not below the number of classes.
    LabelOutOfRange {
        /// Row of the batch.
        row: usize,
        /// The label.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// An input value (logit) is NaN or infinite.
    NonFiniteInput {
        /// Row of the batch.
        row: usize,
        /// Column (class) within the row.
        column: usize,
    },
    /// A logit of the top-k loss exceeds [`crate::loss::MAX_LOGIT`] in magnitude.
    LogitTooLarge {
        /// Row of the batch.
        row: usize,
        /// Column (class) within the row.
        column: usize,
    },
    /// A buffer has the wrong length.
    LengthMismatch {
        /// Which buffer (`"logits"`, `"labels"`, `"gradient"`, …).
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// The caller-provided scratch buffer is too small.
    ScratchTooSmall {
        /// Which part (`"reals"` or `"indices"`).
        what: &'static str,
        /// Elements needed.
        needed: usize,
        /// Elements given.
        actual: usize,
    },
    /// A network's wiring is invalid (wire out of range, comparator on one wire, outputs that are
    /// not the comparator's inputs, or layer bounds out of order).
    InvalidNetwork {
        /// Index of the first bad comparator (or layer bound).
        comparator: usize,
    },
    /// The network was built for a different number of inputs.
    NetworkSizeMismatch {
        /// Inputs of the network.
        network: usize,
        /// Inputs supplied.
        inputs: usize,
    },
    /// A network needs at least one input (splitter selection: 1 ≤ k ≤ n).
    InvalidNetworkSize {
        /// n.
        inputs: usize,
        /// k (0 when not applicable).
        k: usize,
    },
    /// A batch, row or size that must hold at least one element is empty (a batch without rows,
    /// whose mean is undefined; a softmax row without values; zero classes).
    Empty {
        /// What is empty (`"batch rows (labels)"`, `"classes"`, …).
        what: &'static str,
    },
    /// A sorting-network method was run without its network (the one-row API takes the network
    /// from the caller).
    MissingNetwork {
        /// The method that needs a network.
        method: crate::Method,
        /// The wires the network must have (n, or m when preselecting).
        inputs: usize,
    },
    /// τ (temperature of the smooth top-k SVM, which divides the scores) must be finite and in
    /// the range of [`crate::relaxation::check_inverse_temperature`].
    InvalidTemperature {
        /// The offending τ.
        value: f64,
    },
    /// A name (method, relaxation, top-1 mode) is not known.
    UnknownName {
        /// What kind of name (`"method"`, `"relaxation"`, `"top1 mode"`).
        what: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::EmptyTopkDistribution => write!(f, "P_K is empty: give at least one weight"),
            Error::TooManyRanks { k, max } => {
                write!(f, "P_K has {k} entries, at most {max} are supported")
            }
            Error::InvalidTopkWeight { index, value } => write!(
                f,
                "P_K entry {index} (k = {}) is {value}: weights must be finite and non-negative",
                index + 1
            ),
            Error::TopkDistributionSum { sum } => {
                write!(f, "P_K sums to {sum}, it must sum to 1 (within 1e-4)")
            }
            Error::InvalidInverseTemperature { value } => write!(
                f,
                "inverse temperature (beta) is {value}, it must be finite and between {:e} and {:e}",
                crate::relaxation::MIN_INVERSE_TEMPERATURE,
                crate::relaxation::MAX_INVERSE_TEMPERATURE
            ),
            Error::TieSlopeTooSteep { beta, lambda } => write!(
                f,
                "logistic_phi with beta = {beta} and lambda = {lambda} has the slope beta/4 * 10^(10 lambda) at tied logits, above {:e} (float32 gradients would overflow); lower lambda or beta",
                crate::relaxation::MAX_TIE_SLOPE
            ),
            Error::InvalidArtLambda { value } => {
                write!(
                    f,
                    "ART lambda is {value}, it must be finite, >= 0 and <= {}",
                    crate::relaxation::MAX_ART_LAMBDA
                )
            }
            Error::TooFewClasses { classes } => {
                write!(f, "{classes} classes: at least 2 are needed")
            }
            Error::TopkLargerThanInputs { k: 0, inputs } => write!(
                f,
                "K = 0: at least one rank is needed (of the {inputs} values available)"
            ),
            Error::TopkLargerThanInputs { k, inputs } => write!(
                f,
                "K = {k} exceeds the {inputs} values available (K is the length of P_K for the loss, k for the operators and the selection)"
            ),
            Error::InvalidPreselection { m, k, classes } => write!(
                f,
                "m = {m} must satisfy K < m < n, here K = {k} and n = {classes}"
            ),
            Error::LabelOutOfRange {
                row,
                label,
                classes,
            } => write!(
                f,
                "row {row}: label {label} is not below the number of classes ({classes})"
            ),
            Error::NonFiniteInput { row, column } => {
                write!(f, "row {row}, column {column}: value is NaN or infinite")
            }
            Error::LogitTooLarge { row, column } => write!(
                f,
                "row {row}, column {column}: logit beyond ±{:e} (relaxed comparisons of such values overflow float32)",
                crate::loss::MAX_LOGIT
            ),
            Error::LengthMismatch {
                what,
                expected,
                actual,
            } => write!(f, "{what}: expected {expected} elements, got {actual}"),
            Error::ScratchTooSmall {
                what,
                needed,
                actual,
            } => write!(
                f,
                "scratch buffer ({what}) holds {actual} elements, {needed} are needed"
            ),
            Error::InvalidNetwork { comparator } => {
                write!(f, "invalid sorting network at comparator {comparator}")
            }
            Error::NetworkSizeMismatch { network, inputs } => write!(
                f,
                "the network sorts {network} values but {inputs} were given"
            ),
            Error::InvalidNetworkSize { inputs, k } => {
                write!(f, "no network for n = {inputs}, k = {k}")
            }
            Error::Empty { what } => write!(f, "{what}: none given, at least one is needed"),
            Error::MissingNetwork { method, inputs } => write!(
                f,
                "method {} needs a sorting network on {inputs} wires, none was given",
                method.name()
            ),
            Error::InvalidTemperature { value } => write!(
                f,
                "temperature (tau) is {value}, it must be finite and between {:e} and {:e}",
                crate::relaxation::MIN_INVERSE_TEMPERATURE,
                crate::relaxation::MAX_INVERSE_TEMPERATURE
            ),
            Error::UnknownName { what } => write!(f, "unknown {what} name"),
        }
    }
}

impl core::error::Error for Error {}

impl Error {
    /// `Ok` when a buffer has exactly the length required, else [`Error::LengthMismatch`]
    /// naming `what` (for adapters that check their own buffers the core's way).
    pub fn check_length(what: &'static str, expected: usize, actual: usize) -> Result<(), Error> {
        if expected == actual {
            Ok(())
        } else {
            Err(Error::LengthMismatch {
                what,
                expected,
                actual,
            })
        }
    }

    /// `Ok` when a scratch buffer holds at least `needed` elements, else
    /// [`Error::ScratchTooSmall`].
    pub(crate) fn check_scratch(
        what: &'static str,
        needed: usize,
        actual: usize,
    ) -> Result<(), Error> {
        if actual >= needed {
            Ok(())
        } else {
            Err(Error::ScratchTooSmall {
                what,
                needed,
                actual,
            })
        }
    }
}

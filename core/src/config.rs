//! The validated configuration of the top-k cross-entropy loss.

use crate::{Error, Relaxation};

/// The largest K = len(P_K) supported (the configuration is a fixed-size `Copy` value).
pub const MAX_K: usize = 64;

/// How P_topk is computed (`diffsort_method` in the reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Odd-even transposition network (`'odd_even'`).
    OddEven,
    /// Bitonic network (`'bitonic'` and `'bitonic__non_sparse'`: the same values).
    Bitonic,
    /// Bitonic network that sorts exactly for every n (`bitonic_any_size`; not in the reference,
    /// whose padded bitonic network fails to sort for some n, see
    /// [`crate::SortingNetwork::bitonic_any_size`]). Same network as `Bitonic` in spirit, same
    /// depth.
    BitonicAnySize,
    /// Splitter selection network (`'splitter_selection'`): only the top K are selected.
    SplitterSelection,
    /// NeuralSort (Grover et al. 2019), τ = 1/β.
    NeuralSort,
    /// SoftSort (Prillo & Eisenschlos 2020), τ = 1/β.
    SoftSort,
}

/// Whether `given` spells the name `known`, where `-` may stand for `_` (`logistic-phi`,
/// `odd-even`): every name parser of the crate accepts both.
pub(crate) fn name_matches(given: &str, known: &str) -> bool {
    given.len() == known.len()
        && given
            .bytes()
            .zip(known.bytes())
            .all(|(g, k)| g == k || (g == b'-' && k == b'_'))
}

impl Method {
    /// Every method, in declaration order (for listing them, or trying each).
    pub const ALL: [Method; 6] = [
        Method::OddEven,
        Method::Bitonic,
        Method::BitonicAnySize,
        Method::SplitterSelection,
        Method::NeuralSort,
        Method::SoftSort,
    ];

    /// Parses the reference's names (`odd_even`, `bitonic`, `bitonic__non_sparse`,
    /// `splitter_selection`, `neuralsort`, `softsort`) and `bitonic_any_size` (this crate's
    /// bitonic network that sorts every n); `-` may replace `_`.
    pub fn from_name(name: &str) -> Result<Self, Error> {
        const NAMES: [(&str, Method); 7] = [
            ("odd_even", Method::OddEven),
            ("bitonic", Method::Bitonic),
            ("bitonic__non_sparse", Method::Bitonic),
            ("splitter_selection", Method::SplitterSelection),
            ("bitonic_any_size", Method::BitonicAnySize),
            ("neuralsort", Method::NeuralSort),
            ("softsort", Method::SoftSort),
        ];
        NAMES
            .iter()
            .find(|(known, _)| name_matches(name, known))
            .map(|&(_, method)| method)
            .ok_or(Error::UnknownName { what: "method" })
    }

    /// The reference's name.
    pub fn name(&self) -> &'static str {
        match self {
            Method::OddEven => "odd_even",
            Method::Bitonic => "bitonic",
            Method::SplitterSelection => "splitter_selection",
            Method::BitonicAnySize => "bitonic_any_size",
            Method::NeuralSort => "neuralsort",
            Method::SoftSort => "softsort",
        }
    }

    /// `true` for the sorting networks (which use a [`Relaxation`]).
    pub fn is_network(&self) -> bool {
        self.family() == Family::SortingNetwork
    }

    /// How the method computes P_topk: the kernels dispatch on this, not on the method list.
    pub(crate) fn family(&self) -> Family {
        match self {
            Method::OddEven
            | Method::Bitonic
            | Method::BitonicAnySize
            | Method::SplitterSelection => Family::SortingNetwork,
            Method::NeuralSort => Family::NeuralSort,
            Method::SoftSort => Family::SoftSort,
        }
    }
}

/// The three ways of relaxing the sort (crate-internal dispatch of [`Method`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// A sorting network of relaxed comparators.
    SortingNetwork,
    /// NeuralSort.
    NeuralSort,
    /// SoftSort.
    SoftSort,
}

/// How the top-1 term enters the loss (`top1_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Top1Mode {
    /// `'sm'` (default): q = P_K(1)·softmax(s)_y + Σ_{k≥2} P_K(k)·T_k(y); loss = −log(q·(1−2·10⁻⁷) + 10⁻⁷).
    Softmax,
    /// `'smce'`: loss = P_K(1)·CE(s, y) + (Σ_{k≥2} P_K(k))·(−log(q'·(1−2·10⁻⁷) + 10⁻⁷)) with
    /// q' = Σ_{k≥2} P_K(k)·T_k(y) (not renormalised).
    SoftmaxCrossEntropy,
    /// `'sort'`: q = Σ_{k≥1} P_K(k)·T_k(y) (the top-1 term from the relaxed sort too).
    Sort,
}

impl Top1Mode {
    /// Parses `sm`, `smce`, `sort`.
    pub fn from_name(name: &str) -> Result<Self, Error> {
        Ok(match name {
            "sm" => Top1Mode::Softmax,
            "smce" => Top1Mode::SoftmaxCrossEntropy,
            "sort" => Top1Mode::Sort,
            _ => return Err(Error::UnknownName { what: "top1 mode" }),
        })
    }

    /// The reference's name.
    pub fn name(&self) -> &'static str {
        match self {
            Top1Mode::Softmax => "sm",
            Top1Mode::SoftmaxCrossEntropy => "smce",
            Top1Mode::Sort => "sort",
        }
    }
}

/// A validated configuration of `TopKCrossEntropyLoss` for `classes` classes.
///
/// Built with [`TopkLossConfig::new`] and refined with the `with_*` methods; every method checks
/// its argument, so a value of this type is always valid. The method is [`TopkLossConfig::new`]'s
/// argument; the other settings default to the paper's ImageNet head (spec 5.3/6.1) except for m:
/// logistic_phi with λ = 0.5, β = 1, `sm`, m unset (all classes are sorted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TopkLossConfig {
    method: Method,
    relaxation: Relaxation,
    inverse_temperature: f64,
    topk_distribution: [f64; MAX_K],
    k: usize,
    preselection: Option<usize>,
    top1_mode: Top1Mode,
    classes: usize,
    /// [`TopkLossConfig::rank_weight`] for every rank, kept in step with the distribution and
    /// the top-1 mode (the loss reads it per row and rank).
    rank_weights: [f64; MAX_K],
}

impl TopkLossConfig {
    /// A configuration for `classes` classes with the distribution over k `p_k` (P_K(1..=K);
    /// non-negative, summing to 1 within 1e-4, K ≤ min(classes, [`MAX_K`])).
    pub fn new(method: Method, classes: usize, p_k: &[f64]) -> Result<Self, Error> {
        if classes < 2 {
            return Err(Error::TooFewClasses { classes });
        }
        if p_k.is_empty() {
            return Err(Error::EmptyTopkDistribution);
        }
        if p_k.len() > MAX_K {
            return Err(Error::TooManyRanks {
                k: p_k.len(),
                max: MAX_K,
            });
        }
        let mut sum = 0.0;
        for (index, &value) in p_k.iter().enumerate() {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::InvalidTopkWeight { index, value });
            }
            sum += value;
        }
        if !(0.9999 < sum && sum < 1.0001) {
            return Err(Error::TopkDistributionSum { sum });
        }
        if p_k.len() > classes {
            return Err(Error::TopkLargerThanInputs {
                k: p_k.len(),
                inputs: classes,
            });
        }
        let mut topk_distribution = [0.0; MAX_K];
        topk_distribution[..p_k.len()].copy_from_slice(p_k);
        let config = TopkLossConfig {
            method,
            relaxation: Relaxation::LogisticPhi { lambda: 0.5 },
            inverse_temperature: 1.0,
            topk_distribution,
            k: p_k.len(),
            preselection: None,
            top1_mode: Top1Mode::Softmax,
            classes,
            rank_weights: [0.0; MAX_K],
        };
        Ok(config.with_rank_weights())
    }

    /// Recomputes the cached rank weights from the distribution and the top-1 mode.
    fn with_rank_weights(mut self) -> Self {
        let first = if self.top1_mode == Top1Mode::Sort {
            0
        } else {
            1
        };
        for rank in 0..self.k {
            self.rank_weights[rank] = self.topk_distribution[rank.max(first)..self.k].iter().sum();
        }
        self
    }

    /// Sets the comparator relaxation (sorting networks only; ignored by NeuralSort/SoftSort).
    pub fn with_relaxation(mut self, relaxation: Relaxation) -> Result<Self, Error> {
        relaxation.validate_with(self.inverse_temperature)?;
        self.relaxation = relaxation;
        Ok(self)
    }

    /// Sets β (`inverse_temperature`; steepness of the networks, 1/τ for NeuralSort/SoftSort).
    pub fn with_inverse_temperature(mut self, beta: f64) -> Result<Self, Error> {
        self.relaxation.validate_with(beta)?;
        self.inverse_temperature = beta;
        Ok(self)
    }

    /// Sorts only the true class and the m − 1 largest wrong-class logits (`m`); requires
    /// K < m < n as the reference does. `None` sorts all classes.
    pub fn with_preselection(mut self, m: Option<usize>) -> Result<Self, Error> {
        if let Some(m) = m {
            if !(self.k < m && m < self.classes) {
                return Err(Error::InvalidPreselection {
                    m,
                    k: self.k,
                    classes: self.classes,
                });
            }
        }
        self.preselection = m;
        Ok(self)
    }

    /// Sets the top-1 mode.
    pub fn with_top1_mode(mut self, mode: Top1Mode) -> Self {
        self.top1_mode = mode;
        self.with_rank_weights()
    }

    /// The method.
    #[inline]
    pub fn method(&self) -> Method {
        self.method
    }
    /// The relaxation of the sorting networks' comparators.
    #[inline]
    pub fn relaxation(&self) -> Relaxation {
        self.relaxation
    }
    /// β.
    #[inline]
    pub fn inverse_temperature(&self) -> f64 {
        self.inverse_temperature
    }
    /// P_K(1..=K).
    #[inline]
    pub fn topk_distribution(&self) -> &[f64] {
        &self.topk_distribution[..self.k]
    }
    /// K = len(P_K).
    #[inline]
    pub fn k(&self) -> usize {
        self.k
    }
    /// m, when set.
    #[inline]
    pub fn preselection(&self) -> Option<usize> {
        self.preselection
    }
    /// The top-1 mode.
    #[inline]
    pub fn top1_mode(&self) -> Top1Mode {
        self.top1_mode
    }
    /// n, the number of classes.
    #[inline]
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// The number of values that are sorted: m when preselecting, else n.
    #[inline]
    pub fn sorted_inputs(&self) -> usize {
        self.preselection.unwrap_or(self.classes)
    }

    /// The weight of rank r (r = 0 is the largest) in q: w_r = Σ_{k ≥ max(r, first)} P_K(k), where
    /// `first` is 0 in `sort` mode and 1 otherwise (P_K(1) then enters through the softmax).
    /// Ranks at or past K weigh 0.
    #[inline]
    pub fn rank_weight(&self, rank: usize) -> f64 {
        self.rank_weights.get(rank).copied().unwrap_or(0.0)
    }
}

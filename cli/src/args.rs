//! Command-line arguments. Loss options use the reference scripts' names where they exist.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Train, evaluate and use linear classification heads on embedding files, with the
/// differentiable top-k cross-entropy loss (Petersen et al., ICML 2022) or softmax cross-entropy.
#[derive(Debug, Parser)]
#[command(name = "difftopk", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a linear head on embeddings and labels.
    Train(Box<TrainArgs>),
    /// Top-k accuracy of a head on labelled embeddings.
    Eval(EvalArgs),
    /// The top-k classes of each row, with their softmax probabilities.
    Predict(PredictArgs),
}

/// The training loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossKind {
    /// Plain softmax cross-entropy.
    SoftmaxCe,
    /// The differentiable top-k cross-entropy loss.
    Topk,
}

/// Learning-rate schedule over the whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Schedule {
    /// The same rate every step.
    Constant,
    /// Cosine decay from the rate to zero over all steps (Loshchilov & Hutter 2017).
    Cosine,
}

/// Where the training step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The CPU (all --threads).
    Cpu,
    /// CUDA device 0: the head's products through cuBLAS, the loss and AdamW as kernels (the
    /// driver, NVRTC and cuBLAS are loaded at run time). Evaluation stays on the CPU.
    Cuda,
}

/// `difftopk train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training embeddings: rows × D floats (.npy, .npz:NAME, .safetensors:NAME).
    #[arg(long, value_name = "FILE")]
    pub train_x: String,
    /// Training labels: one integer per row.
    #[arg(long, value_name = "FILE")]
    pub train_y: String,
    /// Validation embeddings.
    #[arg(
        long,
        value_name = "FILE",
        requires = "val_y",
        conflicts_with = "val_fraction"
    )]
    pub val_x: Option<String>,
    /// Validation labels.
    #[arg(long, value_name = "FILE", requires = "val_x")]
    pub val_y: Option<String>,
    /// Hold out this fraction of the training rows (seeded) for validation.
    #[arg(long, value_name = "F")]
    pub val_fraction: Option<f64>,
    /// Test embeddings.
    #[arg(long, value_name = "FILE", requires = "test_y")]
    pub test_x: Option<String>,
    /// Test labels.
    #[arg(long, value_name = "FILE", requires = "test_x")]
    pub test_y: Option<String>,
    /// Class names, one per line (sets the number of classes C).
    #[arg(long, value_name = "FILE")]
    pub classes: Option<String>,
    /// Number of classes C (default: the class file's lines, else the largest label of the
    /// training, validation and test labels + 1; a warning names a validation or test class
    /// above every training label).
    #[arg(long, value_name = "C")]
    pub num_classes: Option<usize>,

    /// Training loss.
    #[arg(long, value_enum, default_value = "topk")]
    pub loss: LossKind,
    /// Relaxed sorting method: splitter_selection, odd_even, bitonic, bitonic_any_size,
    /// neuralsort, softsort.
    #[arg(long, default_value = "splitter_selection")]
    pub method: String,
    /// Relaxation of the comparators: logistic, logistic_phi, gaussian, reciprocal, cauchy,
    /// optimal.
    #[arg(long, default_value = "logistic_phi")]
    pub distribution: String,
    /// Inverse temperature β (steepness of the comparators).
    #[arg(allow_negative_numbers = true, long, default_value_t = 1.0)]
    pub inverse_temperature: f64,
    /// λ of the logistic_phi (ART) relaxation.
    #[arg(allow_negative_numbers = true, long, default_value_t = 0.5)]
    pub art_lambda: f64,
    /// P_K, the weights of top-1, top-2, ... (comma-separated, summing to 1) [default:
    /// .5,0,0,0,.5, which needs at least 5 classes].
    #[arg(long, value_name = "W1,W2,..")]
    pub p_k: Option<String>,
    /// Sort only the m highest logits (true class first); `all` (or any m ≥ C) sorts every
    /// class. Default 16, all classes when C ≤ 16.
    #[arg(long, value_name = "M|all")]
    pub m: Option<String>,
    /// How the top-1 term is computed: sm (softmax of the logits), smce (softmax cross-entropy),
    /// sort (the relaxed sort).
    #[arg(long, default_value = "sm")]
    pub top1_mode: String,

    /// Passes over the training set.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Rows per step (at most the training rows: a larger value takes all of them each step).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// AdamW learning rate (default 0.05).
    #[arg(allow_negative_numbers = true, long, conflicts_with = "nloglr")]
    pub lr: Option<f64>,
    /// Learning rate as a negative decimal logarithm (the reference scripts' flag): lr = 10^-x.
    #[arg(allow_negative_numbers = true, long)]
    pub nloglr: Option<f64>,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value = "cosine")]
    pub schedule: Schedule,
    /// AdamW decoupled weight decay (on the weight, not the bias).
    #[arg(allow_negative_numbers = true, long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Seed for initialisation, shuffling and the validation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the training step runs.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
    /// Embedding sets up to this many MiB (as f32) are loaded into memory; larger ones stream.
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    pub max_memory_mib: u64,

    /// Where to write the head (.safetensors).
    #[arg(long, default_value = "head.safetensors")]
    pub out: PathBuf,
    /// Where to write per-epoch metrics (JSON).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Draw loss and accuracy per epoch (.svg or .png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Continue from the checkpoint written beside --out (OUT.checkpoint) after each epoch (it
    /// is removed when a run has written its outputs).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs of this invocation (the checkpoint allows --resume later, with
    /// the same schedule as an uninterrupted run): for jobs with a time limit.
    #[arg(long, value_name = "N")]
    pub stop_after: Option<usize>,
    /// Extra k to report besides top-1..top-5 (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub k: Vec<usize>,
    /// Print neither progress nor settings.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `difftopk eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A head written by `difftopk train`.
    #[arg(long)]
    pub head: String,
    /// Embeddings.
    #[arg(long, value_name = "FILE")]
    pub x: String,
    /// Labels.
    #[arg(long, value_name = "FILE")]
    pub y: String,
    /// Extra k besides 1..5 (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub k: Vec<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Output format of `predict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PredictFormat {
    /// `row,rank,class,name,probability` lines with a header.
    Csv,
    /// One JSON object per row.
    Jsonl,
}

/// `difftopk predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A head written by `difftopk train`.
    #[arg(long)]
    pub head: String,
    /// Embeddings.
    #[arg(long, value_name = "FILE")]
    pub x: String,
    /// How many classes per row [default: 5, or every class of a head with fewer].
    #[arg(long)]
    pub top: Option<usize>,
    /// Class names, one per line (default: those stored in the head).
    #[arg(long)]
    pub classes: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: PredictFormat,
    /// Write here (atomically) instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

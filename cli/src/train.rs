//! `difftopk train`: a linear head trained with AdamW on the top-k or softmax cross-entropy loss.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use difftopk_autodiff::dfdx::prelude::*;
use difftopk_autodiff::{AdamW, AdamWConfig, RuntimeLinear};
use difftopk_core::{Method, Relaxation, Top1Mode, TopkLoss, TopkLossConfig};
use difftopk_io::{safetensors, stage_bytes, write_bytes_atomically, StagedFile};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};

use crate::args::{Device, LossKind, Schedule, TrainArgs};
use crate::data::LabelledSet;
use crate::error::{core_message, number, CliError, CliResult};
use crate::fail;
use crate::fused::{FusedHead, StepLoss};
use crate::head::{read_class_names, read_finite_values, top_k_accuracies, Head};
use crate::metrics::report_ks;
use crate::plot;

/// AdamW learning rate without --lr/--nloglr: tuned on Banking77 and GoEmotions (cosine schedule,
/// batch 128, 20 epochs); the paper's 10^-4.5 (`--nloglr 4.5`) suits 1.2 M ImageNet rows.
pub const DEFAULT_LEARNING_RATE: f64 = 0.05;

/// P_K without `--p-k`: the paper's top-1 and top-5 weights (it needs at least 5 classes).
pub const DEFAULT_P_K: &str = ".5,0,0,0,.5";

/// Parses `--p-k` (`.5,0,0,0,.5`).
fn parse_p_k(text: &str) -> CliResult<Vec<f64>> {
    text.split(',')
        .map(|w| {
            w.trim().parse::<f64>().map_err(|_| {
                CliError(format!(
                    "--p-k: {w:?} is not a number (expected e.g. .5,0,0,0,.5)"
                ))
            })
        })
        .collect()
}

/// The loss configuration from the flags, validated by the core (defaults: spec section 6).
fn loss_config(args: &TrainArgs, classes: usize) -> CliResult<Option<TopkLossConfig>> {
    if args.loss == LossKind::SoftmaxCe {
        // The top-k flags are unused, but a typo in them is still an error, not ignored.
        Method::from_name(&args.method)
            .map_err(|_| CliError(format!("--method {:?}: unknown", args.method)))?;
        relaxation_flags(args)?;
        if let Some(p_k) = &args.p_k {
            parse_p_k(p_k)?;
        }
        Top1Mode::from_name(&args.top1_mode)
            .map_err(|_| CliError(format!("--top1-mode {:?}: unknown", args.top1_mode)))?;
        return Ok(None);
    }
    topk_config(args, classes).map(Some)
}

/// `--distribution` and `--art-lambda`, each error naming its flag.
fn relaxation_flags(args: &TrainArgs) -> CliResult<Relaxation> {
    let relaxation = Relaxation::from_name(&args.distribution, args.art_lambda).map_err(|_| {
        CliError(format!(
            "--distribution {:?}: unknown (logistic, logistic_phi, gaussian, reciprocal, cauchy, optimal)",
            args.distribution
        ))
    })?;
    relaxation.validate().map_err(|e| {
        CliError(format!(
            "--art-lambda {}: {}",
            number(args.art_lambda),
            core_message(&e)
        ))
    })?;
    Ok(relaxation)
}

/// The top-k loss configuration the flags describe.
fn topk_config(args: &TrainArgs, classes: usize) -> CliResult<TopkLossConfig> {
    let method = Method::from_name(&args.method).map_err(|_| {
        CliError(format!(
            "--method {:?}: unknown (splitter_selection, odd_even, bitonic, bitonic_any_size, neuralsort, softsort)",
            args.method
        ))
    })?;
    let p_k = parse_p_k(args.p_k.as_deref().unwrap_or(DEFAULT_P_K))?;
    let relaxation = relaxation_flags(args)?;
    let m = match args.m.as_deref() {
        None => (classes > 16).then_some(16),
        Some("all") => None,
        // m ≥ C sorts every class anyway (the reference requires m < n: that is `all`).
        Some(text) => match text.parse::<usize>() {
            Ok(m) if m >= classes => None,
            Ok(m) => Some(m),
            Err(_) => fail!("--m {text:?}: expected a number of classes or `all`"),
        },
    };
    let top1 = Top1Mode::from_name(&args.top1_mode).map_err(|_| {
        CliError(format!(
            "--top1-mode {:?}: expected sm, smce or sort",
            args.top1_mode
        ))
    })?;
    let config = TopkLossConfig::new(method, classes, &p_k)
        .map_err(|e| match (&args.p_k, e) {
            // The user gave no P_K: say the default is the problem, and what to pass instead.
            (None, difftopk_core::Error::TopkLargerThanInputs { .. }) => CliError(format!(
                "the default P_K {DEFAULT_P_K} (weights of top-1..top-{}) needs at least {} classes, but there are {classes}: pass a P_K of at most {classes} weights (e.g. --p-k {}) or --loss softmax-ce",
                p_k.len(),
                p_k.len(),
                if classes >= 3 { ".5,.5" } else { "1" }
            )),
            (text, e) => CliError(format!(
                "--p-k {} with {classes} classes: {}",
                text.as_deref().unwrap_or(DEFAULT_P_K),
                core_message(&e)
            )),
        })?
        .with_inverse_temperature(args.inverse_temperature)
        .map_err(|e| {
            CliError(format!(
                "--inverse-temperature {}: {}",
                number(args.inverse_temperature),
                core_message(&e)
            ))
        })?
        .with_relaxation(relaxation)
        .map_err(|e| {
            CliError(format!(
                "--art-lambda {} (with --inverse-temperature {}): {}",
                number(args.art_lambda),
                number(args.inverse_temperature),
                core_message(&e)
            ))
        })?
        .with_preselection(m)
        .map_err(|e| {
            CliError(format!(
                "--m {}: {} (with {classes} classes and P_K of length {})",
                m.map_or("all".into(), |m| m.to_string()),
                core_message(&e),
                p_k.len()
            ))
        })?
        .with_top1_mode(top1);
    Ok(config)
}

/// Collects `key was A, now B` for every setting that differs between a checkpoint's
/// fingerprint and this run's; file names (`x`, `y`, `out`) count as equal when they name the
/// same file (`../in/X.npy` and `./X.npy` alike).
fn differing_settings(path: &str, stored: &Value, current: &Value, out: &mut Vec<String>) {
    match (stored, current) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let name = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                differing_settings(&name, x, y, out);
            }
        }
        (Value::String(x), Value::String(y)) if x != y && same_file(x, y) => {}
        (x, y) if x != y => out.push(format!("{path} was {x}, now {y}")),
        _ => {}
    }
}

/// Whether two `PATH[:NAME]` specs name the same array of the same file.
fn same_file(x: &str, y: &str) -> bool {
    let (x_path, x_name) = difftopk_io::split_spec(x);
    let (y_path, y_name) = difftopk_io::split_spec(y);
    x_name == y_name
        && match (
            crate::outputs::identity(Path::new(x_path)),
            crate::outputs::identity(Path::new(y_path)),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
}

/// The settings that define a run (a checkpoint resumes only a run with the same ones).
fn fingerprint(settings: &Value) -> Value {
    let mut fixed = settings.clone();
    if let Some(object) = fixed.as_object_mut() {
        // The device changes nothing but rounding: a run may resume on another.
        for volatile in ["threads", "metrics", "plot", "quiet", "resume", "device"] {
            object.remove(volatile);
        }
    }
    fixed
}

fn checkpoint_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".checkpoint");
    out.with_file_name(name)
}

fn accuracy_object(accuracies: &[(usize, f64)]) -> Value {
    let mut object = Map::new();
    for &(k, a) in accuracies {
        object.insert(format!("top{k}"), json!(a));
    }
    Value::Object(object)
}

fn describe(accuracies: &[(usize, f64)]) -> String {
    accuracies
        .iter()
        .filter(|(k, _)| *k == 1 || *k == 5)
        .map(|(k, a)| format!("top{k} {:.2}%", 100.0 * a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The training inputs as a checkpoint records them: a resumed run must train on the same
/// values, not only on files of the same names and shapes.
struct TrainingData {
    /// `--train-x` as given.
    x_spec: String,
    /// `--train-y` as given.
    y_spec: String,
    /// [`crate::data::ContentHash`] of every embedding of the file (as f32).
    x_hash: u64,
    /// Hash of every label of the file.
    y_hash: u64,
}

impl TrainingData {
    fn to_json(&self) -> Value {
        json!({"x": format!("{:016x}", self.x_hash), "y": format!("{:016x}", self.y_hash)})
    }
}

/// Everything a run carries from epoch to epoch (what a checkpoint holds).
struct State {
    head: FusedHead,
    optimiser: AdamW<f32>,
    history: Vec<Value>,
}

/// A checkpoint holds the parameters, the AdamW moments, the history, the settings that define
/// the run (`fingerprint`) and the content hashes of the training data (`training_data`,
/// [`TrainingData`]).
fn save_checkpoint(
    path: &Path,
    state: &State,
    settings: &Value,
    data: &TrainingData,
) -> CliResult<()> {
    let (weight, bias) = (&state.head.weight, &state.head.bias);
    let (classes, dimension) = (bias.len(), weight.len() / bias.len());
    let moments = state.optimiser.moments();
    let mut tensors = vec![
        safetensors::TensorToWrite {
            name: "weight",
            shape: vec![classes, dimension],
            values: weight,
        },
        safetensors::TensorToWrite {
            name: "bias",
            shape: vec![classes],
            values: bias,
        },
    ];
    let names = [
        ("adam_m_weight", "adam_v_weight"),
        ("adam_m_bias", "adam_v_bias"),
    ];
    for ((m, v), (m_name, v_name)) in moments.iter().zip(names) {
        tensors.push(safetensors::TensorToWrite {
            name: m_name,
            shape: vec![m.len()],
            values: m,
        });
        tensors.push(safetensors::TensorToWrite {
            name: v_name,
            shape: vec![v.len()],
            values: v,
        });
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("format".into(), crate::head::CHECKPOINT_FORMAT.into());
    metadata.insert("adam_steps".into(), state.optimiser.steps().to_string());
    metadata.insert(
        "history".into(),
        Value::Array(state.history.clone()).to_string(),
    );
    metadata.insert("fingerprint".into(), fingerprint(settings).to_string());
    metadata.insert("training_data".into(), data.to_json().to_string());
    let bytes = safetensors::serialise(&tensors, &metadata);
    write_bytes_atomically(path, &bytes).map_err(|e| {
        CliError(format!(
            "{}: cannot write the checkpoint: {e}",
            path.display()
        ))
    })
}

fn load_checkpoint(
    path: &Path,
    state: &mut State,
    settings: &Value,
    data: &TrainingData,
) -> CliResult<()> {
    let name = path.display().to_string();
    let file =
        std::fs::File::open(path).map_err(|e| CliError(format!("{name}: cannot resume: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| CliError(format!("{name}: {e}")))?
        .len();
    let header = difftopk_io::read_safetensors_header(&name, &file, len)?;
    let meta = |key: &str| {
        header
            .metadata
            .get(key)
            .cloned()
            .ok_or_else(|| CliError(format!("{name}: not a difftopk checkpoint (no {key})")))
    };
    let mut stored: Value = serde_json::from_str(&meta("fingerprint")?)
        .map_err(|e| CliError(format!("{name}: {e}")))?;
    // Checkpoints written before "m": "all" stored every class sorted as "m": null.
    if let Some(m) = stored.pointer_mut("/topk/m").filter(|m| m.is_null()) {
        *m = json!("all");
    }
    let mut differences = Vec::new();
    differing_settings("", &stored, &fingerprint(settings), &mut differences);
    if !differences.is_empty() {
        fail!("{name}: the checkpoint was written with other settings: {}; resume with the same data and options (--epochs included: the schedule depends on it); only --threads, --metrics, --plot and --quiet may change", differences.join("; "));
    }
    // Same files and shapes can still hold other values: compare the contents' hashes.
    // Checkpoints written before the hashes were stored resume with a note.
    match header.metadata.get("training_data") {
        None => crate::say!(
            "note: {name} predates the training-data fingerprint in checkpoints: cannot check that {} and {} are unchanged since it was written",
            data.x_spec, data.y_spec
        ),
        Some(text) => {
            let stored: Value = serde_json::from_str(text)
                .map_err(|e| CliError(format!("{name}: bad training_data: {e}")))?;
            let current = data.to_json();
            for (key, spec, what) in [
                ("x", &data.x_spec, "training embeddings"),
                ("y", &data.y_spec, "training labels"),
            ] {
                if stored[key] != current[key] {
                    fail!(
                        "{name}: the {what} {spec} changed since the checkpoint was written (content hash {} then, {} now): resume with the data the run started with, or train afresh without --resume",
                        stored[key], current[key]
                    );
                }
            }
        }
    }
    let read = |tensor: &str, len: usize| -> CliResult<Vec<f32>> {
        let spec = format!("{name}:{tensor}");
        let array = difftopk_io::ArrayFile::open(&spec)?;
        if array.shape().iter().product::<usize>() != len {
            fail!("{spec}: {:?} does not match the head", array.shape());
        }
        if array.dtype() != difftopk_io::Dtype::F32 {
            fail!(
                "{spec}: dtype {:?}, a checkpoint holds float32",
                array.dtype()
            );
        }
        read_finite_values(&spec, &array)
    };
    let classes = state.head.bias.len();
    let dimension = state.head.weight.len() / classes;
    state.head = FusedHead::new(
        read("weight", classes * dimension)?,
        read("bias", classes)?,
        classes,
        dimension,
    )?;
    let moments = vec![
        (
            read("adam_m_weight", classes * dimension)?,
            read("adam_v_weight", classes * dimension)?,
        ),
        (read("adam_m_bias", classes)?, read("adam_v_bias", classes)?),
    ];
    let steps: u64 = meta("adam_steps")?
        .parse()
        .map_err(|_| CliError(format!("{name}: bad adam_steps")))?;
    state.optimiser.restore(steps, moments);
    state.history = serde_json::from_str::<Vec<Value>>(&meta("history")?)
        .map_err(|e| CliError(format!("{name}: bad history: {e}")))?;
    Ok(())
}

/// The `final` block of the metrics: the last epoch without validation; with validation, each
/// metric's best validation value and the test value at that epoch (the reference's rule).
fn final_metrics(history: &[Value], ks: &[usize]) -> Value {
    let last = history.last().cloned().unwrap_or(Value::Null);
    let has_validation = history.iter().any(|h| h.get("val").is_some());
    if !has_validation {
        return json!({
            "rule": "last epoch (no validation set)",
            "val": Value::Null,
            "test": last.get("test").cloned().unwrap_or(Value::Null),
        });
    }
    let (mut val, mut test, mut epochs) = (Map::new(), Map::new(), Map::new());
    for k in ks {
        let key = format!("top{k}");
        let mut best: Option<(f64, &Value)> = None;
        for record in history {
            if let Some(v) = record["val"][&key].as_f64() {
                if best.is_none_or(|(b, _)| v > b) {
                    best = Some((v, record));
                }
            }
        }
        if let Some((v, record)) = best {
            val.insert(key.clone(), json!(v));
            epochs.insert(key.clone(), record["epoch"].clone());
            if let Some(t) = record.get("test").and_then(|t| t.get(&key)) {
                test.insert(key, t.clone());
            }
        }
    }
    json!({
        "rule": {"description": "each metric's test value at the epoch of its best validation value (first best)", "epochs": epochs},
        "val": val,
        "test": if test.is_empty() { Value::Null } else { Value::Object(test) },
    })
}

/// Runs `difftopk train`.
pub fn run(args: &TrainArgs) -> CliResult<()> {
    let checkpoint_file = checkpoint_path(&args.out);
    let mut outputs: Vec<(&str, &Path)> = vec![
        ("--out", &args.out),
        ("--out (its checkpoint)", &checkpoint_file),
    ];
    if let Some(path) = &args.metrics {
        outputs.push(("--metrics", path));
    }
    if let Some(path) = &args.plot {
        plot_is_png(path)?;
        outputs.push(("--plot", path));
    }
    let inputs: Vec<(&str, &str)> = [
        ("--train-x", Some(&args.train_x)),
        ("--train-y", Some(&args.train_y)),
        ("--val-x", args.val_x.as_ref()),
        ("--val-y", args.val_y.as_ref()),
        ("--test-x", args.test_x.as_ref()),
        ("--test-y", args.test_y.as_ref()),
        ("--classes", args.classes.as_ref()),
    ]
    .into_iter()
    .filter_map(|(flag, spec)| Some((flag, spec?.as_str())))
    .collect();
    crate::outputs::check_outputs(&inputs, &outputs)?;
    // A finished run removes its checkpoint: with the head there and no checkpoint, the run
    // being resumed has finished (say so before reading any data).
    if args.resume && !checkpoint_file.exists() && args.out.is_file() {
        fail!(
            "{}: cannot resume: the checkpoint does not exist and the head {} does: the run finished (a finished run removes its checkpoint), so there is nothing to resume; train without --resume to start a new run",
            checkpoint_file.display(),
            args.out.display()
        );
    }
    if args.epochs == 0 {
        fail!("--epochs must be at least 1");
    }
    if args.stop_after == Some(0) {
        fail!("--stop-after must be at least 1 (it counts the epochs this run trains)");
    }
    if args.batch_size == 0 {
        fail!("--batch-size must be at least 1");
    }
    let learning_rate = match (args.lr, args.nloglr) {
        (Some(lr), _) => lr,
        (None, Some(x)) => 10f64.powf(-x),
        (None, None) => DEFAULT_LEARNING_RATE,
    };
    if !(learning_rate.is_finite() && learning_rate > 0.0) {
        match (args.lr, args.nloglr) {
            (Some(lr), _) => fail!(
                "--lr {}: the learning rate must be positive and finite",
                number(lr)
            ),
            (None, Some(x)) => fail!(
                "--nloglr {}: the learning rate 10^{} = {} must be positive and finite",
                number(x),
                number(-x),
                number(learning_rate)
            ),
            (None, None) => fail!(
                "the learning rate must be positive and finite, got {}",
                number(learning_rate)
            ),
        }
    }
    if !(args.weight_decay.is_finite() && args.weight_decay >= 0.0) {
        fail!(
            "--weight-decay must be non-negative and finite, got {}",
            number(args.weight_decay)
        );
    }
    let budget = args.max_memory_mib.saturating_mul(1 << 20);
    let mut train = LabelledSet::open(&args.train_x, &args.train_y, budget)?;
    let validation = match (&args.val_x, &args.val_y, args.val_fraction) {
        (Some(x), Some(y), _) => Some((LabelledSet::open(x, y, budget)?, x.clone(), y.clone())),
        (_, _, Some(fraction)) => Some((
            train.split_off_validation(fraction, args.seed)?,
            args.train_x.clone(),
            args.train_y.clone(),
        )),
        _ => None,
    };
    let test = match (&args.test_x, &args.test_y) {
        (Some(x), Some(y)) => Some((LabelledSet::open(x, y, budget)?, x.clone(), y.clone())),
        _ => None,
    };
    let dimension = train.dimension();
    for (set, x, _) in validation.iter().chain(test.iter()) {
        if set.dimension() != dimension {
            fail!(
                "{x}: dimension {} differs from the training embeddings' {dimension}",
                set.dimension()
            );
        }
    }
    let class_names = args.classes.as_deref().map(read_class_names).transpose()?;
    // The largest label of each set, with the labels file and the row holding it: without
    // --num-classes or --classes, C is the largest label + 1 (and errors name where it is).
    let train_largest = train.largest_label();
    let largest: Vec<(&str, &str, (usize, usize))> =
        std::iter::once(("training", args.train_y.as_str(), &train))
            .chain(
                validation
                    .iter()
                    .map(|(s, _, y)| ("validation", y.as_str(), s)),
            )
            .chain(test.iter().map(|(s, _, y)| ("test", y.as_str(), s)))
            .filter_map(|(role, y, set)| Some((role, y, set.largest_label()?)))
            .collect();
    let seen = largest
        .iter()
        .map(|&(_, y, found)| (y, found))
        .reduce(|best, next| if next.1 .0 > best.1 .0 { next } else { best });
    let inferred = args.num_classes.is_none() && class_names.is_none();
    let classes = args
        .num_classes
        .or(class_names.as_ref().map(Vec::len))
        .unwrap_or_else(|| seen.map_or(0, |(_, (label, _))| label.saturating_add(1)));
    if let Some(names) = &class_names {
        if names.len() != classes {
            fail!(
                "{}: {} class names, but --num-classes is {classes}",
                args.classes.as_deref().unwrap_or(""),
                names.len()
            );
        }
    }
    if classes < 2 {
        fail!(
            "{}: a classifier needs at least 2 classes, found {classes}",
            args.train_y
        );
    }
    // A head of C × D parameters (and its AdamW moments) must be something we can hold: a stray
    // huge label (an "ignore" value such as 2³²−1) would otherwise ask for terabytes.
    const MAX_PARAMETERS: usize = 1 << 31;
    if classes
        .checked_mul(dimension)
        .is_none_or(|parameters| parameters > MAX_PARAMETERS)
    {
        match (seen, args.num_classes) {
            (Some((y, (label, row))), _) if inferred => fail!(
                "{y}: label {label} at row {row} makes {classes} classes × dimension {dimension} too large a head (more than 2^31 weights); the number of classes comes from the largest label: check the labels or pass --num-classes"
            ),
            (_, Some(_)) => fail!(
                "--num-classes {classes} × dimension {dimension} is too large a head (more than 2^31 weights)"
            ),
            _ => fail!(
                "{}: {classes} classes × dimension {dimension} is too large a head (more than 2^31 weights)",
                args.classes.as_deref().unwrap_or(&args.train_y)
            ),
        }
    }
    // A class inferred from the validation or test labels alone gets no training rows.
    if inferred {
        let train_top = train_largest.map_or(0, |(label, _)| label);
        for &(role, y, (label, row)) in &largest {
            if role != "training" && label > train_top {
                crate::say!(
                    "warning: {y}: {role} label {label} at row {row} is above every training label (the largest is {train_top}): the head gets {classes} classes, class {label} without training rows"
                );
            }
        }
    }
    train.check_labels(&args.train_y, classes)?;
    for (set, _, y) in validation.iter().chain(test.iter()) {
        set.check_labels(y, classes)?;
    }
    let config = loss_config(args, classes)?;
    let topk_loss = config.map(TopkLoss::new).transpose()?;
    let ks = report_ks(&args.k, classes)?;
    let steps_per_epoch = train.len().div_ceil(args.batch_size);
    let total_steps = steps_per_epoch.saturating_mul(args.epochs);

    let settings = json!({
        "train": {"x": args.train_x, "y": args.train_y, "rows": train.len(), "streamed": train.rows.is_streamed()},
        "validation": validation.as_ref().map(|(s, x, y)| json!({"x": x, "y": y, "rows": s.len(), "fraction": args.val_fraction})),
        "test": test.as_ref().map(|(s, x, y)| json!({"x": x, "y": y, "rows": s.len()})),
        "dimension": dimension,
        "classes": classes,
        "loss": match args.loss { LossKind::Topk => "topk", LossKind::SoftmaxCe => "softmax-ce" },
        "topk": config.as_ref().map(|c| json!({
            "method": c.method().name(),
            "distribution": c.relaxation().name(),
            "art_lambda": args.art_lambda,
            "inverse_temperature": c.inverse_temperature(),
            "p_k": c.topk_distribution(),
            "m": c.preselection().map_or(json!("all"), |m| json!(m)),
            "top1_mode": c.top1_mode().name(),
        })),
        "optimizer": {"name": "AdamW", "lr": learning_rate, "schedule": match args.schedule { Schedule::Cosine => "cosine", Schedule::Constant => "constant" }, "weight_decay": args.weight_decay, "betas": [0.9, 0.999], "eps": 1e-8},
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "threads": rayon::current_num_threads(),
        "device": match args.device { Device::Cpu => "cpu", Device::Cuda => "cuda" },
        "out": args.out.display().to_string(),
    });
    if !args.quiet {
        // NeuralSort and SoftSort have no comparators: a relaxation given for them does nothing.
        let relaxed_rows =
            config.is_some_and(|c| matches!(c.method(), Method::NeuralSort | Method::SoftSort));
        if relaxed_rows && (args.distribution != "logistic_phi" || args.art_lambda != 0.5) {
            crate::say!(
                "note: --distribution and --art-lambda do not apply to --method {} (it has no comparators); only --inverse-temperature does",
                args.method
            );
        }
        if let Some(m) = args.m.as_deref().and_then(|m| m.parse::<usize>().ok()) {
            if config.is_some() && m >= classes {
                crate::say!(
                    "note: --m {m} is not below the {classes} classes: every class is sorted (m \"all\")"
                );
            }
        }
        if args.batch_size > train.len() {
            crate::say!(
                "note: --batch-size {} is more than the {} training row{}: each step takes all of them (one step per epoch)",
                args.batch_size,
                train.len(),
                if train.len() == 1 { "" } else { "s" }
            );
        }
        crate::say!(
            "difftopk train: settings in effect\n{}",
            serde_json::to_string_pretty(&settings).expect("JSON")
        );
    }

    let training_data = TrainingData {
        x_spec: args.train_x.clone(),
        y_spec: args.train_y.clone(),
        x_hash: train.rows.content_hash()?,
        y_hash: train.labels_hash(),
    };
    let device = Cpu::default();
    let initial = RuntimeLinear::<f32>::new(&device, dimension, classes, args.seed)?;
    let mut state = State {
        head: FusedHead::new(
            initial.weight.as_vec(),
            initial.bias.as_vec(),
            classes,
            dimension,
        )?,
        optimiser: AdamW::new(AdamWConfig {
            learning_rate,
            betas: [0.9, 0.999],
            epsilon: 1e-8,
            weight_decay: args.weight_decay,
        })?,
        history: Vec::new(),
    };
    let checkpoint = checkpoint_path(&args.out);
    if args.resume {
        load_checkpoint(&checkpoint, &mut state, &settings, &training_data)?;
        if !args.quiet {
            crate::say!(
                "resuming from {} after epoch {}",
                checkpoint.display(),
                state.history.len()
            );
        }
    }
    let first_epoch = state.history.len() + 1;
    let step_loss = match &topk_loss {
        Some(loss) => StepLoss::Topk(loss),
        None => StepLoss::SoftmaxCrossEntropy,
    };
    let mut cuda = match args.device {
        Device::Cpu => None,
        Device::Cuda => {
            let cuda = CudaTraining::new(&state, config, &train)?;
            if !args.quiet {
                crate::say!(
                    "--device cuda: {}",
                    if cuda.resident {
                        "the training set is kept on the device; batches are gathered there"
                    } else {
                        "batches are copied to the device step by step (the set does not fit in half its free memory, or is streamed)"
                    }
                );
            }
            Some(cuda)
        }
    };
    let terminal = !args.quiet && std::io::stderr().is_terminal();
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    // A resident set's batch as file row indices (reused, like `x` and `labels`).
    let mut resident_rows: Vec<u32> = Vec::new();
    let last_epoch = match args.stop_after {
        Some(count) => args.epochs.min((first_epoch - 1).saturating_add(count)),
        None => args.epochs,
    };
    for epoch in first_epoch..=last_epoch {
        let started = Instant::now();
        let order = train.epoch_order(args.seed, epoch);
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(steps_per_epoch as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{}", args.epochs));
            bar
        });
        let mut loss_sum = 0.0f64;
        let mut learning_rate_now = learning_rate;
        for (step, batch) in order.chunks(args.batch_size).enumerate() {
            let global_step = (epoch - 1) * steps_per_epoch + step;
            learning_rate_now = match args.schedule {
                Schedule::Constant => learning_rate,
                Schedule::Cosine => {
                    0.5 * learning_rate
                        * (1.0
                            + (std::f64::consts::PI * global_step as f64 / total_steps as f64)
                                .cos())
                }
            };
            state.optimiser.set_learning_rate(learning_rate_now)?;
            let resident = cuda.as_ref().is_some_and(|cuda| cuda.resident);
            if !resident {
                train.gather(batch, &mut x, &mut labels)?;
            }
            let value = match &mut cuda {
                Some(cuda) if resident => {
                    resident_rows.clear();
                    resident_rows.extend(batch.iter().map(|&p| train.selection[p] as u32));
                    cuda.step_resident(&resident_rows, &mut state.optimiser)
                }
                Some(cuda) => cuda.step(&x, &labels, &mut state.optimiser),
                None => state
                    .head
                    .step(&x, &labels, &step_loss, &mut state.optimiser),
            }
            .map_err(|error| {
                // Logits out of range (non-finite, or beyond the loss's ±1e32): before any
                // update the cause is the scale of the inputs, after updates a step too large.
                let out_of_range = ["non-finite", "NaN", "logit beyond"]
                    .iter()
                    .any(|needle| error.0.contains(needle));
                // At a later step, a batch holding huge embeddings is the cause, whatever the
                // head: named rather than blamed on --lr.
                match out_of_range {
                    false => error,
                    true if global_step == 0 => initial_logits_error(&train, &args.train_x, "the logits of the initial head are already non-finite or beyond ±1e32"),
                    true => huge_batch_error(&train, batch, &args.train_x, &format!("the logits became non-finite or beyond ±1e32 at epoch {epoch}, step {step}")).unwrap_or_else(|| CliError(format!(
                        "training diverged at epoch {epoch}, step {step} (the logits became non-finite or beyond ±1e32): lower --lr"
                    ))),
                }
            })?;
            if !value.is_finite() {
                if global_step == 0 {
                    return Err(initial_logits_error(
                        &train,
                        &args.train_x,
                        &format!("the loss of the initial head is already {value}"),
                    ));
                }
                if let Some(error) = huge_batch_error(
                    &train,
                    batch,
                    &args.train_x,
                    &format!("the training loss became {value} at epoch {epoch}, step {step}"),
                ) {
                    return Err(error);
                }
                fail!("the training loss became {value} at epoch {epoch}, step {step}: lower --lr");
            }
            loss_sum += value as f64 * batch.len() as f64;
            if let Some(bar) = &bar {
                bar.inc(1);
                let rows = ((step + 1) * args.batch_size).min(order.len());
                bar.set_message(format!(
                    "loss {:.4}  {:.0} rows/s",
                    loss_sum / rows as f64,
                    rows as f64 / started.elapsed().as_secs_f64()
                ));
            }
        }
        let train_seconds = started.elapsed().as_secs_f64();
        if let Some(cuda) = &cuda {
            cuda.copy_to_host(&mut state)?;
        }
        let train_loss = loss_sum / train.len() as f64;
        let mut record = json!({"epoch": epoch, "train_loss": train_loss, "lr_end": learning_rate_now, "train_seconds": train_seconds});
        let linear = RuntimeLinear::from_parts(
            &device,
            dimension,
            classes,
            state.head.weight.clone(),
            state.head.bias.clone(),
        )?;
        let val_accuracy = validation
            .as_ref()
            .map(|(s, _, _)| top_k_accuracies(&linear, &device, s, &ks))
            .transpose()?;
        let test_accuracy = test
            .as_ref()
            .map(|(s, _, _)| top_k_accuracies(&linear, &device, s, &ks))
            .transpose()?;
        if let Some(a) = &val_accuracy {
            record["val"] = accuracy_object(a);
        }
        if let Some(a) = &test_accuracy {
            record["test"] = accuracy_object(a);
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if !args.quiet {
            let mut line = format!("epoch {epoch}/{}  loss {train_loss:.4}", args.epochs);
            if let Some(a) = &val_accuracy {
                line += &format!("  val {}", describe(a));
            }
            if let Some(a) = &test_accuracy {
                line += &format!("  test {}", describe(a));
            }
            line += &format!("  {:.0} rows/s", train.len() as f64 / train_seconds);
            crate::say!("{line}");
        }
        state.history.push(record);
        save_checkpoint(&checkpoint, &state, &settings, &training_data)?;
    }

    if last_epoch < args.epochs {
        // Printed even with --quiet: outputs the user asked for are missing until the run ends.
        let mut pending = vec![format!("the head ({})", args.out.display())];
        if let Some(path) = &args.metrics {
            pending.push(format!("--metrics {}", path.display()));
        }
        if let Some(path) = &args.plot {
            pending.push(format!("--plot {}", path.display()));
        }
        crate::say!(
            "stopped after epoch {last_epoch} of {} (--stop-after); not written yet: {}; they are written when the run finishes: continue with --resume (from {})",
            args.epochs,
            pending.join(", "),
            checkpoint.display()
        );
        return Ok(());
    }
    let final_block = final_metrics(&state.history, &ks);
    // The saved head is the last epoch's: its own metrics go into the head; with a validation
    // set, `final` (each metric's best validation epoch) describes the run, not this head.
    let last_record = state.history.last().cloned().unwrap_or(Value::Null);
    let mut metadata = BTreeMap::new();
    metadata.insert("settings".into(), settings.to_string());
    metadata.insert("last_epoch".into(), last_record.to_string());
    metadata.insert("final".into(), final_block.to_string());
    let head = Head {
        weight: state.head.weight.clone(),
        bias: state.head.bias.clone(),
        classes,
        dimension,
        class_names: class_names.unwrap_or_else(|| (0..classes).map(|c| c.to_string()).collect()),
        metadata,
    };
    // The outputs are replaced as a set: each is written to its temporary file first, and
    // only when all of them are written are they renamed into place. On an error while writing,
    // the staged files are dropped (their temporary files removed) and every old output stays;
    // a rename failing during the commit (rare: the directory changed meanwhile) leaves the
    // outputs renamed before it replaced, and the message lists which were and which were not.
    let write_outputs = || -> CliResult<()> {
        let mut staged = vec![head.stage(&args.out)?];
        if let Some(path) = &args.metrics {
            let document =
                json!({"settings": settings, "epochs": state.history, "final": final_block});
            let text = serde_json::to_string_pretty(&document).expect("JSON") + "\n";
            staged.push(stage_bytes(path, text.as_bytes()).map_err(|e| {
                CliError(format!("{}: cannot write the metrics: {e}", path.display()))
            })?);
        }
        if let Some(path) = &args.plot {
            staged.push(stage_plot(path, &state.history, &ks)?);
        }
        difftopk_io::commit_all(staged).map_err(|failure| {
            CliError(commit_failure(&failure, |path| {
                if path == args.out {
                    "the head"
                } else if Some(path) == args.metrics.as_deref() {
                    "the metrics"
                } else {
                    "the plot"
                }
            }))
        })
    };
    // The checkpoint of the last epoch stays until the outputs are written: the same command
    // with --resume then writes them without training again.
    write_outputs().map_err(|CliError(message)| {
        CliError(format!(
            "{message} (the checkpoint {} is kept: after fixing this, the same command with --resume writes all the outputs without training again)",
            checkpoint.display()
        ))
    })?;
    // The run is complete: its checkpoint has no further use (--resume of a finished run
    // would only write the same outputs again).
    if let Err(e) = std::fs::remove_file(&checkpoint) {
        if e.kind() != std::io::ErrorKind::NotFound {
            crate::say!(
                "note: {}: cannot remove the checkpoint of the finished run: {e}",
                checkpoint.display()
            );
        }
    }
    if !args.quiet {
        let summary = |set: &str| {
            last_record
                .get(set)
                .filter(|v| v.is_object())
                .map(|v| format!(" {set} {v}"))
                .unwrap_or_default()
        };
        let scores = summary("val") + &summary("test");
        crate::say!(
            "wrote {} (the head after epoch {last_epoch}{}{scores})",
            args.out.display(),
            if scores.is_empty() { "" } else { ":" }
        );
        if final_block["val"].is_object() {
            crate::say!(
                "best validation per metric (\"final\" in --metrics; other epochs than the head's): {}",
                final_block
            );
        }
    }
    Ok(())
}

/// The message for a failed commit of the run's outputs, each output named by its `role` (`the
/// metrics`) and path: the output that failed and why, and, when renames before it succeeded,
/// which outputs already hold this run's content and which still the earlier run's.
fn commit_failure(
    failure: &difftopk_io::CommitError,
    role: impl Fn(&Path) -> &'static str,
) -> String {
    let mut message = format!(
        "{}: cannot write {}: {}",
        failure.path.display(),
        role(&failure.path),
        failure.error
    );
    if !failure.replaced.is_empty() {
        let list = |paths: &[PathBuf]| {
            paths
                .iter()
                .map(|path| format!("{} ({})", role(path), path.display()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        message += &format!(
            "; already replaced: {}; not replaced: {}",
            list(&failure.replaced),
            list(&failure.not_replaced)
        );
    }
    message
}

/// The error for logits out of range at the first step, before any update: the head is the
/// small random initial one, so the cause is the embeddings' scale, named by their largest
/// magnitude (`what` says what went wrong).
fn initial_logits_error(train: &LabelledSet, train_x: &str, what: &str) -> CliError {
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    let (mut largest, mut at) = (0f32, 0);
    let positions: Vec<usize> = (0..train.len()).collect();
    for block in positions.chunks(difftopk_io::ROWS_PER_READ) {
        if let Err(error) = train.gather(block, &mut x, &mut labels) {
            return error;
        }
        for (offset, value) in x.iter().enumerate() {
            if value.abs() > largest {
                (largest, at) = (value.abs(), block[0] * train.dimension() + offset);
            }
        }
    }
    let (row, column) = (
        train.selection[at / train.dimension()],
        at % train.dimension(),
    );
    CliError(format!(
        "{train_x}: {what} at epoch 1, step 0, before any update: the training embeddings reach magnitude {largest:e} (row {row}, column {column}); normalise them (e.g. scale each row to unit length)"
    ))
}

/// Embeddings beyond this magnitude are out of any embedding model's scale: when logits go out
/// of range on a batch holding one, the input is named, not the learning rate (AdamW's steps are
/// about --lr in size whatever the gradient, so a lower --lr does not tame such inputs).
const HUGE_EMBEDDING: f32 = 1e15;

/// The error for logits out of range (`what`, with where) on a batch (`positions` in the
/// training set) whose embeddings reach beyond [`HUGE_EMBEDDING`]: it names the largest value,
/// its row and column, and suggests normalising instead of lowering --lr. `None` when the batch's
/// embeddings are not huge (the run diverged); an error reading the batch comes back as is.
fn huge_batch_error(
    train: &LabelledSet,
    positions: &[usize],
    train_x: &str,
    what: &str,
) -> Option<CliError> {
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    if let Err(error) = train.gather(positions, &mut x, &mut labels) {
        return Some(error);
    }
    let (at, value) = x
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))?;
    if value.abs() <= HUGE_EMBEDDING {
        return None;
    }
    let dimension = train.dimension();
    let (row, column) = (train.selection[positions[at / dimension]], at % dimension);
    Some(CliError(format!(
        "{train_x}: {what}: the batch holds the embedding value {value:e} (row {row}, column {column}), beyond any embedding's usual scale; normalise the embeddings (e.g. scale each row to unit length) instead of lowering --lr"
    )))
}

/// Whether `--plot` asks for PNG (else SVG); an error for other extensions.
fn plot_is_png(path: &Path) -> CliResult<bool> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("svg") => Ok(false),
        Some("png") => Ok(true),
        _ => fail!(
            "{}: --plot writes SVG or PNG; name the file *.svg or *.png",
            path.display()
        ),
    }
}

/// The plot's bytes staged for `path` (committed with the run's other outputs).
fn stage_plot(path: &Path, history: &[Value], ks: &[usize]) -> CliResult<StagedFile> {
    let as_png = plot_is_png(path)?;
    let loss = vec![plot::Series {
        label: "train loss".into(),
        values: history
            .iter()
            .map(|h| h["train_loss"].as_f64().unwrap_or(f64::NAN))
            .collect(),
    }];
    let mut accuracy = Vec::new();
    for set in ["val", "test"] {
        for k in ks.iter().filter(|&&k| k == 1 || k == 5) {
            let key = format!("top{k}");
            if history.iter().any(|h| h[set][&key].is_number()) {
                accuracy.push(plot::Series {
                    label: format!("{set} top-{k}"),
                    values: history
                        .iter()
                        .map(|h| h[set][&key].as_f64().unwrap_or(f64::NAN))
                        .collect(),
                });
            }
        }
    }
    let shapes = plot::layout(&loss, &accuracy);
    let bytes = if as_png {
        plot::png(&shapes)
    } else {
        plot::svg("difftopk train", &shapes).into_bytes()
    };
    stage_bytes(path, &bytes)
        .map_err(|e| CliError(format!("{}: cannot write the plot: {e}", path.display())))
}

/// The device side of `--device cuda`: the head and its AdamW moments live on the GPU during an
/// epoch; the host `State` (what evaluation and checkpoints read) is refreshed after each.
struct CudaTraining {
    head: difftopk_gpu::CudaHead,
    topk: Option<difftopk_gpu::CudaTopkLoss>,
    cross_entropy: Option<difftopk_gpu::CudaSoftmaxCrossEntropy>,
    /// Whether the training set's file rows are on the device (batches gathered there).
    resident: bool,
}

impl CudaTraining {
    fn new(state: &State, config: Option<TopkLossConfig>, train: &LabelledSet) -> CliResult<Self> {
        let (weight, bias) = (&state.head.weight, &state.head.bias);
        let classes = bias.len();
        let moments = state.optimiser.moments();
        let moments = (moments.len() == 2).then(|| {
            [
                (moments[0].0.as_slice(), moments[0].1.as_slice()),
                (moments[1].0.as_slice(), moments[1].1.as_slice()),
            ]
        });
        let mut head =
            difftopk_gpu::CudaHead::new(weight, bias, classes, weight.len() / classes, moments)?;
        // An in-memory set that fits in half the device's free memory stays there.
        let resident = match train.rows.as_ref() {
            crate::data::Rows::Memory { values, .. } => {
                head.make_resident(values, &train.labels, 0.5)?
            }
            crate::data::Rows::File(_) => false,
        };
        let (topk, cross_entropy) = match config {
            Some(config) => (Some(difftopk_gpu::CudaTopkLoss::new(config)?), None),
            None => (None, Some(difftopk_gpu::CudaSoftmaxCrossEntropy::new()?)),
        };
        Ok(CudaTraining {
            head,
            topk,
            cross_entropy,
            resident,
        })
    }

    /// One step on rows of the resident set (file row indices).
    fn step_resident(&mut self, rows: &[u32], optimiser: &mut AdamW<f32>) -> CliResult<f32> {
        self.run(optimiser, |head, loss, weight_step, bias_step| {
            head.step_resident(rows, loss, weight_step, bias_step)
        })
    }

    /// One step on a batch from the host.
    fn step(&mut self, x: &[f32], labels: &[usize], optimiser: &mut AdamW<f32>) -> CliResult<f32> {
        self.run(optimiser, |head, loss, weight_step, bias_step| {
            head.step(x, labels, loss, weight_step, bias_step)
        })
    }

    /// The optimiser's step count and scalars advance on the host, the update runs on the
    /// device.
    fn run(
        &mut self,
        optimiser: &mut AdamW<f32>,
        step: impl FnOnce(
            &mut difftopk_gpu::CudaHead,
            &difftopk_gpu::CudaStepLoss<'_>,
            &difftopk_gpu::AdamStep,
            &difftopk_gpu::AdamStep,
        ) -> Result<f32, difftopk_gpu::Error>,
    ) -> CliResult<f32> {
        let loss = match (&self.topk, &self.cross_entropy) {
            (Some(topk), _) => difftopk_gpu::CudaStepLoss::Topk(topk),
            (None, Some(cross_entropy)) => {
                difftopk_gpu::CudaStepLoss::SoftmaxCrossEntropy(cross_entropy)
            }
            (None, None) => fail!("internal: no loss on the device"),
        };
        optimiser.begin_step();
        let adam = |decay: bool| {
            let c = optimiser.coefficients(decay);
            difftopk_gpu::AdamStep {
                step_size: c.step_size,
                inverse_root_correction: c.inverse_root_correction,
                keep: c.keep,
                beta1: c.beta1,
                beta2: c.beta2,
                one_minus_beta1: c.one_minus_beta1,
                one_minus_beta2: c.one_minus_beta2,
                epsilon: c.epsilon,
            }
        };
        let (weight_step, bias_step) = (adam(true), adam(false));
        match step(&mut self.head, &loss, &weight_step, &bias_step) {
            Ok(value) => Ok(value),
            // A non-finite logit on the device: the run diverged (the caller names the step).
            Err(difftopk_gpu::Error::Core(difftopk_core::Error::NonFiniteInput { .. })) => {
                Err(CliError("non-finite logits".into()))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Copies the head and the AdamW moments back into the host state.
    fn copy_to_host(&self, state: &mut State) -> CliResult<()> {
        let (weight, bias) = self.head.parameters()?;
        let classes = bias.len();
        state.head = FusedHead::new(weight, bias, classes, state.head.weight.len() / classes)?;
        let [weight_moments, bias_moments] = self.head.moments()?;
        let steps = state.optimiser.steps();
        state
            .optimiser
            .restore(steps, vec![weight_moments, bias_moments]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rename failing in the middle of the set: the message names the output that failed,
    /// the outputs already replaced and those not; with none replaced, only the failure.
    #[test]
    fn commit_failure_lists_the_replaced_outputs() {
        let role = |path: &Path| match path.to_str() {
            Some("h.safetensors") => "the head",
            Some("m.json") => "the metrics",
            _ => "the plot",
        };
        let mut failure = difftopk_io::CommitError {
            path: "m.json".into(),
            error: std::io::Error::new(std::io::ErrorKind::IsADirectory, "Is a directory"),
            replaced: vec!["h.safetensors".into()],
            not_replaced: vec!["m.json".into(), "p.svg".into()],
        };
        assert_eq!(
            commit_failure(&failure, role),
            "m.json: cannot write the metrics: Is a directory; already replaced: the head (h.safetensors); not replaced: the metrics (m.json), the plot (p.svg)"
        );
        failure.replaced.clear();
        assert_eq!(
            commit_failure(&failure, role),
            "m.json: cannot write the metrics: Is a directory"
        );
    }
}

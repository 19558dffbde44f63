//! The trained head on disk: a safetensors file with `weight` (C × D), `bias` (C) and metadata
//! (format, class names, the training settings).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use difftopk_autodiff::dfdx::prelude::*;
use difftopk_autodiff::RuntimeLinear;
use difftopk_io::{read_safetensors_header, safetensors, stage_bytes, StagedFile};

use crate::data::LabelledSet;
use crate::error::{CliError, CliResult};
use crate::fail;
use crate::metrics::TopkCounter;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "difftopk-linear-head-v1";
/// The `format` of a training checkpoint (`OUT.checkpoint`), which holds a head's tensors too
/// (`eval --head OUT.checkpoint` evaluates a run stopped early).
pub const CHECKPOINT_FORMAT: &str = "difftopk-checkpoint-v1";

/// A linear head `logits = x · Wᵀ + b`.
#[derive(Clone, Debug)]
pub struct Head {
    /// `W`, row-major `[classes, dimension]`.
    pub weight: Vec<f32>,
    /// `b`, `[classes]`.
    pub bias: Vec<f32>,
    /// C.
    pub classes: usize,
    /// D.
    pub dimension: usize,
    /// Class names (`classes` entries; the indices when none were given).
    pub class_names: Vec<String>,
    /// Other metadata (the settings it was trained with).
    pub metadata: BTreeMap<String, String>,
}

impl Head {
    /// Serialised safetensors bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut metadata = self.metadata.clone();
        metadata.insert("format".into(), FORMAT.into());
        metadata.insert(
            "class_names".into(),
            serde_json::to_string(&self.class_names).expect("strings"),
        );
        safetensors::serialise(
            &[
                safetensors::TensorToWrite {
                    name: "weight",
                    shape: vec![self.classes, self.dimension],
                    values: &self.weight,
                },
                safetensors::TensorToWrite {
                    name: "bias",
                    shape: vec![self.classes],
                    values: &self.bias,
                },
            ],
            &metadata,
        )
    }

    /// Writes the head to its temporary file, to be committed with the run's other outputs.
    pub fn stage(&self, path: &Path) -> CliResult<StagedFile> {
        stage_bytes(path, &self.to_bytes())
            .map_err(|e| CliError(format!("{}: cannot write the head: {e}", path.display())))
    }

    /// Reads a head written by `difftopk train`, checking its tensors and their shapes.
    pub fn load(path: &str) -> CliResult<Head> {
        let file =
            File::open(path).map_err(|e| CliError(format!("{path}: cannot read the head: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| CliError(format!("{path}: {e}")))?
            .len();
        if len == 0 {
            fail!("{path}: the file is empty, not a head");
        }
        let header = read_safetensors_header(path, &file, len).map_err(|e| {
            // An embeddings or labels file given as the head: say what it is.
            let mut magic = [0u8; 6];
            // The header was read with positional reads: the cursor is still at the start.
            let what = match std::io::Read::read_exact(&mut &file, &mut magic) {
                Ok(()) if &magic == b"\x93NUMPY" => Some("a .npy array"),
                Ok(()) if magic.starts_with(b"PK\x03\x04") => Some("a .npz (zip) archive"),
                _ => None,
            };
            match what {
                Some(what) => CliError(format!(
                    "{path}: {what}, not a head (a head is the .safetensors file written by difftopk train --out)"
                )),
                None => CliError(format!(
                    "{e} (a head is a .safetensors file written by difftopk train)"
                )),
            }
        })?;
        // A difftopk file of another format version would be misread; files from other tools
        // (safetensors' own `"format": "pt"`, or none) are taken as plain weight and bias.
        if let Some(format) = header.metadata.get("format") {
            if format.starts_with("difftopk-") && format != FORMAT && format != CHECKPOINT_FORMAT {
                fail!(
                    "{path}: metadata format is {format:?}; this difftopk reads {FORMAT:?} heads \
                     and {CHECKPOINT_FORMAT:?} checkpoints (written by a newer version?)"
                );
            }
        }
        let weight_entry = header.tensors.get("weight").ok_or_else(|| {
            CliError(format!("{path}: no tensor \"weight\"; not a difftopk head"))
        })?;
        let (classes, dimension) = match weight_entry.shape[..] {
            [c, d] if c >= 2 && d > 0 => (c, d),
            _ => fail!(
                "{path}: weight has shape {:?}, expected [classes, dimension] with at least 2 classes",
                weight_entry.shape
            ),
        };
        let read = |name: &str, expected: &[usize]| -> CliResult<Vec<f32>> {
            let spec = format!("{path}:{name}");
            let array = difftopk_io::ArrayFile::open(&spec)?;
            if array.shape() != expected {
                fail!("{spec}: shape {:?}, expected {expected:?}", array.shape());
            }
            if !array.dtype().is_float() {
                fail!("{spec}: dtype {:?} is not a float type", array.dtype());
            }
            read_finite_values(&spec, &array)
        };
        let weight = read("weight", &[classes, dimension])?;
        let bias = read("bias", &[classes])?;
        let class_names = match header.metadata.get("class_names") {
            Some(text) => serde_json::from_str::<Vec<String>>(text)
                .ok()
                .filter(|names| names.len() == classes)
                .ok_or_else(|| {
                    CliError(format!(
                        "{path}: metadata class_names is not a list of {classes} names"
                    ))
                })?,
            None => (0..classes).map(|c| c.to_string()).collect(),
        };
        Ok(Head {
            weight,
            bias,
            classes,
            dimension,
            class_names,
            metadata: header.metadata,
        })
    }

    /// The head as a dfdx layer.
    pub fn linear(&self, device: &Cpu) -> CliResult<RuntimeLinear<f32>> {
        Ok(RuntimeLinear::from_parts(
            device,
            self.dimension,
            self.classes,
            self.weight.clone(),
            self.bias.clone(),
        )?)
    }
}

/// All values of an opened float array as f32, every one checked finite (the error names the
/// spec and the index). The caller has checked the shape and the dtype.
pub fn read_finite_values(spec: &str, array: &difftopk_io::ArrayFile) -> CliResult<Vec<f32>> {
    let count: usize = array.shape().iter().product();
    let mut bytes = vec![0u8; count * array.dtype().size()];
    array.read_bytes(0, &mut bytes)?;
    let mut values = vec![0f32; count];
    array
        .dtype()
        .decode_into_f32(&bytes, array.little_endian(), &mut values);
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        fail!("{spec}: non-finite value at index {index}");
    }
    Ok(values)
}

/// Top-k accuracies (`(k, fraction)` for each of `ks`) of a layer on a labelled set, in blocks
/// of at most [`difftopk_io::ROWS_PER_READ`] rows.
pub fn top_k_accuracies(
    linear: &RuntimeLinear<f32>,
    device: &Cpu,
    set: &LabelledSet,
    ks: &[usize],
) -> CliResult<Vec<(usize, f64)>> {
    let mut counter = TopkCounter::new(ks);
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    let positions: Vec<usize> = (0..set.len()).collect();
    for block in positions.chunks(difftopk_io::ROWS_PER_READ) {
        set.gather(block, &mut x, &mut labels)?;
        let scores = logits(linear, device, std::mem::take(&mut x))?;
        counter.add(&scores, &labels, linear.outputs());
    }
    Ok(counter.accuracies())
}

/// Logits of a block of rows (`x`: rows × D) through a layer, no tape.
pub fn logits(linear: &RuntimeLinear<f32>, device: &Cpu, x: Vec<f32>) -> CliResult<Vec<f32>> {
    let rows = x.len() / linear.inputs();
    let input = device.tensor_from_vec(x, (rows, linear.inputs()));
    Ok(linear.forward(input)?.as_vec())
}

/// Class names from a text file, one per line (C lines).
pub fn read_class_names(path: &str) -> CliResult<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError(format!("{path}: cannot read the class names: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    let names: Vec<String> = match names.iter().rposition(|n| !n.is_empty()) {
        Some(last) => names[..=last].to_vec(),
        None => fail!("{path}: no class names (the file is empty)"),
    };
    if let Some(line) = names.iter().position(|n| n.is_empty()) {
        fail!(
            "{path}: line {} is empty (one name per line, line i naming class i)",
            line + 1
        );
    }
    let mut first_line = std::collections::HashMap::with_capacity(names.len());
    for (line, name) in names.iter().enumerate() {
        if let Some(first) = first_line.insert(name.as_str(), line) {
            fail!(
                "{path}: line {} repeats the name {name:?} of line {}",
                line + 1,
                first + 1
            );
        }
    }
    Ok(names)
}

//! `difftopk eval` and `difftopk predict`.

use std::io::Write;

use difftopk_autodiff::dfdx::prelude::*;
use difftopk_io::{write_atomically, Embeddings};
use serde_json::{json, Map, Value};

use crate::args::{EvalArgs, PredictArgs, PredictFormat};
use crate::data::LabelledSet;
use crate::error::{CliError, CliResult};
use crate::fail;
use crate::head::{logits, read_class_names, top_k_accuracies, Head};
use crate::metrics::report_ks;

/// Runs `difftopk eval`: prints top-1..top-5 (and any `--k`) as a table or JSON on stdout.
pub fn run_eval(args: &EvalArgs) -> CliResult<()> {
    let head = Head::load(&args.head)?;
    let set = LabelledSet::open(&args.x, &args.y, 2048 << 20)?;
    if set.dimension() != head.dimension {
        fail!(
            "{}: dimension {} does not match the head's {} ({})",
            args.x,
            set.dimension(),
            head.dimension,
            args.head
        );
    }
    set.check_labels(&args.y, head.classes)?;
    let ks = report_ks(&args.k, head.classes)?;
    let device = Cpu::default();
    let linear = head.linear(&device)?;
    let accuracies = top_k_accuracies(&linear, &device, &set, &ks)?;
    let mut text = String::new();
    if args.json {
        let mut object = Map::new();
        for (k, a) in &accuracies {
            object.insert(format!("top{k}"), json!(a));
        }
        object.insert("rows".into(), json!(set.len()));
        text += &format!("{}\n", Value::Object(object));
    } else {
        let rows = if set.len() == 1 { "row" } else { "rows" };
        text += &format!("{} {rows}, {} classes\n", set.len(), head.classes);
        text += &format!("{:>6}  {:>9}\n", "k", "accuracy");
        for (k, a) in &accuracies {
            text += &format!("{k:>6}  {:>8.2}%\n", 100.0 * a);
        }
    }
    write_stdout(text.as_bytes(), "the evaluation")
}

/// Writes `bytes` to standard output (`what` names them in an error): a reader that went away
/// ends the process quietly (status 0); any other failure (a full disk) is an error, not the
/// panic of `println!`.
fn write_stdout(bytes: &[u8], what: &str) -> CliResult<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            quiet_on_closed_pipe(&e);
            CliError(format!("cannot write {what} to standard output: {e}"))
        })
}

/// Classes per row that `predict` prints without `--top` (fewer when the head has fewer).
pub const DEFAULT_TOP: usize = 5;

/// Runs `difftopk predict`: the `--top` classes of each row with softmax probabilities.
pub fn run_predict(args: &PredictArgs) -> CliResult<()> {
    if let Some(out) = &args.out {
        let mut inputs = vec![("--head", args.head.as_str()), ("--x", args.x.as_str())];
        if let Some(classes) = &args.classes {
            inputs.push(("--classes", classes.as_str()));
        }
        crate::outputs::check_outputs(&inputs, &[("--out", out.as_path())])?;
    }
    let head = Head::load(&args.head)?;
    let embeddings = Embeddings::open(&args.x)?;
    if embeddings.dimension() != head.dimension {
        fail!(
            "{}: dimension {} does not match the head's {} ({})",
            args.x,
            embeddings.dimension(),
            head.dimension,
            args.head
        );
    }
    // An explicit --top must fit the head; the default shrinks to a head of fewer classes.
    let top = match args.top {
        Some(top) if top == 0 || top > head.classes => fail!(
            "--top {top} must be between 1 and the head's {} classes",
            head.classes
        ),
        Some(top) => top,
        None => DEFAULT_TOP.min(head.classes),
    };
    let names = match &args.classes {
        Some(path) => {
            let names = read_class_names(path)?;
            if names.len() != head.classes {
                fail!(
                    "{path}: {} class names, the head has {} classes",
                    names.len(),
                    head.classes
                );
            }
            names
        }
        None => head.class_names.clone(),
    };
    let device = Cpu::default();
    let linear = head.linear(&device)?;
    let write = |out: &mut dyn Write| -> CliResult<()> {
        let io = |e: std::io::Error| {
            quiet_on_closed_pipe(&e);
            CliError(format!("cannot write the predictions: {e}"))
        };
        if args.format == PredictFormat::Csv {
            writeln!(out, "row,rank,class,name,probability").map_err(io)?;
        }
        let dimension = embeddings.dimension();
        let mut first = 0;
        while first < embeddings.rows() {
            let count = embeddings.rows_per_read().min(embeddings.rows() - first);
            let mut x = vec![0f32; count * dimension];
            embeddings.read_rows(first, &mut x)?;
            let scores = logits(&linear, &device, x)?;
            for (offset, row) in scores.chunks_exact(head.classes).enumerate() {
                let maximum = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let total: f64 = row.iter().map(|&s| ((s - maximum) as f64).exp()).sum();
                let mut order: Vec<usize> = (0..head.classes).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                let top = &order[..top];
                let probability = |c: usize| ((row[c] - maximum) as f64).exp() / total;
                let index = first + offset;
                match args.format {
                    PredictFormat::Csv => {
                        for (rank, &c) in top.iter().enumerate() {
                            writeln!(
                                out,
                                "{index},{},{c},{},{}",
                                rank + 1,
                                csv_field(&names[c]),
                                csv_probability(probability(c))
                            )
                            .map_err(io)?;
                        }
                    }
                    PredictFormat::Jsonl => {
                        let entries: Vec<Value> = top
                            .iter()
                            .map(|&c| json!({"class": c, "name": names[c], "probability": probability(c)}))
                            .collect();
                        writeln!(out, "{}", json!({"row": index, "top": entries})).map_err(io)?;
                    }
                }
            }
            first += count;
        }
        Ok(())
    };
    match &args.out {
        Some(path) => {
            let mut failure = None;
            write_atomically(path, |writer| {
                write(writer).map_err(|e| {
                    failure = Some(e);
                    std::io::Error::other("prediction failed")
                })
            })
            .map_err(|e| {
                failure
                    .take()
                    .unwrap_or_else(|| CliError(format!("{}: {e}", path.display())))
            })?;
            Ok(())
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            write(&mut lock)?;
            lock.flush().map_err(|e| {
                quiet_on_closed_pipe(&e);
                CliError(format!("cannot write the predictions: {e}"))
            })
        }
    }
}

/// Ends the process quietly (status 0) when the reader of the output went away (`| head`), as
/// command-line filters do.
fn quiet_on_closed_pipe(error: &std::io::Error) {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
}

/// A probability with six decimals, or six significant digits below 10⁻⁴ (where six
/// decimals printed 0.000000 for a class still ranked).
fn csv_probability(p: f64) -> String {
    if p != 0.0 && p < 1e-4 {
        format!("{p:.5e}")
    } else {
        format!("{p:.6}")
    }
}

/// Quotes a CSV field when it holds a comma, quote or newline.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::csv_probability;

    #[test]
    fn small_probabilities_keep_their_digits() {
        assert_eq!(csv_probability(0.4352237), "0.435224");
        assert_eq!(csv_probability(0.0), "0.000000");
        assert_eq!(csv_probability(3.25e-9), "3.25000e-9");
        assert_eq!(csv_probability(1e-4), "0.000100");
    }
}

//! End-to-end runs of the real `difftopk` binary on the bundled digits_smoke set: train → eval →
//! predict, resume, and one test per bad input (exit status 2, one error line naming the file and
//! the problem, no output file written or damaged).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use difftopk_io::{npy_f32_bytes, npy_i64_bytes};
use serde_json::Value;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_difftopk"))
}

fn data(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/digits_smoke")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// A test's scratch directory under the system's temporary directory, removed when the test
/// passes (kept when it fails, for a look at what the binary wrote).
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

fn scratch(test: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("difftopk-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the difftopk binary runs")
}

fn train_args(dir: &Path) -> Vec<String> {
    [
        "train",
        "--train-x",
        &data("X_train.npy"),
        "--train-y",
        &data("y_train.npy"),
        "--out",
        &path(dir, "head.safetensors"),
        "--epochs",
        "3",
        "--threads",
        "1",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn json_file(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

#[test]
fn train_eval_predict_end_to_end() {
    let dir = scratch("e2e");
    let (head, metrics, plot) = (
        path(&dir, "head.safetensors"),
        path(&dir, "metrics.json"),
        path(&dir, "curves.svg"),
    );
    let output = run(binary().args(train_args(&dir)).args([
        "--val-fraction",
        "0.2",
        "--test-x",
        &data("X_test.npy"),
        "--test-y",
        &data("y_test.npy"),
        "--classes",
        &data("classes.txt"),
        "--metrics",
        &metrics,
        "--plot",
        &plot,
        "--epochs",
        "8",
        "--k",
        "7",
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document = json_file(&metrics);
    let epochs = document["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 8);
    for record in epochs {
        for k in ["top1", "top2", "top3", "top4", "top5", "top7"] {
            assert!(
                record["val"][k].is_number() && record["test"][k].is_number(),
                "{record}"
            );
        }
        assert!(record["train_loss"].as_f64().unwrap().is_finite());
    }
    let last_loss = epochs[7]["train_loss"].as_f64().unwrap();
    assert!(last_loss < epochs[0]["train_loss"].as_f64().unwrap());
    let final_block = &document["final"];
    assert!(
        final_block["rule"]["epochs"]["top1"].is_number(),
        "{final_block}"
    );
    let top1 = final_block["test"]["top1"].as_f64().unwrap();
    let top5 = final_block["test"]["top5"].as_f64().unwrap();
    assert!(top1 > 0.9 && top5 >= top1, "top1 {top1} top5 {top5}");
    assert_eq!(document["settings"]["topk"]["method"], "splitter_selection");
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));

    // eval: the saved head is the last epoch's, so its test accuracy is the last record's.
    let output = run(binary().args([
        "eval",
        "--head",
        &head,
        "--x",
        &data("X_test.npy"),
        "--y",
        &data("y_test.npy"),
        "--json",
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let evaluated: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(evaluated["top1"], epochs[7]["test"]["top1"]);
    assert_eq!(evaluated["rows"], 540);
    let table = run(binary().args([
        "eval",
        "--head",
        &head,
        "--x",
        &data("X_test.npy"),
        "--y",
        &data("y_test.npy"),
        "--k",
        "10",
    ]));
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("100.00%"),
        "top-10 of 10 classes is 100 %: {table}"
    );

    // predict: CSV and JSON lines, class names from the head.
    let predictions = path(&dir, "predictions.csv");
    let output = run(binary().args([
        "predict",
        "--head",
        &head,
        "--x",
        &data("X_test.npy"),
        "--top",
        "3",
        "--out",
        &predictions,
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = std::fs::read_to_string(&predictions).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "row,rank,class,name,probability");
    assert_eq!(lines.len(), 1 + 540 * 3);
    let output = run(binary().args([
        "predict",
        "--head",
        &head,
        "--x",
        &data("X_test.npy"),
        "--format",
        "jsonl",
    ]));
    let text = String::from_utf8(output.stdout).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let top = first["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let probabilities: Vec<f64> = top
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .collect();
    assert!(probabilities.windows(2).all(|w| w[0] >= w[1]) && probabilities[0] <= 1.0);
    assert_eq!(top[0]["name"], top[0]["class"].to_string());
}

#[test]
fn softmax_ce_and_other_methods_train() {
    for extra in [
        vec!["--loss", "softmax-ce"],
        vec!["--method", "neuralsort", "--p-k", "0.5,0.5"],
        vec![
            "--method",
            "odd_even",
            "--distribution",
            "cauchy",
            "--m",
            "all",
        ],
        vec![
            "--nloglr",
            "2",
            "--schedule",
            "constant",
            "--top1-mode",
            "smce",
        ],
    ] {
        let dir = scratch(&format!("methods-{}", extra[1]));
        let metrics = path(&dir, "m.json");
        let output = run(binary()
            .args(train_args(&dir))
            .args([
                "--test-x",
                &data("X_test.npy"),
                "--test-y",
                &data("y_test.npy"),
                "--metrics",
                &metrics,
            ])
            .args(&extra));
        assert!(
            output.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let top5 = json_file(&metrics)["final"]["test"]["top5"]
            .as_f64()
            .unwrap();
        assert!(top5 > 0.9, "{extra:?}: top5 {top5}");
    }
}

#[test]
fn resume_continues_exactly() {
    let straight = scratch("straight");
    let output = run(binary().args(train_args(&straight)).args(["--epochs", "4"]));
    assert!(output.status.success());
    let resumed = scratch("resumed");
    let output =
        run(binary()
            .args(train_args(&resumed))
            .args(["--epochs", "4", "--stop-after", "2"]));
    assert!(output.status.success());
    assert!(
        !Path::new(&path(&resumed, "head.safetensors")).exists(),
        "no head before the last epoch"
    );
    let output = run(binary()
        .args(train_args(&resumed))
        .args(["--epochs", "4", "--resume"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for tensor in ["weight", "bias"] {
        let a = parameters(&path(&straight, "head.safetensors"), tensor);
        let b = parameters(&path(&resumed, "head.safetensors"), tensor);
        assert!(
            a == b,
            "{tensor}: a run resumed after epoch 2 differs from an uninterrupted one"
        );
    }
    // A learning rate whose decimal form needs all 17 digits resumes too (the settings
    // round-trip exactly through the checkpoint's JSON).
    let exact = scratch("exact");
    assert!(run(binary().args(train_args(&exact)).args([
        "--epochs",
        "3",
        "--stop-after",
        "1",
        "--nloglr",
        "1.02"
    ]))
    .status
    .success());
    let output = run(binary()
        .args(train_args(&exact))
        .args(["--epochs", "3", "--resume", "--nloglr", "1.02"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The same files spelled differently resume (paths compare as files, not as text).
    let spelled = scratch("spelled");
    assert!(run(binary()
        .args(train_args(&spelled))
        .args(["--stop-after", "1"]))
    .status
    .success());
    let mut args = train_args(&spelled);
    let x = data("X_train.npy");
    let (directory, file) = x.rsplit_once('/').unwrap();
    args[2] = format!("{directory}/./{file}");
    args[6] = format!(
        "{}/../{}/head.safetensors",
        spelled.display(),
        spelled.file_name().unwrap().to_string_lossy()
    );
    let output = run(binary().args(&args).arg("--resume"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A finished run removes its checkpoint; a stopped one keeps it, and other settings cannot
    // resume it.
    assert!(!resumed.join("head.safetensors.checkpoint").exists());
    let stopped = scratch("stopped");
    assert!(run(binary()
        .args(train_args(&stopped))
        .args(["--epochs", "4", "--stop-after", "2"]))
    .status
    .success());
    assert!(stopped.join("head.safetensors.checkpoint").exists());
    let output = run(binary()
        .args(train_args(&stopped))
        .args(["--epochs", "4", "--resume", "--lr", "0.2"]));
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("other settings: optimizer.lr was "),
        "names the setting: {message}"
    );
}

/// --resume after a finished run (which removed its checkpoint) says that the run finished and
/// there is nothing to resume (it said "OUT.checkpoint: cannot resume: No such file or
/// directory"), and leaves the head as it was.
#[test]
fn resume_after_a_finished_run() {
    let dir = scratch("resume-finished");
    assert!(run(binary().args(train_args(&dir))).status.success());
    let head = path(&dir, "head.safetensors");
    let before = std::fs::read(&head).unwrap();
    assert!(!dir.join("head.safetensors.checkpoint").exists());
    assert_fails(
        binary().args(train_args(&dir)).arg("--resume"),
        &[
            &format!("{head}.checkpoint: cannot resume"),
            &format!("the head {head} does"),
            "the run finished",
            "nothing to resume",
            "without --resume",
        ],
    );
    assert!(std::fs::read(&head).unwrap() == before);
}

/// The raw bytes of one tensor of a head file.
fn parameters(head: &str, tensor: &str) -> Vec<u8> {
    let array = difftopk_io::ArrayFile::open(&format!("{head}:{tensor}")).unwrap();
    let mut bytes = vec![0u8; array.shape().iter().product::<usize>() * 4];
    array.read_bytes(0, &mut bytes).unwrap();
    bytes
}

/// Runs a command that must fail: exit 2, exactly one line on stderr containing every `needle`.
/// A zero head for the 64-dimensional smoke embeddings: `classes` rows of weights and biases,
/// with `format` as its metadata when given.
fn write_head(dir: &Path, name: &str, classes: usize, format: Option<&str>) -> String {
    let weight = vec![0f32; classes * 64];
    let bias = vec![0f32; classes];
    let metadata = format
        .map(|format| ("format".to_string(), format.to_string()))
        .into_iter()
        .collect();
    write(
        dir,
        name,
        &difftopk_io::safetensors::serialise(
            &[
                difftopk_io::safetensors::TensorToWrite {
                    name: "weight",
                    shape: vec![classes, 64],
                    values: &weight,
                },
                difftopk_io::safetensors::TensorToWrite {
                    name: "bias",
                    shape: vec![classes],
                    values: &bias,
                },
            ],
            &metadata,
        ),
    )
}

fn assert_fails(command: &mut Command, needles: &[&str]) {
    let output = run(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(!stderr.contains("panicked"));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let file = path(dir, name);
    std::fs::write(&file, bytes).unwrap();
    file
}

fn train_with(dir: &Path, x: &str, y: &str, extra: &[&str]) -> Command {
    let mut command = binary();
    command.args([
        "train",
        "--train-x",
        x,
        "--train-y",
        y,
        "--out",
        &path(dir, "head.safetensors"),
        "--epochs",
        "1",
        "--quiet",
    ]);
    command.args(extra);
    command
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let dir = scratch("bad");
    let (x, y) = (data("X_train.npy"), data("y_train.npy"));
    let good_x: Vec<f32> = (0..40).map(|i| (i % 7) as f32 / 7.0).collect();
    let small_x = write(&dir, "small_x.npy", &npy_f32_bytes(&[10, 4], &good_x));
    let small_y = write(
        &dir,
        "small_y.npy",
        &npy_i64_bytes(&[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]),
    );

    let missing = path(&dir, "missing.npy");
    assert_fails(
        &mut train_with(&dir, &missing, &y, &[]),
        &[&missing, "cannot read"],
    );
    let text = write(&dir, "text.npy", b"1,2,3\n4,5,6\n");
    assert_fails(
        &mut train_with(&dir, &text, &y, &[]),
        &[&text, "not a .npy, .npz or .safetensors"],
    );
    let full = npy_f32_bytes(&[10, 4], &good_x);
    let truncated = write(&dir, "truncated.npy", &full[..full.len() - 7]);
    assert_fails(
        &mut train_with(&dir, &truncated, &small_y, &[]),
        &[&truncated, "truncated"],
    );
    let mut complex = full.clone();
    let at = complex.windows(3).position(|w| w == b"<f4").unwrap();
    complex[at..at + 3].copy_from_slice(b"<c8");
    let complex = write(&dir, "complex.npy", &complex);
    assert_fails(
        &mut train_with(&dir, &complex, &small_y, &[]),
        &[&complex, "unsupported dtype"],
    );
    let one_d = write(&dir, "one_d.npy", &npy_f32_bytes(&[40], &good_x));
    assert_fails(
        &mut train_with(&dir, &one_d, &small_y, &[]),
        &[&one_d, "2-D"],
    );
    let empty = write(&dir, "empty.npy", b"");
    assert_fails(
        &mut train_with(&dir, &empty, &small_y, &[]),
        &[&empty, "empty"],
    );
    let short_y = write(&dir, "short_y.npy", &npy_i64_bytes(&[0, 1, 2]));
    assert_fails(
        &mut train_with(&dir, &small_x, &short_y, &[]),
        &[&short_y, "3 labels", "10 rows"],
    );
    let big_label = write(
        &dir,
        "big_label.npy",
        &npy_i64_bytes(&[0, 1, 2, 0, 1, 2, 3, 1, 2, 0]),
    );
    assert_fails(
        &mut train_with(&dir, &small_x, &big_label, &["--num-classes", "3"]),
        &[&big_label, "label 3 at row 6", "3"],
    );
    let negative = write(
        &dir,
        "negative.npy",
        &npy_i64_bytes(&[0, 1, 2, -1, 1, 2, 0, 1, 2, 0]),
    );
    assert_fails(
        &mut train_with(&dir, &small_x, &negative, &[]),
        &[&negative, "label -1 at row 3"],
    );
    let mut with_nan = good_x.clone();
    with_nan[4 * 5 + 2] = f32::INFINITY;
    let nan_x = write(&dir, "nan_x.npy", &npy_f32_bytes(&[10, 4], &with_nan));
    assert_fails(
        &mut train_with(&dir, &nan_x, &small_y, &[]),
        &[&nan_x, "row 5, column 2"],
    );
    // m must exceed K (5 here); m ≥ C means all classes, as `--m all`.
    assert_fails(&mut train_with(&dir, &x, &y, &["--m", "3"]), &["--m 3"]);
    assert!(run(&mut train_with(&dir, &x, &y, &["--m", "12"]))
        .status
        .success());
    assert_fails(
        &mut train_with(
            &dir,
            &x,
            &y,
            &["--p-k", ".1,.1,.1,.1,.1,.1,.1,.1,.1,.05,.05"],
        ),
        &["--p-k"],
    );
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--p-k", ".5,0,0,0,.4"]),
        &["--p-k", "sum"],
    );
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--p-k", ".5,x"]),
        &["--p-k", "\"x\""],
    );
    // A stray huge label would make the class count, and the head, enormous.
    let huge = write(
        &dir,
        "huge.npy",
        &npy_i64_bytes(&[0, 1, 2, 0, 1, 4_294_967_295, 0, 1, 2, 0]),
    );
    assert_fails(
        &mut train_with(&dir, &small_x, &huge, &[]),
        &[&huge, "too large a head", "--num-classes"],
    );
    // Output problems are found before training, not after it.
    let nowhere = path(&dir, "no/such/dir/metrics.json");
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--metrics", &nowhere]),
        &["--metrics", "does not exist"],
    );
    let pdf = path(&dir, "curves.pdf");
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--plot", &pdf]),
        &["--plot", "SVG or PNG"],
    );

    // A head whose D does not match the embeddings.
    let head = path(&dir, "head.safetensors");
    assert!(run(&mut train_with(
        &dir,
        &small_x,
        &small_y,
        &["--p-k", ".5,.5"]
    ))
    .status
    .success());
    assert_fails(
        binary().args(["eval", "--head", &head, "--x", &x, "--y", &y]),
        &[&x, "dimension 64", "head's 4"],
    );
    assert_fails(
        binary().args(["predict", "--head", &head, "--x", &x]),
        &[&x, "dimension 64"],
    );
    assert_fails(
        binary().args(["eval", "--head", &small_x, "--x", &small_x, "--y", &small_y]),
        &[&small_x],
    );
}

#[test]
fn failures_leave_existing_outputs_untouched() {
    let dir = scratch("untouched");
    let head = path(&dir, "head.safetensors");
    let metrics = path(&dir, "metrics.json");
    std::fs::write(&head, b"precious").unwrap();
    let bad_y = write(&dir, "bad_y.npy", &npy_i64_bytes(&[-5]));
    assert_fails(
        &mut train_with(&dir, &data("X_train.npy"), &bad_y, &["--metrics", &metrics]),
        &[&bad_y],
    );
    assert_eq!(std::fs::read(&head).unwrap(), b"precious");
    assert!(!Path::new(&metrics).exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

/// Outputs that would destroy an input or each other, or that cannot be written, are refused
/// before any work; a link is written through, not replaced.
#[test]
fn outputs_never_replace_inputs_or_each_other() {
    let dir = scratch("outputs");
    let x = write(&dir, "x.npy", &std::fs::read(data("X_train.npy")).unwrap());
    let y = write(&dir, "y.npy", &std::fs::read(data("y_train.npy")).unwrap());
    let original_x = std::fs::read(&x).unwrap();
    // --out naming the training embeddings, spelled differently.
    let x_other_spelling = format!(
        "{}/../{}/x.npy",
        dir.display(),
        dir.file_name().unwrap().to_string_lossy()
    );
    let mut command = binary();
    command.args([
        "train",
        "--train-x",
        &x,
        "--train-y",
        &y,
        "--out",
        &x_other_spelling,
        "--epochs",
        "1",
        "--quiet",
    ]);
    assert_fails(
        &mut command,
        &["--out would overwrite the input given as --train-x"],
    );
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--metrics", &y]),
        &["--metrics would overwrite the input given as --train-y"],
    );
    let head = path(&dir, "head.safetensors");
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--metrics", &head]),
        &["--out and --metrics name the same file"],
    );
    let directory = path(&dir, "curves.svg");
    std::fs::create_dir(&directory).unwrap();
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--plot", &directory]),
        &["--plot", "is a directory"],
    );
    assert!(!Path::new(&head).exists(), "refused before training");
    assert_eq!(std::fs::read(&x).unwrap(), original_x);
    // predict: --out naming the head is refused; a symbolic link is written through.
    assert!(run(&mut train_with(&dir, &x, &y, &[])).status.success());
    let head_bytes = std::fs::read(&head).unwrap();
    assert_fails(
        binary().args(["predict", "--head", &head, "--x", &x, "--out", &head]),
        &["--out would overwrite the input given as --head"],
    );
    assert_eq!(std::fs::read(&head).unwrap(), head_bytes);
    #[cfg(unix)]
    {
        let target = write(&dir, "real.csv", b"old");
        let link = path(&dir, "link.csv");
        std::os::unix::fs::symlink("real.csv", &link).unwrap();
        assert!(
            run(binary().args(["predict", "--head", &head, "--x", &x, "--out", &link]))
                .status
                .success()
        );
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(std::fs::read_to_string(&target)
            .unwrap()
            .starts_with("row,rank,class"));
        // --out /dev/stdout with stdout appended to a file (`>> log.csv`): written into the
        // stream, after what the file held, not renamed over it.
        let log = write(&dir, "log.csv", b"earlier line\n");
        let appending = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let status = binary()
            .args([
                "predict",
                "--head",
                &head,
                "--x",
                &x,
                "--out",
                "/dev/stdout",
            ])
            .stdout(appending)
            .status()
            .unwrap();
        assert!(status.success());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.starts_with("earlier line\nrow,rank,class"),
            "{}",
            &text[..60]
        );
    }
}

/// `--device cuda`: without a GPU one clear error line and no output written; with one, the same
/// training as on the CPU up to rounding (cuBLAS's products sum in another order), and a
/// checkpoint written on the GPU resumes on the CPU.
#[test]
fn device_cuda_trains_on_a_gpu_or_fails_cleanly_without_one() {
    let dir = scratch("device-cuda");
    let out = path(&dir, "head.safetensors");
    if !difftopk_gpu::cuda_device_available() {
        let mut command = binary();
        command.args(train_args(&dir)).args(["--device", "cuda"]);
        assert_fails(&mut command, &["--device cuda", "no CUDA device"]);
        assert!(!Path::new(&out).exists(), "nothing written");
        println!("skipped: no CUDA device");
        return;
    }
    let metrics = |device: &str| {
        let metrics = path(&dir, &format!("metrics-{device}.json"));
        // "…-streamed": the set read from the file (on the GPU: batches uploaded step by step
        // instead of a set kept on the device; the row order differs from an in-memory run's).
        let (name, extra): (&str, &[&str]) = match device.strip_suffix("-streamed") {
            Some(name) => (name, &["--max-memory-mib", "0"]),
            None => (device, &[]),
        };
        let output = run(binary()
            .args(train_args(&dir))
            .args([
                "--device",
                name,
                "--metrics",
                &metrics,
                "--out",
                &path(&dir, &format!("head-{device}.safetensors")),
            ])
            .args(extra));
        assert!(
            output.status.success(),
            "{device}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        json_file(&metrics)
    };
    let (cpu, cuda) = (metrics("cpu"), metrics("cuda"));
    let (cpu_streamed, cuda_streamed) = (metrics("cpu-streamed"), metrics("cuda-streamed"));
    for epoch in 0..3 {
        for (reference, other) in [(&cpu, &cuda), (&cpu_streamed, &cuda_streamed)] {
            let a = reference["epochs"][epoch]["train_loss"].as_f64().unwrap();
            let b = other["epochs"][epoch]["train_loss"].as_f64().unwrap();
            assert!(
                (a - b).abs() <= 1e-3 * a.abs().max(1.0),
                "epoch {epoch}: {a} vs {b}"
            );
        }
    }
    let cpu_weight = parameters(&path(&dir, "head-cpu.safetensors"), "weight");
    let cuda_weight = parameters(&path(&dir, "head-cuda.safetensors"), "weight");
    let worst = cpu_weight
        .chunks_exact(4)
        .zip(cuda_weight.chunks_exact(4))
        .map(|(a, b)| {
            let (a, b) = (
                f32::from_le_bytes(a.try_into().unwrap()),
                f32::from_le_bytes(b.try_into().unwrap()),
            );
            (a - b).abs()
        })
        .fold(0.0f32, f32::max);
    // Adam divides by √v: rounding-level gradient differences move weights by far less than a
    // step (lr 0.05) unless a gradient is at ε's scale.
    assert!(worst <= 2e-2, "weights differ by {worst}");
    // One epoch on the GPU, then the rest on the CPU from the checkpoint.
    let resumed = path(&dir, "metrics-resumed.json");
    let head = path(&dir, "head-resumed.safetensors");
    for (device, extra) in [
        ("cuda", vec!["--stop-after", "1"]),
        ("cpu", vec!["--resume"]),
    ] {
        let output = run(binary()
            .args(train_args(&dir))
            .args(["--device", device, "--metrics", &resumed, "--out", &head])
            .args(extra));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (a, b) = (
        cpu["epochs"][2]["train_loss"].as_f64().unwrap(),
        json_file(&resumed)["epochs"][2]["train_loss"]
            .as_f64()
            .unwrap(),
    );
    assert!(
        (a - b).abs() <= 1e-3 * a.abs().max(1.0),
        "resumed: {a} vs {b}"
    );
}

/// Argument checks added from a robustness review: each fails with one line naming the problem.
#[test]
fn review_argument_checks() {
    let dir = scratch("review");
    let x = data("X_train.npy");
    let y = data("y_train.npy");
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--stop-after", "0"]),
        &["--stop-after must be at least 1"],
    );
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--k", "11"]),
        &["--k 11", "between 1 and the 10 classes"],
    );
    let named = format!("{x}:X");
    assert_fails(
        &mut train_with(&dir, &named, &y, &[]),
        &["a .npy file holds one array", "drop the \":X\""],
    );
    let duplicate = write(
        &dir,
        "classes.txt",
        b"\xef\xbb\xbfa\nb\nc\nd\ne\nf\ng\nh\ni\na\n",
    );
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--classes", &duplicate]),
        &["line 10 repeats the name \"a\" of line 1"],
    );
    // Negative numbers need no `=`; --loss softmax-ce still checks the top-k flags' names.
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--inverse-temperature", "-1"]),
        &["--inverse-temperature", "-1"],
    );
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--loss", "softmax-ce", "--method", "foo"]),
        &["--method \"foo\": unknown"],
    );
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--nloglr", "-400"]),
        &["--nloglr -400"],
    );
    // A one-class "head" is not a classifier.
    let one_class = write_head(&dir, "one.safetensors", 1, None);
    assert_fails(
        binary().args(["predict", "--head", &one_class, "--x", &x]),
        &["at least 2 classes"],
    );
    // A head of an unknown format version is not read as if it were ours.
    let future = write_head(
        &dir,
        "future.safetensors",
        2,
        Some("difftopk-linear-head-v2"),
    );
    assert_fails(
        binary().args(["predict", "--head", &future, "--x", &x]),
        &["metadata format is \"difftopk-linear-head-v2\""],
    );
    // Other tools' format values (safetensors' own "pt") and our checkpoints still load.
    for (name, format) in [("pt", "pt"), ("checkpoint", "difftopk-checkpoint-v1")] {
        let head = write_head(&dir, &format!("{name}.safetensors"), 2, Some(format));
        let output = run(binary().args(["predict", "--head", &head, "--x", &x, "--top", "2"]));
        assert!(
            output.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let blank = write(&dir, "blank.txt", b"a\nb\n\nd\ne\nf\ng\nh\ni\nj\n");
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--classes", &blank]),
        &["line 3 is empty"],
    );
}

/// `eval` on a closed pipe ends quietly (status 0) like `predict`; on a full disk it fails with
/// one error line (`println!` panicked with status 101 in both cases). A full standard error
/// does not stop a training run.
#[cfg(target_os = "linux")]
#[test]
fn closed_or_full_output_streams() {
    let dir = scratch("streams");
    let head = write_head(&dir, "zero.safetensors", 10, None);
    let eval = |json: bool| {
        let mut command = binary();
        command.args([
            "eval",
            "--head",
            &head,
            "--x",
            &data("X_test.npy"),
            "--y",
            &data("y_test.npy"),
        ]);
        if json {
            command.arg("--json");
        }
        command
    };
    for json in [false, true] {
        // The reading end is closed before the process starts: every write is a broken pipe.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = run(eval(json).stdout(writer));
        assert_eq!(
            output.status.code(),
            Some(0),
            "json {json}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.stderr.is_empty());
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let output = run(eval(json).stdout(full));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "json {json}: {stderr}");
        assert!(
            stderr.starts_with("error: cannot write")
                && stderr.contains("No space left on device")
                && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut args = train_args(&dir);
    args.retain(|a| a != "--quiet");
    let output = run(binary().args(args).stderr(full));
    assert!(output.status.success(), "{:?}", output.status);
    assert!(dir.join("head.safetensors").exists());
}

/// With fewer than 5 classes the defaults adapt or explain themselves: `predict` without `--top`
/// lists every class (an explicit `--top` beyond them is still an error), and `train` names the
/// default P_K it cannot use and what to pass instead.
#[test]
fn fewer_than_five_classes() {
    let dir = scratch("few-classes");
    let values: Vec<f32> = (0..40).map(|i| (i % 7) as f32 / 7.0).collect();
    let x = write(&dir, "x.npy", &npy_f32_bytes(&[10, 4], &values));
    let y = write(
        &dir,
        "y.npy",
        &npy_i64_bytes(&[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]),
    );
    assert_fails(
        &mut train_with(&dir, &x, &y, &[]),
        &[
            "the default P_K .5,0,0,0,.5",
            "needs at least 5 classes, but there are 3",
            "--p-k .5,.5",
            "--loss softmax-ce",
        ],
    );
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--p-k", ".5,0,0,.5"]),
        &["--p-k .5,0,0,.5 with 3 classes"],
    );
    let output = run(&mut train_with(&dir, &x, &y, &["--p-k", ".5,.5"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let head = path(&dir, "head.safetensors");
    let output = run(binary().args(["predict", "--head", &head, "--x", &x]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = String::from_utf8(output.stdout).unwrap();
    assert_eq!(csv.lines().count(), 1 + 10 * 3, "every class of each row");
    assert_fails(
        binary().args(["predict", "--head", &head, "--x", &x, "--top", "4"]),
        &["--top 4 must be between 1 and the head's 3 classes"],
    );
}

/// The outputs of a run are replaced as a set: when the last one (the plot) cannot be written,
/// the head and the metrics of an earlier run are still there, and no temporary file is left.
#[cfg(target_os = "linux")]
#[test]
fn a_failing_output_replaces_none_of_the_others() {
    let dir = scratch("output-set");
    let head = write(&dir, "head.safetensors", b"earlier head");
    let metrics = write(&dir, "metrics.json", b"earlier metrics");
    // Passes the checks before training (a special file is written into, not replaced), then
    // fails when written: no space left on the device.
    let plot = path(&dir, "curves.svg");
    std::os::unix::fs::symlink("/dev/full", &plot).unwrap();
    assert_fails(
        binary()
            .args(train_args(&dir))
            .args(["--metrics", &metrics, "--plot", &plot]),
        &[
            &plot,
            "cannot write the plot",
            "No space left on device",
            "checkpoint",
            "with --resume writes all the outputs without training again",
        ],
    );
    assert!(
        std::fs::read(&head).unwrap() == b"earlier head",
        "the head was replaced"
    );
    assert!(
        std::fs::read(&metrics).unwrap() == b"earlier metrics",
        "the metrics were replaced"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The checkpoint was kept: with the plot writable, --resume writes the outputs.
    std::fs::remove_file(&plot).unwrap();
    let output = run(binary().args(train_args(&dir)).args([
        "--metrics",
        &metrics,
        "--plot",
        &plot,
        "--resume",
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
    assert!(std::fs::read(&head).unwrap() != b"earlier head");
    assert!(!dir.join("head.safetensors.checkpoint").exists());
}

/// With the class count taken from the labels, an absurd test label is reported against the
/// test labels file and its row (it was blamed on the training labels), and a test or
/// validation class above every training label is warned about.
#[test]
fn labels_beyond_the_training_labels() {
    let dir = scratch("label-sources");
    let values: Vec<f32> = (0..40).map(|i| (i % 7) as f32 / 7.0).collect();
    let x = write(&dir, "x.npy", &npy_f32_bytes(&[10, 4], &values));
    let y = write(
        &dir,
        "y.npy",
        &npy_i64_bytes(&[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]),
    );
    let huge = write(
        &dir,
        "test_huge.npy",
        &npy_i64_bytes(&[0, 1, 2, 0, 1, 2, 1 << 40, 1, 2, 0]),
    );
    let test = |labels: &str| {
        vec![
            "--loss".to_string(),
            "softmax-ce".into(),
            "--test-x".into(),
            x.clone(),
            "--test-y".into(),
            labels.into(),
        ]
    };
    let args = test(&huge);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = train_with(&dir, &x, &y, &args);
    assert_fails(
        &mut command,
        &[
            &format!("{huge}: label 1099511627776 at row 6"),
            "too large a head",
            "--num-classes",
        ],
    );
    let above = write(
        &dir,
        "test_above.npy",
        &npy_i64_bytes(&[0, 1, 5, 0, 1, 2, 0, 1, 2, 0]),
    );
    let args = test(&above);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(&mut train_with(&dir, &x, &y, &args));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "warning: {above}: test label 5 at row 2 is above every training label (the largest is 2)"
        )) && stderr.contains("6 classes, class 5 without training rows"),
        "{stderr}"
    );
}

/// Logits out of range at the first step, before any update, come from the inputs' scale (finite
/// embeddings of 3e38): the error names their largest magnitude and where it is, not --lr;
/// after updates it is a divergence and --lr is the advice.
#[test]
fn non_finite_logits_before_and_after_updates() {
    let dir = scratch("initial-logits");
    let mut values: Vec<f32> = (0..40).map(|i| (i % 7) as f32 / 7.0).collect();
    values[3 * 4 + 1] = 3e38;
    let x = write(&dir, "x.npy", &npy_f32_bytes(&[10, 4], &values));
    let y = write(
        &dir,
        "y.npy",
        &npy_i64_bytes(&[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]),
    );
    // The top-k loss refuses logits beyond ±1e32 (softmax cross-entropy takes finite ones).
    {
        let loss = ["--p-k", ".5,.5"];
        let output = run(&mut train_with(&dir, &x, &y, &loss));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        for needle in [
            x.as_str(),
            "initial head",
            "before any update",
            "magnitude 3e38 (row 3, column 1)",
            "normalise",
        ] {
            assert!(
                stderr.contains(needle),
                "{loss:?}: {needle:?} not in {stderr}"
            );
        }
        assert!(!stderr.contains("--lr"), "{stderr}");
    }
    assert_fails(
        &mut train_with(
            &dir,
            &data("X_train.npy"),
            &data("y_train.npy"),
            &["--lr", "1e35"],
        ),
        &["training diverged at epoch 1, step 1", "lower --lr"],
    );
}

/// Logits out of range at a later step of epoch 1 on a batch holding a huge embedding (-1e36 at
/// row 7, which the seed puts in step 3 of batches of 2): the value, its row and column are
/// named and normalising is suggested instead of lowering --lr (it said "training diverged ...
/// lower --lr", checking the inputs only at step 0).
#[test]
fn a_huge_embedding_in_a_later_batch_is_named() {
    let dir = scratch("later-huge");
    let mut values: Vec<f32> = (0..40).map(|i| (i % 7) as f32 / 7.0).collect();
    values[7 * 4 + 2] = -1e36;
    let x = write(&dir, "x.npy", &npy_f32_bytes(&[10, 4], &values));
    let y = write(
        &dir,
        "y.npy",
        &npy_i64_bytes(&[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]),
    );
    let mut command = train_with(&dir, &x, &y, &["--p-k", ".5,.5", "--batch-size", "2"]);
    assert_fails(
        &mut command,
        &[
            &format!("{x}: "),
            "at epoch 1, step 3",
            "-1e36 (row 7, column 2)",
            "normalise the embeddings",
            "instead of lowering --lr",
        ],
    );
    assert!(!dir.join("head.safetensors").exists());
}

/// A run ended by --stop-after says which requested outputs it has not written yet (it said
/// nothing about --metrics and --plot, even without --quiet); the resumed run writes them.
#[test]
fn stop_after_names_the_outputs_not_written() {
    let dir = scratch("stop-after-outputs");
    let (metrics, plot) = (path(&dir, "metrics.json"), path(&dir, "curves.svg"));
    let outputs = ["--metrics", &metrics, "--plot", &plot];
    let output = run(binary()
        .args(train_args(&dir))
        .args(outputs)
        .args(["--stop-after", "1"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("stopped after epoch 1 of 3")
            && stderr.contains(&format!(
                "not written yet: the head ({}), --metrics {metrics}, --plot {plot}",
                path(&dir, "head.safetensors")
            ))
            && stderr.contains("--resume"),
        "{stderr}"
    );
    assert!(!Path::new(&metrics).exists() && !Path::new(&plot).exists());
    let output = run(binary()
        .args(train_args(&dir))
        .args(outputs)
        .arg("--resume"));
    assert!(output.status.success());
    assert!(Path::new(&metrics).exists() && Path::new(&plot).exists());
}

/// The checkpoint records hashes of the training embeddings and labels: a resume on files of the
/// same names and shapes but other values is refused, naming the file. A checkpoint from before
/// the hashes (no `training_data`) resumes with a note.
#[test]
fn resume_refuses_changed_training_data() {
    let dir = scratch("resume-data");
    let x = write(&dir, "x.npy", &std::fs::read(data("X_train.npy")).unwrap());
    let y = write(&dir, "y.npy", &std::fs::read(data("y_train.npy")).unwrap());
    let train = |extra: &[&str]| {
        let mut command = train_with(&dir, &x, &y, &["--epochs", "3"]);
        command.args(extra);
        run(&mut command)
    };
    assert!(train(&["--stop-after", "1"]).status.success());
    let original_x = std::fs::read(&x).unwrap();
    let original_y = std::fs::read(&y).unwrap();
    // One embedding changed (the last byte of the data: a float32 of the last row), same shape.
    let mut changed = original_x.clone();
    *changed.last_mut().unwrap() ^= 0x40;
    std::fs::write(&x, &changed).unwrap();
    let output = train(&["--resume"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the training embeddings {x} changed since the checkpoint"
        )),
        "{stderr}"
    );
    std::fs::write(&x, &original_x).unwrap();
    let labels = difftopk_io::read_labels(&y).unwrap();
    let mut labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    labels.swap(0, 1);
    assert_ne!(labels[0], labels[1], "the swap changes the labels");
    std::fs::write(&y, npy_i64_bytes(&labels)).unwrap();
    let output = train(&["--resume"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the training labels {y} changed since the checkpoint"
        )),
        "{stderr}"
    );
    std::fs::write(&y, &original_y).unwrap();
    // The checkpoint as an older version wrote it: the same file without `training_data`.
    let checkpoint = path(&dir, "head.safetensors.checkpoint");
    let file = std::fs::File::open(&checkpoint).unwrap();
    let len = file.metadata().unwrap().len();
    let header = difftopk_io::read_safetensors_header(&checkpoint, &file, len).unwrap();
    let mut metadata = header.metadata.clone();
    assert!(metadata.remove("training_data").is_some());
    // Older versions also stored every class sorted as "m": null (now "all").
    let fingerprint = metadata.get_mut("fingerprint").unwrap();
    assert!(fingerprint.contains("\"m\":\"all\""), "{fingerprint}");
    *fingerprint = fingerprint.replace("\"m\":\"all\"", "\"m\":null");
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = header
        .tensors
        .iter()
        .map(|(name, entry)| {
            let values = parameters(&checkpoint, name)
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name.clone(), entry.shape.clone(), values)
        })
        .collect();
    let to_write: Vec<_> = tensors
        .iter()
        .map(
            |(name, shape, values)| difftopk_io::safetensors::TensorToWrite {
                name,
                shape: shape.clone(),
                values,
            },
        )
        .collect();
    std::fs::write(
        &checkpoint,
        difftopk_io::safetensors::serialise(&to_write, &metadata),
    )
    .unwrap();
    let output = train(&["--resume"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("predates the training-data fingerprint"),
        "{stderr}"
    );
}

/// Messages from a review of the printed output: no stray colon, short numbers, signs, plurals,
/// what a .npy given as the head is, the m in effect, the defaults of --threads, a batch larger
/// than the training set.
#[test]
fn printed_messages_read_well() {
    let dir = scratch("messages");
    let (x, y) = (data("X_train.npy"), data("y_train.npy"));
    let metrics = path(&dir, "metrics.json");
    let mut args = train_args(&dir);
    args.retain(|a| a != "--quiet");
    let output = run(binary().args(&args).args([
        "--m",
        "10",
        "--batch-size",
        "100000",
        "--metrics",
        &metrics,
    ]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("(the head after epoch 3)\n"),
        "no colon without val/test scores: {stderr}"
    );
    assert!(
        stderr.contains("note: --m 10 is not below the 10 classes: every class is sorted"),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: --batch-size 100000 is more than the 1257 training rows"),
        "{stderr}"
    );
    assert_eq!(json_file(&metrics)["settings"]["topk"]["m"], "all");
    assert!(run(&mut train_with(
        &dir,
        &x,
        &y,
        &["--m", "8", "--metrics", &metrics]
    ))
    .status
    .success());
    assert_eq!(json_file(&metrics)["settings"]["topk"]["m"], 8);

    let output = run(&mut train_with(
        &dir,
        &x,
        &y,
        &["--inverse-temperature", "1e-200"],
    ));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: --inverse-temperature 1e-200: inverse temperature (beta) is 1e-200,"
        ) && stderr.len() < 200,
        "{stderr}"
    );
    assert_fails(
        &mut train_with(&dir, &x, &y, &["--nloglr", "-400"]),
        &["--nloglr -400: the learning rate 10^400 = inf"],
    );

    let head = write_head(&dir, "zero.safetensors", 10, None);
    let one_x = write(&dir, "one_x.npy", &npy_f32_bytes(&[1, 64], &[0.5; 64]));
    let one_y = write(&dir, "one_y.npy", &npy_i64_bytes(&[3]));
    let output = run(binary().args(["eval", "--head", &head, "--x", &one_x, "--y", &one_y]));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.starts_with("1 row, 10 classes\n"), "{table}");
    assert_fails(
        binary().args(["eval", "--head", &one_x, "--x", &one_x, "--y", &one_y]),
        &[&format!("{one_x}: a .npy array, not a head")],
    );
    for command in ["eval", "predict"] {
        let help = run(binary().args([command, "--help"]));
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.contains("Worker threads (default: all cores)"),
            "{help}"
        );
    }
}

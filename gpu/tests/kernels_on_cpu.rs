//! The CUDA kernel source, run on the CPU: `support/cpu_harness.cpp` includes
//! `kernels/topk_loss.cu` unchanged with the CUDA keywords defined away, and runs each row as one
//! "thread", or for the one-warp-per-row kernels as 32 threads whose shuffles and votes meet at a
//! barrier (those must give the thread kernel's results bit for bit). Its results are compared with the core's for every method (networks, NeuralSort,
//! SoftSort), relaxation, top-1 mode, with and without m, f32 and f64, and for bad input, so the
//! kernels' arithmetic is checked on machines without a GPU (CI). Needs a C++ compiler (`CXX` or
//! `c++`); without one the test prints `skipped` unless `DIFFTOPK_REQUIRE_CXX` is set.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use difftopk_core::{Method, Relaxation, Top1Mode, TopkLoss, TopkLossConfig};
use difftopk_gpu::KernelArguments;

/// Compiles the harness once per test process; `None` when no C++ compiler is installed.
fn harness() -> Option<PathBuf> {
    static HARNESS: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    HARNESS.get_or_init(compile_harness).clone()
}

fn compile_harness() -> Option<PathBuf> {
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/cpu_harness.cpp");
    let binary = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("difftopk_cpu_harness");
    // No contraction into FMA: the kernels are compiled that way by NVRTC too (fmad=false).
    let output = Command::new(&compiler)
        .args(["-O2", "-ffp-contract=off", "-std=c++17", "-pthread", "-o"])
        .arg(&binary)
        .arg(&source)
        .output();
    match output {
        Err(error) => {
            assert!(
                std::env::var_os("DIFFTOPK_REQUIRE_CXX").is_none(),
                "DIFFTOPK_REQUIRE_CXX is set but {compiler} cannot run: {error}"
            );
            None
        }
        Ok(output) => {
            assert!(
                output.status.success(),
                "the kernel source does not compile as C++:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            Some(binary)
        }
    }
}

/// Feeds `input` to the harness and returns what it printed (panics when it fails).
fn harness_output(binary: &PathBuf, input: &str) -> String {
    let mut child = Command::new(binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the harness runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the cases");
    let output = child.wait_with_output().expect("harness output");
    assert!(output.status.success(), "the harness failed");
    String::from_utf8(output.stdout).expect("utf-8")
}

/// One batch for the harness.
struct Case<'a> {
    kernel: i32, // 0 top-k (a thread per row), 8/9/10 top-k (warps per row), 1 cross-entropy
    precision: i32,
    classes: usize,
    arguments: Option<&'a KernelArguments>,
    labels: &'a [usize],
    logits: &'a [f64],
}

/// What the harness returns for a case.
#[derive(Debug)]
struct Outcome {
    status: [i32; 2],
    losses: Vec<f64>,
    gradient: Vec<f64>,
}

fn run(binary: &PathBuf, cases: &[Case]) -> Vec<Outcome> {
    let mut input = String::new();
    for case in cases {
        let batch = case.labels.len();
        let scale = 1.0 / batch as f64;
        let fallback;
        let arguments = match case.arguments {
            Some(arguments) => arguments,
            None => {
                fallback = KernelArguments {
                    n: 0,
                    count: 0,
                    k: 0,
                    mode: 0,
                    preselect: 0,
                    family: 0,
                    relaxation: 0,
                    lambda: 0.0,
                    beta: 0.0,
                    p_first: 0.0,
                    rest_weight: 0.0,
                    comparators: vec![0; 4],
                    layer_starts: vec![0],
                    layers: 0,
                    rank_weights: Vec::new(),
                };
                &fallback
            }
        };
        let a = arguments;
        input += &format!(
            "{} {} {batch} {} {} {} {} {} {} {} {} {:e} {:e} {:e} {:e} {:e}\n",
            case.kernel,
            case.precision,
            case.classes,
            a.n,
            a.count,
            a.k,
            a.mode,
            a.preselect,
            a.family,
            a.relaxation,
            a.beta,
            a.lambda,
            a.p_first,
            a.rest_weight,
            scale
        );
        for value in &a.comparators {
            input += &format!("{value} ");
        }
        input.push('\n');
        for value in &a.rank_weights {
            input += &format!("{value:e} ");
        }
        input.push('\n');
        for label in case.labels {
            input += &format!("{label} ");
        }
        input.push('\n');
        for value in case.logits {
            input += &format!("{value:e} ");
        }
        input.push('\n');
    }
    let text = harness_output(binary, &input);
    let mut tokens = text.split_whitespace();
    cases
        .iter()
        .map(|case| {
            let mut next = || tokens.next().expect("more output");
            let status = [next().parse().unwrap(), next().parse().unwrap()];
            let losses = (0..case.labels.len())
                .map(|_| next().parse().unwrap())
                .collect();
            let gradient = (0..case.logits.len())
                .map(|_| next().parse().unwrap())
                .collect();
            Outcome {
                status,
                losses,
                gradient,
            }
        })
        .collect()
}

fn random_logits(count: usize, seed: u64) -> Vec<f64> {
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0
        })
        .collect()
}

/// Largest |a − e| over the largest |e| (relative to the gradient's scale).
fn relative_difference(actual: &[f64], expected: &[f64]) -> f64 {
    let scale = expected.iter().fold(1e-300f64, |m, e| m.max(e.abs()));
    actual
        .iter()
        .zip(expected)
        .fold(0.0f64, |m, (a, e)| m.max((a - e).abs()))
        / scale
}

#[test]
fn kernel_source_on_the_cpu_matches_the_core() {
    let Some(binary) = harness() else {
        println!("skipped: no C++ compiler");
        return;
    };
    let relaxations = [
        Relaxation::Logistic,
        Relaxation::LogisticPhi { lambda: 0.5 },
        Relaxation::LogisticPhi { lambda: 0.25 },
        Relaxation::LogisticPhi { lambda: 0.3 },
        Relaxation::Gaussian,
        Relaxation::Reciprocal,
        Relaxation::Cauchy,
        Relaxation::Optimal,
    ];
    let mut compared = 0;
    let mut warp_compared = 0;
    let mut worst = [0.0f64; 2];
    for method in Method::ALL {
        let relaxations = if method.is_network() {
            &relaxations[..]
        } else {
            &relaxations[..1]
        };
        for (relaxation_index, &relaxation) in relaxations.iter().enumerate() {
            for mode in [
                Top1Mode::Softmax,
                Top1Mode::SoftmaxCrossEntropy,
                Top1Mode::Sort,
            ] {
                // m = 70: runs of 35 independent comparators (odd-even), more than a warp's
                // lanes, for the warp sweep.
                for (classes, m) in [
                    (20, None),
                    (9, None),
                    (100, Some(16)),
                    (50, Some(7)),
                    (100, Some(70)),
                ] {
                    let config = TopkLossConfig::new(method, classes, &[0.5, 0.0, 0.25, 0.0, 0.25])
                        .unwrap()
                        .with_relaxation(relaxation)
                        .unwrap()
                        .with_inverse_temperature(1.5)
                        .unwrap()
                        .with_preselection(m)
                        .unwrap()
                        .with_top1_mode(mode);
                    let loss = TopkLoss::new(config).unwrap();
                    let arguments = KernelArguments::new(&loss);
                    let batch = 11;
                    let mut logits = random_logits(batch * classes, classes as u64 * 977 + 3);
                    // A row with exact ties (the selections' tie rules).
                    for value in &mut logits[..classes] {
                        *value = (*value * 2.0).round() / 2.0;
                    }
                    let labels: Vec<usize> = (0..batch).map(|b| (b * 7) % classes).collect();
                    let logits32: Vec<f64> = logits.iter().map(|&v| v as f32 as f64).collect();
                    let cases = [
                        Case {
                            kernel: 0,
                            precision: 64,
                            classes,
                            arguments: Some(&arguments),
                            labels: &labels,
                            logits: &logits,
                        },
                        Case {
                            kernel: 0,
                            precision: 32,
                            classes,
                            arguments: Some(&arguments),
                            labels: &labels,
                            logits: &logits32,
                        },
                    ];
                    let outcomes = run(&binary, &cases);
                    let name = format!("{method:?} {relaxation:?} {mode:?} n={classes} m={m:?}");
                    // The one-warp-per-row kernel (rows with a preselection) selects in the same
                    // order and then runs the same row code: bit for bit the thread kernel's
                    // results. Its lanes are threads here (slow), and what it adds (the selection,
                    // the zeroing) does not depend on the relaxation: one relaxation suffices.
                    if m.is_some() && relaxation_index == 0 {
                        // Kernel 8: fused, one warp per row; 9: the selection by warps, then
                        // one thread per row; 10: fused with the network swept by the whole
                        // warp (the only one whose work depends on the runs' width: alone at
                        // m = 70, for the networks in one mode, where the emulated selection is
                        // slow).
                        let warp_kernels: &[i32] = match m {
                            Some(70) if method.is_network() && mode == Top1Mode::Softmax => &[10],
                            Some(70) => &[],
                            _ => &[8, 9, 10],
                        };
                        let warp_cases: Vec<Case> = warp_kernels
                            .iter()
                            .flat_map(|&kernel| {
                                cases.iter().map(move |case| Case { kernel, ..*case })
                            })
                            .collect();
                        let warp_outcomes = run(&binary, &warp_cases);
                        for (warp, thread) in warp_outcomes.iter().zip(outcomes.iter().cycle()) {
                            assert_eq!(warp.status, thread.status, "{name}: warp kernel status");
                            assert_eq!(warp.losses, thread.losses, "{name}: warp kernel losses");
                            assert_eq!(
                                warp.gradient, thread.gradient,
                                "{name}: warp kernel gradient"
                            );
                            warp_compared += 1;
                        }
                    }
                    // f64
                    let mut expected = vec![0.0; logits.len()];
                    let value = loss
                        .forward_backward(&logits, &labels, Some(&mut expected))
                        .unwrap();
                    let outcome = &outcomes[0];
                    assert_eq!(outcome.status, [i32::MAX; 2], "{name}");
                    let mean = outcome.losses.iter().sum::<f64>() / batch as f64;
                    assert!(
                        (mean - value).abs() <= 1e-12 * value.abs().max(1.0),
                        "{name}: f64 loss {mean} vs {value}"
                    );
                    let difference = relative_difference(&outcome.gradient, &expected);
                    assert!(difference <= 1e-12, "{name}: f64 gradient {difference:e}");
                    worst[1] = worst[1].max(difference);
                    // f32
                    let logits_f32: Vec<f32> = logits32.iter().map(|&v| v as f32).collect();
                    let mut expected32 = vec![0f32; logits.len()];
                    let value32 = loss
                        .forward_backward(&logits_f32, &labels, Some(&mut expected32))
                        .unwrap() as f64;
                    let outcome = &outcomes[1];
                    let mean32 = outcome.losses.iter().sum::<f64>() / batch as f64;
                    assert!(
                        (mean32 - value32).abs() <= 1e-5 * value32.abs().max(1.0),
                        "{name}: f32 loss {mean32} vs {value32}"
                    );
                    let expected32: Vec<f64> = expected32.iter().map(|&g| g as f64).collect();
                    let difference = relative_difference(&outcome.gradient, &expected32);
                    assert!(difference <= 1e-5, "{name}: f32 gradient {difference:e}");
                    worst[0] = worst[0].max(difference);
                    compared += 2;
                }
            }
        }
    }
    println!(
        "compared {compared} batches; worst gradient difference f32 {:e}, f64 {:e}; \
         {warp_compared} batches of the warp kernel identical to the thread kernel's",
        worst[0], worst[1]
    );
    assert!(compared > 0 && warp_compared > 0);
}

#[test]
fn kernel_source_on_the_cpu_reports_bad_rows_and_computes_cross_entropy() {
    let Some(binary) = harness() else {
        println!("skipped: no C++ compiler");
        return;
    };
    let classes = 30;
    let config = TopkLossConfig::new(Method::SplitterSelection, classes, &[0.5, 0.5])
        .unwrap()
        .with_preselection(Some(8))
        .unwrap();
    let loss = TopkLoss::new(config).unwrap();
    let arguments = KernelArguments::new(&loss);
    let mut logits = random_logits(5 * classes, 17);
    logits[3 * classes + 4] = f64::NAN;
    logits[4 * classes + 1] = f64::INFINITY;
    let labels = [1usize, 2, 3, 4, 5];
    let bad_labels = [1usize, 2, 99, 4, 5];
    let clean = random_logits(6 * classes, 23);
    let clean_labels = [0usize, 5, 29, 7, 7, 12];
    let outcomes = run(
        &binary,
        &[
            Case {
                kernel: 0,
                precision: 64,
                classes,
                arguments: Some(&arguments),
                labels: &labels,
                logits: &logits,
            },
            Case {
                kernel: 0,
                precision: 32,
                classes,
                arguments: Some(&arguments),
                labels: &bad_labels,
                logits: &logits,
            },
            Case {
                kernel: 1,
                precision: 64,
                classes,
                arguments: None,
                labels: &clean_labels,
                logits: &clean,
            },
        ],
    );
    // First non-finite row 3; with the bad label in row 2 that comes first.
    assert_eq!(outcomes[0].status, [i32::MAX, 3]);
    assert_eq!(outcomes[1].status, [2, 3]);
    // The one-warp-per-row kernels (fused, selection then thread per row, warp sweep) report the same
    // rows, compute the good rows alike and give bad rows a loss of 0.
    let warp = run(
        &binary,
        &[
            Case {
                kernel: 8,
                precision: 64,
                classes,
                arguments: Some(&arguments),
                labels: &labels,
                logits: &logits,
            },
            Case {
                kernel: 8,
                precision: 32,
                classes,
                arguments: Some(&arguments),
                labels: &bad_labels,
                logits: &logits,
            },
            Case {
                kernel: 9,
                precision: 64,
                classes,
                arguments: Some(&arguments),
                labels: &labels,
                logits: &logits,
            },
            Case {
                kernel: 9,
                precision: 32,
                classes,
                arguments: Some(&arguments),
                labels: &bad_labels,
                logits: &logits,
            },
            Case {
                kernel: 10,
                precision: 64,
                classes,
                arguments: Some(&arguments),
                labels: &labels,
                logits: &logits,
            },
            Case {
                kernel: 10,
                precision: 32,
                classes,
                arguments: Some(&arguments),
                labels: &bad_labels,
                logits: &logits,
            },
        ],
    );
    for selected in warp.chunks(2) {
        assert_eq!(selected[0].status, [i32::MAX, 3]);
        assert_eq!(selected[1].status, [2, 3]);
        assert_eq!(selected[0].losses[..3], outcomes[0].losses[..3]);
        assert_eq!(
            selected[0].gradient[..3 * classes],
            outcomes[0].gradient[..3 * classes]
        );
        assert_eq!(selected[0].losses[3..], [0.0, 0.0]);
    }
    let mut expected = vec![0.0; clean.len()];
    let value =
        difftopk_core::softmax_cross_entropy(&clean, &clean_labels, classes, Some(&mut expected))
            .unwrap();
    let outcome = &outcomes[2];
    assert_eq!(outcome.status, [i32::MAX; 2]);
    let mean = outcome.losses.iter().sum::<f64>() / clean_labels.len() as f64;
    assert!((mean - value).abs() <= 1e-12 * value.abs().max(1.0));
    assert!(relative_difference(&outcome.gradient, &expected) <= 1e-12);
}

/// Runs the top-k matrix kernels (2 forward, 3 backward) through the harness.
fn run_matrix(
    binary: &PathBuf,
    kernel: i32,
    precision: i32,
    arguments: &difftopk_gpu::OperatorArguments,
    x: &[f64],
    adjoint: &[f64],
) -> ([i32; 2], Vec<f64>) {
    let a = arguments;
    let batch = x.len() / a.n as usize;
    let mut input = format!(
        "{kernel} {precision} {batch} {} {} {} {} {:e} {:e}\n",
        a.n, a.count, a.k, a.relaxation, a.beta, a.lambda
    );
    for value in &a.comparators {
        input += &format!("{value} ");
    }
    input.push('\n');
    for value in x.iter().chain(if kernel == 3 { adjoint } else { &[] }) {
        input += &format!("{value:e} ");
    }
    input.push('\n');
    let text = harness_output(binary, &input);
    let mut tokens = text.split_whitespace();
    let status = [
        tokens.next().unwrap().parse().unwrap(),
        tokens.next().unwrap().parse().unwrap(),
    ];
    (status, tokens.map(|t| t.parse().unwrap()).collect())
}

#[test]
fn topk_matrix_kernels_on_the_cpu_match_the_core_operator() {
    use difftopk_core::operators::{relaxed_topk, relaxed_topk_backward, relaxed_topk_scratch_len};
    use difftopk_core::SortingNetwork;
    let Some(binary) = harness() else {
        println!("skipped: no C++ compiler");
        return;
    };
    let relaxations = [
        Relaxation::Logistic,
        Relaxation::LogisticPhi { lambda: 0.5 },
        Relaxation::LogisticPhi { lambda: 0.3 },
        Relaxation::Gaussian,
        Relaxation::Reciprocal,
        Relaxation::Cauchy,
        Relaxation::Optimal,
    ];
    let mut compared = 0;
    for (n, k) in [(8usize, 3usize), (13, 5), (16, 1)] {
        let networks = [
            SortingNetwork::odd_even(n).unwrap(),
            SortingNetwork::bitonic_any_size(n).unwrap(),
            SortingNetwork::splitter_selection(n, k).unwrap(),
        ];
        for network in &networks {
            for relaxation in relaxations {
                let beta = 2.0;
                let arguments =
                    difftopk_gpu::OperatorArguments::new(network, relaxation, beta, k).unwrap();
                let batch = 4;
                let x = random_logits(batch * n, (n * 31 + k) as u64);
                let adjoint = random_logits(batch * n * k, 5);
                let name = format!("{:?} n={n} k={k} {relaxation:?}", network.kind());
                for precision in [64, 32] {
                    let round = |v: &f64| {
                        if precision == 32 {
                            *v as f32 as f64
                        } else {
                            *v
                        }
                    };
                    let x: Vec<f64> = x.iter().map(round).collect();
                    let adjoint: Vec<f64> = adjoint.iter().map(round).collect();
                    let (status, p_topk) = run_matrix(&binary, 2, precision, &arguments, &x, &[]);
                    assert_eq!(status, [i32::MAX; 2], "{name}");
                    let (status, grad_x) =
                        run_matrix(&binary, 3, precision, &arguments, &x, &adjoint);
                    assert_eq!(status, [i32::MAX; 2], "{name}");
                    let mut scratch = vec![0.0; relaxed_topk_scratch_len(&network.as_ref(), k)];
                    let mut expected_p = vec![0.0; batch * n * k];
                    let mut expected_g = vec![0.0; batch * n];
                    for row in 0..batch {
                        let x_row = &x[row * n..(row + 1) * n];
                        relaxed_topk(
                            &network.as_ref(),
                            relaxation,
                            beta,
                            k,
                            x_row,
                            &mut expected_p[row * n * k..(row + 1) * n * k],
                            &mut scratch,
                        )
                        .unwrap();
                        relaxed_topk_backward(
                            &network.as_ref(),
                            relaxation,
                            beta,
                            k,
                            x_row,
                            &adjoint[row * n * k..(row + 1) * n * k],
                            &mut expected_g[row * n..(row + 1) * n],
                            &mut scratch,
                        )
                        .unwrap();
                    }
                    // A general λ goes through powf, whose last bit differs between libm and
                    // the C library (or CUDA); through the comparators' slopes that reaches
                    // 1.4e-5 of the gradient's scale in f32, hence a looser bound there.
                    let general_power = matches!(
                        relaxation,
                        Relaxation::LogisticPhi { lambda } if lambda != 0.5 && lambda != 0.25
                    );
                    let tolerance = match (precision, general_power) {
                        (64, _) => 1e-12,
                        (_, false) => 1e-5,
                        (_, true) => 5e-5,
                    };
                    let p_difference = relative_difference(&p_topk, &expected_p);
                    let g_difference = relative_difference(&grad_x, &expected_g);
                    assert!(
                        p_difference <= tolerance,
                        "{name} f{precision}: P {p_difference:e}"
                    );
                    assert!(
                        g_difference <= tolerance,
                        "{name} f{precision}: ∂x {g_difference:e}"
                    );
                    compared += 1;
                }
            }
        }
    }
    // A non-finite score is reported for its row.
    let network = SortingNetwork::odd_even(6).unwrap();
    let arguments =
        difftopk_gpu::OperatorArguments::new(&network, Relaxation::Logistic, 1.0, 2).unwrap();
    let mut x = random_logits(3 * 6, 9);
    x[2 * 6 + 3] = f64::NAN;
    let (status, _) = run_matrix(&binary, 2, 64, &arguments, &x, &[]);
    assert_eq!(status, [i32::MAX, 2]);
    println!("compared {compared} operator batches");
    assert!(compared > 0);
}

/// Runs one head-kernel case through the harness and returns its output numbers.
fn run_head(binary: &PathBuf, input: &str) -> Vec<f32> {
    harness_output(binary, input)
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect()
}

fn floats(values: &[f32]) -> String {
    values.iter().map(|v| format!("{v:e} ")).collect()
}

/// The head's device kernels do the CPU step's arithmetic bit for bit: AdamW as
/// difftopk-autodiff's `AdamW::update_slice` (with and without decay, over several steps), the
/// bias gradient as the row-ordered column sums, the batch gather from a resident set, the bias
/// broadcast.
#[test]
fn head_kernels_on_the_cpu_match_the_cpu_step_bitwise() {
    use difftopk_autodiff::{AdamW, AdamWConfig};
    let Some(binary) = harness() else {
        println!("skipped: no C++ compiler");
        return;
    };
    let count = 257;
    let to32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    for decay in [false, true] {
        let mut optimiser = AdamW::<f32>::new(AdamWConfig {
            learning_rate: 0.05,
            betas: [0.9, 0.999],
            epsilon: 1e-8,
            weight_decay: 0.01,
        })
        .unwrap();
        let mut expected = to32(random_logits(count, 3));
        let mut device = expected.clone();
        let (mut first, mut second) = (vec![0f32; count], vec![0f32; count]);
        for step in 0..4 {
            let gradient = to32(random_logits(count, 10 + step));
            optimiser
                .set_learning_rate(0.05 / (1.0 + step as f64))
                .unwrap();
            optimiser.begin_step();
            let c = optimiser.coefficients(decay);
            optimiser
                .update_slice(0, &mut expected, &gradient, decay)
                .unwrap();
            let input = format!(
                "4 32 {count} {:e} {:e} {:e} {:e} {:e} {:e} {:e} {:e}\n{}\n{}\n{}\n{}\n",
                c.step_size,
                c.inverse_root_correction,
                c.keep,
                c.beta1,
                c.beta2,
                c.one_minus_beta1,
                c.one_minus_beta2,
                c.epsilon,
                floats(&device),
                floats(&gradient),
                floats(&first),
                floats(&second)
            );
            let out = run_head(&binary, &input);
            device = out[..count].to_vec();
            first = out[count..2 * count].to_vec();
            second = out[2 * count..].to_vec();
            let moments = &optimiser.moments()[0];
            for i in 0..count {
                assert_eq!(
                    device[i].to_bits(),
                    expected[i].to_bits(),
                    "θ[{i}] step {step}"
                );
                assert_eq!(first[i].to_bits(), moments.0[i].to_bits(), "m[{i}]");
                assert_eq!(second[i].to_bits(), moments.1[i].to_bits(), "v[{i}]");
            }
        }
    }
    let (rows, classes) = (37, 11);
    let gradient = to32(random_logits(rows * classes, 77));
    let sums = run_head(
        &binary,
        &format!("5 32 {rows} {classes}\n{}\n", floats(&gradient)),
    );
    let mut expected = vec![0f32; classes];
    for row in gradient.chunks_exact(classes) {
        for (e, &g) in expected.iter_mut().zip(row) {
            *e += g;
        }
    }
    assert_eq!(sums, expected);
    // Gathering a batch from a resident set.
    let (source_rows, dimension) = (9usize, 5usize);
    let source = to32(random_logits(source_rows * dimension, 79));
    let labels: Vec<u32> = (0..source_rows as u32).map(|r| r * 3 + 1).collect();
    let picked = [4u32, 0, 8, 4];
    let input = format!(
        "7 32 {} {dimension} {source_rows}\n{}\n{}\n{}\n",
        picked.len(),
        floats(&source),
        labels.iter().map(|l| format!("{l} ")).collect::<String>(),
        picked.iter().map(|r| format!("{r} ")).collect::<String>()
    );
    let out = run_head(&binary, &input);
    let mut expected: Vec<f32> = picked
        .iter()
        .flat_map(|&r| source[r as usize * dimension..(r as usize + 1) * dimension].to_vec())
        .collect();
    expected.extend(picked.iter().map(|&r| labels[r as usize] as f32));
    assert_eq!(out, expected);
    let bias = to32(random_logits(classes, 78));
    let logits = run_head(
        &binary,
        &format!("6 32 {rows} {classes}\n{}\n", floats(&bias)),
    );
    let expected: Vec<f32> = (0..rows).flat_map(|_| bias.iter().copied()).collect();
    assert_eq!(logits, expected);
}

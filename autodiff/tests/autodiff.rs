//! The dfdx adapter: gradients bit-identical to the core's for every method and relaxation,
//! compile-time and run-time shapes, f32 and f64; composition with other dfdx ops; `NoneTape`;
//! the operators against the core and finite differences; the runtime linear head and AdamW.

use difftopk_autodiff::dfdx::prelude::*;
use difftopk_autodiff::{
    neuralsort_topk_matrix, softsort_topk_matrix, topk_cross_entropy, AdamW, AdamWConfig, Element,
    Error, RelaxedSortingNetwork, RuntimeLinear,
};
use difftopk_core::{Method, Relaxation, Top1Mode, TopkLoss, TopkLossConfig};

/// A batch `(B, n)` of f64 rows without a tape.
type Batch = Tensor<(usize, usize), f64, Cpu>;
/// An operator evaluated without a tape, flattened.
type PlainOp<'a> = &'a dyn Fn(Batch) -> Vec<f64>;

const METHODS: [Method; 6] = Method::ALL;

fn relaxations() -> [Relaxation; 6] {
    [
        Relaxation::Logistic,
        Relaxation::LogisticPhi { lambda: 0.5 },
        Relaxation::Gaussian,
        Relaxation::Reciprocal,
        Relaxation::Cauchy,
        Relaxation::Optimal,
    ]
}

/// Deterministic pseudo-random values in (−3, 3).
fn values(count: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0
        })
        .collect()
}

fn config(
    method: Method,
    relaxation: Relaxation,
    classes: usize,
    m: Option<usize>,
) -> TopkLossConfig {
    TopkLossConfig::new(method, classes, &[0.5, 0.0, 0.25, 0.0, 0.25])
        .unwrap()
        .with_relaxation(relaxation)
        .unwrap()
        .with_inverse_temperature(2.0)
        .unwrap()
        .with_preselection(m)
        .unwrap()
}

/// Core loss and gradient versus dfdx's, run-time shape.
fn check_runtime<E: Element + Bits>(loss: &TopkLoss, batch: usize, classes: usize, seed: u64)
where
    Cpu: Device<E>,
{
    let device = Cpu::default();
    let logits: Vec<E> = values(batch * classes, seed)
        .into_iter()
        .map(E::of)
        .collect();
    let labels: Vec<usize> = (0..batch).map(|b| (b * 7 + 3) % classes).collect();
    let mut expected_gradient = vec![E::zero(); logits.len()];
    let expected = loss
        .forward_backward(&logits, &labels, Some(&mut expected_gradient))
        .unwrap();
    let x = device.tensor_from_vec(logits, (batch, classes));
    let out = topk_cross_entropy(x.leaky_trace(), &labels, loss).unwrap();
    assert_eq!(out.array().to_bits_u64(), expected.to_bits_u64());
    let gradients = out.backward();
    let actual = gradients.get(&x).as_vec();
    assert!(
        actual
            .iter()
            .zip(&expected_gradient)
            .all(|(a, e)| a.to_bits_u64() == e.to_bits_u64()),
        "{:?}: gradient differs from the core's",
        loss.config().method()
    );
}

trait Bits {
    fn to_bits_u64(&self) -> u64;
}
impl Bits for f32 {
    fn to_bits_u64(&self) -> u64 {
        self.to_bits() as u64
    }
}
impl Bits for f64 {
    fn to_bits_u64(&self) -> u64 {
        self.to_bits()
    }
}

#[test]
fn gradient_is_the_cores_bit_for_bit_for_every_method_and_relaxation() {
    let mut checked = 0;
    for method in METHODS {
        for relaxation in relaxations() {
            for (classes, m) in [(12, None), (40, Some(10))] {
                let loss = TopkLoss::new(config(method, relaxation, classes, m)).unwrap();
                check_runtime::<f32>(&loss, 9, classes, checked as u64);
                check_runtime::<f64>(&loss, 9, classes, checked as u64 + 1000);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 72);
}

#[test]
fn compile_time_shapes_every_method_and_top1_mode() {
    let device = Cpu::default();
    for method in METHODS {
        for mode in [
            Top1Mode::Softmax,
            Top1Mode::SoftmaxCrossEntropy,
            Top1Mode::Sort,
        ] {
            let config = config(method, Relaxation::LogisticPhi { lambda: 0.5 }, 10, None)
                .with_top1_mode(mode);
            let loss = TopkLoss::new(config).unwrap();
            let logits: Vec<f64> = values(40, 7);
            let labels = [1usize, 4, 9, 0];
            let x: Tensor<Rank2<4, 10>, f64, _> =
                device.tensor_from_vec(logits.clone(), (Const, Const));
            let out = topk_cross_entropy(x.leaky_trace(), &labels, &loss).unwrap();
            let mut expected_gradient = vec![0.0; 40];
            let expected = loss
                .forward_backward(&logits, &labels, Some(&mut expected_gradient))
                .unwrap();
            assert_eq!(out.array(), expected);
            assert_eq!(out.backward().get(&x).as_vec(), expected_gradient);
            let x32: Tensor<Rank2<4, 10>, f32, _> =
                device.tensor_from_vec(logits.iter().map(|&v| v as f32).collect(), (Const, Const));
            let out = topk_cross_entropy(x32.leaky_trace(), &labels, &loss).unwrap();
            let mut expected_gradient = vec![0.0f32; 40];
            let values32: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
            let expected = loss
                .forward_backward(&values32, &labels, Some(&mut expected_gradient))
                .unwrap();
            assert_eq!(out.array().to_bits(), expected.to_bits());
            assert_eq!(out.backward().get(&x32).as_vec(), expected_gradient);
        }
    }
}

#[test]
fn labels_as_a_usize_tensor_and_config_by_value() {
    let device = Cpu::default();
    let config = config(Method::OddEven, Relaxation::Logistic, 8, None);
    let logits = values(24, 3);
    let x = device.tensor_from_vec(logits.clone(), (3usize, 8usize));
    let labels: Tensor<(usize,), usize, _> = device.tensor_from_vec(vec![0usize, 7, 3], (3,));
    let from_tensor = topk_cross_entropy(x.clone(), &labels, &config)
        .unwrap()
        .array();
    let from_slice = topk_cross_entropy(x, &[0usize, 7, 3], &config)
        .unwrap()
        .array();
    assert_eq!(from_tensor, from_slice);
}

#[test]
fn scaled_loss_and_sum_with_dfdx_cross_entropy() {
    let device = Cpu::default();
    let loss = TopkLoss::new(config(Method::Bitonic, Relaxation::Cauchy, 16, None)).unwrap();
    let logits = values(5 * 16, 11);
    let labels = [2usize, 15, 0, 7, 7];
    let mut topk_gradient = vec![0.0; logits.len()];
    loss.forward_backward(&logits, &labels, Some(&mut topk_gradient))
        .unwrap();
    let mut ce_gradient = vec![0.0; logits.len()];
    difftopk_core::softmax_cross_entropy(&logits, &labels, 16, Some(&mut ce_gradient)).unwrap();

    let x = device.tensor_from_vec(logits.clone(), (5usize, 16usize));
    let scaled = topk_cross_entropy(x.leaky_trace(), &labels, &loss).unwrap() * 3.0;
    let gradient = scaled.backward().get(&x).as_vec();
    for (g, e) in gradient.iter().zip(&topk_gradient) {
        assert!(
            (g - 3.0 * e).abs() <= 1e-15 * e.abs().max(1.0),
            "{g} vs 3 × {e}"
        );
    }

    let mut one_hot = vec![0.0; logits.len()];
    for (row, &label) in labels.iter().enumerate() {
        one_hot[row * 16 + label] = 1.0;
    }
    let targets = device.tensor_from_vec(one_hot, (5usize, 16usize));
    let traced = x.leaky_trace();
    let topk = topk_cross_entropy(traced.with_empty_tape(), &labels, &loss).unwrap();
    let ce = cross_entropy_with_logits_loss(traced, targets);
    let total = topk + ce;
    let gradient = total.backward().get(&x).as_vec();
    for ((g, t), c) in gradient.iter().zip(&topk_gradient).zip(&ce_gradient) {
        assert!((g - (t + c)).abs() < 1e-12, "{g} vs {t} + {c}");
    }
}

#[test]
fn none_tape_gives_the_same_value() {
    let device = Cpu::default();
    let loss = TopkLoss::new(config(
        Method::NeuralSort,
        Relaxation::Logistic,
        20,
        Some(8),
    ))
    .unwrap();
    let logits = values(6 * 20, 5);
    let labels = [0usize, 1, 2, 3, 4, 19];
    let x = device.tensor_from_vec(logits, (6usize, 20usize));
    let untraced = topk_cross_entropy(x.clone(), &labels, &loss)
        .unwrap()
        .array();
    let traced = topk_cross_entropy(x.leaky_trace(), &labels, &loss)
        .unwrap()
        .array();
    assert_eq!(untraced, traced);
}

#[test]
fn bad_inputs_are_errors() {
    let device = Cpu::default();
    let loss = TopkLoss::new(config(
        Method::SplitterSelection,
        Relaxation::Logistic,
        8,
        None,
    ))
    .unwrap();
    let x = device.tensor_from_vec(values(16, 1), (2usize, 8usize));
    let wrong_width = device.tensor_from_vec(values(18, 1), (2usize, 9usize));
    assert!(matches!(
        topk_cross_entropy(wrong_width, &[0usize, 1], &loss),
        Err(Error::Core(difftopk_core::Error::LengthMismatch { .. }))
    ));
    assert!(matches!(
        topk_cross_entropy(x.clone(), &[0usize], &loss),
        Err(Error::Core(difftopk_core::Error::LengthMismatch { .. }))
    ));
    assert!(matches!(
        topk_cross_entropy(x.clone(), &[0usize, 8], &loss),
        Err(Error::Core(difftopk_core::Error::LabelOutOfRange {
            row: 1,
            label: 8,
            ..
        }))
    ));
    let mut bad = values(16, 1);
    bad[11] = f64::NAN;
    let nan = device.tensor_from_vec(bad, (2usize, 8usize));
    assert!(matches!(
        topk_cross_entropy(nan.leaky_trace(), &[0usize, 1], &loss),
        Err(Error::Core(difftopk_core::Error::NonFiniteInput {
            row: 1,
            column: 3
        }))
    ));
}

/// `Σ W ⊙ op(x)` with fixed weights W: its dfdx gradient is the op's VJP applied to W.
fn weighted_sum_gradient<S, F>(
    x: &Tensor<(usize, usize), f64, Cpu>,
    op: F,
    weights: &[f64],
) -> (Vec<f64>, f64)
where
    F: Fn(
        Tensor<(usize, usize), f64, Cpu, OwnedTape<f64, Cpu>>,
    ) -> Tensor<S, f64, Cpu, OwnedTape<f64, Cpu>>,
    S: Shape,
{
    let out = op(x.leaky_trace());
    let w = out.device().tensor_from_vec(weights.to_vec(), *out.shape());
    let total = (out * w).sum();
    let value = total.array();
    (total.backward().get(x).as_vec(), value)
}

/// Central finite difference of `f` along each input coordinate.
fn finite_difference(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    (0..x.len())
        .map(|i| {
            let mut plus = x.to_vec();
            let mut minus = x.to_vec();
            plus[i] += h;
            minus[i] -= h;
            (f(&plus) - f(&minus)) / (2.0 * h)
        })
        .collect()
}

fn assert_close(actual: &[f64], expected: &[f64], tolerance: f64, what: &str) {
    let scale = expected.iter().fold(1e-3f64, |m, e| m.max(e.abs()));
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tolerance * scale,
            "{what}[{i}]: {a} vs {e}"
        );
    }
}

#[test]
fn operators_match_the_core_and_finite_differences() {
    let device = Cpu::default();
    let (batch, n, k) = (3usize, 9usize, 4usize);
    let input = values(batch * n, 21);
    let x = device.tensor_from_vec(input.clone(), (batch, n));
    for relaxation in relaxations() {
        let network = difftopk_core::SortingNetwork::odd_even(n).unwrap();
        let sorter = RelaxedSortingNetwork::new(network.clone(), relaxation, 1.5).unwrap();
        let evaluate = |op: PlainOp<'_>, weights: &[f64], at: &[f64]| -> f64 {
            evaluate_plain(&device, op, weights, at, batch, n)
        };
        // sorted values
        let weights = values(batch * n, 5);
        let (gradient, _) = weighted_sum_gradient(&x, |t| sorter.sort(t).unwrap(), &weights);
        let expected = finite_difference(&input, |at| {
            evaluate(&|t| sorter.sort(t).unwrap().as_vec(), &weights, at)
        });
        assert_close(&gradient, &expected, 1e-6, relaxation.name());
        // permutation matrices, checked against the core's P row by row
        let p = sorter.permutation(x.clone()).unwrap().as_vec();
        let mut row_p = vec![0.0; n * n];
        let mut sorted = vec![0.0; n];
        let mut scratch =
            vec![0.0; difftopk_core::operators::relaxed_sort_scratch_len(&network.as_ref())];
        difftopk_core::operators::relaxed_sort(
            &network.as_ref(),
            relaxation,
            1.5,
            &input[n..2 * n],
            &mut sorted,
            Some(&mut row_p),
            &mut scratch,
        )
        .unwrap();
        assert_eq!(&p[n * n..2 * n * n], &row_p[..]);
        let weights = values(batch * n * n, 6);
        let (gradient, _) = weighted_sum_gradient(&x, |t| sorter.permutation(t).unwrap(), &weights);
        let expected = finite_difference(&input, |at| {
            evaluate(&|t| sorter.permutation(t).unwrap().as_vec(), &weights, at)
        });
        assert_close(&gradient, &expected, 1e-6, relaxation.name());
        // top-k matrices
        let weights = values(batch * n * k, 8);
        let (gradient, _) =
            weighted_sum_gradient(&x, |t| sorter.topk_matrix(t, k).unwrap(), &weights);
        let expected = finite_difference(&input, |at| {
            evaluate(
                &|t| sorter.topk_matrix(t, k).unwrap().as_vec(),
                &weights,
                at,
            )
        });
        assert_close(&gradient, &expected, 1e-6, relaxation.name());
    }
    let weights = values(batch * n * k, 9);
    for (name, op) in [
        (
            "neuralsort",
            &(|t: Tensor<(usize, usize), f64, Cpu, _>| neuralsort_topk_matrix(t, k, 2.0).unwrap())
                as &dyn Fn(
                    Tensor<(usize, usize), f64, Cpu, OwnedTape<f64, Cpu>>,
                )
                    -> Tensor<(usize, usize, usize), f64, Cpu, OwnedTape<f64, Cpu>>,
        ),
        (
            "softsort",
            &(|t: Tensor<(usize, usize), f64, Cpu, _>| softsort_topk_matrix(t, k, 2.0).unwrap()),
        ),
    ] {
        let (gradient, _) = weighted_sum_gradient(&x, op, &weights);
        let plain = |t: Tensor<(usize, usize), f64, Cpu>| -> Vec<f64> {
            if name == "neuralsort" {
                neuralsort_topk_matrix(t, k, 2.0).unwrap().as_vec()
            } else {
                softsort_topk_matrix(t, k, 2.0).unwrap().as_vec()
            }
        };
        let expected = finite_difference(&input, |at| {
            evaluate_plain(&device, &plain, &weights, at, batch, n)
        });
        assert_close(&gradient, &expected, 1e-6, name);
        // rows of P_topk sum to at most 1, columns to 1
        let p = plain(x.clone());
        for row in p.chunks(n * k) {
            for r in 0..k {
                let column: f64 = (0..n).map(|i| row[i * k + r]).sum();
                assert!((column - 1.0).abs() < 1e-12, "{name}: column sum {column}");
            }
        }
    }
}

fn evaluate_plain(
    device: &Cpu,
    op: PlainOp<'_>,
    weights: &[f64],
    at: &[f64],
    batch: usize,
    n: usize,
) -> f64 {
    let t = device.tensor_from_vec(at.to_vec(), (batch, n));
    op(t).iter().zip(weights).map(|(a, b)| a * b).sum()
}

#[test]
fn operator_errors() {
    let device = Cpu::default();
    let network = difftopk_core::SortingNetwork::odd_even(5).unwrap();
    assert!(RelaxedSortingNetwork::new(network.clone(), Relaxation::Logistic, 0.0).is_err());
    assert!(RelaxedSortingNetwork::new(
        network.clone(),
        Relaxation::LogisticPhi { lambda: -1.0 },
        1.0
    )
    .is_err());
    let sorter = RelaxedSortingNetwork::new(network, Relaxation::Logistic, 1.0).unwrap();
    let wrong = device.tensor_from_vec(values(12, 2), (2usize, 6usize));
    assert!(sorter.sort(wrong).is_err());
    let x = device.tensor_from_vec(values(10, 2), (2usize, 5usize));
    assert!(sorter.topk_matrix(x.clone(), 6usize).is_err());
    assert!(neuralsort_topk_matrix(x.clone(), 0usize, 1.0).is_err());
    assert!(softsort_topk_matrix(x, 2usize, f64::NAN).is_err());
}

#[test]
fn runtime_linear_forward_and_gradients() {
    let device = Cpu::default();
    let (batch, inputs, outputs) = (4usize, 3usize, 5usize);
    let linear = RuntimeLinear::<f64>::new(&device, inputs, outputs, 42).unwrap();
    let bound = 1.0 / (inputs as f64).sqrt();
    let weight = linear.weight.as_vec();
    assert!(weight.iter().all(|w| w.abs() <= bound));
    assert_eq!(
        RuntimeLinear::<f64>::new(&device, inputs, outputs, 42)
            .unwrap()
            .weight
            .as_vec(),
        weight
    );
    let bias = linear.bias.as_vec();
    let xs = values(batch * inputs, 4);
    let x = device.tensor_from_vec(xs.clone(), (batch, inputs));
    let y = linear.forward(x.clone()).unwrap().as_vec();
    for b in 0..batch {
        for c in 0..outputs {
            let expected: f64 = bias[c]
                + (0..inputs)
                    .map(|d| xs[b * inputs + d] * weight[c * inputs + d])
                    .sum::<f64>();
            assert!((y[b * outputs + c] - expected).abs() < 1e-12);
        }
    }
    // d(Σ y ⊙ G)/dW = Gᵀ x, d/db = Σ_b G
    let g = values(batch * outputs, 9);
    let grads = linear.alloc_grads().unwrap();
    let out = linear.forward(x.traced(grads)).unwrap();
    let upstream = device.tensor_from_vec(g.clone(), (batch, outputs));
    let mut gradients = (out * upstream).sum().backward();
    let (weight_gradient, bias_gradient) = linear.parameter_gradients(&mut gradients).unwrap();
    for c in 0..outputs {
        let expected_bias: f64 = (0..batch).map(|b| g[b * outputs + c]).sum();
        assert!((bias_gradient[c] - expected_bias).abs() < 1e-12);
        for d in 0..inputs {
            let expected: f64 = (0..batch)
                .map(|b| g[b * outputs + c] * xs[b * inputs + d])
                .sum();
            assert!((weight_gradient[c * inputs + d] - expected).abs() < 1e-12);
        }
    }
    let wrong = device.tensor_from_vec(values(8, 1), (2usize, 4usize));
    assert!(linear.forward(wrong).is_err());
}

#[test]
fn adamw_step_follows_the_formula() {
    let config = AdamWConfig {
        learning_rate: 0.1,
        betas: [0.9, 0.99],
        epsilon: 1e-8,
        weight_decay: 0.5,
    };
    let mut optimiser = AdamW::<f64>::new(config).unwrap();
    let mut theta = vec![1.0, -2.0];
    let gradients = [[0.5, -1.0], [0.25, 2.0]];
    let (mut m, mut v, mut expected) = ([0.0f64; 2], [0.0f64; 2], theta.clone());
    for (t, g) in gradients.iter().enumerate() {
        optimiser.begin_step();
        optimiser.update_slice(0, &mut theta, g, true).unwrap();
        let t = t as i32 + 1;
        for i in 0..2 {
            expected[i] *= 1.0 - 0.1 * 0.5;
            m[i] = 0.9 * m[i] + 0.1 * g[i];
            v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i];
            let m_hat = m[i] / (1.0 - 0.9f64.powi(t));
            let v_hat = v[i] / (1.0 - 0.99f64.powi(t));
            expected[i] -= 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        }
        for i in 0..2 {
            assert!(
                (theta[i] - expected[i]).abs() < 1e-12,
                "step {t}: {} vs {}",
                theta[i],
                expected[i]
            );
        }
    }
    assert!(AdamW::<f64>::new(AdamWConfig {
        learning_rate: -1.0,
        ..config
    })
    .is_err());
    assert!(AdamW::<f64>::new(AdamWConfig {
        betas: [1.0, 0.9],
        ..config
    })
    .is_err());
}

#[test]
fn a_linear_head_learns_with_the_topk_loss() {
    // Four separable classes in 2-D; the top-k loss trained with AdamW drives top-1 to 100 %.
    let device = Cpu::default();
    let centres = [(2.0, 0.0), (0.0, 2.0), (-2.0, 0.0), (0.0, -2.0)];
    let noise = values(2 * 64, 13);
    let mut xs = Vec::new();
    let mut labels = Vec::new();
    for i in 0..64 {
        let (cx, cy) = centres[i % 4];
        xs.push(cx + 0.3 * noise[2 * i]);
        xs.push(cy + 0.3 * noise[2 * i + 1]);
        labels.push(i % 4);
    }
    let config = TopkLossConfig::new(Method::SplitterSelection, 4, &[0.5, 0.5]).unwrap();
    let loss = TopkLoss::new(config).unwrap();
    let mut linear = RuntimeLinear::<f32>::new(&device, 2, 4, 1).unwrap();
    let mut optimiser = AdamW::new(AdamWConfig {
        learning_rate: 0.05,
        ..Default::default()
    })
    .unwrap();
    let x = device.tensor_from_vec(
        xs.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        (64usize, 2usize),
    );
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..100 {
        let grads = linear.alloc_grads().unwrap();
        let logits = linear.forward(x.trace(grads)).unwrap();
        let value = topk_cross_entropy(logits, &labels, &loss).unwrap();
        last = value.array();
        first.get_or_insert(last);
        let mut gradients = value.backward();
        optimiser
            .update_linear(&mut linear, &mut gradients)
            .unwrap();
    }
    assert!(
        last < 0.5 * first.unwrap(),
        "loss {} → {last}",
        first.unwrap()
    );
    let logits = linear.forward(x).unwrap().as_vec();
    let correct = logits
        .chunks(4)
        .zip(&labels)
        .filter(|(row, &label)| row.iter().cloned().fold(f32::MIN, f32::max) == row[label])
        .count();
    assert_eq!(correct, 64);
}

#[test]
fn softmax_cross_entropy_matches_dfdx_and_the_core() {
    let device = Cpu::default();
    let logits = values(6 * 7, 17);
    let labels = [0usize, 6, 3, 3, 1, 2];
    let x = device.tensor_from_vec(logits.clone(), (6usize, 7usize));
    let ours = difftopk_autodiff::softmax_cross_entropy(x.leaky_trace(), &labels).unwrap();
    let value = ours.array();
    let gradient = ours.backward().get(&x).as_vec();
    let mut one_hot = vec![0.0; logits.len()];
    for (row, &label) in labels.iter().enumerate() {
        one_hot[row * 7 + label] = 1.0;
    }
    let targets = device.tensor_from_vec(one_hot, (6usize, 7usize));
    let theirs = cross_entropy_with_logits_loss(x.leaky_trace(), targets);
    assert!((theirs.array() - value).abs() < 1e-14);
    let expected = theirs.backward().get(&x).as_vec();
    assert_close(&gradient, &expected, 1e-13, "softmax CE gradient");
    assert!(difftopk_autodiff::softmax_cross_entropy(x, &[0usize, 7, 0, 0, 0, 0]).is_err());
}

/// AdamW names a bad hyper-parameter with its value; a step count past i32 does not wrap.
#[test]
fn adamw_rejects_bad_hyper_parameters_by_name() {
    for (config, needle) in [
        (
            AdamWConfig {
                learning_rate: f64::NAN,
                ..Default::default()
            },
            "learning rate",
        ),
        (
            AdamWConfig {
                betas: [1.0, 0.999],
                ..Default::default()
            },
            "beta1",
        ),
        (
            AdamWConfig {
                betas: [0.9, -0.1],
                ..Default::default()
            },
            "beta2",
        ),
        (
            AdamWConfig {
                epsilon: 0.0,
                ..Default::default()
            },
            "epsilon",
        ),
        (
            AdamWConfig {
                weight_decay: -1.0,
                ..Default::default()
            },
            "weight decay",
        ),
    ] {
        let error = AdamW::<f32>::new(config).expect_err("refused");
        assert!(matches!(error, Error::InvalidHyperParameter { .. }));
        assert!(error.to_string().contains(needle), "{error}");
    }
    let mut optimiser = AdamW::<f32>::new(AdamWConfig::default()).unwrap();
    assert!(optimiser.set_learning_rate(-0.1).is_err());
    assert!(optimiser.set_learning_rate(f64::INFINITY).is_err());
    optimiser.set_learning_rate(0.0).unwrap();
    optimiser.restore(1 << 32, Vec::new());
    let coefficients = optimiser.coefficients(true);
    assert!(coefficients.step_size.is_finite() && coefficients.inverse_root_correction.is_finite());
}

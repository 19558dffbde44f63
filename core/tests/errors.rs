//! Bad configurations and inputs return the error that names the problem, never a panic or NaN.

use difftopk_core::loss::{sample_loss, Scratch};
use difftopk_core::{Error, Method, Relaxation, SortingNetwork, TopkLoss, TopkLossConfig};

#[test]
fn configuration_is_validated() {
    let pk = [0.5, 0.0, 0.0, 0.0, 0.5];
    assert_eq!(
        TopkLossConfig::new(Method::Bitonic, 1, &pk),
        Err(Error::TooFewClasses { classes: 1 })
    );
    assert_eq!(
        TopkLossConfig::new(Method::Bitonic, 10, &[]),
        Err(Error::EmptyTopkDistribution)
    );
    assert_eq!(
        TopkLossConfig::new(Method::Bitonic, 10, &[0.5, -0.1, 0.6]),
        Err(Error::InvalidTopkWeight {
            index: 1,
            value: -0.1
        })
    );
    assert!(matches!(
        TopkLossConfig::new(Method::Bitonic, 10, &[0.5, 0.4]),
        Err(Error::TopkDistributionSum { .. })
    ));
    assert!(matches!(
        TopkLossConfig::new(Method::Bitonic, 10, &[0.5, f64::NAN]),
        Err(Error::InvalidTopkWeight { index: 1, .. })
    ));
    assert_eq!(
        TopkLossConfig::new(Method::Bitonic, 3, &pk),
        Err(Error::TopkLargerThanInputs { k: 5, inputs: 3 })
    );
    let config = TopkLossConfig::new(Method::SplitterSelection, 100, &pk).unwrap();
    for m in [5, 100, 101] {
        assert_eq!(
            config.with_preselection(Some(m)),
            Err(Error::InvalidPreselection {
                m,
                k: 5,
                classes: 100
            })
        );
    }
    assert!(config.with_preselection(Some(6)).is_ok());
    // β must be a normal f32 (1e39 would be +inf, 1e-46 zero) and at most 1e8.
    for beta in [0.0, -1.0, f64::INFINITY, f64::NAN, 1e39, 2e8, 1e-46] {
        assert!(matches!(
            config.with_inverse_temperature(beta),
            Err(Error::InvalidInverseTemperature { .. })
        ));
    }
    let cauchy = config.with_relaxation(Relaxation::Cauchy).unwrap();
    assert!(cauchy.with_inverse_temperature(1e8).is_ok());
    assert!(cauchy.with_inverse_temperature(1.2e-38).is_ok());
    // λ above 3: (1e-10)^λ underflows f32 at a tie.
    for lambda in [-0.5, f64::NAN, 3.5, f64::INFINITY] {
        assert!(matches!(
            config.with_relaxation(Relaxation::LogisticPhi { lambda }),
            Err(Error::InvalidArtLambda { .. })
        ));
    }
    // λ = 3 at β = 1: the slope at a tie, 2.5e29, is fine; at β = 1e6 it is 2.5e35, too steep.
    assert!(config
        .with_relaxation(Relaxation::LogisticPhi { lambda: 3.0 })
        .is_ok());
    let steep = config.with_inverse_temperature(1e6).unwrap();
    assert_eq!(
        steep.with_relaxation(Relaxation::LogisticPhi { lambda: 3.0 }),
        Err(Error::TieSlopeTooSteep {
            beta: 1e6,
            lambda: 3.0
        })
    );
    let message = Error::TieSlopeTooSteep {
        beta: 1e6,
        lambda: 3.0,
    }
    .to_string();
    assert!(message.contains("beta = 1000000") && message.contains("lambda = 3"));
    assert_eq!(
        Method::from_name("sinkhorn_sort"),
        Err(Error::UnknownName { what: "method" })
    );
    assert_eq!(
        Method::from_name("bitonic__non_sparse"),
        Ok(Method::Bitonic)
    );
    assert!(Relaxation::from_name("none", 0.25).is_err());
    // Every name parser takes `-` for `_`, and nothing else in its place.
    assert_eq!(Method::from_name("odd-even"), Ok(Method::OddEven));
    assert_eq!(
        Relaxation::from_name("logistic-phi", 0.25),
        Ok(Relaxation::LogisticPhi { lambda: 0.25 })
    );
    assert!(Relaxation::from_name("logistic phi", 0.25).is_err());
    assert!(Method::from_name("odd_even_").is_err());
    for method in Method::ALL {
        assert_eq!(Method::from_name(method.name()), Ok(method));
    }
    // Messages name the value.
    let message = Error::LabelOutOfRange {
        row: 3,
        label: 12,
        classes: 10,
    }
    .to_string();
    assert!(
        message.contains("row 3") && message.contains("12"),
        "{message}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let config = TopkLossConfig::new(Method::OddEven, 4, &[0.5, 0.5]).unwrap();
    let loss = TopkLoss::new(config).unwrap();
    let logits = [0.1f32, 0.2, 0.3, 0.4, 1.0, f32::NAN, 0.0, 0.0];
    assert_eq!(
        loss.forward_backward(&logits, &[0, 1], None),
        Err(Error::NonFiniteInput { row: 1, column: 1 })
    );
    let logits = [0.1f32, 0.2, 0.3, 0.4, 1.0, 2.0, 0.0, f32::INFINITY];
    assert_eq!(
        loss.forward_backward(&logits, &[0, 1], None),
        Err(Error::NonFiniteInput { row: 1, column: 3 })
    );
    // Finite but beyond ±1e32 (differences near f32::MAX made NaN losses): named, in the
    // batch, the one-row and the operator paths alike; 1e32 itself is accepted.
    let logits = [0.1f32, 0.2, -3e38, 0.4, 1.0, 2.0, 0.0, 0.0];
    assert_eq!(
        loss.forward_backward(&logits, &[0, 1], None),
        Err(Error::LogitTooLarge { row: 0, column: 2 })
    );
    let logits = [0.1f32, 0.2, 1e32, -1e32, 1.0, 2.0, 0.0, 0.0];
    assert!(loss.forward_backward(&logits, &[0, 1], None).is_ok());
    // Rows long enough for the 8-wide check (f32 with AVX2): a bad value in a full block or in
    // the tail, in either row.
    let long =
        TopkLoss::new(TopkLossConfig::new(Method::SoftSort, 20, &[0.5, 0.5]).unwrap()).unwrap();
    for (column, value) in [
        (0, f32::NAN),
        (7, f32::NEG_INFINITY),
        (13, 2e32),
        (19, f32::NAN),
    ] {
        for row in 0..2 {
            let mut logits: Vec<f32> = (0..40).map(|i| i as f32 * 0.1).collect();
            logits[row * 20 + column] = value;
            let expected = if value.is_finite() {
                Error::LogitTooLarge { row, column }
            } else {
                Error::NonFiniteInput { row, column }
            };
            assert_eq!(long.forward_backward(&logits, &[0, 1], None), Err(expected));
        }
    }
    let edge: Vec<f32> = (0..40)
        .map(|i| if i % 3 == 0 { 1e32 } else { -1e32 })
        .collect();
    assert!(long.forward_backward(&edge, &[0, 1], None).is_ok());
    let (mut p, mut rows, mut top) = ([0f32; 3], [0f32; 3], [0u32; 1]);
    assert_eq!(
        difftopk_core::softsort::softsort_topk(
            &[1.0f32, 2e32, 0.0],
            1,
            1.0,
            &mut p,
            &mut rows,
            &mut top
        ),
        Err(Error::LogitTooLarge { row: 0, column: 1 })
    );
    let message = Error::LogitTooLarge { row: 4, column: 7 }.to_string();
    assert!(
        message.contains("row 4, column 7") && message.contains("1e32"),
        "{message}"
    );
    let logits = [0.1f32, 0.2, 0.3, 0.4, 1.0, 2.0, 0.0, 0.0];
    assert_eq!(
        loss.forward_backward(&logits, &[0, 4], None),
        Err(Error::LabelOutOfRange {
            row: 1,
            label: 4,
            classes: 4
        })
    );
    assert!(matches!(
        loss.forward_backward(&logits[..7], &[0, 1], None),
        Err(Error::LengthMismatch { what: "logits", .. })
    ));
    let mut short = [0f32; 7];
    assert!(matches!(
        loss.forward_backward(&logits, &[0, 1], Some(&mut short)),
        Err(Error::LengthMismatch {
            what: "gradient",
            ..
        })
    ));
    assert_eq!(
        loss.forward_backward::<f32>(&[], &[], None),
        Err(Error::Empty {
            what: "batch rows (labels)"
        })
    );
    // Too little scratch, wrong network.
    let network = SortingNetwork::odd_even(4).unwrap();
    let mut reals = [0f32; 3];
    let mut indices = [0u32; 4];
    assert!(matches!(
        sample_loss(
            &config,
            Some(&network.as_ref()),
            0,
            &logits[..4],
            0,
            None,
            1.0,
            Scratch {
                reals: &mut reals,
                indices: &mut indices
            }
        ),
        Err(Error::ScratchTooSmall { what: "reals", .. })
    ));
    let wrong = SortingNetwork::odd_even(5).unwrap();
    let mut reals = [0f32; 1000];
    assert!(matches!(
        sample_loss(
            &config,
            Some(&wrong.as_ref()),
            0,
            &logits[..4],
            0,
            None,
            1.0,
            Scratch {
                reals: &mut reals,
                indices: &mut indices
            }
        ),
        Err(Error::NetworkSizeMismatch {
            network: 5,
            inputs: 4
        })
    ));
    // A network method run without its network says so (it reported a network of 0 wires).
    let missing = sample_loss(
        &config,
        None,
        0,
        &logits[..4],
        0,
        None,
        1.0,
        Scratch {
            reals: &mut reals,
            indices: &mut indices,
        },
    )
    .unwrap_err();
    assert_eq!(
        missing,
        Error::MissingNetwork {
            method: config.method(),
            inputs: 4
        }
    );
    assert!(
        missing.to_string().contains("needs a sorting network"),
        "{missing}"
    );
}

/// With m, the batch path checks the range inside the selection's pass over the row (f32 with
/// AVX2): the same errors, naming the same entry, for short rows (one pass) and long rows (the
/// group-maxima pass), in full blocks and in the tail, at the label too, in either group of 8
/// rows; with and without a gradient; ±1e32 itself accepted.
#[test]
fn preselected_rows_are_checked_in_the_selection_pass() {
    for (classes, method) in [
        (101usize, Method::SoftSort),
        (1003, Method::NeuralSort),
        (1003, Method::SplitterSelection),
    ] {
        let config = TopkLossConfig::new(method, classes, &[0.5, 0.0, 0.0, 0.0, 0.5])
            .unwrap()
            .with_preselection(Some(16))
            .unwrap();
        let loss = TopkLoss::new(config).unwrap();
        let rows = 10;
        let labels: Vec<usize> = (0..rows).map(|row| (row * 37) % classes).collect();
        let fresh = || -> Vec<f32> {
            (0..rows * classes)
                .map(|i| ((i * 7919) % 1009) as f32 * 0.01 - 5.0)
                .collect()
        };
        let mut gradient = vec![0f32; rows * classes];
        assert!(loss.forward_backward(&fresh(), &labels, None).is_ok());
        let bad_values = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            2e32,
            -2e32,
            1.5e38,
            f32::NAN,
        ];
        // (At n = 1003 column 970 lies in the group-maxima pass's last, partial round of
        // blocks.)
        let columns = [
            0,
            5,
            8,
            classes / 2,
            970 % classes,
            classes - 3,
            classes - 1,
        ];
        for (case, (&value, &column)) in bad_values.iter().zip(&columns).enumerate() {
            for row in [0, 3, 9] {
                let mut logits = fresh();
                logits[row * classes + column] = value;
                let expected = if value.is_finite() {
                    Error::LogitTooLarge { row, column }
                } else {
                    Error::NonFiniteInput { row, column }
                };
                assert_eq!(
                    loss.forward_backward(&logits, &labels, None),
                    Err(expected),
                    "n = {classes}, case {case}, row {row}"
                );
                assert_eq!(
                    loss.forward_backward(&logits, &labels, Some(&mut gradient)),
                    Err(expected),
                    "n = {classes}, case {case}, row {row}, with a gradient"
                );
            }
        }
        // At the label itself.
        let mut logits = fresh();
        logits[3 * classes + labels[3]] = f32::NAN;
        assert_eq!(
            loss.forward_backward(&logits, &labels, Some(&mut gradient)),
            Err(Error::NonFiniteInput {
                row: 3,
                column: labels[3]
            })
        );
        // The edges of the range, everywhere.
        let edge: Vec<f32> = (0..rows * classes)
            .map(|i| if i % 3 == 0 { 1e32 } else { -1e32 })
            .collect();
        let value = loss
            .forward_backward(&edge, &labels, Some(&mut gradient))
            .unwrap();
        assert!(value.is_finite() && gradient.iter().all(|g| g.is_finite()));
    }
}

#[test]
fn networks_reject_bad_sizes_and_wiring() {
    assert!(SortingNetwork::odd_even(0).is_err());
    assert!(SortingNetwork::bitonic(0).is_err());
    assert!(SortingNetwork::splitter_selection(5, 6).is_err());
    assert!(SortingNetwork::splitter_selection(5, 0).is_err());
    // A network of no wires is refused like the builders refuse it (it made the operators panic).
    assert_eq!(
        difftopk_core::NetworkRef::new(0, &[], &[]).err(),
        Some(Error::InvalidNetworkSize { inputs: 0, k: 0 })
    );
    assert!(SortingNetwork::from_layers::<[difftopk_core::Comparator; 0]>(0, &[]).is_err());
    // The batch cross-entropy names an empty batch or class count.
    let error = difftopk_core::softmax_cross_entropy::<f32>(&[], &[], 3, None).unwrap_err();
    assert!(error.to_string().contains("labels"), "{error}");
    let error = difftopk_core::softmax_cross_entropy::<f32>(&[], &[0], 0, None).unwrap_err();
    assert!(error.to_string().contains("classes"), "{error}");
    use difftopk_core::Comparator;
    let bad = [Comparator {
        wire_a: 0,
        wire_b: 1,
        out_min: 0,
        out_max: 2,
    }];
    assert_eq!(
        SortingNetwork::from_layers(3, &[&bad[..]]),
        Err(Error::InvalidNetwork { comparator: 0 })
    );
    let out_of_range = [Comparator::ascending(0, 3)];
    assert!(SortingNetwork::from_layers(3, &[&out_of_range[..]]).is_err());
}

/// The one-row operators check their arguments and return errors instead of panicking.
#[test]
fn one_row_operators_return_errors() {
    use difftopk_core::{neuralsort, select, softmax, softsort};
    let scores = [0.3f32, -1.0, 2.0];
    let (mut p, mut rows, mut c, mut order) = ([0f32; 6], [0f32; 6], [0f32; 3], [0u32; 3]);
    assert_eq!(
        neuralsort::neuralsort_topk(&scores, 0, 1.0, &mut [], &mut [], &mut c, &mut order),
        Err(Error::TopkLargerThanInputs { k: 0, inputs: 3 })
    );
    assert_eq!(
        neuralsort::neuralsort_topk(&[] as &[f32], 1, 1.0, &mut p, &mut rows, &mut c, &mut order),
        Err(Error::TopkLargerThanInputs { k: 1, inputs: 0 })
    );
    assert!(matches!(
        neuralsort::neuralsort_topk(&scores, 2, 1.0, &mut p[..5], &mut rows, &mut c, &mut order),
        Err(Error::LengthMismatch { what: "p_topk", .. })
    ));
    assert!(matches!(
        neuralsort::neuralsort_topk(&scores, 2, 1.0, &mut p, &mut rows[..5], &mut c, &mut order),
        Err(Error::ScratchTooSmall {
            what: "rows_scratch",
            ..
        })
    ));
    assert!(matches!(
        neuralsort::neuralsort_topk(
            &scores,
            2,
            f32::INFINITY,
            &mut p,
            &mut rows,
            &mut c,
            &mut order
        ),
        Err(Error::InvalidInverseTemperature { .. })
    ));
    assert_eq!(
        neuralsort::neuralsort_topk(
            &[1.0, f32::NAN],
            1,
            1.0,
            &mut p[..2],
            &mut rows,
            &mut c,
            &mut order
        ),
        Err(Error::NonFiniteInput { row: 0, column: 1 })
    );
    assert!(
        neuralsort::neuralsort_topk(&scores, 2, 1.0, &mut p, &mut rows, &mut c, &mut order).is_ok()
    );
    let mut top = [0u32; 2];
    assert_eq!(
        softsort::softsort_topk(&scores, 4, 1.0, &mut p, &mut rows, &mut top),
        Err(Error::TopkLargerThanInputs { k: 4, inputs: 3 })
    );
    assert!(matches!(
        softsort::softsort_topk(&scores, 2, 1.0, &mut p, &mut rows, &mut top[..1]),
        Err(Error::ScratchTooSmall { what: "top", .. })
    ));
    let (mut gradient, mut adjoint) = ([0f32; 3], [0f32; 6]);
    let upstream = [1f32; 6];
    assert!(matches!(
        softsort::softsort_topk_backward(
            &scores,
            2,
            1.0,
            &p,
            &upstream[..4],
            &mut gradient,
            &mut rows,
            &mut adjoint,
            &mut top
        ),
        Err(Error::LengthMismatch {
            what: "grad_p_topk",
            ..
        })
    ));
    assert!(matches!(
        neuralsort::neuralsort_topk_backward(
            &scores,
            2,
            1.0,
            &p,
            &upstream,
            &mut gradient[..2],
            &mut rows,
            &mut adjoint,
            &mut c,
            &mut order
        ),
        Err(Error::LengthMismatch {
            what: "gradient",
            ..
        })
    ));
    assert!(softmax::softmax_in_place(&mut [] as &mut [f32]).is_err());
    assert!(matches!(
        softmax::softmax(&[1.0f32, 2.0], &mut [0.0; 3]),
        Err(Error::LengthMismatch { what: "out", .. })
    ));
    assert!(softmax::softmax_backward(&[0.5f32, 0.5], &mut [1.0]).is_err());
    assert_eq!(
        softmax::softmax_in_place(&mut [0.0f32, 0.0]).unwrap(),
        (0.0, 2.0)
    );
    assert_eq!(
        select::largest_indices(&[] as &[f32], None, &mut [0]),
        Err(Error::TopkLargerThanInputs { k: 1, inputs: 0 })
    );
    assert_eq!(
        select::largest_indices(&[1.0f32, 2.0], Some(0), &mut [0, 0]),
        Err(Error::TopkLargerThanInputs { k: 2, inputs: 1 })
    );
    let mut out = [0u32; 2];
    select::largest_indices(&[1.0f32, 2.0, 0.5], Some(7), &mut out).unwrap();
    assert_eq!(out, [1, 0]);
    assert!(Error::TopkLargerThanInputs { k: 0, inputs: 3 }
        .to_string()
        .contains("at least one"));
}

//! Every golden `loss_cases` record through the dfdx API (`topk_cross_entropy` on a traced tensor,
//! then `backward()`), float32 and float64, with run-time shapes: the loss and the gradient dfdx
//! returns equal the core's bit for bit, and hence meet the reference tolerances of
//! `golden_loss.rs`.

mod common;
use common::*;
use difftopk_autodiff::dfdx::prelude::*;
use difftopk_autodiff::topk_cross_entropy;
use difftopk_core::TopkLoss;

fn through_dfdx<E>(
    loss: &TopkLoss,
    logits: &[f64],
    labels: &[usize],
    classes: usize,
) -> (f64, Vec<f64>, f64, Vec<f64>)
where
    E: difftopk_autodiff::Element + Into<f64>,
    Cpu: Device<E>,
{
    let device = Cpu::default();
    let values: Vec<E> = logits.iter().map(|&x| E::of(x)).collect();
    let batch = labels.len();
    let tensor = device.tensor_from_vec(values.clone(), (batch, classes));
    let output = topk_cross_entropy(tensor.leaky_trace(), labels, loss).unwrap();
    let value: f64 = output.array().into();
    let gradients = output.backward();
    let gradient: Vec<f64> = gradients
        .get(&tensor)
        .as_vec()
        .into_iter()
        .map(Into::into)
        .collect();
    let mut core_gradient = vec![E::zero(); values.len()];
    let core_value: f64 = loss
        .forward_backward(&values, labels, Some(&mut core_gradient))
        .unwrap()
        .into();
    (
        value,
        gradient,
        core_value,
        core_gradient.into_iter().map(Into::into).collect(),
    )
}

#[test]
fn every_loss_case_through_dfdx_matches_core_and_reference() {
    let mut compared = 0;
    for case in golden()["loss_cases"].as_array().unwrap() {
        let (logits, labels, classes) = inputs(case["input"].as_str().unwrap());
        let loss = TopkLoss::new(config_of(case, classes)).unwrap();
        let float32 = case["dtype"] == "float32";
        let (value, gradient, core_value, core_gradient) = if float32 {
            through_dfdx::<f32>(&loss, &logits, &labels, classes)
        } else {
            through_dfdx::<f64>(&loss, &logits, &labels, classes)
        };
        assert_eq!(
            value.to_bits(),
            core_value.to_bits(),
            "{}: loss",
            case["id"]
        );
        assert_eq!(gradient, core_gradient, "{}: gradient", case["id"]);
        let (rel, abs) = if float32 { (1e-4, 1e-7) } else { (1e-9, 1e-12) };
        assert!(
            close(&[value], &[case["loss"].as_f64().unwrap()], rel, abs),
            "{}: loss vs reference",
            case["id"]
        );
        assert!(
            close(&gradient, &flat(&case["grad"]), rel, abs),
            "{}: gradient vs reference",
            case["id"]
        );
        compared += 1;
    }
    println!("compared {compared} loss cases through dfdx");
    assert!(compared >= 822, "only {compared} cases");
}

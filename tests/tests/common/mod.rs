//! Shared helpers: loading the golden file and comparing numbers.
#![allow(dead_code)]

use difftopk_core::{Method, Relaxation, Top1Mode, TopkLossConfig};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The golden file: `$DIFFTOPK_GOLDEN` when set, else the copy committed in `tests/golden/`.
pub fn golden_path() -> PathBuf {
    match std::env::var_os("DIFFTOPK_GOLDEN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/difftopk_golden.json"),
    }
}

/// The parsed golden file (parsed once per test binary).
pub fn golden() -> &'static Value {
    static GOLDEN: OnceLock<Value> = OnceLock::new();
    GOLDEN.get_or_init(|| {
        let path = golden_path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read golden file {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("golden file {} is not JSON: {e}", path.display()))
    })
}

/// A named input set of the golden file: row-major logits (float64), labels, classes.
pub fn inputs(name: &str) -> (Vec<f64>, Vec<usize>, usize) {
    let input = &golden()["inputs"][name];
    let rows = matrix(&input["logits"]);
    let classes = rows[0].len();
    let labels = input["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap() as usize)
        .collect();
    (rows.concat(), labels, classes)
}

pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

pub fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().expect("array").iter().map(f64s).collect()
}

/// Flattens a nested array of numbers in row-major order.
pub fn flatten(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| flatten(x, out)),
        Value::Number(x) => out.push(x.as_f64().unwrap()),
        other => panic!("not a number: {other}"),
    }
}

pub fn flat(v: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    flatten(v, &mut out);
    out
}

/// Worst error of `actual` against `expected`, measured as
/// max |a − e| / max(max |e|, tiny): relative to the largest reference magnitude.
pub fn relative_error(actual: &[f64], expected: &[f64]) -> f64 {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let scale = expected.iter().fold(0.0f64, |m, &e| m.max(e.abs()));
    let worst = actual
        .iter()
        .zip(expected)
        .fold(0.0f64, |m, (&a, &e)| m.max((a - e).abs()));
    if worst == 0.0 {
        0.0
    } else if scale < 1e-300 {
        f64::INFINITY
    } else {
        worst / scale
    }
}

/// The entrywise measure: `max_i |a_i − e_i| / (rel·|e_i| + floor(i))`, at most 1 where every
/// entry is within `rel` of its reference value or within its floor of it.
pub fn entrywise_ratio(
    actual: &[f64],
    expected: &[f64],
    rel: f64,
    floor: impl Fn(usize) -> f64,
) -> f64 {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    actual
        .iter()
        .zip(expected)
        .enumerate()
        .map(|(i, (&a, &e))| (a - e).abs() / (rel * e.abs() + floor(i)))
        .fold(0.0f64, f64::max)
}

/// Passes when `|a − e| ≤ abs` or the relative error is within `rel`.
pub fn close(actual: &[f64], expected: &[f64], rel: f64, abs: f64) -> bool {
    let max_abs = actual
        .iter()
        .zip(expected)
        .fold(0.0f64, |m, (&a, &e)| m.max((a - e).abs()));
    max_abs <= abs || relative_error(actual, expected) <= rel
}

/// The loss configuration of a golden `loss_cases` record on `classes` classes.
pub fn config_of(case: &Value, classes: usize) -> TopkLossConfig {
    let method = Method::from_name(case["method"].as_str().unwrap()).unwrap();
    let p_k = f64s(&case["p_k"]);
    let mut config = TopkLossConfig::new(method, classes, &p_k).unwrap();
    if let Some(d) = case["distribution"].as_str() {
        let lambda = case["art_lambda"].as_f64().unwrap();
        config = config
            .with_relaxation(Relaxation::from_name(d, lambda).unwrap())
            .unwrap();
    }
    config = config
        .with_inverse_temperature(case["inverse_temperature"].as_f64().unwrap())
        .unwrap()
        .with_preselection(case["m"].as_u64().map(|m| m as usize))
        .unwrap()
        .with_top1_mode(Top1Mode::from_name(case["top1_mode"].as_str().unwrap()).unwrap());
    config
}

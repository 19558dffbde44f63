//! Network constructions against the reference: every comparator of every layer of the
//! `networks` records (order inside a layer is free), and the layer/comparator counts of
//! `network_sizes` (including n = 1000).

mod common;
use common::*;
use difftopk_core::SortingNetwork;
use serde_json::Value;

fn build(record: &Value) -> SortingNetwork {
    let n = record["n"].as_u64().unwrap() as usize;
    match record["type"].as_str().unwrap() {
        "odd_even" => SortingNetwork::odd_even(n).unwrap(),
        "bitonic" => SortingNetwork::bitonic(n).unwrap(),
        "splitter_selection" => {
            SortingNetwork::splitter_selection(n, record["k"].as_u64().unwrap() as usize).unwrap()
        }
        other => panic!("unknown network type {other}"),
    }
}

#[test]
fn layers_equal_the_reference_comparators() {
    let records = golden()["networks"].as_array().unwrap();
    let mut compared = 0;
    for record in records {
        let network = build(record);
        let layers = record["layers"].as_array().unwrap();
        assert_eq!(network.num_layers(), layers.len(), "{record:?} layer count");
        for (l, expected) in layers.iter().enumerate() {
            let mut expected: Vec<[u32; 4]> = expected
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let v: Vec<u32> = c
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_u64().unwrap() as u32)
                        .collect();
                    [v[0], v[1], v[2], v[3]]
                })
                .collect();
            let mut actual: Vec<[u32; 4]> = network.layer(l).iter().map(|c| c.to_array()).collect();
            expected.sort();
            actual.sort();
            assert_eq!(
                actual, expected,
                "{} n={} k={:?} layer {l}",
                record["type"], record["n"], record["k"]
            );
        }
        compared += 1;
    }
    println!("compared {compared} networks layer by layer");
    assert!(compared > 0);
}

#[test]
fn sizes_equal_the_reference_table() {
    let records = golden()["network_sizes"].as_array().unwrap();
    let mut compared = 0;
    for record in records {
        let network = build(record);
        assert_eq!(
            (network.num_layers(), network.num_comparators()),
            (
                record["num_layers"].as_u64().unwrap() as usize,
                record["num_comparators"].as_u64().unwrap() as usize
            ),
            "{record}"
        );
        compared += 1;
    }
    println!("compared {compared} network sizes");
    assert!(compared > 0);
}

/// Spec section 2.3's table of small splitter-selection sizes.
#[test]
fn small_splitter_sizes_equal_the_spec() {
    for (n, k, layers, comparators) in [
        (5, 5, 7, 9),
        (8, 2, 5, 14),
        (10, 4, 8, 25),
        (10, 5, 9, 28),
        (16, 4, 8, 45),
        (16, 8, 13, 63),
    ] {
        let network = SortingNetwork::splitter_selection(n, k).unwrap();
        assert_eq!(
            (network.num_layers(), network.num_comparators()),
            (layers, comparators),
            "n={n} k={k}"
        );
    }
}

use difftopk_core::*;
fn main() {
    let (b, n) = (500usize, 77usize);
    let mut s = 1u64;
    let logits: Vec<f32> = (0..b * n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    let labels: Vec<usize> = (0..b).map(|i| i * 7 % n).collect();
    let mut g = vec![0f32; b * n];
    let c = TopkLossConfig::new(Method::SplitterSelection, n, &[0.5, 0., 0., 0., 0.5])
        .unwrap()
        .with_relaxation(Relaxation::LogisticPhi { lambda: 0.5 })
        .unwrap()
        .with_preselection(Some(16))
        .unwrap();
    let l = TopkLoss::new(c).unwrap();
    for _ in 0..20 {
        l.forward_backward(&logits, &labels, Some(&mut g)).unwrap();
    }
}

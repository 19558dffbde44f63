//! A small SVG chart of training loss and top-k accuracy per epoch (no plotting dependency).

use std::fmt::Write;

/// One line of a panel.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Value per epoch (1-based epochs on the x axis).
    pub values: Vec<f64>,
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One panel at horizontal offset `left`, `width` × `height` pixels.
fn panel(svg: &mut String, left: f64, width: f64, height: f64, title: &str, series: &[Series]) {
    let (margin_left, margin_right, margin_top, margin_bottom) = (60.0, 15.0, 30.0, 40.0);
    let (x0, x1) = (left + margin_left, left + width - margin_right);
    let (y0, y1) = (height - margin_bottom, margin_top);
    let epochs = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let finite = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite());
    let (mut low, mut high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !low.is_finite() {
        (low, high) = (0.0, 1.0);
    }
    if high - low < 1e-12 {
        high = low + 1.0;
    }
    let pad = 0.05 * (high - low);
    let (low, high) = (low - pad, high + pad);
    let x_of = |epoch: usize| {
        if epochs == 1 {
            (x0 + x1) / 2.0
        } else {
            x0 + (x1 - x0) * (epoch - 1) as f64 / (epochs - 1) as f64
        }
    };
    let y_of = |v: f64| y0 - (y0 - y1) * (v - low) / (high - low);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="18" font-size="14" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{x0:.1}" y="{y1:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#888"/>"##,
        x1 - x0,
        y0 - y1
    );
    for tick in 0..=4 {
        let v = low + (high - low) * tick as f64 / 4.0;
        let y = y_of(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0:.1}" x2="{x1:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{v:.4}</text>"##,
            x0 - 4.0,
            y + 4.0
        );
    }
    let step = epochs.div_ceil(10).max(1);
    for epoch in (1..=epochs).step_by(step) {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{epoch}</text>"#,
            x_of(epoch),
            y0 + 15.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">epoch</text>"#,
        (x0 + x1) / 2.0,
        y0 + 32.0
    );
    for (index, s) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(e, &v)| format!("{:.1},{:.1}", x_of(e + 1), y_of(v)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let legend_y = y1 + 14.0 + 14.0 * index as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            x0 + 8.0,
            x0 + 24.0,
            legend_y - 4.0,
            legend_y - 4.0,
            x0 + 28.0,
            legend_y,
            escape(&s.label)
        );
    }
}

/// The SVG document: training loss on the left, accuracies on the right.
pub fn chart(title: &str, loss: &[Series], accuracy: &[Series]) -> String {
    let (width, height) = (960.0, 400.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><title>{}</title>"#,
        escape(title)
    );
    panel(&mut svg, 0.0, width / 2.0, height, "training loss", loss);
    panel(
        &mut svg,
        width / 2.0,
        width / 2.0,
        height,
        "top-k accuracy",
        accuracy,
    );
    svg.push_str("</svg>\n");
    svg
}

//! Charts of training loss and top-k accuracy per epoch, as SVG or PNG, without a plotting
//! dependency: the layout produces a list of [`Shape`]s once, and each format renders them.

mod font;
mod png;

/// One line of a panel.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Value per epoch (1-based epochs on the x axis).
    pub values: Vec<f64>,
}

/// An RGB colour.
pub type Colour = [u8; 3];

const COLOURS: [Colour; 8] = [
    [0x1f, 0x77, 0xb4],
    [0xd6, 0x27, 0x28],
    [0x2c, 0xa0, 0x2c],
    [0xff, 0x7f, 0x0e],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x17, 0xbe, 0xcf],
];
const GRID: Colour = [0xee, 0xee, 0xee];
const FRAME: Colour = [0x88, 0x88, 0x88];
const INK: Colour = [0x22, 0x22, 0x22];

/// Text anchoring.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Text starts at x.
    Start,
    /// Text is centred on x.
    Middle,
    /// Text ends at x.
    End,
}

/// What a chart is made of (pixel coordinates, y downwards).
pub enum Shape {
    /// A straight line.
    Line {
        from: (f64, f64),
        to: (f64, f64),
        colour: Colour,
        width: f64,
    },
    /// Connected points.
    Polyline {
        points: Vec<(f64, f64)>,
        colour: Colour,
        width: f64,
    },
    /// Text with its baseline at y.
    Text {
        at: (f64, f64),
        text: String,
        size: f64,
        anchor: Anchor,
        colour: Colour,
    },
}

/// Chart size in pixels.
pub const WIDTH: usize = 960;
/// Chart height in pixels.
pub const HEIGHT: usize = 400;

fn panel(shapes: &mut Vec<Shape>, left: f64, title: &str, series: &[Series]) {
    let (width, height) = (WIDTH as f64 / 2.0, HEIGHT as f64);
    let (x0, x1) = (left + 70.0, left + width - 15.0);
    let (y0, y1) = (height - 45.0, 32.0);
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
    shapes.push(Shape::Text {
        at: ((x0 + x1) / 2.0, 20.0),
        text: title.into(),
        size: 14.0,
        anchor: Anchor::Middle,
        colour: INK,
    });
    for tick in 0..=4 {
        let v = low + (high - low) * tick as f64 / 4.0;
        let y = y_of(v);
        shapes.push(Shape::Line {
            from: (x0, y),
            to: (x1, y),
            colour: GRID,
            width: 1.0,
        });
        shapes.push(Shape::Text {
            at: (x0 - 5.0, y + 4.0),
            text: format!("{v:.4}"),
            size: 11.0,
            anchor: Anchor::End,
            colour: INK,
        });
    }
    for (from, to) in [
        ((x0, y0), (x1, y0)),
        ((x1, y0), (x1, y1)),
        ((x1, y1), (x0, y1)),
        ((x0, y1), (x0, y0)),
    ] {
        shapes.push(Shape::Line {
            from,
            to,
            colour: FRAME,
            width: 1.0,
        });
    }
    let step = epochs.div_ceil(10).max(1);
    for epoch in (1..=epochs).step_by(step) {
        shapes.push(Shape::Text {
            at: (x_of(epoch), y0 + 16.0),
            text: epoch.to_string(),
            size: 11.0,
            anchor: Anchor::Middle,
            colour: INK,
        });
    }
    shapes.push(Shape::Text {
        at: ((x0 + x1) / 2.0, y0 + 34.0),
        text: "epoch".into(),
        size: 12.0,
        anchor: Anchor::Middle,
        colour: INK,
    });
    // The legend goes in the corner the curves cross least.
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| {
            s.values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(e, &v)| (x_of(e + 1), y_of(v)))
                .collect::<Vec<_>>()
        })
        .collect();
    let longest = series
        .iter()
        .map(|s| s.label.chars().count())
        .max()
        .unwrap_or(0) as f64;
    let (box_width, box_height) = (40.0 + 6.0 * longest, 8.0 + 15.0 * series.len() as f64);
    let corners = [
        (x1 - box_width, y1),
        (x1 - box_width, y0 - box_height),
        (x0, y1),
        (x0, y0 - box_height),
    ];
    let crossings = |&(left, top): &(f64, f64)| {
        points
            .iter()
            .filter(|(x, y)| {
                *x >= left - 10.0
                    && *x <= left + box_width + 10.0
                    && *y >= top
                    && *y <= top + box_height
            })
            .count()
    };
    let (legend_x, legend_top) = corners
        .iter()
        .min_by_key(|corner| crossings(corner))
        .copied()
        .unwrap_or(corners[0]);
    for (index, s) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(e, &v)| (x_of(e + 1), y_of(v)))
            .collect::<Vec<_>>();
        // A lone point (a one-epoch run) draws no line: mark it with a small cross.
        if let [(x, y)] = points[..] {
            for (dx, dy) in [(4.0, 4.0), (4.0, -4.0)] {
                shapes.push(Shape::Line {
                    from: (x - dx, y - dy),
                    to: (x + dx, y + dy),
                    colour,
                    width: 2.0,
                });
            }
        }
        shapes.push(Shape::Polyline {
            points,
            colour,
            width: 2.0,
        });
        let legend_y = legend_top + 16.0 + 15.0 * index as f64;
        shapes.push(Shape::Line {
            from: (legend_x + 8.0, legend_y - 4.0),
            to: (legend_x + 26.0, legend_y - 4.0),
            colour,
            width: 2.0,
        });
        shapes.push(Shape::Text {
            at: (legend_x + 31.0, legend_y),
            text: s.label.clone(),
            size: 11.0,
            anchor: Anchor::Start,
            colour: INK,
        });
    }
}

/// The chart's shapes: training loss on the left, accuracies on the right.
pub fn layout(loss: &[Series], accuracy: &[Series]) -> Vec<Shape> {
    let mut shapes = Vec::new();
    panel(&mut shapes, 0.0, "training loss", loss);
    panel(&mut shapes, WIDTH as f64 / 2.0, "top-k accuracy", accuracy);
    shapes
}

fn hex(colour: Colour) -> String {
    format!("#{:02x}{:02x}{:02x}", colour[0], colour[1], colour[2])
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The shapes as an SVG document.
pub fn svg(title: &str, shapes: &[Shape]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><title>{}</title>"#,
        escape(title)
    );
    for shape in shapes {
        let _ = match shape {
            Shape::Line {
                from,
                to,
                colour,
                width,
            } => writeln!(
                out,
                r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="{width}"/>"#,
                from.0,
                from.1,
                to.0,
                to.1,
                hex(*colour)
            ),
            Shape::Polyline {
                points,
                colour,
                width,
            } => {
                let list: Vec<String> = points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                writeln!(
                    out,
                    r#"<polyline fill="none" stroke="{}" stroke-width="{width}" points="{}"/>"#,
                    hex(*colour),
                    list.join(" ")
                )
            }
            Shape::Text {
                at,
                text,
                size,
                anchor,
                colour,
            } => {
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                writeln!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" font-size="{size}" text-anchor="{anchor}" fill="{}">{}</text>"#,
                    at.0,
                    at.1,
                    hex(*colour),
                    escape(text)
                )
            }
        };
    }
    out.push_str("</svg>\n");
    out
}

/// The shapes rasterised to a PNG file's bytes (text in a built-in 5 × 7 pixel font).
pub fn png(shapes: &[Shape]) -> Vec<u8> {
    let mut canvas = png::Canvas::new(WIDTH, HEIGHT);
    for shape in shapes {
        match shape {
            Shape::Line {
                from,
                to,
                colour,
                width,
            } => canvas.line(*from, *to, *colour, *width),
            Shape::Polyline {
                points,
                colour,
                width,
            } => {
                for pair in points.windows(2) {
                    canvas.line(pair[0], pair[1], *colour, *width);
                }
            }
            Shape::Text {
                at,
                text,
                size,
                anchor,
                colour,
            } => {
                let scale = if *size >= 13.0 { 2 } else { 1 };
                let text_width = font::width(text, scale) as f64;
                let x = match anchor {
                    Anchor::Start => at.0,
                    Anchor::Middle => at.0 - text_width / 2.0,
                    Anchor::End => at.0 - text_width,
                };
                font::draw(
                    &mut canvas,
                    text,
                    x.round() as i64,
                    at.1.round() as i64,
                    scale,
                    *colour,
                );
            }
        }
    }
    canvas.encode()
}

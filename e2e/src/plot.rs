//! Throughput-over-time charts as plain SVG: one panel per series, stacked, sharing the time
//! axis, with shaded intervals (a link cut). Hand-written: a few elements, no dependency.

use std::fmt::Write as _;

/// One panel's line.
#[derive(Clone, Debug)]
pub struct Series {
    pub title: String,
    /// A second line under the title (why the line looks as it does), in red.
    pub note: Option<String>,
    pub unit: String,
    /// (seconds since the start, value) in time order.
    pub points: Vec<(f64, f64)>,
}

/// A shaded time interval with a label.
#[derive(Clone, Debug)]
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

const WIDTH: f64 = 860.0;
const PANEL: f64 = 120.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
/// Room above the first panel: the chart's title, then the bands' labels.
const TOP: f64 = 58.0;
/// Baseline of the bands' labels, between the chart's title and the first panel's title (a
/// label inside a panel would sit on its line).
const BAND_LABEL: f64 = 44.0;
/// Between panels: the time ticks, the next title and its note line.
const GAP: f64 = 48.0;

/// The chart as an SVG document.
pub fn svg(title: &str, series: &[Series], bands: &[Band], duration: f64) -> String {
    let height = TOP + series.len() as f64 * (PANEL + GAP) + 20.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + (t / duration.max(1e-9)).clamp(0.0, 1.0) * plot_w;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/><text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"##,
        escape(title)
    );
    for b in bands {
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="#f4cccc" stroke="#990000" stroke-width="0.5"/><text x="{:.1}" y="{BAND_LABEL}" fill="#990000">{}</text>"##,
            x(b.from),
            BAND_LABEL - 8.0,
            x(b.from) + 11.0,
            escape(&b.label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP) + 14.0;
        let bottom = top + PANEL;
        let max = s.points.iter().map(|p| p.1).fold(0.0f64, f64::max);
        let ymax = nice(max);
        let y = |v: f64| bottom - (v / ymax) * PANEL;
        let title_y = if s.note.is_some() {
            top - 19.0
        } else {
            top - 5.0
        };
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{title_y:.1}" font-weight="bold">{}</text>"##,
            escape(&s.title)
        );
        if let Some(note) = &s.note {
            let _ = writeln!(
                out,
                r##"<text x="{LEFT}" y="{:.1}" fill="#990000">{}</text>"##,
                top - 5.0,
                escape(note)
            );
        }
        for b in bands {
            let _ = writeln!(
                out,
                r##"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{PANEL}" fill="#f4cccc"/>"##,
                x(b.from),
                (x(b.to) - x(b.from)).max(1.0)
            );
        }
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top:.1}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
        );
        for frac in [0.0, 0.5, 1.0] {
            let v = ymax * frac;
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{} {}</text><line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                LEFT - 6.0,
                y(v) + 4.0,
                short(v),
                escape(&s.unit),
                LEFT + plot_w,
                y(v),
                y(v)
            );
        }
        let mut path = String::new();
        for (t, v) in &s.points {
            let _ = write!(path, "{:.1},{:.1} ", x(*t), y(*v));
        }
        let _ = writeln!(
            out,
            r##"<polyline points="{}" fill="none" stroke="#1f5fa8" stroke-width="1.6"/>"##,
            path.trim_end()
        );
        // Time ticks under every panel.
        let step = tick_step(duration);
        let mut t = 0.0;
        while t <= duration + 1e-9 {
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">{t:.0} s</text>"##,
                x(t),
                bottom + 14.0
            );
            t += step;
        }
    }
    out.push_str("</svg>\n");
    out
}

/// A round axis maximum at or above `v` (1, 2 or 5 times a power of ten).
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn tick_step(duration: f64) -> f64 {
    [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0]
        .into_iter()
        .find(|s| duration / s <= 12.0)
        .unwrap_or(120.0)
}

fn short(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_one_line_per_series_and_the_band() {
        let s = Series {
            title: "pos → payments <encrypt>".into(),
            note: Some("broadband only".into()),
            unit: "Mbit/s".into(),
            points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 0.0)],
        };
        let doc = svg(
            "demo",
            &[s.clone(), s],
            &[Band {
                from: 0.5,
                to: 1.5,
                label: "cut".into(),
            }],
            2.0,
        );
        assert!(doc.starts_with("<svg"));
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert!(doc.contains("&lt;encrypt&gt;"));
        assert_eq!(doc.matches(">broadband only<").count(), 2);
        assert!(doc.contains(">cut<"));
        // The band's label sits above the first panel, not on a line.
        let label_y: f64 = doc
            .split(">cut<")
            .next()
            .and_then(|before| before.rsplit("y=\"").next())
            .and_then(|v| v.split('"').next())
            .and_then(|v| v.parse().ok())
            .expect("the label's y");
        assert!(label_y < TOP, "{label_y}");
    }

    #[test]
    fn axes_round_up() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(3.2), 5.0);
        assert_eq!(nice(19.0), 20.0);
        assert_eq!(nice(0.07), 0.1);
    }
}

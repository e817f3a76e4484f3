//! The messages/s chart: the rate history drawn as SVG paths on the server. Pure: numbers in,
//! path data and labels out; the template draws the frame. Time runs left to right over the
//! window ending now; the scale's top is a round number at or above the highest rate.

use chrono::{DateTime, Utc};

use super::rates::Rate;

/// The drawing's size in SVG units, and the margins left for the labels.
pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 140.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 18.0;
const TOP: f64 = 8.0;

/// A chart ready for the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The rate as a line (SVG path data); empty with fewer than one rate.
    pub line: String,
    /// The same line closed down to the axis, for the shaded area.
    pub area: String,
    /// The scale's top, as the label at the top of the axis.
    pub top_label: String,
    /// The latest rate, e.g. `12.4 msg/s`, or an em dash.
    pub latest: String,
    /// The window, as the label at the left end of the time axis, e.g. `-15 min`.
    pub window_label: String,
    /// How many rates are drawn.
    pub points: usize,
    /// The latest rate's point, marked so a single rate (or a spike at the edge) shows.
    pub last: Option<(f64, f64)>,
}

impl Chart {
    pub fn width(&self) -> f64 {
        WIDTH
    }
    pub fn height(&self) -> f64 {
        HEIGHT
    }
    pub fn left(&self) -> f64 {
        LEFT
    }
    pub fn top(&self) -> f64 {
        TOP
    }
    /// The time axis's height.
    pub fn axis_y(&self) -> f64 {
        HEIGHT - BOTTOM
    }
    pub fn label_y(&self) -> f64 {
        HEIGHT - 4.0
    }
}

/// The smallest of 1, 2, 5 × a power of ten at or above `v` (at least 1).
pub fn nice_top(v: f64) -> f64 {
    if !v.is_finite() || v <= 1.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|t| *t >= v)
        .unwrap_or(10.0 * mag)
}

/// A rate as people read it: `0`, `0.4`, `5`, `12.4`, `1,250`.
pub fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        let n = v.round() as i64;
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Draws `rates` (oldest first) over the `window_secs` ending at `now`.
pub fn draw(rates: &[Rate], now: DateTime<Utc>, window_secs: i64) -> Chart {
    let start = now - chrono::Duration::seconds(window_secs);
    let shown: Vec<&Rate> = rates.iter().filter(|r| r.at >= start).collect();
    let top = nice_top(shown.iter().map(|r| r.per_second).fold(0.0, f64::max));
    let (w, h) = (WIDTH - LEFT, HEIGHT - BOTTOM - TOP);
    let x = |at: DateTime<Utc>| {
        let f = (at - start).num_milliseconds() as f64 / (window_secs.max(1) * 1000) as f64;
        LEFT + f.clamp(0.0, 1.0) * w
    };
    let y = |v: f64| TOP + h - (v / top).clamp(0.0, 1.0) * h;
    let mut line = String::new();
    for (i, r) in shown.iter().enumerate() {
        let cmd = if i == 0 { 'M' } else { 'L' };
        line.push_str(&format!("{cmd}{:.1},{:.1} ", x(r.at), y(r.per_second)));
    }
    let line = line.trim_end().to_string();
    let area = match (shown.first(), shown.last()) {
        (Some(a), Some(b)) if shown.len() > 1 => format!(
            "{line} L{:.1},{:.1} L{:.1},{:.1} Z",
            x(b.at),
            TOP + h,
            x(a.at),
            TOP + h
        ),
        _ => String::new(),
    };
    Chart {
        line,
        area,
        top_label: fmt_rate(top),
        latest: shown
            .last()
            .map(|r| format!("{} msg/s", fmt_rate(r.per_second)))
            .unwrap_or_else(|| "—".into()),
        window_label: format!("-{} min", window_secs / 60),
        points: shown.len(),
        last: shown.last().map(|r| (x(r.at), y(r.per_second))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn scales_round_up_to_one_two_or_five() {
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(1.5), 2.0);
        assert_eq!(nice_top(3.0), 5.0);
        assert_eq!(nice_top(7.0), 10.0);
        assert_eq!(nice_top(10.0), 10.0);
        assert_eq!(nice_top(1234.0), 2000.0);
        assert_eq!(fmt_rate(1250.0), "1,250");
        assert_eq!(fmt_rate(12.44), "12.4");
        assert_eq!(fmt_rate(0.0), "0");
    }

    #[test]
    fn rates_are_placed_in_time_and_scale() {
        let now = at(900);
        let rates = [
            Rate {
                at: at(-100),
                per_second: 99.0,
            },
            Rate {
                at: at(0),
                per_second: 0.0,
            },
            Rate {
                at: at(900),
                per_second: 4.0,
            },
        ];
        let c = draw(&rates, now, 900);
        // The rate before the window is left out; 4 scales to a top of 5.
        assert_eq!(c.points, 2);
        assert_eq!(c.top_label, "5");
        assert_eq!(c.latest, "4 msg/s");
        let bottom = HEIGHT - BOTTOM;
        let y4 = TOP + (bottom - TOP) * (1.0 - 4.0 / 5.0);
        assert_eq!(
            c.line,
            format!("M{LEFT:.1},{bottom:.1} L{WIDTH:.1},{y4:.1}")
        );
        assert!(c.area.ends_with(" Z"), "{}", c.area);
        let (lx, ly) = c.last.unwrap();
        assert!(lx == WIDTH && (ly - y4).abs() < 1e-9, "{:?}", c.last);
        let empty = draw(&[], now, 900);
        assert_eq!((empty.line.as_str(), empty.points), ("", 0));
        assert_eq!(empty.latest, "—");
    }
}

//! `--plot FILE.svg`: encoded size against encode + decode time, one labelled point per
//! codec, in hand-written SVG (axes, ticks, labels; logarithmic axes when the values span
//! more than a factor of 20).

use std::fmt::Write as _;

use super::report::{fmt_ns, group, Report};

const W: f64 = 760.0;
const H: f64 = 520.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 80.0;

/// One plotted axis.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn new(values: &[f64]) -> Axis {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !min.is_finite() || !max.is_finite() {
            return Axis {
                lo: 0.0,
                hi: 1.0,
                log: false,
            };
        }
        if min > 0.0 && max / min > 20.0 {
            let lo = 10f64.powf(min.log10().floor());
            let hi = 10f64.powf(max.log10().ceil());
            Axis { lo, hi, log: true }
        } else {
            let step = nice_step(max.max(f64::MIN_POSITIVE) / 5.0);
            let hi = ((max * 1.1) / step).ceil() * step;
            Axis {
                lo: 0.0,
                hi: hi.max(step),
                log: false,
            }
        }
    }

    /// Position in 0..=1 along the axis.
    fn frac(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.lo);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()).max(1e-12)
        } else {
            (v - self.lo) / (self.hi - self.lo).max(1e-12)
        }
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut out = Vec::new();
            let mut d = self.lo;
            while d <= self.hi * 1.000_001 {
                for m in [1.0, 2.0, 5.0] {
                    let t = d * m;
                    if t >= self.lo * 0.999_999 && t <= self.hi * 1.000_001 {
                        out.push(t);
                    }
                }
                d *= 10.0;
            }
            out
        } else {
            let step = nice_step(self.hi / 5.0);
            (0..=((self.hi / step).round() as usize))
                .map(|i| i as f64 * step)
                .collect()
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if p * m >= raw {
            return p * m;
        }
    }
    p * 10.0
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tick label: at most 3 significant digits, trailing zeros dropped, with a decimal
/// prefix (`500 µs`, `2 ms`, `1.5 kB`).
fn tick_label(v: f64, units: &[(f64, &str)]) -> String {
    let (scale, unit) = units
        .iter()
        .rev()
        .find(|(scale, _)| v >= *scale)
        .or(units.first())
        .copied()
        .unwrap_or((1.0, ""));
    let x = v / scale;
    let digits = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{x:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text} {unit}")
}

const TIME_UNITS: &[(f64, &str)] = &[(1.0, "ns"), (1e3, "µs"), (1e6, "ms"), (1e9, "s")];
const SIZE_UNITS: &[(f64, &str)] = &[(1.0, "B"), (1e3, "kB"), (1e6, "MB"), (1e9, "GB")];

/// The chart as an SVG document.
pub(super) fn svg(report: &Report, title: &str) -> String {
    let points: Vec<(&str, f64, f64, bool, bool)> = report
        .rows
        .iter()
        .filter_map(|r| {
            let t = r.encode?.median_ns + r.decode?.median_ns;
            Some((
                r.info.name,
                t,
                r.size as f64,
                r.recommended,
                r.excluded.is_some(),
            ))
        })
        .collect();
    let missing: Vec<&str> = report
        .rows
        .iter()
        .filter(|r| r.encode.is_none() || r.decode.is_none())
        .map(|r| r.info.name)
        .collect();
    let xs: Vec<f64> = points.iter().map(|p| p.1).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.2).collect();
    let xa = Axis::new(&xs);
    let ya = Axis::new(&ys);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |v: f64| LEFT + xa.frac(v) * pw;
    let py = |v: f64| TOP + ph - ya.frac(v) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // Grid and ticks.
    for t in xa.ticks() {
        let x = px(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e4e4e4"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/>"##,
            TOP + ph,
            TOP + ph + 5.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + ph + 19.0,
            esc(&tick_label(t, TIME_UNITS))
        );
    }
    for t in ya.ticks() {
        let y = py(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/>"##,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#333"/>"##,
            LEFT - 5.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + 4.0,
            esc(&tick_label(t, SIZE_UNITS))
        );
    }
    // Axes.
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/>"##,
        TOP + ph
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">encode + decode time (median, all samples{})</text>"#,
        LEFT + pw / 2.0,
        H - 40.0,
        if xa.log { ", log scale" } else { "" }
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">encoded size (all samples{})</text>"#,
        TOP + ph / 2.0,
        if ya.log { ", log scale" } else { "" }
    );
    // Points, labels offset alternately to limit overlap.
    for (i, (name, x, y, rec, excl)) in points.iter().enumerate() {
        let (cx, cy) = (px(*x), py(*y));
        let fill = if *rec {
            "#d62728"
        } else if *excl {
            "#9a9a9a"
        } else {
            "#1f77b4"
        };
        let r = if *rec { 7.0 } else { 5.0 };
        let _ = writeln!(
            s,
            r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="{r}" fill="{fill}"><title>{}: {} bytes, {}</title></circle>"#,
            esc(name),
            group(*y as usize),
            esc(&fmt_ns(*x))
        );
        let dy = if i % 2 == 0 { -10.0 } else { 16.0 };
        let anchor = if cx > LEFT + pw - 80.0 {
            "end"
        } else {
            "start"
        };
        let dx = if anchor == "end" { -9.0 } else { 9.0 };
        let label = if *rec {
            format!("{name} (recommended)")
        } else if *excl {
            format!("{name} (excluded)")
        } else {
            (*name).to_owned()
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" fill="{fill}">{}</text>"#,
            cx + dx,
            cy + dy,
            esc(&label)
        );
    }
    if !missing.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{:.1}">not plotted (no encode or decode time): {}</text>"#,
            H - 14.0,
            esc(&missing.join(", "))
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_pick_log_scale_for_wide_ranges() {
        let a = Axis::new(&[3.0, 900.0]);
        assert!(a.log);
        assert_eq!((a.lo, a.hi), (1.0, 1000.0));
        assert!(a.ticks().contains(&100.0));
        let l = Axis::new(&[10.0, 40.0]);
        assert!(!l.log);
        assert!(l.hi >= 40.0);
        assert!((l.frac(l.hi) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(2e6, TIME_UNITS), "2 ms");
        assert_eq!(tick_label(500e3, TIME_UNITS), "500 µs");
        assert_eq!(tick_label(1500.0, SIZE_UNITS), "1.5 kB");
        assert_eq!(tick_label(0.0, SIZE_UNITS), "0 B");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(0.15), 0.2);
        assert_eq!(nice_step(100.0), 100.0);
    }
}

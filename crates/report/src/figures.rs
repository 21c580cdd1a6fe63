//! Figures drawn with plotters, each rendered twice: PNG (bitmap backend into a buffer,
//! encoded by the `png` crate) and SVG (SVG backend into a string).
//!
//! Text uses DejaVu Sans, embedded in the binary and registered through plotters' `ab_glyph`
//! feature, so rendering needs no system fonts nor fontconfig/freetype. Describe a figure
//! with a [`FigureSpec`] and render it with [`render`].

use std::sync::OnceLock;

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters::style::RGBAColor;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::DrawingErrorKind;

use crate::ReportError;
use crate::style::{Marker, Rgb, Style};

/// A pixel position in a drawing area.
type BackendCoord = (i32, i32);

/// DejaVu Sans 2.37 (see fonts/LICENSE-DejaVu.txt).
pub const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
/// The family name the font is registered under.
pub const FAMILY: &str = "sans-serif";

/// Registers the embedded font once; false if it could not be parsed.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok()
            && plotters::style::register_font(FAMILY, FontStyle::Bold, FONT).is_ok()
    })
}

/// One line of a line panel: a value per layer (index = layer), `None` where missing.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub style: Style,
    pub values: Vec<Option<f64>>,
}

/// One lab's pair of bars.
#[derive(Clone, Debug, PartialEq)]
pub struct LabBar {
    pub lab: String,
    pub color: Rgb,
    pub a: Option<f64>,
    pub b: Option<f64>,
}

/// One panel of a grid figure.
#[derive(Clone, Debug, PartialEq)]
pub enum Panel {
    /// A quantity by layer, one line per model.
    Lines {
        title: String,
        y_desc: String,
        series: Vec<Series>,
    },
    /// Grouped bars per lab: `a` solid, `b` lighter and hatched (the seed's W_V / W_O bars).
    Bars {
        title: String,
        y_desc: String,
        a_label: String,
        b_label: String,
        bars: Vec<LabBar>,
    },
}

/// One curve of a log-log spectral density panel: (λ, density) points.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub label: String,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
}

/// One panel of the log-log spectral density figure.
#[derive(Clone, Debug, PartialEq)]
pub struct DensityPanel {
    pub title: String,
    pub x_desc: String,
    pub curves: Vec<Curve>,
}

/// One layer's line of a trajectory panel: (training step + 1, value) points.
#[derive(Clone, Debug, PartialEq)]
pub struct TrajectoryLine {
    /// Relative depth of the layer, 0 (first) to 1 (last): the line's shade.
    pub depth: f64,
    pub points: Vec<(f64, f64)>,
}

/// One panel of a training-trajectory figure: a metric against training step (log axis).
#[derive(Clone, Debug, PartialEq)]
pub struct TrajectoryPanel {
    pub title: String,
    pub y_desc: String,
    pub lines: Vec<TrajectoryLine>,
}

/// What a figure shows.
#[derive(Clone, Debug, PartialEq)]
pub enum Figure {
    /// Metric-against-training-step panels (log x), one line per layer shaded by depth, in a
    /// grid of `cols` columns.
    Trajectories {
        panels: Vec<TrajectoryPanel>,
        cols: usize,
    },
    /// Panels in a grid of `cols` columns.
    Grid { panels: Vec<Panel>, cols: usize },
    /// Log-log density panels in a grid of `cols` columns.
    Densities {
        panels: Vec<DensityPanel>,
        cols: usize,
    },
    /// A layer x head heat map: `values[layer][head]`.
    Heatmap {
        values: Vec<Vec<Option<f64>>>,
        value_desc: String,
    },
}

/// A figure to render.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureSpec {
    /// File stem under `figures/`.
    pub name: String,
    pub title: String,
    /// One or two sentences for the report.
    pub caption: String,
    pub size: (u32, u32),
    pub figure: Figure,
}

/// A rendered figure.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub png: Vec<u8>,
    pub svg: String,
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

const TITLE_PX: u32 = 30;
const PANEL_TITLE_PX: u32 = 21;
const AXIS_DESC_PX: u32 = 17;
const TICK_PX: u32 = 15;
const LEGEND_PX: u32 = 15;
const MARKER_PX: i32 = 5;

fn color(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// Renders a figure as PNG and SVG.
pub fn render(spec: &FigureSpec) -> Result<Rendered, ReportError> {
    let fail = |message: String| ReportError::Figure {
        figure: spec.name.clone(),
        message,
    };
    if !font_ready() {
        return Err(fail("the embedded font could not be loaded".into()));
    }
    let (w, h) = spec.size;
    if w == 0 || h == 0 || w > 20_000 || h > 20_000 {
        return Err(fail(format!("bad figure size {w}x{h}")));
    }
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw_figure(&root, spec).map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let png = encode_png(&buf, w, h).map_err(|e| fail(format!("PNG encoding: {e}")))?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        draw_figure(&root, spec).map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(Rendered { png, svg })
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::High);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    spec: &FigureSpec,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let body = root
        .margin(14, 6, 6, 6)
        .titled(&spec.title, (FAMILY, TITLE_PX).into_font().color(&BLACK))?;
    match &spec.figure {
        Figure::Grid { panels, cols } => {
            for (area, panel) in grid(&body, panels.len(), *cols).iter().zip(panels) {
                match panel {
                    Panel::Lines {
                        title,
                        y_desc,
                        series,
                    } => draw_lines(area, title, y_desc, series)?,
                    Panel::Bars {
                        title,
                        y_desc,
                        a_label,
                        b_label,
                        bars,
                    } => draw_bars(area, title, y_desc, a_label, b_label, bars)?,
                }
            }
        }
        Figure::Densities { panels, cols } => {
            for (area, panel) in grid(&body, panels.len(), *cols).iter().zip(panels) {
                draw_density(area, panel)?;
            }
        }
        Figure::Heatmap { values, value_desc } => draw_heatmap(&body, values, value_desc)?,
        Figure::Trajectories { panels, cols } => {
            for (area, panel) in grid(&body, panels.len(), *cols).iter().zip(panels) {
                draw_trajectory(area, panel)?;
            }
        }
    }
    Ok(())
}

fn grid<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    n: usize,
    cols: usize,
) -> Vec<DrawingArea<DB, Shift>> {
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    area.split_evenly((rows, cols))
}

/// A message in the middle of an empty panel.
fn draw_empty<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    msg: &str,
) -> DrawResult<DB> {
    let inner = area.titled(title, (FAMILY, PANEL_TITLE_PX))?;
    let (w, h) = inner.dim_in_pixel();
    let grey = BLACK.mix(0.6);
    let style = TextStyle::from((FAMILY, AXIS_DESC_PX).into_font())
        .color(&grey)
        .pos(Pos::new(HPos::Center, VPos::Center));
    inner.draw(&Text::new(
        msg.to_string(),
        (w as i32 / 2, h as i32 / 2),
        style,
    ))
}

/// A linear f64 axis whose ticks are given (plotters' `WithKeyPoints` over f64 has no
/// default label formatting, so `configure_mesh` is not available on it).
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(range: Range<f64>, ticks: Vec<f64>) -> Ticked {
        Ticked {
            inner: range.into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// Tick positions for `n` layers: every layer up to 16, else a round step.
fn layer_ticks(n: usize) -> Vec<f64> {
    let step = match n {
        0..=16 => 1,
        17..=40 => 4,
        41..=100 => 10,
        _ => n.div_ceil(10),
    };
    (0..n).step_by(step).map(|i| i as f64).collect()
}

/// A tick label: short, without trailing zeros.
pub fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// A y range with 5 % padding that is never empty.
fn padded(values: impl Iterator<Item = f64>, from_zero: bool) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    if from_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.05
    } else {
        hi.abs().max(1.0) * 0.1
    };
    if from_zero && lo >= 0.0 {
        hi += pad * 3.0;
    } else {
        lo -= pad;
        hi += pad;
    }
    Some((lo, hi))
}

/// What a [`Glyph`] draws around its anchor, in pixels.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// A marker of this radius.
    Marker(Marker, i32, RGBColor),
    /// A legend entry of a line series: a short line through the marker.
    LegendLine(Style),
    /// A legend entry of a bar series: a swatch, hatched or not.
    Swatch(RGBAColor, bool),
}

/// A plotters element drawing a [`Shape`] at one point of any coordinate system. (plotters'
/// composed and dynamic elements require a `'static` backend in series and legends, which
/// the bitmap backend over a borrowed buffer is not.)
struct Glyph<C> {
    pos: C,
    shape: Shape,
}

impl<'a, C> PointCollection<'a, C> for &'a Glyph<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;
    fn point_iter(self) -> std::iter::Once<&'a C> {
        std::iter::once(&self.pos)
    }
}

fn draw_marker<DB: DrawingBackend>(
    backend: &mut DB,
    (x, y): BackendCoord,
    marker: Marker,
    s: i32,
    c: RGBColor,
) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
    let fill = c.filled();
    let line = c.stroke_width(2);
    let poly = |pts: &[(i32, i32)]| -> Vec<BackendCoord> {
        pts.iter().map(|(dx, dy)| (x + dx, y + dy)).collect()
    };
    match marker {
        Marker::Circle => backend.draw_circle((x, y), s as u32, &fill, true),
        Marker::Square => {
            backend.draw_rect((x - s + 1, y - s + 1), (x + s - 1, y + s - 1), &fill, true)
        }
        Marker::TriangleUp => {
            backend.fill_polygon(poly(&[(0, -s - 1), (s, s - 1), (-s, s - 1)]), &fill)
        }
        Marker::TriangleDown => {
            backend.fill_polygon(poly(&[(0, s + 1), (s, -s + 1), (-s, -s + 1)]), &fill)
        }
        Marker::TriangleLeft => {
            backend.fill_polygon(poly(&[(-s - 1, 0), (s - 1, -s), (s - 1, s)]), &fill)
        }
        Marker::TriangleRight => {
            backend.fill_polygon(poly(&[(s + 1, 0), (-s + 1, -s), (-s + 1, s)]), &fill)
        }
        Marker::Diamond => {
            backend.fill_polygon(poly(&[(0, -s - 1), (s, 0), (0, s + 1), (-s, 0)]), &fill)
        }
        Marker::X => {
            backend.draw_line((x - s, y - s), (x + s, y + s), &line)?;
            backend.draw_line((x - s, y + s), (x + s, y - s), &line)
        }
        Marker::Plus => {
            backend.draw_line((x - s - 1, y), (x + s + 1, y), &line)?;
            backend.draw_line((x, y - s - 1), (x, y + s + 1), &line)
        }
        Marker::Star => {
            let pts: Vec<(i32, i32)> = (0..10)
                .map(|k| {
                    let r = f64::from(s + 2) * if k % 2 == 0 { 1.0 } else { 0.45 };
                    let t = std::f64::consts::PI * (k as f64 / 5.0 - 0.5);
                    ((r * t.cos()).round() as i32, (r * t.sin()).round() as i32)
                })
                .collect();
            backend.fill_polygon(poly(&pts), &fill)
        }
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Glyph<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut pos: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = pos.next() else {
            return Ok(());
        };
        match self.shape {
            Shape::Marker(m, s, c) => draw_marker(backend, (x, y), m, s, c),
            Shape::LegendLine(style) => {
                let c = color(style.color);
                backend.draw_line((x, y), (x + 24, y), &c.stroke_width(2))?;
                draw_marker(backend, (x + 12, y), style.marker, MARKER_PX, c)
            }
            Shape::Swatch(c, hatched) => {
                backend.draw_rect((x + 2, y - 7), (x + 24, y + 7), &c.filled(), true)?;
                let edge = RGBColor(90, 90, 90);
                backend.draw_rect(
                    (x + 2, y - 7),
                    (x + 24, y + 7),
                    &edge.stroke_width(1),
                    false,
                )?;
                if hatched {
                    backend.draw_line((x + 2, y + 7), (x + 16, y - 7), &edge.stroke_width(1))?;
                    backend.draw_line((x + 10, y + 7), (x + 24, y - 7), &edge.stroke_width(1))?;
                }
                Ok(())
            }
        }
    }
}

fn marker_element<C>(pos: C, marker: Marker, size: i32, c: RGBColor) -> Glyph<C> {
    Glyph {
        pos,
        shape: Shape::Marker(marker, size, c),
    }
}

fn legend_glyph(pos: BackendCoord, style: Style) -> Glyph<BackendCoord> {
    Glyph {
        pos,
        shape: Shape::LegendLine(style),
    }
}

/// Runs of consecutive present values as (x, y) points.
fn segments(values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(y) if y.is_finite() => cur.push((i as f64, *y)),
            _ => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Picks the legend corner of the plotting area that covers the fewest data pixels
/// (matplotlib's `loc="best"`, roughly), and how many it covers. `pixels` are
/// plotting-area pixel positions; the first candidate is the upper right corner.
fn best_legend_position(
    area: (u32, u32),
    legend: (i32, i32),
    pixels: &[(i32, i32)],
) -> (SeriesLabelPosition, usize) {
    let (aw, ah) = (area.0 as i32, area.1 as i32);
    let (lw, lh) = legend;
    let m = 8;
    let candidates = [
        (aw - lw - m, m),
        (m, m),
        (aw - lw - m, ah - lh - m),
        (m, ah - lh - m),
        ((aw - lw) / 2, m),
        ((aw - lw) / 2, ah - lh - m),
    ];
    let mut best = candidates[0];
    let mut best_n = usize::MAX;
    for &(x, y) in &candidates {
        let n = pixels
            .iter()
            .filter(|(px, py)| *px >= x && *px <= x + lw && *py >= y && *py <= y + lh)
            .count();
        if n < best_n {
            best = (x, y);
            best_n = n;
        }
    }
    (
        SeriesLabelPosition::Coordinate(best.0.max(0), best.1.max(0)),
        best_n,
    )
}

/// Where the legend goes, and the upper end of the y range: when every corner would hide
/// data, the range grows upwards (in the axis' own scale, through `grow`) to make room for
/// the legend at the upper right. `probe` maps data to plotting-area pixels for `hi`.
fn place_legend(
    dims: (u32, u32),
    legend: (i32, i32),
    pixels: &[(i32, i32)],
) -> (SeriesLabelPosition, Option<f64>) {
    let (pos, covered) = best_legend_position(dims, legend, pixels);
    if covered == 0 {
        return (pos, None);
    }
    let ph = f64::from(dims.1);
    let need = f64::from(legend.1 + 16);
    if need > ph * 0.6 {
        return (pos, None);
    }
    let (upper_right, _) = best_legend_position(dims, legend, &[]);
    // Fraction by which the y span must grow.
    (upper_right, Some(need / (ph - need)))
}

/// Sample points along the lines of a panel (vertices and 8 points per segment), for
/// legend placement.
fn line_samples(series: &[Series]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for s in series {
        for seg in segments(&s.values) {
            out.extend(seg.iter().copied());
            for w in seg.windows(2) {
                for k in 1..8 {
                    let t = k as f64 / 8.0;
                    out.push((
                        w[0].0 + t * (w[1].0 - w[0].0),
                        w[0].1 + t * (w[1].1 - w[0].1),
                    ));
                }
            }
        }
    }
    out
}

/// Estimated legend box size for these labels.
fn legend_size<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, labels: &[&str]) -> (i32, i32) {
    let font = TextStyle::from((FAMILY, LEGEND_PX).into_font());
    let w = labels
        .iter()
        .map(|l| area.estimate_text_size(l, &font).map(|d| d.0).unwrap_or(0) as i32)
        .max()
        .unwrap_or(0);
    let line = (LEGEND_PX as f64 * 1.25).ceil() as i32;
    (w + 40 + 16, labels.len() as i32 * line + 16)
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    series: &[Series],
) -> DrawResult<DB> {
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let Some((lo, mut hi)) = padded(
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied()),
        false,
    ) else {
        return draw_empty(area, title, "no data in this dataset");
    };
    let inner = area.titled(title, (FAMILY, PANEL_TITLE_PX))?;
    let x_hi = (n.max(1) as f64) - 0.5;
    let build = |hi: f64| {
        ChartBuilder::on(&inner)
            .margin(14)
            .margin_top(4)
            .x_label_area_size(50)
            .y_label_area_size(86)
            .build_cartesian_2d(Ticked::new(-0.5..x_hi, layer_ticks(n)), lo..hi)
    };
    let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
    let size = legend_size(area, &labels);
    let pos = {
        let probe = build(hi)?;
        let base = probe.plotting_area().get_base_pixel();
        let pixels: Vec<(i32, i32)> = line_samples(series)
            .iter()
            .map(|p| {
                let q = probe.backend_coord(p);
                (q.0 - base.0, q.1 - base.1)
            })
            .collect();
        let (pos, grow) = place_legend(probe.plotting_area().dim_in_pixel(), size, &pixels);
        if let Some(g) = grow {
            hi += (hi - lo) * g;
        }
        pos
    };
    let mut chart = build(hi)?;
    chart
        .configure_mesh()
        .x_desc("Layer")
        .y_desc(y_desc)
        .axis_desc_style((FAMILY, AXIS_DESC_PX))
        .label_style((FAMILY, TICK_PX))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick(*y))
        .draw()?;
    for s in series {
        let c = color(s.style.color);
        let segs = segments(&s.values);
        for seg in &segs {
            chart.draw_series(LineSeries::new(
                seg.iter().copied(),
                c.mix(0.85).stroke_width(2),
            ))?;
        }
        let style = s.style;
        chart
            .draw_series(
                segs.into_iter()
                    .flatten()
                    .map(|p| marker_element(p, style.marker, MARKER_PX, c)),
            )?
            .label(s.label.clone())
            .legend(move |p| legend_glyph(p, style));
    }
    chart
        .configure_series_labels()
        .position(pos)
        .margin(8)
        .legend_area_size(32)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.35))
        .label_font((FAMILY, LEGEND_PX))
        .draw()?;
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    a_label: &str,
    b_label: &str,
    bars: &[LabBar],
) -> DrawResult<DB> {
    let Some((lo, hi)) = padded(bars.iter().flat_map(|b| b.a.into_iter().chain(b.b)), true) else {
        return draw_empty(area, title, "no data in this dataset");
    };
    let n = bars.len();
    let names: Vec<String> = bars.iter().map(|b| b.lab.clone()).collect();
    let ticks: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, PANEL_TITLE_PX))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(86)
        .build_cartesian_2d(Ticked::new(-0.6..(n as f64 - 0.4), ticks), lo..hi)?;
    let label_of = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc("Lab")
        .y_desc(y_desc)
        .axis_desc_style((FAMILY, AXIS_DESC_PX))
        .label_style((FAMILY, TICK_PX))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .disable_x_mesh()
        .x_label_formatter(&label_of)
        .y_label_formatter(&|y| tick(*y))
        .draw()?;
    let width = 0.35;
    let grey = RGBColor(90, 90, 90);
    chart
        .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            let v = b.a?;
            let x = i as f64;
            Some(Rectangle::new(
                [(x - width, 0.0), (x, v)],
                color(b.color).mix(0.75).filled(),
            ))
        }))?
        .label(a_label)
        .legend(move |p| Glyph {
            pos: p,
            shape: Shape::Swatch(grey.mix(0.75), false),
        });
    let base = chart.plotting_area().get_base_pixel();
    let hatch_rects: Vec<_> = bars
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let v = b.b?;
            let x = i as f64;
            let p0 = chart.backend_coord(&(x, v));
            let p1 = chart.backend_coord(&(x + width, 0.0));
            Some((
                (p0.0 - base.0, p0.1.min(p1.1) - base.1),
                (p1.0 - base.0, p0.1.max(p1.1) - base.1),
                color(b.color),
            ))
        })
        .collect();
    chart
        .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            let v = b.b?;
            let x = i as f64;
            Some(Rectangle::new(
                [(x, 0.0), (x + width, v)],
                color(b.color).mix(0.4).filled(),
            ))
        }))?
        .label(b_label)
        .legend(move |p| Glyph {
            pos: p,
            shape: Shape::Swatch(grey.mix(0.4), true),
        });
    // Outlines, and the seed's "//" hatching on the second bar of each pair.
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64;
        let c = color(b.color);
        if let Some(v) = b.a {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x - width, 0.0), (x, v)],
                c.stroke_width(1),
            )))?;
        }
        if let Some(v) = b.b {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x, 0.0), (x + width, v)],
                c.stroke_width(1),
            )))?;
        }
    }
    let pixels_area = chart.plotting_area().strip_coord_spec();
    for ((x0, y0), (x1, y1), c) in hatch_rects {
        let step = 10;
        let mut k = x0 + y0 + step;
        while k < x1 + y1 {
            let xa = x0.max(k - y1);
            let xb = x1.min(k - y0);
            if xa < xb {
                pixels_area.draw(&PathElement::new(
                    vec![(xa, k - xa), (xb, k - xb)],
                    c.mix(0.9).stroke_width(1),
                ))?;
            }
            k += step;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .margin(8)
        .legend_area_size(32)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.35))
        .label_font((FAMILY, LEGEND_PX))
        .draw()?;
    Ok(())
}

fn draw_density<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &DensityPanel,
) -> DrawResult<DB> {
    let curves: Vec<Vec<(f64, f64)>> = panel
        .curves
        .iter()
        .map(|c| {
            c.points
                .iter()
                .copied()
                .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
                .collect()
        })
        .collect();
    let all = || curves.iter().flatten().copied();
    let (x_lo, x_hi) = all().fold((f64::INFINITY, 0.0f64), |(l, h), (x, _)| {
        (l.min(x), h.max(x))
    });
    let (y_lo, y_hi) = all().fold((f64::INFINITY, 0.0f64), |(l, h), (_, y)| {
        (l.min(y), h.max(y))
    });
    if !x_lo.is_finite() || !y_lo.is_finite() {
        return draw_empty(area, &panel.title, "no spectra in this dataset");
    }
    let inner = area.titled(&panel.title, (FAMILY, PANEL_TITLE_PX))?;
    let (y_lo, mut y_hi) = (y_lo / 2.0, y_hi * 2.0);
    let build = |y_hi: f64| {
        ChartBuilder::on(&inner)
            .margin(14)
            .margin_top(4)
            .x_label_area_size(50)
            .y_label_area_size(86)
            .build_cartesian_2d(
                (x_lo / 1.5..x_hi * 1.5).log_scale(),
                (y_lo..y_hi).log_scale(),
            )
    };
    let labels: Vec<&str> = panel.curves.iter().map(|c| c.label.as_str()).collect();
    let size = legend_size(area, &labels);
    let pos = {
        let probe = build(y_hi)?;
        let base = probe.plotting_area().get_base_pixel();
        let mut pixels = Vec::new();
        for c in &curves {
            for w in c.windows(2) {
                for k in 0..8 {
                    // Interpolate in log space, where the segments are straight.
                    let t = k as f64 / 8.0;
                    let p = (
                        (w[0].0.ln() + t * (w[1].0.ln() - w[0].0.ln())).exp(),
                        (w[0].1.ln() + t * (w[1].1.ln() - w[0].1.ln())).exp(),
                    );
                    let q = probe.backend_coord(&p);
                    pixels.push((q.0 - base.0, q.1 - base.1));
                }
            }
            for p in c {
                let q = probe.backend_coord(p);
                pixels.push((q.0 - base.0, q.1 - base.1));
            }
        }
        let (pos, grow) = place_legend(probe.plotting_area().dim_in_pixel(), size, &pixels);
        if let Some(g) = grow {
            y_hi *= (y_hi / y_lo).powf(g);
        }
        pos
    };
    let mut chart = build(y_hi)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_desc.as_str())
        .y_desc("density")
        .axis_desc_style((FAMILY, AXIS_DESC_PX))
        .label_style((FAMILY, TICK_PX))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0e}"))
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .draw()?;
    for (curve, pts) in panel.curves.iter().zip(&curves) {
        let c = color(curve.style.color);
        chart.draw_series(LineSeries::new(
            pts.iter().copied(),
            c.mix(0.85).stroke_width(2),
        ))?;
        let style = curve.style;
        chart
            .draw_series(pts.iter().map(|p| marker_element(*p, style.marker, 4, c)))?
            .label(curve.label.clone())
            .legend(move |p| legend_glyph(p, style));
    }
    chart
        .configure_series_labels()
        .position(pos)
        .margin(8)
        .legend_area_size(32)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.35))
        .label_font((FAMILY, LEGEND_PX))
        .draw()?;
    Ok(())
}

/// The shade of a layer at relative depth t in [0, 1]: light orange (first layer) to dark
/// purple (last layer), through red.
pub fn depth_color(t: f64) -> Rgb {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let stops = [
        (253.0, 174.0, 97.0),
        (215.0, 48.0, 39.0),
        (84.0, 39.0, 143.0),
    ];
    let (a, b, u) = if t <= 0.5 {
        (stops[0], stops[1], t * 2.0)
    } else {
        (stops[1], stops[2], t * 2.0 - 1.0)
    };
    let mix = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    Rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn draw_trajectory<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &TrajectoryPanel,
) -> DrawResult<DB> {
    let lines: Vec<(f64, Vec<(f64, f64)>)> = panel
        .lines
        .iter()
        .map(|l| {
            let pts = l
                .points
                .iter()
                .copied()
                .filter(|(x, y)| *x > 0.0 && x.is_finite() && y.is_finite())
                .collect();
            (l.depth, pts)
        })
        .collect();
    let all = || lines.iter().flat_map(|(_, p)| p.iter().copied());
    let (x_lo, x_hi) = all().fold((f64::INFINITY, 0.0f64), |(l, h), (x, _)| {
        (l.min(x), h.max(x))
    });
    let Some((y_lo, y_hi)) = padded(all().map(|(_, y)| y), false) else {
        return draw_empty(area, &panel.title, "no values in this dataset");
    };
    if !x_lo.is_finite() {
        return draw_empty(area, &panel.title, "no values in this dataset");
    }
    let inner = area.titled(&panel.title, (FAMILY, PANEL_TITLE_PX))?;
    let mut chart = ChartBuilder::on(&inner)
        .margin(14)
        .margin_top(4)
        .x_label_area_size(50)
        .y_label_area_size(86)
        .build_cartesian_2d((x_lo / 1.5..x_hi * 1.5).log_scale(), y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_desc("training step + 1 (log scale)")
        .y_desc(panel.y_desc.as_str())
        .axis_desc_style((FAMILY, AXIS_DESC_PX))
        .label_style((FAMILY, TICK_PX))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0e}"))
        .y_label_formatter(&|y| tick(*y))
        .draw()?;
    for (depth, pts) in &lines {
        let c = color(depth_color(*depth));
        chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?;
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))?;
    }
    Ok(())
}

fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    values: &[Vec<Option<f64>>],
    value_desc: &str,
) -> DrawResult<DB> {
    let layers = values.len();
    let heads = values.iter().map(Vec::len).max().unwrap_or(0);
    let present = || {
        values
            .iter()
            .flatten()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
    };
    let lo = present().fold(f64::INFINITY, f64::min);
    let hi = present().fold(f64::NEG_INFINITY, f64::max);
    if layers == 0 || heads == 0 || !lo.is_finite() {
        return draw_empty(area, "", "no per-head values in this dataset");
    }
    let span = if hi > lo { hi - lo } else { 1.0 };
    let norm = |v: f64| ((v - lo) / span).clamp(0.0, 1.0);
    let (w, _) = area.dim_in_pixel();
    let (main, bar) = area.split_horizontally(w.saturating_sub(170));
    let mut chart = ChartBuilder::on(&main)
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            Ticked::new(-0.5..heads as f64 - 0.5, layer_ticks(heads)),
            Ticked::new(-0.5..layers as f64 - 0.5, layer_ticks(layers)),
        )?;
    chart
        .configure_mesh()
        .x_desc("Head")
        .y_desc("Layer")
        .axis_desc_style((FAMILY, AXIS_DESC_PX))
        .label_style((FAMILY, TICK_PX))
        .disable_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    chart.draw_series(values.iter().enumerate().flat_map(|(l, row)| {
        row.iter().enumerate().map(move |(h, v)| {
            let fill: RGBColor = match v {
                Some(v) if v.is_finite() => ViridisRGB::get_color(norm(*v)),
                _ => RGBColor(220, 220, 220),
            };
            let (x, y) = (h as f64, l as f64);
            Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], fill.filled())
        })
    }))?;
    // Values in the cells when they fit.
    let (pw, ph) = chart.plotting_area().dim_in_pixel();
    let cell_w = pw as f64 / heads as f64;
    let cell_h = ph as f64 / layers as f64;
    if cell_w >= 48.0 && cell_h >= 20.0 {
        for (l, row) in values.iter().enumerate() {
            for (h, v) in row.iter().enumerate() {
                let Some(v) = v.filter(|v| v.is_finite()) else {
                    continue;
                };
                let c = if norm(v) > 0.6 { BLACK } else { WHITE };
                let style = TextStyle::from((FAMILY, 13).into_font())
                    .color(&c)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart.draw_series(std::iter::once(Text::new(
                    tick(v),
                    (h as f64, l as f64),
                    style,
                )))?;
            }
        }
    }
    // The colour bar.
    let mut cb = ChartBuilder::on(&bar)
        .margin_top(14)
        .margin_bottom(64)
        .margin_left(10)
        .margin_right(8)
        .right_y_label_area_size(90)
        .build_cartesian_2d(0.0..1.0, lo..(lo + span))?;
    cb.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(value_desc)
        .axis_desc_style((FAMILY, AXIS_DESC_PX))
        .label_style((FAMILY, TICK_PX))
        .y_label_formatter(&|y| tick(*y))
        .draw()?;
    let steps = 128;
    cb.draw_series((0..steps).map(|i| {
        let t0 = i as f64 / steps as f64;
        let t1 = (i + 1) as f64 / steps as f64;
        Rectangle::new(
            [(0.0, lo + t0 * span), (1.0, lo + t1 * span)],
            ViridisRGB::get_color((t0 + t1) / 2.0).filled(),
        )
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(3.0), "3");
        assert_eq!(tick(0.125), "0.125");
        assert_eq!(tick(1.0e-5), "1.0e-5");
        assert_eq!(tick(250000.0), "2.5e5");
    }

    #[test]
    fn segments_break_at_gaps() {
        let s = segments(&[Some(1.0), None, Some(2.0), Some(3.0), Some(f64::NAN)]);
        assert_eq!(s, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }

    #[test]
    fn layer_ticks_cover_the_range() {
        assert_eq!(layer_ticks(3), vec![0.0, 1.0, 2.0]);
        assert_eq!(layer_ticks(24).len(), 6);
        assert!(layer_ticks(0).is_empty());
    }

    #[test]
    fn legend_avoids_the_data() {
        // Data crowd the upper right corner; the legend goes elsewhere.
        let pixels: Vec<(i32, i32)> = (0..50).map(|i| (550 + i, 10 + i)).collect();
        let (pos, covered) = best_legend_position((600, 400), (150, 80), &pixels);
        assert_eq!(covered, 0);
        assert!(matches!(pos, SeriesLabelPosition::Coordinate(8, 8)));
        // Data everywhere: the y range grows to make room at the upper right.
        let everywhere: Vec<(i32, i32)> = (0..600)
            .flat_map(|x| (0..400).step_by(40).map(move |y| (x, y)))
            .collect();
        let (pos, grow) = place_legend((600, 400), (150, 80), &everywhere);
        assert!(matches!(pos, SeriesLabelPosition::Coordinate(442, 8)));
        assert!((grow.unwrap() - 96.0 / 304.0).abs() < 1e-12);
    }

    #[test]
    fn bad_sizes_are_errors() {
        let spec = FigureSpec {
            name: "x".into(),
            title: "x".into(),
            caption: String::new(),
            size: (0, 10),
            figure: Figure::Grid {
                panels: vec![],
                cols: 1,
            },
        };
        let e = render(&spec).unwrap_err().to_string();
        assert!(e.contains("`x`") || e.contains("x:"), "{e}");
    }
}

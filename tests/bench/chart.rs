//! The chart: µs per transaction for each contender, backend and workload,
//! one panel per workload, a bar for the median (its value written at the
//! top) and a whisker up to p99 (each the median over the runs), on a log
//! scale (SQLite and the servers differ tenfold). SVG only, drawn with
//! plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use crate::aggregate::Runs;
use crate::contenders::{Backend, Begin, Contender, Ping};
use crate::workloads::Workload;

fn color(who: Contender) -> RGBColor {
    match who {
        Contender::Raw(Begin::Transaction, Ping::No) => RGBColor(150, 150, 150),
        Contender::Raw(Begin::Transaction, Ping::Yes) => RGBColor(230, 140, 40),
        Contender::Raw(Begin::Immediate, Ping::No) => RGBColor(90, 90, 90),
        Contender::Raw(Begin::Immediate, Ping::Yes) => RGBColor(170, 90, 20),
        Contender::DbTxn => RGBColor(40, 100, 200),
        Contender::DbTxnExplicit => RGBColor(90, 170, 230),
    }
}

/// One bar: median and p99 µs of a contender.
struct Bar {
    backend: Backend,
    who: Contender,
    median: f64,
    p99: f64,
}

/// Draws the medians over `runs` into an SVG at `path`.
pub fn draw(runs: &Runs, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let backends = runs.backends();
    let root = SVGBackend::new(path, (1350, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "µs per transaction: bar = median, whisker = p99, medians over the runs (log scale)",
        ("sans-serif", 22),
    )?;
    let (panels, legend) = root.split_vertically(900);
    for (area, workload) in panels.split_evenly((2, 2)).iter().zip(Workload::ALL) {
        let mut bars = Vec::new();
        for b in &backends {
            for who in runs.contenders(*b, workload) {
                let median = runs.value(*b, workload, who, |m| m.median_us);
                let p99 = runs.value(*b, workload, who, |m| m.p99_us);
                if let (Some(m), Some(p)) = (median, p99) {
                    bars.push(Bar {
                        backend: *b,
                        who,
                        median: m.median,
                        p99: p.median,
                    });
                }
            }
        }
        if !bars.is_empty() {
            panel(area, workload, &bars, &backends)?;
        }
    }
    let mut all: Vec<Contender> = Vec::new();
    for b in &backends {
        for who in b.contenders() {
            if !all.contains(who) {
                all.push(*who);
            }
        }
    }
    draw_legend(&legend, &all)?;
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    workload: Workload,
    bars: &[Bar],
    backends: &[Backend],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let lo = bars.iter().map(|s| s.median).fold(f64::MAX, f64::min);
    let hi = bars.iter().map(|s| s.p99).fold(1.0, f64::max);
    let lo = 10f64.powf((lo / 2.0).max(0.1).log10().floor());
    let hi = 10f64.powf((hi * 1.5).log10().ceil());
    let n = backends.len().max(1);
    // Integer x (hundredths of a backend's slot): plotters formats keyed
    // integer axes, not keyed f64 ones.
    let slot = |b: usize| b as i32 * 100 + 50;
    let centers: Vec<i32> = (0..n).map(slot).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(workload.label(), ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(
            (0..n as i32 * 100).with_key_points(centers),
            (lo..hi).log_scale(),
        )?;
    let names = backends
        .iter()
        .map(|b| b.label().to_string())
        .collect::<Vec<_>>();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| names.get(*x as usize / 100).cloned().unwrap_or_default())
        .y_desc("µs / txn")
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    for (b, backend) in backends.iter().enumerate() {
        let mine: Vec<&Bar> = bars.iter().filter(|s| s.backend == *backend).collect();
        let n = mine.len() as i32;
        for (i, s) in mine.iter().enumerate() {
            // Bars 17 units apart, centred in the backend's slot of 100.
            let x = slot(b) + i as i32 * 17 - (n - 1) * 17 / 2;
            chart.draw_series([Rectangle::new(
                [(x - 7, lo), (x + 7, s.median)],
                color(s.who).filled(),
            )])?;
            let label = if s.median < 100.0 {
                format!("{:.1}", s.median)
            } else {
                format!("{:.0}", s.median)
            };
            chart.draw_series([Text::new(
                label,
                (x - 8, s.median * 1.08),
                ("sans-serif", 9).into_font().color(&BLACK),
            )])?;
            let whisker = [(x, s.median), (x, s.p99)];
            let cap = [(x - 4, s.p99), (x + 4, s.p99)];
            chart.draw_series([
                PathElement::new(whisker, BLACK),
                PathElement::new(cap, BLACK),
            ])?;
        }
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    contenders: &[Contender],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    for (i, who) in contenders.iter().enumerate() {
        let (x, y) = (40 + 440 * (i as i32 % 3), 10 + 36 * (i as i32 / 3));
        area.draw(&Rectangle::new(
            [(x, y), (x + 18, y + 18)],
            color(*who).filled(),
        ))?;
        let label = who.label().replace('`', "");
        area.draw(&Text::new(label, (x + 26, y + 2), ("sans-serif", 16)))?;
    }
    Ok(())
}

//! The chart in BENCHMARKS.md: µs per transaction for each contender, backend
//! and workload, one panel per workload, a bar for the median (its value
//! written at the top) and a whisker up to p99, on a log scale (SQLite and the servers differ tenfold). SVG
//! only, drawn with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use crate::contenders::Contender;
use crate::report::{Row, Workload};

const COLORS: [RGBColor; 3] = [
    RGBColor(150, 150, 150),
    RGBColor(230, 140, 40),
    RGBColor(40, 100, 200),
];

/// Draws `rows` (any backends, the three workloads) into an SVG at `path`.
pub fn draw(rows: &[Row], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let backends: Vec<&str> = rows.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.backend) {
            v.push(r.backend);
        }
        v
    });
    let root = SVGBackend::new(path, (1350, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "µs per transaction: bar = median, whisker = p99 (log scale)",
        ("sans-serif", 22),
    )?;
    let (panels, legend) = root.split_vertically(490);
    for (area, workload) in panels.split_evenly((1, 3)).iter().zip(Workload::ALL) {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.workload == workload).collect();
        panel(area, workload, &mine, &backends)?;
    }
    draw_legend(&legend)?;
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    workload: Workload,
    rows: &[&Row],
    backends: &[&str],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let values = rows.iter().flat_map(|r| r.summaries()).collect::<Vec<_>>();
    let lo = values.iter().map(|s| s.median_us).fold(f64::MAX, f64::min);
    let hi = values.iter().map(|s| s.p99_us).fold(1.0, f64::max);
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
    let names = backends.iter().map(|b| b.to_string()).collect::<Vec<_>>();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| names.get(*x as usize / 100).cloned().unwrap_or_default())
        .y_desc("µs / txn")
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    for row in rows {
        let Some(b) = backends.iter().position(|b| *b == row.backend) else {
            continue;
        };
        for (who, s) in Contender::ALL.iter().zip(row.summaries()) {
            let x = slot(b) + (who.index() as i32 - 1) * 27;
            let color = COLORS[who.index()];
            chart.draw_series([Rectangle::new(
                [(x - 12, lo), (x + 12, s.median_us)],
                color.filled(),
            )])?;
            let label = if s.median_us < 100.0 {
                format!("{:.1}", s.median_us)
            } else {
                format!("{:.0}", s.median_us)
            };
            chart.draw_series([Text::new(
                label,
                (x - 12, s.median_us * 0.97),
                ("sans-serif", 10).into_font().color(&WHITE),
            )])?;
            let whisker = [(x, s.median_us), (x, s.p99_us)];
            let cap = [(x - 5, s.p99_us), (x + 5, s.p99_us)];
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
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    for (i, who) in Contender::ALL.iter().enumerate() {
        let x = 80 + 400 * i as i32;
        area.draw(&Rectangle::new([(x, 12), (x + 18, 30)], COLORS[i].filled()))?;
        area.draw(&Text::new(who.label(), (x + 26, 14), ("sans-serif", 16)))?;
    }
    Ok(())
}

//! The machine and its load while the benchmark ran: nproc, the load average
//! before and after, CPU pinning, and how busy the CPUs were during each run
//! (`/proc/stat`); a warning when that suggests the figures are unreliable.
//!
//! When the benchmark is pinned to one CPU, the busy share of the *other*
//! CPUs during a run is other tenants' work (nothing of the benchmark runs
//! there): a direct measure of the competition, where the load average also
//! counts the benchmark itself.

use std::fmt::Write as _;

use crate::pin::Pinned;

/// The 1-minute load average above which others are likely to compete for
/// the benchmark's CPU: every CPU but the one it needs is already busy.
fn load_limit(nproc: usize) -> f64 {
    nproc.saturating_sub(1) as f64
}
/// Busy share of the CPUs the benchmark does not use, above which others'
/// work likely spilled onto its CPU.
const OTHERS_LIMIT: f64 = 0.5;
/// Share of time the hypervisor gave the CPUs to other guests.
const STEAL_LIMIT: f64 = 0.05;

/// The CPUs online (not the affinity mask's, which pinning narrows).
fn nproc() -> usize {
    // SAFETY: a plain query.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(0)
}

/// `/proc/loadavg`: 1, 5 and 15 minutes.
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(f64::NAN));
    [(); 3].map(|()| it.next().unwrap_or(f64::NAN))
}

/// Cumulative times per CPU from `/proc/stat`, in ticks.
#[derive(Debug, Clone, Default)]
pub struct CpuTimes(Vec<(usize, Ticks)>);

#[derive(Debug, Clone, Copy, Default)]
struct Ticks {
    busy: u64,
    steal: u64,
    total: u64,
}

impl CpuTimes {
    pub fn now() -> CpuTimes {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpus = text.lines().filter_map(|line| {
            let mut fields = line.split_whitespace();
            let cpu = fields.next()?.strip_prefix("cpu")?.parse().ok()?;
            let v: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
            // user nice system idle iowait irq softirq steal (guest is in user)
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            let busy = at(0) + at(1) + at(2) + at(5) + at(6);
            let steal = at(7);
            Some((
                cpu,
                Ticks {
                    busy,
                    steal,
                    total: busy + at(3) + at(4) + steal,
                },
            ))
        });
        CpuTimes(cpus.collect())
    }

    /// Busy and steal shares from `self` to `later`, of the CPUs `pick`
    /// selects.
    pub fn shares(&self, later: &CpuTimes, pick: impl Fn(usize) -> bool) -> (f64, f64) {
        let mut d = Ticks::default();
        for ((cpu, a), (_, b)) in self.0.iter().zip(&later.0) {
            if pick(*cpu) {
                d.busy += b.busy.saturating_sub(a.busy);
                d.steal += b.steal.saturating_sub(a.steal);
                d.total += b.total.saturating_sub(a.total);
            }
        }
        let total = d.total.max(1) as f64;
        (d.busy as f64 / total, d.steal as f64 / total)
    }
}

/// What the parent saw of the machine's load.
#[derive(Debug, Clone)]
pub struct Load {
    pub nproc: usize,
    pub pinned: Pinned,
    pub before: [f64; 3],
    pub after: [f64; 3],
    /// Per run: (busy share of the CPUs the benchmark did not use, or of all
    /// when unpinned; steal share of all CPUs).
    pub runs: Vec<(f64, f64)>,
}

impl Load {
    pub fn start(pinned: Pinned) -> Load {
        Load {
            nproc: nproc(),
            pinned,
            before: loadavg(),
            after: [f64::NAN; 3],
            runs: Vec::new(),
        }
    }

    /// Records one run, between the CPU times `a` and `b`.
    pub fn run(&mut self, a: &CpuTimes, b: &CpuTimes) {
        let (busy, _) = match self.pinned.cpu {
            Some(mine) => a.shares(b, |cpu| cpu != mine),
            None => a.shares(b, |_| true),
        };
        let (_, steal) = a.shares(b, |_| true);
        self.runs.push((busy, steal));
    }

    pub fn finish(&mut self) {
        self.after = loadavg();
    }

    /// Why the figures may be unreliable, if they may.
    fn concerns(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.before[0] > load_limit(self.nproc) {
            out.push(format!(
                "the 1-minute load average was {:.2} before the run on {} CPUs: other work \
                 already kept more than {} busy",
                self.before[0],
                self.nproc,
                load_limit(self.nproc)
            ));
        }
        let others = self.runs.iter().map(|r| r.0).fold(0.0, f64::max);
        if self.pinned.cpu.is_some() && others > OTHERS_LIMIT {
            out.push(format!(
                "the CPUs the benchmark did not use were up to {:.0} % busy during a run \
                 (limit {:.0} %): other work was running and may have taken turns on the \
                 benchmark's CPU",
                others * 100.0,
                OTHERS_LIMIT * 100.0
            ));
        }
        let steal = self.runs.iter().map(|r| r.1).fold(0.0, f64::max);
        if steal > STEAL_LIMIT {
            out.push(format!(
                "the hypervisor stole up to {:.0} % of the CPU time during a run",
                steal * 100.0
            ));
        }
        out
    }

    /// The statement in the report.
    pub fn section(&self) -> String {
        let avg = |l: &[f64; 3]| format!("{:.2} / {:.2} / {:.2}", l[0], l[1], l[2]);
        let mut t = String::new();
        let _ = writeln!(t, "- nproc: {}; {}", self.nproc, self.pinned.text);
        let _ = writeln!(
            t,
            "- load average (1 / 5 / 15 min): {} before the run, {} after (after includes \
             the benchmark itself: about 1 while it runs)",
            avg(&self.before),
            avg(&self.after)
        );
        let what = if self.pinned.cpu.is_some() {
            "busy share of the CPUs the benchmark did not use (others' work)"
        } else {
            "busy share of all CPUs (the benchmark's and others' work)"
        };
        let shares = |f: fn(&(f64, f64)) -> f64| {
            self.runs
                .iter()
                .map(|r| format!("{:.0} %", f(r) * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(t, "- {what}, per run: {}", shares(|r| r.0));
        let _ = writeln!(t, "- steal (all CPUs), per run: {}", shares(|r| r.1));
        let concerns = self.concerns();
        if concerns.is_empty() {
            let _ = writeln!(
                t,
                "- no sign of competing load (limits: 1-minute load ≤ {} before the run, \
                 others ≤ {:.0} % busy, steal ≤ {:.0} %)",
                load_limit(self.nproc),
                OTHERS_LIMIT * 100.0,
                STEAL_LIMIT * 100.0
            );
        } else {
            let _ = writeln!(
                t,
                "\n**Warning: the figures may be unreliable**: {}.",
                concerns.join("; ")
            );
        }
        t
    }
}

/// CPU model, memory, kernel, rustc.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map_or("unknown".into(), |m| m.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!(
        "- CPU: {model}; memory {:.1} GiB; kernel {}; {}\n",
        mem_kb as f64 / 1024.0 / 1024.0,
        command("uname", &["-r"]),
        command("rustc", &["-V"]),
    )
}

/// The trimmed output of a command, or "unknown".
pub fn command(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

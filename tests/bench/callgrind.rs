//! Instructions per call of the macro's own overhead, counted by callgrind:
//! repeatable on a noisy machine where wall-clock differences of a few
//! hundred nanoseconds drown.
//!
//! The program runs itself once per backend and variant under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=*callgrind_measured*`:
//! the child sets up a pool on an empty database, warms up, then makes `n`
//! transactions (point-reads or read-modify-writes) inside
//! [`callgrind_measured`], the only function
//! whose instructions are counted (the client's: a server's work happens in
//! its own process). Every variant runs the same SQL on the same kind of
//! database, so the differences are the transaction machinery.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use crate::contenders::{Backend, Contender, Txn};
use crate::diesel_sync;

/// The variants counted on `backend` (its contenders: with
/// `#[db_txn(pool = pool)]` beside `#[db_txn]`, the counts split off the
/// default pool's lookup), and what each is.
pub fn variants(backend: Backend) -> Vec<(&'static str, &'static str)> {
    backend
        .contenders()
        .iter()
        .map(|who| match who {
            Contender::DbTxn => (who.key(), "`#[db_txn]`, default settings (installed pool)"),
            _ => (who.key(), who.label()),
        })
        .collect()
}

/// Calls made before counting starts.
pub const WARMUP: u64 = 200;

/// The counted region: `n` calls of `call`.
#[inline(never)]
pub fn callgrind_measured(n: u64, call: &mut dyn FnMut(u64)) {
    for i in 0..n {
        call(i);
    }
}

/// The child: `n` counted transactions `txn` (see [`Txn::key`]) by
/// `variant` on `backend`, in the empty database `url`. Panics on any
/// failed call.
pub fn child(backend: &str, variant: &str, txn: &str, n: u64, url: &str) {
    let txn = Txn::parse(txn).unwrap_or_else(|| panic!("unknown transaction {txn}"));
    let mut call = match Backend::parse(backend) {
        Some(Backend::Sqlite) => diesel_sync::sqlite::calls(variant, txn, url),
        Some(Backend::MariaDb) => diesel_sync::mysql::calls(variant, txn, url),
        Some(Backend::Postgres) => diesel_sync::postgres::calls(variant, txn, url),
        None => panic!("unknown backend {backend}"),
    };
    (0..WARMUP).for_each(&mut call);
    callgrind_measured(n, &mut call);
}

fn child_args(backend: Backend, variant: &str, txn: Txn, n: u64, url: &str) -> Vec<String> {
    let n = n.to_string();
    [
        "--callgrind-child",
        backend.key(),
        variant,
        txn.key(),
        &n,
        url,
    ]
    .map(str::to_owned)
    .into()
}

/// Whether `valgrind` can be run.
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The allocator setting of the counted children (see `measure`).
pub const MALLOC_TUNABLES: &str = "glibc.malloc.tcache_count=1000";

/// One variant's count, per call.
pub struct Measured {
    pub variant: String,
    /// Every instruction of the counted region.
    pub total: f64,
    /// The part spent inside the allocator (see [`allocator_share`]).
    pub allocator: f64,
    /// Calls into the allocator (allocations, reallocations and frees).
    pub allocator_calls: f64,
    /// Distinct lines of machine code run on every call (see [`code_lines`]).
    pub code_lines: f64,
    /// Lines of data fetched per call (see [`data_lines`]).
    pub data_lines: f64,
    /// Locked instructions run per call (see [`locked_instructions`]); `None`
    /// when `objdump` could not read an object file.
    pub locked: Option<f64>,
}

/// The cache callgrind simulates for [`data_lines`]: 32 lines of 64 bytes,
/// fully associative, the least recently used evicted (the instruction cache
/// the same; the last level must be given too). Fully associative, so that
/// the cache sets that the stack and the heap happen to fall in (which
/// differ from process to process) do not move the count, as they did by
/// ±30 lines per call with two ways; which objects share a line still
/// differs (10–20 lines per call).
pub const DATA_CACHE: [&str; 4] = [
    "--cache-sim=yes",
    "--D1=2048,32,64",
    "--I1=2048,32,64",
    "--LL=8192,2,64",
];

/// Instructions per transaction `txn` of each variant on `backend`, counted
/// by callgrind; `database(name)` gives an empty database of that name.
/// The callgrind files go to `keep` if given, else to a temporary directory.
/// `Err` if valgrind is missing or a child failed.
pub fn measure(
    backend: Backend,
    txn: Txn,
    database: &dyn Fn(&str) -> String,
    n: u64,
    keep: Option<&Path>,
) -> Result<Vec<Measured>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = keep.unwrap_or(temp.path());
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The same program and libraries for every variant: each is read once.
    let mut locked_in = LockedAddresses::default();
    variants(backend)
        .iter()
        .map(|(variant, _)| {
            let name = format!("{}_{variant}", txn.key());
            let file = dir.join(format!("{}-{name}.callgrind", backend.key()));
            let run = Command::new("valgrind")
                // glibc's per-thread cache holds 7 freed blocks per size by
                // default: past that, malloc and free take paths that depend
                // on the heap's layout, which differs from process to process
                // (±100 instructions per call here, up to ~500 on MariaDB).
                // A deeper cache makes every variant's allocations the same
                // cheap path, so that the counts compare the code.
                .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", file.display()))
                .args([
                    "--collect-atstart=no",
                    "--toggle-collect=*callgrind_measured*",
                    // Costs per instruction, at absolute addresses: for
                    // `code_lines`.
                    "--dump-instr=yes",
                    "--compress-pos=no",
                ])
                // A small simulated cache, for `data_lines` (the counts of
                // instructions do not change).
                .args(DATA_CACHE)
                .arg(&exe)
                .args(child_args(backend, variant, txn, n, &database(&name)))
                .output()
                .map_err(|e| format!("cannot run valgrind (apt-get install valgrind): {e}"))?;
            if !run.status.success() {
                return Err(format!(
                    "valgrind {} {variant}: {}\n{}",
                    backend.key(),
                    run.status,
                    String::from_utf8_lossy(&run.stderr)
                ));
            }
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let allocator = allocator_share(&text);
            Ok(Measured {
                variant: variant.to_string(),
                total: total_instructions(&text)
                    .ok_or_else(|| format!("{}: no totals line", file.display()))?
                    as f64
                    / n as f64,
                allocator: allocator.instructions as f64 / n as f64,
                allocator_calls: allocator.calls as f64 / n as f64,
                code_lines: code_lines(&text, n) as f64,
                data_lines: data_lines(&text)
                    .ok_or_else(|| format!("{}: no data-cache misses", file.display()))?
                    as f64
                    / n as f64,
                locked: locked_instructions(&text, &mut |object| locked_in.of(object))
                    .map(|count| count as f64 / n as f64),
            })
        })
        .collect()
}

/// The counts of the `totals:` (or `summary:`) line of a callgrind output
/// file, one per event of its `events:` line.
fn totals(text: &str) -> Option<Vec<u64>> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })?
        .split_whitespace()
        .map(|n| n.parse().ok())
        .collect()
}

/// The instructions of a callgrind output file (its first event).
fn total_instructions(text: &str) -> Option<u64> {
    totals(text)?.first().copied()
}

/// The allocator's public entry points (glibc's, and their aliases).
const ALLOCATOR: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "free",
    "cfree",
    "memalign",
    "posix_memalign",
    "aligned_alloc",
    "__libc_malloc",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_free",
];

/// What the allocator did in a callgrind file.
#[derive(Debug, Default, PartialEq)]
pub struct AllocatorShare {
    /// Instructions spent inside it.
    pub instructions: u64,
    /// Calls into it.
    pub calls: u64,
}

/// Instructions spent inside the allocator: the inclusive cost of every
/// call into one of its entry points from outside it (so what malloc and
/// free do internally, and calloc's clearing, are counted once). How much
/// of an allocation's cost is spent there depends on the heap's layout,
/// which differs between processes (see `measure`), not on the caller's
/// code; the report shows the difference between variants with it left
/// out too.
///
/// Reads callgrind's format: `fn=`/`cfn=` name a function (by a number
/// once its name has been given: `fn=(12) malloc`, later `fn=(12)`),
/// `calls=` is followed by the line that holds the call's inclusive cost
/// after the position columns.
pub fn allocator_share(text: &str) -> AllocatorShare {
    let mut names = Names::default();
    let mut name_of = |spec: &str| -> String {
        // Recursion levels are named `f'2`, `f'3`...
        let name = names.of(spec);
        name.split('\'').next().unwrap_or_default().to_owned()
    };
    let is_allocator = |name: &str| ALLOCATOR.contains(&name);
    let positions = text
        .lines()
        .find_map(|l| l.strip_prefix("positions:"))
        .map_or(1, |p| p.split_whitespace().count());
    let mut caller = String::new();
    let mut callee = String::new();
    let mut pending_call = false;
    let mut share = AllocatorShare::default();
    let number = |s: Option<&str>| s.and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
    for line in text.lines() {
        if pending_call {
            pending_call = false;
            share.instructions += number(line.split_whitespace().nth(positions));
        } else if let Some(spec) = line.strip_prefix("fn=") {
            caller = name_of(spec);
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            callee = name_of(spec);
        } else if let Some(calls) = line.strip_prefix("calls=") {
            if is_allocator(&callee) && !is_allocator(&caller) {
                pending_call = true;
                share.calls += number(calls.split_whitespace().next());
            }
        }
    }
    share
}

/// The names of a callgrind file's functions or object files, which it gives
/// once with a number (`fn=(12) malloc`) and then by the number alone
/// (`fn=(12)`).
#[derive(Default)]
struct Names(std::collections::HashMap<String, String>);

impl Names {
    /// The name `spec` (what follows `fn=`, `cfn=`, `ob=`...) stands for.
    fn of(&mut self, spec: &str) -> String {
        let spec = spec.trim();
        match spec.strip_prefix('(').and_then(|r| r.split_once(')')) {
            Some((id, rest)) if !rest.trim().is_empty() => {
                self.0.insert(id.to_owned(), rest.trim().to_owned());
                rest.trim().to_owned()
            }
            Some((id, _)) => self.0.get(id).cloned().unwrap_or_else(|| id.to_owned()),
            None => spec.to_owned(),
        }
    }
}

/// The size of the code a call runs: the distinct 64-byte lines of machine
/// code (per object file) whose instructions ran, in all, at least `n`
/// times over the `n` counted calls (once per call on average). On a
/// loopback benchmark the server's process runs on the client's CPU between
/// every statement and evicts the client's code from the CPU caches, so
/// each of these lines is fetched again on every call: a cost in time that
/// the instruction count does not show (BENCHMARKS.md, "Where the overhead
/// is now", measures what such code costs).
///
/// Reads the file's instructions with [`instruction_costs`].
pub fn code_lines(text: &str, n: u64) -> u64 {
    let mut per_line: HashMap<(Rc<str>, u64), u64> = HashMap::new();
    for (object, address, cost) in instruction_costs(text) {
        *per_line.entry((object, address / 64)).or_default() += cost;
    }
    per_line.values().filter(|&&cost| cost >= n).count() as u64
}

/// Every cost line of a callgrind file written with `--dump-instr=yes
/// --compress-pos=no`, as (object file, instruction address, instructions
/// run there): a cost line starts with the instruction's address (`0x...`),
/// then the other position columns, then the instructions; `ob=` names the
/// object file of the lines that follow (a name may be given first on a
/// `cob=` line); the line after `calls=` holds a call's inclusive cost and
/// is skipped.
fn instruction_costs(text: &str) -> impl Iterator<Item = (Rc<str>, u64, u64)> + '_ {
    let positions = text
        .lines()
        .find_map(|l| l.strip_prefix("positions:"))
        .map_or(1, |p| p.split_whitespace().count());
    let mut objects = Names::default();
    let mut object: Rc<str> = "".into();
    let mut after_calls = false;
    text.lines().filter_map(move |line| {
        if let Some(spec) = line.strip_prefix("ob=") {
            object = objects.of(spec).into();
        } else if let Some(spec) = line.strip_prefix("cob=") {
            objects.of(spec);
        } else if line.starts_with("calls=") {
            after_calls = true;
        } else if let Some(hex) = line.strip_prefix("0x") {
            if std::mem::take(&mut after_calls) {
                return None;
            }
            let mut fields = hex.split_whitespace();
            let address = fields
                .next()
                .and_then(|a| u64::from_str_radix(a, 16).ok())?;
            let cost = fields
                .nth(positions - 1)
                .and_then(|c| c.parse::<u64>().ok())?;
            return Some((object.clone(), address, cost));
        }
        None
    })
}

/// The locked instructions a call runs: those with a `lock` prefix, and
/// `xchg` with memory, which locks without one. Each is a full barrier
/// that waits for the CPU's stores to drain, some tens of cycles where an
/// ordinary instruction takes one or less: a cost the instruction count
/// does not show. An atomic read-modify-write (a reference count, a
/// lock's acquire and release, a shared counter) is one; a relaxed load or
/// store is none.
///
/// Reads the file's instructions with [`instruction_costs`];
/// `locked(object)` gives the addresses of an object file's locked
/// instructions, which callgrind's addresses match. `None` if `locked`
/// cannot read an object in which instructions ran.
pub fn locked_instructions(text: &str, locked: &mut dyn FnMut(&str) -> Addresses) -> Option<u64> {
    // The current object and its locked addresses (`None` if unreadable).
    let mut current: Option<(Rc<str>, Addresses)> = None;
    let mut count = 0;
    for (object, address, cost) in instruction_costs(text) {
        if current.as_ref().is_none_or(|(o, _)| *o != object) {
            // Code of no file (valgrind's own redirection stubs, a few
            // instructions per call) holds no locked instruction of the
            // program's.
            let addresses = match &*object {
                "???" => Some(Rc::default()),
                name => locked(name),
            };
            current = Some((object, addresses));
        }
        match current.as_ref().and_then(|(_, a)| a.as_ref()) {
            Some(set) if set.contains(&address) => count += cost,
            Some(_) => {}
            // An instruction that ran in an object that cannot be read.
            None if cost > 0 => return None,
            None => {}
        }
    }
    Some(count)
}

/// The addresses of an object file's locked instructions, if it could be
/// read.
pub type Addresses = Option<Rc<HashSet<u64>>>;

/// The addresses of the locked instructions of object files, read with
/// `objdump -d` once per file.
#[derive(Default)]
struct LockedAddresses(HashMap<String, Addresses>);

impl LockedAddresses {
    fn of(&mut self, object: &str) -> Addresses {
        self.0
            .entry(object.to_owned())
            .or_insert_with(|| {
                let out = Command::new("objdump")
                    .args(["-d", "--no-show-raw-insn", object])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())?;
                Some(Rc::new(locked_in_disassembly(&String::from_utf8_lossy(
                    &out.stdout,
                ))))
            })
            .clone()
    }
}

/// The addresses of the locked instructions in `objdump -d` output (AT&T
/// syntax: `  4a2f1:\tlock cmpxchg %edx,(%rdi)`, `xchg %eax,(%rdi)`).
pub fn locked_in_disassembly(text: &str) -> HashSet<u64> {
    text.lines()
        .filter_map(|line| {
            let (address, instruction) = line.split_once(':')?;
            let address = u64::from_str_radix(address.trim(), 16).ok()?;
            let instruction = instruction.trim();
            let locked = instruction.starts_with("lock ")
                || (instruction.starts_with("xchg") && instruction.contains('('));
            locked.then_some(address)
        })
        .collect()
}

/// The data a call touches, as lines fetched: the read and write misses of
/// the small first-level data cache that [`DATA_CACHE`] simulates. A
/// loopback server runs on the client's CPU between every two statements
/// and evicts what the client touched; in a cache of 32 lines almost nothing
/// survives from one statement to the next either, so its misses count about
/// the lines of data (the stack, the heap, statics, thread-locals) fetched
/// again after each round trip. A model, not a measurement of the CPU (whose
/// caches keep some lines, and prefetch others): it compares variants,
/// which is what it is for.
///
/// Reads the file's `events:` line and its `totals:` (or `summary:`) line.
pub fn data_lines(text: &str) -> Option<u64> {
    let events: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("events:"))?
        .split_whitespace()
        .collect();
    let totals = totals(text)?;
    let event = |name: &str| totals.get(events.iter().position(|e| *e == name)?).copied();
    Some(event("D1mr")? + event("D1mw")?)
}

/// The smoke run's check of this file's readers, on a callgrind file written
/// by hand (the format of `--dump-instr=yes --compress-pos=no` with the
/// cache simulation on): what each must find in it.
pub fn check_readers() -> Result<(), String> {
    const FILE: &str = "\
positions: instr line
events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
summary: 3110 40 20 5 7 3 2 1 1
ob=(1) /bin/app
fn=(1) main
0x1000 10 1000 10 5
0x1004 10 1000
0x1040 11 1000 30 15 5 7 3
0x1080 12 10
cfn=(2) malloc
calls=3 0x2000
0x1084 12 100
fn=(2)
0x2000 1 100
";
    let checks = [
        // Lines 0x1000 (2000 instructions) and 0x1040 (1000) ran at least
        // once per call over 1000 calls; 0x1080 (10) did not; the line
        // after `calls=` is the call's inclusive cost, not an instruction.
        ("code_lines", Some(code_lines(FILE, 1000)), Some(2)),
        ("data_lines", data_lines(FILE), Some(10)),
        ("total_instructions", total_instructions(FILE), Some(3110)),
        (
            "allocator instructions",
            Some(allocator_share(FILE).instructions),
            Some(100),
        ),
        (
            "allocator calls",
            Some(allocator_share(FILE).calls),
            Some(3),
        ),
        (
            "data_lines without the cache simulation",
            data_lines("events: Ir\nsummary: 5\n"),
            None,
        ),
    ];
    // Object 2 is named where it is first called (`cob=`); its locked
    // instruction at 0x2004 ran 7 times, the one of /bin/app at 0x1004
    // 1000 times; the line after `calls=` is a call's cost, not an
    // instruction at 0x1008; code of no file (`???`) holds none.
    const LOCKED: &str = "\
positions: instr line
events: Ir
ob=(1) /bin/app
fn=(1) main
0x1000 10 1000
0x1004 10 1000
cob=(2) /lib/libc.so
cfn=(2) pthread_mutex_lock
calls=7 0x2000
0x1008 10 7000
ob=(2)
fn=(2)
0x2000 1 7
0x2004 1 7
ob=(3) ???
fn=(3) 0x1004
0x1004 0 5
";
    let disassembly = "\
0000000000001000 <main>:
    1000:\tmov    %rdi,%rax
    1004:\tlock incq (%rax)
    1008:\tcall   2000 <pthread_mutex_lock>
    2004:\txchg   %eax,(%rdi)
    2008:\txchg   %ax,%ax
";
    let mut sets = |object: &str| -> Addresses {
        let set = locked_in_disassembly(disassembly);
        match object {
            "/bin/app" | "/lib/libc.so" => Some(Rc::new(set)),
            _ => None,
        }
    };
    let mut found: Vec<u64> = locked_in_disassembly(disassembly).into_iter().collect();
    found.sort_unstable();
    if found != [0x1004, 0x2004] {
        return Err(format!(
            "callgrind reader locked_in_disassembly: {found:x?}, not [1004, 2004]"
        ));
    }
    let locked_checks = [
        (
            "locked_instructions",
            locked_instructions(LOCKED, &mut sets),
            Some(1007),
        ),
        (
            "locked_instructions in an unreadable object",
            locked_instructions(LOCKED, &mut |o: &str| sets(o).filter(|_| o == "/bin/app")),
            None,
        ),
    ];
    for (what, got, want) in checks.into_iter().chain(locked_checks) {
        if got != want {
            return Err(format!("callgrind reader {what}: {got:?}, not {want:?}"));
        }
    }
    Ok(())
}

/// The smoke run's check of the children, without valgrind: each variant
/// makes `n` calls of each transaction in a child process, which must exit
/// cleanly.
pub fn smoke(backend: Backend, database: &dyn Fn(&str) -> String, n: u64) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for txn in [Txn::PointRead, Txn::Rmw] {
        for (variant, _) in variants(backend) {
            smoke_child(&exe, backend, variant, txn, n, database)?;
        }
    }
    Ok(())
}

fn smoke_child(
    exe: &Path,
    backend: Backend,
    variant: &str,
    txn: Txn,
    n: u64,
    database: &dyn Fn(&str) -> String,
) -> Result<(), String> {
    let name = format!("{}_{variant}", txn.key());
    let status = Command::new(exe)
        .args(child_args(backend, variant, txn, n, &database(&name)))
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "callgrind child {} {} {variant}: {status}",
            backend.key(),
            txn.key()
        ));
    }
    Ok(())
}

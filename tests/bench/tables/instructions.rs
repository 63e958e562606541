//! Instructions per transaction on the client, counted by callgrind in one
//! run (they repeat within a few instructions from run to run).

use super::table;
use crate::callgrind::{variants, MALLOC_TUNABLES, WARMUP};
use crate::contenders::{Ping, Txn};
use crate::report::Context;
use crate::run::CALLGRIND_CALLS;

pub fn section(ctx: &Context) -> Option<String> {
    let counts = ctx.runs.counts();
    if counts.is_empty() {
        return None;
    }
    let mut out = String::new();
    for (txn, what) in [
        (Txn::PointRead, "Point-read"),
        (Txn::Rmw, "Read-modify-write"),
    ] {
        let mine: Vec<_> = counts.iter().filter(|c| c.txn == txn).collect();
        if mine.is_empty() {
            continue;
        }
        // Rows: every variant of any backend, in the order of the first
        // backend that has it.
        let mut variant_rows: Vec<(&str, &str)> = Vec::new();
        for c in &mine {
            for v in variants(c.backend) {
                if !variant_rows.iter().any(|r| r.0 == v.0) {
                    variant_rows.push(v);
                }
            }
        }
        let rows: Vec<Vec<String>> = variant_rows
            .iter()
            .map(|(key, label)| {
                let mut row = vec![label.to_string()];
                for c in &mine {
                    let floor = ctx.begins.matching(c.backend, txn, Ping::No);
                    let base = c.get(floor.key()).unwrap_or(f64::NAN);
                    let outside = c
                        .outside_allocator(key)
                        .zip(c.outside_allocator(floor.key()))
                        .map_or(String::new(), |(o, b)| format!("; {:+.0}", o - b));
                    let lines = c
                        .code_lines(key)
                        .zip(c.code_lines(floor.key()))
                        .map_or(String::new(), |(l, b)| {
                            format!(" · {l:.0} lines ({:+.0})", l - b)
                        });
                    let data = c
                        .data_lines(key)
                        .zip(c.data_lines(floor.key()))
                        .map_or(String::new(), |(d, b)| {
                            format!(" · {d:.0} data ({:+.0})", d - b)
                        });
                    let locked = c
                        .locked(key)
                        .zip(c.locked(floor.key()))
                        .map_or(String::new(), |(l, b)| {
                            format!(" · {l:.0} locked ({:+.0})", l - b)
                        });
                    row.push(c.get(key).map_or("—".into(), |n| {
                        format!("{n:.0} ({:+.0}{outside}){lines}{data}{locked}", n - base)
                    }));
                }
                row
            })
            .collect();
        let mut header = vec!["variant".to_string()];
        header.extend(mine.iter().map(|c| c.backend.label().to_string()));
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        out += &format!("{what}:\n\n{}\n", table(&header, &rows));
    }
    Some(
        format!(
            "### Instructions per transaction (client side)\n\n\
         Callgrind, {CALLGRIND_CALLS} counted calls per variant after {WARMUP} uncounted, in one \
         run, with `GLIBC_TUNABLES={MALLOC_TUNABLES}` (see What is measured). In parentheses: the \
         difference to the matching floor, the hand-written variant without ping that sends the \
         same BEGIN as `#[db_txn]`; after the semicolon, the same difference with the \
         allocator's instructions (malloc, calloc, realloc, free and what they call) left out of \
         both. The variants make the same allocations (the goals list their allocator calls per \
         transaction), but what an allocation costs inside malloc depends on the heap's layout, \
         which differs from process to process. After the dot: the distinct 64-byte lines of \
         machine code run on every call (`callgrind::code_lines`), and their difference to the \
         floor: code the CPU fetches again on each call once the server's process has run on \
         its CPU (see Where the overhead is now). After the second dot: the lines of data \
         (stack, heap, statics) fetched per call, counted as the misses of a data cache of 32 \
         lines that callgrind simulates (`callgrind::data_lines`): a model of what the client fetches \
         again after each round trip, and their difference to the floor. After the third dot: \
         the locked instructions run per call (`lock`-prefixed, and `xchg` with memory; \
         `callgrind::locked_instructions`, read with `objdump -d`): atomic read-modify-writes \
         such as a reference count, a lock's acquire and release or a shared counter, each a \
         full barrier that costs some tens of cycles where most instructions cost one or less, \
         and their difference to the floor.\n\n{}",
            out.trim_end()
        ) + "\n",
    )
}

//! A calibration, not a contender: with `DB_TXN_BENCH_PAD_FLOOR=1` in the
//! environment, the hand-written contenders also run [`run`] on every
//! transaction: 80 small functions, one after the other, that no other
//! contender runs (about 100 more lines of machine code per call and 1,650
//! more instructions). How much that slows the floor tells what a line of
//! code touched on every call costs on this machine, beside what an
//! instruction costs (BENCHMARKS.md, "Where the overhead is now"). A run
//! with it set compares `#[db_txn]` with padded floors, and its report says
//! so.

/// The environment variable that turns the padding on.
pub const ENV: &str = "DB_TXN_BENCH_PAD_FLOOR";

/// Whether this process pads the floors (read once, at set-up).
pub fn enabled() -> bool {
    std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// One of the 80: a few multiplications and rotations on `x`, different per
/// `N` so that no two are merged into one.
#[inline(never)]
fn step<const N: u64>(x: u64) -> u64 {
    let mut y = std::hint::black_box(x);
    y = y.wrapping_mul(N | 1).rotate_left((N % 63) as u32) ^ N;
    y = y.wrapping_mul(0x0123_4567 ^ N).rotate_left(11) ^ (N << 3);
    std::hint::black_box(y.wrapping_add(N))
}

macro_rules! steps {
    ($($n:literal)*) => {
        static STEPS: &[fn(u64) -> u64] = &[$(step::<$n>),*];
    };
}

steps!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30
       31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58
       59 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80);

/// All 80 steps on `x`.
#[inline(never)]
pub fn run(x: u64) -> u64 {
    STEPS.iter().fold(x, |acc, step| step(acc))
}

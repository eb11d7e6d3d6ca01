//! What the side-by-side benchmarks (`pair`, `proxy`, `tls`) share: their positional
//! arguments, medians and spreads of interleaved runs, and the CPU time of the runtime
//! under test. Included by each with `#[path]`; not a benchmark itself.

#![allow(dead_code)] // each benchmark uses its own part

/// The positional arguments (flags such as cargo's `--bench` left out), parsed one by
/// one with `defaults` for those missing or malformed.
pub fn positional<const N: usize>(defaults: [f64; N]) -> [f64; N] {
    let given: Vec<f64> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().unwrap_or(f64::NAN))
        .collect();
    let mut out = defaults;
    for (slot, value) in out.iter_mut().zip(given) {
        if value.is_finite() {
            *slot = value;
        }
    }
    out
}

/// The median of `values` (the upper one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The smallest and the largest of `values`.
pub fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

/// User plus system CPU seconds of this process's threads whose name starts with
/// `prefix` (a runtime's `thread_name`; `/proc` keeps 15 bytes of it).
pub fn thread_cpu_seconds(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !name.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // The fields after the command's closing parenthesis; utime and stime are the
        // 12th and 13th of them.
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        for field in [11, 12] {
            ticks += fields
                .get(field)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ticks as f64 / 100.0
}

//! Facts about this process read from Linux's `/proc` (benchmarks compare CPU time, which
//! varies less than wall time on a shared machine).

/// User + system CPU seconds this process has used so far (`/proc/self/stat`); `NaN` where it
/// cannot be read.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // The fields after the command name (in parentheses, and it may hold spaces).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name and state.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // Clock ticks: USER_HZ is 100 on every Linux target.
    (ticks(11) + ticks(12)) / 100.0
}

//! The memory a piece of work adds to this process: the growth of its peak resident set
//! (`VmHWM`), reset through `/proc/self/clear_refs` before the work starts. Shared by the
//! memory test and the memory benchmark.

/// A field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .expect("the field is in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a size in kB");
    kib * 1024
}

/// Runs `work` and says, with its result, how many bytes it raised the peak resident set
/// above what the process held when it started.
pub fn peak_growth<T>(work: impl FnOnce() -> T) -> (T, u64) {
    // "5" resets the peak resident set to the current one
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs");
    let before = status_bytes("VmRSS:");
    let out = work();
    (out, status_bytes("VmHWM:").saturating_sub(before))
}

//! Crash points for the kill-and-rerun tests: the process dies at once
//! (`abort`, no destructor runs, nothing more is flushed or committed) when
//! it reaches the named point for the N-th time.
//!
//! `TARGET_POSTGRES_FAILPOINT=<name>[:<n>]` (n defaults to 1) selects the
//! point. It is read only in debug builds (the test binaries); a release
//! build compiles [`hit`] to nothing, so no setting can crash a user's run.
//!
//! The points, in the order a batch meets them:
//! - `state-read`: a STATE line was read, before the converter handles it
//!   (records before it buffered or sent, the state not yet considered);
//! - `copy-mid`: after the first slice of a batch's COPY data was sent,
//!   before the COPY is finished;
//! - `before-commit`: the batch's COPY and merge ran, the transaction is
//!   not committed;
//! - `committed`: the batch is committed, the states it releases are not
//!   printed;
//! - `state-print`: a state is about to be written to stdout.

/// Dies here if this is the selected point's selected hit (debug builds).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    selected::hit(name);
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
mod selected {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    pub fn hit(name: &str) {
        let spec = SPEC.get_or_init(|| {
            let v = std::env::var("TARGET_POSTGRES_FAILPOINT").ok()?;
            let (point, n) = match v.split_once(':') {
                Some((p, n)) => (p.to_owned(), n.parse().ok()?),
                None => (v, 1),
            };
            Some((point, n))
        });
        let Some((point, n)) = spec else { return };
        if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("failpoint {name} reached: aborting");
            std::process::abort();
        }
    }
}

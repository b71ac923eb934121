//! [`wait_until`]: the one way tests wait for something the server (or a
//! program under test) does on its own time — a bounded poll, never a bare
//! sleep.
//!
//! Owns nothing but the loop; knows nothing of what is awaited.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_until`] checks.
const EVERY: Duration = Duration::from_millis(20);

/// Checks `check` every 20 ms until it is true; panics naming `what` once
/// `limit` has passed without it.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        tokio::time::sleep(EVERY).await;
    }
}

//! Guards against hanging forever: [`within`] and the limit used around
//! whole operations, [`PATIENCE`]. They are not timing assertions.

use std::{future::IntoFuture, time::Duration};

/// Fails the test if `future` takes longer than `limit`: a guard against
/// hanging forever, not a timing assertion.
pub async fn within<F: IntoFuture>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future.into_future()).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Guard used around whole operations: long enough for a loaded CI machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

//! Waiting for a condition instead of sleeping for a while: poll until it
//! holds, and past a deadline fail naming what was awaited and what was last
//! seen. A test that sleeps "long enough" is slow when the machine is idle
//! and flaky when it is not; one that waits on the condition is neither.
//!
//! This file needs only std and tokio: the shim's tests compile it in with
//! `#[path]`, since they cannot depend on this crate.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How often a condition is checked.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it gives `Ok(value)` and returns the value; after
/// `timeout` panics with `what` and the last `Err` (what was seen instead).
pub async fn until<T, E: Debug>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(seen) if Instant::now() > deadline => {
                panic!("waited {timeout:?} for {what}; last saw {seen:?}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// [`until`] for a condition that needs no await.
pub async fn until_now<T, E: Debug>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    until(what, timeout, async || check()).await
}

/// [`until_now`] for a test without an async runtime: blocks the thread.
pub fn until_blocking<T, E: Debug>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(seen) if Instant::now() > deadline => {
                panic!("waited {timeout:?} for {what}; last saw {seen:?}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// `Ok(())` when `holds`, else `Err(seen)`: a bool condition for [`until`]
/// and the others, with what was seen instead for the failure message.
pub fn check<S>(holds: bool, seen: S) -> Result<(), S> {
    if holds {
        Ok(())
    } else {
        Err(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let mut n = 0;
        let got = until_now("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            if n >= 3 {
                Ok(n)
            } else {
                Err(n)
            }
        })
        .await;
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "for the impossible; last saw \"nope\"")]
    fn names_what_it_waited_for_and_what_it_saw() {
        until_blocking("the impossible", Duration::from_millis(100), || {
            check(false, "nope")
        })
    }
}

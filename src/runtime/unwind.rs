//! Panics as values. A panic while polling a reconcile becomes an `Err` of that reconcile,
//! so one CR that trips a bug fails visibly (status, metrics, log) while the operator
//! goes on serving every other CR. Release builds unwind for this (`panic = "unwind"`).

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The payload of a caught panic.
pub type Panic = Box<dyn Any + Send>;

/// Wraps `future` so a panic while polling it resolves to `Err(panic)`.
pub fn catch_panic<F: Future>(future: F) -> CatchPanic<F> {
    CatchPanic {
        inner: Box::pin(future),
    }
}

/// See [`catch_panic`]. After a panic the inner future is never polled again.
pub struct CatchPanic<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Unwind safety: callers keep no state that a half-done poll could leave broken
        // (shared state sits behind mutexes whose poisoning is ignored, or atomics).
        match catch_unwind(AssertUnwindSafe(|| self.inner.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// A panic payload's message, when it is a string (as `panic!` makes it).
pub fn message(panic: &Panic) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_and_a_value_passes_through() {
        assert_eq!(catch_panic(async { 7 }).await.ok(), Some(7));
        let caught = catch_panic(async {
            tokio::task::yield_now().await;
            let v: Vec<u8> = Vec::new();
            v[3]
        })
        .await
        .unwrap_err();
        assert!(
            message(&caught).contains("index out of bounds"),
            "{}",
            message(&caught)
        );
    }
}

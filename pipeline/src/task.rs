//! Waiting for spawned work.

/// The value of finished work (a tokio task or a thread). A panic in it is
/// raised again here, as if the work had run inline: a panic is a bug, not
/// an error to report. pipe never aborts the tasks it waits for, so the one
/// other outcome of a task, cancellation, happens only when the runtime shuts
/// down, and then nothing waits any more.
pub(crate) trait Joined<T> {
    /// The work's value, or its panic raised again.
    fn joined(self) -> T;
}

impl<T> Joined<T> for Result<T, tokio::task::JoinError> {
    fn joined(self) -> T {
        match self {
            Ok(value) => value,
            Err(e) => match e.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => panic!("a task pipe waits for was cancelled: {e}"),
            },
        }
    }
}

impl<T> Joined<T> for std::thread::Result<T> {
    fn joined(self) -> T {
        self.unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }
}

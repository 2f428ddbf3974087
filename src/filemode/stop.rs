//! What stops `apply` early: its `--timeout`, SIGINT and SIGTERM.

use tokio::time::Instant;

/// Why `apply` stopped before every binding was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// `--timeout` passed, possibly with AWS calls unanswered.
    Deadline,
    Signal(Interrupt),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Interrupt {
    Int,
    Term,
}

impl Interrupt {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Int => "SIGINT",
            Self::Term => "SIGTERM",
        }
    }

    /// 128 + the signal number, as a shell reports a process the signal ended.
    pub(super) fn exit_code(self) -> i32 {
        match self {
            Self::Int => 130,
            Self::Term => 143,
        }
    }
}

/// SIGINT and SIGTERM, caught for as long as `apply` runs.
pub(super) struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub(super) fn catch() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let catch = |kind: SignalKind| {
                signal(kind)
                    .map_err(|e| tracing::warn!(error = %e, "cannot catch a signal; it ends apply without a summary"))
                    .ok()
            };
            Self {
                int: catch(SignalKind::interrupt()),
                term: catch(SignalKind::terminate()),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next signal (cancel-safe).
    pub(super) async fn recv(&mut self) -> Interrupt {
        #[cfg(unix)]
        {
            async fn one(s: Option<&mut tokio::signal::unix::Signal>) {
                if let Some(s) = s
                    && s.recv().await.is_some()
                {
                    return;
                }
                std::future::pending().await
            }
            let Self { int, term } = self;
            tokio::select! {
                () = one(int.as_mut()) => Interrupt::Int,
                () = one(term.as_mut()) => Interrupt::Term,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            Interrupt::Int
        }
    }
}

/// `f`, unless the deadline passes or a signal arrives first: then it is
/// dropped (an AWS call in it is abandoned) and the reason returned.
pub(super) async fn until<F: std::future::Future>(
    deadline: Instant,
    signals: &mut Signals,
    f: F,
) -> Result<F::Output, Stop> {
    tokio::select! {
        biased;
        out = f => Ok(out),
        s = signals.recv() => Err(Stop::Signal(s)),
        () = tokio::time::sleep_until(deadline) => Err(Stop::Deadline),
    }
}

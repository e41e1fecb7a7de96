//! Log lines captured in the test, as keygate writes them (JSON lines). The subscriber is the
//! current thread's: use a current-thread runtime, so the server's tasks log under it.

pub use keygate::logging::Captured;

/// Everything logged on this thread until the guard drops.
pub fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber =
        tracing_subscriber::fmt().event_format(keygate::logging::JsonLine).with_writer(move || writer.clone()).finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

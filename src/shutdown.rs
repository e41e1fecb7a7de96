//! Graceful shutdown (SPEC §9), in one place. The sequence, from the signal on:
//!
//! 1. **Draining** (at once). `/readyz` answers 503, so a load balancer takes the instance out
//!    of rotation; the listeners still accept and serve, but every connection is on its way
//!    out: an HTTP/1 response says `Connection: close`, an HTTP/2 connection is sent `GOAWAY`.
//! 2. **Stopped** (`server.shutdown_delay_ms` later; at once by default). The listeners take
//!    what the kernel has already queued, then close; open WebSockets are sent a close frame;
//!    background work (the change feed, the sweepers) stops.
//! 3. **Drained.** In-flight requests and upgraded connections finish, for at most
//!    `server.shutdown_grace_ms` (`crate::edge` waits for their permits); then pending
//!    `lastUsedAt` times are written and the store is closed (`App::serve`).
//!
//! [`ShutdownSwitch`] is the sending side, owned by the app; [`Shutdown`] is what the listeners,
//! their connections, the public routes and the relays watch.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Where shutdown stands, for a listener, its connections and the public routes.
#[derive(Clone)]
pub struct Shutdown {
    /// True from the shutdown signal on: connections close after their current request.
    pub draining: watch::Receiver<bool>,
    /// True once the listener is to close; in-flight requests then finish. It turns true only
    /// after `draining` has (it may be the same channel).
    pub stopped: watch::Receiver<bool>,
}

/// The sending side of [`Shutdown`]: turns draining, then stopped.
#[derive(Clone)]
pub struct ShutdownSwitch {
    draining: watch::Sender<bool>,
    stopped: watch::Sender<bool>,
}

impl Default for ShutdownSwitch {
    fn default() -> Self {
        Self { draining: watch::Sender::new(false), stopped: watch::Sender::new(false) }
    }
}

impl ShutdownSwitch {
    pub fn watch(&self) -> Shutdown {
        Shutdown { draining: self.draining.subscribe(), stopped: self.stopped.subscribe() }
    }

    /// True once stopped: what background work and upgraded connections watch.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.subscribe()
    }

    /// Stops at once (draining too, should it not have begun).
    pub fn stop(&self) {
        let _ = self.draining.send(true);
        let _ = self.stopped.send(true);
    }

    /// Runs the sequence once `signal` completes: draining at once, stopped `delay` later.
    pub fn spawn_sequence(&self, signal: impl Future<Output = ()> + Send + 'static, delay: Duration) {
        let switch = self.clone();
        tokio::spawn(async move {
            signal.await;
            let _ = switch.draining.send(true);
            if !delay.is_zero() {
                tracing::info!(
                    delay_ms = delay.as_millis() as u64,
                    "draining: /readyz answers 503 until the listeners close"
                );
                tokio::time::sleep(delay).await;
            }
            let _ = switch.stopped.send(true);
        });
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            let _ = interrupt.await;
            return;
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing in-flight requests");
}

//! Relaying an upgraded connection (SPEC §7, §17): bytes both ways, unchanged, until either
//! side closes — or keygate closes it, with a close frame of its own between two frames:
//!
//! - 1008 (policy violation) as soon as the handshake would be refused now: a change to its
//!   key, tenant or route wakes the relay ([`super::open`]), and the clock wakes it when its
//!   key or session token expires; and once `proxy.websocket_max_lifetime_ms` has passed;
//! - 1001 (going away) when nothing passed for `proxy.websocket_idle_timeout_ms`, or when
//!   shutdown's grace is over.

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::frames::{FrameCursor, GOING_AWAY, POLICY_VIOLATION, close_frame};
use super::open::{Handshaken, OpenSockets, Slot, Verdict};
use crate::time::now_millis;

/// After a judgement the store could not make, how long until the next try.
const UNDECIDED_RETRY: Duration = Duration::from_secs(1);

/// How long keygate's close frames get to be written before the sockets are closed anyway.
const CLOSE_WRITE: Duration = Duration::from_secs(1);

/// What every relay of a proxy is held to.
#[derive(Clone)]
pub(crate) struct RelaySettings {
    pub idle: Duration,
    pub max_lifetime: Duration,
    /// `server.shutdown_grace_ms`: what an upgraded connection gets once shutdown begins.
    pub drain: Duration,
    /// Turns true when shutdown begins.
    pub stopping: watch::Receiver<bool>,
}

/// One upgraded connection's place and what it asked.
pub(super) struct Watched {
    pub(super) sockets: std::sync::Arc<OpenSockets>,
    pub(super) slot: Slot,
    pub(super) handshake: Handshaken,
}

/// Why keygate closes a connection: the close code and its reason.
struct Closing(u16, &'static str);

/// Relays the two upgraded connections until either side ends or keygate closes them.
pub(super) async fn relay(client: OnUpgrade, upstream: OnUpgrade, settings: RelaySettings, watched: Watched) {
    let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) else { return };
    let (mut client_read, mut client_write) = tokio::io::split(TokioIo::new(client));
    let (mut upstream_read, mut upstream_write) = tokio::io::split(TokioIo::new(upstream));
    let (mut from_client, mut from_upstream) = (vec![0; 16 * 1024], vec![0; 16 * 1024]);
    let (mut to_upstream, mut to_client) = (FrameCursor::default(), FrameCursor::default());
    let RelaySettings { idle, max_lifetime, drain, mut stopping } = settings;
    let far = Duration::from_secs(86_400 * 365);
    let lifetime = tokio::time::sleep(max_lifetime);
    let quiet = tokio::time::sleep(idle);
    // When the clock alone ends the verdict (the key's or session's expiry).
    let clock = tokio::time::sleep(far);
    tokio::pin!(lifetime, quiet, clock);
    let mut draining = false;
    // Judged once more at the start: a change that came while the upstream answered the handshake.
    let mut rejudge = true;
    let closing = loop {
        if rejudge {
            rejudge = false;
            match watched.sockets.judge(&watched.handshake).await {
                Verdict::Allowed(ends) => clock.as_mut().reset(ends.map_or(Instant::now() + far, instant_of)),
                Verdict::Refused(code) => {
                    crate::metrics::websocket_closed(code.as_str());
                    break Some(Closing(POLICY_VIOLATION, code.as_str()));
                }
                Verdict::Undecided => clock.as_mut().reset(Instant::now() + UNDECIDED_RETRY),
            }
        }
        let passed = tokio::select! {
            read = client_read.read(&mut from_client) => match read {
                Ok(n) if n > 0 => {
                    to_upstream.advance(&from_client[..n]);
                    upstream_write.write_all(&from_client[..n]).await.is_ok()
                }
                _ => break None,
            },
            read = upstream_read.read(&mut from_upstream) => match read {
                Ok(n) if n > 0 => {
                    to_client.advance(&from_upstream[..n]);
                    client_write.write_all(&from_upstream[..n]).await.is_ok()
                }
                _ => break None,
            },
            () = watched.slot.recheck.notified() => {
                rejudge = true;
                continue;
            }
            () = &mut clock => {
                rejudge = true;
                continue;
            }
            () = &mut lifetime => break Some(Closing(POLICY_VIOLATION, "the connection reached its maximum lifetime")),
            () = &mut quiet => break Some(Closing(GOING_AWAY, if draining { "shutting down" } else { "idle" })),
            changed = stopping.changed(), if !draining => {
                // The sender gone is the app gone: drain as for a shutdown.
                if changed.is_err() || *stopping.borrow() {
                    draining = true;
                    quiet.as_mut().reset(Instant::now() + drain);
                }
                continue;
            }
        };
        if !passed {
            break None;
        }
        if !draining {
            quiet.as_mut().reset(Instant::now() + idle);
        }
    };
    if let Some(Closing(code, reason)) = closing {
        // Between two frames only: a close frame inside another frame would corrupt the stream.
        let to_client = to_client.at_boundary().then(|| close_frame(code, reason, None));
        let to_upstream = to_upstream.at_boundary().then(|| close_frame(code, reason, Some(mask())));
        let _ = tokio::time::timeout(
            CLOSE_WRITE,
            futures_util::future::join(send(&mut client_write, to_client), send(&mut upstream_write, to_upstream)),
        )
        .await;
    }
    let _ = tokio::join!(client_write.shutdown(), upstream_write.shutdown());
    drop(watched);
}

async fn send<T: AsyncRead + AsyncWrite>(to: &mut WriteHalf<T>, frame: Option<Vec<u8>>) {
    if let Some(frame) = frame {
        let _ = to.write_all(&frame).await;
    }
}

/// A client's frames are masked with a key the proxies on the way cannot predict (RFC 6455 §5.3).
fn mask() -> [u8; 4] {
    let mut mask = [0; 4];
    let _ = getrandom::fill(&mut mask);
    mask
}

fn instant_of(at: crate::time::Millis) -> Instant {
    Instant::now() + Duration::from_millis(u64::try_from(at - now_millis()).unwrap_or(0))
}

//! `serve` and `quickstart`: listen, serve until SIGTERM or Ctrl-C, and reload on SIGHUP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use keygate::app::{App, StartError};
use keygate::config::Config;
use keygate::shutdown;

/// What SIGHUP does.
pub(crate) enum Hangup {
    /// Reload the configuration from this file (if any) and the environment, as at start.
    Reload(Option<PathBuf>),
    /// Nothing but a log line.
    Ignore,
}

/// Tells `listening` where `app` listens, and serves until SIGTERM or Ctrl-C.
pub(crate) async fn serve(
    app: App,
    listeners: keygate::app::Listeners,
    hangup: Hangup,
    listening: impl FnOnce(SocketAddr, Option<SocketAddr>),
) -> Result<ExitCode, StartError> {
    let address = |listener: &Option<tokio::net::TcpListener>| listener.as_ref().and_then(|l| l.local_addr().ok());
    let (public, admin, decision) =
        (listeners.public.local_addr()?, address(&listeners.admin), address(&listeners.decision));
    tracing::info!(
        %public,
        admin = admin.map(|a| a.to_string()),
        decision = decision.map(|a| a.to_string()),
        "keygate listening"
    );
    listening(public, admin);
    app.serve_reloading(listeners, shutdown::signal(), |reloader| on_hangup(reloader, hangup)).await?;
    Ok(ExitCode::SUCCESS)
}

/// Each SIGHUP reloads the configuration (or, with [`Hangup::Ignore`], is logged). One that
/// does not load is refused, with a log line naming the setting, and the running one stays.
fn on_hangup(reloader: std::sync::Arc<keygate::reload::Reloader>, hangup: Hangup) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the configuration will not be reloaded");
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Hangup::Reload(source) = &hangup else {
                    tracing::warn!("SIGHUP: the quickstart does not reload its configuration; restart it instead");
                    continue;
                };
                let loaded = Config::load(source.as_deref(), std::env::vars()).map_err(|e| e.to_string());
                match loaded.and_then(|config| reloader.reload(&config)) {
                    Ok(needing_restart) => {
                        tracing::info!("configuration reloaded");
                        if !needing_restart.is_empty() {
                            let settings = needing_restart.join(", ");
                            tracing::warn!(settings, "changed settings that take effect only after a restart");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "configuration not reloaded: the running one stays"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (reloader, hangup);
}

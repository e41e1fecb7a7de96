//! Run: `cargo run --example orders_app` (listens on 127.0.0.1:3100, or `ORDERS_APP_LISTEN`:
//! 3000 is the quickstart's example page; keygate's store and settings come from the usual
//! configuration: `KEYGATE_CONFIG`, `KEYGATE_*`). Manage tenants and keys with the `keygate`
//! CLI on the same store.

mod app;

use keygate::{App, Config, StartError};

#[tokio::main]
async fn main() -> Result<(), StartError> {
    // JSON lines on stderr, as keygate's own binary logs (`KEYGATE_LOG` filters).
    keygate::logging::init("info");
    let config_file = std::env::var_os("KEYGATE_CONFIG").map(std::path::PathBuf::from);
    let keygate = App::build(Config::load(config_file.as_deref(), std::env::vars())?).await?;
    let background = keygate.start_background();
    let router = app::router(&keygate, app::Orders::default())?;
    let address = std::env::var("ORDERS_APP_LISTEN").unwrap_or_else(|_| "127.0.0.1:3100".to_owned());
    // Worded as `keygate serve` words it: the address, the setting, the cause.
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|error| StartError::from(format!("cannot listen on {address} (ORDERS_APP_LISTEN): {error}")))?;
    tracing::info!(address = %listener.local_addr()?, "orders_app listening");
    axum::serve(listener, router).with_graceful_shutdown(keygate::shutdown_signal()).await?;
    background.stop().await;
    keygate::logging::flush();
    Ok(())
}

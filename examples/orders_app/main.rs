//! Run: `cargo run --example orders_app` (listens on 127.0.0.1:3000; keygate's store and
//! settings come from the usual configuration: `KEYGATE_CONFIG`, `KEYGATE_*`). Manage tenants
//! and keys with the `keygate` CLI on the same store.

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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    tracing::info!(address = %listener.local_addr()?, "orders_app listening");
    axum::serve(listener, router).with_graceful_shutdown(keygate::shutdown_signal()).await?;
    background.stop().await;
    keygate::logging::flush();
    Ok(())
}

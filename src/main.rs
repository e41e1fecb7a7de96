//! The `keygate` command: `serve`, `migrate`, `quickstart`, and tenant/key administration on
//! the configured store (the same operations, validation and answers as the admin API).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use keygate::admin::{Admin, PageQuery};
use keygate::app::{App, StartError, shutdown_signal};
use keygate::config::Config;
use keygate::error::ApiError;
use serde_json::{Map, Value, json};

#[derive(Parser)]
#[command(name = "keygate", version, about = "The access layer of a multi-tenant HTTP API")]
struct Cli {
    /// Configuration file (TOML). Every setting has a default; KEYGATE_<SECTION>_<KEY> overrides.
    #[arg(long, global = true, env = "KEYGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve the public and admin listeners.
    Serve,
    /// Apply pending store migrations and exit.
    Migrate,
    /// Create demo tenants and keys, print ready-to-run curl lines, and serve.
    Quickstart,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage the keys that sign session tokens.
    #[command(subcommand)]
    SigningKey(SigningKeyCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Fill the store with many tenants and keys, for load tests. No secret is printed.
    Seed {
        /// How many keys.
        #[arg(long)]
        keys: usize,
        /// How many tenants (seed-0, seed-1, …) the keys are spread over.
        #[arg(long, default_value_t = 100)]
        tenants: usize,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (file and KEYGATE_* variables) and print the effective
    /// settings as TOML, every default filled in and secrets redacted. Exit code 2 and a
    /// message naming the setting when it is invalid.
    Check,
}

#[derive(Subcommand)]
enum SigningKeyCommand {
    /// List signing keys: which signs, which still verify, which are retired.
    List,
    /// Generate a key of the configured algorithm that signs from now on; older keys keep
    /// verifying until retired.
    Rotate,
    /// Retire a key: sessions it signed stop verifying.
    Retire { kid: String },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Tenant id (generated as ten_… when absent).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: TenantFields,
    },
    /// Show one tenant.
    Get { id: String },
    /// List tenants.
    List(PageArgs),
    /// Change a tenant.
    Update {
        id: String,
        #[command(flatten)]
        fields: TenantFields,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key; its secret is printed this once.
    Create {
        tenant_id: String,
        #[command(flatten)]
        fields: KeyFields,
    },
    /// Show one key.
    Get { id: String },
    /// List a tenant's keys.
    List {
        tenant_id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change a key.
    Update {
        id: String,
        #[command(flatten)]
        fields: KeyFields,
    },
    /// Revoke a key (idempotent).
    Revoke { id: String },
}

#[derive(Args)]
struct PageArgs {
    #[arg(long)]
    limit: Option<String>,
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Args)]
struct RateLimitArgs {
    /// Requests per window (with --window-seconds).
    #[arg(long, requires = "window_seconds")]
    rate_limit: Option<u64>,
    #[arg(long, requires = "rate_limit")]
    window_seconds: Option<u64>,
    /// Remove the rate-limit override.
    #[arg(long, conflicts_with = "rate_limit")]
    clear_rate_limit: bool,
}

#[derive(Args)]
struct TenantFields {
    #[arg(long)]
    name: Option<String>,
    /// active | suspended
    #[arg(long)]
    status: Option<String>,
    /// active | trialing | past_due | cancelled
    #[arg(long)]
    subscription: Option<String>,
    /// An enabled module (repeat for several); replaces the set.
    #[arg(long = "module")]
    modules: Vec<String>,
    /// Remove every module.
    #[arg(long, conflicts_with = "modules")]
    no_modules: bool,
    #[command(flatten)]
    rate: RateLimitArgs,
}

#[derive(Args)]
struct KeyFields {
    #[arg(long)]
    name: Option<String>,
    /// A granted scope (repeat for several); replaces the list.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// An allowed browser origin (repeat for several); replaces the list.
    #[arg(long = "origin")]
    origins: Vec<String>,
    /// Remove every allowed origin.
    #[arg(long, conflicts_with = "origins")]
    no_origins: bool,
    /// RFC 3339 expiry, e.g. 2027-01-01T00:00:00Z.
    #[arg(long)]
    expires_at: Option<String>,
    /// Remove the expiry.
    #[arg(long, conflicts_with = "expires_at")]
    no_expiry: bool,
    #[command(flatten)]
    rate: RateLimitArgs,
}

impl RateLimitArgs {
    fn put(&self, body: &mut Map<String, Value>) {
        if let (Some(limit), Some(window)) = (self.rate_limit, self.window_seconds) {
            body.insert("rateLimit".into(), json!({ "limit": limit, "windowSeconds": window }));
        } else if self.clear_rate_limit {
            body.insert("rateLimit".into(), Value::Null);
        }
    }
}

impl TenantFields {
    fn body(&self, id: Option<&String>) -> Vec<u8> {
        let mut body = Map::new();
        put(&mut body, "id", id);
        put(&mut body, "name", self.name.as_ref());
        put(&mut body, "status", self.status.as_ref());
        put(&mut body, "subscription", self.subscription.as_ref());
        if !self.modules.is_empty() || self.no_modules {
            body.insert("modules".into(), json!(self.modules));
        }
        self.rate.put(&mut body);
        Value::Object(body).to_string().into_bytes()
    }
}

impl KeyFields {
    fn body(&self, creating: bool) -> Vec<u8> {
        let mut body = Map::new();
        put(&mut body, "name", self.name.as_ref());
        if !self.scopes.is_empty() || creating {
            body.insert("scopes".into(), json!(self.scopes));
        }
        if !self.origins.is_empty() || self.no_origins {
            body.insert("allowedOrigins".into(), json!(self.origins));
        }
        put(&mut body, "expiresAt", self.expires_at.as_ref());
        if self.no_expiry {
            body.insert("expiresAt".into(), Value::Null);
        }
        self.rate.put(&mut body);
        Value::Object(body).to_string().into_bytes()
    }
}

fn put(body: &mut Map<String, Value>, name: &str, value: Option<&String>) {
    if let Some(value) = value {
        body.insert(name.into(), Value::String(value.clone()));
    }
}

impl PageArgs {
    fn query(&self) -> PageQuery {
        PageQuery { limit: self.limit.clone(), cursor: self.cursor.clone() }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve | Command::Quickstart);
    keygate::logging::init(if serving { "info" } else { "warn" });
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("keygate: {error}");
            return ExitCode::from(2);
        }
    };
    let code = match run(cli.command, config, cli.config).await {
        Ok(code) => code,
        Err(error) => {
            keygate::logging::flush();
            eprintln!("keygate: {error}");
            ExitCode::FAILURE
        }
    };
    keygate::logging::flush();
    code
}

async fn run(command: Command, config: Config, source: Option<PathBuf>) -> Result<ExitCode, StartError> {
    match command {
        Command::Serve => {
            let app = App::build(config).await?;
            let listeners = app.bind().await?;
            serve(app, listeners, source, |_, _| {}).await
        }
        Command::Quickstart => {
            let (app, listeners, demo) = keygate::quickstart::prepare(config).await?;
            serve(app, listeners, source, |public, admin| demo.print(public, admin)).await
        }
        Command::Config(ConfigCommand::Check) => match toml::to_string(&config.redacted()) {
            Ok(text) => {
                print!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => Err(format!("cannot print the configuration: {error}").into()),
        },
        Command::Migrate => {
            keygate::store::open(&config).await?;
            eprintln!("keygate: migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenant(command) => {
            let admin = admin(&config).await?;
            Ok(print(match command {
                TenantCommand::Create { id, fields } => to_json(admin.create_tenant(&fields.body(id.as_ref())).await),
                TenantCommand::Get { id } => to_json(admin.tenant(&id).await),
                TenantCommand::List(page) => to_json(admin.tenants(&page.query()).await),
                TenantCommand::Update { id, fields } => to_json(admin.update_tenant(&id, &fields.body(None)).await),
            }))
        }
        Command::Key(command) => {
            let admin = admin(&config).await?;
            Ok(print(match command {
                KeyCommand::Create { tenant_id, fields } => {
                    to_json(admin.create_key(&tenant_id, &fields.body(true)).await)
                }
                KeyCommand::Get { id } => to_json(admin.key(&id).await),
                KeyCommand::List { tenant_id, page } => to_json(admin.keys(&tenant_id, &page.query()).await),
                KeyCommand::Update { id, fields } => to_json(admin.update_key(&id, &fields.body(false)).await),
                KeyCommand::Revoke { id } => to_json(admin.revoke_key(&id).await),
            }))
        }
        Command::Seed { keys, tenants } => {
            let store = keygate::store::open(&config).await?;
            let started = std::time::Instant::now();
            let seeded = keygate::seed::seed(store.as_ref(), keys, tenants, &config.keys.prefix).await;
            Ok(print(seeded.map_err(keygate::admin::store_error).map(|seeded| {
                json!({ "tenants": seeded.tenants, "keys": seeded.keys, "seconds": started.elapsed().as_secs_f64() })
            })))
        }
        Command::SigningKey(command) => {
            let algorithm = config.sessions.algorithm;
            let admin = admin(&config).await?;
            Ok(print(match command {
                SigningKeyCommand::List => to_json(admin.signing_keys().await),
                SigningKeyCommand::Rotate => to_json(admin.rotate_signing_key(algorithm).await),
                SigningKeyCommand::Retire { kid } => to_json(admin.retire_signing_key(&kid).await),
            }))
        }
    }
}

/// Binds, tells `listening` where, and serves until SIGTERM or Ctrl-C.
/// Tells `listening` where `app` listens, and serves until SIGTERM or Ctrl-C, reloading the
/// configuration (from `source` and the environment, as at start) on SIGHUP.
async fn serve(
    app: App,
    (public, admin): keygate::app::Listeners,
    source: Option<PathBuf>,
    listening: impl FnOnce(SocketAddr, Option<SocketAddr>),
) -> Result<ExitCode, StartError> {
    let admin_address = admin.as_ref().and_then(|l| l.local_addr().ok());
    tracing::info!(public = %public.local_addr()?, admin = admin_address.map(|a| a.to_string()), "keygate listening");
    listening(public.local_addr()?, admin_address);
    app.serve_reloading(public, admin, shutdown_signal(), |reloader| reload_on_hangup(reloader, source)).await?;
    Ok(ExitCode::SUCCESS)
}

/// Each SIGHUP reloads the configuration. One that does not load is refused, with a log line
/// naming the setting, and the running one stays.
fn reload_on_hangup(reloader: std::sync::Arc<keygate::reload::Reloader>, source: Option<PathBuf>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the configuration will not be reloaded");
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
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
    let _ = (reloader, source);
}

async fn admin(config: &Config) -> Result<Admin, StartError> {
    let store = keygate::store::open(config).await?;
    Ok(Admin::new(store, config.keys.prefix.clone(), None))
}

fn to_json<T: serde::Serialize>(result: Result<T, ApiError>) -> Result<Value, ApiError> {
    result.and_then(|value| serde_json::to_value(value).map_err(|_| ApiError::internal()))
}

/// The answer as JSON on stdout, or the error envelope on stderr with exit code 1.
fn print(result: Result<Value, ApiError>) -> ExitCode {
    match result {
        Ok(value) => {
            println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}", serde_json::to_string_pretty(&error.envelope()).unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

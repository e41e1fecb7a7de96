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
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fields: TenantFields,
        #[command(flatten)]
        rate: RateLimitArgs,
    },
    /// Show one tenant.
    Get { id: String },
    /// List tenants.
    List(PageArgs),
    /// Change a tenant; what is not given stays.
    Update {
        id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: TenantFields,
        /// Remove every module.
        #[arg(long, conflicts_with = "modules")]
        no_modules: bool,
        #[command(flatten)]
        rate: RateLimitChange,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key; its secret is printed this once.
    Create {
        tenant_id: String,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fields: KeyFields,
        #[command(flatten)]
        rate: RateLimitArgs,
    },
    /// Show one key.
    Get { id: String },
    /// List a tenant's keys.
    List {
        tenant_id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change a key; what is not given stays.
    Update {
        id: String,
        /// A name to recognise the key by.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: KeyFields,
        /// Remove every allowed origin.
        #[arg(long, conflicts_with = "origins")]
        no_origins: bool,
        /// Remove the expiry.
        #[arg(long, conflicts_with = "expires_at")]
        no_expiry: bool,
        #[command(flatten)]
        rate: RateLimitChange,
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
    /// The window of --rate-limit, in seconds.
    #[arg(long, requires = "rate_limit")]
    window_seconds: Option<u64>,
}

#[derive(Args)]
struct RateLimitChange {
    #[command(flatten)]
    set: RateLimitArgs,
    /// Remove the rate-limit override.
    #[arg(long, conflicts_with = "rate_limit")]
    clear_rate_limit: bool,
}

/// A tenant's fields that create and update share.
#[derive(Args)]
struct TenantFields {
    /// active | suspended
    #[arg(long)]
    status: Option<String>,
    /// active | trialing | past_due | cancelled
    #[arg(long)]
    subscription: Option<String>,
    /// An enabled module (repeat for several); replaces the set.
    #[arg(long = "module")]
    modules: Vec<String>,
}

/// A key's fields that create and update share.
#[derive(Args)]
struct KeyFields {
    /// A granted scope (repeat for several); replaces the list.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// An allowed browser origin (repeat for several); replaces the list.
    #[arg(long = "origin")]
    origins: Vec<String>,
    /// RFC 3339 expiry, e.g. 2027-01-01T00:00:00Z.
    #[arg(long)]
    expires_at: Option<String>,
}

impl RateLimitArgs {
    fn put(&self, body: &mut Map<String, Value>) {
        if let (Some(limit), Some(window)) = (self.rate_limit, self.window_seconds) {
            body.insert("rateLimit".into(), json!({ "limit": limit, "windowSeconds": window }));
        }
    }
}

impl RateLimitChange {
    fn put(&self, body: &mut Map<String, Value>) {
        self.set.put(body);
        if self.clear_rate_limit {
            body.insert("rateLimit".into(), Value::Null);
        }
    }
}

impl TenantFields {
    fn put(&self, body: &mut Map<String, Value>, no_modules: bool) {
        put(body, "status", self.status.as_ref());
        put(body, "subscription", self.subscription.as_ref());
        if !self.modules.is_empty() || no_modules {
            body.insert("modules".into(), json!(self.modules));
        }
    }
}

impl KeyFields {
    fn put(&self, body: &mut Map<String, Value>, no_origins: bool) {
        if !self.scopes.is_empty() {
            body.insert("scopes".into(), json!(self.scopes));
        }
        if !self.origins.is_empty() || no_origins {
            body.insert("allowedOrigins".into(), json!(self.origins));
        }
        put(body, "expiresAt", self.expires_at.as_ref());
    }
}

/// Adds to each of an error's `details` the flag its `path` came from: the CLI's user typed
/// `--origin`, not `allowedOrigins[0]`.
fn name_flags(envelope: &mut Value) {
    let Some(details) = envelope.pointer_mut("/error/details").and_then(Value::as_array_mut) else { return };
    for detail in details {
        let path = detail["path"].as_str().unwrap_or_default();
        let field = path.split(['[', '.']).next().unwrap_or_default();
        let flag = match (field, path.ends_with("windowSeconds")) {
            ("rateLimit", true) => "--window-seconds",
            ("rateLimit", false) => "--rate-limit",
            ("allowedOrigins", _) => "--origin",
            ("scopes", _) => "--scope",
            ("modules", _) => "--module",
            ("expiresAt", _) => "--expires-at",
            ("name", _) => "--name",
            ("id", _) => "--id",
            ("status", _) => "--status",
            ("subscription", _) => "--subscription",
            _ => continue,
        };
        detail["flag"] = Value::String(flag.to_owned());
    }
}

/// A request body for the admin operations.
fn bytes(body: Map<String, Value>) -> Vec<u8> {
    Value::Object(body).to_string().into_bytes()
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
            serve(app, listeners, Hangup::Reload(source), |_, _| {}).await
        }
        Command::Quickstart => {
            let (app, listeners, demo) = keygate::quickstart::prepare(config).await?;
            // The demo's routes and admin token are made at start, not read from a file:
            // reloading would lose them.
            serve(app, listeners, Hangup::Ignore, |public, admin| demo.print(public, admin)).await
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
                TenantCommand::Create { id, name, fields, rate } => {
                    let mut body = Map::new();
                    put(&mut body, "id", id.as_ref());
                    put(&mut body, "name", Some(&name));
                    fields.put(&mut body, false);
                    rate.put(&mut body);
                    to_json(admin.create_tenant(&bytes(body)).await)
                }
                TenantCommand::Get { id } => to_json(admin.tenant(&id).await),
                TenantCommand::List(page) => to_json(admin.tenants(&page.query()).await),
                TenantCommand::Update { id, name, fields, no_modules, rate } => {
                    let mut body = Map::new();
                    put(&mut body, "name", name.as_ref());
                    fields.put(&mut body, no_modules);
                    rate.put(&mut body);
                    to_json(admin.update_tenant(&id, &bytes(body)).await)
                }
            }))
        }
        Command::Key(command) => {
            let admin = admin(&config).await?;
            Ok(print(match command {
                KeyCommand::Create { tenant_id, name, fields, rate } => {
                    let mut body = Map::new();
                    put(&mut body, "name", Some(&name));
                    // Required by the API; none granted unless --scope says so.
                    body.insert("scopes".into(), json!([]));
                    fields.put(&mut body, false);
                    rate.put(&mut body);
                    to_json(admin.create_key(&tenant_id, &bytes(body)).await)
                }
                KeyCommand::Get { id } => to_json(admin.key(&id).await),
                KeyCommand::List { tenant_id, page } => to_json(admin.keys(&tenant_id, &page.query()).await),
                KeyCommand::Update { id, name, fields, no_origins, no_expiry, rate } => {
                    let mut body = Map::new();
                    put(&mut body, "name", name.as_ref());
                    fields.put(&mut body, no_origins);
                    if no_expiry {
                        body.insert("expiresAt".into(), Value::Null);
                    }
                    rate.put(&mut body);
                    to_json(admin.update_key(&id, &bytes(body)).await)
                }
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
/// What SIGHUP does.
enum Hangup {
    /// Reload the configuration from this file (if any) and the environment, as at start.
    Reload(Option<PathBuf>),
    /// Nothing but a log line.
    Ignore,
}

/// Tells `listening` where `app` listens, and serves until SIGTERM or Ctrl-C.
async fn serve(
    app: App,
    (public, admin): keygate::app::Listeners,
    hangup: Hangup,
    listening: impl FnOnce(SocketAddr, Option<SocketAddr>),
) -> Result<ExitCode, StartError> {
    let admin_address = admin.as_ref().and_then(|l| l.local_addr().ok());
    tracing::info!(public = %public.local_addr()?, admin = admin_address.map(|a| a.to_string()), "keygate listening");
    listening(public.local_addr()?, admin_address);
    app.serve_reloading(public, admin, shutdown_signal(), |reloader| on_hangup(reloader, hangup)).await?;
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
            let mut envelope = serde_json::to_value(error.envelope()).unwrap_or_default();
            name_flags(&mut envelope);
            eprintln!("{}", serde_json::to_string_pretty(&envelope).unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

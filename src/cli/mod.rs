//! The `keygate` command. `serve`, `migrate` and `quickstart` work on the store (and create it
//! if missing); the tenant, key and signing-key commands are admin API requests, sent to a
//! running keygate or, with `--store`, answered in process on an existing store (SPEC §8).

mod args;
mod import;
mod output;
mod progress;
mod request;
mod serve;
mod target;

use std::process::ExitCode;

use keygate::app::{App, StartError};
use keygate::config::Config;
use serde_json::json;

pub(crate) use args::Cli;
use args::{Command, ConfigCommand, KeyCommand, Output};
use progress::Progress;
use serve::{Hangup, serve};
use target::{Answer, Target};

impl Cli {
    /// Whether the command serves (and so logs at `info` by default).
    pub(crate) fn serves(&self) -> bool {
        matches!(self.command, Command::Serve | Command::Quickstart)
    }

    pub(crate) async fn run(self, config: Config) -> Result<ExitCode, StartError> {
        let output = Output::chosen(self.output);
        let request = match self.command {
            Command::Serve => {
                let app = App::build(config).await?;
                let listeners = app.bind().await?;
                return serve(app, listeners, Hangup::Reload(self.config), |_, _| {}).await;
            }
            Command::Quickstart => {
                let (app, listeners, demo) = keygate::quickstart::prepare(config).await?;
                // The demo's routes and admin token are made at start, not read from a file:
                // reloading would lose them.
                return serve(app, listeners, Hangup::Ignore, |public, admin| demo.print(public, admin)).await;
            }
            Command::Migrate => {
                keygate::store::open(&config).await?;
                eprintln!("keygate: migrations applied");
                return Ok(ExitCode::SUCCESS);
            }
            Command::Config(ConfigCommand::Check) => {
                let text = toml::to_string(&config.redacted())
                    .map_err(|error| format!("cannot print the configuration: {error}"))?;
                print!("{text}");
                // As TOML comments, so that the output still reads as a configuration.
                for line in route_summary(&config) {
                    println!("# {line}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            Command::Completions { shell, .. } => {
                // Made in memory, then written: clap_complete panics on a closed pipe
                // (`keygate completions bash | head`), which is no error of the user's.
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command_to_complete(), "keygate", &mut script);
                use std::io::Write;
                return match std::io::stdout().write_all(&script) {
                    Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
                    _ => Ok(ExitCode::SUCCESS),
                };
            }
            Command::Seed { keys, tenants, rolled, imported, audit } => {
                let plan =
                    keygate::seed::Plan { keys, tenants, rolled, imported, audit, key_prefix: &config.keys.prefix };
                return seed(self.store, &config, plan, output).await;
            }
            Command::Key(KeyCommand::Import { tenant }) => {
                let target = Target::chosen(self.store, self.admin_url, self.admin_ca_file.as_deref(), &config).await?;
                return import::import(&target, &tenant, std::io::stdin().lock()).await;
            }
            Command::Tenant(command) => command.request(),
            Command::Key(command) => command.request(),
            Command::SigningKey(command) => command.request(),
            Command::Audit(filters) => filters.request(),
            Command::Usage(command) => command.request(),
        };
        let target = Target::chosen(self.store, self.admin_url, self.admin_ca_file.as_deref(), &config).await?;
        Ok(output.print(target.send(request).await?))
    }
}

/// Which routes the gateway serves and which only decisions use (SPEC §14).
fn route_summary(config: &Config) -> Vec<String> {
    config
        .routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let methods: Vec<&str> = route.methods.iter().map(|m| m.0.as_str()).collect();
            let what = format!("routes[{i}] ({} {})", methods.join(","), route.prefix);
            match &route.upstream {
                Some(upstream) => format!("{what}: served by the gateway, to {}, and decided on", upstream.as_str()),
                None => format!("{what}: decided on only (no upstream: the gateway answers it 404)"),
            }
        })
        .collect()
}

/// Bulk loading bypasses the admin API by design: it is a load-test tool, run on a store that
/// `keygate migrate` made.
async fn seed(
    store: bool,
    config: &Config,
    plan: keygate::seed::Plan<'_>,
    output: Output,
) -> Result<ExitCode, StartError> {
    if !store {
        return Err("seed writes to the store directly: add --store".into());
    }
    let store = keygate::store::open_existing(config).await?;
    let started = std::time::Instant::now();
    let progress = Progress::new(Some(plan.keys as u64), "keys");
    let seeded = keygate::seed::seed(store.as_ref(), plan, &mut |done| progress.set(done as u64)).await;
    let answer = match seeded {
        Ok(seeded) => {
            progress.finish(&format!("seeded {} keys of {} tenants", seeded.keys, seeded.tenants), seeded.keys as u64);
            let mut data = serde_json::to_value(seeded).unwrap_or_default();
            data["seconds"] = json!(started.elapsed().as_secs_f64());
            Answer { status: http::StatusCode::OK, body: json!({ "data": data }) }
        }
        Err(error) => {
            let error = keygate::admin::store_error(error);
            Answer { status: error.code.status(), body: serde_json::to_value(error.envelope()).unwrap_or_default() }
        }
    };
    Ok(output.print(answer))
}

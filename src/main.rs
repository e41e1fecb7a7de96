//! The `keygate` binary: reads the command line and the configuration, then runs the command
//! (see `cli/`).

mod cli;

use std::process::ExitCode;

use keygate::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::from_env();
    keygate::logging::init(if cli.serves() { "info" } else { "warn" });
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("keygate: {error}");
            return ExitCode::from(2);
        }
    };
    let code = match cli.run(config).await {
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

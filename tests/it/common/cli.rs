//! The `keygate` command run as a user runs it: through a keygate's admin API (the default),
//! or on a store with `--store`.

use std::process::Command;

use serde_json::Value;

use super::{ADMIN_TOKEN, TestApp, TestStore};

/// What a run printed and how it ended.
pub struct Ran {
    pub code: i32,
    /// stdout as JSON (`Null` when it is not).
    pub stdout: Value,
    pub stdout_text: String,
    pub stderr: String,
}

/// Where the CLI's admin commands go.
#[derive(Clone, Copy)]
pub enum Via<'a> {
    /// `KEYGATE_ADMIN_URL` and the admin token of this running keygate.
    Api(&'a TestApp),
    /// `--store` on this store.
    Store(&'a TestStore),
}

impl Via<'_> {
    /// Runs `keygate ARGS` with `env` added; no `KEYGATE_*` of the test's own environment leaks in.
    pub fn run_with(self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        self.run_fed(args, env, None)
    }

    /// Runs with `input` on standard input.
    pub fn run_with_input(self, args: &[&str], input: &str) -> Ran {
        self.run_fed(args, &[], Some(input))
    }

    fn run_fed(self, args: &[&str], env: &[(&str, &str)], input: Option<&str>) -> Ran {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keygate"));
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("KEYGATE_")) {
            command.env_remove(name);
        }
        match self {
            Via::Api(app) => {
                command.env("KEYGATE_ADMIN_URL", &app.admin).env("KEYGATE_SERVER_ADMIN_TOKEN", ADMIN_TOKEN);
            }
            Via::Store(store) => {
                command.arg("--store").env("KEYGATE_STORE_URL", &store.url);
            }
        }
        command.args(args).envs(env.iter().copied());
        let output = match input {
            None => command.output().expect("keygate runs"),
            Some(input) => {
                use std::io::Write;
                let mut child = command
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("keygate runs");
                child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("input written");
                child.wait_with_output().expect("keygate ends")
            }
        };
        let stdout_text = String::from_utf8_lossy(&output.stdout).into_owned();
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: serde_json::from_str(&stdout_text).unwrap_or(Value::Null),
            stdout_text,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn run(self, args: &[&str]) -> Ran {
        self.run_with(args, &[])
    }

    /// The `data` of a run that must succeed.
    #[track_caller]
    pub fn ok(self, args: &[&str]) -> Value {
        let ran = self.run(args);
        assert_eq!(ran.code, 0, "{args:?}: {}", ran.stderr);
        ran.stdout["data"].clone()
    }
}

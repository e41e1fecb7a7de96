//! The `keygate` command on a real store: the admin operations, their errors, and a running
//! keygate picking up what the CLI changed.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use serde_json::Value;

struct Cli {
    store: Arc<TestStore>,
}

struct Ran {
    code: i32,
    stdout: Value,
    stderr: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Ran {
        let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(args)
            .env("KEYGATE_STORE_URL", &self.store.url)
            .env_remove("KEYGATE_CONFIG")
            .output()
            .expect("keygate runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Value {
        let ran = self.run(args);
        assert_eq!(ran.code, 0, "{args:?}: {}", ran.stderr);
        ran.stdout
    }
}

async fn cli() -> Cli {
    Cli { store: TestStore::new().await }
}

#[tokio::test]
async fn migrate_creates_the_store() {
    let cli = cli().await;
    let ran = cli.run(&["migrate"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    if !cli.store.is_postgres() {
        assert!(cli.store.dir.path().join("keygate.db").exists());
    }
    assert_eq!(cli.run(&["migrate"]).code, 0, "migrating again is a no-op");
}

#[tokio::test]
async fn tenant_operations() {
    let cli = cli().await;
    let created = cli.ok(&[
        "tenant",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--module",
        "orders",
        "--subscription",
        "trialing",
    ]);
    assert_eq!(created["id"], "acme");
    assert_eq!(created["modules"], serde_json::json!(["orders"]));
    assert_eq!(created["subscription"], "trialing");
    assert_eq!(cli.ok(&["tenant", "get", "acme"]), created);
    let updated =
        cli.ok(&["tenant", "update", "acme", "--status", "suspended", "--rate-limit", "10", "--window-seconds", "60"]);
    assert_eq!(updated["status"], "suspended");
    assert_eq!(updated["rateLimit"], serde_json::json!({ "limit": 10, "windowSeconds": 60 }));
    cli.ok(&["tenant", "create", "--name", "Globex"]);
    let page = cli.ok(&["tenant", "list", "--limit", "1"]);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert!(page["nextCursor"].is_string());
}

#[tokio::test]
async fn key_operations_and_the_secret_shown_once() {
    let cli = cli().await;
    cli.ok(&["tenant", "create", "--id", "acme", "--name", "Acme"]);
    let created = cli.ok(&["key", "create", "acme", "--name", "web", "--scope", "sessions:create", "--origin", ORIGIN]);
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("kg_"));
    let fetched = cli.ok(&["key", "get", &id]);
    assert!(fetched.get("secret").is_none());
    assert!(!fetched.to_string().contains(&secret));
    let listed = cli.ok(&["key", "list", "acme"]);
    assert_eq!(listed["data"][0]["id"], id.as_str());
    let updated = cli.ok(&["key", "update", &id, "--scope", "orders:read", "--expires-at", "2030-01-01T00:00:00Z"]);
    assert_eq!(updated["scopes"], serde_json::json!(["orders:read"]));
    assert_eq!(updated["expiresAt"], "2030-01-01T00:00:00Z");
    let revoked = cli.ok(&["key", "revoke", &id]);
    assert!(revoked["revokedAt"].is_string());
}

#[tokio::test]
async fn bad_input_is_an_error_envelope_and_a_failing_exit_code() {
    let cli = cli().await;
    let ran = cli.run(&["tenant", "create", "--id=-x", "--name", ""]);
    assert_eq!(ran.code, 1);
    let envelope: Value = serde_json::from_str(&ran.stderr).expect("an error envelope on stderr");
    assert_eq!(envelope["error"]["code"], "VALIDATION_ERROR");
    let details = envelope["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 2);
    let flags: Vec<&str> = details.iter().filter_map(|d| d["flag"].as_str()).collect();
    assert_eq!(flags, ["--id", "--name"], "each detail names the flag it came from: {details:?}");
    let ran = cli.run(&["key", "get", "key_missing"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("NOT_FOUND"));
    let ran = cli.run(&["key", "create", "acme", "--name", "k", "--origin", "https://*.com"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("allowedOrigins[0]"));
    assert!(ran.stderr.contains("\"flag\": \"--origin\""), "{}", ran.stderr);
}

#[test]
fn create_asks_for_what_it_needs_and_offers_no_flag_that_means_nothing_there() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_keygate")).args(args).output().unwrap();
    for command in [&["tenant", "create"][..], &["key", "create", "acme"]] {
        let help = String::from_utf8_lossy(&run(&[command[0], command[1], "--help"]).stdout).into_owned();
        assert!(help.contains("--name <NAME>"), "{help}");
        assert!(!help.contains("[--name"), "--name is required: {help}");
        for clearing in ["--no-origins", "--no-expiry", "--clear-rate-limit", "--no-modules"] {
            assert!(!help.contains(clearing), "{clearing} means nothing on create: {help}");
        }
        let missing = run(command);
        assert_eq!(missing.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&missing.stderr).contains("--name"));
    }
    let help = String::from_utf8_lossy(&run(&["key", "update", "--help"]).stdout).into_owned();
    for clearing in ["--no-origins", "--no-expiry", "--clear-rate-limit"] {
        assert!(help.contains(clearing), "{clearing} on update: {help}");
    }
}

#[tokio::test]
async fn a_bad_configuration_stops_with_the_key_named() {
    let cli = cli().await;
    let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["migrate"])
        .env("KEYGATE_RATE_LIMIT_WINDOW_SECONDS", "soon")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("KEYGATE_RATE_LIMIT_WINDOW_SECONDS"));
    let file = cli.store.dir.path().join("keygate.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:0\"\nadmin_tokn = \"x\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("admin_tokn"));
}

// Multi-threaded: the CLI runs as a blocking child process, and the server must keep running
// (and finish its own write transactions) meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_keygate_picks_up_cli_changes_within_a_second() {
    let store = TestStore::new().await;
    let app = spawn_in(Arc::clone(&store), |_| {}).await;
    let cli = Cli { store };
    cli.ok(&["tenant", "create", "--id", "acme", "--name", "Acme"]);
    let created = cli.ok(&["key", "create", "acme", "--name", "web", "--scope", "sessions:create", "--origin", ORIGIN]);
    let secret = created["secret"].as_str().unwrap();
    assert_eq!(app.mint(secret, Some(ORIGIN)).await.status, 201);
    cli.ok(&["tenant", "update", "acme", "--subscription", "past_due"]);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    app.mint(secret, Some(ORIGIN)).await.assert_error(403, "SUBSCRIPTION_PAST_DUE");
}

#[tokio::test]
async fn seed_fills_the_store_with_working_keys_and_prints_no_secret() {
    let cli = cli().await;
    // More keys than one page of the start-up scan (5,000), so every page is read.
    let ran = cli.run(&["seed", "--keys", "12000", "--tenants", "3"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!((ran.stdout["tenants"].as_u64(), ran.stdout["keys"].as_u64()), (Some(3), Some(12000)));
    assert!(!ran.stdout.to_string().contains("secret"), "{}", ran.stdout);

    let listed = cli.ok(&["key", "list", "seed-1", "--limit", "1000"]);
    let keys = listed["data"].as_array().unwrap();
    assert_eq!(keys.len(), 1000);
    assert!(listed["nextCursor"].is_string());
    for key in keys {
        let origins = key["allowedOrigins"].as_array().unwrap().len();
        assert!((1..=3).contains(&origins), "{key}");
        assert!(key.get("secret").is_none());
    }

    // A keygate started on the seeded store preflights the seeded origins, exact and wildcard.
    let app = spawn_in(Arc::clone(&cli.store), |_| {}).await;
    for (origin, status) in [
        ("https://app.t2.example", 204),
        ("https://x.t2.example", 204),
        ("https://k5.t2.example:8443", 204),
        ("https://k11999.t2.example:8443", 204),
        ("https://k11999.t1.example:8443", 403),
        ("https://app.t9.example", 403),
    ] {
        assert_eq!(app.preflight_status(origin).await, status, "{origin}");
    }
    // Seeding twice into one store is refused, not doubled.
    let again = cli.run(&["seed", "--keys", "10", "--tenants", "3"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("CONFLICT"), "{}", again.stderr);
}

#[tokio::test]
async fn a_taken_address_is_named_with_its_setting_and_quickstart_touches_no_key_before_it_listens() {
    let cli = cli().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    for (command, setting) in [("serve", "KEYGATE_SERVER_LISTEN"), ("quickstart", "KEYGATE_SERVER_LISTEN")] {
        let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
            .arg(command)
            .env("KEYGATE_STORE_URL", &cli.store.url)
            .env(setting, &address)
            .env("KEYGATE_SERVER_ADMIN_LISTEN", "127.0.0.1:0")
            .env_remove("KEYGATE_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command}: {stderr}");
        assert!(stderr.contains(&format!("cannot listen on {address} (server.listen)")), "{command}: {stderr}");
    }
    // The quickstart stopped before making its demo tenant, so before any key of it.
    let ran = cli.run(&["tenant", "get", "demo"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("NOT_FOUND"), "{}", ran.stderr);
}

#[test]
fn config_check_prints_the_effective_settings_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keygate.toml");
    std::fs::write(
        &file,
        "[server]\nadmin_token = \"an-admin-token-of-some-length\"\n\
         [store]\nurl = \"postgres://kg:db-password@db.internal/kg\"\n\
         [rate_limit]\nurl = \"redis://:redis-password@cache.internal:6379\"\n",
    )
    .unwrap();
    let check = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(["--config", file.to_str().unwrap(), "config", "check"])
            .env_remove("KEYGATE_CONFIG")
            .env("KEYGATE_RATE_LIMIT_LIMIT", "42")
            .output()
            .unwrap()
    };
    let output = check(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    for secret in ["an-admin-token-of-some-length", "db-password", "redis-password"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    let printed: toml::Table = stdout.parse().expect("the settings, as TOML");
    assert_eq!(printed["server"]["admin_token"].as_str(), Some("<redacted>"));
    assert_eq!(printed["store"]["url"].as_str(), Some("postgres://kg:<redacted>@db.internal/kg"));
    assert_eq!(printed["rate_limit"]["limit"].as_integer(), Some(42), "the environment applied");
    assert_eq!(printed["server"]["max_header_bytes"].as_integer(), Some(32768), "defaults filled in");

    std::fs::write(&file, "[server]\nmax_connections = 0\n").unwrap();
    let output = check(&file);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.max_connections"));
}

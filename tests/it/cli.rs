//! The `keygate` command: every admin operation through a running keygate's admin API, with
//! the API's own answers; `--store` for bootstrap and recovery, creating nothing; its errors,
//! output formats and completions.

use crate::common;

use std::process::Command;
use std::sync::Arc;

use common::cli::Via;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// What the admin API answers to `GET path` right now.
async fn api_get(app: &TestApp, path: &str) -> Value {
    let seen = app.admin_request(Method::GET, path, None).await;
    assert_eq!(seen.status, 200, "{path}: {}", seen.body);
    seen.body
}

// Multi-threaded: the CLI runs as a blocking child process while the server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_operation_through_the_admin_api_answers_as_the_api() {
    let app = spawn_app().await;
    let cli = Via::Api(&app);
    let ran = cli.run(&[
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
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout, api_get(&app, "/admin/v1/tenants/acme").await, "the API's answer, as it is");
    assert_eq!(ran.stdout["data"]["modules"], json!(["orders"]));
    assert_eq!(cli.run(&["tenant", "get", "acme"]).stdout, api_get(&app, "/admin/v1/tenants/acme").await);

    let updated =
        cli.ok(&["tenant", "update", "acme", "--status", "suspended", "--rate-limit", "10", "--window-seconds", "60"]);
    assert_eq!(updated["status"], "suspended");
    assert_eq!(updated["rateLimit"], json!({ "limit": 10, "windowSeconds": 60 }));
    assert_eq!(cli.ok(&["tenant", "update", "acme", "--no-modules", "--clear-rate-limit"])["modules"], json!([]));
    assert_eq!(json!({ "data": cli.ok(&["tenant", "get", "acme"]) }), api_get(&app, "/admin/v1/tenants/acme").await);

    cli.ok(&["tenant", "create", "--name", "Globex"]);
    let page = cli.run(&["tenant", "list", "--limit", "1"]).stdout;
    assert_eq!(page, api_get(&app, "/admin/v1/tenants?limit=1").await);
    let cursor = page["nextCursor"].as_str().expect("a second page");
    let next = cli.run(&["tenant", "list", "--limit", "1", "--cursor", cursor]).stdout;
    assert_eq!(next, api_get(&app, &format!("/admin/v1/tenants?limit=1&cursor={cursor}")).await);
    assert_ne!(next["data"], page["data"]);
    // A cursor keygate never gave is refused, naming it, not answered with an empty page.
    let made_up = cli.run(&["tenant", "list", "--cursor", "zzz"]);
    assert_ne!(made_up.code, 0);
    assert!(made_up.stderr.contains("VALIDATION_ERROR") && made_up.stderr.contains("cursor"), "{}", made_up.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_operation_through_the_admin_api_answers_as_the_api_and_shows_the_secret_once() {
    let app = spawn_app().await;
    let cli = Via::Api(&app);
    cli.ok(&["tenant", "create", "--id", "acme", "--name", "Acme"]);
    let created = cli.ok(&["key", "create", "acme", "--name", "web", "--scope", "sessions:create", "--origin", ORIGIN]);
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("kg_"));
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201, "the key works at once");

    let key_path = format!("/admin/v1/keys/{id}");
    let fetched = cli.run(&["key", "get", &id]).stdout;
    assert_eq!(fetched, api_get(&app, &key_path).await);
    assert!(!fetched.to_string().contains(&secret), "the secret is shown once: {fetched}");
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(fetched["data"], without_secret, "create answers the key, plus its secret");

    let listed = cli.run(&["key", "list", "acme"]).stdout;
    assert_eq!(listed, api_get(&app, "/admin/v1/tenants/acme/keys").await);
    assert_eq!(listed["data"][0]["id"], id.as_str());

    let updated = cli.ok(&["key", "update", &id, "--scope", "orders:read", "--expires-at", "2030-01-01T00:00:00Z"]);
    assert_eq!(updated["scopes"], json!(["orders:read"]));
    assert_eq!(updated["expiresAt"], "2030-01-01T00:00:00Z");
    let cleared = cli.ok(&["key", "update", &id, "--no-origins", "--no-expiry"]);
    assert_eq!((cleared["allowedOrigins"].clone(), cleared["expiresAt"].clone()), (json!([]), Value::Null));
    assert_eq!(json!({ "data": cleared }), api_get(&app, &key_path).await);

    let revoked = cli.run(&["key", "revoke", &id]).stdout;
    assert!(revoked["data"]["revokedAt"].is_string());
    assert_eq!(revoked, api_get(&app, &key_path).await);
    app.mint(&secret, Some(ORIGIN)).await.assert_error(401, "API_KEY_REVOKED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_operations_through_the_admin_api_answer_as_the_api() {
    let app = spawn_app().await;
    let cli = Via::Api(&app);
    let listed = cli.run(&["signing-key", "list"]).stdout;
    assert_eq!(listed, api_get(&app, "/admin/v1/signing-keys").await);
    assert_eq!(listed["nextCursor"], Value::Null, "shaped as every other list");
    let first = listed["data"][0]["kid"].as_str().unwrap().to_owned();
    let rotated = cli.ok(&["signing-key", "rotate"]);
    assert_eq!(rotated["signing"], true);
    let retired = cli.ok(&["signing-key", "retire", &first]);
    assert!(retired["retiredAt"].is_string());
    let listed = cli.run(&["signing-key", "list"]).stdout;
    assert_eq!(listed, api_get(&app, "/admin/v1/signing-keys").await);
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_the_api_envelope_with_the_flags_named_and_a_failing_exit_code() {
    let app = spawn_app().await;
    let cli = Via::Api(&app);
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
    let envelope: Value = serde_json::from_str(&ran.stderr).unwrap();
    let api = app.admin_request(Method::GET, "/admin/v1/keys/key_missing", None).await;
    assert_eq!((api.status.as_u16(), envelope), (404, api.body), "the API's own envelope");

    cli.ok(&["tenant", "create", "--id", "acme", "--name", "Acme"]);
    let ran = cli.run(&["key", "create", "acme", "--name", "k", "--origin", "https://*.com"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("allowedOrigins[0]"));
    assert!(ran.stderr.contains("\"flag\": \"--origin\""), "{}", ran.stderr);
    let ran = cli.run(&["tenant", "list", "--limit", "0"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("VALIDATION_ERROR"), "{}", ran.stderr);
    // An id with a slash stays one id: it is not a path of its own.
    let ran = cli.run(&["tenant", "get", "acme/keys"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("NOT_FOUND"), "{}", ran.stderr);
    assert_eq!(cli.run(&["tenant", "list"]).stdout["data"].as_array().unwrap().len(), 1, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_store_the_cli_never_opens_a_database_file() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let never = dir.path().join("never.db");
    let store_env = format!("sqlite://{}", never.display());
    let cli = Via::Api(&app);
    let env = [("KEYGATE_STORE_URL", store_env.as_str())];
    let ran = cli.run_with(&["tenant", "create", "--id", "acme", "--name", "Acme"], &env);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout["data"]["id"], "acme", "written through the API, to the server's store");
    for args in [&["tenant", "list"][..], &["key", "list", "acme"], &["signing-key", "list"]] {
        assert_eq!(cli.run_with(args, &env).code, 0);
    }

    // No keygate at the admin URL: an error naming it, still no file.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}");
    let ran = cli.run_with(&["tenant", "list"], &[("KEYGATE_STORE_URL", &store_env), ("KEYGATE_ADMIN_URL", &url)]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains(&format!("cannot reach the admin API at {url}")), "{}", ran.stderr);
    assert!(ran.stderr.contains("--store"), "the way out is named: {}", ran.stderr);

    // No admin token: the setting is named, still no file.
    let ran = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["tenant", "list"])
        .env("KEYGATE_STORE_URL", &store_env)
        .env_remove("KEYGATE_SERVER_ADMIN_TOKEN")
        .env_remove("KEYGATE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ran.stderr).contains("server.admin_token"));

    // --store on a store that does not exist: refused, and not created.
    let ran =
        Via::Store(&TestStore { url: store_env.clone(), dir: tempfile::tempdir().unwrap() }).run(&["tenant", "list"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("keygate migrate"), "{}", ran.stderr);
    assert!(!never.exists(), "no database file was created or opened");
    assert!(!std::path::Path::new("keygate.db").exists(), "nor the default one");
}

#[tokio::test]
async fn store_mode_works_on_an_existing_store_and_migrate_creates_it() {
    let store = TestStore::new().await;
    let cli = Via::Store(&store);
    if !store.is_postgres() {
        let ran = cli.run(&["tenant", "list"]);
        assert_eq!(ran.code, 1, "no store yet");
        assert!(ran.stderr.contains("keygate migrate"), "{}", ran.stderr);
        assert!(!store.dir.path().join("keygate.db").exists());
    } else {
        // A database keygate never migrated is refused too.
        let ran = cli.run(&["tenant", "list"]);
        assert_eq!(ran.code, 1);
        assert!(ran.stderr.contains("keygate migrate"), "{}", ran.stderr);
        // One that does not exist is said so in PostgreSQL's words, without its source line.
        let (url, params) = store.url.split_once('?').unwrap_or((&store.url, ""));
        let (server, database) = url.rsplit_once('/').unwrap();
        let missing = format!("{server}/nowhere_{database}?{params}");
        let ran = cli.run_with(&["migrate"], &[("KEYGATE_STORE_URL", &missing)]);
        assert_eq!(ran.code, 1);
        assert!(
            ran.stderr.contains("database \"nowhere_") && ran.stderr.contains("does not exist (create it"),
            "{}",
            ran.stderr
        );
        assert!(!ran.stderr.contains("at line"), "{}", ran.stderr);
    }
    let ran = cli.run(&["migrate"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    if !store.is_postgres() {
        assert!(store.dir.path().join("keygate.db").exists());
    }
    assert_eq!(cli.run(&["migrate"]).code, 0, "migrating again is a no-op");
    let created = cli.ok(&["tenant", "create", "--id", "acme", "--name", "Acme"]);
    assert_eq!(created["id"], "acme");
    let key = cli.ok(&["key", "create", "acme", "--name", "web"]);
    assert!(key["secret"].as_str().unwrap().starts_with("kg_"));
    assert_eq!(cli.ok(&["key", "get", key["id"].as_str().unwrap()])["name"], "web");
    assert!(cli.ok(&["signing-key", "list"]).is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_on_request_and_json_when_piped() {
    let app = spawn_app().await;
    let cli = Via::Api(&app);
    cli.ok(&["tenant", "create", "--id", "acme", "--name", "Acme"]);
    let key = cli.ok(&["key", "create", "acme", "--name", "web", "--scope", "orders:read", "--scope", "orders:write"]);
    let id = key["id"].as_str().unwrap();

    let ran = cli.run(&["key", "list", "acme", "-o", "table"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let lines: Vec<&str> = ran.stdout_text.lines().collect();
    assert_eq!(lines.len(), 2, "a header and a row: {}", ran.stdout_text);
    for column in ["id", "name", "scopes", "allowedOrigins"] {
        assert!(lines[0].split_whitespace().any(|c| c == column), "{column}: {}", lines[0]);
    }
    assert!(lines[1].contains(id) && lines[1].contains("orders:read, orders:write"), "{}", lines[1]);

    let ran = cli.run(&["tenant", "get", "acme", "--output", "table"]);
    assert!(ran.stdout_text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["status", "active"]));
    let ran = cli.run(&["key", "get", "key_missing", "-o", "table"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.starts_with("error: NOT_FOUND (404): "), "{}", ran.stderr);
    let ran = cli.run(&["tenant", "create", "--name", "", "-o", "table"]);
    assert!(ran.stderr.contains("  --name (name): "), "{}", ran.stderr);

    let ran = cli.run(&["key", "list", "acme", "-o", "json"]);
    assert_eq!(ran.stdout, api_get(&app, "/admin/v1/tenants/acme/keys").await);
}

#[test]
fn shell_completions_cover_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(env!("CARGO_BIN_EXE_keygate")).args(["completions", shell]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        for word in ["signing-key", "admin-url", "revoke"] {
            assert!(script.contains(word), "{shell}: {word}");
        }
    }
}

/// Each command's help shows what applies to it: the admin flags on the admin commands (and at
/// the top), not on `serve`, `migrate` or `completions`; they still work before or after the
/// command.
#[test]
fn each_command_s_help_shows_its_own_flags() {
    let help = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_keygate")).args(args).arg("--help").output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let admin_flags = ["--admin-url", "--admin-ca-file", "--store", "--output"];
    for command in [&["serve"][..], &["migrate"], &["quickstart"], &["config", "check"], &["completions"]] {
        let text = help(command);
        assert!(admin_flags.iter().all(|flag| !text.contains(flag)), "{command:?}:\n{text}");
        // Every one but `completions` reads the configuration.
        assert_eq!(text.contains("--config"), command[0] != "completions", "{command:?}:\n{text}");
    }
    for command in [&[][..], &["tenant"], &["tenant", "list"], &["key", "roll"], &["audit"], &["usage", "key"]] {
        let text = help(command);
        assert!(admin_flags.iter().all(|flag| text.contains(flag)), "{command:?}:\n{text}");
    }
    for args in [&["--store", "-o", "json", "tenant", "list"][..], &["tenant", "list", "--store", "-o", "json"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(args)
            .env("KEYGATE_STORE_URL", "sqlite://nowhere/k.db")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: read, then no store: {stderr}");
        assert!(stderr.contains("keygate migrate"), "{stderr}");
    }
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
    let store = TestStore::new().await;
    let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["migrate"])
        .env("KEYGATE_RATE_LIMIT_WINDOW_SECONDS", "soon")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("KEYGATE_RATE_LIMIT_WINDOW_SECONDS"));
    let file = store.dir.path().join("keygate.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:0\"\nadmin_tokn = \"x\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("admin_tokn"));
}

/// An unreachable PostgreSQL is named: the setting, the address with its password redacted,
/// and the cause, rather than the pool's "timed out".
#[test]
fn an_unreachable_postgresql_is_named_with_its_cause() {
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["migrate"])
        .env("KEYGATE_STORE_URL", format!("postgres://kg:s3cret-pw@127.0.0.1:{port}/kg"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!("cannot connect to PostgreSQL at store.url = postgres://kg:<redacted>@127.0.0.1:{port}/kg");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("Connection refused") && !stderr.contains("s3cret-pw"), "{stderr}");
}

// Multi-threaded: the CLI runs as a blocking child process, and the server must keep running
// (and finish its own write transactions) meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_keygate_picks_up_store_mode_changes_within_a_second() {
    let store = TestStore::new().await;
    let app = spawn_in(Arc::clone(&store), |_| {}).await;
    let cli = Via::Store(&store);
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
    let store = TestStore::new().await;
    let cli = Via::Store(&store);
    cli.ok(&["migrate"]);
    let ran = Command::new(env!("CARGO_BIN_EXE_keygate")).args(["seed", "--keys", "1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("add --store"), "seed works only on the store: {stderr}");
    // More keys than one page of the start-up scan (5,000), so every page is read.
    let ran = cli.run(&["seed", "--keys", "12000", "--tenants", "3"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let seeded = &ran.stdout["data"];
    assert_eq!((seeded["tenants"].as_u64(), seeded["keys"].as_u64()), (Some(3), Some(12000)));
    assert!(!ran.stdout.to_string().contains("secret"), "{}", ran.stdout);
    // Off a terminal, no bar: one summary line.
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(ran.stderr.starts_with("keygate: seeded 12000 keys of 3 tenants in "), "{}", ran.stderr);
    assert!(ran.stderr.trim_end().ends_with(" a second)") && !ran.stderr.contains('\x1b'), "{}", ran.stderr);
    // The load's one transaction leaves no log for the next process to read through first.
    if let Some(path) = store.url.strip_prefix("sqlite://") {
        let log = std::fs::metadata(format!("{path}-wal")).map(|m| m.len()).unwrap_or(0);
        assert_eq!(log, 0, "the write-ahead log is truncated after the seed");
    }

    let listed = cli.run(&["key", "list", "seed-1", "--limit", "1000"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listed = listed.stdout;
    let keys = listed["data"].as_array().unwrap();
    assert_eq!(keys.len(), 1000);
    assert!(listed["nextCursor"].is_string());
    for key in keys {
        let origins = key["allowedOrigins"].as_array().unwrap().len();
        assert!((1..=3).contains(&origins), "{key}");
        assert!(key.get("secret").is_none());
    }

    // A keygate started on the seeded store preflights the seeded origins, exact and wildcard;
    // a tenant's keys are seeded one after another (keys 0 to 3999 are tenant 0's).
    let app = spawn_in(Arc::clone(&store), |_| {}).await;
    for (origin, status) in [
        ("https://app.t2.example", 204),
        ("https://x.t2.example", 204),
        ("https://k5.t0.example:8443", 204),
        ("https://k5.t2.example:8443", 403),
        ("https://k11999.t2.example:8443", 204),
        ("https://k11999.t1.example:8443", 403),
        ("https://app.t9.example", 403),
    ] {
        assert_eq!(app.preflight_status(origin).await, status, "{origin}");
    }
    // Seeding twice into one store is refused, not doubled.
    let again = cli.run(&["seed", "--keys", "10", "--tenants", "3"]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("CONFLICT"), "{}", again.stderr);
}

/// On a terminal (a pseudo-terminal made by util-linux `script`), `seed` draws its progress:
/// the count of the total, the rate and the time left; then clears it for the summary.
#[tokio::test]
async fn seed_shows_its_progress_on_a_terminal() {
    let store = TestStore::new().await;
    assert_eq!(Via::Store(&store).run(&["migrate"]).code, 0);
    let keygate = env!("CARGO_BIN_EXE_keygate");
    let mut script = Command::new("script");
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("KEYGATE_")) {
        script.env_remove(name);
    }
    let ran = script
        .args(["--quiet", "--return", "--command"])
        .arg(format!("{keygate} --store seed --keys 30000 --tenants 3 --audit"))
        .arg("/dev/null")
        .env("KEYGATE_STORE_URL", &store.url)
        .env("COLUMNS", "100")
        .output()
        .expect("util-linux script runs");
    let terminal = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(ran.status.code(), Some(0), "{terminal}");
    assert!(terminal.contains("/30,000 keys, "), "the count of the total: {terminal}");
    assert!(terminal.contains(" left"), "the time left: {terminal}");
    assert!(terminal.contains("keygate: seeded 30000 keys of 3 tenants in "), "{terminal}");
}

#[tokio::test]
async fn seed_writes_rolled_and_imported_keys_and_the_audit_entries_of_their_making() {
    let store = TestStore::new().await;
    let cli = Via::Store(&store);
    assert_eq!(cli.run(&["migrate"]).code, 0);
    let ran = cli.run(&["seed", "--keys", "30", "--tenants", "2", "--rolled", "5", "--imported", "4", "--audit"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let seeded = &ran.stdout["data"];
    assert_eq!(
        [&seeded["keys"], &seeded["rolled"], &seeded["imported"], &seeded["auditEntries"]],
        [&json!(30), &json!(5), &json!(4), &json!(2 + 30 + 5)]
    );

    let mut keys = Vec::new();
    for tenant in ["seed-0", "seed-1"] {
        keys.extend(cli.ok(&["key", "list", tenant]).as_array().unwrap().clone());
    }
    let rolled = keys.iter().filter(|k| k["rolledSecrets"].as_array().unwrap().len() == 1).count();
    let imported = keys.iter().filter(|k| k["prefix"].as_str().unwrap().starts_with("imp-")).count();
    assert_eq!((keys.len(), rolled, imported), (30, 5, 4));

    let entries = cli.run(&["audit", "--limit", "100"]).stdout;
    let entries = entries["data"].as_array().unwrap();
    assert_eq!(entries.len(), 37);
    let count = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
    assert_eq!([count("tenant.create"), count("key.create"), count("key.import"), count("key.roll")], [2, 26, 4, 5]);
    assert!(entries.iter().all(|e| e["actor"] == "seed"));
    let times: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let text = serde_json::to_string(entries).unwrap();
    assert!(!text.contains("secret\"") && !text.contains("Hash"), "no secret or hash in an entry");
    // A roll's entry shows the earlier secret it left.
    let roll = entries.iter().find(|e| e["action"] == "key.roll").unwrap();
    assert_eq!(roll["before"]["rolledSecrets"], json!([]));
    assert_eq!(roll["after"]["rolledSecrets"][0]["prefix"], roll["before"]["prefix"]);
}

#[tokio::test]
async fn a_taken_address_is_named_with_its_setting_and_quickstart_touches_no_key_before_it_listens() {
    let store = TestStore::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    for (command, setting) in [("serve", "KEYGATE_SERVER_LISTEN"), ("quickstart", "KEYGATE_SERVER_LISTEN")] {
        let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
            .arg(command)
            .env("KEYGATE_STORE_URL", &store.url)
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
    let ran = Via::Store(&store).run(&["tenant", "get", "demo"]);
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

    // Passwords as libpq's query parameters are redacted too.
    std::fs::write(
        &file,
        "[store]\nurl = \"postgres://db.internal/kg?user=kg&password=query-password&sslpassword=key-password\"\n",
    )
    .unwrap();
    let output = check(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!stdout.contains("query-password") && !stdout.contains("key-password"), "{stdout}");
    let printed: toml::Table = stdout.parse().expect("the settings, as TOML");
    assert_eq!(
        printed["store"]["url"].as_str(),
        Some("postgres://db.internal/kg?user=kg&password=<redacted>&sslpassword=<redacted>")
    );
}

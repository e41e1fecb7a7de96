//! The browser client as a package (`clients/js`): its unit tests under node's test runner,
//! its types under `tsc --strict`, and `npm pack` giving a package that an application imports
//! by name and uses against a real keygate. Its behaviour in a browser is tested in
//! `tests/it/browser_client.rs`.
//!
//! Needs node, npm and `e2e/node_modules/typescript` (`scripts/test` installs them). Without
//! them these tests fail, saying so: they never skip.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js")
}

#[track_caller]
fn succeeded(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn the_unit_tests_pass_under_the_node_test_runner() {
    let output = Command::new("node").args(["--test", "test/"]).current_dir(package_dir()).output();
    let stdout = succeeded("node --test", output.expect("node runs"));
    let count = |label: &str| {
        stdout.lines().find_map(|line| line.strip_prefix(&format!("# {label} "))?.trim().parse::<u32>().ok())
    };
    assert!(count("pass").is_some_and(|passed| passed >= 10), "{stdout}");
    assert_eq!(count("fail"), Some(0), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_pack_gives_a_package_an_application_imports_by_name_and_types_that_compile_strictly() {
    let tsc = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/node_modules/typescript/bin/tsc");
    assert!(tsc.exists(), "tsc is missing: run scripts/test (it installs e2e/node_modules)");
    let app_dir = tempfile::tempdir().unwrap();
    let app = app_dir.path();

    // Packed as it would be published: only the module, its types, the README and the licence.
    let packed = Command::new("npm")
        .args(["pack", "--json", "--pack-destination"])
        .arg(app)
        .current_dir(package_dir())
        .output()
        .expect("npm runs");
    let report: Value = serde_json::from_str(&succeeded("npm pack", packed)).unwrap();
    let mut files: Vec<&str> =
        report[0]["files"].as_array().unwrap().iter().filter_map(|f| f["path"].as_str()).collect();
    files.sort_unstable();
    assert_eq!(files, ["LICENSE", "README.md", "keygate.d.ts", "keygate.js", "package.json"]);
    let tarball = report[0]["filename"].as_str().unwrap().to_owned();

    std::fs::write(app.join("package.json"), r#"{ "name": "an-app", "private": true, "type": "module" }"#).unwrap();
    let installed = Command::new("npm")
        .args(["install", "--offline", "--no-audit", "--no-fund", "--no-package-lock"])
        .arg(app.join(&tarball))
        .current_dir(app)
        .output()
        .expect("npm runs");
    succeeded("npm install of the tarball", installed);
    for file in ["example.mjs", "example.ts"] {
        std::fs::copy(package_dir().join("consumer").join(file), app.join(file)).unwrap();
    }

    // The types, as an application uses them, under --strict.
    let checked = Command::new("node")
        .arg(&tsc)
        .args(["--strict", "--noEmit", "--module", "nodenext", "--moduleResolution", "nodenext"])
        .args(["--target", "es2022", "--lib", "es2022,dom", "example.ts"])
        .current_dir(app)
        .output()
        .expect("node runs");
    succeeded("tsc --strict", checked);

    // The package, imported by name, against a real keygate.
    let (keygate, upstream) = spawn_gateway(|_| {}).await;
    let (_, secret) = keygate.orders_key("acme", &["orders:read"]).await;
    let ran = tokio::task::spawn_blocking({
        let (app, url) = (app.to_owned(), keygate.public.clone());
        move || {
            Command::new("node")
                .arg("example.mjs")
                .env("KEYGATE_URL", url)
                .env("KEYGATE_KEY", secret)
                .current_dir(app)
                .output()
        }
    })
    .await
    .unwrap()
    .expect("node runs");
    let result: Value = serde_json::from_str(succeeded("the example", ran).trim()).unwrap();
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["body"]["ok"], true);
    assert!(result["rateLimit"]["remaining"].is_number(), "{result}");
    assert_eq!(result["refused"], "API_KEY_INVALID");
    assert_eq!(result["networkErrorIsDistinct"], true);
    assert_eq!(upstream.count(), 1);
}

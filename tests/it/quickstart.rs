//! `keygate quickstart`, as a user runs it: every printed block is run by `sh` exactly as
//! printed, and answers what its heading says; the example page it serves works in Chromium.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Block {
    status: String,
    code: Option<String>,
    script: String,
}

/// Starts `keygate quickstart` in `dir` on free ports and reads its blocks, and the CLI lines
/// that revoke a key (the last block is that key's next request).
fn quickstart(dir: &std::path::Path) -> (Child, Vec<Block>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("quickstart")
        .current_dir(dir)
        .env("KEYGATE_SERVER_LISTEN", "127.0.0.1:0")
        .env("KEYGATE_SERVER_ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("KEYGATE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut blocks: Vec<Block> = Vec::new();
    let mut revoke: Option<String> = None;
    for line in lines {
        if line.starts_with("Revoke a key") {
            revoke = Some(String::new());
            continue;
        }
        // The revoking lines, up to the heading of the revoked key's next request.
        if let Some(script) = revoke.as_mut().filter(|_| !line.starts_with("# ")) {
            if line.is_empty() {
                break;
            }
            if blocks.last().is_some_and(|b| b.code.as_deref() == Some("API_KEY_REVOKED")) {
                blocks.last_mut().unwrap().script.push_str(&format!("{line}\n"));
            } else {
                script.push_str(&format!("{line}\n"));
            }
            continue;
        }
        if let Some(heading) = line.strip_prefix("# ") {
            let expect = heading.split(':').next().unwrap();
            let mut words = expect.split(' ');
            blocks.push(Block {
                status: words.next().unwrap().to_owned(),
                code: words.next().map(str::to_owned),
                script: String::new(),
            });
        } else if let Some(block) = blocks.last_mut().filter(|_| !line.is_empty()) {
            block.script.push_str(&line);
            block.script.push('\n');
        }
    }
    (child, blocks, revoke.expect("the quickstart prints how to revoke a key"))
}

fn run(script: &str) -> String {
    let output = Command::new("sh").args(["-c", script]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn last_status_line(output: &str) -> &str {
    output.lines().rfind(|l| l.starts_with("HTTP/")).unwrap_or("")
}

fn stop(mut child: Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn every_printed_block_answers_what_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let (child, mut blocks, revoke) = quickstart(dir.path());
    assert!(blocks.len() >= 10, "the quickstart printed its blocks");
    // The revoked key's next request is run after the CLI lines that revoke it.
    let revoked = blocks.pop().unwrap();
    assert_eq!(revoked.code.as_deref(), Some("API_KEY_REVOKED"));
    let mut write_output = String::new();
    for block in &blocks {
        let output = run(&block.script);
        let status = last_status_line(&output);
        assert!(status.starts_with(&format!("HTTP/1.1 {}", block.status)), "{}\n{}", block.script, output);
        if let Some(code) = &block.code {
            assert!(output.contains(&format!("\"code\":\"{code}\"")), "{}\n{}", block.script, output);
        }
        if block.script.contains("X-Session-Token: $TOKEN") {
            write_output = output;
        }
    }
    assert!(write_output.contains("hello from the demo upstream"), "{write_output}");
    assert!(write_output.contains("\"channel\":\"browser\""));
    assert!(write_output.contains("\"tenant\":\"demo\""));

    // The CLI lines run as printed, in a shell with neither `keygate` on PATH nor a token of
    // its own, and the key they revoke is refused at its next request.
    let output = Command::new("sh")
        .args(["-c", &revoke])
        .env("PATH", "/usr/bin:/bin")
        .env_remove("KEYGATE_SERVER_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(output.status.success(), "{revoke}\n{}", String::from_utf8_lossy(&output.stderr));
    let after = run(&revoked.script);
    assert!(last_status_line(&after).starts_with("HTTP/1.1 401"), "{after}");
    assert!(after.contains("\"code\":\"API_KEY_REVOKED\""), "{after}");

    // The example page, on the demo origin, in headless Chromium: a mint and a write, a
    // refusal, and the quota left.
    let e2e = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    let output = Command::new("node").arg(e2e.join("open-page.mjs")).arg("http://localhost:3000/").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the example page: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let page: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(page["writeStatus"], 200, "{page}");
    assert!(page["sessionExpiresAt"].as_str().is_some_and(|at| at.ends_with('Z')), "{page}");
    assert_eq!(page["refusal"], "SCOPE_NOT_GRANTED", "{page}");
    assert!(page["remaining"].as_u64().is_some_and(|left| left < 100), "{page}");
    stop(child);

    // A second run revokes the first run's keys and prints working new ones.
    let first_mint = blocks[0].script.clone();
    let (child, blocks, _) = quickstart(dir.path());
    let again = run(&blocks[0].script);
    assert!(last_status_line(&again).starts_with("HTTP/1.1 201"), "{again}");
    let port_of = |script: &str| script.split("http://").nth(1).unwrap().split('/').next().unwrap().to_owned();
    let old_key_now = first_mint.replace(&port_of(&first_mint), &port_of(&blocks[0].script));
    let old = run(&old_key_now);
    assert!(last_status_line(&old).starts_with("HTTP/1.1 401"), "{old}");
    assert!(old.contains("API_KEY_REVOKED"));

    // SIGHUP neither stops the quickstart nor loses its demo routes.
    Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let write = blocks.iter().find(|b| b.script.contains("X-Session-Token: $TOKEN")).unwrap();
    assert!(run(&write.script).contains("hello from the demo upstream"));
    stop(child);
}

//! `keygate key import --tenant T`: keys migrated in, one JSON object a line on standard input
//! (`{"importHash", "prefix", "name", "scopes", …}`, the body of `POST …/keys`), each created
//! on its own. Each line's outcome is printed as a JSON line; a bad line stops nothing else.

use std::io::BufRead;
use std::process::ExitCode;

use keygate::app::StartError;
use serde_json::{Value, json};

use super::progress::Progress;
use super::request::AdminRequest;
use super::target::Target;

pub(crate) async fn import(target: &Target, tenant: &str, input: impl BufRead) -> Result<ExitCode, StartError> {
    let (mut created, mut failed) = (0, 0);
    // Lines come from standard input: no total to tell the time left by.
    let progress = Progress::new(None, "lines");
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(|error| format!("cannot read standard input: {error}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let number = index + 1;
        let outcome = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(body)) => {
                let answer = target.send(AdminRequest::create_key(tenant, body)).await?;
                match answer.status.is_success() {
                    true => json!({ "line": number, "status": answer.status.as_u16(), "data": answer.body["data"] }),
                    false => json!({ "line": number, "status": answer.status.as_u16(), "error": answer.body["error"] }),
                }
            }
            _ => {
                json!({ "line": number, "error": { "code": "VALIDATION_ERROR", "message": "the line is not a JSON object" } })
            }
        };
        if outcome["data"].is_object() {
            created += 1;
        } else {
            failed += 1;
        }
        progress.suspend(|| println!("{outcome}"));
        progress.inc();
    }
    progress.finish(&format!("{created} keys imported, {failed} lines refused"), created + failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

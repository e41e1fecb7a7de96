//! How an admin answer is printed: the admin API's JSON as it is (piped, or `-o json`), or a
//! table for a person at a terminal. Errors go to stderr, with each detail naming its flag.

use std::io::IsTerminal;
use std::process::ExitCode;

use comfy_table::{Table, presets};
use serde_json::Value;

use super::args::Output;
use super::request::name_flags;
use super::target::Answer;

impl Output {
    /// `-o`, or a table when stdout is a terminal and JSON when it is not.
    pub(crate) fn chosen(flag: Option<Output>) -> Output {
        flag.unwrap_or(if std::io::stdout().is_terminal() { Output::Table } else { Output::Json })
    }

    /// The answer on stdout, or its error envelope on stderr with exit code 1.
    pub(crate) fn print(self, answer: Answer) -> ExitCode {
        let mut body = answer.body;
        if answer.status.is_success() {
            match self {
                // Nothing to show (a delete): the exit code says it.
                _ if body.is_null() => {}
                Output::Json => println!("{}", pretty(&body)),
                Output::Table => print!("{}", table(&body)),
            }
            return ExitCode::SUCCESS;
        }
        name_flags(&mut body);
        match self {
            Output::Json => eprintln!("{}", pretty(&body)),
            Output::Table => eprint!("{}", error_text(&body, answer.status)),
        }
        ExitCode::FAILURE
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A list as columns (the fields of its items), one object as field and value.
fn table(body: &Value) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    match &body["data"] {
        Value::Array(items) => {
            let Some(Value::Object(first)) = items.first() else { return "(none)\n".to_owned() };
            let columns: Vec<&String> = first.keys().collect();
            table.set_header(&columns);
            for item in items {
                table.add_row(columns.iter().map(|column| cell(&item[column.as_str()])));
            }
            let mut text = format!("{table}\n");
            if let Some(cursor) = body["nextCursor"].as_str() {
                text.push_str(&format!("more: --cursor {cursor}\n"));
            }
            text
        }
        Value::Object(fields) => {
            for (name, value) in fields {
                table.add_row([name.clone(), cell(value)]);
            }
            format!("{table}\n")
        }
        other => format!("{}\n", pretty(other)),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(fields) => match (fields.get("limit"), fields.get("windowSeconds")) {
            (Some(limit), Some(window)) => format!("{limit} per {window} s"),
            _ => value.to_string(),
        },
        other => other.to_string(),
    }
}

/// `error: CODE (status): message`, then a line for each detail.
fn error_text(envelope: &Value, status: http::StatusCode) -> String {
    let error = &envelope["error"];
    let mut text = format!(
        "error: {} ({}): {}\n",
        error["code"].as_str().unwrap_or("UNKNOWN"),
        status.as_u16(),
        error["message"].as_str().unwrap_or_default()
    );
    for detail in error["details"].as_array().into_iter().flatten() {
        let path = detail["path"].as_str().unwrap_or_default();
        let place = match detail["flag"].as_str() {
            Some(flag) => format!("{flag} ({path})"),
            None => path.to_owned(),
        };
        text.push_str(&format!("  {place}: {}\n", detail["message"].as_str().unwrap_or_default()));
    }
    text
}

//! Usage (SPEC §13): every request that passed steps 1–3 counted for its key, per UTC hour, by
//! outcome, with the key's `lastUsedAt` — in memory on the request path, written behind in one
//! batched write per `usage.flush_seconds` (`recorder`); and the usage queries of the admin
//! API and the CLI (`query`).

mod query;
mod recorder;

use axum::response::Response;

use crate::error::ErrorCode;

pub use query::{CSV_TYPE, UsageAnswer, UsageQuery};
pub use recorder::{Tally, UsageRecorder};

/// How a counted request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Forwarded and answered below 400, or a session minted.
    Ok,
    Upstream4xx,
    Upstream5xx,
    /// Refused or failed by keygate with this code.
    Answered(ErrorCode),
    /// The client went away before an answer was made (its request was admitted and may have
    /// reached the upstream, so it counts).
    ClientClosed,
}

impl Outcome {
    /// How a response that reached the client ends the request: keygate's own answers carry
    /// their [`ErrorCode`]; any other is the upstream's (or the application's).
    pub fn of(response: &Response) -> Self {
        if let Some(code) = response.extensions().get::<ErrorCode>() {
            return Self::Answered(*code);
        }
        match response.status().as_u16() {
            500.. => Self::Upstream5xx,
            400.. => Self::Upstream4xx,
            _ => Self::Ok,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Upstream4xx => "UPSTREAM_4XX",
            Self::Upstream5xx => "UPSTREAM_5XX",
            Self::Answered(code) => code.parts().0,
            Self::ClientClosed => "CLIENT_CLOSED",
        }
    }
}

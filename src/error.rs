//! The one table of wire error codes and the envelope every listener answers with.
//!
//! Domain modules return their own errors (`StoreError`, …); only the HTTP edge turns them
//! into an [`ApiError`], whose `IntoResponse` writes `{"error":{"code","message","details"}}`.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// Declares [`ErrorCode`] from one table: variant, wire code, HTTP status.
macro_rules! error_codes {
    ($($variant:ident => $wire:literal, $status:ident;)*) => {
        /// Every error code keygate answers with, each tied to exactly one HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The wire code and its status.
            pub const fn parts(self) -> (&'static str, StatusCode) {
                match self {
                    $(Self::$variant => ($wire, StatusCode::$status),)*
                }
            }
        }
    };
}

error_codes! {
    ApiKeyRequired => "API_KEY_REQUIRED", UNAUTHORIZED;
    ApiKeyInvalid => "API_KEY_INVALID", UNAUTHORIZED;
    ApiKeyRevoked => "API_KEY_REVOKED", UNAUTHORIZED;
    ApiKeyExpired => "API_KEY_EXPIRED", UNAUTHORIZED;
    SessionRequired => "SESSION_REQUIRED", UNAUTHORIZED;
    SessionInvalid => "SESSION_INVALID", UNAUTHORIZED;
    SessionExpired => "SESSION_EXPIRED", UNAUTHORIZED;
    OriginNotAllowed => "ORIGIN_NOT_ALLOWED", FORBIDDEN;
    ScopeNotGranted => "SCOPE_NOT_GRANTED", FORBIDDEN;
    TenantSuspended => "TENANT_SUSPENDED", FORBIDDEN;
    SubscriptionCancelled => "SUBSCRIPTION_CANCELLED", FORBIDDEN;
    SubscriptionPastDue => "SUBSCRIPTION_PAST_DUE", FORBIDDEN;
    ModuleNotEnabled => "MODULE_NOT_ENABLED", FORBIDDEN;
    RateLimited => "RATE_LIMITED", TOO_MANY_REQUESTS;
    ValidationError => "VALIDATION_ERROR", BAD_REQUEST;
    NotFound => "NOT_FOUND", NOT_FOUND;
    MethodNotAllowed => "METHOD_NOT_ALLOWED", METHOD_NOT_ALLOWED;
    Conflict => "CONFLICT", CONFLICT;
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", PAYLOAD_TOO_LARGE;
    HeadersTooLarge => "HEADERS_TOO_LARGE", REQUEST_HEADER_FIELDS_TOO_LARGE;
    AdminTokenInvalid => "ADMIN_TOKEN_INVALID", UNAUTHORIZED;
    AdminReadOnly => "ADMIN_READ_ONLY", FORBIDDEN;
    UpstreamUnavailable => "UPSTREAM_UNAVAILABLE", BAD_GATEWAY;
    UpstreamTimeout => "UPSTREAM_TIMEOUT", GATEWAY_TIMEOUT;
    ServiceUnavailable => "SERVICE_UNAVAILABLE", SERVICE_UNAVAILABLE;
    InternalError => "INTERNAL_ERROR", INTERNAL_SERVER_ERROR;
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        self.parts().0
    }

    pub const fn status(self) -> StatusCode {
        self.parts().1
    }
}

/// One entry of `details`: which input was wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    pub path: String,
    pub message: String,
}

impl Detail {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

/// An error as the client sees it. `message` is for humans and never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    pub details: Vec<Detail>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, message: message.into(), details: Vec::new(), retry_after: None }
    }

    pub fn validation(details: Vec<Detail>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.path, one.message),
            _ => format!("{} fields are invalid", details.len()),
        };
        Self { details, ..Self::new(ErrorCode::ValidationError, message) }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "internal error")
    }

    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self { retry_after: Some(1), ..Self::new(ErrorCode::ServiceUnavailable, message) }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON body, also used by the CLI.
    pub fn envelope(&self) -> serde_json::Value {
        serde_json::to_value(self.enveloped()).unwrap_or_default()
    }

    fn enveloped(&self) -> Envelope<'_> {
        Envelope { error: EnvelopeError { code: self.code.as_str(), message: &self.message, details: &self.details } }
    }

    /// The envelope's bytes, written into one buffer of about their size: no `Value` tree (a
    /// map and a copy of each text) built on the way, as a refusal is a hot path too.
    fn envelope_bytes(&self) -> Vec<u8> {
        let details: usize = self.details.iter().map(|d| d.path.len() + d.message.len() + 32).sum();
        let mut bytes = Vec::with_capacity(64 + self.message.len() + details);
        match serde_json::to_writer(&mut bytes, &self.enveloped()) {
            Ok(()) => bytes,
            Err(_) => br#"{"error":{"code":"INTERNAL_ERROR","message":"internal error","details":[]}}"#.to_vec(),
        }
    }
}

/// `{"error": {"code", "message", "details"}}`, borrowed from an [`ApiError`].
#[derive(Serialize)]
struct Envelope<'a> {
    error: EnvelopeError<'a>,
}

#[derive(Serialize)]
struct EnvelopeError<'a> {
    code: &'static str,
    message: &'a str,
    details: &'a [Detail],
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.code.status(), self.envelope_bytes());
        let headers = response.headers_mut();
        if self.code.status() == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, number_value(seconds));
        }
        response.extensions_mut().insert(self.code);
        response
    }
}

/// A `{"data": …}` success body with the given status.
pub fn data_response<T: Serialize>(status: StatusCode, data: &T) -> Response {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        data: &'a T,
    }
    // Straight to bytes: no `Value` tree built on the way, and room for a small answer (a
    // verdict, a key) at once rather than grown from 128 bytes.
    let mut body = Vec::with_capacity(256);
    match serde_json::to_writer(&mut body, &Envelope { data }) {
        Ok(()) => json_response(status, body),
        Err(_) => ApiError::internal().into_response(),
    }
}

/// A JSON answer, its header map made once with room for what the pipeline and the log add
/// (`X-RateLimit-*`, CORS, `X-Request-Id`): grown from empty it is allocated three times.
fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.reserve(12);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error and its causes, outermost first, for a log line or a message: hyper's own
/// ("client error (Connect)") says little without them.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A whole number as a header value, in one allocation: `HeaderValue::from` of an integer
/// takes two (a growing buffer, then the shared handle its frozen bytes need).
pub(crate) fn number_value(number: impl itoa::Integer) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    HeaderValue::from_str(digits.format(number)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `text` as a header value, written in `N` bytes on the stack and copied once, into the value:
/// `None` when it does not fit or is not a valid value.
pub(crate) fn formatted_value<const N: usize>(text: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
    use std::io::Write as _;
    let mut bytes = [0u8; N];
    let mut cursor = std::io::Cursor::new(&mut bytes[..]);
    cursor.write_fmt(text).ok()?;
    let written = cursor.position() as usize;
    HeaderValue::from_bytes(&bytes[..written]).ok()
}

/// The header value's kinds whose number repeats from one request to the next.
#[derive(Clone, Copy)]
pub(crate) enum Repeating {
    /// `X-RateLimit-Limit`: most keys share a few limits.
    Limit,
    /// `X-RateLimit-Reset`: the same window end for every request of a window.
    Reset,
}

/// [`number_value`], remembered per thread for the last number of each [`Repeating`] kind: a
/// repeat is a reference count, not an allocation.
pub(crate) fn repeating_number_value(kind: Repeating, number: impl Into<i128>) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<[Option<(i128, HeaderValue)>; 2]> = const { std::cell::RefCell::new([None, None]) };
    }
    let number = number.into();
    LAST.with_borrow_mut(|last| {
        let slot = &mut last[kind as usize];
        match slot {
            Some((held, value)) if *held == number => value.clone(),
            _ => slot.insert((number, number_value(number))).1.clone(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formatted_value_is_its_text_or_none_when_it_does_not_fit() {
        let ip: std::net::IpAddr = "::ffff:255.255.255.255".parse().unwrap();
        assert_eq!(formatted_value::<48>(format_args!("{ip}")).unwrap(), "::ffff:255.255.255.255");
        assert_eq!(formatted_value::<4>(format_args!("{}", 1234)).unwrap(), "1234");
        assert!(formatted_value::<4>(format_args!("{}", 12345)).is_none());
        assert!(formatted_value::<8>(format_args!("a\nb")).is_none(), "not a valid value");
    }

    #[test]
    fn a_remembered_number_is_the_number_asked_for() {
        for (kind, number) in [
            (Repeating::Limit, 100_i64),
            (Repeating::Limit, 100),
            (Repeating::Reset, 100),
            (Repeating::Limit, 7),
            (Repeating::Reset, 1_800_000_000),
            (Repeating::Limit, 100),
        ] {
            assert_eq!(repeating_number_value(kind, number), number_value(number));
        }
        assert_eq!(repeating_number_value(Repeating::Limit, u64::MAX), u64::MAX.to_string().as_str());
    }

    #[test]
    fn codes_are_unique_and_statuses_match_their_family() {
        use ErrorCode::*;
        let all = ErrorCode::ALL.iter().copied();
        let names: std::collections::HashSet<_> = all.clone().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in all {
            let name = code.as_str();
            let expected_401 =
                name.starts_with("API_KEY_") || name.starts_with("SESSION_") || code == AdminTokenInvalid;
            assert_eq!(code.status() == StatusCode::UNAUTHORIZED, expected_401, "{name}");
        }
        assert_eq!(SubscriptionPastDue.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn validation_error_message_names_a_single_field() {
        let error = ApiError::validation(vec![Detail::new("name", "must not be empty")]);
        assert_eq!(error.message, "name: must not be empty");
        assert_eq!(error.envelope()["error"]["details"][0]["path"], "name");
    }

    #[test]
    fn the_envelope_written_as_bytes_is_the_envelope() {
        let details = vec![Detail::new("name", "must not be \"empty\""), Detail::new("scopes[0]", "é\n")];
        for error in [ApiError::validation(details), ApiError::new(ErrorCode::ApiKeyInvalid, "no key")] {
            assert_eq!(error.envelope_bytes(), error.envelope().to_string().into_bytes());
            let text = String::from_utf8(error.envelope_bytes()).unwrap();
            assert!(text.starts_with(r#"{"error":{"code":""#), "{text}");
        }
    }
}

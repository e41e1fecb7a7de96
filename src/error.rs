//! The one table of wire error codes and the envelope every listener answers with.
//!
//! Domain modules return their own errors (`StoreError`, …); only the HTTP edge turns them
//! into an [`ApiError`], whose `IntoResponse` writes `{"error":{"code","message","details"}}`.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// Every error code keygate answers with, each tied to exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ApiKeyRequired,
    ApiKeyInvalid,
    ApiKeyRevoked,
    ApiKeyExpired,
    SessionRequired,
    SessionInvalid,
    SessionExpired,
    OriginNotAllowed,
    ScopeNotGranted,
    TenantSuspended,
    SubscriptionCancelled,
    SubscriptionPastDue,
    ModuleNotEnabled,
    RateLimited,
    ValidationError,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    AdminTokenInvalid,
    UpstreamUnavailable,
    UpstreamTimeout,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 24] = {
        use ErrorCode::*;
        [
            ApiKeyRequired,
            ApiKeyInvalid,
            ApiKeyRevoked,
            ApiKeyExpired,
            SessionRequired,
            SessionInvalid,
            SessionExpired,
            OriginNotAllowed,
            ScopeNotGranted,
            TenantSuspended,
            SubscriptionCancelled,
            SubscriptionPastDue,
            ModuleNotEnabled,
            RateLimited,
            ValidationError,
            NotFound,
            MethodNotAllowed,
            Conflict,
            PayloadTooLarge,
            AdminTokenInvalid,
            UpstreamUnavailable,
            UpstreamTimeout,
            ServiceUnavailable,
            InternalError,
        ]
    };

    /// The wire code and its status, in one place.
    pub const fn parts(self) -> (&'static str, StatusCode) {
        use ErrorCode::*;
        match self {
            ApiKeyRequired => ("API_KEY_REQUIRED", StatusCode::UNAUTHORIZED),
            ApiKeyInvalid => ("API_KEY_INVALID", StatusCode::UNAUTHORIZED),
            ApiKeyRevoked => ("API_KEY_REVOKED", StatusCode::UNAUTHORIZED),
            ApiKeyExpired => ("API_KEY_EXPIRED", StatusCode::UNAUTHORIZED),
            SessionRequired => ("SESSION_REQUIRED", StatusCode::UNAUTHORIZED),
            SessionInvalid => ("SESSION_INVALID", StatusCode::UNAUTHORIZED),
            SessionExpired => ("SESSION_EXPIRED", StatusCode::UNAUTHORIZED),
            OriginNotAllowed => ("ORIGIN_NOT_ALLOWED", StatusCode::FORBIDDEN),
            ScopeNotGranted => ("SCOPE_NOT_GRANTED", StatusCode::FORBIDDEN),
            TenantSuspended => ("TENANT_SUSPENDED", StatusCode::FORBIDDEN),
            SubscriptionCancelled => ("SUBSCRIPTION_CANCELLED", StatusCode::FORBIDDEN),
            SubscriptionPastDue => ("SUBSCRIPTION_PAST_DUE", StatusCode::FORBIDDEN),
            ModuleNotEnabled => ("MODULE_NOT_ENABLED", StatusCode::FORBIDDEN),
            RateLimited => ("RATE_LIMITED", StatusCode::TOO_MANY_REQUESTS),
            ValidationError => ("VALIDATION_ERROR", StatusCode::BAD_REQUEST),
            NotFound => ("NOT_FOUND", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("METHOD_NOT_ALLOWED", StatusCode::METHOD_NOT_ALLOWED),
            Conflict => ("CONFLICT", StatusCode::CONFLICT),
            PayloadTooLarge => ("PAYLOAD_TOO_LARGE", StatusCode::PAYLOAD_TOO_LARGE),
            AdminTokenInvalid => ("ADMIN_TOKEN_INVALID", StatusCode::UNAUTHORIZED),
            UpstreamUnavailable => ("UPSTREAM_UNAVAILABLE", StatusCode::BAD_GATEWAY),
            UpstreamTimeout => ("UPSTREAM_TIMEOUT", StatusCode::GATEWAY_TIMEOUT),
            ServiceUnavailable => ("SERVICE_UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE),
            InternalError => ("INTERNAL_ERROR", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

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
        serde_json::json!({
            "error": {
                "code": self.code.as_str(),
                "message": self.message,
                "details": self.details,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), json_body(&self.envelope())).into_response();
        let headers = response.headers_mut();
        if self.code.status() == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(self.code);
        response
    }
}

/// A `{"data": …}` success body with the given status.
pub fn data_response<T: Serialize>(status: StatusCode, data: &T) -> Response {
    match serde_json::to_value(data) {
        Ok(value) => (status, json_body(&serde_json::json!({ "data": value }))).into_response(),
        Err(_) => ApiError::internal().into_response(),
    }
}

fn json_body(value: &serde_json::Value) -> ([(header::HeaderName, HeaderValue); 1], String) {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_match_their_family() {
        use ErrorCode::*;
        let all = ErrorCode::ALL;
        let names: std::collections::HashSet<_> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), all.len());
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
}

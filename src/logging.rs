//! Where keygate's log lines go: JSON lines on stderr, the request log buffered.
//!
//! One line per request is keygate's busiest output. Written one `write` each, it cost about
//! 8% of a session mint under load (the syscall, and the serving threads contending for
//! stderr's lock; docs/performance.md). So request lines gather in one buffer, written out when
//! it holds `FLUSH_AT` bytes, every `FLUSH_EVERY`, at once whenever any other line is
//! logged (a warning never waits, and order is kept), and on exit. This is what nginx's
//! `access_log … buffer= flush=` and Envoy's access-log flush interval do; a crash loses at most
//! the last `FLUSH_EVERY` of request lines, never a warning.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The request log's target: its lines are the ones buffered.
pub const REQUEST_LOG_TARGET: &str = "keygate::request";

/// A buffer this full is written out at once.
const FLUSH_AT: usize = 32 * 1024;

/// A request line waits at most about this long to be written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Log lines on their way to `out`.
pub struct LogSink {
    state: Mutex<Pending>,
}

struct Pending {
    buffer: Vec<u8>,
    out: Box<dyn Write + Send>,
}

impl LogSink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { state: Mutex::new(Pending { buffer: Vec::with_capacity(FLUSH_AT * 2), out }) }
    }

    /// Writes out every buffered line.
    pub fn flush(&self) {
        let mut pending = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.write_out();
    }

    fn append(&self, line: &[u8], urgent: bool) {
        let mut pending = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.buffer.extend_from_slice(line);
        if urgent || pending.buffer.len() >= FLUSH_AT {
            pending.write_out();
        }
    }
}

impl Pending {
    fn write_out(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        // Nowhere to report a failure to write the log; the lines are dropped, not retried.
        let _ = self.out.write_all(&self.buffer);
        let _ = self.out.flush();
        self.buffer.clear();
    }
}

/// One event's writer: tracing's formatter hands it the whole line in one `write_all`.
pub struct LineWriter<'a> {
    sink: &'a LogSink,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.sink.append(bytes, self.urgent);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl MakeWriter<'_> for &'static LogSink {
    type Writer = LineWriter<'static>;

    fn make_writer(&self) -> Self::Writer {
        LineWriter { sink: self, urgent: true }
    }

    fn make_writer_for(&self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter { sink: self, urgent: meta.target() != REQUEST_LOG_TARGET }
    }
}

/// One event as one JSON line, in the shape of tracing-subscriber's JSON format:
/// `{"timestamp":…,"level":…,"fields":{…},"target":…}` (keygate opens no spans). Written
/// straight into the line, without the generic serializer's per-field plumbing, which cost
/// about 6% of a proxied request under load (docs/performance.md).
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        with_line_buffer(|line| {
            let meta = event.metadata();
            line.push_str("{\"timestamp\":\"");
            push_timestamp(line, chrono::Utc::now());
            line.push_str("\",\"level\":\"");
            line.push_str(meta.level().as_str());
            line.push_str("\",\"fields\":{");
            event.record(&mut JsonFields { line, first: true });
            line.push_str("},\"target\":");
            push_json_str(line, meta.target());
            line.push_str("}\n");
            writer.write_str(line)
        })
    }
}

/// Runs `make` on an empty line buffer: the thread's own, so that a line costs no allocation
/// once the buffer is big enough; a fresh one should a line be made while another is.
fn with_line_buffer<R>(make: impl FnOnce(&mut String) -> R) -> R {
    thread_local! {
        static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
    }
    LINE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            make(&mut line)
        }
        Err(_) => make(&mut String::with_capacity(512)),
    })
}

/// RFC 3339 in UTC with microseconds (`2026-12-06T22:55:00.123456Z`), as
/// `to_rfc3339_opts(Micros, true)` writes it, without the `String` it returns.
fn push_timestamp(line: &mut String, at: chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike, Timelike};
    let micros = at.timestamp_subsec_micros().min(999_999);
    let _ = write!(
        line,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
}

/// Writes each field as `"name":value` into the line.
struct JsonFields<'a> {
    line: &'a mut String,
    first: bool,
}

impl JsonFields<'_> {
    fn name(&mut self, field: &Field) {
        if !std::mem::take(&mut self.first) {
            self.line.push(',');
        }
        push_json_str(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        push_json_str(self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        if value.is_finite() {
            let _ = write!(self.line, "{value}");
        } else {
            // JSON has no NaN or infinity.
            push_json_str(self.line, &value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.name(field);
        // Formatted straight into the line, escaped on the way (`%method`, `client`).
        self.line.push('"');
        let _ = write!(Escaped(self.line), "{value:?}");
        self.line.push('"');
    }
}

/// Writes what is formatted into it as the inside of a JSON string.
struct Escaped<'a>(&'a mut String);

impl std::fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        push_json_chars(self.0, text);
        Ok(())
    }
}

/// `text` as a JSON string: quotes, backslashes and control characters escaped.
fn push_json_str(line: &mut String, text: &str) {
    line.push('"');
    push_json_chars(line, text);
    line.push('"');
}

fn push_json_chars(line: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c => line.push(c),
        }
    }
}

static STDERR: OnceLock<LogSink> = OnceLock::new();

const QUIET_NOTICES: &str = "sqlx::postgres::notice=warn";

fn stderr_sink() -> &'static LogSink {
    STDERR.get_or_init(|| LogSink::new(Box::new(std::io::stderr())))
}

/// Installs the process's subscriber: JSON lines on stderr, filtered by `KEYGATE_LOG` (or
/// `default_filter`), with request lines buffered and written at least every `FLUSH_EVERY`.
pub fn init(default_filter: &str) {
    let chosen = std::env::var("KEYGATE_LOG").ok();
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("KEYGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // PostgreSQL's notices come at INFO, and every start has one: the migrator's `CREATE TABLE
    // IF NOT EXISTS _sqlx_migrations` says the table exists. Kept to warnings and up unless
    // `KEYGATE_LOG` names sqlx.
    if !chosen.is_some_and(|chosen| chosen.contains("sqlx")) {
        filter = filter.add_directive(QUIET_NOTICES.parse().expect("a valid directive"));
    }
    let sink = stderr_sink();
    tracing_subscriber::fmt().event_format(JsonLine).with_env_filter(filter).with_writer(sink).init();
    let _ = std::thread::Builder::new().name("keygate-log".to_owned()).spawn(move || {
        loop {
            std::thread::sleep(FLUSH_EVERY);
            sink.flush();
        }
    });
}

/// Writes out the buffered request lines; called before the process exits.
pub fn flush() {
    if let Some(sink) = STDERR.get() {
        sink.flush();
    }
}

/// Log output kept in memory, for tests of what is logged (keygate's own, and an application's
/// that embeds it): a writer that every clone appends to.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(out: &Captured) -> String {
        out.text()
    }

    #[test]
    fn the_timestamp_is_chronos_rfc_3339_with_microseconds() {
        for millis in [0, 1, 999, 1_000, 86_399_999, 951_782_400_123, 1_796_601_600_000, 253_402_300_799_999] {
            let at = chrono::DateTime::from_timestamp_millis(millis).unwrap()
                + chrono::Duration::microseconds(millis.rem_euclid(7) * 111);
            let mut line = String::new();
            push_timestamp(&mut line, at);
            assert_eq!(line, at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        }
    }

    #[test]
    fn request_lines_wait_and_any_other_line_writes_them_out_in_order() {
        let out = Captured::default();
        let sink = LogSink::new(Box::new(out.clone()));
        sink.append(b"request 1\n", false);
        sink.append(b"request 2\n", false);
        assert_eq!(written(&out), "", "request lines wait");
        sink.append(b"warning\n", true);
        assert_eq!(written(&out), "request 1\nrequest 2\nwarning\n");
        sink.append(b"request 3\n", false);
        sink.flush();
        assert_eq!(written(&out), "request 1\nrequest 2\nwarning\nrequest 3\n");
    }

    #[test]
    fn lines_are_json_in_tracing_subscribers_shape_whatever_the_values() {
        let out = Captured::default();
        let sink: &'static LogSink = Box::leak(Box::new(LogSink::new(Box::new(out.clone()))));
        let subscriber = tracing_subscriber::fmt().event_format(JsonLine).with_writer(sink).finish();
        tracing::subscriber::with_default(subscriber, || {
            let path = "/a\"b\\c\u{1}\u{7f}\n\té";
            tracing::warn!(target: "keygate::test", path, status = 404u16, delta = -3i64, ok = true, ratio = 0.5, nan = f64::NAN, method = %"GET", "over \"there\"");
        });
        let text = written(&out);
        assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "keygate::test");
        let fields = &line["fields"];
        assert_eq!(fields["message"], "over \"there\"");
        assert_eq!(fields["path"], "/a\"b\\c\u{1}\u{7f}\n\té");
        assert_eq!(fields["status"], 404);
        assert_eq!(fields["delta"], -3);
        assert_eq!(fields["ok"], true);
        assert_eq!(fields["ratio"], 0.5);
        assert_eq!(fields["nan"], "NaN");
        assert_eq!(fields["method"], "GET");
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'), "{timestamp}");
    }

    #[test]
    fn a_full_buffer_is_written_out_at_once() {
        let out = Captured::default();
        let sink = LogSink::new(Box::new(out.clone()));
        let line = [b'x'; 1000];
        let lines = FLUSH_AT.div_ceil(line.len());
        for _ in 1..lines {
            sink.append(&line, false);
        }
        assert_eq!(written(&out), "", "not full yet");
        sink.append(&line, false);
        assert_eq!(written(&out).len(), lines * line.len());
    }
}

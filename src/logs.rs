//! Logging: our own events at `-log-level`, libraries' at warn at most (so that no HTTP
//! library's trace output can carry a header into the log), as text or JSON, on stderr or
//! stdout (`-log-stream`).
//!
//! A JSON line is one flat object: `timestamp`, `severity` (`DEBUG`, `INFO`, `WARNING`,
//! `ERROR`: the field Cloud Logging reads, and Loki detects), `level`, `message`, then the
//! fields of the Mount's span (`namespace`, `pod`, `class`) and of the event, all top-level.

use crate::settings::{LogFormat, LogStream};
use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the process's logger (once; later calls do nothing).
pub fn init(level: tracing::level_filters::LevelFilter, format: LogFormat, stream: LogStream) {
    let library = level.min(tracing::level_filters::LevelFilter::WARN);
    let filter =
        tracing_subscriber::EnvFilter::new(format!("{library},vault_csi_provider={level}"));
    let writer = move || -> Box<dyn std::io::Write> {
        match stream {
            LogStream::Stderr => Box::new(std::io::stderr()),
            LogStream::Stdout => Box::new(std::io::stdout()),
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// The severity names of Cloud Logging (and of syslog) for a tracing level.
pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::TRACE | Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        Level::ERROR => "ERROR",
    }
}

/// One flat JSON object per event.
struct FlatJson;

/// An event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(now_rfc3339()));
        let level = event.metadata().level();
        line.insert("severity".into(), Value::String(severity(level).into()));
        line.insert(
            "level".into(),
            Value::String(level.as_str().to_ascii_lowercase()),
        );
        // The spans' fields first (outermost first), so the event's own win on a clash.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields)
                {
                    line.extend(map);
                }
            }
        }
        let mut own = Map::new();
        event.record(&mut Fields(&mut own));
        line.extend(own);
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let whole = crate::text::rfc3339(now.as_secs() as i64);
    format!(
        "{}.{:03}Z",
        whole.trim_end_matches('Z'),
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_cloud_logging_reads() {
        assert_eq!(severity(&Level::WARN), "WARNING");
        assert_eq!(severity(&Level::INFO), "INFO");
        assert_eq!(severity(&Level::TRACE), "DEBUG");
        let t = now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z'));
    }
}

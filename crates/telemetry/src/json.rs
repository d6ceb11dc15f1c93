//! The JSON log line: one object per event, `{"timestamp","level","target","message",
//! "request_id","fields"}`, where `request_id` is that of the request being served (the
//! `request_id` field of the innermost enclosing span that has one; left out when there is
//! none) and `fields` holds the event's own fields.
//!
//! [`RequestIdLayer`] notes each span's `request_id` when the span is made, so formatting an
//! event only walks its spans; [`JsonLine`] writes the object.

use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The field that carries a request's ID, on the request's span.
pub const REQUEST_ID: &str = "request_id";

/// A span's request ID, kept in its extensions by [`RequestIdLayer`].
struct RequestId(String);

/// Notes the `request_id` field of each new span (see the module documentation).
pub struct RequestIdLayer;

/// Finds the request ID among a span's fields.
struct FindRequestId(Option<String>);

impl Visit for FindRequestId {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == REQUEST_ID {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == REQUEST_ID {
            // `%id` arrives here; its Debug is the Display it was given
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for RequestIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut find = FindRequestId(None);
        attrs.record(&mut find);
        if let (Some(found), Some(span)) = (find.0, ctx.span(id)) {
            span.extensions_mut().insert(RequestId(found));
        }
    }
}

/// An event's fields as JSON members: `message` apart, the rest in order.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.rest.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

/// The event formatter of JSON logs; see the module documentation.
pub struct JsonLine;

/// Now, as RFC 3339 in UTC with microseconds (`2026-12-01T03:02:06.123456Z`).
pub(crate) fn now() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}

/// `value` as a JSON string literal.
fn quoted(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let mut line = format!(
            r#"{{"timestamp":"{}","level":"{}","target":{}"#,
            now(),
            meta.level(),
            quoted(meta.target())
        );
        if let Some(message) = &fields.message {
            write!(line, r#","message":{}"#, quoted(message))?;
        }
        let request_id = ctx.event_scope().and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<RequestId>().map(|r| r.0.clone()))
        });
        if let Some(id) = request_id {
            write!(line, r#","{REQUEST_ID}":{}"#, quoted(&id))?;
        }
        if !fields.rest.is_empty() {
            line.push_str(r#","fields":{"#);
            for (i, (name, value)) in fields.rest.iter().enumerate() {
                let comma = if i == 0 { "" } else { "," };
                write!(line, "{comma}{}:{value}", quoted(name))?;
            }
            line.push('}');
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// A writer that keeps what it is given.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Kept {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_inside_a_request_carries_its_id_and_the_events_fields() {
        let kept = Kept::default();
        let out = kept.clone();
        let subscriber = tracing_subscriber::registry().with(RequestIdLayer).with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonLine)
                .with_writer(move || out.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(port = 80u16, "starting \"quoted\"");
            let id = "0123abcd";
            let request = tracing::info_span!("request", request_id = %id);
            let _in_request = request.enter();
            let inner = tracing::info_span!("load", article_id = 7);
            let _in_inner = inner.enter();
            tracing::warn!(cache_hit = false, error = "gone", "article missing");
        });
        let text = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "starting \"quoted\"");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["fields"]["port"], 80);
        assert!(lines[0].get(REQUEST_ID).is_none(), "{}", lines[0]);
        assert_eq!(lines[1][REQUEST_ID], "0123abcd");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["target"], module_path!());
        assert_eq!(lines[1]["fields"]["cache_hit"], false);
        assert_eq!(lines[1]["fields"]["error"], "gone");
        let stamp = lines[1]["timestamp"].as_str().unwrap();
        assert!(
            stamp.len() == 27 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{stamp}"
        );
    }
}

use std::cell::RefCell;
use std::sync::Arc;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};
use xray_sdk::context::ContextGuard;
use xray_sdk::{AnnotationValue, Cause, Entity, Subsegment};

use crate::fields::{Fields, Value, annotation_key};

/// A `tracing-subscriber` [`Layer`](tracing_subscriber::Layer) that turns spans into X-Ray
/// subsegments; see the [crate documentation](crate).
#[derive(Debug, Clone, Default)]
pub struct XRaySpanLayer {
    annotations: Arc<[String]>,
    all_annotations: bool,
}

impl XRaySpanLayer {
    /// A layer recording every span's fields as metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the fields with these names as annotations instead of metadata, so filter
    /// expressions can search them. Keys keep letters, digits and `_`; any other character
    /// becomes `_`.
    pub fn with_annotations<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.annotations = names.into_iter().map(Into::into).collect();
        self
    }

    /// Records every field as an annotation. A trace keeps at most 50 annotations: meant for
    /// spans with few, well-chosen fields.
    pub fn with_all_annotations(mut self, all: bool) -> Self {
        self.all_annotations = all;
        self
    }

    fn record(&self, entity: &Entity, fields: Fields) {
        for (name, value) in fields.0 {
            if self.all_annotations || self.annotations.iter().any(|a| a == name) {
                let value: AnnotationValue = match value {
                    Value::Bool(v) => v.into(),
                    Value::I64(v) => v.into(),
                    Value::U64(v) => v.into(),
                    Value::F64(v) => v.into(),
                    Value::Str(v) => v.into(),
                };
                // A refused value is logged by xray-sdk; the span goes on.
                entity.put_annotation(&annotation_key(name), value);
            } else {
                entity.put_metadata_in("tracing", name, &value.to_json());
            }
        }
    }
}

/// The subsegment of a span, kept in the span's extensions.
struct SpanSubsegment(Subsegment);

/// The entity of `span`'s subsegment, if it has one. The extensions' lock is released before
/// this returns: nothing that can emit a tracing event runs under it.
fn entity_of<S>(span: &SpanRef<'_, S>) -> Option<Entity>
where
    S: for<'a> LookupSpan<'a>,
{
    span.extensions()
        .get::<SpanSubsegment>()
        .map(|s| s.0.entity().clone())
}

/// The nearest subsegment at or above `span`.
fn nearest<S>(span: SpanRef<'_, S>) -> Option<Entity>
where
    S: for<'a> LookupSpan<'a>,
{
    span.scope().find_map(|s| entity_of(&s))
}

/// A span entered on this thread whose subsegment is the current X-Ray context.
struct Entered {
    id: Id,
    guard: ContextGuard,
    /// Exited out of order: its guard is dropped once everything above it is.
    exited: bool,
}

thread_local! {
    static ENTERED: RefCell<Vec<Entered>> = const { RefCell::new(Vec::new()) };
}

/// Whether an event comes from the X-Ray crates themselves (their diagnostics).
fn is_ours(target: &str) -> bool {
    target.starts_with("xray_")
}

impl<S> tracing_subscriber::Layer<S> for XRaySpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if is_ours(span.metadata().target()) {
            return;
        }
        // A span created where it runs (the usual case) nests under whatever is current,
        // which inside an entered span is that span's subsegment or something begun within
        // it. A span given an explicit parent nests under that parent's subsegment.
        let parent = match attrs.parent() {
            Some(parent) => ctx
                .span(parent)
                .and_then(nearest)
                .or_else(xray_sdk::current),
            None => xray_sdk::current(),
        };
        let Some(parent) = parent.filter(Entity::is_recording) else {
            return;
        };
        let subsegment = parent.begin_subsegment(span.name());
        if !subsegment.is_recording() {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        self.record(subsegment.entity(), fields);
        span.extensions_mut().insert(SpanSubsegment(subsegment));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(entity) = ctx.span(id).and_then(|s| entity_of(&s)) else {
            return;
        };
        let mut fields = Fields::default();
        values.record(&mut fields);
        self.record(&entity, fields);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR || is_ours(meta.target()) {
            return;
        }
        let Some(entity) = ctx.event_span(event).and_then(nearest) else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = match (fields.text("message"), fields.text("error")) {
            (Some(m), Some(e)) => format!("{m}: {e}"),
            (Some(m), None) => m,
            (None, Some(e)) => e,
            (None, None) => meta.name().to_owned(),
        };
        // The event knows no type of the error (`#[instrument(err)]` records its `Display`):
        // a type is recorded only when the event names one, as OpenTelemetry's conventions do.
        let kind = fields
            .text("error.type")
            .or_else(|| fields.text("exception.type"));
        let cause = Cause::from_message(&message, kind.as_deref(), None);
        entity.update(|doc| doc.add_cause(cause));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(entity) = ctx.span(id).and_then(|s| entity_of(&s)) else {
            return;
        };
        let guard = entity.enter();
        let _ = ENTERED.try_with(|entered| {
            if let Ok(mut entered) = entered.try_borrow_mut() {
                entered.push(Entered {
                    id: id.clone(),
                    guard,
                    exited: false,
                });
            }
        });
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        // Guards leave the borrow before they drop.
        let mut done = Vec::new();
        let _ = ENTERED.try_with(|entered| {
            let Ok(mut entered) = entered.try_borrow_mut() else {
                return;
            };
            let Some(at) = entered.iter().rposition(|e| e.id == *id && !e.exited) else {
                return;
            };
            if let Some(e) = entered.get_mut(at) {
                e.exited = true;
            }
            // X-Ray's context is a stack: only the top may leave it, then whatever below it
            // was exited out of order.
            while entered.last().is_some_and(|e| e.exited) {
                done.extend(entered.pop());
            }
        });
        // The newest first, as they were pushed.
        for e in done {
            drop(e.guard);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let subsegment = span.extensions_mut().remove::<SpanSubsegment>();
        drop(span);
        if let Some(SpanSubsegment(subsegment)) = subsegment {
            subsegment.end();
        }
    }
}

//! One invocation's entities: the facade and the handler subsegment under it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lambda_runtime::Context;
use xray_sdk::context::ContextGuard;
use xray_sdk::{Recorder, Segment, Subsegment};

/// The annotation Powertools for AWS Lambda puts on the handler subsegment.
const COLD_START: &str = "ColdStart";

/// Name of the handler subsegment when the function's name is unknown (outside Lambda).
const UNNAMED_HANDLER: &str = "## handler";

/// Whether no invocation has begun in this process yet: the first one is the cold start.
static FIRST_INVOCATION: AtomicBool = AtomicBool::new(true);

/// How the handler subsegment is named, or that there is none.
#[derive(Debug, Clone)]
pub(crate) enum HandlerName {
    /// `## <function name>`, from the invocation's `Context::env_config`.
    Function,
    /// A name the user chose.
    Fixed(Arc<str>),
    /// No handler subsegment: the facade is the handler's context.
    Off,
}

/// The entities of one traced invocation. Dropping it ends them (the handler subsegment
/// first: fields drop in declaration order).
#[derive(Debug)]
pub(crate) struct Invocation {
    handler: Option<Subsegment>,
    facade: Segment,
}

// ===== impl Invocation =====

impl Invocation {
    /// Begins the invocation described by `context`, or `None` when it is not traced: the
    /// recorder is disabled, or the invocation carries no trace header.
    ///
    /// The header is only ever the invocation's own (`Context::xray_trace_id`): under
    /// concurrent invocations the process-wide `_X_AMZN_TRACE_ID` belongs to no one, so
    /// `begin_lambda_invocation` is never given `None`, which would read it.
    pub(crate) fn begin(
        recorder: &Recorder,
        naming: &HandlerName,
        context: &Context,
    ) -> Option<Invocation> {
        // Every invocation takes its turn, traced or not: only the process's first is cold.
        let cold_start = FIRST_INVOCATION.swap(false, Ordering::Relaxed);
        if !recorder.is_enabled() {
            return None;
        }
        let Some(header) = context.xray_trace_id.as_deref() else {
            tracing::debug!(
                target: "xray_lambda",
                request_id = %context.request_id,
                "the invocation has no trace header (Lambda-Runtime-Trace-Id); it is not traced"
            );
            return None;
        };
        let facade = recorder.begin_lambda_invocation(Some(header));
        let handler =
            begin_handler(&facade, naming, &context.env_config.function_name).inspect(|handler| {
                handler.put_annotation(COLD_START, cold_start);
            });
        Some(Invocation { handler, facade })
    }

    /// Makes the handler's context current on this thread until the guard drops.
    pub(crate) fn enter(&self) -> ContextGuard {
        match &self.handler {
            Some(handler) => handler.enter(),
            None => self.facade.enter(),
        }
    }

    /// Records the handler's error as a fault on the handler subsegment, with the error's
    /// message and type name as the cause.
    pub(crate) fn record_error<E: fmt::Display + ?Sized>(&self, error: &E) {
        if let Some(handler) = &self.handler {
            xray_sdk::outgoing::record_error(handler, error);
        }
    }

    /// Records a panic caught while calling or polling the handler as a fault with the panic's
    /// message as the cause.
    pub(crate) fn record_panic(&self, payload: &(dyn Any + Send)) {
        if let Some(handler) = &self.handler {
            handler.record_panic(payload);
        }
    }

    /// Ends the handler subsegment, then the facade.
    pub(crate) fn end(self) {
        let Invocation { handler, facade } = self;
        if let Some(handler) = handler {
            handler.end();
        }
        facade.end();
    }
}

/// Begins the handler subsegment under a recorded facade. An unsampled invocation gets none:
/// it would record nothing, and the facade alone carries the ids and the `Lineage` that calls
/// from the handler send downstream.
fn begin_handler(facade: &Segment, naming: &HandlerName, function: &str) -> Option<Subsegment> {
    if !facade.is_recording() {
        return None;
    }
    let subsegment = match naming {
        HandlerName::Off => return None,
        HandlerName::Fixed(name) => facade.begin_subsegment(name),
        HandlerName::Function if function.is_empty() => facade.begin_subsegment(UNNAMED_HANDLER),
        // One small allocation per sampled invocation, next to the document's own.
        HandlerName::Function => facade.begin_subsegment(&format!("## {function}")),
    };
    Some(subsegment)
}

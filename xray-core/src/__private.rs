//! The support code that `#[capture]` expands to.
//!
//! /!\ WARNING: This is *not* a stable API! /!\
//!
//! Everything here exists for the code the `#[capture]` attribute generates and may change in
//! any release, patch releases included. Do not call it directly: use the attribute, or
//! [`Recorder::begin_subsegment`] and [`Subsegment::instrument`] by hand.

use std::any::Any;
use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::Rc;
use std::sync::Arc;

use crate::context::ContextGuard;
use crate::document::{AnnotationValue, Cause, StackFrame};
use crate::recorder::{Entity, Recorder, Subsegment};

use crate::context::current;

// ===== beginning =====

/// Begins the subsegment of one call under the current entity: `Some` only when it is
/// recorded. An unsampled or unrecorded current entity costs one thread-local read and no
/// allocation. Without a current entity, the global recorder (looked up only then) applies its
/// context-missing strategy.
#[inline]
pub fn begin(name: &str) -> Option<Subsegment> {
    begin_inner(None, name)
}

/// [`begin`], with `recorder`'s context-missing strategy.
#[inline]
pub fn begin_in<R: AsRecorder + ?Sized>(recorder: &R, name: &str) -> Option<Subsegment> {
    begin_inner(Some(recorder.as_recorder()), name)
}

#[inline]
fn begin_inner(recorder: Option<&Recorder>, name: &str) -> Option<Subsegment> {
    match crate::context::current_is_recording() {
        Some(true) => begin_recorded(name),
        Some(false) => None,
        None => {
            missing(recorder);
            None
        }
    }
}

fn begin_recorded(name: &str) -> Option<Subsegment> {
    let sub = current()?.begin_subsegment(name);
    sub.is_recording().then_some(sub)
}

#[cold]
#[inline(never)]
fn missing(recorder: Option<&Recorder>) {
    recorder
        .unwrap_or_else(|| Recorder::global())
        .context_missing("capture");
}

/// The recorder named by `#[capture(recorder = ...)]`: a [`Recorder`], a reference to one, or
/// a smart pointer to one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an X-Ray recorder",
    label = "expected a `Recorder`, a reference to one, or an `Arc<Recorder>`"
)]
pub trait AsRecorder {
    /// The recorder.
    fn as_recorder(&self) -> &Recorder;
}

impl AsRecorder for Recorder {
    fn as_recorder(&self) -> &Recorder {
        self
    }
}

impl<T: AsRecorder + ?Sized> AsRecorder for &T {
    fn as_recorder(&self) -> &Recorder {
        (**self).as_recorder()
    }
}

impl AsRecorder for Arc<Recorder> {
    fn as_recorder(&self) -> &Recorder {
        self
    }
}

impl AsRecorder for Box<Recorder> {
    fn as_recorder(&self) -> &Recorder {
        self
    }
}

// ===== sync functions =====

/// Keeps the subsegment of a sync call current until dropped, then ends it.
#[derive(Debug)]
pub struct Guard {
    // Field order is drop order: the context is left before the subsegment ends.
    _context: ContextGuard,
    subsegment: Subsegment,
}

impl Guard {
    /// Enters `subsegment` on this thread.
    #[inline]
    pub fn enter(subsegment: Subsegment) -> Self {
        Self {
            _context: subsegment.enter(),
            subsegment,
        }
    }

    /// The subsegment, for annotations, metadata and errors.
    #[inline]
    pub fn entity(&self) -> &Entity {
        self.subsegment.entity()
    }
}

/// Runs the body of a captured sync function, `f`. A panic unwinding out of it is recorded on
/// the subsegment (a fault, with the panic's message, and the function's place in the source
/// as the stack), the subsegment ends, and the panic goes on unwinding: nothing is caught for
/// good.
///
/// The body is a closure passed here: the `FnOnce` bound makes the closure `FnOnce`, so the body
/// can return borrows of what it captured (`&mut self` returning `Result<&mut T, E>`).
#[inline]
pub fn call<R, F: FnOnce() -> R>(
    guard: &mut Option<Guard>,
    function: &'static str,
    file: &'static str,
    line: u32,
    f: F,
) -> R {
    // Costs nothing unless a panic unwinds through here. `AssertUnwindSafe`: nothing here looks
    // at what the body left behind; the panic is resumed at once.
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(out) => out,
        Err(payload) => {
            if let Some(guard) = guard.take() {
                panicked(guard, &*payload, StackFrame::new(function, file, line));
            }
            resume_unwind(payload)
        }
    }
}

#[cold]
#[inline(never)]
fn panicked(guard: Guard, payload: &(dyn Any + Send), frame: StackFrame) {
    guard
        .subsegment
        .record_panic_with(Some(payload), Some(frame));
    // Dropped here, where no panic unwinds: the context is left, and the subsegment ends.
    drop(guard);
}

// ===== async functions =====
//
// An `async fn` is captured by `Subsegment::instrument`: the one future that owns an entity,
// makes it current on every poll, and records a panicking poll.

// ===== annotations and metadata =====

/// Adds an annotation; `None` values are skipped. A refused key or value is logged by the
/// document, never raised.
#[inline]
pub fn annotate<T: ToAnnotation + ?Sized>(entity: &Entity, key: &str, value: &T) {
    if let Some(value) = value.to_annotation() {
        entity.put_annotation(key, value);
    }
}

/// Adds metadata in the `default` namespace. A value that fails to serialize is logged, never
/// raised.
#[inline]
pub fn metadata<T: serde::Serialize + ?Sized>(entity: &Entity, key: &str, value: &T) {
    entity.put_metadata(key, value);
}

/// A value `#[capture(annotate(..))]` can record: strings, integers, floats, bools, an
/// [`AnnotationValue`], references to these, and `Option`s of these (`None` is not recorded).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an X-Ray annotation",
    label = "annotations are strings, integers, floats or bools",
    note = "convert the value (`key = value.to_string()`), or record it with `metadata(..)` instead"
)]
pub trait ToAnnotation {
    /// The annotation value, or `None` to record nothing.
    fn to_annotation(&self) -> Option<AnnotationValue>;
}

impl<T: ToAnnotation + ?Sized> ToAnnotation for &T {
    fn to_annotation(&self) -> Option<AnnotationValue> {
        (**self).to_annotation()
    }
}

impl<T: ToAnnotation + ?Sized> ToAnnotation for &mut T {
    fn to_annotation(&self) -> Option<AnnotationValue> {
        (**self).to_annotation()
    }
}

impl<T: ToAnnotation> ToAnnotation for Option<T> {
    fn to_annotation(&self) -> Option<AnnotationValue> {
        self.as_ref().and_then(ToAnnotation::to_annotation)
    }
}

impl ToAnnotation for AnnotationValue {
    fn to_annotation(&self) -> Option<AnnotationValue> {
        Some(self.clone())
    }
}

macro_rules! to_annotation_by_copy {
    ($($t:ty),*) => {$(
        impl ToAnnotation for $t {
            fn to_annotation(&self) -> Option<AnnotationValue> {
                Some(AnnotationValue::from(*self))
            }
        }
    )*};
}
to_annotation_by_copy!(
    bool, i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f32, f64
);

macro_rules! to_annotation_by_str {
    ($($t:ty),*) => {$(
        impl ToAnnotation for $t {
            fn to_annotation(&self) -> Option<AnnotationValue> {
                let s: &str = self;
                Some(AnnotationValue::from(s))
            }
        }
    )*};
}
to_annotation_by_str!(str, String, Box<str>, Rc<str>, Arc<str>, Cow<'_, str>);

// ===== errors =====

/// The value a captured function returned, inspected for an `Err` by the `Record*` traits.
///
/// The expansion calls `(&&&&&Outcome(&value)).__xray_record(entity)` with all five traits in
/// scope: method resolution tries the most-referenced receiver first, so the first trait whose
/// bounds hold for the concrete type wins (autoref specialization), and a value that is not a
/// `Result` falls through to [`RecordNothing`].
#[derive(Debug)]
pub struct Outcome<'a, T: ?Sized>(pub &'a T);

/// `Err(E)` with `E: Error`: the message, the type, and the `source()` chain.
pub trait RecordError {
    /// Records the error, if any.
    fn __xray_record(&self, entity: &Entity);
}

impl<T, E: Error> RecordError for &&&&Outcome<'_, Result<T, E>> {
    fn __xray_record(&self, entity: &Entity) {
        if let Err(e) = self.0 {
            add_cause(
                entity,
                Cause::from_message(e, Some(std::any::type_name::<E>()), e.source()),
            );
        }
    }
}

/// `Err(E)` where `E` derefs to a `dyn Error + Send + Sync` (`Box<dyn Error + Send + Sync>`,
/// `anyhow::Error`): the chain of the error inside.
pub trait RecordBoxedError {
    /// Records the error, if any.
    fn __xray_record(&self, entity: &Entity);
}

impl<T, E: AsRef<dyn Error + Send + Sync>> RecordBoxedError for &&&Outcome<'_, Result<T, E>> {
    fn __xray_record(&self, entity: &Entity) {
        if let Err(e) = self.0 {
            let e: &(dyn Error + 'static) = e.as_ref();
            add_cause(entity, Cause::from_message(e, None, e.source()));
        }
    }
}

/// `Err(Box<dyn Error>)`.
pub trait RecordBoxedLocalError {
    /// Records the error, if any.
    fn __xray_record(&self, entity: &Entity);
}

impl<T, E: AsRef<dyn Error>> RecordBoxedLocalError for &&Outcome<'_, Result<T, E>> {
    fn __xray_record(&self, entity: &Entity) {
        if let Err(e) = self.0 {
            let e: &(dyn Error + 'static) = e.as_ref();
            add_cause(entity, Cause::from_message(e, None, e.source()));
        }
    }
}

/// `Err(E)` with `E: Display` only: the message and the type.
pub trait RecordDisplay {
    /// Records the error, if any.
    fn __xray_record(&self, entity: &Entity);
}

impl<T, E: fmt::Display> RecordDisplay for &Outcome<'_, Result<T, E>> {
    fn __xray_record(&self, entity: &Entity) {
        if let Err(e) = self.0 {
            add_cause(
                entity,
                Cause::from_message(e, Some(std::any::type_name::<E>()), None),
            );
        }
    }
}

/// Anything else: nothing to record.
pub trait RecordNothing {
    /// Does nothing.
    fn __xray_record(&self, entity: &Entity);
}

impl<T: ?Sized> RecordNothing for Outcome<'_, T> {
    #[inline]
    fn __xray_record(&self, _entity: &Entity) {}
}

fn add_cause(entity: &Entity, cause: Cause) {
    entity.add_cause(cause);
}

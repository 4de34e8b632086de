//! The support code that `#[capture]` expands to.
//!
//! /!\ WARNING: This is *not* a stable API! /!\
//!
//! Everything here exists for the code the `#[capture]` attribute generates and may change in
//! any release, patch releases included. Do not call it directly: use the attribute, or
//! [`Recorder::begin_subsegment`] and [`Subsegment::instrument`] by hand.

use std::borrow::Cow;
use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

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
    if sub.is_recording() {
        install_panic_hook();
        Some(sub)
    } else {
        None
    }
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

/// Keeps the subsegment of a sync call current until dropped, then ends it; records a fault
/// when dropped by a panic unwinding through the call.
#[derive(Debug)]
pub struct Guard {
    // Field order is drop order: the context is left before the subsegment ends.
    _context: ContextGuard,
    subsegment: Subsegment,
    /// Called while unwinding already (from a destructor): `panicking()` says nothing then.
    entered_panicking: bool,
}

impl Guard {
    /// Enters `subsegment` on this thread.
    #[inline]
    pub fn enter(subsegment: Subsegment) -> Self {
        Self {
            _context: subsegment.enter(),
            subsegment,
            entered_panicking: std::thread::panicking(),
        }
    }

    /// The subsegment, for annotations, metadata and errors.
    #[inline]
    pub fn entity(&self) -> &Entity {
        self.subsegment.entity()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.entered_panicking {
            record_panic(self.subsegment.entity());
        }
    }
}

/// Calls `f`. The body of a function whose `Err` is recorded runs as a closure passed here:
/// the `FnOnce` bound makes the closure `FnOnce`, so the body can return borrows of what it
/// captured (`&mut self` returning `Result<&mut T, E>`).
#[inline(always)]
pub fn call_once<R, F: FnOnce() -> R>(f: F) -> R {
    f()
}

// ===== async functions =====

pin_project_lite::pin_project! {
    /// A future with its own subsegment: current on every poll, ended when the future
    /// completes, when a poll panics (marked as a fault), or when the future is dropped.
    #[derive(Debug)]
    pub struct Instrumented<F> {
        #[pin]
        inner: F,
        subsegment: Option<Subsegment>,
    }
}

/// Wraps `fut` so that `subsegment` covers it.
#[inline]
pub fn instrument<F: Future>(subsegment: Subsegment, fut: F) -> Instrumented<F> {
    Instrumented {
        inner: fut,
        subsegment: Some(subsegment),
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(subsegment) = this.subsegment.as_ref() else {
            return this.inner.poll(cx);
        };
        let _context = subsegment.enter();
        let guard = PollGuard {
            subsegment: this.subsegment,
            entered_panicking: std::thread::panicking(),
        };
        let out = this.inner.poll(cx);
        if out.is_ready()
            && let Some(subsegment) = guard.subsegment.take()
        {
            subsegment.end();
        }
        out
    }
}

/// Ends the subsegment as a fault if the poll it lives in unwinds. An executor that catches the
/// panic drops the future only after unwinding ends, when `panicking()` is already false, so
/// the check must happen inside `poll`.
struct PollGuard<'a> {
    subsegment: &'a mut Option<Subsegment>,
    entered_panicking: bool,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && !self.entered_panicking
            && let Some(subsegment) = self.subsegment.take()
        {
            record_panic(subsegment.entity());
            subsegment.end();
        }
    }
}

// ===== annotations and metadata =====

/// Adds an annotation; `None` values are skipped. A refused key or value is logged by the
/// document, never raised.
#[inline]
pub fn annotate<T: ToAnnotation + ?Sized>(entity: &Entity, key: &str, value: &T) {
    if let Some(value) = value.to_annotation() {
        let _ = entity.put_annotation(key, value);
    }
}

/// Adds metadata in the `default` namespace. A value that fails to serialize is logged, never
/// raised.
#[inline]
pub fn metadata<T: serde::Serialize + ?Sized>(entity: &Entity, key: &str, value: &T) {
    let _ = entity.put_metadata(key, value);
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
    entity.update(|doc| doc.add_cause(cause));
}

// ===== panics =====

/// The panic message of this thread's latest panic, for the guard that unwinds through a
/// captured call: a drop guard cannot see the payload, so a panic hook keeps a copy.
#[derive(Clone)]
struct LastPanic {
    message: String,
    file: String,
    line: u32,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<LastPanic>> = const { RefCell::new(None) };
}

/// The longest panic message kept, in characters (the document keeps 2048).
const MAX_PANIC_MESSAGE_CHARS: usize = 2048;

static HOOK_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs, once, a panic hook that notes the message and location of each panic on its
/// thread, then runs the hook that was set before. Done lazily by the first recorded capture,
/// so programs that never record one keep their hook untouched. A hook set later with
/// `std::panic::set_hook` replaces this one; panics are then still recorded as faults, without
/// their message.
fn install_panic_hook() {
    // `take_hook` panics on a panicking thread (a capture inside a destructor during unwinding).
    if HOOK_INSTALLED.load(Ordering::Relaxed)
        || std::thread::panicking()
        || HOOK_INSTALLED.swap(true, Ordering::AcqRel)
    {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or("Box<dyn Any>");
        let message = match message.char_indices().nth(MAX_PANIC_MESSAGE_CHARS) {
            Some((cut, _)) => message.get(..cut).unwrap_or(message),
            None => message,
        };
        let (file, line) = info.location().map_or(("", 0), |l| (l.file(), l.line()));
        let _ = LAST_PANIC.try_with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                *last = Some(LastPanic {
                    message: message.to_owned(),
                    file: file.to_owned(),
                    line,
                });
            }
        });
        previous(info);
    }));
}

fn record_panic(entity: &Entity) {
    if !entity.is_recording() {
        return;
    }
    let last = LAST_PANIC
        .try_with(|last| last.try_borrow().ok().and_then(|l| l.clone()))
        .ok()
        .flatten();
    let message = last.as_ref().map_or("panicked", |l| l.message.as_str());
    let mut cause = Cause::from_message(&message, Some("panic"), None);
    if let (Some(last), Cause::Details(details)) = (&last, &mut cause)
        && let Some(first) = details.exceptions.first_mut()
        && !last.file.is_empty()
    {
        first
            .stack
            .push(StackFrame::new("panic", last.file.as_str(), last.line));
    }
    entity.update(|doc| {
        doc.add_cause(cause);
        doc.set_fault(true);
    });
}

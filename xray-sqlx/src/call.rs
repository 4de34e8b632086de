//! One query's subsegment: begun when the query is handed to sqlx, ended with its outcome
//! when the query's stream ends or its future resolves, or as cancelled when either is
//! dropped first.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_core::stream::BoxStream;
use sqlx_core::database::Database;
use sqlx_core::error::{BoxDynError, Error};
use sqlx_core::executor::Execute;
use sqlx_core::sql_str::SqlStr;
use xray_sdk::document::{Sql, capped_field};
use xray_sdk::{Cause, Namespace, Subsegment};

use crate::Shared;
use crate::sanitize::sanitize;

/// The subsegment of a query in flight.
pub(crate) struct Call {
    subsegment: Option<Subsegment>,
    shared: Arc<Shared>,
    /// Where the query's text is put when sqlx reads it (only when sanitized queries are on).
    sql: Option<Arc<OnceLock<SqlStr>>>,
    described: Described,
}

/// How much of a call's `sql` block is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Described {
    Not,
    /// All but the query's text, which sqlx had not read yet.
    WithoutText,
    Fully,
}

impl Call {
    /// A subsegment under the current entity, or `None` when the query is not recorded:
    /// outside any segment, or under an unsampled one. Nothing is allocated then.
    pub(crate) fn begin(shared: &Arc<Shared>) -> Option<Call> {
        let parent = xray_sdk::current()?;
        if !parent.is_recording() {
            return None;
        }
        let subsegment = parent.begin_subsegment(&shared.description.name);
        if !subsegment.is_recording() {
            return None;
        }
        Some(Call {
            subsegment: Some(subsegment),
            shared: Arc::clone(shared),
            sql: shared.sanitized_queries.then(|| Arc::new(OnceLock::new())),
            described: Described::Not,
        })
    }

    /// Writes the `sql` block, with the query's text once sqlx has read it, if it is not
    /// written yet. Called while the query waits for the database (its first `Pending`), so
    /// that the work is done off the query's path, and at its end otherwise.
    pub(crate) fn describe(&mut self) {
        let text = self.sql.as_ref().and_then(|slot| slot.get());
        let wanted = match (self.described, text) {
            (Described::Fully, _) | (Described::WithoutText, None) => return,
            (_, Some(_)) => Described::Fully,
            (Described::Not, None) if self.sql.is_none() => Described::Fully,
            (Described::Not, None) => Described::WithoutText,
        };
        let Some(subsegment) = &self.subsegment else {
            return;
        };
        let sql = match text {
            None => Arc::clone(&self.shared.connection),
            Some(text) => {
                let mut sql = Sql::clone(&self.shared.connection);
                let query = sanitize(text.as_str(), self.shared.dialect);
                sql.sanitized_query = Some(capped_field(&query).to_owned());
                Arc::new(sql)
            }
        };
        subsegment.update(|doc| {
            doc.set_namespace(Namespace::Remote);
            doc.set_sql(sql);
        });
        self.described = wanted;
    }

    /// `query`, made to hand its text to this call when sqlx reads it.
    pub(crate) fn watch<'q, DB: Database, E: Execute<'q, DB>>(&self, query: E) -> Watched<E> {
        Watched {
            query,
            sql: self.sql.clone(),
        }
    }

    /// Records the text of a statement that is not an [`Execute`] (`COMMIT`).
    pub(crate) fn set_text(&self, text: &'static str) {
        if let Some(slot) = &self.sql {
            let _ = slot.set(SqlStr::from_static(text));
        }
    }

    /// Ends the subsegment: a success, or the error as its cause (a fault), with the
    /// database's error code (SQLSTATE) as the cause's type where it has one.
    pub(crate) fn finish(mut self, error: Option<&Error>) {
        self.describe();
        let Some(subsegment) = self.subsegment.take() else {
            return;
        };
        if let Some(error) = error {
            let kind = match error {
                Error::Database(db) => (self.shared.error_code)(db.as_ref()),
                _ => None,
            }
            .unwrap_or_else(|| error_kind(error).to_owned());
            let message = match error {
                Error::Database(db) => db.message().to_owned(),
                other => other.to_string(),
            };
            subsegment.update(|doc| {
                doc.add_cause(Cause::from_message(&message, Some(&kind), None));
            });
        }
        subsegment.end();
    }
}

impl Drop for Call {
    /// A query whose future or stream is dropped before it ended was cancelled by the
    /// application: ended now, marked as an error (a client's, not a fault).
    fn drop(&mut self) {
        self.describe();
        let Some(subsegment) = self.subsegment.take() else {
            return;
        };
        subsegment.update(|doc| {
            doc.add_cause(Cause::from_message(
                &"the query was cancelled: its future or stream was dropped before it ended",
                Some("Cancelled"),
                None,
            ));
            doc.set_fault(false);
            doc.set_error(true);
        });
        subsegment.end();
    }
}

/// The name of an sqlx error's kind, for a cause without a database code.
fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Configuration(_) => "Configuration",
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::Database(_) => "Database",
        Error::Io(_) => "Io",
        Error::Tls(_) => "Tls",
        Error::Protocol(_) => "Protocol",
        Error::RowNotFound => "RowNotFound",
        Error::TypeNotFound { .. } => "TypeNotFound",
        Error::ColumnIndexOutOfBounds { .. } => "ColumnIndexOutOfBounds",
        Error::ColumnNotFound(_) => "ColumnNotFound",
        Error::ColumnDecode { .. } => "ColumnDecode",
        Error::Encode(_) => "Encode",
        Error::Decode(_) => "Decode",
        Error::AnyDriverError(_) => "AnyDriverError",
        Error::PoolTimedOut => "PoolTimedOut",
        Error::PoolClosed => "PoolClosed",
        Error::WorkerCrashed => "WorkerCrashed",
        _ => "Error",
    }
}

/// A query that hands its text to its call when sqlx reads it.
pub(crate) struct Watched<E> {
    query: E,
    sql: Option<Arc<OnceLock<SqlStr>>>,
}

impl<'q, DB: Database, E: Execute<'q, DB>> Execute<'q, DB> for Watched<E> {
    fn sql(self) -> SqlStr {
        let text = self.query.sql();
        if let Some(slot) = self.sql {
            let _ = slot.set(text.clone());
        }
        text
    }

    fn statement(&self) -> Option<&DB::Statement> {
        self.query.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<DB::Arguments>, BoxDynError> {
        self.query.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.query.persistent()
    }
}

/// A query's stream of results, ending its call with the stream.
pub(crate) struct Traced<'e, T> {
    pub(crate) inner: BoxStream<'e, Result<T, Error>>,
    pub(crate) call: Option<Call>,
}

impl<T> Stream for Traced<'_, T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let polled = this.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(call) = this.call.take() {
                    call.finish(None);
                }
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(call) = this.call.take() {
                    call.finish(Some(error));
                }
            }
            Poll::Pending => {
                if let Some(call) = &mut this.call {
                    call.describe();
                }
            }
            Poll::Ready(Some(Ok(_))) => {}
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// A future whose call ends with it: `fetch_optional`, `COMMIT` and `ROLLBACK`.
pub(crate) struct TracedFuture<F> {
    pub(crate) inner: F,
    pub(crate) call: Option<Call>,
}

impl<T, F: Future<Output = Result<T, Error>> + Unpin> Future for TracedFuture<F> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll(cx);
        match &polled {
            Poll::Ready(result) => {
                if let Some(call) = this.call.take() {
                    call.finish(result.as_ref().err());
                }
            }
            Poll::Pending => {
                if let Some(call) = &mut this.call {
                    call.describe();
                }
            }
        }
        polled
    }
}

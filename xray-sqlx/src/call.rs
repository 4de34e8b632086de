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
use xray_sdk::{Cause, Namespace, Sql, Subsegment, capped_field};

use crate::Shared;
use crate::sanitize::sanitize;

/// The subsegment of a query in flight.
pub(crate) struct Call {
    subsegment: Option<Subsegment>,
    shared: Arc<Shared>,
    /// Where the query's text is put when sqlx reads it (only when sanitized queries are on).
    sql: Option<Arc<OnceLock<SqlStr>>>,
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
        let description = &shared.description;
        let version = shared.database_version.get().cloned();
        subsegment.update(|doc| {
            doc.set_namespace(Namespace::Remote);
            let mut sql = Sql::default();
            sql.url = Some(capped_field(&description.url).to_owned());
            sql.database_type = Some(description.database_type.to_owned());
            sql.database_version = version;
            sql.driver_version = Some(crate::DRIVER_VERSION.to_owned());
            sql.user.clone_from(&description.user);
            doc.set_sql(sql);
        });
        Some(Call {
            subsegment: Some(subsegment),
            shared: Arc::clone(shared),
            sql: shared.sanitized_queries.then(|| Arc::new(OnceLock::new())),
        })
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
        let Some(subsegment) = self.subsegment.take() else {
            return;
        };
        self.record_text(&subsegment);
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

    fn record_text(&self, subsegment: &Subsegment) {
        let Some(text) = self.sql.as_ref().and_then(|slot| slot.get()) else {
            return;
        };
        let query = sanitize(text.as_str(), self.shared.dialect);
        subsegment.update(|doc| {
            let mut sql = doc.sql().cloned().unwrap_or_default();
            sql.sanitized_query = Some(capped_field(&query).to_owned());
            doc.set_sql(sql);
        });
    }
}

impl Drop for Call {
    /// A query whose future or stream is dropped before it ended was cancelled by the
    /// application: ended now, marked as an error (a client's, not a fault).
    fn drop(&mut self) {
        let Some(subsegment) = self.subsegment.take() else {
            return;
        };
        self.record_text(&subsegment);
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
            _ => {}
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

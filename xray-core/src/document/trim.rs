//! Trimming one document to fit the daemon's datagram size.

use super::{Cause, Document};

/// What [`Document::trim_to_fit`] removed, in the order it tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trimmed {
    /// Stack frames of recorded exceptions (counted in each exception's `truncated`).
    StackFrames,
    /// The SQL query text, cut to 1,000 characters.
    SqlQuery,
    /// All metadata.
    Metadata,
    /// All annotations.
    Annotations,
}

impl Trimmed {
    /// The name recorded in the `AWS.xray` metadata namespace under `trimmed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Trimmed::StackFrames => "stack_frames",
            Trimmed::SqlQuery => "sql.sanitized_query",
            Trimmed::Metadata => "metadata",
            Trimmed::Annotations => "annotations",
        }
    }
}

impl Document {
    /// The length of this document as the transports write it ([`write_json`](Self::write_json)).
    pub fn serialized_len(&self) -> usize {
        let mut out = Vec::new();
        let _ = self.write_json(&mut out);
        out.len()
    }

    /// Removes the largest optional content until the serialized document is at most
    /// `max_len` bytes: stack frames, then SQL query text, then metadata, then annotations.
    /// What was removed is listed in the reserved metadata namespace `AWS.xray` under
    /// `trimmed`, so the trace shows it, and returned. Ids, times, names, flags, `http` and
    /// `aws` blocks and exception messages are kept.
    ///
    /// Sizes are measured with the writer that sends ([`write_json`](Self::write_json)), the
    /// `trimmed` marker included. [`SegmentTransport`](crate::transport::SegmentTransport) calls
    /// this
    /// only for a document with no subsegments left that is still over the daemon's limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{Document, SegmentId};
    /// use xray_sdk::document::Trimmed;
    ///
    /// let mut doc = Document::new("big", SegmentId::new(), 1.0);
    /// doc.put_metadata("blob", &"x".repeat(100_000)).unwrap();
    /// let trimmed = doc.trim_to_fit(60_000);
    /// assert_eq!(trimmed, vec![Trimmed::Metadata]);
    /// assert!(doc.serialized_len() <= 60_000);
    /// ```
    pub fn trim_to_fit(&mut self, max_len: usize) -> Vec<Trimmed> {
        let mut done = Vec::new();
        let steps = [
            Trimmed::StackFrames,
            Trimmed::SqlQuery,
            Trimmed::Metadata,
            Trimmed::Annotations,
        ];
        for step in steps {
            if self.serialized_len() <= max_len {
                break;
            }
            let changed = match step {
                Trimmed::StackFrames => self.trim_stack_frames(),
                Trimmed::SqlQuery => self.trim_sql(),
                Trimmed::Metadata => self.metadata.take().is_some(),
                Trimmed::Annotations => self.annotations.take().is_some(),
            };
            if changed {
                done.push(step);
                // The marker counts in the size measured next.
                let names: Vec<&str> = done.iter().map(Trimmed::as_str).collect();
                let _ = self.put_reserved_metadata("AWS.xray", "trimmed", &names);
            }
        }
        done
    }

    fn trim_stack_frames(&mut self) -> bool {
        let Some(Cause::Details(details)) = self.cause.as_deref_mut() else {
            return false;
        };
        let mut changed = false;
        for e in &mut details.exceptions {
            if !e.stack.is_empty() {
                e.truncated = e.truncated.saturating_add(e.stack.len() as u32);
                e.stack = Vec::new();
                changed = true;
            }
        }
        changed
    }

    fn trim_sql(&mut self) -> bool {
        let Some(cut) = self
            .sql
            .as_deref()
            .and_then(|s| s.sanitized_query.as_deref())
            .and_then(|q| q.char_indices().nth(1000))
            .map(|(cut, _)| cut)
        else {
            return false;
        };
        if let Some(q) = &mut self.sql_mut().sanitized_query {
            q.truncate(cut);
        }
        true
    }
}

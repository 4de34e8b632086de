//! OpenTelemetry spans received over OTLP/HTTP (`POST /v1/traces` on the TCP port, protobuf,
//! optionally gzip): shown like segments, and forwarded in the form `PutTraceSegments` takes,
//! `T1S` followed by base64 of an export request, as the AWS OpenTelemetry Collector's X-Ray
//! exporter sends them.

use std::io::Read as _;
use std::time::Instant;

use base64::Engine as _;
use prost::Message as _;
use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use xray_sdk::otlp::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

use crate::intake::{self, DropReason};
use crate::sampling::ApiError;
use crate::server::Shared;

/// Largest request body taken, compressed or not (X-Ray's own OTLP endpoint takes 5 MB).
pub(crate) const MAX_REQUEST: usize = 8 * 1024 * 1024;

/// The protobuf bytes of one forwarded document at most: base64 of them after `T1S` fits in
/// 64 KiB, X-Ray's limit on a segment document.
const MAX_FORWARDED: usize = xray_sdk::transport::MAX_OTLP_REQUEST_LEN;

/// Files the spans of an OTLP/HTTP request and queues them for X-Ray; returns how many
/// documents were accepted.
pub(crate) fn receive(shared: &Shared, body: &[u8], gzip: bool) -> Result<usize, ApiError> {
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(MAX_REQUEST as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|err| ApiError::invalid(format!("the gzip body is not valid: {err}")))?;
        if out.len() > MAX_REQUEST {
            return Err(ApiError {
                status: 413,
                kind: "InvalidRequestException",
                message: format!("the request is larger than {MAX_REQUEST} bytes unpacked"),
            });
        }
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(body)
    };
    let Some(request) = intake::decode_otlp(&bytes) else {
        shared.store.record_drop(DropReason::InvalidOtlp);
        return Err(ApiError::invalid(
            "the body is not a protobuf OTLP ExportTraceServiceRequest",
        ));
    };
    let now = Instant::now();
    let (values, skipped) = xray_sdk::otlp::to_documents_counted(&request);
    for _ in 0..skipped {
        shared.store.record_drop(DropReason::InvalidSpan);
    }
    let docs: Vec<_> = values
        .into_iter()
        .filter_map(|value| match intake::validate(value) {
            Ok(doc) => Some(doc),
            Err(reason) => {
                shared.store.record_drop(reason);
                None
            }
        })
        .collect();
    let accepted = docs.len();
    let share = bytes.len() / accepted.max(1);
    shared
        .store
        .insert_batch(docs.into_iter().map(|d| (d, share, now)).collect());
    if let Some(forwarder) = &shared.forwarder {
        for doc in t1s_documents(request) {
            forwarder.push(doc);
        }
    }
    Ok(accepted)
}

/// The request as `T1S` documents for `PutTraceSegments`: one per resource, split where a
/// resource's spans do not fit one document, each part with its resource and scope.
pub(crate) fn t1s_documents(request: ExportTraceServiceRequest) -> Vec<String> {
    let mut out = Vec::new();
    let mut emit = |resource_spans: ResourceSpans| {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![resource_spans],
        };
        let mut doc = String::from("T1S");
        base64::engine::general_purpose::STANDARD.encode_string(request.encode_to_vec(), &mut doc);
        out.push(doc);
    };
    for rs in request.resource_spans {
        let whole = ExportTraceServiceRequest {
            resource_spans: vec![rs],
        };
        if whole.encoded_len() <= MAX_FORWARDED {
            if let Some(rs) = whole.resource_spans.into_iter().next() {
                emit(rs);
            }
            continue;
        }
        let Some(rs) = whole.resource_spans.into_iter().next() else {
            continue;
        };
        let empty = ResourceSpans {
            resource: rs.resource.clone(),
            scope_spans: Vec::new(),
            schema_url: rs.schema_url.clone(),
        };
        // Room for the resource, the scope and the length prefixes around them.
        for ss in rs.scope_spans {
            let frame = empty.encoded_len() + ss.scope.as_ref().map_or(0, |s| s.encoded_len()) + 32;
            let mut part = ScopeSpans {
                scope: ss.scope.clone(),
                spans: Vec::new(),
                schema_url: ss.schema_url.clone(),
            };
            let mut len = frame;
            for span in ss.spans {
                let span_len = span.encoded_len() + 6;
                if frame + span_len > MAX_FORWARDED {
                    // Too large for a document of its own: X-Ray would refuse it.
                    tracing::debug!("an OTLP span too large to forward is left out");
                    continue;
                }
                if len + span_len > MAX_FORWARDED && !part.spans.is_empty() {
                    let mut rs = empty.clone();
                    rs.scope_spans.push(std::mem::replace(
                        &mut part,
                        ScopeSpans {
                            scope: ss.scope.clone(),
                            spans: Vec::new(),
                            schema_url: ss.schema_url.clone(),
                        },
                    ));
                    emit(rs);
                    len = frame;
                }
                len += span_len;
                part.spans.push(span);
            }
            if !part.spans.is_empty() {
                let mut rs = empty.clone();
                rs.scope_spans.push(part);
                emit(rs);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use xray_sdk::otlp::proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use xray_sdk::otlp::proto::tonic::resource::v1::Resource;
    use xray_sdk::otlp::proto::tonic::trace::v1::Span;

    fn request(spans: usize) -> ExportTraceServiceRequest {
        let attr = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![attr("service.name", "orders")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans)
                        .map(|i| Span {
                            trace_id: vec![1; 16],
                            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                            name: format!("span-{i}"),
                            attributes: vec![attr("note", &"x".repeat(200))],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_resource_too_big_for_one_document_is_split_keeping_every_span_and_the_resource() {
        let docs = t1s_documents(request(2_000));
        assert!(docs.len() > 1, "{}", docs.len());
        let mut seen = 0;
        for doc in &docs {
            assert!(doc.len() <= 65_536 - 100, "{}", doc.len());
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(doc.strip_prefix("T1S").unwrap())
                .unwrap();
            let part = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
            let rs = &part.resource_spans[0];
            assert_eq!(
                rs.resource.as_ref().unwrap().attributes[0].key,
                "service.name"
            );
            seen += rs.scope_spans.iter().map(|s| s.spans.len()).sum::<usize>();
        }
        assert_eq!(seen, 2_000);
        assert_eq!(t1s_documents(request(3)).len(), 1);
    }
}

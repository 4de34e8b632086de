//! `XRayInterceptor`: one `aws` subsegment per AWS SDK operation.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_types::region::Region;
use serde_json::Value;
use xray_sdk::document::{CauseDetails, Exception};
use xray_sdk::{Cause, Document, Entity, Namespace, SegmentId, Subsegment};

use crate::extract::{self, Message, Protocol};
use crate::whitelist::{self, OperationRules};

/// The header carrying the trace context on each attempt.
const TRACE_HEADER: &str = "x-amzn-trace-id";

/// Operations never traced: X-Ray's own sampling and upload calls, which would otherwise trace
/// the tracer.
const SKIPPED: [(&str, &str); 3] = [
    ("XRay", "GetSamplingRules"),
    ("XRay", "GetSamplingTargets"),
    ("XRay", "PutTraceSegments"),
];

/// An interceptor that records every AWS SDK operation as an X-Ray subsegment and propagates
/// the trace to the called service.
///
/// Each operation (not each attempt) becomes one subsegment of the entity current when the
/// operation starts ([`xray_sdk::current`]): named after the service as the official SDKs
/// name it (`DynamoDB`, `SQS`, `S3`, `Lambda`), in namespace `aws`, with `aws.operation`,
/// `aws.region`, `aws.request_id` (and `aws.id_2` for S3), `aws.retries`, the final HTTP
/// status and content length, the whitelisted request and response parameters
/// (`table_name`, `queue_url`, `bucket_name`, `consumed_capacity`, `message_count`, ...), and
/// for a failure the `error`/`throttle`/`fault` flags and a cause (a service error is recorded
/// with `remote: true`, its error code as type and its message). Item contents, message
/// bodies, object data and credentials are never recorded.
///
/// Every attempt carries `X-Amzn-Trace-Id: Root=...;Parent=<this subsegment>;Sampled=1|0`,
/// replacing any value the SDK's recursion-detection interceptor set. The header is set after
/// signing, which is sound because SigV4 never signs `x-amzn-trace-id`.
///
/// Outside any segment nothing is recorded and no header is added. Tracing never fails a
/// call: every hook returns `Ok`, whatever it meets.
///
/// # Adding it to a client
///
/// On one client's configuration:
///
/// ```
/// use xray_aws_sdk::XRayInterceptor;
///
/// let config = aws_sdk_dynamodb::Config::builder()
///     .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
///     .interceptor(XRayInterceptor::new())
///     .build();
/// let client = aws_sdk_dynamodb::Client::from_conf(config);
/// # let _ = client;
/// ```
///
/// `aws_types::SdkConfig` (what `aws_config::load_defaults` returns) has no interceptors, so
/// every client an application builds from it takes the interceptor on its own builder; a
/// small function keeps that in one place:
///
/// ```
/// use aws_types::SdkConfig;
/// use xray_aws_sdk::XRayInterceptor;
///
/// fn dynamodb(shared: &SdkConfig) -> aws_sdk_dynamodb::Client {
///     let config = aws_sdk_dynamodb::config::Builder::from(shared)
///         .interceptor(XRayInterceptor::new())
///         .build();
///     aws_sdk_dynamodb::Client::from_conf(config)
/// }
///
/// fn sqs(shared: &SdkConfig) -> aws_sdk_sqs::Client {
///     let config = aws_sdk_sqs::config::Builder::from(shared)
///         .interceptor(XRayInterceptor::new())
///         .build();
///     aws_sdk_sqs::Client::from_conf(config)
/// }
/// # let shared = SdkConfig::builder()
/// #     .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
/// #     .build();
/// # let _ = (dynamodb(&shared), sqs(&shared));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct XRayInterceptor {}

impl XRayInterceptor {
    /// A new interceptor. It holds no state: one per client is fine, and so is sharing one.
    pub fn new() -> Self {
        Self {}
    }
}

// ===== per-call state, in the operation's ConfigBag =====

/// The entity current when the operation started.
#[derive(Debug, Clone)]
struct CallParent(Option<Entity>);

impl Storable for CallParent {
    type Storer = StoreReplace<Self>;
}

/// The subsegment of one operation. An `Arc`, because the bag needs `Clone` and the
/// subsegment (its owner) must end exactly once; dropping the bag (a cancelled call) ends it.
#[derive(Clone)]
struct AwsCall(Arc<CallState>);

struct CallState {
    entity: Entity,
    subsegment: Mutex<Option<Subsegment>>,
    service: String,
    rules: Option<&'static OperationRules>,
    header: String,
    attempts: AtomicU32,
    request_read: AtomicBool,
    /// A presigned request: prepared for the application to send, never sent by the SDK. Its
    /// subsegment is discarded, as no call happened.
    presigned: AtomicBool,
    protocol: Mutex<Protocol>,
}

impl fmt::Debug for AwsCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCall")
            .field("entity", &self.0.entity)
            .field("service", &self.0.service)
            .field("attempts", &self.0.attempts)
            .finish_non_exhaustive()
    }
}

/// An operation whose `read_after_execution` never ran was cut short: its future was dropped,
/// by the caller or by the SDK's operation timeout (which drops the orchestrator before the
/// final hooks). Its subsegment says so instead of looking like a success.
impl Drop for CallState {
    fn drop(&mut self) {
        let subsegment = self
            .subsegment
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(subsegment) = subsegment {
            if *self.presigned.get_mut() {
                subsegment.discard();
                return;
            }
            subsegment.update(|doc| {
                doc.aws_mut().retries = Some(self.attempts.load(Ordering::Relaxed).saturating_sub(1));
                let mut ex = Exception::new(
                    SegmentId::new(),
                    "the call did not complete: its future was dropped (cancelled, or the operation timed out)",
                );
                ex.kind = Some("Cancelled".to_owned());
                let mut details = CauseDetails::default();
                details.exceptions.push(ex);
                doc.add_cause(Cause::Details(details));
            });
        }
    }
}

impl Storable for AwsCall {
    type Storer = StoreReplace<Self>;
}

// ===== impl Intercept =====

impl Intercept for XRayInterceptor {
    fn name(&self) -> &'static str {
        "XRayInterceptor"
    }

    /// Notes the current entity: the operation's subsegment will be its child.
    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<CallParent>().is_none() {
            cfg.interceptor_state()
                .store_put(CallParent(xray_sdk::current()));
        }
        Ok(())
    }

    /// Begins the subsegment. Not in `read_before_execution`: a client-level interceptor runs
    /// that hook before the operation's `Metadata` (service and operation names) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<AwsCall>().is_some() {
            return Ok(()); // registered twice: the first one records
        }
        let Some(parent) = cfg.load::<CallParent>().and_then(|p| p.0.clone()) else {
            return Ok(());
        };
        let Some(meta) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let (service, operation) = (meta.service().to_owned(), meta.name().to_owned());
        if SKIPPED.contains(&(service.as_str(), operation.as_str())) {
            return Ok(());
        }
        let region = cfg.load::<Region>().map(|r| r.as_ref().to_owned());
        let subsegment = parent.begin_subsegment(&service);
        let entity = subsegment.entity().clone();
        let rules = if entity.is_recording() {
            entity.update(|doc| {
                doc.set_namespace(Namespace::Aws);
                let aws = doc.aws_mut();
                aws.operation = Some(operation.clone());
                aws.region = region;
            });
            whitelist::rules_for(&service, &operation)
        } else {
            None
        };
        let header = crate::propagation::header_of(&entity);
        let state = CallState {
            entity,
            subsegment: Mutex::new(Some(subsegment)),
            service,
            rules,
            header,
            attempts: AtomicU32::new(0),
            request_read: AtomicBool::new(false),
            presigned: AtomicBool::new(false),
            protocol: Mutex::new(Protocol::Rest),
        };
        cfg.interceptor_state().store_put(AwsCall(Arc::new(state)));
        Ok(())
    }

    /// Counts attempts, for `aws.retries`.
    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(call) = cfg.load::<AwsCall>() {
            call.0.attempts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Sets `X-Amzn-Trace-Id` on the signed request (replacing any value), and on the first
    /// attempt reads the whitelisted request parameters from the final URL, headers and body.
    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(call) = cfg.load::<AwsCall>().cloned() else {
            return Ok(());
        };
        let call = &call.0;
        // A presigned request (S3 `presigned()`) is handed to the application, not sent: its
        // headers must stay the signed ones, and there is no call to record.
        if is_presigned(context.request().uri()) {
            call.presigned.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if let Err(e) = context
            .request_mut()
            .headers_mut()
            .try_insert(TRACE_HEADER, call.header.clone())
        {
            tracing::debug!(target: "xray_aws_sdk", error = %e, "trace header not set");
        }
        if !call.request_read.swap(true, Ordering::Relaxed) {
            let request = context.request();
            let protocol = Protocol::of(request.headers());
            *call.protocol.lock().unwrap_or_else(PoisonError::into_inner) = protocol;
            if let Some(rules) = call.rules {
                let msg = Message {
                    protocol,
                    uri: request.uri(),
                    status: None,
                    headers: request.headers(),
                    body: request.body().bytes(),
                };
                let fields = extract::extract(&call.service, &rules.request, &msg);
                if !fields.is_empty() {
                    call.entity.update(|doc| insert_fields(doc, fields));
                }
            }
        }
        Ok(())
    }

    /// Records the outcome and ends the subsegment.
    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(call) = cfg.load::<AwsCall>().cloned() else {
            return Ok(());
        };
        let call = &call.0;
        let subsegment = call
            .subsegment
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if call.presigned.load(Ordering::Relaxed) {
            if let Some(subsegment) = subsegment {
                subsegment.discard();
            }
            return Ok(());
        }
        if call.entity.is_recording() {
            let outcome = Outcome::read(call, context);
            call.entity.update(|doc| outcome.apply(doc));
        }
        drop(subsegment);
        Ok(())
    }
}

/// Whether the request carries a query-string signature, as presigned requests do (a sent
/// request is signed in its `Authorization` header).
fn is_presigned(uri: &str) -> bool {
    uri.split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("X-Amz-Signature=")))
}

fn insert_fields(doc: &mut Document, fields: Vec<(String, Value)>) {
    let aws = doc.aws_mut();
    for (k, v) in fields {
        aws.insert_field(&k, v);
    }
}

/// Everything recorded at the end of an operation, gathered outside the segment's lock.
struct Outcome {
    retries: u32,
    status: Option<u16>,
    content_length: Option<i64>,
    request_id: Option<String>,
    id_2: Option<String>,
    fields: Vec<(String, Value)>,
    throttled: bool,
    cause: Option<Cause>,
}

impl Outcome {
    fn read(call: &CallState, context: &FinalizerInterceptorContextRef<'_>) -> Self {
        let response = context.response();
        let status = response.map(|r| r.status().as_u16());
        let headers = response.map(|r| r.headers());
        let body = response.and_then(|r| r.body().bytes());
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(str::to_owned);
        let content_length = header("content-length")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .or_else(|| body.map(|b| i64::try_from(b.len()).unwrap_or(i64::MAX)));
        let mut out = Outcome {
            retries: call.attempts.load(Ordering::Relaxed).saturating_sub(1),
            status,
            content_length,
            request_id: header("x-amzn-requestid").or_else(|| header("x-amz-request-id")),
            id_2: header("x-amz-id-2"),
            fields: Vec::new(),
            throttled: false,
            cause: None,
        };
        match context.output_or_error() {
            Some(Ok(_)) => {
                if let (Some(rules), Some(headers)) = (call.rules, headers) {
                    let protocol = *call.protocol.lock().unwrap_or_else(PoisonError::into_inner);
                    let msg = Message {
                        protocol,
                        uri: "",
                        status,
                        headers,
                        body,
                    };
                    out.fields = extract::extract(&call.service, &rules.response, &msg);
                }
            }
            Some(Err(err)) => {
                if err.as_operation_error().is_some()
                    && let Some(headers) = headers
                {
                    let (code, message) = extract::error_code_and_message(headers, body);
                    out.throttled = code.as_deref().is_some_and(extract::is_throttling_code);
                    let message = message.unwrap_or_else(|| match err.as_operation_error() {
                        Some(e) => e.to_string(),
                        None => err.to_string(),
                    });
                    let mut ex = Exception::new(SegmentId::new(), message);
                    ex.kind = code;
                    ex.remote = true;
                    let mut details = CauseDetails::default();
                    details.exceptions.push(ex);
                    out.cause = Some(Cause::Details(details));
                } else {
                    out.cause = Some(Cause::from_error(err));
                }
            }
            None => {}
        }
        out
    }

    fn apply(self, doc: &mut Document) {
        {
            let aws = doc.aws_mut();
            aws.retries = Some(self.retries);
            aws.request_id = self.request_id;
            aws.id_2 = self.id_2;
            for (k, v) in self.fields {
                aws.insert_field(&k, v);
            }
        }
        if let Some(status) = self.status {
            doc.set_http_status(status);
        }
        if let Some(len) = self.content_length
            && let Some(resp) = doc.http_mut().response.as_mut()
        {
            resp.content_length = Some(len);
        }
        if self.throttled {
            doc.set_throttle(true);
            if !doc.fault() {
                doc.set_error(true);
            }
        }
        if let Some(cause) = self.cause {
            doc.add_cause(cause);
        }
    }
}

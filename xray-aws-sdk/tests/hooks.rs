//! The interceptor's hooks driven directly, as the orchestrator drives them, with arbitrary
//! requests and responses: every hook returns `Ok` and nothing panics, whatever comes back.

use std::sync::Arc;

use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    Error, Input, InterceptorContext, Output,
};
use aws_smithy_runtime_api::client::orchestrator::{
    HttpRequest, HttpResponse, Metadata, OrchestratorError,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use proptest::prelude::*;
use xray_aws_sdk::XRayInterceptor;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{InMemoryEmitter, Recorder};

fn recorder(emitter: &InMemoryEmitter) -> Recorder {
    let rules = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    Recorder::builder()
        .ignore_environment()
        .with_emitter(emitter.clone())
        .with_background_sender(false)
        .with_sampler(Arc::new(LocalSampler::new(rules)))
        .build()
        .unwrap()
}

struct Exchange {
    service: String,
    operation: String,
    uri: String,
    content_type: String,
    request_body: Vec<u8>,
    status: u16,
    response_headers: Vec<(&'static str, String)>,
    response_body: Vec<u8>,
    failed: bool,
}

/// Runs the hooks of one operation with one attempt; returns the recorded subsegment.
fn run(x: &Exchange) -> Option<serde_json::Value> {
    let emitter = InMemoryEmitter::new();
    let recorder = recorder(&emitter);
    let segment = recorder.begin_segment("hooks");
    let interceptor = XRayInterceptor::new();
    let rc = RuntimeComponentsBuilder::for_tests().build().unwrap();
    let mut cfg = ConfigBag::base();
    let mut ctx = InterceptorContext::new(Input::doesnt_matter());
    {
        let _guard = segment.enter();
        interceptor
            .read_before_execution(&(&ctx).into(), &mut cfg)
            .unwrap();
    }
    cfg.interceptor_state()
        .store_put(Metadata::new(x.operation.clone(), x.service.clone()));
    interceptor
        .read_before_serialization(&(&ctx).into(), &rc, &mut cfg)
        .unwrap();

    let mut request = HttpRequest::new(SdkBody::from(x.request_body.clone()));
    if request.set_uri(x.uri.as_str()).is_err() {
        request = HttpRequest::new(SdkBody::from(x.request_body.clone()));
    }
    let _ = request
        .headers_mut()
        .try_insert("content-type", x.content_type.clone());
    ctx.set_request(request);
    interceptor
        .read_before_attempt(&(&ctx).into(), &rc, &mut cfg)
        .unwrap();
    interceptor
        .modify_before_transmit(&mut (&mut ctx).into(), &rc, &mut cfg)
        .unwrap();

    let status =
        StatusCode::try_from(x.status).unwrap_or_else(|_| StatusCode::try_from(200).unwrap());
    let mut response = HttpResponse::new(status, SdkBody::from(x.response_body.clone()));
    for (k, v) in &x.response_headers {
        let _ = response.headers_mut().try_insert(*k, v.clone());
    }
    ctx.set_response(response);
    if x.failed {
        ctx.set_output_or_error(Err(OrchestratorError::operation(Error::erase(
            std::io::Error::other("service said no"),
        ))));
    } else {
        ctx.set_output_or_error(Ok(Output::doesnt_matter()));
    }
    interceptor
        .read_after_execution(&(&ctx).into(), &rc, &mut cfg)
        .unwrap();
    drop(ctx);
    drop(cfg);
    segment.end();
    let docs = xray_testkit::checked(emitter.documents());
    docs.first()
        .and_then(|d| d["subsegments"].as_array())
        .and_then(|s| s.first().cloned())
}

fn dynamodb_exchange() -> Exchange {
    Exchange {
        service: "DynamoDB".into(),
        operation: "GetItem".into(),
        uri: "https://dynamodb.us-east-1.amazonaws.com/".into(),
        content_type: "application/x-amz-json-1.0".into(),
        request_body: br#"{"TableName":"orders","Key":{"pk":{"S":"secret"}},"ConsistentRead":true}"#
            .to_vec(),
        status: 400,
        response_headers: vec![("x-amzn-requestid", "rid".into())],
        response_body:
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"gone"}"#
                .to_vec(),
        failed: true,
    }
}

#[test]
fn hooks_record_a_service_error() {
    let sub = run(&dynamodb_exchange()).expect("subsegment recorded");
    assert_eq!(sub["name"], "DynamoDB");
    assert_eq!(sub["aws"]["table_name"], "orders");
    assert_eq!(sub["aws"]["consistent_read"], true);
    assert_eq!(sub["aws"]["retries"], 0);
    assert_eq!(sub["aws"]["request_id"], "rid");
    assert_eq!(sub["error"], true);
    let ex = &sub["cause"]["exceptions"][0];
    assert_eq!(ex["type"], "ResourceNotFoundException");
    assert_eq!(ex["message"], "gone");
    assert_eq!(ex["remote"], true);
    assert!(!sub.to_string().contains("secret"));
}

#[test]
fn xray_own_calls_are_not_traced() {
    let mut x = dynamodb_exchange();
    x.service = "XRay".into();
    x.operation = "GetSamplingRules".into();
    assert_eq!(run(&x), None);
}

fn any_service() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        Just(("DynamoDB".to_owned(), "GetItem".to_owned())),
        Just(("DynamoDB".to_owned(), "BatchGetItem".to_owned())),
        Just(("SQS".to_owned(), "ReceiveMessage".to_owned())),
        Just(("SQS".to_owned(), "SendMessageBatch".to_owned())),
        Just(("S3".to_owned(), "GetObject".to_owned())),
        Just(("Lambda".to_owned(), "Invoke".to_owned())),
        Just(("SNS".to_owned(), "Publish".to_owned())),
        ("[A-Za-z ]{0,12}", "[A-Za-z]{0,12}"),
    ]
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "\\PC{0,200}".prop_map(String::into_bytes),
        Just(
            br#"{"TableName":"t","RequestItems":{"a":1,"b":[]},"Messages":[1,2,{}],"Entries":{}}"#
                .to_vec()
        ),
        Just(br#"{"RequestItems":[1],"Messages":{"x":1},"ConsumedCapacity":null}"#.to_vec()),
        Just(b"<Error><Code>SlowDown</Code><Message>x</Message></Error>".to_vec()),
        Just(b"<Error><Code>Slow".to_vec()),
        Just(b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3A%ZZ&x".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hooks_never_fail_or_panic(
        (service, operation) in any_service(),
        uri in prop_oneof![
            Just("https://b.s3.us-east-1.amazonaws.com/k%2".to_owned()),
            Just("http://127.0.0.1:1/2015-03-31/functions/f%ZZ/invocations?Qualifier=%".to_owned()),
            "\\PC{0,80}",
        ],
        content_type in prop_oneof![
            Just("application/x-amz-json-1.0".to_owned()),
            Just("application/x-www-form-urlencoded".to_owned()),
            Just("application/xml".to_owned()),
        ],
        request_body in any_body(),
        status in 100u16..600,
        header_value in "[ -~]{0,40}",
        response_body in any_body(),
        failed in any::<bool>(),
    ) {
        let x = Exchange {
            service,
            operation,
            uri,
            content_type,
            request_body,
            status,
            response_headers: vec![
                ("x-amzn-requestid", header_value.clone()),
                ("x-amzn-query-error", header_value.clone()),
                ("x-amz-function-error", header_value.clone()),
                ("content-length", header_value),
            ],
            response_body,
            failed,
        };
        let _ = run(&x);
    }
}

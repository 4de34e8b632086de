//! An axum service whose handler reads DynamoDB, traced end to end: one segment per request,
//! and under it one `DynamoDB` subsegment per call, recorded by `XRayInterceptor`, which also
//! sends the trace header to DynamoDB.
//!
//! `XRayLayer` opens the segment for each request (continuing the caller's trace when it sent
//! `X-Amzn-Trace-Id`), so the handler contains only the DynamoDB call.
//!
//! Run it against a local DynamoDB (moto or DynamoDB Local) over plain HTTP, with a local
//! daemon to see the documents:
//!
//! ```text
//! moto_server -p 5000 &
//! cargo run -p xray-local &            # listens on 127.0.0.1:2000
//! DYNAMODB_ENDPOINT=http://127.0.0.1:5000 cargo run -p xray-examples --example aws_dynamodb
//! curl http://127.0.0.1:3000/orders/order-1
//! ```
//!
//! For AWS itself, leave `DYNAMODB_ENDPOINT` unset and enable the service crate's default
//! features (its HTTPS client and the default credentials chain via `aws-config`).
use std::net::SocketAddr;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use xray_aws_sdk::XRayInterceptor;
use xray_tower::XRayLayer;

const TABLE: &str = "orders";

#[derive(Clone)]
struct App {
    dynamodb: aws_sdk_dynamodb::Client,
}

async fn get_order(State(app): State<App>, Path(id): Path<String>) -> (StatusCode, String) {
    // `XRayLayer` made this request's segment current: the DynamoDB call becomes its
    // subsegment, and the layer records the status this handler returns.
    let result = app
        .dynamodb
        .get_item()
        .table_name(TABLE)
        .key("id", AttributeValue::S(id))
        .send()
        .await;
    match result {
        Ok(out) => match out.item() {
            Some(item) => (StatusCode::OK, format!("{item:?}\n")),
            None => (StatusCode::NOT_FOUND, "no such order\n".to_owned()),
        },
        Err(_) => (StatusCode::BAD_GATEWAY, "storage unavailable\n".to_owned()),
    }
}

/// Creates the table and one item, so that the example has something to read.
async fn seed(client: &aws_sdk_dynamodb::Client) {
    let created = client
        .create_table()
        .table_name(TABLE)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("all fields set"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .expect("all fields set"),
        )
        .send()
        .await;
    if let Err(err) = created {
        eprintln!("create table: {err} (it may exist already)");
    }
    let put = client
        .put_item()
        .table_name(TABLE)
        .item("id", AttributeValue::S("order-1".into()))
        .item("total", AttributeValue::N("42".into()))
        .send()
        .await;
    if let Err(err) = put {
        eprintln!("put item: {err}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let mut config = aws_sdk_dynamodb::Config::builder()
        .region(aws_sdk_dynamodb::config::Region::new(region))
        // Static keys for a local endpoint; AWS itself needs the default credentials chain.
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "AKIDLOCAL",
            "local",
            None,
            None,
            "example",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .interceptor(XRayInterceptor::new());
    if let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") {
        config = config.endpoint_url(endpoint);
    }
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(config.build());
    seed(&dynamodb).await;

    let app = Router::new()
        .route("/orders/{id}", get(get_order))
        .with_state(App { dynamodb })
        .layer(XRayLayer::new("orders-api"));
    // PORT=0 takes a free port (the tests do); the address is printed either way.
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

//! The baseline document shared by the recorder benches: a plain serde struct shaped like the
//! segment the recorder emits (one annotated subsegment, the SDK's `service` and `aws.xray`
//! blocks), so `serde_json::to_vec` of it costs what serializing that segment naively would.
#![allow(dead_code)]

use serde::Serialize;

#[derive(Serialize)]
pub(crate) struct Sub {
    name: &'static str,
    id: String,
    start_time: f64,
    end_time: f64,
    annotations: Annotations,
}

#[derive(Serialize)]
pub(crate) struct Annotations {
    order_id: u64,
}

#[derive(Serialize)]
pub(crate) struct Seg {
    name: &'static str,
    id: String,
    trace_id: String,
    start_time: f64,
    end_time: f64,
    service: Svc,
    aws: Aws,
    subsegments: Vec<Sub>,
}

#[derive(Serialize)]
pub(crate) struct Svc {
    runtime: &'static str,
    runtime_version: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Aws {
    xray: Xray,
}

#[derive(Serialize)]
pub(crate) struct Xray {
    sdk: &'static str,
    sdk_version: &'static str,
    package: &'static str,
}

pub(crate) fn baseline_doc() -> Seg {
    Seg {
        name: "orders",
        id: "53995c3f42cd8ad8".into(),
        trace_id: "1-5759e988-bd862e3fe1be46a994272793".into(),
        start_time: 1735689600.120511,
        end_time: 1735689600.318204,
        service: Svc {
            runtime: "rust",
            runtime_version: "1.95.0",
        },
        aws: Aws {
            xray: Xray {
                sdk: "X-Ray for Rust",
                sdk_version: "0.1.0",
                package: "xray-core",
            },
        },
        subsegments: vec![Sub {
            name: "work",
            id: "7bc7afe4abe3b9bc".into(),
            start_time: 1735689600.131002,
            end_time: 1735689600.149877,
            annotations: Annotations { order_id: 42 },
        }],
    }
}

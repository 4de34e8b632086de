//! The OTLP decoder every transport's receiver shares: protobuf bytes decoded with prost, then
//! [`xray_sdk::otlp::to_documents`].
//!
//! What must hold for a request that decodes: one or two documents per well-formed span
//! (two for a local root that is not a server span), none for the others; every document is
//! a JSON object that serializes; and the request encoded again gives as many documents.

use prost::Message as _;
use rand::RngExt;
use rand::rngs::SmallRng;
use serde_json::Value;
use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::corpus::Corpus;
use crate::harness::Target;
use crate::mutate::{Mutator, pick};
use crate::spans::{self, Ids};

pub(crate) struct OtlpTarget {
    seeds: Vec<Vec<u8>>,
    requests: Vec<ExportTraceServiceRequest>,
    decoded: u64,
    refused: u64,
    documents: u64,
}

impl OtlpTarget {
    pub(crate) fn new(corpus: &Corpus) -> Result<Self, String> {
        let mut seeds = corpus.files("otlp")?;
        seeds.extend(spans::mapping_seeds());
        let requests = seeds
            .iter()
            .filter_map(|bytes| ExportTraceServiceRequest::decode(bytes.as_slice()).ok())
            .collect();
        Ok(OtlpTarget {
            seeds,
            requests,
            decoded: 0,
            refused: 0,
            documents: 0,
        })
    }
}

impl Target for OtlpTarget {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let ids = Ids::random(rng);
        match rng.random_range(0..100u32) {
            0..=44 => {
                let mut request = pick(rng, &self.requests)
                    .cloned()
                    .unwrap_or_else(|| spans::random_request(rng, &ids));
                spans::mutate_request(rng, &mut request, &ids);
                request.encode_to_vec()
            }
            45..=64 => spans::random_request(rng, &ids).encode_to_vec(),
            _ => Mutator {
                seeds: &self.seeds,
                dictionary: spans::SPAN_KEYS,
                max_len: 256 * 1024,
            }
            .input(rng),
        }
    }

    fn check(&mut self, input: &[u8]) -> Result<(), String> {
        let Ok(request) = ExportTraceServiceRequest::decode(input) else {
            self.refused += 1;
            return Ok(());
        };
        self.decoded += 1;
        let docs = check_request(&request)?;
        self.documents += docs as u64;
        Ok(())
    }

    fn notes(&self) -> String {
        format!(
            "{} decoded ({} documents), {} refused by the protobuf decoder",
            self.decoded, self.documents, self.refused
        )
    }
}

/// Converts `request` and checks the documents; returns how many there are.
pub(crate) fn check_request(request: &ExportTraceServiceRequest) -> Result<usize, String> {
    let docs = xray_sdk::otlp::to_documents(request);
    let well_formed = spans::spans(request)
        .filter(|s| spans::well_formed(s))
        .count();
    if docs.len() < well_formed || docs.len() > 2 * well_formed {
        return Err(format!(
            "{} documents from {well_formed} well-formed spans",
            docs.len()
        ));
    }
    for (i, doc) in docs.iter().enumerate() {
        if !matches!(doc, Value::Object(_)) {
            return Err(format!("document {i} is not an object: {doc}"));
        }
        if serde_json::to_vec(doc).is_err() {
            return Err(format!("document {i} does not serialize"));
        }
    }
    let again = ExportTraceServiceRequest::decode(request.encode_to_vec().as_slice())
        .map_err(|err| format!("the request encoded again does not decode: {err}"))?;
    let count = xray_sdk::otlp::to_documents(&again).len();
    if count != docs.len() {
        return Err(format!(
            "{} documents, {count} from the same request encoded again",
            docs.len()
        ));
    }
    Ok(docs.len())
}

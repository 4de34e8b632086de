//! Shared by the test files: recorders, a body the test feeds chunk by chunk.
#![allow(dead_code, unreachable_pub)]

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::mpsc;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{InMemoryEmitter, Recorder, RecorderBuilder};

/// A builder for a recorder that samples every new trace and reads no environment.
pub fn sampling_all() -> RecorderBuilder {
    let rules = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .expect("valid rules");
    Recorder::builder()
        .ignore_environment()
        .with_service_name("test")
        .with_sampler(Arc::new(LocalSampler::new(rules)))
}

/// A recorder that samples everything into memory.
pub fn in_memory() -> (Recorder, InMemoryEmitter) {
    let emitter = InMemoryEmitter::new();
    let recorder = sampling_all()
        .with_emitter(emitter.clone())
        .build()
        .expect("recorder builds");
    (recorder, emitter)
}

/// A response body whose chunks the test sends; it ends when the sender is dropped. Its length
/// is unknown up front, as a streamed body's is.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::UnboundedReceiver<Result<Bytes, String>>,
}

impl ChannelBody {
    pub fn new() -> (mpsc::UnboundedSender<Result<Bytes, String>>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Self { rx })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = String;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, String>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

//! Random trees of subsegments, begun, ended and discarded in random order from random parents,
//! against a model of what must arrive: every recorded subsegment exactly once under its own
//! parent, nothing discarded, and nothing twice, whatever the streaming threshold.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{Entity, InMemoryEmitter, Recorder, Segment, Subsegment};

/// The deepest nesting the recorder keeps (see `RecorderStats::too_deep`).
const MAX_DEPTH: usize = 48;

#[derive(Debug, Clone)]
enum Op {
    /// Begin a subsegment under node `n % len`.
    Open(usize),
    /// End node `n % len`, if its owner is still held.
    End(usize),
    /// Discard node `n % len`, if its owner is still held.
    Discard(usize),
    /// End the segment, if not ended yet.
    EndRoot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<usize>().prop_map(Op::Open),
        3 => any::<usize>().prop_map(Op::End),
        1 => any::<usize>().prop_map(Op::Discard),
        1 => Just(Op::EndRoot),
    ]
}

struct Node {
    entity: Entity,
    owner: Option<Subsegment>,
    parent: Option<usize>,
    children: Vec<usize>,
    depth: usize,
    recorded: bool,
    ended: bool,
    discarded: bool,
}

struct Model {
    nodes: Vec<Node>,
    root: Option<Segment>,
}

impl Model {
    /// Whether a node and everything recorded under it has ended: it has left the recorder's
    /// tree.
    fn completed(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.ended
            && n.children
                .iter()
                .all(|&c| !self.nodes[c].recorded || self.completed(c))
    }

    fn doomed(&self, mut i: usize) -> bool {
        loop {
            if self.nodes[i].discarded {
                return true;
            }
            match self.nodes[i].parent {
                Some(p) => i = p,
                None => return false,
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        let len = self.nodes.len();
        match *op {
            Op::Open(n) => {
                let p = n % len;
                let parent = &self.nodes[p];
                let expected = parent.recorded && !self.completed(p) && parent.depth < MAX_DEPTH;
                let sub = parent.entity.begin_subsegment("node");
                assert_eq!(sub.is_recording(), expected, "open under {p}");
                let depth = parent.depth + 1;
                self.nodes[p].children.push(len);
                self.nodes.push(Node {
                    entity: sub.entity().clone(),
                    owner: Some(sub),
                    parent: Some(p),
                    children: Vec::new(),
                    depth,
                    recorded: expected,
                    ended: false,
                    discarded: false,
                });
            }
            Op::End(n) => self.end(n % len, false),
            Op::Discard(n) => self.end(n % len, true),
            Op::EndRoot => {
                if let Some(root) = self.root.take() {
                    root.end();
                    self.nodes[0].ended = true;
                }
            }
        }
    }

    fn end(&mut self, i: usize, discard: bool) {
        let node = &mut self.nodes[i];
        let Some(owner) = node.owner.take() else {
            return;
        };
        node.ended = true;
        if discard {
            owner.discard();
            node.discarded = true;
        } else {
            owner.end();
        }
    }
}

/// Every entity in `doc` by id: how many times it was seen and under which parent id.
fn collect(doc: &Value, parent: Option<&str>, seen: &mut HashMap<String, (usize, Option<String>)>) {
    let id = doc["id"].as_str().expect("id").to_owned();
    let parent = doc["parent_id"].as_str().or(parent).map(str::to_owned);
    let entry = seen.entry(id.clone()).or_insert((0, parent.clone()));
    entry.0 += 1;
    for sub in doc["subsegments"].as_array().into_iter().flatten() {
        collect(sub, Some(&id), seen);
    }
}

fn run(ops: &[Op], threshold: usize) {
    let emitter = InMemoryEmitter::with_capacity(10_000);
    let rules = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(Arc::new(LocalSampler::new(rules)))
        .with_emitter(emitter.clone())
        .with_streaming_threshold(threshold)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("root");
    let mut model = Model {
        nodes: vec![Node {
            entity: segment.entity().clone(),
            owner: None,
            parent: None,
            children: Vec::new(),
            depth: 0,
            recorded: true,
            ended: false,
            discarded: false,
        }],
        root: Some(segment),
    };
    for op in ops {
        model.apply(op);
    }
    // Whatever is still open ends now, the deepest first, then the segment.
    for i in (1..model.nodes.len()).rev() {
        model.end(i, false);
    }
    model.apply(&Op::EndRoot);

    let docs = xray_testkit::checked(emitter.documents());
    let mut seen = HashMap::new();
    for doc in &docs {
        collect(doc, None, &mut seen);
    }
    for (id, (count, _)) in &seen {
        assert_eq!(*count, 1, "{id} arrived {count} times");
    }
    for (i, node) in model.nodes.iter().enumerate() {
        let id = node.entity.id().to_string();
        let arrived = seen.get(&id);
        let must = node.recorded && !model.doomed(i);
        // Under a discarded ancestor, a subtree streamed before the discard stays sent;
        // without streaming nothing of it may arrive.
        let may = must || (node.recorded && !node.discarded && threshold != usize::MAX);
        if must {
            let (_, parent) = arrived.unwrap_or_else(|| panic!("node {i} ({id}) is missing"));
            let expected = node.parent.map(|p| model.nodes[p].entity.id().to_string());
            assert_eq!(parent, &expected, "node {i} under the wrong parent");
        } else if !may {
            assert!(arrived.is_none(), "node {i} ({id}) arrived but must not");
        }
    }
    let stats = recorder.stats().transport;
    assert_eq!(stats.dropped_too_large, 0);
    assert_eq!(stats.sent as usize, docs.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_trees_arrive_as_modelled(
        ops in proptest::collection::vec(op(), 0..120),
        threshold in prop_oneof![Just(0usize), Just(1), Just(4), Just(usize::MAX)],
    ) {
        run(&ops, threshold);
    }
}

#[test]
fn a_deep_chain_stops_recording_at_the_depth_limit() {
    let ops: Vec<Op> = (0..60).map(Op::Open).collect();
    for threshold in [0, usize::MAX] {
        run(&ops, threshold);
    }
}

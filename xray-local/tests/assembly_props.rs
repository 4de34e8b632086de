//! Property: however a tree of entities is split into separately sent pieces, and in whatever
//! order the pieces arrive, assembly rebuilds the same tree.

use proptest::prelude::*;
use serde_json::{Value, json};

const TRACE: &str = "1-581cf771-a006649127e371903a2de979";

fn entity_id(i: usize) -> String {
    format!("{:016x}", i + 1)
}

/// Entity `i`'s document, embedding its children that are not sent on their own.
fn document(i: usize, children: &[Vec<usize>], independent: &[bool]) -> Value {
    let start = 1.0 + i as f64 * 0.001;
    let mut doc = json!({"name": format!("e{i}"), "id": entity_id(i),
                         "start_time": start, "end_time": start + 0.5});
    let embedded: Vec<Value> = children[i]
        .iter()
        .filter(|&&c| !independent[c])
        .map(|&c| document(c, children, independent))
        .collect();
    if !embedded.is_empty() {
        doc["subsegments"] = Value::Array(embedded);
    }
    doc
}

fn expected_shape(children: &[Vec<usize>]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(0usize, "-".to_owned(), 0usize)];
    while let Some((i, parent, depth)) = stack.pop() {
        for &c in children[i].iter().rev() {
            stack.push((c, format!("e{i}"), depth + 1));
        }
        out.push(format!("e{i} ({parent}) {depth}"));
    }
    out
}

proptest! {
    #[test]
    fn any_split_and_order_assembles_the_same_tree(
        nodes in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..30),
        order_seed in any::<prop::sample::Index>(),
        reverse in any::<bool>(),
    ) {
        let n = nodes.len() + 1;
        let mut parent = vec![0usize; n];
        let mut independent = vec![false; n];
        let mut children = vec![Vec::new(); n];
        for (k, (p, ind)) in nodes.iter().enumerate() {
            let i = k + 1;
            parent[i] = p.index(i);
            independent[i] = *ind;
            children[parent[i]].push(i);
        }

        let mut pieces = Vec::new();
        let mut root = document(0, &children, &independent);
        root["trace_id"] = json!(TRACE);
        pieces.push(root);
        for i in 1..n {
            if independent[i] {
                let mut doc = document(i, &children, &independent);
                doc["type"] = json!("subsegment");
                doc["trace_id"] = json!(TRACE);
                doc["parent_id"] = json!(entity_id(parent[i]));
                pieces.push(doc);
            }
        }
        // A rotation, optionally reversed: children before parents and the other way round.
        let len = pieces.len();
        pieces.rotate_left(order_seed.index(len));
        if reverse {
            pieces.reverse();
        }

        let traces = xray_local::assemble(pieces).unwrap();
        prop_assert_eq!(traces.len(), 1);
        let trace = &traces[0];
        prop_assert!(trace.is_complete());
        prop_assert!(trace.orphans().is_empty());
        let shape: Vec<String> = trace
            .entities()
            .map(|e| {
                let parent = e.parent().and_then(|p| p.name()).unwrap_or("-");
                format!("{} ({parent}) {}", e.name().unwrap_or("?"), e.depth())
            })
            .collect();
        prop_assert_eq!(shape, expected_shape(&children));
    }
}

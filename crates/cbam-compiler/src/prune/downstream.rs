//! The convs after a refitted one, for a cascade of refits.
//!
//! A refit leaves its conv's output close to the original's, not equal, and the layers in
//! between (ReLU, pooling, a recomputed CBAM whose attention saw fewer channels) pass the
//! rest on. Refitting the next plain conv too, on the pruned model's actual input, against
//! the original output, absorbs much of it; it is the same least-squares problem, with no
//! input channel lost.

use std::collections::HashSet;

use tract_onnx::pb::GraphProto;

use super::proto_edit::GraphIndex;
use crate::import::attrs;

/// Plain (group 1) convs reached from the outputs of the convs named in `from` without
/// passing another conv, repeated `hops` times; in first-reached order, without `from`.
pub fn downstream_convs(g: &GraphProto, from: &[String], hops: usize) -> Vec<String> {
    let idx = GraphIndex::new(g);
    let mut seen: HashSet<String> = from.iter().cloned().collect();
    let mut frontier: Vec<usize> = from
        .iter()
        .filter_map(|name| g.node.iter().position(|n| &n.name == name))
        .collect();
    let mut found = Vec::new();
    for _ in 0..hops {
        let next = next_convs(g, &idx, &frontier);
        frontier = Vec::new();
        for i in next {
            let Some(node) = g.node.get(i) else { continue };
            if seen.insert(node.name.clone()) {
                found.push(node.name.clone());
                frontier.push(i);
            }
        }
    }
    found
}

/// The first convs after the nodes `start` on every path, not looking past a conv.
fn next_convs(g: &GraphProto, idx: &GraphIndex, start: &[usize]) -> Vec<usize> {
    let mut visited: HashSet<usize> = start.iter().copied().collect();
    let mut stack: Vec<usize> = start.to_vec();
    let mut convs = Vec::new();
    while let Some(i) = stack.pop() {
        let Some(node) = g.node.get(i) else { continue };
        for out in &node.output {
            for &c in idx.consumers_of(out) {
                if !visited.insert(c) {
                    continue;
                }
                match g.node.get(c) {
                    // A grouped (depthwise) conv ends the path without being refitted.
                    Some(n) if n.op_type == "Conv" && attrs::int(n, "group").unwrap_or(1) != 1 => {}
                    Some(n) if n.op_type == "Conv" => convs.push(c),
                    Some(_) => stack.push(c),
                    None => {}
                }
            }
        }
    }
    convs.sort_unstable();
    convs
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::NodeProto;

    fn node(name: &str, op: &str, inputs: &[&str]) -> NodeProto {
        NodeProto {
            name: name.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.into()],
            ..NodeProto::default()
        }
    }

    #[test]
    fn walks_past_non_conv_nodes_and_stops_at_each_conv() {
        // c1 -> relu -> pool -> c2 -> relu2 -> c3, and a branch c1 -> add <- c2.
        let g = GraphProto {
            node: vec![
                node("c1", "Conv", &["x", "w1"]),
                node("relu", "Relu", &["c1"]),
                node("pool", "MaxPool", &["relu"]),
                node("c2", "Conv", &["pool", "w2"]),
                node("add", "Add", &["c1", "c2"]),
                node("relu2", "Relu", &["add"]),
                node("c3", "Conv", &["relu2", "w3"]),
            ],
            ..GraphProto::default()
        };
        let from = vec!["c1".to_string()];
        assert_eq!(downstream_convs(&g, &from, 1), vec!["c2", "c3"]);
        assert_eq!(
            downstream_convs(&g, &["c2".to_string()], 2),
            vec!["c3".to_string()]
        );
        assert!(downstream_convs(&g, &from, 0).is_empty());
    }
}

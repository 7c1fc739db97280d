//! Several broker nodes: in which order a connection tries them (pure, table-tested).
//!
//! `ebats.amqp_url` may list several URLs, comma-separated. A connection tries them in turn; the
//! one that answers first is used. When a connection dies, the next one starts at the node after
//! the one that died, so a process does not keep knocking on a node that just went away.

/// How the list of broker URLs is walked (`ebats.amqp_url_order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOrder {
    /// In the order written: the first connection goes to the first URL.
    Ordered,
    /// In an order of the process's own (fixed for its life), so that many processes spread over
    /// the nodes.
    Shuffle,
}

impl NodeOrder {
    pub fn parse(v: &str) -> Result<NodeOrder, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "ordered" => Ok(NodeOrder::Ordered),
            "shuffle" => Ok(NodeOrder::Shuffle),
            _ => Err(format!("ebats.amqp_url_order must be 'ordered' or 'shuffle', got '{v}'")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NodeOrder::Ordered => "ordered",
            NodeOrder::Shuffle => "shuffle",
        }
    }
}

/// The indexes of `n` nodes in the order to try them: `order` gives the walk (`seed` picks the
/// shuffled one), and the walk starts just after `last`, the node the previous connection used (a
/// node that died, or was left), wrapping around; without `last` it starts at the walk's beginning.
/// Every node is tried once.
pub fn attempt_order(n: usize, order: NodeOrder, seed: u64, last: Option<usize>) -> Vec<usize> {
    let mut walk: Vec<usize> = (0..n).collect();
    if order == NodeOrder::Shuffle {
        let mut state = seed | 1;
        for i in (1..n).rev() {
            // xorshift64: a few bits of spread are all that is needed here.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            walk.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }
    let start = last.and_then(|l| walk.iter().position(|&i| i == l)).map_or(0, |p| p + 1);
    walk.rotate_left(start % n.max(1));
    walk
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_walks_the_list_starting_after_the_last_node() {
        let table: [(usize, Option<usize>, &[usize]); 7] = [
            (1, None, &[0]),
            (1, Some(0), &[0]),
            (3, None, &[0, 1, 2]),
            (3, Some(0), &[1, 2, 0]),
            (3, Some(1), &[2, 0, 1]),
            (3, Some(2), &[0, 1, 2]),
            (3, Some(7), &[0, 1, 2]),
        ];
        for (n, last, want) in table {
            assert_eq!(attempt_order(n, NodeOrder::Ordered, 42, last), want, "n={n} last={last:?}");
        }
        assert!(attempt_order(0, NodeOrder::Ordered, 1, None).is_empty());
    }

    #[test]
    fn shuffle_is_a_permutation_fixed_by_the_seed_and_rotates_after_the_last_node() {
        for seed in 0..200u64 {
            let walk = attempt_order(5, NodeOrder::Shuffle, seed, None);
            let mut sorted = walk.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3, 4], "seed {seed}");
            assert_eq!(walk, attempt_order(5, NodeOrder::Shuffle, seed, None));
            // after node walk[k], the walk goes on with walk[k+1] and wraps
            let after = attempt_order(5, NodeOrder::Shuffle, seed, Some(walk[1]));
            assert_eq!(after, [walk[2], walk[3], walk[4], walk[0], walk[1]]);
        }
        // different seeds give different first nodes: processes spread over the nodes
        let firsts: std::collections::HashSet<usize> =
            (0..200u64).map(|s| attempt_order(3, NodeOrder::Shuffle, s, None)[0]).collect();
        assert_eq!(firsts.len(), 3);
    }

    #[test]
    fn order_names() {
        assert_eq!(NodeOrder::parse(" Shuffle "), Ok(NodeOrder::Shuffle));
        assert_eq!(NodeOrder::parse("ordered").map(NodeOrder::name), Ok("ordered"));
        assert!(NodeOrder::parse("random").unwrap_err().contains("'random'"));
    }
}

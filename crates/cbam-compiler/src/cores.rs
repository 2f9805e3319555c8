//! Independent per-item work spread over the machine's cores with scoped threads. Each item
//! is computed by the same code a single thread would run on it, so results never depend on
//! how many cores there are.

/// How many threads the compiler's passes use: every core the process may run on.
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f(index, item)` for every item, the items split into one contiguous run per core; the
/// results in item order. A panic in `f` is resumed on the calling thread.
pub fn map_mut<T: Send, R: Send>(items: &mut [T], f: impl Fn(usize, &mut T) -> R + Sync) -> Vec<R> {
    let threads = available().min(items.len());
    if threads <= 1 {
        return items.iter_mut().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let runs: Vec<_> = items
            .chunks_mut(per)
            .enumerate()
            .map(|(run, chunk)| {
                s.spawn(move || {
                    chunk
                        .iter_mut()
                        .enumerate()
                        .map(|(i, t)| f(run * per + i, t))
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        runs.into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_item_order_and_every_item_is_visited_once() {
        for len in [0, 1, 2, 3, 7, 64, 1001] {
            let mut items: Vec<u64> = (0..len).collect();
            let out = map_mut(&mut items, |i, t| {
                *t += 1;
                (i as u64) * 10
            });
            assert_eq!(out, (0..len).map(|i| i * 10).collect::<Vec<_>>());
            assert_eq!(items, (1..=len).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_panic_in_a_worker_reaches_the_caller() {
        let mut items = vec![0u8; 16];
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            map_mut(&mut items, |i, _| assert!(i != 11, "item 11"))
        }));
        assert!(caught.is_err());
    }
}

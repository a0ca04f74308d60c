//! What a case met, kept for its report: the first `N` in full, later ones counted with the
//! range of their requests (host errors in `crate::io`, #VE/#VC refusals in
//! `crate::platform::emulate`).

/// The first `N` items recorded since the list was last taken, and a count of the rest.
#[derive(Clone, Copy, Debug)]
pub struct Kept<T: Copy, const N: usize> {
    /// The first ones, in order.
    pub list: [Option<T>; N],
    /// How many more there were.
    pub more: u32,
    /// The requests of those: `(first, last)` request numbers (0 when none was made).
    pub more_requests: (u64, u64),
}

impl<T: Copy, const N: usize> Kept<T, N> {
    /// None recorded.
    pub const NONE: Self = Self {
        list: [None; N],
        more: 0,
        more_requests: (0, 0),
    };

    /// Keeps `item` if there is room, else counts it with `requests` (its first and last
    /// request numbers, if it names any).
    pub fn push(&mut self, item: T, requests: Option<(u64, u64)>) {
        if let Some(slot) = self.list.iter_mut().find(|s| s.is_none()) {
            *slot = Some(item);
            return;
        }
        if let Some((first, last)) = requests {
            let kept_first = if self.more == 0 {
                first
            } else {
                self.more_requests.0
            };
            self.more_requests = (kept_first, last);
        }
        self.more += 1;
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.list[0].is_none()
    }
}

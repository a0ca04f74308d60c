//! What the host sees of an SEV-ES guest's GHCB page, as pure functions: the page as
//! ciphertext when the guest wrote it through a private mapping ([`sev_ciphertext`]), and
//! guest bytes the page carries outside the fields a request sent ([`ghcb_leak`]). The
//! sev-es-sim glue (`crate::platform::sev_es`) applies them at each GHCB-page VMGEXIT.

use protocol::ghcb::{SHARED_BUFFER_LEN, off, valid_bit};

/// Bytes in the GHCB page.
pub const PAGE: usize = 4096;

/// What the host reads of a page the guest wrote through a private mapping: each 8-byte word
/// XORed with a keystream of the page's GPA and the word's index (splitmix64). Applying it
/// twice gives the page back, so the host "encrypts" the page before its model reads it and
/// "decrypts" it afterwards: bytes the host did not write come back as the guest wrote them
/// and the host's answer reads as garbage, as on hardware (where the granule is a 16-byte
/// AES block, not a byte). Deterministic, so a failing run replays.
pub fn sev_ciphertext(gpa: u64, page: &mut [u8; PAGE]) {
    for (i, w) in page.as_chunks_mut::<8>().0.iter_mut().enumerate() {
        let mut z = gpa.wrapping_add((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        *w = (u64::from_le_bytes(*w) ^ z).to_le_bytes();
    }
}

/// The first byte of a GHCB page, as the host receives it, that holds guest data outside
/// what the request sent: a non-zero byte that is not in an 8-byte field marked valid, the
/// valid bitmap, the protocol version and usage fields, or (when SW_SCRATCH is marked valid)
/// the shared buffer. The guest zeroes the page before each request so that no private byte
/// of an earlier request or of its own memory reaches the host; this is the host-side check.
///
/// Word by word: a zero word (most of a clean page) costs one compare.
pub fn ghcb_leak(page: &[u8; PAGE]) -> Option<(usize, u8)> {
    let bitmap = &page[off::VALID_BITMAP..off::VALID_BITMAP + 16];
    let marked = |o: usize| {
        let b = valid_bit(o & !7);
        o < off::VALID_BITMAP && bitmap[b / 8] & (1 << (b % 8)) != 0
    };
    let scratch = marked(off::SW_SCRATCH);
    let allowed = |o: usize| {
        marked(o)
            || (off::VALID_BITMAP..off::VALID_BITMAP + 16).contains(&o)
            || o >= off::PROTOCOL_VERSION
            || (scratch
                && (off::SHARED_BUFFER..off::SHARED_BUFFER + SHARED_BUFFER_LEN).contains(&o))
    };
    page.as_chunks::<8>()
        .0
        .iter()
        .enumerate()
        .filter(|(_, w)| u64::from_le_bytes(**w) != 0)
        .find_map(|(i, w)| {
            w.iter()
                .enumerate()
                .map(|(j, &b)| (8 * i + j, b))
                .find(|&(o, b)| b != 0 && !allowed(o))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ghcb_leak_finds_bytes_outside_the_fields_sent() {
        let mut page = [0u8; PAGE];
        let mark = |page: &mut [u8; PAGE], o: usize| {
            let b = valid_bit(o);
            page[off::VALID_BITMAP + b / 8] |= 1 << (b % 8);
        };
        page[off::PROTOCOL_VERSION] = 2;
        page[off::RAX] = 0x41;
        assert_eq!(ghcb_leak(&page), Some((off::RAX, 0x41)), "RAX not marked");
        mark(&mut page, off::RAX);
        assert_eq!(ghcb_leak(&page), None);
        page[off::RBX + 7] = 1;
        assert_eq!(ghcb_leak(&page), Some((off::RBX + 7, 1)));
        page[off::RBX + 7] = 0;
        page[off::SHARED_BUFFER + 5] = 9;
        assert_eq!(
            ghcb_leak(&page),
            Some((off::SHARED_BUFFER + 5, 9)),
            "no SW_SCRATCH"
        );
        mark(&mut page, off::SW_SCRATCH);
        assert_eq!(ghcb_leak(&page), None);
        page[0xff0] = 3;
        assert_eq!(
            ghcb_leak(&page),
            Some((0xff0, 3)),
            "reserved bytes after the buffer"
        );
        // A word that holds allowed bytes (the protocol version) and a leaking one.
        let mut page = [0u8; PAGE];
        page[off::PROTOCOL_VERSION] = 2;
        assert_eq!(ghcb_leak(&page), None);
        page[off::PROTOCOL_VERSION - 1] = 7;
        assert_eq!(ghcb_leak(&page), Some((off::PROTOCOL_VERSION - 1, 7)));
    }

    #[test]
    fn ciphertext_is_an_involution_that_garbles_the_usage_field() {
        let mut page = [0u8; PAGE];
        page[off::SW_EXIT_CODE] = 0x72;
        let plain = page;
        sev_ciphertext(0x167000, &mut page);
        assert_ne!(page, plain);
        // What KVM checks first: a zero GHCB usage reads as non-zero, so an honest KVM answers
        // INVALID_USAGE to a request written through a private mapping.
        assert_ne!(&page[off::GHCB_USAGE..off::GHCB_USAGE + 4], &[0; 4]);
        let mut other = plain;
        sev_ciphertext(0x168000, &mut other);
        assert_ne!(page, other, "the keystream depends on the GPA");
        sev_ciphertext(0x167000, &mut page);
        assert_eq!(page, plain);
    }
}

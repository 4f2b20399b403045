//! Distinct versions of one component: the same code with a custom section
//! appended, which the component model ignores and which changes the digest.

use kubeskippy::host::with_custom_section;

/// `component` with a custom section `version` saying `number`.
pub fn versioned(component: &[u8], number: u32) -> Vec<u8> {
    versioned_with_padding(component, number, 0)
}

/// As [`versioned`], grown by `padding` incompressible bytes, to make a
/// component that needs several ConfigMaps.
pub fn versioned_with_padding(component: &[u8], number: u32, padding: usize) -> Vec<u8> {
    let mut payload = number.to_le_bytes().to_vec();
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(number);
    payload.extend((0..padding).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    }));
    with_custom_section(component, "version", &payload)
}

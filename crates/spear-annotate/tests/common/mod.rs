//! Helpers shared by the integration tests.

/// A NumPy 1.0 `.npy` file of shape `(height, width, 3)`: `descr` `'<f4'` or `'<f8'`, `data` the
/// little-endian values in C order.
pub fn npy(descr: &str, height: usize, width: usize, data: &[u8]) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({height}, {width}, 3), }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    bytes
}

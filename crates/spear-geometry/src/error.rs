//! Errors returned by the geometry API.

/// An input that the geometry functions cannot turn into a valid result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    /// Two sequences that must pair up element by element have different lengths.
    #[error("{what}: expected {expected} elements, got {got}")]
    LengthMismatch {
        /// Which argument is wrong.
        what: &'static str,
        /// The length the other arguments imply.
        expected: usize,
        /// The length that was passed.
        got: usize,
    },
    /// A distribution parameter is outside its valid range.
    #[error("invalid {what} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        what: &'static str,
        /// The value that was passed.
        value: f64,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A matrix that is not a rotation: not orthonormal, or a reflection.
    #[error("not a rotation matrix: max |MᵀM − I| = {orthogonality_error:e}, det = {determinant}")]
    NotARotation {
        /// Largest entry of `|MᵀM − I|`.
        orthogonality_error: f64,
        /// Determinant of the matrix (must be +1).
        determinant: f64,
    },
    /// A 6D rotation whose two columns are zero, parallel or not finite.
    #[error("degenerate 6D rotation {0:?}: the two columns must be finite and linearly independent")]
    Degenerate6d([f64; 6]),
}

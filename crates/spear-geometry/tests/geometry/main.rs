//! spear-geometry's integration tests, in one binary so that burn is linked once.

mod parity_scipy;
mod properties;
mod tensor_api;

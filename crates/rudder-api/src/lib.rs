//! The Kubernetes API vocabulary rudder's components share: which resources exist and how
//! they are named and served ([`resources`]), object names ([`names`]), labels and label
//! selectors ([`labels`]), and field errors in upstream wording ([`field_error`]).

pub mod field_error;
pub mod labels;
pub mod names;
pub mod quantity;
pub mod resources;

pub use field_error::{FieldError, FieldErrorType};
pub use resources::{ResourceInfo, builtin_resources};
